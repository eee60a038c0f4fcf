// The host table the collectives build from every rank's placement, the leaders it chooses by
// network-device locality, what hwloc tells a rank about its machine, and the virtual hosts
// (topology_fake_hosts, topology_fake_layout, topology_fake_nic) that let one machine stand for
// several.
#include "wv/collectives/topology.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace wv::coll {
namespace {

using Hosts = std::vector<std::vector<int>>;

// Ranks on the hosts named by `keys` (socket 0, every rank near a network device).
std::vector<RankPlacement> on_hosts(const std::vector<uint64_t>& keys) {
  std::vector<RankPlacement> ranks;
  for (uint64_t key : keys) ranks.push_back({key, 0, true});
  return ranks;
}

TEST(TopologyTest, RealHostsInOrderOfTheirLowestRank) {
  const Topology t =
      Topology::build({{7, 0, true}, {3, 0, true}, {7, 1, true}, {3, 0, true}, {9, 0, true}}, 0);
  EXPECT_EQ(t.host_ranks, (Hosts{{0, 2}, {1, 3}, {4}}));
  EXPECT_EQ(t.host_of_rank, (std::vector<int>{0, 1, 0, 1, 2}));
  EXPECT_EQ(t.socket_of_rank, (std::vector<int>{0, 0, 1, 0, 0}));
  EXPECT_EQ(t.leader_of(1), 1);
}

TEST(TopologyTest, BlockLayoutSplitsEachHostIntoContiguousRuns) {
  const Topology t = Topology::build(on_hosts({1, 1, 1, 1, 1}), 2);
  EXPECT_EQ(t.host_ranks, (Hosts{{0, 1, 2}, {3, 4}}));
}

TEST(TopologyTest, CyclicLayoutDealsRanksRoundRobin) {
  const Topology t = Topology::build(on_hosts({1, 1, 1, 1, 1}), 2, FakeLayout::kCyclic);
  EXPECT_EQ(t.host_ranks, (Hosts{{0, 2, 4}, {1, 3}}));
  EXPECT_EQ(t.host_of_rank, (std::vector<int>{0, 1, 0, 1, 0}));
  // Each real host is dealt on its own: ranks 1 and 3 are the second real host.
  const Topology two = Topology::build(on_hosts({5, 6, 5, 6}), 2, FakeLayout::kCyclic);
  EXPECT_EQ(two.host_ranks, (Hosts{{0}, {2}, {1}, {3}}));
}

TEST(TopologyTest, MoreVirtualHostsThanRanksLeaveNoEmptyHost) {
  for (FakeLayout layout : {FakeLayout::kBlock, FakeLayout::kCyclic}) {
    const Topology t = Topology::build(on_hosts({1, 1}), 5, layout);
    EXPECT_EQ(t.host_ranks, (Hosts{{0}, {1}}));
  }
}

TEST(TopologyTest, LeaderIsTheLowestRankNearANetworkDevice) {
  // Host 7: ranks 0, 2, 4, of which 2 and 4 sit near its NIC; host 3: ranks 1 and 3, none near
  // (no locality to go by: the lowest rank leads).
  const Topology t =
      Topology::build({{7, 0, false}, {3, 0, false}, {7, 1, true}, {3, 0, false}, {7, 1, true}}, 0);
  EXPECT_EQ(t.host_ranks, (Hosts{{2, 0, 4}, {1, 3}}));
  EXPECT_EQ(t.leader_of(0), 2);
  EXPECT_EQ(t.leader_of(1), 1);
  EXPECT_EQ(t.host_of_rank, (std::vector<int>{0, 1, 0, 1, 0}));
}

TEST(TopologyTest, AJobOnOneHostKeepsJobRankOrder) {
  // Rank 2 sits near the NIC, but with one host there is nothing to lead: the host group stays
  // in job rank order (the whole-job shared-memory collectives index it by job rank).
  const Topology t = Topology::build({{7, 0, false}, {7, 0, false}, {7, 1, true}}, 0);
  EXPECT_EQ(t.host_ranks, (Hosts{{0, 1, 2}}));
  const Topology last = Topology::build(on_hosts({1, 1, 1}), 0, FakeLayout::kBlock, FakeNic::kLast);
  EXPECT_EQ(last.host_ranks, (Hosts{{0, 1, 2}}));
}

TEST(TopologyTest, FakeNicLastMakesEachHostsHighestRankLead) {
  const Topology t =
      Topology::build(on_hosts({1, 1, 1, 1, 1}), 2, FakeLayout::kBlock, FakeNic::kLast);
  EXPECT_EQ(t.host_ranks, (Hosts{{2, 0, 1}, {4, 3}}));
  const Topology cyclic =
      Topology::build(on_hosts({1, 1, 1, 1, 1}), 2, FakeLayout::kCyclic, FakeNic::kLast);
  EXPECT_EQ(cyclic.host_ranks, (Hosts{{4, 0, 2}, {3, 1}}));
}

// A two-socket machine whose RDMA device hangs off socket 1, as hwloc's XML describes it.
constexpr const char* kTwoSocketsNicOnSecond = R"(<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
 <object type="Machine" os_index="0" cpuset="0x3" complete_cpuset="0x3" allowed_cpuset="0x3" nodeset="0x3" complete_nodeset="0x3" allowed_nodeset="0x3" gp_index="1">
  <object type="Package" os_index="0" cpuset="0x1" complete_cpuset="0x1" nodeset="0x1" complete_nodeset="0x1" gp_index="2">
   <object type="NUMANode" os_index="0" cpuset="0x1" complete_cpuset="0x1" nodeset="0x1" complete_nodeset="0x1" gp_index="3" local_memory="1073741824"/>
   <object type="Core" os_index="0" cpuset="0x1" complete_cpuset="0x1" nodeset="0x1" complete_nodeset="0x1" gp_index="4">
    <object type="PU" os_index="0" cpuset="0x1" complete_cpuset="0x1" nodeset="0x1" complete_nodeset="0x1" gp_index="5"/>
   </object>
  </object>
  <object type="Package" os_index="1" cpuset="0x2" complete_cpuset="0x2" nodeset="0x2" complete_nodeset="0x2" gp_index="6">
   <object type="NUMANode" os_index="1" cpuset="0x2" complete_cpuset="0x2" nodeset="0x2" complete_nodeset="0x2" gp_index="7" local_memory="1073741824"/>
   <object type="Core" os_index="1" cpuset="0x2" complete_cpuset="0x2" nodeset="0x2" complete_nodeset="0x2" gp_index="8">
    <object type="PU" os_index="1" cpuset="0x2" complete_cpuset="0x2" nodeset="0x2" complete_nodeset="0x2" gp_index="9"/>
   </object>
   <object type="Bridge" gp_index="10" bridge_type="0-1" depth="0" bridge_pci="0000:[01-01]">
    <object type="PCIDev" gp_index="11" pci_busid="0000:01:00.0" pci_type="0207 [15b3:1017] [15b3:0020] 00" pci_link_speed="0.000000">
     <object type="OSDev" gp_index="12" name="mlx5_0" osdev_type="3"/>
    </object>
   </object>
  </object>
 </object>
</topology>
)";

