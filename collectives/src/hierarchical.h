// Hierarchical algorithms: an intra-host step among the ranks of each host, an inter-host
// step among one leader per host (Topology: its lowest rank near a network device), then the
// intra-host step back.
// A large allreduce on hosts of equal size with a shared segment has as many leaders per host
// as ranks: the host's reduce-scatter leaves share i with rank i, the i-th ranks of all hosts
// allreduce that share among themselves (in parallel), and the host's allgather spreads it.
// Allgather gathers the host's blocks on every rank of the host, the leaders exchange the hosts'
// block sets, and each leader broadcasts the other hosts' blocks to its host; on hosts of equal
// size rank i of every host exchanges them with rank i of the others instead (no broadcast).
// Alltoall has no leaders: every rank exchanges its blocks with the other hosts' ranks through
// the transport while the host's blocks move through the segment.
#pragma once

#include <span>

#include "algorithms.h"
#include "host_segment.h"
#include "wv/collectives/topology.h"

namespace wv::coll::detail {

struct Hierarchy {
  const Group* world;
  const Group* host;     // this rank's host
  const Group* leaders;  // valid only on leaders (host group rank 0)
  const Topology* topology;
  HostSegment* segment;  // the host's shared segment for the intra-host steps; may be null
  // Rank i of every host (this rank's index), when all hosts have as many ranks; else null.
  // With the segment, large allreduces use every rank of a host as a leader for one share;
  // allgathers use every rank as a leader for its whole host, with or without the segment.
  const Group* column;
};

Status barrier_hierarchical(Channel& c, const Hierarchy& h);
Status bcast_hierarchical(Channel& c, const Hierarchy& h, void* buffer, size_t bytes, int root);
Status allreduce_hierarchical(Channel& c, const Hierarchy& h, void* buffer, size_t count,
                              const Reduction& r);
// Blocks of bytes[i] packed in world rank order in `buffer`, this rank's already in place (as
// the allgathers of algorithms.h). A host's ranks need not be adjacent in world rank order.
Status allgather_hierarchical(Channel& c, const Hierarchy& h, void* buffer,
                              std::span<const size_t> bytes);
// Equal blocks by world rank in `send` and `recv` (distinct buffers), as alltoall_bruck.
Status alltoall_hierarchical(Channel& c, const Hierarchy& h, const void* send, void* recv,
                             size_t block);

}  // namespace wv::coll::detail
