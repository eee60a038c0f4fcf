#include <algorithm>
#include <cstring>

#include "algorithms.h"
#include "scratch.h"
#include "wv/copy.h"

namespace wv::coll::detail {

// Recursive doubling over ranges of ranks. For n not a power of two, even ranks below
// 2*rem first give their block to the odd rank above (whose range then covers both, and
// blocks of adjacent ranks are adjacent in the packed buffer), and get the whole result back
// at the end. log2(n) + 2 steps: for small blocks.
Status allgather_recursive_doubling(Channel& c, void* buffer_, std::span<const size_t> bytes) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const int n = c.size();
  const int rank = c.rank();
  const std::vector<size_t> offsets = prefix(bytes);
  const int pof2 = floor_pow2(n);
  const int rem = n - pof2;
  // New rank j covers job ranks [first(j), first(j + 1)).
  auto first = [&](int j) { return j < rem ? 2 * j : j + rem; };
  auto real = [&](int j) { return j < rem ? 2 * j + 1 : j + rem; };
  auto span_bytes = [&](int lo, int hi) {  // new ranks [lo, hi)
    return offsets[static_cast<size_t>(first(hi))] - offsets[static_cast<size_t>(first(lo))];
  };
  int newrank;
  if (rank < 2 * rem) {
    if (rank % 2 == 0) {
      if (Status s = c.send(rank + 1, 0, buffer + offsets[static_cast<size_t>(rank)],
                            bytes[static_cast<size_t>(rank)]);
          !s.is_ok()) {
        return s;
      }
      newrank = -1;
    } else {
      if (Status s = c.recv(rank - 1, 0, buffer + offsets[static_cast<size_t>(rank - 1)],
                            bytes[static_cast<size_t>(rank - 1)]);
          !s.is_ok()) {
        return s;
      }
      newrank = rank / 2;
    }
  } else {
    newrank = rank - rem;
  }
  if (newrank >= 0) {
    uint32_t step = 1;
    for (int mask = 1; mask < pof2; mask <<= 1, ++step) {
      const int partner_new = newrank ^ mask;
      const int mine = (newrank / mask) * mask;
      const int theirs = (partner_new / mask) * mask;
      const int partner = real(partner_new);
      if (Status s = c.sendrecv(partner, buffer + offsets[static_cast<size_t>(first(mine))],
                                span_bytes(mine, mine + mask), partner,
                                buffer + offsets[static_cast<size_t>(first(theirs))],
                                span_bytes(theirs, theirs + mask), step);
          !s.is_ok()) {
        return s;
      }
    }
  }
  if (rank < 2 * rem) {
    if (rank % 2 == 1) return c.send(rank - 1, 0xfffff, buffer, offsets.back());
    return c.recv(rank + 1, 0xfffff, buffer, offsets.back());
  }
  return Status::ok();
}

// Bruck: ceil(log2 n) steps for any n; blocks accumulate in a scratch buffer in the order
// rank, rank+1, ..., then rotate into place. For small blocks at non-power-of-two n.
Status allgather_bruck(Channel& c, void* buffer_, std::span<const size_t> bytes) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const int n = c.size();
  const int rank = c.rank();
  const std::vector<size_t> offsets = prefix(bytes);
  auto block = [&](int i) { return bytes[static_cast<size_t>(i % n)]; };
  // rotated[j]: bytes of blocks (rank + 0 .. rank + j - 1), their length sums.
  std::vector<size_t> rotated(static_cast<size_t>(n) + 1, 0);
  for (int j = 0; j < n; ++j)
    rotated[static_cast<size_t>(j) + 1] = rotated[static_cast<size_t>(j)] + block(rank + j);
  Scratch scratch(offsets.back());
  if (bytes[static_cast<size_t>(rank)] > 0) {
    copy_bytes(scratch.data(), buffer + offsets[static_cast<size_t>(rank)],
               bytes[static_cast<size_t>(rank)]);
  }
  uint32_t step = 0;
  for (int distance = 1; distance < n; distance *= 2, ++step) {
    const int m = std::min(distance, n - distance);
    const int to = (rank - distance + n) % n;
    const int from = (rank + distance) % n;
    // The sender's first m blocks are ranks from .. from+m-1 = our blocks distance .. +m.
    const size_t incoming =
        rotated[static_cast<size_t>(distance + m)] - rotated[static_cast<size_t>(distance)];
    if (Status s =
            c.sendrecv(to, scratch.data(), rotated[static_cast<size_t>(m)], from,
                       scratch.data() + rotated[static_cast<size_t>(distance)], incoming, step);
        !s.is_ok()) {
      return s;
    }
  }
  for (int j = 1; j < n; ++j) {
    const int owner = (rank + j) % n;
    if (bytes[static_cast<size_t>(owner)] == 0) continue;
    copy_bytes(buffer + offsets[static_cast<size_t>(owner)],
               scratch.data() + rotated[static_cast<size_t>(j)], bytes[static_cast<size_t>(owner)]);
  }
  return Status::ok();
}

// Ring: n-1 steps, each passing one block to the right neighbour; bandwidth-optimal.
Status allgather_ring(Channel& c, void* buffer_, std::span<const size_t> bytes) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const int n = c.size();
  const int rank = c.rank();
  const std::vector<size_t> offsets = prefix(bytes);
  const int right = (rank + 1) % n;
  const int left = (rank - 1 + n) % n;
  for (int k = 0; k < n - 1; ++k) {
    const size_t out = static_cast<size_t>((rank - k + n) % n);
    const size_t in = static_cast<size_t>((rank - k - 1 + 2 * n) % n);
    if (Status s = c.sendrecv(right, buffer + offsets[out], bytes[out], left, buffer + offsets[in],
                              bytes[in], static_cast<uint32_t>(0x10000 + k));
        !s.is_ok()) {
      return s;
    }
  }
  return Status::ok();
}

}  // namespace wv::coll::detail
