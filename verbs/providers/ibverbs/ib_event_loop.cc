#include "ib_event_loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace wv::verbs::ib {

Result<std::shared_ptr<EventLoop>> EventLoop::start() {
  const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return errno_status(Errc::kIoError, "epoll_create1");
  const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    Status status = errno_status(Errc::kIoError, "eventfd");
    ::close(epoll_fd);
    return status;
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = wake_fd;
  ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &event);
  std::shared_ptr<EventLoop> loop(new EventLoop(epoll_fd, wake_fd));
  loop->thread_ = std::thread([raw = loop.get()] { raw->run(); });
  return loop;
}

EventLoop::~EventLoop() {
  {
    std::lock_guard lock(dispatch_mutex_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // the last reference went away inside a handler
    } else {
      thread_.join();
    }
  }
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

Status EventLoop::add(int fd, std::function<void()> on_readable) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return errno_status(Errc::kIoError, "fcntl(O_NONBLOCK)");
  }
  auto handler = std::make_shared<std::function<void()>>(std::move(on_readable));
  const bool on_loop = thread_.get_id() == std::this_thread::get_id();
  std::unique_lock<std::mutex> lock(dispatch_mutex_, std::defer_lock);
  if (!on_loop) lock.lock();
  handlers_[fd] = std::move(handler);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    handlers_.erase(fd);
    return errno_status(Errc::kIoError, "epoll_ctl(ADD)");
  }
  return Status::ok();
}

void EventLoop::remove(int fd) {
  const bool on_loop = thread_.get_id() == std::this_thread::get_id();
  std::unique_lock<std::mutex> lock(dispatch_mutex_, std::defer_lock);
  if (!on_loop) lock.lock();
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(fd);
}

void EventLoop::run() {
  epoll_event events[32];
  for (;;) {
    const int n = ::epoll_wait(epoll_fd_, events, 32, 1000);
    if (n < 0 && errno != EINTR) return;
    std::lock_guard lock(dispatch_mutex_);
    if (stopping_) return;
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t value;
        [[maybe_unused]] ssize_t r = ::read(wake_fd_, &value, sizeof(value));
        continue;
      }
      // Looked up per event: an earlier handler of this batch may have removed this fd.
      auto it = handlers_.find(fd);
      if (it == handlers_.end()) continue;
      std::shared_ptr<std::function<void()>> handler = it->second;
      (*handler)();
    }
  }
}

}  // namespace wv::verbs::ib
