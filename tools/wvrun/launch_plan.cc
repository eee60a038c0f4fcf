#include "launch_plan.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>

#include "wv/config/config.h"

extern char** environ;

namespace wv::wvrun {
namespace {

bool is_job_variable(std::string_view entry) {
  auto eq = entry.find('=');
  std::string_view name = entry.substr(0, eq);
  for (std::string_view reserved : config::reserved_environment()) {
    if (name == reserved) return true;
  }
  return name == "WV_PROVIDER";
}

}  // namespace

Result<std::string> resolve_program(std::string_view program) {
  if (program.empty()) return Result<std::string>(Errc::kInvalidArgument, "no program given");
  if (program.find('/') != std::string_view::npos) {
    std::string path(program);
    if (::access(path.c_str(), X_OK) != 0) {
      return Result<std::string>(errno_status(Errc::kNotFound, fmt::format("'{}'", program)));
    }
    return path;
  }
  const char* path_env = std::getenv("PATH");
  std::string_view dirs = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    auto colon = dirs.find(':');
    std::string_view dir = dirs.substr(0, colon);
    std::string candidate = fmt::format("{}/{}", dir.empty() ? "." : dir, program);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) break;
    dirs = dirs.substr(colon + 1);
  }
  return Result<std::string>(Errc::kNotFound,
                             fmt::format("'{}': command not found in PATH", program));
}

std::vector<std::string> rank_variables(const Placement& placement, const JobEnvironment& job) {
  std::vector<std::string> vars = {
      fmt::format("WV_RANK={}", placement.rank),
      fmt::format("WV_SIZE={}", job.size),
      fmt::format("WV_LOCAL_RANK={}", placement.local_rank),
      fmt::format("WV_LOCAL_SIZE={}", placement.local_size),
      fmt::format("WV_JOB_STORE={}", job.store),
      fmt::format("WV_JOB_TOKEN={}", job.token),
      fmt::format("WV_JOB_ID={}", job.job_id),
  };
  if (job.provider) vars.push_back(fmt::format("WV_PROVIDER={}", *job.provider));
  return vars;
}

ChildSpec local_child(const Placement& placement, const JobEnvironment& job,
                      const std::string& program_path, const std::vector<std::string>& args) {
  ChildSpec spec;
  spec.rank = placement.rank;
  spec.path = program_path;
  spec.argv = args;
  // Variables of an enclosing job (wvrun started from inside a wvrun job) must not leak in.
  for (char** e = environ; *e != nullptr; ++e) {
    if (!is_job_variable(*e)) spec.env.emplace_back(*e);
  }
  for (auto& v : rank_variables(placement, job)) spec.env.push_back(std::move(v));
  return spec;
}

ChildSpec remote_child(const Placement& placement, const JobEnvironment& job,
                       const std::vector<std::string>& agent, const std::string& program,
                       const std::vector<std::string>& args) {
  ChildSpec spec;
  spec.rank = placement.rank;
  spec.host = placement.host;
  spec.path = agent.front();
  spec.argv = agent;
  spec.argv.push_back(placement.host);
  spec.argv.push_back("env");
  // Our own wv settings (WV_PROVIDER=..., WV_LOG_LEVEL=...) apply to remote ranks as well.
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (entry.starts_with("WV_") && !is_job_variable(entry))
      spec.argv.push_back(shell_quote(entry));
  }
  for (auto& v : rank_variables(placement, job)) spec.argv.push_back(shell_quote(v));
  spec.argv.push_back(shell_quote(program));
  for (std::size_t i = 1; i < args.size(); ++i) spec.argv.push_back(shell_quote(args[i]));
  for (char** e = environ; *e != nullptr; ++e) {
    if (!is_job_variable(*e)) spec.env.emplace_back(*e);
  }
  return spec;
}

std::string shell_quote(std::string_view word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

}  // namespace wv::wvrun
