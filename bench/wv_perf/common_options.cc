#include <CLI/CLI.hpp>

#include "subcommand.h"

namespace wv::perf {

void add_common_options(CLI::App& command, CommonOptions& common) {
  command.add_flag("--json", common.json,
                   "One JSON record per line: a header, then one per operation and size");
  command.add_option("--sizes", common.sizes,
                     "Message sizes, e.g. 8,4096,64K,1M (default: the subcommand's list)");
  command.add_option("--iterations", common.iterations,
                     "Timed iterations per size (default: 1000 for latency; bandwidth runs "
                     "are sized to take about 0.2 s, and every coll size about 0.1 s)");
  command.add_option("--warmup", common.warmup,
                     "Untimed iterations before each measurement (default 100; bandwidth runs "
                     "without --iterations warm up while sizing themselves)");
  command
      .add_option("--timeout", common.timeout_seconds,
                  "Seconds without progress after which a wait fails (a dead or stalled "
                  "peer ends the run with an error)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command.add_flag("--pin", common.pin,
                   "Pin the two processes to different CPUs (the first and second allowed)");
}

}  // namespace wv::perf
