// The host table the collectives build from every rank's host key, and the virtual hosts
// (topology_fake_hosts, topology_fake_layout) that let one machine stand for several.
#include "wv/collectives/topology.h"

#include <gtest/gtest.h>

#include <vector>

namespace wv::coll {
namespace {

using Hosts = std::vector<std::vector<int>>;

TEST(TopologyTest, RealHostsInOrderOfTheirLowestRank) {
  const Topology t = Topology::build({7, 3, 7, 3, 9}, {0, 0, 1, 0, 0}, 0);
  EXPECT_EQ(t.host_ranks, (Hosts{{0, 2}, {1, 3}, {4}}));
  EXPECT_EQ(t.host_of_rank, (std::vector<int>{0, 1, 0, 1, 2}));
  EXPECT_EQ(t.leader_of(1), 1);
}

TEST(TopologyTest, BlockLayoutSplitsEachHostIntoContiguousRuns) {
  const Topology t = Topology::build({1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}, 2);
  EXPECT_EQ(t.host_ranks, (Hosts{{0, 1, 2}, {3, 4}}));
}

TEST(TopologyTest, CyclicLayoutDealsRanksRoundRobin) {
  const Topology t = Topology::build({1, 1, 1, 1, 1}, {0, 0, 0, 0, 0}, 2, FakeLayout::kCyclic);
  EXPECT_EQ(t.host_ranks, (Hosts{{0, 2, 4}, {1, 3}}));
  EXPECT_EQ(t.host_of_rank, (std::vector<int>{0, 1, 0, 1, 0}));
  // Each real host is dealt on its own: ranks 1 and 3 are the second real host.
  const Topology two = Topology::build({5, 6, 5, 6}, {0, 0, 0, 0}, 2, FakeLayout::kCyclic);
  EXPECT_EQ(two.host_ranks, (Hosts{{0}, {2}, {1}, {3}}));
}

TEST(TopologyTest, MoreVirtualHostsThanRanksLeaveNoEmptyHost) {
  for (FakeLayout layout : {FakeLayout::kBlock, FakeLayout::kCyclic}) {
    const Topology t = Topology::build({1, 1}, {0, 0}, 5, layout);
    EXPECT_EQ(t.host_ranks, (Hosts{{0}, {1}}));
  }
}

}  // namespace
}  // namespace wv::coll
