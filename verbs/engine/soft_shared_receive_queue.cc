#include "soft_shared_receive_queue.h"

#include <algorithm>
#include <string>

#include "soft_queue_pair.h"

namespace wv::verbs::soft {

Status SoftSharedReceiveQueue::post_receive(uint64_t wr_id, std::span<const Sge> sges) {
  std::vector<std::weak_ptr<Wire>> wake;
  Status status;
  {
    std::lock_guard lock(mutex_);
    status = queue_.post(wr_id, sges, domain_);
    if (status && !starved_.empty()) wake.swap(starved_);
  }
  // Outside the lock: a woken wire may take the receive at once.
  for (const auto& weak : wake) {
    if (auto wire = weak.lock()) wire->receive_posted();
  }
  return status;
}

Status SoftSharedReceiveQueue::modify(uint32_t max_wr, uint32_t limit) {
  std::lock_guard lock(mutex_);
  const uint32_t depth = max_wr == kUnchanged ? queue_.depth() : max_wr;
  if (depth == 0) return Status(Errc::kInvalidArgument, "SRQ max_wr must not be 0");
  if (limit != kUnchanged && limit >= depth) {
    return Status(Errc::kInvalidArgument, "SRQ limit " + std::to_string(limit) +
                                              " must be below max_wr " + std::to_string(depth));
  }
  if (depth != queue_.depth()) {
    Status status = queue_.grow(depth);
    if (!status) return status;
  }
  if (limit != kUnchanged) limit_ = limit;
  return Status::ok();
}

Operation<void> SoftSharedReceiveQueue::notify_limit() {
  std::lock_guard lock(mutex_);
  if (limit_ == 0) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "SRQ limit is not armed (set it with modify)"));
  }
  auto [operation, completer] = Operation<void>::make();
  if (queue_.size() < limit_) {
    limit_ = 0;
    completer.complete(Status::ok());
  } else {
    if (limit_reached_) limit_reached_.complete(Status(Errc::kCancelled, "limit event re-armed"));
    limit_reached_ = completer;
  }
  return std::move(operation);
}

SrqAttributes SoftSharedReceiveQueue::query() const {
  std::lock_guard lock(mutex_);
  return {queue_.depth(), queue_.max_sge(), limit_, queue_.size()};
}

// `starved` by shared_ptr: a weak_ptr made per take cost two atomic operations on every receive.
bool SoftSharedReceiveQueue::take(ReceiveWorkRequest& out, const std::shared_ptr<Wire>& starved) {
  std::lock_guard lock(mutex_);
  if (!queue_.take(out)) {
    const bool known = std::any_of(starved_.begin(), starved_.end(), [&](const auto& weak) {
      return !weak.owner_before(starved) && !starved.owner_before(weak);
    });
    if (!known && starved) starved_.push_back(starved);
    return false;
  }
  if (limit_ != 0 && queue_.size() < limit_ && limit_reached_) {
    // The event disarms the limit, as the verbs SRQ limit event does.
    limit_ = 0;
    limit_reached_.complete(Status::ok());
    limit_reached_ = Completer<void>();
  }
  return true;
}

}  // namespace wv::verbs::soft
