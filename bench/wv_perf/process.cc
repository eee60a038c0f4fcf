#include "process.h"

#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

namespace wv::perf {

Status stalled(std::string_view waiting_for, std::chrono::nanoseconds limit) {
  return Status(Errc::kTimedOut,
                fmt::format("no progress for {:.1f} s while waiting for {} (peer dead or stalled; "
                            "see --timeout)",
                            std::chrono::duration<double>(limit).count(), waiting_for));
}

std::string cpu_list(const std::vector<int>& cpus) {
  std::string text;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!text.empty()) text += ',';
    text += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return text.empty() ? "?" : text;
}

Status pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    return Status(Errc::kIoError,
                  fmt::format("cannot pin to CPU {}: {}", cpu, std::strerror(errno)));
  }
  return Status::ok();
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

Result<Child> Child::spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return Status(Errc::kIoError, fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The parent may have died before prctl took effect.
    if (getppid() != parent) _exit(1);
    const int rc = body();
    std::fflush(nullptr);
    _exit(rc);
  }
  return Child(pid);
}

Child::~Child() {
  if (pid_ > 0) kill();
}

void Child::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

Result<int> Child::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return Status(Errc::kInvalidState, "no child to wait for");
  const Clock::time_point end = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    if (done < 0 && errno != EINTR) {
      pid_ = -1;
      return Status(Errc::kIoError, fmt::format("waitpid: {}", std::strerror(errno)));
    }
    if (Clock::now() >= end) {
      kill();
      return Status(Errc::kTimedOut, fmt::format("server process did not exit within {} ms; "
                                                 "killed it",
                                                 timeout.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status write_exact(int fd, const void* data, size_t length) {
  const auto* bytes = static_cast<const char*>(data);
  while (length > 0) {
    const ssize_t n = ::write(fd, bytes, length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status(Errc::kIoError, fmt::format("write: {}", std::strerror(errno)));
    bytes += n;
    length -= static_cast<size_t>(n);
  }
  return Status::ok();
}

Status read_exact(int fd, void* data, size_t length, std::chrono::milliseconds timeout) {
  auto* bytes = static_cast<char*>(data);
  const Clock::time_point end = Clock::now() + timeout;
  while (length > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) {
      return Status(Errc::kTimedOut, fmt::format("nothing to read within {} ms", timeout.count()));
    }
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return Status(Errc::kIoError, fmt::format("poll: {}", std::strerror(errno)));
    if (ready == 0) continue;
    const ssize_t n = ::read(fd, bytes, length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status(Errc::kIoError, fmt::format("read: {}", std::strerror(errno)));
    if (n == 0) return Status(Errc::kDisconnected, "the other end closed before writing");
    bytes += n;
    length -= static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace wv::perf
