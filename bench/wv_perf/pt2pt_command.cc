// `wv_perf pt2pt`: latency, bandwidth, bi-directional bandwidth and message rate of wv's tagged
// API between the two ranks of a job (wvrun -n 2, or mpirun -n 2 through PMIx). The loops are
// pt2pt_driver's, shared with wv_mpi_perf, so the two tables compare like for like.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <string>

#include "process.h"
#include "pt2pt_driver.h"
#include "pt2pt_wv_link.h"
#include "subcommand.h"
#include "wv/comm.h"
#include "wv/transport/protocol.h"

namespace wv::perf {
namespace {

class Pt2ptSubcommand final : public Subcommand {
 public:
  std::string_view name() const override { return "pt2pt"; }
  std::string_view description() const override {
    return "Tagged point-to-point latency, bandwidth, bi-directional bandwidth and message rate "
           "of wv between two ranks (run under wvrun -n 2)";
  }
  void add_options(CLI::App& command) override {
    add_pt2pt_options(command, options_);
    command.add_option("--provider", provider_,
                       "Provider of this process's worker (default: WV_PROVIDER / the "
                       "configuration; wvrun --provider sets it for the job)");
  }
  int run(const CommonOptions& common) override;

 private:
  Pt2ptOptions options_;
  std::string provider_;
};

int Pt2ptSubcommand::run(const CommonOptions& common) {
  signal(SIGPIPE, SIG_IGN);
  Comm::Options comm_options;
  comm_options.worker.provider = provider_;
  comm_options.timeout = common.timeout();
  auto init = Comm::init(comm_options);
  if (!init) {
    fmt::print(stderr, "wv_perf pt2pt: joining the job: {}\n", init.status().to_string());
    return kExitFailure;
  }
  Comm& comm = *init.value();
  if (comm.size() != 2) {
    fmt::print(stderr,
               "wv_perf pt2pt: needs exactly 2 ranks (this job has {}); run it as "
               "wvrun -n 2 wv_perf pt2pt\n",
               comm.size());
    return kExitFailure;
  }
  if (common.pin) {
    const std::vector<int> cpus = allowed_cpus();
    if (cpus.size() >= 2) {
      if (Status s = pin_to_cpu(cpus[static_cast<size_t>(comm.rank())]); !s) {
        fmt::print(stderr, "wv_perf pt2pt: {}\n", s.message());
        return kExitFailure;
      }
    }
  }
  transport::Worker& worker = comm.worker();
  const transport::ProtocolThresholds thresholds = worker.thresholds();

  Pt2ptRun run;
  run.common = &common;
  run.options = &options_;
  run.header.provider = std::string(worker.provider_name());
  run.header.device = "wv tagged API (wv::Comm)";
  run.header.processes.push_back(
      {.role = "rank 0", .host = host_name(), .pid = getpid(), .cpus = cpu_list(allowed_cpus())});
  run.header.details["thresholds"] = fmt::format(
      "inline <= {} B, eager <= {} B, rendezvous {} in {} B fragments", thresholds.inline_limit,
      thresholds.eager_limit, transport::to_string(thresholds.scheme), thresholds.fragment_size);
  run.header.details["baseline"] =
      "none (compare with wv_mpi_perf pt2pt under mpirun; see bench/README.md)";
  run.path_of = [thresholds](uint64_t size) {
    return std::string(transport::to_string(thresholds.path_for(size)));
  };

  WvLink link(comm);
  if (Status s = run_pt2pt(link, run); !s) {
    fmt::print(stderr, "wv_perf pt2pt rank {}: {}\n", comm.rank(), s.to_string());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

std::unique_ptr<Subcommand> make_pt2pt_subcommand() {
  return std::make_unique<Pt2ptSubcommand>();
}

}  // namespace wv::perf
