#include <cstring>

#include "algorithms.h"
#include "scratch.h"

namespace wv::coll::detail {

// Recursive halving among the pof2 ranks after the usual fold (even ranks below 2*rem give
// their whole vector to the odd rank above). New rank j owns the blocks of the job ranks it
// covers; each step keeps the half of the remaining range that holds its own blocks and gives
// the other half to its partner, so the final range is exactly its own. The odd ranks then
// hand the even rank its block.
Status reduce_scatter_recursive_halving(Channel& c, void* buffer_, std::span<const size_t> counts,
                                        const Reduction& r) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const int n = c.size();
  const int rank = c.rank();
  const size_t element = r.element();
  const std::vector<size_t> offsets = prefix(counts);  // elements
  const size_t total = offsets.back();
  Scratch scratch(total * element);
  const int pof2 = floor_pow2(n);
  const int rem = n - pof2;
  auto first = [&](int j) { return j < rem ? 2 * j : j + rem; };
  auto real = [&](int j) { return j < rem ? 2 * j + 1 : j + rem; };
  auto at = [&](int new_rank) { return offsets[static_cast<size_t>(first(new_rank))]; };
  int newrank;
  if (rank < 2 * rem) {
    if (rank % 2 == 0) {
      if (Status s = c.send(rank + 1, 0, buffer, total * element); !s.is_ok()) return s;
      newrank = -1;
    } else {
      if (Status s = c.recv(rank - 1, 0, scratch.data(), total * element); !s.is_ok()) return s;
      r.apply(scratch.data(), buffer, total);
      newrank = rank / 2;
    }
  } else {
    newrank = rank - rem;
  }
  if (newrank >= 0) {
    int lo = 0;
    int hi = pof2;
    uint32_t step = 1;
    for (int mask = pof2 / 2; mask >= 1; mask /= 2, ++step) {
      const int partner = real(newrank ^ mask);
      const int mid = lo + mask;
      const bool upper = (newrank & mask) != 0;
      const int keep_lo = upper ? mid : lo, keep_hi = upper ? hi : mid;
      const int give_lo = upper ? lo : mid, give_hi = upper ? mid : hi;
      const size_t keep = at(keep_hi) - at(keep_lo);
      if (Status s = c.sendrecv(partner, buffer + at(give_lo) * element,
                                (at(give_hi) - at(give_lo)) * element, partner,
                                scratch.data() + at(keep_lo) * element, keep * element, step);
          !s.is_ok()) {
        return s;
      }
      r.apply(scratch.data() + at(keep_lo) * element, buffer + at(keep_lo) * element, keep);
      lo = keep_lo;
      hi = keep_hi;
    }
  }
  if (rank < 2 * rem) {
    const size_t even = static_cast<size_t>(rank - rank % 2);
    if (rank % 2 == 1) {
      return c.send(rank - 1, 0xfffff, buffer + offsets[even] * element, counts[even] * element);
    }
    return c.recv(rank + 1, 0xfffff, buffer + offsets[even] * element, counts[even] * element);
  }
  return Status::ok();
}

// Ring: step k sends the partial block (rank - k - 1) right and combines block (rank - k - 2)
// from the left; after n-1 steps block `rank` holds every contribution.
Status reduce_scatter_ring(Channel& c, void* buffer_, std::span<const size_t> counts,
                           const Reduction& r) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const int n = c.size();
  const int rank = c.rank();
  const size_t element = r.element();
  const std::vector<size_t> offsets = prefix(counts);
  size_t largest = 0;
  for (size_t count : counts) largest = count > largest ? count : largest;
  Scratch scratch(largest * element);
  const int right = (rank + 1) % n;
  const int left = (rank - 1 + n) % n;
  for (int k = 0; k < n - 1; ++k) {
    const size_t out = static_cast<size_t>((rank - k - 1 + 2 * n) % n);
    const size_t in = static_cast<size_t>((rank - k - 2 + 2 * n) % n);
    if (Status s = c.sendrecv(right, buffer + offsets[out] * element, counts[out] * element, left,
                              scratch.data(), counts[in] * element, static_cast<uint32_t>(k));
        !s.is_ok()) {
      return s;
    }
    r.apply(scratch.data(), buffer + offsets[in] * element, counts[in]);
  }
  return Status::ok();
}

}  // namespace wv::coll::detail
