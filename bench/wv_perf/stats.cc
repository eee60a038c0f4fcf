#include "stats.h"

#include <algorithm>
#include <cassert>
#include <cstddef>

namespace wv::perf {

LatencyStats summarize(std::span<int64_t> samples_ns, int divisor) {
  assert(!samples_ns.empty() && divisor > 0);
  std::sort(samples_ns.begin(), samples_ns.end());
  const size_t n = samples_ns.size();
  const double scale = 1e-3 / divisor;  // ns -> us
  // The nearest-rank definition: p99 is a sample that was really observed.
  const size_t p99_rank = (n * 99 + 99) / 100;  // ceil(0.99 n), at least 1
  const double median_ns =
      n % 2 == 1
          ? static_cast<double>(samples_ns[n / 2])
          : (static_cast<double>(samples_ns[n / 2 - 1]) + static_cast<double>(samples_ns[n / 2])) /
                2;
  return {.min_us = static_cast<double>(samples_ns.front()) * scale,
          .median_us = median_ns * scale,
          .p99_us = static_cast<double>(samples_ns[p99_rank - 1]) * scale};
}

}  // namespace wv::perf
