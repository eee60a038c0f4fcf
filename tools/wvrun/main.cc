// wvrun: starts a wv job. Runs the job's key-value store, starts N ranks (here, or on other hosts
// through ssh) with their rank, size and the store's address and token in the environment, and
// ends the whole job when one rank fails, on Ctrl-C, or at --timeout.
//
// Exit status: 0 when every rank exited 0; otherwise the first failed rank's status (128+signal
// when it was killed), 128+signal when wvrun itself was signalled, 124 at --timeout, 2 for a
// usage error, 127 when the program cannot be found or started.
#include <fmt/format.h>
#include <netdb.h>
#include <pthread.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <csignal>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "launch_plan.h"
#include "placement.h"
#include "supervisor.h"
#include "wv/bootstrap/job_token.h"
#include "wv/bootstrap/store_server.h"

namespace {

constexpr int kUsageError = 2;
constexpr int kCannotStart = 127;

// An address of this host that the other hosts of the job can reach the store at.
std::optional<std::string> reachable_address() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return std::nullopt;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (::getaddrinfo(name, nullptr, &hints, &list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (addrinfo* ai = list; ai != nullptr && !found; ai = ai->ai_next) {
    char text[NI_MAXHOST];
    if (::getnameinfo(ai->ai_addr, ai->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) ==
            0 &&
        !std::string_view(text).starts_with("127.")) {
      found = text;
    }
  }
  ::freeaddrinfo(list);
  return found;
}

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace wv::wvrun;
  namespace bootstrap = wv::bootstrap;

  // Before any thread exists (the store's), so that every thread leaves these signals to the
  // supervisor's signalfd. SIGPIPE: a closed stdout must not kill the launcher mid-job.
  sigset_t signals = handled_signals();
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // An ignored signal is discarded, never queued for the signalfd: a shell starts background
  // commands with SIGINT ignored, and an ignored SIGCHLD would reap the ranks behind our back.
  for (int sig : {SIGINT, SIGTERM, SIGCHLD}) ::signal(sig, SIG_DFL);

  CLI::App app{"wvrun: start a wv job of N processes, here or on the hosts of a host list."};
  app.name("wvrun");
  int n = 0;
  std::string host_list;
  std::optional<std::string> provider;
  double timeout_s = 0;
  double grace_s = 3;
  bool tag_output = false;
  std::string store_address;
  std::string agent = "ssh -o BatchMode=yes";
  std::vector<std::string> command;
  app.add_option("-n,--np", n, "Number of processes (ranks)")
      ->required()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("-H,--host", host_list,
                 "Hosts and their slots, host:slots,... (ranks fill each host's slots in order; "
                 "hosts other than this one are reached with the launch agent)");
  app.add_option("--provider", provider, "Export WV_PROVIDER to every rank (tcp, shm, ibverbs)");
  app.add_option("--timeout", timeout_s, "End the job after this many seconds (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--grace", grace_s, "Seconds between SIGTERM and SIGKILL when the job is ended")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--tag-output", tag_output, "Prefix every output line with [rank]");
  app.add_option("--store-address", store_address,
                 "Numeric address to bind the job store to (default 127.0.0.1; for jobs that "
                 "span hosts, an address of this host they can reach)");
  app.add_option("--launch-agent", agent, "Command that runs a rank on another host")
      ->capture_default_str();
  // Parsing stops at the program: its own options (prog -n 3) are not wvrun's.
  app.prefix_command();
  app.footer("Usage: wvrun -n N [options] program [arguments...]");
  CLI11_PARSE(app, argc, argv);
  command = app.remaining();
  if (command.empty()) {
    fmt::print(stderr, "wvrun: no program given\nRun with --help for more information.\n");
    return kUsageError;
  }

  std::vector<HostSlots> hosts;
  if (!host_list.empty()) {
    auto parsed = parse_host_list(host_list);
    if (!parsed) {
      fmt::print(stderr, "wvrun: -H: {}\n", parsed.status().message());
      return kUsageError;
    }
    hosts = std::move(parsed).value();
  }
  auto placements = place_ranks(n, hosts);
  if (!placements) {
    fmt::print(stderr, "wvrun: {}\n", placements.status().message());
    return kUsageError;
  }
  bool remote = std::any_of(placements->begin(), placements->end(),
                            [](const Placement& p) { return !p.local; });

  // The store listens on loopback unless ranks on other hosts must reach it.
  if (store_address.empty()) {
    if (remote) {
      auto found = reachable_address();
      if (!found) {
        fmt::print(stderr,
                   "wvrun: the job spans hosts, but no non-loopback IPv4 address of this host "
                   "was found for the job store; pass --store-address\n");
        return kUsageError;
      }
      store_address = *found;
    } else {
      store_address = "127.0.0.1";
    }
  }

  std::string program_path;
  if (std::any_of(placements->begin(), placements->end(),
                  [](const Placement& p) { return p.local; })) {
    auto resolved = resolve_program(command.front());
    if (!resolved) {
      fmt::print(stderr, "wvrun: {}\n", resolved.status().message());
      return kCannotStart;
    }
    program_path = *resolved;
  }
  std::vector<std::string> agent_argv = split_words(agent);
  if (remote) {
    auto resolved = agent_argv.empty() ? wv::Result<std::string>(wv::Errc::kInvalidArgument,
                                                                 "--launch-agent is empty")
                                       : resolve_program(agent_argv.front());
    if (!resolved) {
      fmt::print(stderr, "wvrun: launch agent: {}\n", resolved.status().message());
      return kCannotStart;
    }
    agent_argv.front() = *resolved;
  }

  auto token = bootstrap::generate_job_token();
  auto job_suffix = bootstrap::random_hex(6);
  if (!token || !job_suffix) {
    fmt::print(stderr, "wvrun: no randomness for the job token: {}\n",
               (!token ? token.status() : job_suffix.status()).message());
    return 1;
  }
  bootstrap::StoreServerOptions store_options;
  store_options.size = n;
  store_options.token = *token;
  store_options.bind_address = store_address;
  auto server = bootstrap::StoreServer::start(store_options);
  if (!server) {
    fmt::print(stderr, "wvrun: cannot start the job store: {}\n", server.status().message());
    return 1;
  }

  JobEnvironment job;
  job.size = n;
  job.store = (*server)->address();
  job.token = bootstrap::to_hex(*token);
  job.job_id = "wv-" + *job_suffix;
  job.provider = provider;
  std::vector<ChildSpec> children;
  for (const Placement& p : *placements) {
    children.push_back(p.local ? local_child(p, job, program_path, command)
                               : remote_child(p, job, agent_argv, command.front(), command));
  }

  SuperviseOptions options;
  options.tag_output = tag_output;
  options.timeout = std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000));
  options.grace = std::chrono::milliseconds(static_cast<long long>(grace_s * 1000));
  std::fflush(stdout);
  return supervise(children, options);
}
