// 64-bit remote atomics: compare-and-swap, fetch-and-add (queue_pair.h; capability kAtomics).
#include <atomic>
#include <set>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

class AtomicsTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    REQUIRE_CAPABILITY(Capability::kAtomics);
    ASSERT_NO_FATAL_FAILURE(make_pair(pair_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(
        4096, Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteAtomic, target_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(1 << 16, read_sink_access(), results_));
  }

  uint64_t& word(size_t index = 0) { return target_.as<uint64_t>()[index]; }
  uint64_t load_word(size_t index = 0) {
    return std::atomic_ref<uint64_t>(word(index)).load(std::memory_order_acquire);
  }
  uint64_t result(size_t index = 0) { return results_.as<uint64_t>()[index]; }
  Sge result_sge(size_t index = 0) { return results_.sge(index * 8, 8); }

  ConnectedPair pair_;
  Buffer target_;
  Buffer results_;
};

TEST_P(AtomicsTest, CompareAndSwapSwapsWhenEqual) {
  word() = 5;
  results_.as<uint64_t>()[0] = 0xdead;
  ASSERT_OK(pair_.client.qp->compare_and_swap(1, result_sge(), target_.remote(0), 5, 9,
                                              SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.wr_id, 1u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(c.opcode, Opcode::kCompareAndSwap);
  EXPECT_EQ(c.length, 8u);
  EXPECT_EQ(result(), 5u) << "the original value is returned";
  EXPECT_EQ(load_word(), 9u) << "equal: swapped";
}

TEST_P(AtomicsTest, CompareAndSwapLeavesUnequalWord) {
  word() = 5;
  ASSERT_OK(pair_.client.qp->compare_and_swap(1, result_sge(), target_.remote(0), 7, 9,
                                              SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(result(), 5u);
  EXPECT_EQ(load_word(), 5u) << "not equal: not swapped";
}

TEST_P(AtomicsTest, FetchAndAddReturnsOldValueAndWrapsAround) {
  word(0) = 100;
  word(1) = ~uint64_t{0};
  ASSERT_OK(pair_.client.qp->fetch_and_add(1, result_sge(0), target_.remote(0), 23,
                                           SendFlags::kSignaled));
  ASSERT_OK(
      pair_.client.qp->fetch_and_add(2, result_sge(1), target_.remote(8), 2, SendFlags::kSignaled));
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(*pair_.client.send_cq, 2, done));
  for (const Completion& c : done) {
    EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    EXPECT_EQ(c.opcode, Opcode::kFetchAndAdd);
    EXPECT_EQ(c.length, 8u);
  }
  EXPECT_EQ(result(0), 100u);
  EXPECT_EQ(load_word(0), 123u);
  EXPECT_EQ(result(1), ~uint64_t{0});
  EXPECT_EQ(load_word(1), 1u) << "64-bit arithmetic wraps";
}

// Operands and results are host order: a value with distinct bytes round-trips unchanged.
TEST_P(AtomicsTest, OperandsAreHostOrder) {
  constexpr uint64_t kOld = 0x0102030405060708;
  constexpr uint64_t kNew = 0x1112131415161718;
  word() = kOld;
  ASSERT_OK(pair_.client.qp->compare_and_swap(1, result_sge(), target_.remote(0), kOld, kNew,
                                              SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(result(), kOld) << std::hex << "got 0x" << result();
  EXPECT_EQ(load_word(), kNew) << std::hex << "got 0x" << load_word();
}

TEST_P(AtomicsTest, AtomicWithoutRemoteAtomicAccessIsRefused) {
  Buffer plain;
  ASSERT_NO_FATAL_FAILURE(register_buffer(
      4096, Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite, plain));
  ASSERT_OK(
      pair_.client.qp->fetch_and_add(3, result_sge(), plain.remote(0), 1, SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.wr_id, 3u);
  EXPECT_EQ(c.status, CompletionStatus::kRemoteAccessError)
      << "atomics return data, so the responder's refusal is always reported: " << describe(c);
  EXPECT_EQ(plain.as<uint64_t>()[0], 0u);
  EXPECT_TRUE(wait_qp_state(*pair_.client.qp, QpState::kError));
}

// Two QPs each add 1000 times to one remote word: no update is lost and every fetched value
// is distinct (each add saw the word as the previous add left it).
TEST_P(AtomicsTest, ConcurrentFetchAndAddFromTwoQpsIsAtomic) {
  constexpr uint64_t kAdd = 3;
  constexpr uint32_t kPerQp = 1000;
  constexpr uint32_t kWindow = 16;
  ConnectedPair second;
  ASSERT_NO_FATAL_FAILURE(make_pair(second));
  Buffer results;
  ASSERT_NO_FATAL_FAILURE(register_buffer(2 * kPerQp * 8, read_sink_access(), results));
  word() = 0;
  ConnectedPair* pairs[2] = {&pair_, &second};
  uint32_t posted[2] = {0, 0};
  uint32_t completed[2] = {0, 0};
  while (completed[0] < kPerQp || completed[1] < kPerQp) {
    for (int q = 0; q < 2; ++q) {
      while (posted[q] < kPerQp && posted[q] - completed[q] < kWindow) {
        const uint32_t slot = q * kPerQp + posted[q];
        const Sge sge = results.sge(size_t{slot} * 8, 8);
        ASSERT_OK(pairs[q]->client.qp->fetch_and_add(slot, sge, target_.remote(0), kAdd,
                                                     SendFlags::kSignaled));
        ++posted[q];
      }
    }
    for (int q = 0; q < 2; ++q) {
      if (completed[q] == posted[q]) continue;
      Completion c;
      ASSERT_TRUE(poll_one(*pairs[q]->client.send_cq, c));
      ASSERT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
      ASSERT_EQ(c.wr_id, q * kPerQp + completed[q]) << "completions in post order";
      ++completed[q];
    }
  }
  EXPECT_EQ(load_word(), 2 * kPerQp * kAdd);
  std::set<uint64_t> seen;
  for (uint32_t i = 0; i < 2 * kPerQp; ++i) {
    const uint64_t old = results.as<uint64_t>()[i];
    EXPECT_EQ(old % kAdd, 0u) << "slot " << i;
    EXPECT_LT(old, 2 * kPerQp * kAdd) << "slot " << i;
    seen.insert(old);
  }
  EXPECT_EQ(seen.size(), 2 * kPerQp) << "every fetched value is distinct";
}

WV_INSTANTIATE_FOR_PROVIDERS(AtomicsTest);

}  // namespace
}  // namespace wv::verbs::conformance
