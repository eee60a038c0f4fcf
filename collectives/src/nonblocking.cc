#include "nonblocking.h"

#include "wv/collectives/communicator.h"

namespace wv::coll {

namespace detail {

std::shared_ptr<NonBlocking> NonBlocking::start(
    std::function<Status(const std::atomic<bool>*)> body) {
  auto state = std::make_shared<NonBlocking>();
  NonBlocking* raw = state.get();
  state->thread = std::thread([raw, body = std::move(body)] {
    Status status = body(&raw->cancel);
    std::lock_guard lock(raw->mutex);
    raw->result = std::move(status);
    raw->done = true;
    raw->finished.notify_all();
  });
  return state;
}

// Each step of the body waits at most the communicator's timeout and sees `cancel` within
// milliseconds, so this join is bounded.
NonBlocking::~NonBlocking() {
  cancel.store(true);
  if (thread.joinable()) thread.join();
}

}  // namespace detail

CollRequest::CollRequest(CollRequest&&) noexcept = default;
CollRequest& CollRequest::operator=(CollRequest&& other) noexcept {
  if (this != &other) {
    if (state_) state_->cancel.store(true);
    state_ = std::move(other.state_);
  }
  return *this;
}
CollRequest::~CollRequest() = default;

Status CollRequest::wait(std::chrono::milliseconds bound) {
  if (!state_) return Status(Errc::kInvalidArgument, "not a live collective request");
  {
    std::unique_lock lock(state_->mutex);
    if (!state_->finished.wait_for(lock, bound, [&] { return state_->done; })) {
      return Status(Errc::kTimedOut,
                    "collective not done within " + std::to_string(bound.count()) + " ms");
    }
  }
  state_->thread.join();
  Status result = state_->result;
  state_.reset();
  return result;
}

Result<bool> CollRequest::test(Status* result) {
  if (!state_) return Status(Errc::kInvalidArgument, "not a live collective request");
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->done) return false;
  }
  Status status = wait(std::chrono::milliseconds(0));
  if (result) *result = status;
  return true;
}

void CollRequest::cancel() {
  if (state_) state_->cancel.store(true);
}

}  // namespace wv::coll
