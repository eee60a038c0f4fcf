// The collectives and the names of their algorithms (what the decision table and the
// `algorithm` argument of every Communicator call speak).
#pragma once

#include <span>
#include <string_view>

#include "wv/result.h"

namespace wv::coll {

// The v-variants (allgatherv, gatherv, ...) share the table and names of their base collective.
enum class Collective : uint8_t {
  kBarrier,
  kBcast,
  kReduce,
  kAllreduce,
  kAllgather,
  kReduceScatter,
  kAlltoall,
  kGather,
  kScatter,
};
inline constexpr Collective kAllCollectives[] = {
    Collective::kBarrier,   Collective::kBcast,     Collective::kReduce,
    Collective::kAllreduce, Collective::kAllgather, Collective::kReduceScatter,
    Collective::kAlltoall,  Collective::kGather,    Collective::kScatter};

std::string_view to_string(Collective collective);
Result<Collective> parse_collective(std::string_view name);

// Algorithm names, e.g. allreduce: recursive_doubling, rabenseifner, ring, hierarchical.
//   barrier        dissemination, hierarchical, shared_memory
//   bcast          binomial, scatter_allgather (van de Geijn), chain (pipelined), hierarchical,
//                  shared_memory
//   reduce         binomial
//   allreduce      recursive_doubling, rabenseifner, ring, hierarchical, shared_memory
//   allgather      recursive_doubling, bruck, ring, hierarchical, shared_memory
//   reduce_scatter recursive_halving, ring
//   alltoall       pairwise, bruck, hierarchical and shared_memory (equal blocks only: not
//                  alltoallv), linear
//   gather         binomial (equal blocks only: not gatherv), linear
//   scatter        binomial (equal blocks only: not scatterv), linear
std::span<const std::string_view> algorithm_names(Collective collective);
// shared_memory runs through the host's shared segment when every rank is on one host and
// the call is blocking; otherwise (several hosts, no segment, non-blocking) it is
// dissemination, binomial, recursive doubling (rabenseifner above 64 KiB), ring and pairwise.
// hierarchical uses the segment for its intra-host steps under the same conditions.
// kInvalidArgument naming the valid choices when `name` is not one of them.
Status check_algorithm(Collective collective, std::string_view name);

}  // namespace wv::coll
