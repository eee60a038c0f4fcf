// wv_mpi_perf: the wv_perf measurements with MPI instead of wv, so that Open MPI's transports
// (pml ob1 with btl vader or tcp, pml ucx) print the same table beside `wv_perf pt2pt`:
//
//   mpirun -n 2 --mca pml ob1 --mca btl self,vader wv_mpi_perf [pt2pt] [--sizes ...] [--json]
//
// Subcommands mirror wv_perf's (pt2pt, the default, and coll); rma has no wv_perf twin: it
// measures MPI one-sided gets through osc (rma_get.h).
#include <fmt/format.h>
#include <mpi.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <string>
#include <vector>

#include "coll_driver.h"
#include "mpi_coll_link.h"
#include "mpi_link.h"
#include "process.h"
#include "pt2pt_driver.h"
#include "rma_get.h"
#include "subcommand.h"

namespace {

using wv::perf::kExitFailure;
using wv::perf::kExitOk;

// What MPI transport this run uses, as far as the environment tells (mpirun --mca X Y exports
// OMPI_MCA_X=Y to the ranks).
std::string transport_name() {
  auto env = [](const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' ? std::string(value) : std::string("default");
  };
  return fmt::format("mpi pml {} btl {}", env("OMPI_MCA_pml"), env("OMPI_MCA_btl"));
}

std::string library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string version(text, static_cast<size_t>(length));
  const size_t comma = version.find_first_of(",\n");
  return comma == std::string::npos ? version : version.substr(0, comma);
}

int run_pt2pt(const wv::perf::CommonOptions& common, const wv::perf::Pt2ptOptions& options) {
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    if (rank == 0) {
      fmt::print(stderr, "wv_mpi_perf pt2pt: needs exactly 2 ranks (this job has {})\n", size);
    }
    return kExitFailure;
  }
  if (common.pin) {
    const std::vector<int> cpus = wv::allowed_cpus();
    if (cpus.size() >= 2) {
      if (wv::Status s = wv::perf::pin_to_cpu(cpus[static_cast<size_t>(rank)]); !s) {
        fmt::print(stderr, "wv_mpi_perf: {}\n", s.message());
        return kExitFailure;
      }
    }
  }
  wv::perf::Pt2ptRun run;
  run.common = &common;
  run.options = &options;
  run.benchmark = "pt2pt (wv_mpi_perf)";
  run.header.provider = transport_name();
  run.header.device = library_version();
  run.header.processes.push_back({.role = "rank 0",
                                  .host = wv::perf::host_name(),
                                  .pid = getpid(),
                                  .cpus = wv::perf::cpu_list(wv::allowed_cpus())});
  run.header.details["baseline"] = "none (this is the comparison for wv_perf pt2pt)";
  wv::perf::MpiLink link(rank, common.timeout());
  if (wv::Status s = wv::perf::run_pt2pt(link, run); !s) {
    fmt::print(stderr, "wv_mpi_perf pt2pt rank {}: {}\n", rank, s.to_string());
    return kExitFailure;
  }
  return kExitOk;
}

int run_coll(const wv::perf::CommonOptions& common, const wv::perf::CollOptions& options) {
  wv::perf::MpiCollLink link;
  wv::perf::CollRun run;
  run.common = &common;
  run.options = &options;
  run.benchmark = "coll (wv_mpi_perf)";
  run.transport = transport_name() + " coll " +
                  (std::getenv("OMPI_MCA_coll") ? std::getenv("OMPI_MCA_coll") : "default");
  run.notes = library_version();
  if (wv::Status s = wv::perf::run_coll(link, run); !s) {
    fmt::print(stderr, "wv_mpi_perf coll rank {}: {}\n", link.rank(), s.to_string());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wv_mpi_perf: wv_perf's measurements over MPI, for side-by-side tables"};
  app.name("wv_mpi_perf");
  app.require_subcommand(0, 1);
  wv::perf::CommonOptions common;
  wv::perf::Pt2ptOptions pt2pt_options;
  CLI::App* pt2pt = app.add_subcommand(
      "pt2pt",
      "Point-to-point latency, bandwidth, bi-directional bandwidth and message rate "
      "between two ranks (the default)");
  wv::perf::add_common_options(*pt2pt, common);
  wv::perf::add_pt2pt_options(*pt2pt, pt2pt_options);
  wv::perf::CommonOptions coll_common;
  wv::perf::CollOptions coll_options;
  CLI::App* coll = app.add_subcommand(
      "coll", "Collectives (time, algbw, busbw per NCCL) from 8 B to 64 MiB, like wv_perf coll");
  wv::perf::add_common_options(*coll, coll_common);
  wv::perf::add_coll_options(*coll, coll_options);
  wv::perf::CommonOptions rma_common;
  wv::perf::RmaOptions rma_options;
  CLI::App* rma = app.add_subcommand(
      "rma", "MPI_Get latency through osc (passive target) while the target computes or waits");
  wv::perf::add_common_options(*rma, rma_common);
  wv::perf::add_rma_options(*rma, rma_options);

  // pt2pt is the default: `wv_mpi_perf --sizes 8` means `wv_mpi_perf pt2pt --sizes 8`.
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool help = !args.empty() && (args[0] == "-h" || args[0] == "--help");
  if (!help && (args.empty() || (args[0] != "pt2pt" && args[0] != "coll" && args[0] != "rma")))
    args.insert(args.begin(), "pt2pt");
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // Parse before MPI_Init so that --help and bad options work without a job.
  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    fmt::print(stderr, "wv_mpi_perf: MPI_Init_thread failed\n");
    return kExitFailure;
  }
  int status = kExitOk;
  if (pt2pt->parsed()) status = run_pt2pt(common, pt2pt_options);
  if (coll->parsed()) status = run_coll(coll_common, coll_options);
  if (rma->parsed()) status = wv::perf::run_rma(rma_common, rma_options);
  if (status != kExitOk) MPI_Abort(MPI_COMM_WORLD, status);
  MPI_Finalize();
  return status;
}
