// Latency statistics from per-iteration samples. Sorting happens after the timed loop, on the
// buffer the loop wrote into, so measuring never allocates.
#pragma once

#include <cstdint>
#include <span>

namespace wv::perf {

struct LatencyStats {
  double min_us = 0;
  double median_us = 0;
  double p99_us = 0;
};

// Sorts `samples_ns` in place. `divisor` turns a round trip into a one-way time (2 for
// ping-pongs, 1 for operations that are timed end to end). `samples_ns` must not be empty.
LatencyStats summarize(std::span<int64_t> samples_ns, int divisor);

}  // namespace wv::perf
