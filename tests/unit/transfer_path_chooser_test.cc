// The shm provider's choice between the ring and CMA for streams of large reads.
#include "transfer_path_chooser.h"

#include <gtest/gtest.h>

namespace wv::verbs::shm {
namespace {

using Path = TransferPathChooser::Path;
constexpr uint64_t kMiB = 1 << 20;

// Feeds the chooser `count` transfers of `bytes`, each taking the time its path takes at the
// given rates (bytes per ns), and returns how many went by CMA.
int run(TransferPathChooser& chooser, int count, uint64_t bytes, double ring_rate,
        double cma_rate) {
  int by_cma = 0;
  for (int i = 0; i < count; ++i) {
    const Path path = chooser.next(bytes);
    const double rate = path == Path::kCma ? cma_rate : ring_rate;
    chooser.record(path, bytes, static_cast<uint64_t>(static_cast<double>(bytes) / rate));
    if (path == Path::kCma) ++by_cma;
  }
  return by_cma;
}

TEST(TransferPathChooserTest, MeasuresBothPathsBeforeChoosing) {
  TransferPathChooser chooser;
  EXPECT_EQ(chooser.next(kMiB), Path::kRing);
  chooser.record(Path::kRing, kMiB, 100'000);
  EXPECT_EQ(chooser.next(kMiB), Path::kCma);
  chooser.record(Path::kCma, kMiB, 80'000);
  EXPECT_EQ(chooser.next(kMiB), Path::kCma) << "CMA measured faster";
}

TEST(TransferPathChooserTest, TakesTheFasterPathAndExploresTheOtherOnceIn64) {
  // 640 transfers: one measurement of each path, then the faster except every 64th.
  constexpr int kCount = 10 * TransferPathChooser::kExploreEvery;
  constexpr int kExplorations = kCount / TransferPathChooser::kExploreEvery;
  TransferPathChooser cma_faster;
  EXPECT_EQ(run(cma_faster, kCount, kMiB, 8.0, 12.0), kCount - 1 - kExplorations);
  TransferPathChooser ring_faster;
  EXPECT_EQ(run(ring_faster, kCount, kMiB, 12.0, 8.0), 1 + kExplorations);
}

TEST(TransferPathChooserTest, FollowsAPhaseChangeWithinAFewExplorations) {
  TransferPathChooser chooser;
  run(chooser, 256, kMiB, 8.0, 12.0);  // CMA ahead
  // The ring becomes the faster (CMA slows to 2 bytes/ns): after a few explorations of the
  // ring, the chooser stays there.
  run(chooser, 4 * TransferPathChooser::kExploreEvery, kMiB, 8.0, 2.0);
  EXPECT_LE(run(chooser, 128, kMiB, 8.0, 2.0), 128 / 64 + 1);
  EXPECT_GT(chooser.rate(Path::kRing, kMiB), chooser.rate(Path::kCma, kMiB));
}

TEST(TransferPathChooserTest, SizeClassesAreMeasuredApart) {
  TransferPathChooser chooser;
  run(chooser, 64, uint64_t{64} * 1024, 12.0, 4.0);  // small reads: the ring ahead
  run(chooser, 64, 4 * kMiB, 4.0, 12.0);             // large reads: CMA ahead
  EXPECT_EQ(chooser.next(uint64_t{64} * 1024), Path::kRing);
  EXPECT_EQ(chooser.next(4 * kMiB), Path::kCma);
  EXPECT_EQ(chooser.rate(Path::kCma, kMiB), 0.0) << "1 MiB is a class of its own, unmeasured";
}

}  // namespace
}  // namespace wv::verbs::shm
