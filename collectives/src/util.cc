#include "algorithms.h"

namespace wv::coll::detail {

std::vector<size_t> split(size_t total, int parts) {
  const EvenSplit pieces(total, parts);
  std::vector<size_t> counts(static_cast<size_t>(parts));
  for (int i = 0; i < parts; ++i) counts[static_cast<size_t>(i)] = pieces.size(i);
  return counts;
}

std::vector<size_t> prefix(std::span<const size_t> counts) {
  std::vector<size_t> offsets(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) offsets[i + 1] = offsets[i] + counts[i];
  return offsets;
}

int floor_pow2(int n) {
  int p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

}  // namespace wv::coll::detail
