#include "report.h"

#include <fmt/format.h>

#include <algorithm>

namespace wv::tune {

namespace {

size_t column_width(const SizeTiming& size) {
  size_t width = 10;
  for (const AlgorithmTime& t : size.times) width = std::max(width, t.algorithm.size());
  return width + 2;
}

}  // namespace

std::string format_bytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 20) && bytes % (uint64_t{1} << 20) == 0) {
    return fmt::format("{}M", bytes >> 20);
  }
  if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{}K", bytes >> 10);
  return fmt::format("{}", bytes);
}

void Report::size_done(const CollectiveTiming& timing, const SizeTiming& size) {
  const std::string name(coll::to_string(timing.collective));
  if (size.times.size() == 1) {
    fmt::print(out_, "\n{}: {} (the only algorithm; not timed)\n", name,
               size.times.front().algorithm);
    std::fflush(out_);
    return;
  }
  const size_t width = column_width(size);
  if (timing.sizes.size() == 1) {
    std::string header = fmt::format("\n{:<16}", name);
    for (const AlgorithmTime& t : size.times) header += fmt::format("{:>{}}", t.algorithm, width);
    fmt::print(out_, "{}  -> chosen\n", header);
  }
  std::string row = fmt::format("{:>14} B", format_bytes(size.bytes));
  for (const AlgorithmTime& t : size.times) {
    row += fmt::format("{:>{}.2f}", t.seconds * 1e6, width);
  }
  fmt::print(out_, "{}  -> {}\n", row, choose_winners(timing).back());
  std::fflush(out_);
}

}  // namespace wv::tune
