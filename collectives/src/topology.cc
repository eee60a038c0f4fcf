#include "wv/collectives/topology.h"

#include <hwloc.h>
#include <unistd.h>

#include <algorithm>
#include <map>

namespace wv::coll {
namespace {

// The network devices and whether `where` (this thread's CPU) lies in the locality of one:
// RDMA devices when there are any (what wv's ibverbs provider drives), else network interfaces.
// A device's locality is the CPU set of its nearest non-I/O ancestor, the whole machine when
// the firmware tells nothing (then every CPU is near).
void find_network_devices(hwloc_topology_t topology, hwloc_const_bitmap_t where,
                          MachineInfo& info) {
  for (hwloc_obj_osdev_type_t type : {HWLOC_OBJ_OSDEV_OPENFABRICS, HWLOC_OBJ_OSDEV_NETWORK}) {
    int count = 0;
    bool near = false;
    for (hwloc_obj_t device = hwloc_get_next_osdev(topology, nullptr); device != nullptr;
         device = hwloc_get_next_osdev(topology, device)) {
      if (device->attr->osdev.type != type) continue;
      ++count;
      hwloc_obj_t local = hwloc_get_non_io_ancestor_obj(topology, device);
      if (local != nullptr && local->cpuset != nullptr &&
          hwloc_bitmap_isincluded(where, local->cpuset)) {
        near = true;
      }
    }
    if (count > 0) {
      info.network_devices = count;
      info.near_nic = near;
      return;
    }
  }
}

}  // namespace

MachineInfo describe_this_machine() {
  MachineInfo info;
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) == 0) info.host_name = name;
  hwloc_topology_t topology;
  if (hwloc_topology_init(&topology) != 0) return info;
  // PCI devices and their OS devices (network interfaces, RDMA devices), for NIC locality.
  hwloc_topology_set_io_types_filter(topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
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
      for (hwloc_obj_t obj = hwloc_get_obj_covering_cpuset(topology, where); obj != nullptr;
           obj = obj->parent) {
        if (hwloc_obj_type_is_dcache(obj->type)) {
          info.last_level_cache_bytes =
              std::max(info.last_level_cache_bytes, static_cast<size_t>(obj->attr->cache.size));
        }
      }
      find_network_devices(topology, where, info);
    }
    if (where) hwloc_bitmap_free(where);
  }
  hwloc_topology_destroy(topology);
  return info;
}

Topology Topology::build(const std::vector<RankPlacement>& ranks, int fake_hosts, FakeLayout layout,
                         FakeNic fake_nic) {
  Topology t;
  t.fake_hosts = fake_hosts;
  // Real hosts in order of their lowest rank.
  std::map<uint64_t, std::vector<int>> by_key;
  std::vector<uint64_t> order;
  for (size_t rank = 0; rank < ranks.size(); ++rank) {
    t.socket_of_rank.push_back(ranks[rank].socket);
    auto [it, inserted] = by_key.try_emplace(ranks[rank].host_key);
    if (inserted) order.push_back(ranks[rank].host_key);
    it->second.push_back(static_cast<int>(rank));
  }
  t.host_of_rank.assign(ranks.size(), 0);
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
      // The leader first: the host's lowest rank near a network device, if any is.
      const int last = host.back();
      const auto leader = std::find_if(host.begin(), host.end(), [&](int rank) {
        return fake_nic == FakeNic::kLast ? rank == last
                                          : ranks[static_cast<size_t>(rank)].near_nic;
      });
      if (leader != host.end()) std::rotate(host.begin(), leader, leader + 1);
      for (int rank : host)
        t.host_of_rank[static_cast<size_t>(rank)] = static_cast<int>(t.host_ranks.size());
      t.host_ranks.push_back(std::move(host));
    }
  }
  // A job on one host has no step between hosts, so no leader to place near a network device;
  // its host group then runs in job rank order, as the whole-job shared-memory collectives
  // (which take roots and place blocks by segment rank) need.
  if (t.host_ranks.size() == 1) std::sort(t.host_ranks[0].begin(), t.host_ranks[0].end());
  return t;
}

std::string Topology::describe() const {
  std::string out;
  for (size_t h = 0; h < host_ranks.size(); ++h) {
    out += "host " + std::to_string(h) + " (leader " + std::to_string(host_ranks[h].front()) + "):";
    for (int rank : host_ranks[h]) {
      out += " " + std::to_string(rank) + "(socket " +
             std::to_string(socket_of_rank[static_cast<size_t>(rank)]) + ")";
    }
    out += "\n";
  }
  out += "this machine: " + machine.host_name + ", " + std::to_string(machine.sockets) +
         " socket(s), " + std::to_string(machine.numa_nodes) + " NUMA node(s), " +
         std::to_string(machine.cores) + " core(s), " + std::to_string(machine.processing_units) +
         " PU(s), " + std::to_string(machine.network_devices) + " network device(s)" +
         (machine.network_devices > 0 ? (machine.near_nic ? ", near one" : ", none near") : "") +
         (machine.from_hwloc ? "" : " (hwloc unavailable)") +
         (fake_hosts > 0 ? ", virtual hosts: " + std::to_string(fake_hosts) + " per host" : "") +
         "\n";
  return out;
}

}  // namespace wv::coll
