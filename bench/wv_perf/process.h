// Process plumbing shared by the subcommands: bounded waiting, CPU pinning, and a forked peer
// that is always reaped (or killed) however the parent leaves.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "wv/cpus.h"  // allowed_cpus()
#include "wv/result.h"

namespace wv::perf {

using Clock = std::chrono::steady_clock;

// Bounds a busy wait by the time since the last progress, so that a dead or stalled peer ends
// the run while a long but moving benchmark does not. Reading the clock costs about as much as
// an empty CQ poll, so idle() looks at it only once every kSpinsPerCheck calls; progress() is
// a plain store, cheap enough for every completion.
class StallGuard {
 public:
  explicit StallGuard(std::chrono::nanoseconds limit) : limit_(limit), last_(Clock::now()) {}

  void progress() { progressed_ = true; }
  // Call on every empty poll; true once nothing progressed for the limit.
  bool idle() {
    if ((++spins_ & (kSpinsPerCheck - 1)) != 0) return false;
    const Clock::time_point now = Clock::now();
    if (progressed_) {
      progressed_ = false;
      last_ = now;
      return false;
    }
    return now - last_ >= limit_;
  }
  std::chrono::nanoseconds limit() const { return limit_; }

 private:
  static constexpr uint32_t kSpinsPerCheck = 256;
  std::chrono::nanoseconds limit_;
  Clock::time_point last_;
  uint32_t spins_ = 0;
  bool progressed_ = false;
};

// The "no progress for N s" error every bounded wait reports.
Status stalled(std::string_view waiting_for, std::chrono::nanoseconds limit);

// "0-3,6".
std::string cpu_list(const std::vector<int>& cpus);
// Pins the calling thread, and so every thread it creates afterwards, to `cpu`.
Status pin_to_cpu(int cpu);
std::string host_name();

// A forked child running one function; the destructor kills and reaps a child still running,
// so no exit path of the parent leaves it behind.
class Child {
 public:
  // Flushes stdio first, so that the child does not print the parent's buffered output again.
  // The child gets SIGKILL if the parent dies, and leaves with _exit(body()).
  static Result<Child> spawn(const std::function<int()>& body);

  Child(Child&& other) noexcept : pid_(other.pid_) { other.pid_ = -1; }
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  // The child's exit status; kills it if it has not exited within `timeout`.
  Result<int> wait(std::chrono::milliseconds timeout);
  void kill();

 private:
  explicit Child(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// A pipe end that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset();

 private:
  int fd_ = -1;
};

// Writes / reads exactly `length` bytes; the read is bounded by `timeout` and fails on EOF.
Status write_exact(int fd, const void* data, size_t length);
Status read_exact(int fd, void* data, size_t length, std::chrono::milliseconds timeout);

}  // namespace wv::perf
