#include "supervisor.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "line_tagger.h"

namespace wv::wvrun {
namespace {

using Clock = std::chrono::steady_clock;

struct Running {
  const ChildSpec* spec = nullptr;
  pid_t pid = -1;
  bool reaped = false;
};

struct OutputStream {
  int fd = -1;
  std::unique_ptr<LineTagger> tagger;
};

std::string describe(const Running& child) {
  return child.spec->host.empty() ? fmt::format("rank {} (pid {})", child.spec->rank, child.pid)
                                  : fmt::format("rank {} on {} (pid {} of the launch agent)",
                                                child.spec->rank, child.spec->host, child.pid);
}

// Everything a child does between fork and exec, async-signal-safe only.
[[noreturn]] void exec_child(const ChildSpec& spec, char* const* argv, char* const* envp,
                             pid_t group, pid_t parent, int stdin_fd, int out_fd, int err_fd) {
  ::setpgid(0, group);
  // If wvrun dies without cleaning up (SIGKILL), its ranks must not live on as orphans.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  ::dup2(stdin_fd, STDIN_FILENO);
  if (out_fd >= 0) ::dup2(out_fd, STDOUT_FILENO);
  if (err_fd >= 0) ::dup2(err_fd, STDERR_FILENO);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGQUIT})
    ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(spec.path.c_str(), argv, envp);
  // Only write(2) here: say why, then report 127 as shells do for "cannot execute".
  const char* prefix = "wvrun: cannot execute ";
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, prefix, std::strlen(prefix));
  n = ::write(STDERR_FILENO, spec.path.c_str(), spec.path.size());
  const char* why = ": ";
  n = ::write(STDERR_FILENO, why, 2);
  const char* error = std::strerror(errno);
  n = ::write(STDERR_FILENO, error, std::strlen(error));
  n = ::write(STDERR_FILENO, "\n", 1);
  ::_exit(127);
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

class Supervisor {
 public:
  Supervisor(const std::vector<ChildSpec>& children, const SuperviseOptions& options)
      : specs_(children), options_(options) {}

