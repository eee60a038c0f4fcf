// Errors: refused posts, error completions, responder errors, RNR (queue_pair.h, types.h).
//
// queue_pair.h: "A malformed request (bad region, too many SGEs, wrong state, full queue) is
// refused with a Status and leaves the QP as it was; an error found while the request is
// processed becomes an error completion and moves the QP to kError, after which every
// outstanding and new work request completes with CompletionStatus::kFlushed."
// So a local SGE naming a region of another PD, or bytes outside its region, is refused at post
// time (not a kLocalProtectionError completion): the region handle is right there to check.
#include <cstring>
#include <thread>

#include "fixture.h"
#include "wv/config/config.h"
#include "wv/config/names.h"

namespace wv::verbs::conformance {
namespace {

class ErrorsTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(make_pair(pair_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(
        8192, Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite, target_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(8192, read_sink_access(), local_));
  }

  // The QP refused the post and is as it was: connected, nothing completed, still working.
  void expect_unchanged_and_working() {
    EXPECT_EQ(pair_.client.qp->query().state, QpState::kReadyToSend);
    EXPECT_TRUE(stays_empty(*pair_.client.send_cq));
    const Sge receive = scratch_.sge(2048, 64);
    ASSERT_OK(pair_.server.qp->post_receive(500, std::span(&receive, 1)));
    const Sge send = scratch_.sge(0, 8);
    ASSERT_OK(pair_.client.qp->send(501, std::span(&send, 1), SendFlags::kSignaled));
    Completion c;
    ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
    EXPECT_EQ(c.wr_id, 501u);
    EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    ASSERT_TRUE(poll_one(*pair_.server.receive_cq, c));
    EXPECT_EQ(c.wr_id, 500u);
    EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  }

  // A read the responder refuses: reads always report at the requester, on every transport.
  void expect_read_refused(RemoteAddress remote, uint32_t length = 64) {
    const Sge sge = local_.sge(0, length);
    ASSERT_OK(pair_.client.qp->rdma_read(42, std::span(&sge, 1), remote, SendFlags::kSignaled));
    Completion c;
    ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
    EXPECT_EQ(c.wr_id, 42u);
    if (has_limitation(Limitation::kRefusedReadFlushed)) {
      EXPECT_EQ(c.status, CompletionStatus::kFlushed)
          << "limitation kRefusedReadFlushed: the terminate closed the connection first: "
          << describe(c);
    } else {
      EXPECT_EQ(c.status, CompletionStatus::kRemoteAccessError) << describe(c);
    }
    EXPECT_EQ(c.qp_number, pair_.client.qp->number());
    ASSERT_TRUE(wait_qp_state(*pair_.client.qp, QpState::kError))
        << "an error completion moves the QP to kError";
    ASSERT_NO_FATAL_FAILURE(expect_new_send_flushed(pair_.client));
  }

  void expect_write_refused(RemoteAddress remote, uint32_t length = 64) {
    fill_pattern(local_.bytes(0, length), 77);
    const Sge sge = local_.sge(0, length);
    ASSERT_OK(pair_.client.qp->rdma_write(43, std::span(&sge, 1), remote, SendFlags::kSignaled));
    ASSERT_NO_FATAL_FAILURE(
        expect_responder_error(pair_, 43, CompletionStatus::kRemoteAccessError));
  }

  ConnectedPair pair_;
  Buffer target_;  // server memory, remote read and write
  Buffer local_;   // client memory
};

// ---- Refused at post ---------------------------------------------------------------------

TEST_P(ErrorsTest, SgeOfAnotherProtectionDomainRefusedAtPost) {
  std::shared_ptr<ProtectionDomain> other;
  ASSERT_OK_AND_ASSIGN(other, device_->allocate_protection_domain());
  Buffer foreign;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, foreign, other.get()));
  const Sge sge = foreign.sge(0, 64);
  auto status = pair_.client.qp->send(1, std::span(&sge, 1), SendFlags::kSignaled);
  EXPECT_FALSE(status.is_ok()) << "a region of another PD is a bad region";
  EXPECT_FALSE(status.message().empty());
  EXPECT_FALSE(pair_.server.qp->post_receive(2, std::span(&sge, 1)).is_ok());
  EXPECT_FALSE(
      pair_.client.qp->rdma_write(3, std::span(&sge, 1), target_.remote(0), SendFlags::kSignaled)
          .is_ok());
  EXPECT_TRUE(stays_empty(*pair_.server.receive_cq));
  ASSERT_NO_FATAL_FAILURE(expect_unchanged_and_working());
}

