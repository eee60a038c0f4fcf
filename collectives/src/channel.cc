#include "channel.h"

#include <sched.h>

#include <string>

namespace wv::coll::detail {

namespace {
constexpr uint64_t kStepMask = (uint64_t{1} << 20) - 1;
}

uint64_t make_tag(uint32_t context, uint64_t sequence, uint32_t phase) {
  return kCollectiveBit | (uint64_t{context & 0x3fu} << 56) | ((sequence & 0xffffffffu) << 24) |
         (uint64_t{phase & 0xfu} << 20);
}

Channel::~Channel() {
  abandon();
}

Channel Channel::derive(const Group& group, uint32_t phase) const {
  return Channel(group, (tag_ & ~(uint64_t{0xf} << 20)) | (uint64_t{phase & 0xfu} << 20), cancel_);
}

Status Channel::post_send(int to, uint32_t step, const void* buffer, size_t length) {
  if (to < 0 || to >= group_.size) return Status(Errc::kInvalidArgument, "bad peer");
  auto request = group_.worker->isend(group_.peers[static_cast<size_t>(to)],
                                      tag_ | (step & kStepMask), buffer, length);
  if (!request.is_ok()) return request.status();
  pending_.push_back({*request, SIZE_MAX, to});
  return Status::ok();
}

Status Channel::post_recv(int from, uint32_t step, void* buffer, size_t length) {
  if (from < 0 || from >= group_.size) return Status(Errc::kInvalidArgument, "bad peer");
  auto request =
      group_.worker->irecv(group_.peers[static_cast<size_t>(from)], tag_ | (step & kStepMask),
                           transport::kTagMaskAll, buffer, length);
  if (!request.is_ok()) return request.status();
  pending_.push_back({*request, length, from});
  return Status::ok();
}

// Polls with test() rather than one long wait_all() so that a cancel request of a
// non-blocking collective is seen within a few milliseconds, and the whole wait stays bounded.
Status Channel::wait() {
  const auto deadline = std::chrono::steady_clock::now() + group_.timeout;
  auto idle_since = std::chrono::steady_clock::now();
  Status first_error;
  while (!pending_.empty()) {
    bool progressed = false;
    for (size_t i = 0; i < pending_.size();) {
      transport::RequestResult result;
      auto done = group_.worker->test(pending_[i].request, &result);
      if (done.is_ok() && !*done) {
        ++i;
        continue;
      }
      progressed = true;
      const Pending finished = pending_[i];
      pending_[i] = pending_.back();
      pending_.pop_back();
      const int peer_rank = group_.world[static_cast<size_t>(finished.peer)];
      if (!done.is_ok()) {
        if (first_error.is_ok()) {
          first_error =
              Status(done.status().code(),
                     (finished.expected == SIZE_MAX ? "send to rank " : "receive from rank ") +
                         std::to_string(peer_rank) + ": " + done.status().message() +
                         (done.status().code() == Errc::kInvalidArgument
                              ? " (mismatched counts between ranks?)"
                              : ""));
        }
      } else if (finished.expected != SIZE_MAX && result.length != finished.expected &&
                 first_error.is_ok()) {
        first_error =
            Status(Errc::kInvalidArgument,
                   "rank " + std::to_string(peer_rank) + " sent " + std::to_string(result.length) +
                       " bytes where " + std::to_string(finished.expected) +
                       " were expected: the ranks passed mismatched counts");
      }
    }
    if (!first_error.is_ok()) {
      abandon();
      return first_error;
    }
    if (pending_.empty()) break;
    if (cancel_ && cancel_->load(std::memory_order_relaxed)) {
      abandon();
      return Status(Errc::kCancelled, "collective cancelled");
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      abandon();
      return Status(Errc::kTimedOut, "collective step not done within " +
                                         std::to_string(group_.timeout.count()) + " ms");
    }
    if (progressed) {
      idle_since = now;
      continue;
    }
    switch (group_.wait.phase(now - idle_since)) {
      case transport::WaitPolicy::Phase::kSpin:
        break;
      case transport::WaitPolicy::Phase::kYield:
        sched_yield();
        break;
      case transport::WaitPolicy::Phase::kSleep:
        (void)group_.worker->wait_for_event(std::chrono::milliseconds(5));
        break;
    }
  }
  return Status::ok();
}

// After an error: cancel what has not started and wait briefly for the rest, so no request
// is left writing into a buffer the caller is about to free.
void Channel::abandon() {
  if (pending_.empty()) return;
  for (Pending& p : pending_) (void)group_.worker->cancel(p.request);
  std::vector<transport::Request> requests;
  for (Pending& p : pending_) requests.push_back(p.request);
  pending_.clear();
  (void)group_.worker->wait_all(requests, {}, std::chrono::milliseconds(1000));
}

Status Channel::send(int to, uint32_t step, const void* buffer, size_t length) {
  if (Status s = post_send(to, step, buffer, length); !s.is_ok()) return s;
  return wait();
}

Status Channel::recv(int from, uint32_t step, void* buffer, size_t length) {
  if (Status s = post_recv(from, step, buffer, length); !s.is_ok()) return s;
  return wait();
}

Status Channel::sendrecv(int to, const void* send_buffer, size_t send_length, int from,
                         void* recv_buffer, size_t recv_length, uint32_t step) {
  if (Status s = post_recv(from, step, recv_buffer, recv_length); !s.is_ok()) return s;
  if (Status s = post_send(to, step, send_buffer, send_length); !s.is_ok()) return s;
  return wait();
}

}  // namespace wv::coll::detail
