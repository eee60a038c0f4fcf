// One thread per provider that watches the file descriptors librdmacm and libibverbs hand out
// (rdma_cm event channels, completion channels, device async fds) and runs their handlers, so
// that every overlapped operation completes without the application polling anything.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "wv/result.h"

namespace wv::verbs::ib {

class EventLoop {
 public:
  static Result<std::shared_ptr<EventLoop>> start();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop();

  // Runs `on_readable` on the loop thread whenever `fd` is readable (level-triggered: the
  // handler must drain the fd). The fd is made non-blocking.
  Status add(int fd, std::function<void()> on_readable);
  // After it returns, the handler of `fd` is not running and never runs again, so the caller
  // may close the fd and free what the handler uses. Callable from a handler too.
  void remove(int fd);

 private:
  EventLoop(int epoll_fd, int wake_fd) : epoll_fd_(epoll_fd), wake_fd_(wake_fd) {}
  void run();

  const int epoll_fd_;
  const int wake_fd_;
  std::thread thread_;
  // Held while a handler runs: remove() from another thread waits for it.
  std::mutex dispatch_mutex_;
  std::map<int, std::shared_ptr<std::function<void()>>> handlers_;
  bool stopping_ = false;
};

}  // namespace wv::verbs::ib
