#include <algorithm>
#include <cstring>

#include "algorithms.h"
#include "scratch.h"

namespace wv::coll::detail {

namespace {

// The power-of-two fold used by recursive doubling and Rabenseifner (MPICH's scheme): with
// pof2 = 2^floor(log2 n) and rem = n - pof2, each even rank below 2*rem hands its vector to
// the odd rank above it and sits out; the others take new ranks 0..pof2-1.
struct Fold {
  int pof2, rem, newrank;
  int real(int new_rank) const { return new_rank < rem ? new_rank * 2 + 1 : new_rank + rem; }
};

Result<Fold> fold_in(Channel& c, std::byte* buffer, std::byte* scratch, size_t count,
                     const Reduction& r) {
  const int rank = c.rank();
  Fold f{floor_pow2(c.size()), c.size() - floor_pow2(c.size()), 0};
  const size_t bytes = count * r.element();
  if (rank < 2 * f.rem) {
    if (rank % 2 == 0) {
      if (Status s = c.send(rank + 1, 0, buffer, bytes); !s.is_ok()) return s;
      f.newrank = -1;
    } else {
      if (Status s = c.recv(rank - 1, 0, scratch, bytes); !s.is_ok()) return s;
      r.apply(scratch, buffer, count);
      f.newrank = rank / 2;
    }
  } else {
    f.newrank = rank - f.rem;
  }
  return f;
}

Status fold_out(Channel& c, const Fold& f, std::byte* buffer, size_t bytes) {
  const int rank = c.rank();
  if (rank >= 2 * f.rem) return Status::ok();
  if (rank % 2 == 1) return c.send(rank - 1, 0xfffff, buffer, bytes);
  return c.recv(rank + 1, 0xfffff, buffer, bytes);
}

}  // namespace

// log2(n) exchanges of the whole vector: latency-optimal, for small messages.
Status allreduce_recursive_doubling(Channel& c, void* buffer_, size_t count, const Reduction& r) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const size_t bytes = count * r.element();
  Scratch scratch(bytes);
  auto fold = fold_in(c, buffer, scratch.data(), count, r);
  if (!fold.is_ok()) return fold.status();
  const Fold f = *fold;
  if (f.newrank >= 0) {
    uint32_t step = 1;
    for (int mask = 1; mask < f.pof2; mask <<= 1, ++step) {
      const int partner = f.real(f.newrank ^ mask);
      if (Status s = c.sendrecv(partner, buffer, bytes, partner, scratch.data(), bytes, step);
          !s.is_ok()) {
        return s;
      }
      r.apply(scratch.data(), buffer, count);
    }
  }
  return fold_out(c, f, buffer, bytes);
}

// Rabenseifner: reduce-scatter by recursive halving, then allgather by recursive doubling,
// among the pof2 ranks; ~2x the vector moved per rank: bandwidth-optimal for large messages.
Status allreduce_rabenseifner(Channel& c, void* buffer_, size_t count, const Reduction& r) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const size_t element = r.element();
  const size_t bytes = count * element;
  Scratch scratch(bytes);
  auto fold = fold_in(c, buffer, scratch.data(), count, r);
  if (!fold.is_ok()) return fold.status();
  const Fold f = *fold;
  if (f.newrank >= 0) {
    const std::vector<size_t> counts = split(count, f.pof2);
    const std::vector<size_t> offsets = prefix(counts);  // elements
    auto at = [&](int block) { return offsets[static_cast<size_t>(block)] * element; };
    auto length = [&](int first, int last) {
      return (offsets[static_cast<size_t>(last)] - offsets[static_cast<size_t>(first)]);
    };
    int lo = 0;
    int hi = f.pof2;
    uint32_t step = 1;
    for (int mask = f.pof2 / 2; mask >= 1; mask /= 2, ++step) {
      const int partner = f.real(f.newrank ^ mask);
      const int mid = lo + mask;
      const bool upper = (f.newrank & mask) != 0;
      const int keep_lo = upper ? mid : lo, keep_hi = upper ? hi : mid;
      const int give_lo = upper ? lo : mid, give_hi = upper ? mid : hi;
      if (Status s =
              c.sendrecv(partner, buffer + at(give_lo), length(give_lo, give_hi) * element, partner,
                         scratch.data() + at(keep_lo), length(keep_lo, keep_hi) * element, step);
          !s.is_ok()) {
        return s;
      }
      r.apply(scratch.data() + at(keep_lo), buffer + at(keep_lo), length(keep_lo, keep_hi));
      lo = keep_lo;
      hi = keep_hi;
    }
    for (int mask = 1; mask < f.pof2; mask <<= 1, ++step) {
      const int partner_new = f.newrank ^ mask;
      const int partner = f.real(partner_new);
      const int mine = (f.newrank / mask) * mask;
      const int theirs = (partner_new / mask) * mask;
      if (Status s =
              c.sendrecv(partner, buffer + at(mine), length(mine, mine + mask) * element, partner,
                         buffer + at(theirs), length(theirs, theirs + mask) * element, step);
          !s.is_ok()) {
        return s;
      }
    }
  }
  return fold_out(c, f, buffer, bytes);
}

// Ring: reduce-scatter then allgather around the ring, 2(n-1) steps of 1/n of the vector;
// bandwidth-optimal for any n, latency grows with n.
Status allreduce_ring(Channel& c, void* buffer_, size_t count, const Reduction& r) {
  const int n = c.size();
  const std::vector<size_t> counts = split(count, n);
  if (Status s = reduce_scatter_ring(c, buffer_, counts, r); !s.is_ok()) return s;
  std::vector<size_t> bytes(counts);
  for (size_t& b : bytes) b *= r.element();
  return allgather_ring(c, buffer_, bytes);
}

}  // namespace wv::coll::detail
