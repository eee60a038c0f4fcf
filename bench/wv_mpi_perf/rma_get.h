// wv_mpi_perf rma: MPI one-sided get latency through osc while the target computes.
//
// The window is MPI_Win_create on the target's own memory (not MPI_Win_allocate, whose shared
// memory osc would read with plain loads on one host), so every get goes through the BTL. Rank
// 0 locks all (passive target) and times MPI_Get + MPI_Win_flush, pausing between gets as an
// application between its accesses; rank 1 either computes without calling MPI except for a
// test every --busy-slice (--target busy: what one-sided communication is for, and where a
// transport that needs the target's CPU to answer waits for it) or waits in MPI (--target
// waiting).
#pragma once

#include <string>

#include "subcommand.h"

namespace CLI {
class App;
}

namespace wv::perf {

struct RmaOptions {
  std::string target = "busy";  // busy | waiting
  double pause_us = 100;        // between gets
  double busy_slice_ms = 10;    // the busy target's compute between MPI_Test calls
};

void add_rma_options(CLI::App& command, RmaOptions& options);
// Runs on every rank of a 2-rank job; returns the process exit status.
int run_rma(const CommonOptions& common, const RmaOptions& options);

}  // namespace wv::perf
