// Where the ranks of a job run: grouped by host, and by socket inside a host.
//
// Each rank describes its own machine with hwloc (sockets, NUMA nodes, cores, the socket its
// thread last ran on, whether that CPU is local to a network device) and its host name;
// Communicator::create() exchanges the descriptions and builds this table, identical on every
// rank. Hierarchical algorithms run an intra-host step among the ranks of a host and an
// inter-host step among one leader per host: the host's lowest rank near a network device (the
// inter-host traffic crosses no socket link to reach the NIC), or its lowest rank when hwloc
// shows no device locality (a single socket, a virtual machine).
//
// Testing on one machine: the configuration parameter topology_fake_hosts (environment
// WV_TOPOLOGY_FAKE_HOSTS=F) splits each real host's ranks, in rank order, into F contiguous
// virtual hosts, so 4 ranks with F=2 form hosts {0,1} and {2,3}; with topology_fake_layout=cyclic
// rank i goes to virtual host i mod F ({0,2} and {1,3}), as ranks placed round-robin on hosts;
// topology_fake_nic=last declares each host's network device near its highest rank, so the
// leader is not the lowest rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wv/result.h"

namespace wv::coll {

// What hwloc reports about the calling process's machine.
struct MachineInfo {
  std::string host_name;
  int sockets = 1;
  int numa_nodes = 1;
  int cores = 1;
  int processing_units = 1;
  int socket = 0;           // the socket this thread last ran on (0 if unknown)
  int network_devices = 0;  // RDMA devices, or network interfaces when there is none
  // This thread's CPU is inside the locality (the nearest non-I/O ancestor's CPUs) of one of
  // the network devices; true when there is none, or no locality to tell ranks apart.
  bool near_nic = true;
  // The largest data cache this thread's CPU reads through (its last level; 0 if unknown).
  size_t last_level_cache_bytes = 0;
  bool from_hwloc = false;
};
MachineInfo describe_this_machine();

// What one rank tells the others about where it runs.
struct RankPlacement {
  uint64_t host_key = 0;  // equal on ranks of one host
  int socket = 0;
  bool near_nic = true;
};

enum class FakeLayout : uint8_t { kBlock, kCyclic };
enum class FakeNic : uint8_t { kNone, kLast };

struct Topology {
  std::vector<int> host_of_rank;             // by job rank
  std::vector<int> socket_of_rank;           // by job rank
  std::vector<std::vector<int>> host_ranks;  // by host: its leader, then its other ranks ascending
  int fake_hosts = 0;                        // the split applied (0: real hosts)
  MachineInfo machine;                       // this rank's machine

  int host_count() const { return static_cast<int>(host_ranks.size()); }
  int leader_of(int host) const { return host_ranks[static_cast<size_t>(host)].front(); }
  // One line per host: its ranks, plus this machine's hwloc summary.
  std::string describe() const;

  // The table from every rank's placement, in rank order; `fake_hosts`, `layout` and
  // `fake_nic` as above.
  static Topology build(const std::vector<RankPlacement>& ranks, int fake_hosts,
                        FakeLayout layout = FakeLayout::kBlock, FakeNic fake_nic = FakeNic::kNone);
};

}  // namespace wv::coll
