// The progress thread of a software device: one epoll loop that serves every connection of
// the device, so one-sided operations complete with no action from the target application.
// It sleeps in epoll_wait when idle (after an optional spin, the `progress_spin_us` parameter).
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "wv/result.h"

namespace wv::verbs::soft {

// Something with a file descriptor that the progress thread watches.
class PollHandler {
 public:
  virtual ~PollHandler() = default;
  // Runs on the progress thread with the epoll events of the handler's fd.
  virtual void on_events(uint32_t events) = 0;
  // Runs on the progress thread once the handler's deadline (set_deadline) has passed.
  virtual void on_deadline() {}
};

// Shared so that the thread keeps it alive: its owner may let go inside a callback.
class Progress : public std::enable_shared_from_this<Progress> {
 public:
  using Clock = std::chrono::steady_clock;

  Progress();
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  Status start();
  // Ends the thread (joined unless called from it); handlers are released.
  void stop();
  // Watches `fd` for `events` until remove(); the handler stays alive while watched.
  Status add(int fd, uint32_t events, std::shared_ptr<PollHandler> handler);
  Status modify(int fd, uint32_t events);
  // Stops watching `fd` (the handler is released on the progress thread).
  void remove(int fd);
  void set_deadline(int fd, Clock::time_point when);
  void clear_deadline(int fd);
  // Runs `task` on the progress thread (control path only: it allocates).
  void post(std::function<void()> task);
  // Runs `task` on the progress thread and waits for it; runs it inline if already there.
  void run_sync(std::function<void()> task);
  bool on_progress_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void loop();
  void wake();
  void run_tasks();
  void fire_deadlines();
  void erase_deadline_locked(int fd);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::mutex mutex_;  // guards tasks_, handlers_ and deadlines_
  std::vector<std::function<void()>> tasks_;
  std::unordered_map<int, std::shared_ptr<PollHandler>> handlers_;
  // A few entries (one per parked or stalled connection), set and cleared often: a vector
  // reuses its storage where a node-based map would allocate on every set.
  std::vector<std::pair<int, Clock::time_point>> deadlines_;
  // The progress thread's own scratch, kept to reuse their storage.
  std::vector<std::function<void()>> running_tasks_;
  std::vector<std::shared_ptr<PollHandler>> due_;
  static constexpr size_t kReserved = 64;
  bool stopping_ = false;
  int64_t spin_us_ = 0;
};

}  // namespace wv::verbs::soft
