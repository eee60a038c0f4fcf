// What `wv_perf coll` and `wv_mpi_perf coll` measure through: one collective call of a kind on
// a buffer of a size, implemented over wv::coll (coll_wv_link.cc) or MPI (wv_mpi_perf).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "wv/result.h"

namespace wv::perf {

enum class CollKind {
  kAllreduce,
  kBcast,
  kReduce,
  kAllgather,
  kReduceScatter,
  kAlltoall,
  kGather,
  kScatter,
  kBarrier
};
std::string_view to_string(CollKind kind);
Result<CollKind> parse_coll_kind(std::string_view name);

// Element counts (float) of one call. NCCL's size S is total * 4 bytes: the vector for
// allreduce/bcast/reduce, the gathered/scattered whole for the others (per_rank = total / n).
struct CollShape {
  size_t total = 0;
  size_t per_rank = 0;
};

class CollLink {
 public:
  virtual ~CollLink() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // One call; send/recv hold at least `total` floats.
  virtual Status run(CollKind kind, const CollShape& shape, float* send, float* recv) = 0;
  virtual Status barrier() = 0;
  // `floats` floats of the library's memory for the benchmark's buffers (it keeps them), or
  // null: the driver then uses its own heap memory.
  virtual Result<float*> allocate(size_t /*floats*/) { return static_cast<float*>(nullptr); }
  // The maximum of `value` over all ranks, on every rank.
  virtual Result<double> max(double value) = 0;
  // Which algorithm a call of this kind and shape uses ("" if the library does not say).
  virtual std::string algorithm(CollKind kind, const CollShape& shape) const = 0;
};

}  // namespace wv::perf
