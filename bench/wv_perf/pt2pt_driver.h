// The pt2pt benchmark between two ranks, written once against Pt2ptLink so that wv (wv_perf
// pt2pt) and MPI (wv_mpi_perf) are measured by identical loops and printed in one format:
//   lat     ping-pong, half round trip (min/median/p99)
//   bw      a window of non-blocking sends; the receiver acknowledges each window (osu_bw)
//   bibw    both ranks post a window of receives and sends at once (osu_bibw)
//   rate    bw's loop with a wider window at small sizes, read as messages per second
// Rank 0 times, chooses iteration counts (and tells rank 1) and prints; rank 1 follows.
// Collectives (a later `coll`) get their own driver next to this one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pt2pt_link.h"
#include "report.h"
#include "subcommand.h"
#include "wv/result.h"

namespace CLI {
class App;
}

namespace wv::perf {

// Options of pt2pt shared by wv_perf pt2pt and wv_mpi_perf pt2pt.
struct Pt2ptOptions {
  std::string ops = "lat,bw,bibw,rate";
  uint32_t window = 64;        // bw and bibw
  uint32_t rate_window = 128;  // rate
  std::string rate_max_size = "64K";
};

void add_pt2pt_options(CLI::App& command, Pt2ptOptions& options);

// 0, 8, then powers of 4 from 64 B to 64 MiB.
std::vector<uint64_t> default_pt2pt_sizes();

struct Pt2ptRun {
  const CommonOptions* common = nullptr;
  const Pt2ptOptions* options = nullptr;
  // Rank 0 prints this (its processes list gets rank 1's entry added) before any result.
  RunHeader header;
  std::string benchmark = "pt2pt";
  // The protocol path a size takes ("inline", "eager", "rendezvous"), printed per size when
  // set; empty for libraries that do not tell.
  std::function<std::string(uint64_t size)> path_of;
};

// Runs on both ranks with the same arguments. Returns the first failure (either side).
Status run_pt2pt(Pt2ptLink& link, const Pt2ptRun& run);

}  // namespace wv::perf
