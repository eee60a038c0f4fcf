// The eager limit's cost model: the round trip it assumes per transport and what follows.
#include "eager_limit.h"

#include <gtest/gtest.h>

namespace wv::transport {
namespace {

using verbs::Transport;

TEST(EagerLimitTest, TwoCopiesAgainstOneRoundTrip) {
  // 10 GB/s and a NIC's 3 us round trip: two copies of 15000 B cost the round trip.
  const EagerChoice roce = choose_eager_limit(10, Transport::kRoce, false);
  EXPECT_DOUBLE_EQ(roce.round_trip_us, 3);
  EXPECT_DOUBLE_EQ(roce.break_even, 15000);
  EXPECT_EQ(roce.limit, 8192u);
}

TEST(EagerLimitTest, KernelEmulatedDevicesPayANetworkStackRoundTrip) {
  // Soft-RoCE speaks RoCE but every message crosses the kernel's network stack: a slow copy
  // (an emulated guest's 2 GB/s) must not push 4 KiB messages into rendezvous, as the NIC's
  // round trip would (2 KiB).
  EXPECT_EQ(choose_eager_limit(2, Transport::kRoce, false).limit, 2048u);
  const EagerChoice rxe = choose_eager_limit(2, Transport::kRoce, true);
  EXPECT_DOUBLE_EQ(rxe.round_trip_us, 15);
  EXPECT_EQ(rxe.limit, 8192u);
  EXPECT_EQ(choose_eager_limit(2, Transport::kIwarp, true).limit, 8192u);
}

TEST(EagerLimitTest, SharedMemoryRoundTripsAreShort) {
  // shm's cache-hot copies (48 GB/s measured) against its sub-microsecond round trip.
  const EagerChoice shm = choose_eager_limit(48, Transport::kSoftware, false);
  EXPECT_DOUBLE_EQ(shm.round_trip_us, 0.5);
  EXPECT_EQ(shm.limit, 8192u);
}

TEST(EagerLimitTest, StaysWithinItsBounds) {
  EXPECT_EQ(choose_eager_limit(0.01, Transport::kInfiniband, false).limit, kMinEagerChoice);
  EXPECT_EQ(choose_eager_limit(1000, Transport::kIwarp, false).limit, kMaxEagerChoice);
}

}  // namespace
}  // namespace wv::transport
