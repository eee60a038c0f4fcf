// The algorithms, one function each, over a Channel. Internal: communicator.cc validates the
// arguments, handles in-place and counts of 0, and picks the function by name.
//
// Conventions: byte counts for data movement, element counts where a reduction is involved;
// the reduction algorithms work in place on `buffer` (the caller copied the input there).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "channel.h"
#include "wv/collectives/types.h"

namespace wv::coll::detail {

struct Reduction {
  DataType type;
  const ReduceOp* op;
  size_t element() const { return size_of(type); }
  void apply(const void* in, void* inout, size_t count) const {
    reduce_local(in, inout, count, type, *op);
  }
  void combine(const void* a, const void* b, void* out, size_t count) const {
    reduce_into(a, b, out, count, type, *op);
  }
};

// `total` in `parts` near-equal pieces (the first total % parts one larger), piece by piece
// without a vector (for loops that must not allocate).
class EvenSplit {
 public:
  EvenSplit(size_t total, int parts)
      : base_(total / static_cast<size_t>(parts)), larger_(total % static_cast<size_t>(parts)) {}
  size_t size(int part) const { return base_ + (static_cast<size_t>(part) < larger_ ? 1 : 0); }
  size_t start(int part) const {
    const auto index = static_cast<size_t>(part);
    return index * base_ + std::min(index, larger_);
  }

 private:
  size_t base_;
  size_t larger_;
};

// The sizes of EvenSplit(total, parts), as a vector.
std::vector<size_t> split(size_t total, int parts);
std::vector<size_t> prefix(std::span<const size_t> counts);  // exclusive prefix sums, size+1
int floor_pow2(int n);

Status barrier_dissemination(Channel& c);

Status bcast_binomial(Channel& c, void* buffer, size_t bytes, int root);
Status bcast_scatter_allgather(Channel& c, void* buffer, size_t bytes, int root);
Status bcast_chain(Channel& c, void* buffer, size_t bytes, int root, size_t chunk);

// Reduces `input` (count elements) to `output` on root (output may equal input on root).
Status reduce_binomial(Channel& c, const void* input, void* output, size_t count,
                       const Reduction& r, int root);

Status allreduce_recursive_doubling(Channel& c, void* buffer, size_t count, const Reduction& r);
Status allreduce_rabenseifner(Channel& c, void* buffer, size_t count, const Reduction& r);
Status allreduce_ring(Channel& c, void* buffer, size_t count, const Reduction& r);

// Allgather of blocks of `bytes[i]` bytes, packed in rank order in `buffer` (this rank's
// block already in place).
Status allgather_recursive_doubling(Channel& c, void* buffer, std::span<const size_t> bytes);
Status allgather_bruck(Channel& c, void* buffer, std::span<const size_t> bytes);
Status allgather_ring(Channel& c, void* buffer, std::span<const size_t> bytes);

// Reduce-scatter: `buffer` holds the whole input vector (sum of counts elements); on return
// this rank's block (at its offset within buffer) is reduced.
Status reduce_scatter_recursive_halving(Channel& c, void* buffer, std::span<const size_t> counts,
                                        const Reduction& r);
Status reduce_scatter_ring(Channel& c, void* buffer, std::span<const size_t> counts,
                           const Reduction& r);

// Alltoall(v): blocks by byte counts/offsets; send and recv are distinct.
Status alltoall_bruck(Channel& c, const void* send, void* recv, size_t block_bytes);
Status alltoallv_pairwise(Channel& c, const void* send, std::span<const size_t> send_bytes,
                          std::span<const size_t> send_offsets, void* recv,
                          std::span<const size_t> recv_bytes, std::span<const size_t> recv_offsets);
Status alltoallv_linear(Channel& c, const void* send, std::span<const size_t> send_bytes,
                        std::span<const size_t> send_offsets, void* recv,
                        std::span<const size_t> recv_bytes, std::span<const size_t> recv_offsets);

// Gather/scatter of equal blocks through a binomial tree (root's recv/send packed by rank).
Status gather_binomial(Channel& c, const void* send, void* recv, size_t block_bytes, int root);
Status scatter_binomial(Channel& c, const void* send, void* recv, size_t block_bytes, int root);
// Linear: root talks to every rank; bytes/offsets only meaningful at root.
Status gatherv_linear(Channel& c, const void* send, size_t send_bytes, void* recv,
                      std::span<const size_t> bytes, std::span<const size_t> offsets, int root);
Status scatterv_linear(Channel& c, const void* send, std::span<const size_t> bytes,
                       std::span<const size_t> offsets, void* recv, size_t recv_bytes, int root);

}  // namespace wv::coll::detail
