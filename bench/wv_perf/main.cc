// wv_perf: side-by-side performance measurements of wv (see DESIGN.md, "Performance").
// The subcommands are modules (subcommand.h); main only wires them to the command line.
#include <CLI/CLI.hpp>
#include <memory>
#include <vector>

#include "subcommand.h"

int main(int argc, char** argv) {
  using wv::perf::Subcommand;
  CLI::App app{
      "wv_perf: latency, bandwidth and message rate of wv, with a floor measured in "
      "the same run"};
  app.name("wv_perf");
  app.require_subcommand(1);

  std::vector<std::unique_ptr<Subcommand>> subcommands;
  subcommands.push_back(wv::perf::make_verbs_subcommand());

  wv::perf::CommonOptions common;
  for (auto& subcommand : subcommands) {
    CLI::App* command =
        app.add_subcommand(std::string(subcommand->name()), std::string(subcommand->description()));
    command->add_flag("--json", common.json,
                      "One JSON record per line: a header, then one per operation and size");
    command->add_option("--sizes", common.sizes,
                        "Message sizes, e.g. 8,4096,64K,1M (default 0 and powers of two to 1M)");
    command->add_option("--iterations", common.iterations,
                        "Timed iterations per size (default: 1000 for latency; bandwidth runs "
                        "are sized to take about 0.2 s)");
    command->add_option("--warmup", common.warmup,
                        "Untimed iterations before each measurement (default 100; bandwidth runs "
                        "without --iterations warm up while sizing themselves)");
    command
        ->add_option("--timeout", common.timeout_seconds,
                     "Seconds without progress after which a wait fails (a dead or stalled "
                     "peer ends the run with an error)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    command->add_flag("--pin", common.pin,
                      "Pin the two processes to different CPUs (the first and second allowed)");
    subcommand->add_options(*command);
  }
  CLI11_PARSE(app, argc, argv);

  for (auto& subcommand : subcommands) {
    if (app.got_subcommand(std::string(subcommand->name()))) return subcommand->run(common);
  }
  return wv::perf::kExitFailure;
}