TEST_P(ErrorsTest, SgeOutsideItsRegionRefusedAtPost) {
  const Sge past_end{local_.region.get(), local_.data() + 8192 - 10, 20};
  EXPECT_FALSE(pair_.client.qp->send(1, std::span(&past_end, 1), SendFlags::kSignaled).is_ok());
  const Sge before_start{local_.region.get(), local_.data() - 8, 16};
  EXPECT_FALSE(pair_.client.qp->send(2, std::span(&before_start, 1), SendFlags::kSignaled).is_ok());
  const Sge no_region{nullptr, local_.data(), 16};
  EXPECT_FALSE(pair_.client.qp->send(3, std::span(&no_region, 1), SendFlags::kSignaled).is_ok())
      << "only inline sends may name unregistered memory";
  const Sge receive_past_end{target_.region.get(), target_.data() + 8000, 1000};
  EXPECT_FALSE(pair_.server.qp->post_receive(4, std::span(&receive_past_end, 1)).is_ok());
  EXPECT_FALSE(pair_.client.qp
                   ->rdma_read(5, std::span(&past_end, 1), target_.remote(0), SendFlags::kSignaled)
                   .is_ok());
  EXPECT_EQ(pair_.server.qp->query().state, QpState::kReadyToSend);
  ASSERT_NO_FATAL_FAILURE(expect_unchanged_and_working());
}

TEST_P(ErrorsTest, TooManySgesRefusedAtPost) {
  const uint32_t send_sge = pair_.client.qp->query().send_sge;
  const uint32_t receive_sge = pair_.server.qp->query().receive_sge;
  std::vector<Sge> sges(std::max(send_sge, receive_sge) + 1, scratch_.sge(0, 4));
  EXPECT_FALSE(
      pair_.client.qp->send(1, std::span(sges.data(), send_sge + 1), SendFlags::kSignaled).is_ok());
  EXPECT_FALSE(pair_.server.qp->post_receive(2, std::span(sges.data(), receive_sge + 1)).is_ok());
  EXPECT_EQ(pair_.server.qp->query().state, QpState::kReadyToSend);
  ASSERT_NO_FATAL_FAILURE(expect_unchanged_and_working());
}

TEST_P(ErrorsTest, FullReceiveQueueRefusedWithQueueFull) {
  const uint32_t depth = pair_.server.qp->query().receive_depth;
  ASSERT_GT(depth, 0u);
  ASSERT_LE(depth, 1u << 16);
  const Sge receive = scratch_.sge(0, 64);
  for (uint32_t i = 0; i < depth; ++i) {
    ASSERT_OK(pair_.server.qp->post_receive(i, std::span(&receive, 1))) << "receive " << i;
  }
  EXPECT_ERRC(Errc::kQueueFull, pair_.server.qp->post_receive(depth, std::span(&receive, 1)));
  EXPECT_EQ(pair_.server.qp->query().state, QpState::kReadyToSend);
}

// ---- Reads: the responder's refusal is always a requester completion ------------------------

TEST_P(ErrorsTest, ReadWithBadRkeyIsRemoteAccessError) {
  RemoteAddress bad = target_.remote(0);
  bad.rkey = ~bad.rkey;
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(bad));
}

TEST_P(ErrorsTest, ReadOutOfBoundsIsRemoteAccessError) {
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(target_.remote(8192 - 32), 64));
}

TEST_P(ErrorsTest, ReadWithoutRemoteReadAccessIsRemoteAccessError) {
  SKIP_IF_LIMITATION(Limitation::kReadAccessNotChecked,
                     "a read of a region without remote read access is served");
  Buffer write_only;
  ASSERT_NO_FATAL_FAILURE(
      register_buffer(4096, Access::kLocalWrite | Access::kRemoteWrite, write_only));
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(write_only.remote(0)));
}

// ---- Writes: per Capability::kRemoteErrorsInCompletion --------------------------------------

TEST_P(ErrorsTest, WriteWithBadRkeyIsRefusedByTheResponder) {
  SKIP_IF_LIMITATION(Limitation::kRefusedWriteFailsLocally,
                     "the refused write may complete local QP operation error");
  RemoteAddress bad = target_.remote(0);
  bad.rkey = ~bad.rkey;
  ASSERT_NO_FATAL_FAILURE(expect_write_refused(bad));
  const std::vector<std::byte> zeros(64);
  EXPECT_EQ(std::memcmp(target_.data(), zeros.data(), 64), 0) << "the refused write wrote nothing";
}

TEST_P(ErrorsTest, WriteOutOfBoundsIsRefusedByTheResponder) {
  ASSERT_NO_FATAL_FAILURE(expect_write_refused(target_.remote(8192 - 32), 64));
  // Nothing was written, not even the part inside the region.
  const std::vector<std::byte> zeros(32);
  EXPECT_EQ(std::memcmp(target_.data() + 8192 - 32, zeros.data(), 32), 0);
}

