// What each rank's process is: the program to exec, its arguments and its environment. Built
// entirely before fork(), because wvrun is multi-threaded (the store runs on its own thread)
// and a forked child may only make async-signal-safe calls before exec.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "placement.h"
#include "wv/result.h"

namespace wv::wvrun {

// The variables every rank gets besides its own rank numbers.
struct JobEnvironment {
  int size = 1;
  std::string store;  // host:port of the job's store
  std::string token;  // hex
  std::string job_id;
  std::optional<std::string> provider;
};

struct ChildSpec {
  int rank = 0;
  std::string host;  // for messages; empty for this host
  std::string path;  // what execve runs
  std::vector<std::string> argv;
  std::vector<std::string> env;  // NAME=value
};

// The absolute path execve needs: `program` itself when it has a '/', else a PATH search.
Result<std::string> resolve_program(std::string_view program);

// NAME=value pairs for `placement` (WV_RANK ... WV_PROVIDER).
std::vector<std::string> rank_variables(const Placement& placement, const JobEnvironment& job);

// A rank on this host: our environment (minus stale job variables) plus the rank's variables.
ChildSpec local_child(const Placement& placement, const JobEnvironment& job,
                      const std::string& program_path, const std::vector<std::string>& args);

// A rank on another host, through `agent` (e.g. {"/usr/bin/ssh"}):
//   agent host env WV_...=... [other WV_* settings of ours] program args...
// ssh hands the remote shell one string, so every word is shell-quoted.
ChildSpec remote_child(const Placement& placement, const JobEnvironment& job,
                       const std::vector<std::string>& agent, const std::string& program,
                       const std::vector<std::string>& args);

std::string shell_quote(std::string_view word);

}  // namespace wv::wvrun
