// A unit test that needs a second process re-executes its own binary as a child that runs only
// that test, with its role and the write end of a pipe to report on in the environment. The test
// body starts by checking for the role (then it is the child). The child gets SIGKILL when its
// parent dies, so no failed assertion leaves it behind.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <string>

namespace wv::verbs::test {

// Starts the child: `filter` names the test (gtest --gtest_filter), `role` goes into
// `role_variable`, the pipe's write end into `pipe_variable`. Sets *pid and *pipe_read.
inline void start_child_test(const std::string& filter, const char* role_variable,
                             const std::string& role, const char* pipe_variable, pid_t* pid,
                             int* pipe_read) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  const pid_t parent = ::getpid();
  *pid = ::fork();
  ASSERT_GE(*pid, 0);
  if (*pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    ::fcntl(fds[1], F_SETFD, 0);
    const std::string role_entry = std::string(role_variable) + "=" + role;
    const std::string pipe_entry = std::string(pipe_variable) + "=" + std::to_string(fds[1]);
    const std::string filter_argument = "--gtest_filter=" + filter;
    char* argv[] = {const_cast<char*>("child"), const_cast<char*>(filter_argument.c_str()),
                    nullptr};
    char* envp[] = {const_cast<char*>(role_entry.c_str()), const_cast<char*>(pipe_entry.c_str()),
                    nullptr};
    ::execve("/proc/self/exe", argv, envp);
    ::_exit(127);
  }
  ::close(fds[1]);
  *pipe_read = fds[0];
}

}  // namespace wv::verbs::test