  int run() {
    sigset_t signals = handled_signals();
    signal_fd_ = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) return fail_setup("signalfd");
    null_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd_ < 0) return fail_setup("open /dev/null");
    start_ = Clock::now();
    for (const ChildSpec& spec : specs_) {
      if (!launch(spec)) {
        begin_termination(127, "");
        break;
      }
    }
    loop();
    ::close(signal_fd_);
    ::close(null_fd_);
    return exit_code_;
  }

 private:
  int fail_setup(const char* what) {
    fmt::print(stderr, "wvrun: {}: {}\n", what, std::strerror(errno));
    return 1;
  }

  bool launch(const ChildSpec& spec) {
    int out_pipe[2] = {-1, -1};
    int err_pipe[2] = {-1, -1};
    if (options_.tag_output &&
        (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0)) {
      fmt::print(stderr, "wvrun: pipe for rank {}: {}\n", spec.rank, std::strerror(errno));
      return false;
    }
    auto argv = c_strings(spec.argv);
    auto envp = c_strings(spec.env);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      fmt::print(stderr, "wvrun: fork for rank {}: {}\n", spec.rank, std::strerror(errno));
      return false;
    }
    if (pid == 0) {
      exec_child(spec, argv.data(), envp.data(), group_, parent, null_fd_, out_pipe[1],
                 err_pipe[1]);
    }
    // Also set from this side, so the group exists before the next fork or a kill.
    ::setpgid(pid, group_ == 0 ? pid : group_);
    if (group_ == 0) group_ = pid;
    children_.push_back({&spec, pid, false});
    if (options_.tag_output) {
      ::close(out_pipe[1]);
      ::close(err_pipe[1]);
      streams_.push_back({out_pipe[0], std::make_unique<LineTagger>(spec.rank, STDOUT_FILENO)});
      streams_.push_back({err_pipe[0], std::make_unique<LineTagger>(spec.rank, STDERR_FILENO)});
    }
    return true;
  }

  bool all_reaped() const {
    return std::all_of(children_.begin(), children_.end(),
                       [](const Running& c) { return c.reaped; });
  }

  void loop() {
    std::optional<Clock::time_point> drain_deadline;
    for (;;) {
      if (all_reaped()) {
        // Output still buffered in the pipes belongs to the job; a grandchild that keeps a pipe
        // open must not keep wvrun alive, hence the bound.
        if (streams_.empty()) return;
        if (!drain_deadline) drain_deadline = Clock::now() + std::chrono::seconds(2);
        if (Clock::now() >= *drain_deadline) return;
      }
      std::vector<pollfd> fds;
      fds.push_back({signal_fd_, POLLIN, 0});
      for (const auto& s : streams_) fds.push_back({s.fd, POLLIN, 0});
      int n = ::poll(fds.data(), fds.size(), next_wakeup_ms(drain_deadline));
      if (n < 0 && errno != EINTR) {
        fmt::print(stderr, "wvrun: poll: {}\n", std::strerror(errno));
        begin_termination(1, "");
      }
      if (n > 0) {
        if (fds[0].revents & POLLIN) read_signals();
        for (std::size_t i = 1; i < fds.size(); ++i) {
          if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_stream(i - 1);
        }
        std::erase_if(streams_, [](const OutputStream& s) { return s.fd < 0; });
      }
      check_deadlines();
    }
  }

  int next_wakeup_ms(const std::optional<Clock::time_point>& drain_deadline) const {
    auto now = Clock::now();
    auto next = now + std::chrono::seconds(1);
    if (options_.timeout.count() > 0 && !terminating_)
      next = std::min(next, start_ + options_.timeout);
    if (kill_deadline_) next = std::min(next, *kill_deadline_);
    if (drain_deadline) next = std::min(next, *drain_deadline);
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
    return static_cast<int>(std::max<long long>(ms, 0));
  }

  void read_signals() {
    signalfd_siginfo info;
    while (::read(signal_fd_, &info, sizeof info) == sizeof info) {
      int sig = static_cast<int>(info.ssi_signo);
      if (sig == SIGCHLD) {
        reap();
      } else if (!terminating_) {
        begin_termination(128 + sig, fmt::format("wvrun: {} received; ending the job",
                                                 sigabbrev_np(sig) ? sigabbrev_np(sig) : "signal"));
      } else if (!killed_) {
        // A second Ctrl-C: the user does not want to wait out the grace period.
        kill_all(SIGKILL);
      }
    }
  }

  void reap() {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      auto it = std::find_if(children_.begin(), children_.end(),
                             [pid](const Running& c) { return c.pid == pid; });
      if (it == children_.end()) continue;
      it->reaped = true;
      bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
      if (!failed || terminating_) continue;
      if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        begin_termination(128 + sig,
                          fmt::format("wvrun: {} killed by signal {} ({}); ending the job",
                                      describe(*it), sig, strsignal(sig)));
      } else {
        begin_termination(WEXITSTATUS(status),
                          fmt::format("wvrun: {} exited with status {}; ending the job",
                                      describe(*it), WEXITSTATUS(status)));
      }
    }
  }

  void read_stream(std::size_t index) {
    OutputStream& s = streams_[index];
    char buffer[16 * 1024];
    ssize_t n = ::read(s.fd, buffer, sizeof buffer);
    if (n > 0) {
      s.tagger->feed(std::string_view(buffer, static_cast<std::size_t>(n)));
      return;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    s.tagger->finish();
    ::close(s.fd);
    s.fd = -1;
  }

  void check_deadlines() {
    auto now = Clock::now();
    if (!terminating_ && options_.timeout.count() > 0 && now >= start_ + options_.timeout) {
      begin_termination(kTimeoutExit,
                        fmt::format("wvrun: the job exceeded --timeout {} s; ending it",
                                    std::chrono::duration<double>(options_.timeout).count()));
    }
    if (kill_deadline_ && !killed_ && now >= *kill_deadline_) kill_all(SIGKILL);
  }

  void begin_termination(int exit_code, const std::string& message) {
    if (terminating_) return;
    terminating_ = true;
    exit_code_ = exit_code;
    if (!message.empty()) fmt::print(stderr, "{}\n", message);
    std::fflush(stderr);
    if (all_reaped()) return;
    kill_all(SIGTERM);
    kill_deadline_ = Clock::now() + options_.grace;
  }

  void kill_all(int sig) {
    if (sig == SIGKILL) killed_ = true;
    // While any rank is unreaped the group exists and is ours; after that its id may be reused.
    if (group_ != 0 && !all_reaped()) ::killpg(group_, sig);
    // A rank that left the group (setsid) is still signalled directly.
    for (const auto& c : children_) {
      if (!c.reaped) ::kill(c.pid, sig);
    }
  }

  const std::vector<ChildSpec>& specs_;
  SuperviseOptions options_;
  int signal_fd_ = -1;
  int null_fd_ = -1;
  pid_t group_ = 0;
  std::vector<Running> children_;
  std::vector<OutputStream> streams_;
  Clock::time_point start_;
  bool terminating_ = false;
  bool killed_ = false;
  std::optional<Clock::time_point> kill_deadline_;
  int exit_code_ = 0;
};

}  // namespace

sigset_t handled_signals() {
  sigset_t set;
  ::sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::sigaddset(&set, sig);
  return set;
}

int supervise(const std::vector<ChildSpec>& children, const SuperviseOptions& options) {
  return Supervisor(children, options).run();
}

}  // namespace wv::wvrun