TEST_P(ErrorsTest, WriteWithoutRemoteWriteAccessIsRefusedByTheResponder) {
  Buffer read_only;
  ASSERT_NO_FATAL_FAILURE(
      register_buffer(4096, Access::kLocalWrite | Access::kRemoteRead, read_only));
  ASSERT_NO_FATAL_FAILURE(expect_write_refused(read_only.remote(0)));
  const std::vector<std::byte> zeros(64);
  EXPECT_EQ(std::memcmp(read_only.data(), zeros.data(), 64), 0)
      << "the refused write wrote nothing";
}

// ---- Receive too short -------------------------------------------------------------------

TEST_P(ErrorsTest, ReceiveTooShortIsLocalLengthError) {
  const Sge receive = target_.sge(0, 16);
  ASSERT_OK(pair_.server.qp->post_receive(7, std::span(&receive, 1)));
  const Sge send = local_.sge(0, 64);
  ASSERT_OK(pair_.client.qp->send(8, std::span(&send, 1), SendFlags::kSignaled));
  Completion r;
  ASSERT_TRUE(poll_one(*pair_.server.receive_cq, r));
  EXPECT_EQ(r.wr_id, 7u);
  const bool as_operation_error = has_limitation(Limitation::kLengthErrorAsOperationError);
  EXPECT_EQ(r.status, as_operation_error ? CompletionStatus::kLocalQpOperationError
                                         : CompletionStatus::kLocalLengthError)
      << (as_operation_error ? "limitation kLengthErrorAsOperationError: " : "") << describe(r);
  EXPECT_EQ(r.qp_number, pair_.server.qp->number());
  EXPECT_TRUE(wait_qp_state(*pair_.server.qp, QpState::kError))
      << "the receiver's error completion moves its QP to kError";
  ASSERT_NO_FATAL_FAILURE(expect_responder_error(pair_, 8,
                                                 as_operation_error
                                                     ? CompletionStatus::kRemoteOperationError
                                                     : CompletionStatus::kRemoteInvalidRequest));
}

// ---- Receiver not ready ------------------------------------------------------------------

class RnrTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    const auto& config = wv::config::global();
    ASSERT_OK(config);
    rnr_timeout_ = Milliseconds(config->get_int(wv::config::names::kRnrTimeoutMs));
    if (rnr_timeout_ == 0ms) GTEST_SKIP() << "rnr_timeout_ms is 0: a receive is never waited for";
    ASSERT_NO_FATAL_FAILURE(make_pair(pair_));
  }
  Milliseconds rnr_timeout_{0};
  ConnectedPair pair_;
};

TEST_P(RnrTest, ReceivePostedWithinRnrTimeoutGetsTheData) {
  SKIP_IF_LIMITATION(Limitation::kNoReceiverNotReadyRetry,
                     "a send finding no receive is a responder error at once (no RNR retry)");
  fill_pattern(scratch_.bytes(0, 128), 31);
  const Sge send = scratch_.sge(0, 128);
  ASSERT_OK(pair_.client.qp->send(1, std::span(&send, 1), SendFlags::kSignaled));
  std::this_thread::sleep_for(rnr_timeout_ / 4);
  Buffer in;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, in));
  const Sge receive = in.sge(0, 4096);
  ASSERT_OK(pair_.server.qp->post_receive(2, std::span(&receive, 1)));
  Completion r;
  ASSERT_TRUE(poll_one(*pair_.server.receive_cq, r, rnr_timeout_ + kBound));
  EXPECT_EQ(r.wr_id, 2u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.length, 128u);
  EXPECT_TRUE(has_pattern(in.bytes(0, 128), 31));
  Completion s;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, s, rnr_timeout_ + kBound));
  EXPECT_EQ(s.status, CompletionStatus::kSuccess) << describe(s);
  EXPECT_EQ(pair_.client.qp->query().state, QpState::kReadyToSend);
  EXPECT_EQ(pair_.server.qp->query().state, QpState::kReadyToSend);
}

TEST_P(RnrTest, ReceiveNeverPostedErrorsBothQps) {
  SKIP_IF_LIMITATION(Limitation::kReceiverNotReadyFailsOnlyTheRequester,
                     "the responder stays connected and the requester retries RNR "
                     "rnr_retry_count times (7: forever)");
  const Sge send = scratch_.sge(0, 128);
  ASSERT_OK(pair_.client.qp->send(1, std::span(&send, 1), SendFlags::kSignaled));
  EXPECT_TRUE(wait_qp_state(*pair_.server.qp, QpState::kError, rnr_timeout_ + kBound))
      << "the receiver gives up after rnr_timeout_ms (" << rnr_timeout_.count() << " ms)";
  ASSERT_NO_FATAL_FAILURE(expect_responder_error(pair_, 1, CompletionStatus::kReceiverNotReady));
}

WV_INSTANTIATE_FOR_PROVIDERS(ErrorsTest);
WV_INSTANTIATE_FOR_PROVIDERS(RnrTest);

}  // namespace
}  // namespace wv::verbs::conformance
