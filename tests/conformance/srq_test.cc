// Shared receive queues (shared_receive_queue.h; capabilities kSharedReceiveQueue,
// kSrqLimitEvent).
#include <map>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

class SrqTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    REQUIRE_CAPABILITY(Capability::kSharedReceiveQueue);
    ASSERT_NO_FATAL_FAILURE(register_buffer(64 * 1024, Access::kLocalWrite, receive_));
  }

  void make_srq(uint32_t max_wr, uint32_t max_sge, uint32_t limit,
                std::shared_ptr<SharedReceiveQueue>& out) {
    ASSERT_OK_AND_ASSIGN(out, pd_->create_shared_receive_queue(max_wr, max_sge, limit));
    ASSERT_NE(out, nullptr);
  }
  void post(SharedReceiveQueue& srq, uint64_t wr_id) {
    const Sge sge = receive_.sge((wr_id % 256) * 256, 256);
    ASSERT_OK(srq.post_receive(wr_id, std::span(&sge, 1)));
  }
  // One send from `pair`'s client that lands in the SRQ.
  void send_one(ConnectedPair& pair, uint32_t seed, Completion& received) {
    fill_pattern(scratch_.bytes(0, 32), seed);
    const Sge sge = scratch_.sge(0, 32);
    ASSERT_OK(pair.client.qp->send(seed, std::span(&sge, 1), SendFlags::kSignaled));
    ASSERT_TRUE(poll_one(*pair.server.receive_cq, received));
    ASSERT_EQ(received.status, CompletionStatus::kSuccess) << describe(received);
    Completion sent;
    ASSERT_TRUE(poll_one(*pair.client.send_cq, sent));
  }

  Buffer receive_;
};

TEST_P(SrqTest, QueryReportsAttributesAndPostedCount) {
  std::shared_ptr<SharedReceiveQueue> srq;
  ASSERT_NO_FATAL_FAILURE(make_srq(64, std::min(2u, attributes().max_srq_sge), 0, srq));
  SrqAttributes a = srq->query();
  EXPECT_GE(a.max_wr, 64u);
  EXPECT_GE(a.max_sge, std::min(2u, attributes().max_srq_sge));
  EXPECT_EQ(a.limit, 0u);
  EXPECT_EQ(a.posted, 0u);
  for (uint64_t i = 0; i < 5; ++i) ASSERT_NO_FATAL_FAILURE(post(*srq, i));
  EXPECT_EQ(srq->query().posted, 5u);
}

TEST_P(SrqTest, FullQueueRefusedAndModifyGrowsIt) {
  std::shared_ptr<SharedReceiveQueue> srq;
  ASSERT_NO_FATAL_FAILURE(make_srq(16, 1, 0, srq));
  const uint32_t max_wr = srq->query().max_wr;
  ASSERT_LE(max_wr, 4096u);
  for (uint32_t i = 0; i < max_wr; ++i) ASSERT_NO_FATAL_FAILURE(post(*srq, i));
  const Sge sge = receive_.sge(0, 64);
  EXPECT_ERRC(Errc::kQueueFull, srq->post_receive(max_wr, std::span(&sge, 1)));
  EXPECT_EQ(srq->query().posted, max_wr);
  ASSERT_OK(srq->modify(max_wr * 2, SharedReceiveQueue::kUnchanged));
  EXPECT_GE(srq->query().max_wr, max_wr * 2);
  EXPECT_OK(srq->post_receive(max_wr, std::span(&sge, 1))) << "room after growing";
  EXPECT_EQ(srq->query().posted, max_wr + 1);
}

TEST_P(SrqTest, TooManySgesRefused) {
  std::shared_ptr<SharedReceiveQueue> srq;
  ASSERT_NO_FATAL_FAILURE(make_srq(16, 1, 0, srq));
  const uint32_t max_sge = srq->query().max_sge;
  std::vector<Sge> sges(max_sge + 1, receive_.sge(0, 16));
  EXPECT_FALSE(srq->post_receive(1, sges).is_ok());
  EXPECT_EQ(srq->query().posted, 0u);
}

TEST_P(SrqTest, ModifyKeepsUnchangedValues) {
  std::shared_ptr<SharedReceiveQueue> srq;
  ASSERT_NO_FATAL_FAILURE(make_srq(32, 1, 0, srq));
  const uint32_t max_wr = srq->query().max_wr;
  ASSERT_OK(srq->modify(SharedReceiveQueue::kUnchanged, 3));
  EXPECT_EQ(srq->query().max_wr, max_wr);
  EXPECT_EQ(srq->query().limit, 3u);
  ASSERT_OK(srq->modify(max_wr * 2, SharedReceiveQueue::kUnchanged));
  EXPECT_GE(srq->query().max_wr, max_wr * 2);
  EXPECT_EQ(srq->query().limit, 3u);
  ASSERT_OK(srq->modify(SharedReceiveQueue::kUnchanged, 0));
  EXPECT_EQ(srq->query().limit, 0u);
}

TEST_P(SrqTest, NotifyLimitWithoutLimitIsInvalidState) {
  std::shared_ptr<SharedReceiveQueue> srq;
  ASSERT_NO_FATAL_FAILURE(make_srq(16, 1, 0, srq));
  auto limit = srq->notify_limit();
  EXPECT_TRUE(limit.ready()) << "refused at once, not left pending";
  EXPECT_ERRC(Errc::kInvalidState, limit.result());
}

