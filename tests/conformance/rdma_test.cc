// One-sided operations: RDMA write, write with immediate, read; fence and ordering.
#include <atomic>
#include <cstring>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

constexpr uint32_t kImmediate = 0x01020304;

class RdmaTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(make_pair(pair_));
    // Target memory at the server; source / sink memory at the client.
    ASSERT_NO_FATAL_FAILURE(register_buffer(
        kTargetSize, Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite, target_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(kTargetSize, Access::kLocalWrite, source_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(kTargetSize, read_sink_access(), sink_));
  }

  static constexpr size_t kTargetSize = 4 << 20;
  ConnectedPair pair_;
  Buffer target_;
  Buffer source_;
  Buffer sink_;
};

TEST_P(RdmaTest, WritePlacesDataWithoutConsumingAReceive) {
  const Sge receive = scratch_.sge(0, 64);
  ASSERT_OK(pair_.server.qp->post_receive(1, std::span(&receive, 1)));
  fill_pattern(source_.bytes(0, 4096), 5);
  const Sge sge = source_.sge(0, 4096);
  ASSERT_OK(pair_.client.qp->rdma_write(7, std::span(&sge, 1), target_.remote(512),
                                        SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.wr_id, 7u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(c.opcode, Opcode::kRdmaWrite);
  EXPECT_EQ(c.qp_context, client_tag());
  EXPECT_TRUE(wait_for_memory(target_.data() + 512, pattern(4096, 5)));
  EXPECT_TRUE(stays_empty(*pair_.server.receive_cq)) << "a plain write consumes no receive";
}

TEST_P(RdmaTest, WriteGathersFromSeveralSges) {
  if (attributes().max_sge < 2) GTEST_SKIP() << "device max_sge is " << attributes().max_sge;
  fill_pattern(source_.bytes(0, 8192), 6);
  const Sge gather[2] = {source_.sge(4096, 1000), source_.sge(0, 3000)};
  ASSERT_OK(pair_.client.qp->rdma_write(1, gather, target_.remote(0), SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  std::vector<std::byte> expected(source_.data() + 4096, source_.data() + 5096);
  expected.insert(expected.end(), source_.data(), source_.data() + 3000);
  EXPECT_TRUE(wait_for_memory(target_.data(), expected));
}

TEST_P(RdmaTest, WriteWithImmediateConsumesAReceive) {
  REQUIRE_CAPABILITY(Capability::kImmediateData);
  fill_pattern(scratch_.bytes(0, 256), 0);  // the receive buffer must stay untouched
  const std::vector<std::byte> untouched(scratch_.data(), scratch_.data() + 256);
  const Sge receive = scratch_.sge(0, 256);
  ASSERT_OK(pair_.server.qp->post_receive(3, std::span(&receive, 1)));
  fill_pattern(source_.bytes(0, 8192), 8);
  const Sge sge = source_.sge(0, 8192);
  ASSERT_OK(pair_.client.qp->rdma_write_with_immediate(4, std::span(&sge, 1), target_.remote(64),
                                                       kImmediate, SendFlags::kSignaled));
  Completion r;
  ASSERT_TRUE(poll_one(*pair_.server.receive_cq, r));
  EXPECT_EQ(r.wr_id, 3u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.opcode, Opcode::kReceiveRdmaWithImmediate);
  EXPECT_TRUE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_EQ(r.immediate, kImmediate) << std::hex << "got 0x" << r.immediate;
  EXPECT_EQ(r.source_qp_number, expected_source_qp(*pair_.client.qp));
  EXPECT_EQ(r.qp_context, server_tag());
  // When the receive completes, the written data is in place (no waiting here).
  EXPECT_TRUE(has_pattern(target_.bytes(64, 8192), 8));
  EXPECT_EQ(std::memcmp(scratch_.data(), untouched.data(), 256), 0)
      << "the receive completes with the immediate and no data";
  Completion s;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, s));
  EXPECT_EQ(s.wr_id, 4u);
  EXPECT_EQ(s.status, CompletionStatus::kSuccess) << describe(s);
  EXPECT_EQ(s.opcode, Opcode::kRdmaWrite);
}

TEST_P(RdmaTest, ReadReturnsRemoteData) {
  fill_pattern(target_.bytes(0, 65536), 12);
  const Sge sge = sink_.sge(128, 65536);
  ASSERT_OK(
      pair_.client.qp->rdma_read(5, std::span(&sge, 1), target_.remote(0), SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.wr_id, 5u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(c.opcode, Opcode::kRdmaRead);
  EXPECT_EQ(c.length, 65536u);
  EXPECT_EQ(c.qp_number, pair_.client.qp->number());
  EXPECT_TRUE(has_pattern(sink_.bytes(128, 65536), 12));
  EXPECT_TRUE(stays_empty(*pair_.server.receive_cq)) << "a read consumes no receive";
}

TEST_P(RdmaTest, ReadScattersIntoSeveralSges) {
  if (attributes().max_sge < 2) GTEST_SKIP() << "device max_sge is " << attributes().max_sge;
  fill_pattern(target_.bytes(0, 5000), 13);
  const Sge scatter[2] = {sink_.sge(8192, 2000), sink_.sge(0, 3000)};
  if (attributes().max_read_sge < 2) {
    // The device scatters a read into one SGE only (siw): refused at the post, nothing queued.
    EXPECT_EQ(
        pair_.client.qp->rdma_read(1, scatter, target_.remote(0), SendFlags::kSignaled).code(),
        Errc::kInvalidArgument);
    EXPECT_TRUE(stays_empty(*pair_.client.send_cq)) << "a refused post completes nothing";
    const Sge whole = sink_.sge(0, 5000);
    ASSERT_OK(pair_.client.qp->rdma_read(2, std::span(&whole, 1), target_.remote(0),
                                         SendFlags::kSignaled));
    Completion c;
    ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
    EXPECT_EQ(c.wr_id, 2u);
    EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    EXPECT_TRUE(has_pattern(sink_.bytes(0, 5000), 13));
    return;
  }
  ASSERT_OK(pair_.client.qp->rdma_read(1, scatter, target_.remote(0), SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  const std::vector<std::byte> expected = pattern(5000, 13);
  EXPECT_EQ(std::memcmp(sink_.data() + 8192, expected.data(), 2000), 0);
  EXPECT_EQ(std::memcmp(sink_.data(), expected.data() + 2000, 3000), 0);
}

// Larger than any segment or MTU: the transfer is split and reassembled in place.
TEST_P(RdmaTest, LargeWriteAndRead) {
  const uint32_t size = std::min<uint32_t>(kTargetSize, attributes().max_message_size);
  fill_pattern(source_.bytes(0, size), 14);
  const Sge out = source_.sge(0, size);
  ASSERT_OK(
      pair_.client.qp->rdma_write(1, std::span(&out, 1), target_.remote(0), SendFlags::kSignaled));
  const Sge in = sink_.sge(0, size);
  ASSERT_OK(
      pair_.client.qp->rdma_read(2, std::span(&in, 1), target_.remote(0), SendFlags::kSignaled));
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(*pair_.client.send_cq, 2, done));
  EXPECT_EQ(done[0].wr_id, 1u);
  EXPECT_EQ(done[0].status, CompletionStatus::kSuccess) << describe(done[0]);
  EXPECT_EQ(done[1].wr_id, 2u);
  EXPECT_EQ(done[1].status, CompletionStatus::kSuccess) << describe(done[1]);
  EXPECT_EQ(done[1].length, size);
  EXPECT_TRUE(has_pattern(sink_.bytes(0, size), 14)) << "a read after a write sees the write";
}

// A write followed by a send: when the receiver sees the send, the written data is in place.
TEST_P(RdmaTest, WriteThenSendVisibility) {
  constexpr uint32_t kSize = 256 * 1024;
  for (uint32_t round = 0; round < 16; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const Sge receive = scratch_.sge(0, 64);
    ASSERT_OK(pair_.server.qp->post_receive(round, std::span(&receive, 1)));
    fill_pattern(source_.bytes(0, kSize), 100 + round);
    const Sge data = source_.sge(0, kSize);
    ASSERT_OK(pair_.client.qp->rdma_write(2 * round, std::span(&data, 1), target_.remote(0),
                                          SendFlags::kNone));
    const Sge note = source_.sge(kSize, 8);
    ASSERT_OK(pair_.client.qp->send(2 * round + 1, std::span(&note, 1), SendFlags::kSignaled));
    Completion r;
    ASSERT_TRUE(poll_one(*pair_.server.receive_cq, r));
    ASSERT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
    std::atomic_thread_fence(std::memory_order_acquire);
    ASSERT_TRUE(has_pattern(target_.bytes(0, kSize), 100 + round));
    std::vector<Completion> sent;
    ASSERT_TRUE(poll_n(*pair_.client.send_cq, 2, sent)) << "signal_all_sends is the default";
  }
}

// A stream of large writes, each to its own part of the target and more than a shm ring's worth
// (however the provider moves them: several in flight, by the ring or copied by the target), then
// a send: when the send arrives every write is in place, and everything completes in post order.
TEST_P(RdmaTest, StreamOfLargeWritesIsInPlaceWhenTheSendBehindItArrives) {
  constexpr uint32_t kSize = 64 * 1024;
  constexpr uint32_t kWrites = 40;
  static_assert(size_t{kSize} * kWrites + 64 <= kTargetSize);
  for (uint32_t round = 0; round < 4; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const Sge receive = scratch_.sge(0, 64);
    ASSERT_OK(pair_.server.qp->post_receive(round, std::span(&receive, 1)));
    for (uint32_t i = 0; i < kWrites; ++i) {
      fill_pattern(source_.bytes(size_t{i} * kSize, kSize), 1000 * round + i);
      const Sge data = source_.sge(size_t{i} * kSize, kSize);
      ASSERT_OK(pair_.client.qp->rdma_write(i, std::span(&data, 1),
                                            target_.remote(size_t{i} * kSize), SendFlags::kNone));
    }
    const Sge note = source_.sge(size_t{kWrites} * kSize, 8);
    ASSERT_OK(pair_.client.qp->send(kWrites, std::span(&note, 1), SendFlags::kSignaled));
    Completion r;
    ASSERT_TRUE(poll_one(*pair_.server.receive_cq, r));
    ASSERT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
    std::atomic_thread_fence(std::memory_order_acquire);
    for (uint32_t i = 0; i < kWrites; ++i) {
      ASSERT_TRUE(has_pattern(target_.bytes(size_t{i} * kSize, kSize), 1000 * round + i))
          << "write " << i;
    }
    std::vector<Completion> done;
    ASSERT_TRUE(poll_n(*pair_.client.send_cq, kWrites + 1, done));
    for (uint32_t i = 0; i <= kWrites; ++i) {
      EXPECT_EQ(done[i].wr_id, i) << describe(done[i]);
      EXPECT_EQ(done[i].status, CompletionStatus::kSuccess) << describe(done[i]);
    }
  }
}

// A write refused in the middle of a stream of large writes: the writes before it are in place,
// nothing of it or of those after it is, each completes once and in post order, and the QP
// fails. The refused write's own completion follows Capability::kRemoteErrorsInCompletion; the
// later ones are flushed, or (where writes complete once handed over) succeeded, or (with
// Limitation::kRefusedWriteFailsLocally) failed locally, or (with
// Limitation::kQueuedSendsLostOnConnectionLoss) never complete.
TEST_P(RdmaTest, WriteRefusedInAStreamStopsTheStreamThere) {
  constexpr uint32_t kSize = 64 * 1024;
  constexpr uint32_t kWrites = 12;
  constexpr uint32_t kRefused = 6;
  for (uint32_t i = 0; i < kWrites; ++i) {
    fill_pattern(source_.bytes(size_t{i} * kSize, kSize), 2000 + i);
    const Sge data = source_.sge(size_t{i} * kSize, kSize);
    RemoteAddress remote = target_.remote(size_t{i} * kSize);
    if (i == kRefused) remote.rkey = ~remote.rkey;
    ASSERT_OK(pair_.client.qp->rdma_write(i, std::span(&data, 1), remote, SendFlags::kSignaled));
  }
  // Where the connection loss may lose completions behind the failure, take what arrives in a
  // bound; otherwise every write completes.
  const bool may_lose = has_limitation(Limitation::kQueuedSendsLostOnConnectionLoss);
  std::vector<Completion> done;
  if (may_lose) {
    (void)poll_n(*pair_.client.send_cq, kWrites, done, Milliseconds(2000));
  } else {
    ASSERT_TRUE(poll_n(*pair_.client.send_cq, kWrites, done));
  }
  const bool remote_errors = has_capability(Capability::kRemoteErrorsInCompletion);
  const bool fails_locally = has_limitation(Limitation::kRefusedWriteFailsLocally);
  ASSERT_GE(done.size(), kRefused) << "a write before the refused one did not complete";
  uint64_t previous = 0;
  for (size_t k = 0; k < done.size(); ++k) {
    const uint64_t i = done[k].wr_id;
    if (k < kRefused) {
      EXPECT_EQ(i, k) << describe(done[k]);
    } else {
      EXPECT_GT(i, previous) << "out of post order or twice: " << describe(done[k]);
    }
    previous = i;
    if (i >= kRefused && fails_locally &&
        done[k].status == CompletionStatus::kLocalQpOperationError) {
      continue;  // still being handed over when the terminate came (siw)
    }
    if (i < kRefused) {
      EXPECT_EQ(done[k].status, CompletionStatus::kSuccess) << describe(done[k]);
    } else if (i == kRefused) {
      EXPECT_EQ(done[k].status,
                remote_errors ? CompletionStatus::kRemoteAccessError : CompletionStatus::kSuccess)
          << describe(done[k]);
    } else if (remote_errors || done[k].status != CompletionStatus::kSuccess) {
      EXPECT_EQ(done[k].status, CompletionStatus::kFlushed) << describe(done[k]);
    }
  }
  if (done.size() < kWrites) {
    std::printf("note: %zu of the %u writes from the refused one on never completed (%s)\n",
                kWrites - done.size(), kWrites - kRefused,
                to_string(Limitation::kQueuedSendsLostOnConnectionLoss).c_str());
  }
  ASSERT_TRUE(wait_qp_state(*pair_.client.qp, QpState::kError));
  const std::vector<std::byte> zeros(kSize);
  for (uint32_t i = 0; i < kWrites; ++i) {
    if (i < kRefused) {
      EXPECT_TRUE(has_pattern(target_.bytes(size_t{i} * kSize, kSize), 2000 + i)) << "write " << i;
    } else {
      EXPECT_EQ(std::memcmp(target_.bytes(size_t{i} * kSize, kSize).data(), zeros.data(), kSize), 0)
          << "write " << i << " is at or behind the refused one";
    }
  }
}

// Send-queue completions come in post order even while an earlier read is outstanding.
TEST_P(RdmaTest, SendQueueCompletesInPostOrderBehindARead) {
  SKIP_IF_LIMITATION(Limitation::kSendsOvertakeReads, "sends behind a read complete before it");
  constexpr int kSends = 8;
  for (int i = 0; i < kSends; ++i) {
    const Sge receive = scratch_.sge(static_cast<size_t>(i) * 64, 64);
    ASSERT_OK(pair_.server.qp->post_receive(static_cast<uint64_t>(i), std::span(&receive, 1)));
  }
  const uint32_t size = std::min<uint32_t>(kTargetSize, attributes().max_message_size);
  const Sge in = sink_.sge(0, size);
  ASSERT_OK(
      pair_.client.qp->rdma_read(100, std::span(&in, 1), target_.remote(0), SendFlags::kSignaled));
  for (int i = 0; i < kSends; ++i) {
    const Sge note = source_.sge(0, 16);
    ASSERT_OK(pair_.client.qp->send(200 + static_cast<uint64_t>(i), std::span(&note, 1),
                                    SendFlags::kSignaled));
  }
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(*pair_.client.send_cq, kSends + 1, done));
  EXPECT_EQ(done[0].wr_id, 100u) << "the read was posted first: " << describe(done[0]);
  EXPECT_EQ(done[0].opcode, Opcode::kRdmaRead);
  for (int i = 0; i < kSends; ++i) {
    EXPECT_EQ(done[i + 1].wr_id, 200u + static_cast<uint64_t>(i)) << describe(done[i + 1]);
  }
  for (const Completion& c : done) EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  std::vector<Completion> received;
  EXPECT_TRUE(poll_n(*pair_.server.receive_cq, kSends, received));
}

// A read, then a fenced write to the same remote word: the read returns the old value. A third
// read (ordered after the write) sees the new one.
TEST_P(RdmaTest, FencedWriteAfterReadLeavesTheReadItsOldValue) {
  for (uint64_t round = 0; round < 8; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    constexpr uint32_t kSize = 64 * 1024;  // large enough that the read takes a while
    fill_pattern(target_.bytes(0, kSize), 300 + static_cast<uint32_t>(round));
    fill_pattern(source_.bytes(0, kSize), 400 + static_cast<uint32_t>(round));
    const Sge first = sink_.sge(0, kSize);
    ASSERT_OK(pair_.client.qp->rdma_read(1, std::span(&first, 1), target_.remote(0),
                                         SendFlags::kSignaled));
    const Sge write = source_.sge(0, kSize);
    ASSERT_OK(pair_.client.qp->rdma_write(2, std::span(&write, 1), target_.remote(0),
                                          SendFlags::kSignaled | SendFlags::kFence));
    const Sge second = sink_.sge(kSize, kSize);
    ASSERT_OK(pair_.client.qp->rdma_read(3, std::span(&second, 1), target_.remote(0),
                                         SendFlags::kSignaled));
    std::vector<Completion> done;
    ASSERT_TRUE(poll_n(*pair_.client.send_cq, 3, done));
    for (uint64_t i = 0; i < 3; ++i) {
      EXPECT_EQ(done[i].wr_id, i + 1);
      EXPECT_EQ(done[i].status, CompletionStatus::kSuccess) << describe(done[i]);
    }
    EXPECT_TRUE(has_pattern(sink_.bytes(0, kSize), 300 + static_cast<uint32_t>(round)))
        << "the read before the fenced write returns the old data";
    EXPECT_TRUE(has_pattern(sink_.bytes(kSize, kSize), 400 + static_cast<uint32_t>(round)))
        << "the read after the write returns the new data";
  }
}

WV_INSTANTIATE_FOR_PROVIDERS(RdmaTest);

}  // namespace
}  // namespace wv::verbs::conformance
