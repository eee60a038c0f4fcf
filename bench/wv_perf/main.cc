// wv_perf: side-by-side performance measurements of wv (see DESIGN.md, "Performance").
// The subcommands are modules (subcommand.h); main only wires them to the command line.
#include <CLI/CLI.hpp>
#include <memory>
#include <vector>

#include "subcommand.h"

int main(int argc, char** argv) {
  using wv::perf::add_common_options;
  using wv::perf::Subcommand;
  CLI::App app{
      "wv_perf: latency, bandwidth and message rate of wv, with a floor measured in "
      "the same run"};
  app.name("wv_perf");
  app.require_subcommand(1);

  std::vector<std::unique_ptr<Subcommand>> subcommands;
  subcommands.push_back(wv::perf::make_verbs_subcommand());
  subcommands.push_back(wv::perf::make_pt2pt_subcommand());
  subcommands.push_back(wv::perf::make_coll_subcommand());

  wv::perf::CommonOptions common;
  for (auto& subcommand : subcommands) {
    CLI::App* command =
        app.add_subcommand(std::string(subcommand->name()), std::string(subcommand->description()));
    add_common_options(*command, common);
    subcommand->add_options(*command);
  }
  CLI11_PARSE(app, argc, argv);

  for (auto& subcommand : subcommands) {
    if (app.got_subcommand(std::string(subcommand->name()))) return subcommand->run(common);
  }
  return wv::perf::kExitFailure;
}
