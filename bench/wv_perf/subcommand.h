// How wv_perf is put together: each subcommand (verbs now; pt2pt and coll later) is a module
// that adds its own options and runs; the options every subcommand shares, the reporting
// (report.h), the process plumbing (process.h) and the TCP floor (tcp_baseline.h) are common.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "wv/result.h"

namespace CLI {
class App;
}

namespace wv::perf {

struct CommonOptions {
  bool json = false;
  std::string sizes;        // "" means the subcommand's default list
  int64_t iterations = -1;  // -1: the subcommand chooses (latency: fixed, bandwidth: timed)
  int64_t warmup = -1;      // -1: the subcommand's default
  double timeout_seconds = 60;
  bool pin = false;

  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  }
};

// Exit statuses shared by all subcommands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // the benchmark could not run or complete
inline constexpr int kExitConfigError = 2;  // like wv_info: the configuration is unusable

class Subcommand {
 public:
  virtual ~Subcommand() = default;
  virtual std::string_view name() const = 0;
  virtual std::string_view description() const = 0;
  // Adds the subcommand's own options to its CLI11 subcommand.
  virtual void add_options(CLI::App& command) = 0;
  // Runs after parsing; returns the process exit status.
  virtual int run(const CommonOptions& common) = 0;
};

std::unique_ptr<Subcommand> make_verbs_subcommand();
std::unique_ptr<Subcommand> make_pt2pt_subcommand();
std::unique_ptr<Subcommand> make_coll_subcommand();

// Adds the CommonOptions flags (--json, --sizes, --iterations, ...) to a (sub)command; also
// used by wv_mpi_perf so that both programs take the same options.
void add_common_options(CLI::App& command, CommonOptions& common);

// "8,4096,64K,1MiB" -> sizes in bytes, in the order given (duplicates removed).
Result<std::vector<uint64_t>> parse_sizes(std::string_view text);
// 0, 1, 2, 4, ... up to and including `max`.
std::vector<uint64_t> power_of_two_sizes(uint64_t max);

}  // namespace wv::perf
