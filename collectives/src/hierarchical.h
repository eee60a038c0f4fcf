// Hierarchical algorithms: an intra-host step among the ranks of each host, an inter-host
// step among one leader per host (the host's lowest rank), then the intra-host step back.
// A large allreduce on hosts of equal size with a shared segment has as many leaders per host
// as ranks: the host's reduce-scatter leaves share i with rank i, the i-th ranks of all hosts
// allreduce that share among themselves (in parallel), and the host's allgather spreads it.
#pragma once

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
  // With the segment, large allreduces use every rank of a host as a leader for one share.
  const Group* column;
};

Status barrier_hierarchical(Channel& c, const Hierarchy& h);
Status bcast_hierarchical(Channel& c, const Hierarchy& h, void* buffer, size_t bytes, int root);
Status allreduce_hierarchical(Channel& c, const Hierarchy& h, void* buffer, size_t count,
                              const Reduction& r);

}  // namespace wv::coll::detail
