#include "hierarchical.h"

#include <algorithm>
#include <cstring>

#include "scratch.h"
#include "wv/copy.h"

namespace wv::coll::detail {

namespace {
constexpr size_t kLargeBytes = size_t{64} * 1024;  // above: bandwidth-optimal sub-algorithms
bool leads(const Hierarchy& h) {
  return h.host->rank == 0;
}

// From the host's leader (host group rank 0) to the host's other ranks.
Status bcast_in_host(const Channel& c, const Hierarchy& h, void* buffer, size_t bytes,
                     uint32_t phase) {
  Channel local = c.derive(*h.host, phase);
  if (h.segment) return h.segment->bcast(local, buffer, bytes, 0);
  return bytes > kLargeBytes && h.host->size > 2 ? bcast_scatter_allgather(local, buffer, bytes, 0)
                                                 : bcast_binomial(local, buffer, bytes, 0);
}

// An allgather over the transport: few steps for small blocks, every byte once for large.
Status allgather_by_size(Channel& c, void* buffer, std::span<const size_t> bytes) {
  const size_t total = prefix(bytes).back();
  return total > kLargeBytes ? allgather_ring(c, buffer, bytes) : allgather_bruck(c, buffer, bytes);
}

// The host's blocks (packed in host rank order in `buffer`, this rank's in place) to every
// rank of the host.
Status allgather_in_host(const Channel& c, const Hierarchy& h, void* buffer,
                         std::span<const size_t> bytes, uint32_t phase) {
  Channel local = c.derive(*h.host, phase);
  return h.segment ? h.segment->allgatherv(local, buffer, bytes)
                   : allgather_by_size(local, buffer, bytes);
}
}  // namespace

Status barrier_hierarchical(Channel& c, const Hierarchy& h) {
  Channel local = c.derive(*h.host, 1);
  Status s = h.segment ? h.segment->barrier(local) : barrier_dissemination(local);
  if (!s.is_ok()) return s;
  if (leads(h) && h.leaders->size > 1) {
    Channel across = c.derive(*h.leaders, 2);
    if (s = barrier_dissemination(across); !s.is_ok()) return s;
  }
  Channel release = c.derive(*h.host, 3);
  return h.segment ? h.segment->barrier(release) : barrier_dissemination(release);
}

Status bcast_hierarchical(Channel& c, const Hierarchy& h, void* buffer, size_t bytes, int root) {
  const Topology& t = *h.topology;
  const int root_host = t.host_of_rank[static_cast<size_t>(root)];
  const int root_leader = t.leader_of(root_host);
  const int me = h.world->rank;
  // 1. The root hands the message to its host's leader.
  if (root != root_leader) {
    Channel hop = c.derive(*h.world, 1);
    if (me == root) {
      if (Status s = hop.send(root_leader, 0, buffer, bytes); !s.is_ok()) return s;
    } else if (me == root_leader) {
      if (Status s = hop.recv(root, 0, buffer, bytes); !s.is_ok()) return s;
    }
  }
  // 2. Among the leaders (leader group rank = host index).
  if (leads(h) && h.leaders->size > 1) {
    Channel across = c.derive(*h.leaders, 2);
    Status s = bytes > kLargeBytes && h.leaders->size > 2
                   ? bcast_scatter_allgather(across, buffer, bytes, root_host)
                   : bcast_binomial(across, buffer, bytes, root_host);
    if (!s.is_ok()) return s;
  }
  // 3. Inside each host from its leader.
  return h.host->size > 1 ? bcast_in_host(c, h, buffer, bytes, 3) : Status::ok();
}

namespace {

Status allreduce_by_columns(Channel& c, const Hierarchy& h, void* buffer, size_t count,
                            const Reduction& r) {
  const size_t element = r.element();
  Channel local = c.derive(*h.host, 1);
  if (Status s = h.segment->reduce_scatter(local, buffer, buffer, count, r); !s.is_ok()) return s;
  // The shares of the segment's reduce-scatter.
  const EvenSplit shares(count, h.host->size);
  const int me = h.host->rank;
  Channel across = c.derive(*h.column, 2);
  auto* share = static_cast<std::byte*>(buffer) + shares.start(me) * element;
  Status s = shares.size(me) * element > kLargeBytes
                 ? allreduce_rabenseifner(across, share, shares.size(me), r)
                 : allreduce_recursive_doubling(across, share, shares.size(me), r);
  if (!s.is_ok()) return s;
  Channel back = c.derive(*h.host, 3);
  std::vector<size_t> bytes(static_cast<size_t>(h.host->size));
  for (int rank = 0; rank < h.host->size; ++rank) {
    bytes[static_cast<size_t>(rank)] = shares.size(rank) * element;
  }
  return h.segment->allgatherv(back, buffer, bytes);
}

}  // namespace

Status allreduce_hierarchical(Channel& c, const Hierarchy& h, void* buffer, size_t count,
                              const Reduction& r) {
  const size_t bytes = count * r.element();
  if (h.segment && h.column && h.leaders->size > 1 && bytes > kLargeBytes) {
    return allreduce_by_columns(c, h, buffer, count, r);
  }
  if (h.host->size > 1) {
    Channel local = c.derive(*h.host, 1);
    // Through the segment every rank of the host gets the host's result, the leader included.
    Status s = h.segment ? h.segment->allreduce(local, buffer, buffer, count, r)
                         : reduce_binomial(local, buffer, buffer, count, r, 0);
    if (!s.is_ok()) return s;
  }
  if (leads(h) && h.leaders->size > 1) {
    Channel across = c.derive(*h.leaders, 2);
    Status s = bytes > kLargeBytes ? allreduce_rabenseifner(across, buffer, count, r)
                                   : allreduce_recursive_doubling(across, buffer, count, r);
    if (!s.is_ok()) return s;
  }
  // One host with the segment: its allreduce already gave every rank the result.
  if (h.host->size > 1 && (!h.segment || h.leaders->size > 1)) {
    return bcast_in_host(c, h, buffer, bytes, 3);
  }
  return Status::ok();
}

Status allgather_hierarchical(Channel& c, const Hierarchy& h, void* buffer_,
                              std::span<const size_t> bytes) {
  auto* buffer = static_cast<std::byte*>(buffer_);
  const Topology& t = *h.topology;
  const auto my_host = static_cast<size_t>(t.host_of_rank[static_cast<size_t>(h.world->rank)]);
  // The blocks in host order (host 0's ranks, then host 1's, ...): each host's blocks are one
  // range, which every step moves as a whole. That is world rank order when every host's ranks
  // are adjacent; otherwise the work is done in a scratch buffer and placed by rank at the end.
  std::vector<int> order;          // the world rank at each position
  std::vector<size_t> ordered;     // bytes by position
  std::vector<size_t> host_bytes;  // by host (leader group rank): its blocks' bytes
  size_t my_first = 0;             // the position of this host's first rank
  for (size_t host = 0; host < t.host_ranks.size(); ++host) {
    if (host == my_host) my_first = order.size();
    size_t sum = 0;
    for (int rank : t.host_ranks[host]) {
      order.push_back(rank);
      ordered.push_back(bytes[static_cast<size_t>(rank)]);
      sum += bytes[static_cast<size_t>(rank)];
    }
    host_bytes.push_back(sum);
  }
  const std::vector<size_t> at = prefix(ordered);
  const std::vector<size_t> host_at = prefix(host_bytes);
  const std::vector<size_t> world_at = prefix(bytes);
  const bool in_rank_order = std::is_sorted(order.begin(), order.end());
  Scratch scratch(in_rank_order ? 0 : at.back());
  std::byte* work = buffer;
  if (!in_rank_order) {
    work = scratch.data();
    const size_t me = static_cast<size_t>(h.world->rank);
    const size_t position = my_first + static_cast<size_t>(h.host->rank);
    if (bytes[me] > 0) copy_bytes(work + at[position], buffer + world_at[me], bytes[me]);
  }
  // Every block from the scratch buffer to its rank's place, once all are there.
  const auto place = [&](Status done) {
    if (!done.is_ok() || in_rank_order) return done;
    for (size_t position = 0; position < order.size(); ++position) {
      const auto rank = static_cast<size_t>(order[position]);
      if (bytes[rank] > 0) copy_bytes(buffer + world_at[rank], work + at[position], bytes[rank]);
    }
    return done;
  };
  // 1. The host's blocks to all its ranks.
  if (h.host->size > 1) {
    const std::span<const size_t> local(ordered.data() + my_first,
                                        static_cast<size_t>(h.host->size));
    if (Status s = allgather_in_host(c, h, work + host_at[my_host], local, 1); !s.is_ok()) return s;
  }
  // 2. The hosts' block sets across hosts. With hosts of one size, rank i of every host
  //    exchanges them with rank i of the others: every rank takes the other hosts' blocks from
  //    the transport itself, all ranks at once, and no broadcast inside the host follows.
  if (h.column) {
    Channel across = c.derive(*h.column, 2);
    return place(allgather_by_size(across, work, host_bytes));
  }
  if (leads(h) && h.leaders->size > 1) {
    Channel across = c.derive(*h.leaders, 2);
    if (Status s = allgather_by_size(across, work, host_bytes); !s.is_ok()) return s;
  }
  // 3. The other hosts' blocks (those before this host's and those after) from the leader.
  if (h.host->size > 1 && h.leaders->size > 1) {
    const size_t after = at.back() - host_at[my_host + 1];
    if (host_at[my_host] > 0) {
      if (Status s = bcast_in_host(c, h, work, host_at[my_host], 3); !s.is_ok()) return s;
    }
    if (after > 0) {
      Status s = bcast_in_host(c, h, work + host_at[my_host + 1], after, 4);
      if (!s.is_ok()) return s;
    }
  }
  return place(Status::ok());
}

Status alltoall_hierarchical(Channel& c, const Hierarchy& h, const void* send_, void* recv_,
                             size_t block) {
  const auto* send = static_cast<const std::byte*>(send_);
  auto* recv = static_cast<std::byte*>(recv_);
  const int n = c.size();
  const int rank = c.rank();
  const Topology& t = *h.topology;
  const auto host_of = [&](int r) { return t.host_of_rank[static_cast<size_t>(r)]; };
  const bool through_segment = h.segment != nullptr && h.host->size > 1;
  const auto by_transport = [&](int r) {
    return !(through_segment && host_of(r) == host_of(rank));
  };
  const auto at = [block](int r) { return static_cast<size_t>(r) * block; };
  // The transport's share goes as alltoallv_linear's, all posted at once, but in windows of
  // distances k (rank + k, rank - k) so that a large job does not flood the peers: a pair's send
  // and receive fall in the same window on both ranks. The first window moves while the segment
  // copies this host's blocks.
  constexpr int kWindow = 4;
  const auto post_window = [&](int first) -> Status {
    for (int k = first; k < std::min(first + kWindow, n); ++k) {
      const int from = (rank - k + n) % n;
      if (!by_transport(from)) continue;
      if (Status s = c.post_recv(from, 0, recv + at(from), block); !s.is_ok()) return s;
    }
    for (int k = first; k < std::min(first + kWindow, n); ++k) {
      const int to = (rank + k) % n;
      if (!by_transport(to)) continue;
      if (Status s = c.post_send(to, 0, send + at(to), block); !s.is_ok()) return s;
    }
    return Status::ok();
  };
  if (Status s = post_window(1); !s.is_ok()) return s;
  if (through_segment) {
    std::vector<size_t> places;
    for (int member : h.host->world) places.push_back(at(member));
    Channel local = c.derive(*h.host, 1);
    if (Status s = h.segment->alltoall(local, send, recv, block, places); !s.is_ok()) return s;
  } else {
    copy_bytes(recv + at(rank), send + at(rank), block);
  }
  for (int first = 1;; first += kWindow) {
    if (Status s = c.wait(); !s.is_ok()) return s;
    if (first + kWindow >= n) return Status::ok();
    if (Status s = post_window(first + kWindow); !s.is_ok()) return s;
  }
}

}  // namespace wv::coll::detail
