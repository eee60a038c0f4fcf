#include "wv/collectives/topology.h"

#include <hwloc.h>
#include <unistd.h>

#include <map>

namespace wv::coll {

MachineInfo describe_this_machine() {
  MachineInfo info;
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) == 0) info.host_name = name;
  hwloc_topology_t topology;
  if (hwloc_topology_init(&topology) != 0) return info;
  if (hwloc_topology_load(topology) == 0) {
    info.from_hwloc = true;
    info.sockets = std::max(1, hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PACKAGE));
    info.numa_nodes = std::max(1, hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE));
    info.cores = std::max(1, hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE));
    info.processing_units = std::max(1, hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU));
    hwloc_bitmap_t where = hwloc_bitmap_alloc();
    if (where && hwloc_get_last_cpu_location(topology, where, HWLOC_CPUBIND_THREAD) == 0) {
      hwloc_obj_t package =
          hwloc_get_next_obj_covering_cpuset_by_type(topology, where, HWLOC_OBJ_PACKAGE, nullptr);
      if (package) info.socket = static_cast<int>(package->logical_index);
    }
    if (where) hwloc_bitmap_free(where);
  }
  hwloc_topology_destroy(topology);
  return info;
}

Topology Topology::build(const std::vector<uint64_t>& host_keys, const std::vector<int>& sockets,
                         int fake_hosts, FakeLayout layout) {
  Topology t;
  t.fake_hosts = fake_hosts;
  t.socket_of_rank = sockets;
  // Real hosts in order of their lowest rank.
  std::map<uint64_t, std::vector<int>> by_key;
  std::vector<uint64_t> order;
  for (size_t rank = 0; rank < host_keys.size(); ++rank) {
    auto [it, inserted] = by_key.try_emplace(host_keys[rank]);
    if (inserted) order.push_back(host_keys[rank]);
    it->second.push_back(static_cast<int>(rank));
  }
  t.host_of_rank.assign(host_keys.size(), 0);
  for (uint64_t key : order) {
    const std::vector<int>& members = by_key[key];
    const size_t parts = fake_hosts > 0 ? static_cast<size_t>(fake_hosts) : 1;
    const size_t m = members.size();
    for (size_t part = 0; part < parts; ++part) {
      std::vector<int> host;
      for (size_t i = 0; i < m; ++i) {
        const size_t dealt = layout == FakeLayout::kCyclic ? i % parts : i * parts / m;
        if (dealt == part) host.push_back(members[i]);
      }
      if (host.empty()) continue;
      for (int rank : host)
        t.host_of_rank[static_cast<size_t>(rank)] = static_cast<int>(t.host_ranks.size());
      t.host_ranks.push_back(std::move(host));
    }
  }
  return t;
}

std::string Topology::describe() const {
  std::string out;
  for (size_t h = 0; h < host_ranks.size(); ++h) {
    out += "host " + std::to_string(h) + ":";
    for (int rank : host_ranks[h]) {
      out += " " + std::to_string(rank) + "(socket " +
             std::to_string(socket_of_rank[static_cast<size_t>(rank)]) + ")";
    }
    out += "\n";
  }
  out += "this machine: " + machine.host_name + ", " + std::to_string(machine.sockets) +
         " socket(s), " + std::to_string(machine.numa_nodes) + " NUMA node(s), " +
         std::to_string(machine.cores) + " core(s), " + std::to_string(machine.processing_units) +
         " PU(s)" + (machine.from_hwloc ? "" : " (hwloc unavailable)") +
         (fake_hosts > 0 ? ", virtual hosts: " + std::to_string(fake_hosts) + " per host" : "") +
         "\n";
  return out;
}

}  // namespace wv::coll
