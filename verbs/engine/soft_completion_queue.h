// The software completion queue: a ring under one mutex, filled by posting threads and the
// progress thread, drained by poll(). Notifications are armed Operations.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "wv/spin_lock.h"
#include "wv/verbs/completion_queue.h"

namespace wv::verbs::soft {

// A connection that can make progress for a thread polling an empty CQ. Software providers have
// no hardware moving data; without this, a poller spinning on a busy machine starves the
// progress thread and every message waits for a scheduler tick.
class ProgressSource {
 public:
  virtual ~ProgressSource() = default;
  virtual void progress_from_poll() = 0;
  // The application is about to sleep on this CQ's notification: progress is the thread's again.
  virtual void poller_sleeping() = 0;
};

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
  // Connections feeding this CQ; poll() of an empty CQ lets them progress.
  void add_progress_source(std::weak_ptr<ProgressSource> source);

 private:
  void fire_locked(Completer<void>& completer);
  int take_locked(std::span<Completion> out);
  void drive_progress();
  void pollers_sleeping();

  // Completions queued or an overrun to report; read without the lock.
  bool has_news() const;

  mutable SpinLock mutex_;  // guards everything below; count_ and overrun_ are also read
                            // without it, so they are atomic
  std::vector<Completion> ring_;
  size_t head_ = 0;
  std::atomic<size_t> count_{0};
  std::atomic<bool> overrun_{false};
  Completer<void> next_;
  Completer<void> solicited_;
  Completer<void> batch_;
  size_t batch_count_ = 0;
  int notification_fd_ = -1;
  SpinLock sources_mutex_;  // never held with mutex_: sources push completions
  std::vector<std::weak_ptr<ProgressSource>> sources_;
};

}  // namespace wv::verbs::soft
