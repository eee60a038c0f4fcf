// wv_tune's measurement: every algorithm of each collective at each size, timed on every rank.
#pragma once

#include <functional>
#include <vector>

#include "options.h"
#include "rules.h"
#include "wv/collectives/communicator.h"
#include "wv/result.h"

namespace wv::tune {

struct Measurements {
  std::vector<CollectiveTiming> timings;
  bool stopped_early = false;  // --time-limit ran out
  double seconds = 0;          // the slowest rank's time spent measuring
};

// Called on every rank as each size is done; `size` is timing.sizes.back().
using SizeDone = std::function<void(const CollectiveTiming& timing, const SizeTiming& size)>;

// Collective over all ranks of `communicator`. Each time is the slowest rank's median per
// call, so every rank returns the same numbers and builds the same table. A failing call
// ends the run: a failed collective leaves the communicator unusable.
Result<Measurements> measure(coll::Communicator& communicator, const Options& options,
                             const SizeDone& size_done);

}  // namespace wv::tune
