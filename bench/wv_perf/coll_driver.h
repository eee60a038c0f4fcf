// The collective benchmark loops shared by wv_perf coll and wv_mpi_perf coll: for each
// collective and size, warm up, then time `iterations` back-to-back calls between barriers;
// the time is the slowest rank's average. Reports time, algbw = S / time and busbw = algbw *
// NCCL's bus factor (allreduce 2(n-1)/n; allgather, reduce_scatter, alltoall, gather, scatter
// (n-1)/n; bcast, reduce 1), S as in coll_link.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coll_link.h"
#include "subcommand.h"

namespace CLI {
class App;
}

namespace wv::perf {

struct CollOptions {
  std::string collectives =
      "allreduce,bcast,reduce,allgather,reduce_scatter,alltoall,gather,scatter,barrier";
};
void add_coll_options(CLI::App& command, CollOptions& options);

struct CollRun {
  const CommonOptions* common = nullptr;
  const CollOptions* options = nullptr;
  std::string benchmark;  // "coll (wv_perf)"
  std::string transport;  // provider / MPI transport
  std::string notes;
};

// Default sizes: 8 B to 64 MiB in steps of 8x (and 4 KiB, 256 KiB, 16 MiB).
Status run_coll(CollLink& link, const CollRun& run);

}  // namespace wv::perf
