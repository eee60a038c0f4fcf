#include "soft_completion_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

namespace wv::verbs::soft {

SoftCompletionQueue::SoftCompletionQueue(uint32_t entries)
    : ring_(std::max<uint32_t>(entries, 1)) {}

SoftCompletionQueue::~SoftCompletionQueue() {
  if (notification_fd_ >= 0) ::close(notification_fd_);
}

int SoftCompletionQueue::poll(std::span<Completion> out) {
  // Every poll moves the connections' data, also when completions are queued: a poller that
  // only progressed on an empty CQ left the data of busy moments to the progress thread, which
  // took it for absent and had the peer ring its doorbell (a system call and a thread switch
  // per message).
  drive_progress();
  // An empty CQ is the common case of a spinning poller: it is seen without the lock.
  if (!has_news()) return 0;
  std::lock_guard lock(mutex_);
  return take_locked(out);
}

bool SoftCompletionQueue::has_news() const {
  return count_.load(std::memory_order_acquire) > 0 || overrun_.load(std::memory_order_acquire);
}

void SoftCompletionQueue::add_progress_source(std::weak_ptr<ProgressSource> source) {
  std::lock_guard lock(sources_mutex_);
  std::erase_if(sources_, [](const auto& weak) { return weak.expired(); });
  // Once each: every datagram QP of a device names the same wire.
  const auto same = [&](const std::weak_ptr<ProgressSource>& known) {
    return !known.owner_before(source) && !source.owner_before(known);
  };
  if (std::none_of(sources_.begin(), sources_.end(), same)) sources_.push_back(std::move(source));
}

void SoftCompletionQueue::drive_progress() {
  // Another thread polling this CQ is already driving progress; it will fill the CQ for both.
  std::unique_lock lock(sources_mutex_, std::try_to_lock);
  if (!lock) return;
  for (const auto& weak : sources_) {
    if (auto source = weak.lock()) source->progress_from_poll();
  }
}

void SoftCompletionQueue::pollers_sleeping() {
  std::lock_guard lock(sources_mutex_);
  for (const auto& weak : sources_) {
    if (auto source = weak.lock()) source->poller_sleeping();
  }
}

int SoftCompletionQueue::take_locked(std::span<Completion> out) {
  const size_t count = count_.load(std::memory_order_relaxed);
  const size_t n = std::min(out.size(), count);
  for (size_t i = 0; i < n; ++i) {
    out[i] = ring_[head_];
    head_ = head_ + 1 == ring_.size() ? 0 : head_ + 1;
  }
  count_.store(count - n, std::memory_order_relaxed);
  // Emptied: the next completion goes to the first slot again. A poller that keeps up then
  // reuses a few slots that stay in its cache, instead of walking the whole ring (a transport
  // CQ has thousands of entries) and meeting a cold line with every completion.
  if (count == n) head_ = 0;
  if (n == 0 && overrun_.load(std::memory_order_relaxed)) return -1;
  return static_cast<int>(n);
}

size_t SoftCompletionQueue::peek() const {
  return count_.load(std::memory_order_acquire);
}

void SoftCompletionQueue::fire_locked(Completer<void>& completer) {
  if (!completer) return;
  completer.complete(Status::ok());
  completer = Completer<void>();
  if (notification_fd_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t written = ::write(notification_fd_, &one, sizeof(one));
  }
}

bool SoftCompletionQueue::push(const Completion& completion, bool solicited) {
  std::lock_guard lock(mutex_);
  const size_t count = count_.load(std::memory_order_relaxed);
  if (count == ring_.size()) {
    overrun_.store(true, std::memory_order_release);
    fire_locked(next_);
    fire_locked(solicited_);
    fire_locked(batch_);
    return false;
  }
  size_t tail = head_ + count;
  if (tail >= ring_.size()) tail -= ring_.size();
  ring_[tail] = completion;
  count_.store(count + 1, std::memory_order_release);
  if (next_) fire_locked(next_);
  if (solicited_ && (solicited || completion.status != CompletionStatus::kSuccess)) {
    fire_locked(solicited_);
  }
  if (batch_ && count + 1 >= batch_count_) fire_locked(batch_);
  return true;
}

Operation<void> SoftCompletionQueue::notify(NotifyOn kind) {
  pollers_sleeping();
  auto [operation, completer] = Operation<void>::make();
  std::lock_guard lock(mutex_);
  Completer<void>& slot = kind == NotifyOn::kNextCompletion ? next_ : solicited_;
  // Re-arming replaces an earlier request, as with ibv_req_notify_cq; the earlier one is told.
  if (slot) slot.complete(Status(Errc::kCancelled, "notification re-armed"));
  slot = completer;
  return std::move(operation);
}

Operation<void> SoftCompletionQueue::batch_notify(size_t count) {
  if (count == 0 || count > ring_.size()) {
    return Operation<void>::done(
        Status(Errc::kInvalidArgument, "batch_notify count " + std::to_string(count) +
                                           " must be between 1 and the CQ size " +
                                           std::to_string(ring_.size())));
  }
  pollers_sleeping();
  auto [operation, completer] = Operation<void>::make();
  std::lock_guard lock(mutex_);
  if (count_.load(std::memory_order_relaxed) >= count) {
    completer.complete(Status::ok());
    return std::move(operation);
  }
  if (batch_) batch_.complete(Status(Errc::kCancelled, "batch notification re-armed"));
  batch_ = completer;
  batch_count_ = count;
  return std::move(operation);
}

int SoftCompletionQueue::notification_fd() {
  std::lock_guard lock(mutex_);
  if (notification_fd_ < 0) notification_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return notification_fd_;
}

Status SoftCompletionQueue::resize(uint32_t entries) {
  std::lock_guard lock(mutex_);
  const size_t count = count_.load(std::memory_order_relaxed);
  if (entries == 0 || entries < count) {
    return Status(Errc::kInvalidArgument, "cannot resize CQ to " + std::to_string(entries) +
                                              " entries: " + std::to_string(count) +
                                              " completions are queued");
  }
  std::vector<Completion> ring(entries);
  for (size_t i = 0; i < count; ++i) ring[i] = ring_[(head_ + i) % ring_.size()];
  ring_.swap(ring);
  head_ = 0;
  return Status::ok();
}

uint32_t SoftCompletionQueue::capacity() const {
  std::lock_guard lock(mutex_);
  return static_cast<uint32_t>(ring_.size());
}

Status SoftCompletionQueue::status() const {
  std::lock_guard lock(mutex_);
  if (overrun_.load(std::memory_order_relaxed)) {
    return Status(Errc::kQueueFull, "completion queue overrun: more completions than its " +
                                        std::to_string(ring_.size()) + " entries");
  }
  return Status::ok();
}

}  // namespace wv::verbs::soft
