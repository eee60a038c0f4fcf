#include "rma_get.h"

#include <fmt/format.h>
#include <mpi.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <vector>

#include "process.h"
#include "report.h"
#include "stats.h"

namespace wv::perf {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kDoneTag = 7;

void spin_for(std::chrono::nanoseconds duration) {
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
  }
}

}  // namespace

void add_rma_options(CLI::App& command, RmaOptions& options) {
  command
      .add_option("--target", options.target,
                  "What the target does: busy (computes) or waiting (in MPI)")
      ->check(CLI::IsMember({"busy", "waiting"}));
  command.add_option("--pause-us", options.pause_us, "Microseconds between two gets")
      ->check(CLI::NonNegativeNumber);
  command
      .add_option("--busy-slice-ms", options.busy_slice_ms,
                  "The busy target's compute between two MPI_Test calls, ms")
      ->check(CLI::PositiveNumber);
}

int run_rma(const CommonOptions& common, const RmaOptions& options) {
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    if (rank == 0)
      fmt::print(stderr, "wv_mpi_perf rma: needs exactly 2 ranks (this job has {})\n", size);
    return kExitFailure;
  }
  auto sizes = parse_sizes(common.sizes.empty() ? "8,4K,64K,1M" : common.sizes);
  if (!sizes.is_ok()) {
    if (rank == 0) fmt::print(stderr, "wv_mpi_perf rma: {}\n", sizes.status().message());
    return kExitFailure;
  }
  const int64_t iterations = common.iterations > 0 ? common.iterations : 1000;
  const int64_t warmup = common.warmup >= 0 ? common.warmup : 10;
  uint64_t largest = 1;
  for (uint64_t s : *sizes) largest = std::max(largest, s);
  std::vector<std::byte> exposed(largest, std::byte{0x5a});
  std::vector<std::byte> local(largest);
  MPI_Win window;
  MPI_Win_create(exposed.data(), static_cast<MPI_Aint>(largest), 1, MPI_INFO_NULL, MPI_COMM_WORLD,
                 &window);
  Reporter reporter("rma (wv_mpi_perf)", common.json ? Format::kJson : Format::kTable, stdout);
  if (rank == 0) {
    RunHeader header;
    const char* btl = std::getenv("OMPI_MCA_btl");
    header.provider = fmt::format(
        "mpi osc {} btl {}", std::getenv("OMPI_MCA_osc") ? std::getenv("OMPI_MCA_osc") : "default",
        btl ? btl : "default");
    header.device = "";
    header.details["target"] = options.target;
    header.details["pause_us"] = options.pause_us;
    header.details["busy_slice_ms"] = options.busy_slice_ms;
    header.details["method"] =
        "MPI_Win_create window, MPI_Win_lock_all; one MPI_Get + MPI_Win_flush per iteration";
    reporter.header(header);
    Section section;
    section.op = "get_lat";
    section.description = "MPI_Get + MPI_Win_flush, target " + options.target;
    reporter.begin_section(section);
  }
  // A hung transport ends the run (SIGALRM) instead of the job waiting forever.
  const auto bound = static_cast<unsigned>(common.timeout_seconds) + 1;
  MPI_Win_lock_all(0, window);
  std::vector<int64_t> samples(static_cast<size_t>(iterations));
  const auto pause = std::chrono::nanoseconds(static_cast<int64_t>(options.pause_us * 1000));
  const auto slice = std::chrono::nanoseconds(static_cast<int64_t>(options.busy_slice_ms * 1e6));
  for (uint64_t bytes : *sizes) {
    ::alarm(bound);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
      for (int64_t i = -warmup; i < iterations; ++i) {
        const auto start = Clock::now();
        MPI_Get(local.data(), static_cast<int>(bytes), MPI_BYTE, 1, 0, static_cast<int>(bytes),
                MPI_BYTE, window);
        MPI_Win_flush(1, window);
        if (i >= 0) samples[static_cast<size_t>(i)] = (Clock::now() - start).count();
        spin_for(pause);
      }
      if (bytes > 0 && local[bytes - 1] != std::byte{0x5a}) {
        fmt::print(stderr, "wv_mpi_perf rma: the get of {} bytes returned wrong data\n", bytes);
        MPI_Abort(MPI_COMM_WORLD, kExitFailure);
      }
      int done = 1;
      MPI_Send(&done, 1, MPI_INT, 1, kDoneTag, MPI_COMM_WORLD);
      Measurement measurement;
      measurement.size = bytes;
      measurement.iterations = static_cast<uint64_t>(iterations);
      measurement.latency = summarize(samples, 1);
      reporter.add(measurement);
    } else {
      int done = 0;
      MPI_Request request;
      MPI_Irecv(&done, 1, MPI_INT, 0, kDoneTag, MPI_COMM_WORLD, &request);
      if (options.target == "busy") {
        for (int flag = 0; flag == 0;) {
          spin_for(slice);
          MPI_Test(&request, &flag, MPI_STATUS_IGNORE);
        }
      } else {
        MPI_Wait(&request, MPI_STATUS_IGNORE);
      }
    }
  }
  ::alarm(0);
  if (rank == 0) reporter.end_section();
  MPI_Win_unlock_all(window);
  MPI_Win_free(&window);
  return kExitOk;
}

}  // namespace wv::perf
