// The software completion queue: a ring under one mutex, filled by posting threads and the
// progress thread, drained by poll(). Notifications are armed Operations.
#pragma once

#include <mutex>
#include <vector>

#include "wv/verbs/completion_queue.h"

namespace wv::verbs::soft {

class SoftCompletionQueue final : public CompletionQueue {
 public:
  explicit SoftCompletionQueue(uint32_t entries);
  ~SoftCompletionQueue() override;

  int poll(std::span<Completion> out) override;
  size_t peek() const override;
  Operation<void> notify(NotifyOn kind) override;
  Operation<void> batch_notify(size_t count) override;
  int notification_fd() override;
  Status resize(uint32_t entries) override;
  uint32_t capacity() const override;
  Status status() const override;

  // Engine side. Returns false on overrun (the completion is lost and the CQ is in error).
  bool push(const Completion& completion, bool solicited);

 private:
  void fire_locked(Completer<void>& completer);

  mutable std::mutex mutex_;
  std::vector<Completion> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  bool overrun_ = false;
  Completer<void> next_;
  Completer<void> solicited_;
  Completer<void> batch_;
  size_t batch_count_ = 0;
  int notification_fd_ = -1;
};

}  // namespace wv::verbs::soft
