#include "coll_driver.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>

#include "memcpy_floor.h"

namespace wv::perf {

namespace {

constexpr CollKind kKinds[] = {CollKind::kAllreduce, CollKind::kBcast,         CollKind::kReduce,
                               CollKind::kAllgather, CollKind::kReduceScatter, CollKind::kAlltoall,
                               CollKind::kGather,    CollKind::kScatter,       CollKind::kBarrier};

double bus_factor(CollKind kind, int n) {
  const double d = n;
  switch (kind) {
    case CollKind::kAllreduce:
      return 2 * (d - 1) / d;
    case CollKind::kBcast:
    case CollKind::kReduce:
      return 1;
    case CollKind::kBarrier:
      return 0;
    default:
      return (d - 1) / d;
  }
}

// Without --iterations a size is timed for about this long. A fixed count sized by bytes timed
// a few hundred calls of a small collective, 40 us in all, and measured the scheduler's noise
// more than the collective (2x between runs).
constexpr double kTimedSeconds = 0.1;

const std::vector<uint64_t> kDefaultSizes = {8,      64,      512,      4096,    32768,
                                             262144, 2097152, 16777216, 67108864};

}  // namespace

std::string_view to_string(CollKind kind) {
  switch (kind) {
    case CollKind::kAllreduce:
      return "allreduce";
    case CollKind::kBcast:
      return "bcast";
    case CollKind::kReduce:
      return "reduce";
    case CollKind::kAllgather:
      return "allgather";
    case CollKind::kReduceScatter:
      return "reduce_scatter";
    case CollKind::kAlltoall:
      return "alltoall";
    case CollKind::kGather:
      return "gather";
    case CollKind::kScatter:
      return "scatter";
    case CollKind::kBarrier:
      return "barrier";
  }
  return "unknown";
}

Result<CollKind> parse_coll_kind(std::string_view name) {
  for (CollKind kind : kKinds) {
    if (to_string(kind) == name) return kind;
  }
  return Status(Errc::kInvalidArgument, "unknown collective '" + std::string(name) + "'");
}

void add_coll_options(CLI::App& command, CollOptions& options) {
  command
      .add_option("--collectives", options.collectives, "Comma-separated collectives to measure")
      ->capture_default_str();
}

Status run_coll(CollLink& link, const CollRun& run) {
  const CommonOptions& common = *run.common;
  std::vector<CollKind> kinds;
  std::stringstream list(run.options->collectives);
  for (std::string name; std::getline(list, name, ',');) {
    auto kind = parse_coll_kind(name);
    if (!kind.is_ok()) return kind.status();
    kinds.push_back(*kind);
  }
  std::vector<uint64_t> sizes = kDefaultSizes;
  if (!common.sizes.empty()) {
    auto parsed = parse_sizes(common.sizes);
    if (!parsed.is_ok()) return parsed.status();
    sizes = *parsed;
  }
  const int n = link.size();
  const bool lead = link.rank() == 0;
  uint64_t largest = 4;
  for (uint64_t s : sizes) largest = std::max(largest, s);
  const size_t floats = largest / 4 + 1;
  std::vector<float> heap_send, heap_recv;
  auto send = link.allocate(floats);
  auto recv = link.allocate(floats);
  if (!send.is_ok()) return send.status();
  if (!recv.is_ok()) return recv.status();
  if (*send == nullptr || *recv == nullptr) {
    heap_send.resize(floats);
    heap_recv.resize(floats);
    *send = heap_send.data();
    *recv = heap_recv.data();
  }
  std::fill_n(*send, floats, 1.0f);
  std::fill_n(*recv, floats, 0.0f);
  if (lead) {
    if (common.json) {
      nlohmann::ordered_json header = {{"benchmark", run.benchmark},
                                       {"transport", run.transport},
                                       {"ranks", n},
                                       {"notes", run.notes}};
      fmt::print("{}\n", header.dump());
    } else {
      fmt::print("# {}: {} ranks, {}\n# {}\n", run.benchmark, n, run.transport, run.notes);
      fmt::print(
          "# time: slowest rank's average per call; algbw = S/time; busbw = algbw * NCCL "
          "bus factor; S in bytes of float; memcpy: one core's memcpy of S bytes, measured "
          "by the first rank right after the row (GB/s)\n");
      fmt::print("{:<15}{:>10}{:>9}{:>12}{:>11}{:>11}{:>9}  {}\n", "collective", "S", "iters",
                 "time(us)", "algbw", "busbw", "memcpy", "algorithm");
    }
    std::fflush(stdout);
  }
  for (CollKind kind : kinds) {
    for (uint64_t bytes : (kind == CollKind::kBarrier ? std::vector<uint64_t>{0} : sizes)) {
      CollShape shape;
      shape.total = bytes / 4;
      shape.per_rank = shape.total / static_cast<size_t>(n);
      const bool split = kind != CollKind::kAllreduce && kind != CollKind::kBcast &&
                         kind != CollKind::kReduce && kind != CollKind::kBarrier;
      if (split) shape.total = shape.per_rank * static_cast<size_t>(n);
      if (kind != CollKind::kBarrier && shape.total == 0) continue;
      const uint64_t s = shape.total * 4;
      const auto timed = [&](int64_t calls) -> Result<double> {
        const auto start = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < calls; ++i) {
          if (Status st = link.run(kind, shape, *send, *recv); !st.is_ok()) return st;
        }
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
               static_cast<double>(calls);
      };
      // How many calls take about `seconds` on the slowest rank, from a probe of `calls`. The
      // count must be the same on every rank, and so is each probe's length.
      const auto calls_for = [&](int64_t calls, double seconds) -> Result<int64_t> {
        auto per_call = timed(calls);
        if (!per_call.is_ok()) return per_call.status();
        auto slowest_call = link.max(*per_call);
        if (!slowest_call.is_ok()) return slowest_call.status();
        return std::clamp<int64_t>(static_cast<int64_t>(seconds / std::max(*slowest_call, 1e-9)), 1,
                                   10'000'000);
      };
      int64_t iterations = common.iterations;
      if (iterations <= 0) {
        // The first calls are slow (cold caches, pages touched first): a short probe sizes a
        // second one of about a tenth of the timed run, and that sizes the run.
        auto probe = calls_for(s >= (uint64_t{1} << 20) ? 3 : 20, kTimedSeconds / 10);
        if (probe.is_ok()) probe = calls_for(*probe, kTimedSeconds);
        if (!probe.is_ok()) return probe.status();
        iterations = std::max<int64_t>(*probe, 5);
      }
      const int64_t warmup =
          common.warmup >= 0 ? common.warmup : std::max<int64_t>(1, iterations / 10);
      for (int64_t i = 0; i < warmup; ++i) {
        if (Status st = link.run(kind, shape, *send, *recv); !st.is_ok()) return st;
      }
      if (Status st = link.barrier(); !st.is_ok()) return st;
      auto seconds = timed(iterations);
      if (!seconds.is_ok()) return seconds.status();
      auto slowest = link.max(*seconds);
      if (!slowest.is_ok()) return slowest.status();
      const double algbw = static_cast<double>(s) / *slowest / 1e9;
      const double busbw = algbw * bus_factor(kind, n);
      const std::string algorithm = link.algorithm(kind, shape);
      // The floor in the same run; the others wait in the barrier meanwhile (blocked, not
      // spinning, past the transport's spin time), so the copy has a core to itself.
      const double memcpy_gbps = lead && s > 0 ? memcpy_mbps(s, 0.05) / 1e3 : 0;
      if (Status st = link.barrier(); !st.is_ok()) return st;
      if (!lead) continue;
      if (common.json) {
        nlohmann::ordered_json record = {{"op", to_string(kind)},      {"size", s},
                                         {"iterations", iterations},   {"time_us", *slowest * 1e6},
                                         {"algbw_gbps", algbw},        {"busbw_gbps", busbw},
                                         {"memcpy_gbps", memcpy_gbps}, {"algorithm", algorithm}};
        fmt::print("{}\n", record.dump());
      } else {
        fmt::print("{:<15}{:>10}{:>9}{:>12.2f}{:>11.3f}{:>11.3f}{:>9.2f}  {}\n", to_string(kind), s,
                   iterations, *slowest * 1e6, algbw, busbw, memcpy_gbps, algorithm);
      }
      std::fflush(stdout);
    }
  }
  return Status::ok();
}

}  // namespace wv::perf
