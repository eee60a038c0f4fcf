#include "hierarchical.h"

namespace wv::coll::detail {

namespace {
constexpr size_t kLargeBytes = 64 * 1024;  // above: bandwidth-optimal sub-algorithms
bool leads(const Hierarchy& h) {
  return h.host->rank == 0;
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
  // 3. Inside each host from its leader (host group rank 0).
  if (h.host->size > 1) {
    Channel local = c.derive(*h.host, 3);
    if (h.segment) return h.segment->bcast(local, buffer, bytes, 0);
    return bytes > kLargeBytes && h.host->size > 2
               ? bcast_scatter_allgather(local, buffer, bytes, 0)
               : bcast_binomial(local, buffer, bytes, 0);
  }
  return Status::ok();
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
  if (h.host->size > 1) {
    Channel local = c.derive(*h.host, 3);
    if (h.segment) {
      // One host: the segment's allreduce already gave every rank the result.
      return h.leaders->size > 1 ? h.segment->bcast(local, buffer, bytes, 0) : Status::ok();
    }
    return bytes > kLargeBytes && h.host->size > 2
               ? bcast_scatter_allgather(local, buffer, bytes, 0)
               : bcast_binomial(local, buffer, bytes, 0);
  }
  return Status::ok();
}

}  // namespace wv::coll::detail
