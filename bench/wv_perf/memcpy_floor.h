// The bandwidth floor of the benchmarks: single-threaded memcpy between two private buffers,
// measured in the same run as what it is compared with.
#pragma once

#include <cstddef>

namespace wv::perf {

// MB/s (10^6 bytes/s) of memcpy of `size` bytes, repeated for about `seconds`.
double memcpy_mbps(size_t size, double seconds);

}  // namespace wv::perf
