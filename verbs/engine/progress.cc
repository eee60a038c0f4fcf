#include "progress.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "wv/config/config.h"
#include "wv/config/names.h"

namespace wv::verbs::soft {

Progress::Progress() {
  // Room for the usual few connections up front: the first park check of a busy run must not
  // be the one that allocates.
  deadlines_.reserve(kReserved);
  running_tasks_.reserve(kReserved);
  due_.reserve(kReserved);
}

Progress::~Progress() {
  stop();
  if (thread_.joinable()) thread_.detach();  // only when the thread itself let go last
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void Progress::stop() {
  std::unordered_map<int, std::shared_ptr<PollHandler>> handlers;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    handlers.swap(handlers_);
  }
  if (thread_.joinable() && !on_progress_thread()) {
    wake();
    thread_.join();
  }
}

Status Progress::start() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return Status(Errc::kIoError, std::string("progress thread setup: ") + std::strerror(errno));
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = wake_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event);
  if (const auto& config = config::global(); config.is_ok()) {
    spin_us_ = config->get_int(config::names::kProgressSpinUs);
  }
  thread_ = std::thread([self = shared_from_this()] { self->loop(); });
  return Status::ok();
}

Status Progress::add(int fd, uint32_t events, std::shared_ptr<PollHandler> handler) {
  {
    std::lock_guard lock(mutex_);
    handlers_[fd] = std::move(handler);
  }
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    std::lock_guard lock(mutex_);
    handlers_.erase(fd);
    return Status(Errc::kIoError, std::string("epoll add: ") + std::strerror(errno));
  }
  return Status::ok();
}

Status Progress::modify(int fd, uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) != 0) {
    return Status(Errc::kIoError, std::string("epoll modify: ") + std::strerror(errno));
  }
  return Status::ok();
}

void Progress::remove(int fd) {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  std::shared_ptr<PollHandler> released;
  {
    std::lock_guard lock(mutex_);
    auto it = handlers_.find(fd);
    if (it == handlers_.end()) return;
    released = std::move(it->second);
    handlers_.erase(it);
    erase_deadline_locked(fd);
  }
  // The handler may be running on the progress thread right now; let it go there.
  if (!on_progress_thread()) post([released = std::move(released)] {});
}

void Progress::set_deadline(int fd, Clock::time_point when) {
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(deadlines_.begin(), deadlines_.end(),
                           [fd](const auto& entry) { return entry.first == fd; });
    if (it == deadlines_.end()) {
      deadlines_.emplace_back(fd, when);
    } else {
      it->second = when;
    }
  }
  if (!on_progress_thread()) wake();
}

void Progress::clear_deadline(int fd) {
  std::lock_guard lock(mutex_);
  erase_deadline_locked(fd);
}

void Progress::erase_deadline_locked(int fd) {
  auto it = std::find_if(deadlines_.begin(), deadlines_.end(),
                         [fd](const auto& entry) { return entry.first == fd; });
  if (it == deadlines_.end()) return;
  *it = deadlines_.back();
  deadlines_.pop_back();
}

void Progress::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  wake();
}

void Progress::run_sync(std::function<void()> task) {
  if (on_progress_thread() || !thread_.joinable()) {
    task();
    return;
  }
  std::mutex done_mutex;
  std::condition_variable done_cv;
  bool done = false;
  post([&] {
    task();
    std::lock_guard lock(done_mutex);
    done = true;
    done_cv.notify_one();
  });
  std::unique_lock lock(done_mutex);
  done_cv.wait(lock, [&] { return done; });
}

void Progress::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(wake_fd_, &one, sizeof(one));
}

void Progress::run_tasks() {
  {
    std::lock_guard lock(mutex_);
    running_tasks_.swap(tasks_);
  }
  for (auto& task : running_tasks_) task();
  running_tasks_.clear();  // keeps the capacity for the next swap
}

void Progress::fire_deadlines() {
  const auto now = Clock::now();
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < deadlines_.size();) {
      if (deadlines_[i].second <= now) {
        if (auto handler = handlers_.find(deadlines_[i].first); handler != handlers_.end()) {
          due_.push_back(handler->second);
        }
        deadlines_[i] = deadlines_.back();
        deadlines_.pop_back();
      } else {
        ++i;
      }
    }
  }
  for (auto& handler : due_) handler->on_deadline();
  due_.clear();
}

void Progress::loop() {
  constexpr int kBatch = 64;
  epoll_event events[kBatch];
  auto last_activity = Clock::now();
  for (;;) {
    int timeout_ms = -1;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      const auto now = Clock::now();
      for (const auto& [fd, when] : deadlines_) {
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(when - now).count();
        const int clamped = wait < 0 ? 0 : static_cast<int>(std::min<int64_t>(wait, 60'000));
        if (timeout_ms < 0 || clamped < timeout_ms) timeout_ms = clamped;
      }
    }
    // Spinning keeps latency low right after traffic; past the spin window the thread sleeps.
    const bool spin =
        spin_us_ > 0 && Clock::now() - last_activity < std::chrono::microseconds(spin_us_);
    const int n = ::epoll_wait(epoll_fd_, events, kBatch, spin ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR) return;
    if (n > 0) last_activity = Clock::now();
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t value = 0;
        [[maybe_unused]] ssize_t got = ::read(wake_fd_, &value, sizeof(value));
        continue;
      }
      std::shared_ptr<PollHandler> handler;
      {
        std::lock_guard lock(mutex_);
        auto it = handlers_.find(fd);
        if (it != handlers_.end()) handler = it->second;
      }
      if (handler) handler->on_events(events[i].events);
    }
    run_tasks();
    fire_deadlines();
  }
}

}  // namespace wv::verbs::soft