// Two QPs on one SRQ and one CQ: each receive completion names the QP it arrived on.
TEST_P(SrqTest, TwoQpsShareOneSrqAndOneCq) {
  std::shared_ptr<SharedReceiveQueue> srq;
  ASSERT_NO_FATAL_FAILURE(make_srq(64, 1, 0, srq));
  std::shared_ptr<CompletionQueue> shared_cq;
  ASSERT_NO_FATAL_FAILURE(make_cq(shared_cq));
  static char first_tag;
  static char second_tag;
  PairOptions options;
  options.server.srq = srq;
  options.server.receive_cq = shared_cq;
  options.server.context = &first_tag;
  ConnectedPair first;
  ASSERT_NO_FATAL_FAILURE(make_pair(first, options));
  options.server.context = &second_tag;
  ConnectedPair second;
  ASSERT_NO_FATAL_FAILURE(make_pair(second, options));
  for (uint64_t i = 0; i < 8; ++i) ASSERT_NO_FATAL_FAILURE(post(*srq, i));

  // Alternate senders; remember which seed each sent.
  std::map<void*, ConnectedPair*> by_context = {{&first_tag, &first}, {&second_tag, &second}};
  std::map<void*, std::vector<uint32_t>> seeds_sent;
  for (uint32_t i = 0; i < 6; ++i) {
    ConnectedPair& pair = (i % 2 == 0) ? first : second;
    fill_pattern(scratch_.bytes(i * 64, 48), 1000 + i);
    const Sge sge = scratch_.sge(i * 64, 48);
    ASSERT_OK(pair.client.qp->send(i, std::span(&sge, 1), SendFlags::kSignaled));
    seeds_sent[pair.server.context].push_back(1000 + i);
    // One at a time, so that the SRQ buffer order is the send order.
    Completion c;
    ASSERT_TRUE(poll_one(*shared_cq, c));
    SCOPED_TRACE(describe(c));
    EXPECT_EQ(c.status, CompletionStatus::kSuccess);
    EXPECT_EQ(c.opcode, Opcode::kReceive);
    EXPECT_EQ(c.wr_id, i) << "SRQ receives are consumed in post order";
    ASSERT_TRUE(by_context.count(c.qp_context)) << "qp_context is one of the two QPs' contexts";
    EXPECT_EQ(c.qp_context, pair.server.context) << "the completion names the receiving QP";
    EXPECT_EQ(c.qp_number, pair.server.qp->number());
    EXPECT_EQ(c.source_qp_number, expected_source_qp(*pair.client.qp));
    EXPECT_EQ(c.length, 48u);
    EXPECT_TRUE(has_pattern(receive_.bytes(c.wr_id * 256, 48), 1000 + i));
    ASSERT_TRUE(poll_one(*pair.client.send_cq, c));
  }
  EXPECT_EQ(srq->query().posted, 2u);
}

// notify_limit fires when the posted count falls below the limit, not before; then disarms.
TEST_P(SrqTest, LimitEventFiresBelowLimitAndDisarms) {
  REQUIRE_CAPABILITY(Capability::kSrqLimitEvent);
  std::shared_ptr<SharedReceiveQueue> srq;
  ASSERT_NO_FATAL_FAILURE(make_srq(16, 1, 0, srq));
  PairOptions options;
  options.server.srq = srq;
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  for (uint64_t i = 0; i < 4; ++i) ASSERT_NO_FATAL_FAILURE(post(*srq, i));
  ASSERT_OK(srq->modify(SharedReceiveQueue::kUnchanged, 2));
  ASSERT_EQ(srq->query().limit, 2u);
  auto limit = srq->notify_limit();
  EXPECT_FALSE(limit.ready());
  const int fd = limit.fd();
  ASSERT_GE(fd, 0);

  Completion c;
  ASSERT_NO_FATAL_FAILURE(send_one(pair, 1, c));  // 3 posted
  EXPECT_EQ(srq->query().posted, 3u);
  EXPECT_ERRC(Errc::kTimedOut, limit.wait(kQuiet)) << "3 posted, limit 2";
  ASSERT_NO_FATAL_FAILURE(send_one(pair, 2, c));  // 2 posted: not below the limit yet
  EXPECT_EQ(srq->query().posted, 2u);
  EXPECT_ERRC(Errc::kTimedOut, limit.wait(kQuiet)) << "2 posted is not below a limit of 2";
  EXPECT_FALSE(fd_readable(fd));
  ASSERT_NO_FATAL_FAILURE(send_one(pair, 3, c));  // 1 posted: below
  EXPECT_OK(limit.wait(kBound));
  EXPECT_TRUE(fd_readable(fd, kBound));
  EXPECT_EQ(srq->query().limit, 0u) << "the limit disarms when it fires";
  EXPECT_ERRC(Errc::kInvalidState, srq->notify_limit().result());

  // Armed again, it fires again.
  for (uint64_t i = 4; i < 6; ++i) ASSERT_NO_FATAL_FAILURE(post(*srq, i));  // 3 posted
  ASSERT_OK(srq->modify(SharedReceiveQueue::kUnchanged, 3));
  auto again = srq->notify_limit();
  EXPECT_ERRC(Errc::kTimedOut, again.wait(kQuiet)) << "3 posted, limit 3";
  ASSERT_NO_FATAL_FAILURE(send_one(pair, 4, c));  // 2 posted
  EXPECT_OK(again.wait(kBound));
}

WV_INSTANTIATE_FOR_PROVIDERS(SrqTest);

}  // namespace
}  // namespace wv::verbs::conformance