TEST(TopologyTest, ThisMachineKnowsWhetherItsCpuIsNearTheNic) {
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  if (!CPU_ISSET(0, &allowed) || !CPU_ISSET(1, &allowed)) {
    GTEST_SKIP() << "needs CPUs 0 and 1 to stand for the XML machine's two sockets";
  }
  char path[] = "/tmp/wv-topology-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string xml = kTwoSocketsNicOnSecond;
  ASSERT_EQ(write(fd, xml.data(), xml.size()), static_cast<ssize_t>(xml.size()));
  close(fd);
  // hwloc reads the machine from the file and, told it is this system, locates the thread on
  // the real CPU it is pinned to.
  setenv("HWLOC_XMLFILE", path, 1);
  setenv("HWLOC_THISSYSTEM", "1", 1);
  auto on_cpu = [](int cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    EXPECT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    return describe_this_machine();
  };
  const MachineInfo far = on_cpu(0);
  const MachineInfo near = on_cpu(1);
  sched_setaffinity(0, sizeof allowed, &allowed);
  unsetenv("HWLOC_XMLFILE");
  unsetenv("HWLOC_THISSYSTEM");
  std::remove(path);
  ASSERT_TRUE(far.from_hwloc);
  EXPECT_EQ(far.sockets, 2);
  EXPECT_EQ(far.network_devices, 1);
  EXPECT_EQ(far.socket, 0);
  EXPECT_FALSE(far.near_nic);
  EXPECT_EQ(near.socket, 1);
  EXPECT_TRUE(near.near_nic);
}

}  // namespace
}  // namespace wv::coll
