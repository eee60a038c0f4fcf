#include "memcpy_floor.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

namespace wv::perf {

double memcpy_mbps(size_t size, double seconds) {
  size = std::max<size_t>(size, 1);
  std::vector<std::byte> from(size, std::byte{1});
  std::vector<std::byte> to(size, std::byte{2});
  uint64_t count = 1;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < count; ++i) {
      std::memcpy(to.data(), from.data(), size);
      // Keeps the compiler from merging or dropping the copies.
      asm volatile("" : : "r"(to.data()) : "memory");
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (took >= seconds || count >= (uint64_t{1} << 34)) {
      return static_cast<double>(size) * static_cast<double>(count) / took / 1e6;
    }
    count = took * 8 < seconds ? count * 8 : count * 2;
  }
}

}  // namespace wv::perf
