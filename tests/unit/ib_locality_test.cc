// The ibverbs provider's choice of its default device: the RDMA device nearest to the CPUs the
// process is bound to (sysfs local_cpulist), hardware before software devices.
#include "ib_locality.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace wv::verbs::ib {
namespace {

using Cpus = std::vector<int>;
using Locality = std::vector<std::optional<Cpus>>;

TEST(IbLocalityTest, TheNicOfTheBoundSocketComesFirst) {
  // mlx5_0 on socket 0 (CPUs 0-3), mlx5_1 on socket 1 (CPUs 4-7), rxe0 without locality.
  const Locality devices = {Cpus{0, 1, 2, 3}, Cpus{4, 5, 6, 7}, std::nullopt};
  EXPECT_EQ(nearest_first(devices, {5}), (std::vector<size_t>{1, 0, 2}));
  EXPECT_EQ(nearest_first(devices, {4, 5, 6, 7}), (std::vector<size_t>{1, 0, 2}));
  EXPECT_EQ(nearest_first(devices, {1}), (std::vector<size_t>{0, 1, 2}));
}

TEST(IbLocalityTest, AnUnboundProcessKeepsTheListOrder) {
  // Bound to CPUs of both sockets: no device is nearer; software devices still come last.
  const Locality devices = {std::nullopt, Cpus{0, 1}, Cpus{2, 3}};
  EXPECT_EQ(nearest_first(devices, {0, 1, 2, 3}), (std::vector<size_t>{1, 2, 0}));
  const Locality software = {std::nullopt, std::nullopt};
  EXPECT_EQ(nearest_first(software, {0}), (std::vector<size_t>{0, 1}));
}

}  // namespace
}  // namespace wv::verbs::ib
