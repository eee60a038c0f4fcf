// wv_tune: measures every algorithm of the collectives on the job it runs in and writes the
// fastest per message size as a decision table (collectives/include/wv/collectives/
// decision_table.h) for exactly this process and host count.
//
//   wvrun -n 4 wv_tune --out table.json [--merge table.json]   # then WV_COLLECTIVES_TABLE=...
//
// Exit status (the same on every rank): 0 when the table was written, 2 for bad arguments or a
// --merge table that does not load, 1 when the job, the measurement or the file failed.
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "machine_load.h"
#include "measure.h"
#include "options.h"
#include "report.h"
#include "rules.h"
#include "table_file.h"
#include "wv/collectives/communicator.h"
#include "wv/comm.h"

namespace {

using namespace wv;

// Rank 0's checks of the output and --merge paths, before anything is measured.
struct Preflight {
  int exit_code = tune::kExitOk;
  std::optional<tune::TableFile> file;
  std::optional<coll::DecisionTable> previous;
};

Preflight preflight(const tune::Options& options) {
  Preflight p;
  auto file = tune::TableFile::open(options.out);
  if (!file.is_ok()) {
    fmt::print(stderr, "wv_tune: --out: {}\n", file.status().message());
    p.exit_code = tune::kExitFailure;
    return p;
  }
  p.file.emplace(std::move(file).value());
  if (!options.merge.empty()) {
    auto previous = coll::DecisionTable::load_file(options.merge);
    if (!previous.is_ok()) {
      fmt::print(stderr, "wv_tune: --merge: {}\n", previous.status().message());
      p.exit_code = tune::kExitUsage;
      return p;
    }
    p.previous = std::move(previous).value();
  }
  return p;
}

// Rank 0's verdict, so every rank exits with the same status.
int agree(coll::Communicator& c, int exit_code) {
  int32_t code = exit_code;
  if (Status s = c.bcast(&code, 1, coll::DataType::kInt32, 0, "binomial"); !s.is_ok()) {
    fmt::print(stderr, "wv_tune rank {}: {}\n", c.rank(), s.to_string());
    return tune::kExitFailure;
  }
  return code;
}

// Other programs running on the ranks' cores turn the times into scheduling noise and the
// table into a list of accidents: say so before the user trusts it. Rank 0 looks while the
// others wait (asleep) for the preflight's verdict.
std::string busy_note(const coll::Communicator& c) {
  const auto busy = tune::busy_cores(std::chrono::milliseconds(200));
  if (!busy) return {};
  const auto& topology = c.topology();
  const size_t here = topology.host_ranks[static_cast<size_t>(topology.host_of_rank[0])].size();
  const double cores = std::thread::hardware_concurrency();
  if (static_cast<double>(here) > cores) {
    return fmt::format(
        "note: {} ranks on {} cores: ranks wait for each other's time slices, so the times (and "
        "the table) measure the scheduler more than the algorithms\n",
        here, cores);
  }
  if (*busy > std::max(0.5, cores - static_cast<double>(here))) {
    return fmt::format(
        "note: {:.1f} of {} cores were busy before the run: other programs compete with the "
        "ranks, so the times (and the table) will be noisy\n",
        *busy, cores);
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  tune::Options options;
  if (auto stop = tune::parse_command_line(argc, argv, options)) return *stop;

  auto comm = Comm::init();
  if (!comm.is_ok()) {
    fmt::print(stderr, "wv_tune: joining the job: {}\n", comm.status().to_string());
    return tune::kExitFailure;
  }
  coll::Communicator::Options coll_options;
  // The configured table may be the file being replaced, or broken; the tool names every
  // algorithm itself anyway.
  coll_options.table = coll::DecisionTable::built_in();
  auto created = coll::Communicator::create(**comm, coll_options);
  if (!created.is_ok()) {
    fmt::print(stderr, "wv_tune: {}\n", created.status().to_string());
    return tune::kExitFailure;
  }
  coll::Communicator& c = **created;
  const bool lead = c.rank() == 0;
  const tune::JobShape shape{c.size(), c.topology().host_count()};

  Preflight checked = lead ? preflight(options) : Preflight{};
  const std::string note = lead && checked.exit_code == tune::kExitOk ? busy_note(c) : "";
  if (int code = agree(c, checked.exit_code); code != tune::kExitOk) return code;

  if (lead) {
    fmt::print(
        "wv_tune: {} rank(s) on {} host(s), provider {}; times: the slowest rank's median "
        "per call, microseconds\n",
        shape.procs, shape.hosts, (*comm)->worker().provider_name());
    fmt::print("{}", note);
    if (!c.shared_memory_status().empty()) {
      fmt::print("note: no shared segment ({}): shared_memory runs its fallback\n",
                 c.shared_memory_status());
    }
    std::fflush(stdout);
  }
  tune::Report report(stdout);
  auto measured =
      tune::measure(c, options, [&](const tune::CollectiveTiming& t, const tune::SizeTiming& s) {
        if (lead) report.size_done(t, s);
      });
  if (!measured.is_ok()) {
    fmt::print(stderr, "wv_tune rank {}: {}\n", c.rank(), measured.status().to_string());
    return tune::kExitFailure;
  }

  int exit_code = tune::kExitOk;
  if (lead) {
    if (measured->stopped_early) {
      fmt::print(
          "\nwv_tune: --time-limit {} s reached after {:.1f} s; the table covers what was "
          "measured: a collective cut short keeps its last winner for the larger sizes, those "
          "not reached keep their previous (--merge) or built-in rules\n",
          options.time_limit, measured->seconds);
    }
    auto table = tune::build_table(measured->timings, shape,
                                   checked.previous ? &*checked.previous : nullptr);
    Status written = table.is_ok() ? checked.file->commit(table->to_json() + "\n") : table.status();
    if (written.is_ok()) {
      fmt::print("\n{}wrote {}\n", table->describe(), options.out);
    } else {
      fmt::print(stderr, "wv_tune: {}\n", written.message());
      exit_code = tune::kExitFailure;
    }
  }
  return agree(c, exit_code);
}
