// Connected QPs: state, sends and receives, completion contents, flush (queue_pair.h, types.h).
#include <algorithm>
#include <array>
#include <cstring>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

using ConnectedQpTest = VerbsTest;

constexpr uint32_t kImmediate = 0x01020304;  // host order in the API, both ends

// ---- State ---------------------------------------------------------------------------------

TEST_P(ConnectedQpTest, NewQpReportsItsAttributes) {
  QpSide a;
  QpSide b;
  QueuePairOptions options;
  options.send_depth = std::min(64u, attributes().max_qp_wr);
  options.receive_depth = std::min(32u, attributes().max_qp_wr);
  options.send_sge = std::min(2u, attributes().max_sge);
  options.receive_sge = 1;
  ASSERT_NO_FATAL_FAILURE(make_side(options, client_tag(), a));
  ASSERT_NO_FATAL_FAILURE(make_side(options, server_tag(), b));
  EXPECT_NE(a.qp->number(), 0u);
  EXPECT_NE(a.qp->number(), b.qp->number());
  EXPECT_EQ(a.qp->context(), client_tag());
  const QpAttributes q = a.qp->query();
  EXPECT_EQ(q.qp_number, a.qp->number());
  EXPECT_EQ(q.state, QpState::kInit) << "a new connected QP starts in kInit (queue_pair.h)";
  EXPECT_GE(q.send_depth, options.send_depth);
  EXPECT_GE(q.receive_depth, options.receive_depth);
  EXPECT_GE(q.send_sge, options.send_sge);
  EXPECT_GE(q.receive_sge, options.receive_sge);
}

TEST_P(ConnectedQpTest, PostingBeforeConnectionIsInvalidState) {
  QpSide side;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), side));
  const QpState before = side.qp->query().state;
  const Sge sge = scratch_.sge(0, 8);
  EXPECT_ERRC(Errc::kInvalidState, side.qp->send(1, std::span(&sge, 1), SendFlags::kSignaled));
  EXPECT_ERRC(Errc::kInvalidState, side.qp->rdma_write(2, std::span(&sge, 1), scratch_.remote(64),
                                                       SendFlags::kSignaled));
  EXPECT_ERRC(Errc::kInvalidState,
              side.qp->rdma_read(3, std::span(&sge, 1), scratch_.remote(64), SendFlags::kSignaled));
  EXPECT_EQ(side.qp->query().state, before) << "a refused post leaves the QP as it was";
  EXPECT_TRUE(stays_empty(*side.send_cq));
}

// queue_pair.h: a new connected QP starts in kInit so that receives can be posted before the
// endpoint connects it; they are used by the first messages.
TEST_P(ConnectedQpTest, ReceivesPostedBeforeConnectAreUsed) {
  QpSide client;
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));
  for (uint64_t i = 0; i < 2; ++i) {
    const Sge receive = scratch_.sge(1024 + i * 64, 64);
    ASSERT_OK(server.qp->post_receive(i, std::span(&receive, 1)));
  }
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), listener));
  ASSERT_NO_FATAL_FAILURE(connect_sides(*listener, client, server, {}, {}));
  for (uint64_t i = 0; i < 2; ++i) {
    scratch_.data()[i] = static_cast<std::byte>(0x40 + i);
    const Sge send = scratch_.sge(i, 1);
    ASSERT_OK(client.qp->send(10 + i, std::span(&send, 1), SendFlags::kSignaled));
  }
  std::vector<Completion> received;
  ASSERT_TRUE(poll_n(*server.receive_cq, 2, received));
  for (uint64_t i = 0; i < 2; ++i) {
    EXPECT_EQ(received[i].wr_id, i);
    EXPECT_EQ(received[i].status, CompletionStatus::kSuccess) << describe(received[i]);
    EXPECT_EQ(scratch_.data()[1024 + i * 64], static_cast<std::byte>(0x40 + i));
  }
}

// User-driven transitions: any -> kError, kError -> kReset, kReset -> kInit,
// kReadyToSend <-> kSendQueueDrained; the others belong to the endpoint and are refused.
TEST_P(ConnectedQpTest, UserTransitionsOfAnUnconnectedQp) {
  QpSide side;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), side));
  QueuePair& qp = *side.qp;
  const QpState initial = qp.query().state;
  for (QpState refused :
       {QpState::kReadyToReceive, QpState::kReadyToSend, QpState::kSendQueueDrained}) {
    EXPECT_FALSE(qp.modify(refused).is_ok())
        << to_string(initial) << " -> " << to_string(refused) << " belongs to the endpoint";
    EXPECT_EQ(qp.query().state, initial);
  }
  ASSERT_OK(qp.modify(QpState::kError));
  EXPECT_EQ(qp.query().state, QpState::kError);
  EXPECT_FALSE(qp.modify(QpState::kInit).is_ok()) << "kError -> kInit is not a user transition";
  EXPECT_FALSE(qp.modify(QpState::kReadyToSend).is_ok());
  EXPECT_EQ(qp.query().state, QpState::kError);
  if (has_limitation(Limitation::kNoReconnectAfterError)) {
    EXPECT_ERRC(Errc::kNotSupported, qp.modify(QpState::kReset))
        << "limitation kNoReconnectAfterError: the device keeps the QP in error";
    EXPECT_EQ(qp.query().state, QpState::kError);
    return;
  }
  ASSERT_OK(qp.modify(QpState::kReset));
  EXPECT_EQ(qp.query().state, QpState::kReset);
  EXPECT_FALSE(qp.modify(QpState::kReadyToReceive).is_ok());
  EXPECT_EQ(qp.query().state, QpState::kReset);
  ASSERT_OK(qp.modify(QpState::kInit));
  EXPECT_EQ(qp.query().state, QpState::kInit);
  EXPECT_FALSE(qp.modify(QpState::kReadyToReceive).is_ok());
  EXPECT_FALSE(qp.modify(QpState::kReadyToSend).is_ok());
  EXPECT_FALSE(qp.modify(QpState::kReset).is_ok()) << "kInit -> kReset is not a user transition";
  EXPECT_EQ(qp.query().state, QpState::kInit);
  ASSERT_OK(qp.modify(QpState::kError)) << "any state -> kError";
  EXPECT_EQ(qp.query().state, QpState::kError);
}

TEST_P(ConnectedQpTest, UserTransitionsOfAConnectedQp) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  QueuePair& qp = *pair.client.qp;
  EXPECT_EQ(qp.query().state, QpState::kReadyToSend);
  EXPECT_EQ(pair.server.qp->query().state, QpState::kReadyToSend);
  // Like Completion::source_qp_number (types.h): known where the transport names QPs.
  EXPECT_EQ(qp.query().peer_qp_number, expected_source_qp(*pair.server.qp));
  EXPECT_EQ(pair.server.qp->query().peer_qp_number, expected_source_qp(qp));
  for (QpState refused : {QpState::kReset, QpState::kInit, QpState::kReadyToReceive}) {
    EXPECT_FALSE(qp.modify(refused).is_ok()) << "ready-to-send -> " << to_string(refused);
    EXPECT_EQ(qp.query().state, QpState::kReadyToSend);
  }
  if (has_limitation(Limitation::kNoSendQueueDrain)) {
    EXPECT_ERRC(Errc::kNotSupported, qp.modify(QpState::kSendQueueDrained))
        << "limitation kNoSendQueueDrain: refused, the connection untouched";
    EXPECT_EQ(qp.query().state, QpState::kReadyToSend);
  } else {
    ASSERT_OK(qp.modify(QpState::kSendQueueDrained));
    EXPECT_EQ(qp.query().state, QpState::kSendQueueDrained);
    ASSERT_OK(qp.modify(QpState::kReadyToSend));
    EXPECT_EQ(qp.query().state, QpState::kReadyToSend);
  }

  // Still a working connection.
  const Sge receive = scratch_.sge(1024, 64);
  ASSERT_OK(pair.server.qp->post_receive(1, std::span(&receive, 1)));
  const Sge send = scratch_.sge(0, 16);
  ASSERT_OK(pair.client.qp->send(2, std::span(&send, 1), SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  ASSERT_TRUE(poll_one(*pair.client.send_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
}

// kError -> kReset -> kInit exists so that a QP can be connected again.
TEST_P(ConnectedQpTest, QpReconnectsAfterErrorResetInit) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  ASSERT_OK(pair.client.endpoint->disconnect().wait(kBound));
  ASSERT_OK(pair.server.endpoint->disconnect().wait(kBound));
  if (has_limitation(Limitation::kNoReconnectAfterError)) {
    ASSERT_OK(pair.client.qp->modify(QpState::kError));
    EXPECT_ERRC(Errc::kNotSupported, pair.client.qp->modify(QpState::kReset))
        << "limitation kNoReconnectAfterError: the reset is refused, not a silent no-op";
    EXPECT_EQ(pair.client.qp->query().state, QpState::kError);
    return;
  }
  for (QpSide* side : {&pair.client, &pair.server}) {
    ASSERT_OK(side->qp->modify(QpState::kError));
    ASSERT_OK(side->qp->modify(QpState::kReset));
    ASSERT_OK(side->qp->modify(QpState::kInit));
    side->endpoint.reset();
  }
  ASSERT_NO_FATAL_FAILURE(connect_sides(*pair.listener, pair.client, pair.server, {}, {}));
  EXPECT_EQ(pair.client.qp->query().state, QpState::kReadyToSend);
  const Sge receive = scratch_.sge(1024, 64);
  ASSERT_OK(pair.server.qp->post_receive(1, std::span(&receive, 1)));
  const Sge send = scratch_.sge(0, 16);
  ASSERT_OK(pair.client.qp->send(2, std::span(&send, 1), SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(c.source_qp_number, expected_source_qp(*pair.client.qp));
}

// ---- Sends and receives ----------------------------------------------------------------------

TEST_P(ConnectedQpTest, SendCompletionContents) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  Buffer out;
  Buffer in;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, out));
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, in));
  fill_pattern(out.bytes(0, 100), 1);
  const Sge receive = in.sge(0, 256);
  ASSERT_OK(pair.server.qp->post_receive(77, std::span(&receive, 1)));
  const Sge send = out.sge(0, 100);
  ASSERT_OK(pair.client.qp->send(55, std::span(&send, 1), SendFlags::kSignaled));

  Completion r;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, r));
  EXPECT_EQ(r.wr_id, 77u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.opcode, Opcode::kReceive);
  EXPECT_EQ(r.length, 100u);
  EXPECT_EQ(r.qp_context, server_tag());
  EXPECT_EQ(r.qp_number, pair.server.qp->number());
  EXPECT_EQ(r.source_qp_number, expected_source_qp(*pair.client.qp));
  EXPECT_FALSE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_FALSE(has(r.flags, CompletionFlags::kWithInvalidate));
  EXPECT_TRUE(has_pattern(in.bytes(0, 100), 1));

  Completion s;
  ASSERT_TRUE(poll_one(*pair.client.send_cq, s));
  EXPECT_EQ(s.wr_id, 55u);
  EXPECT_EQ(s.status, CompletionStatus::kSuccess) << describe(s);
  EXPECT_EQ(s.opcode, Opcode::kSend);
  EXPECT_EQ(s.qp_context, client_tag());
  EXPECT_EQ(s.qp_number, pair.client.qp->number());
}

TEST_P(ConnectedQpTest, SendWithImmediateArrivesInHostOrder) {
  REQUIRE_CAPABILITY(Capability::kImmediateData);
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  const Sge receive = scratch_.sge(1024, 256);
  ASSERT_OK(pair.server.qp->post_receive(1, std::span(&receive, 1)));
  fill_pattern(scratch_.bytes(0, 32), 3);
  const Sge send = scratch_.sge(0, 32);
  ASSERT_OK(pair.client.qp->send_with_immediate(2, std::span(&send, 1), kImmediate,
                                                SendFlags::kSignaled));
  Completion r;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, r));
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.opcode, Opcode::kReceive);
  EXPECT_TRUE(has(r.flags, CompletionFlags::kWithImmediate)) << describe(r);
  EXPECT_EQ(r.immediate, kImmediate) << std::hex << "got 0x" << r.immediate;
  EXPECT_EQ(r.length, 32u);
  EXPECT_TRUE(has_pattern(scratch_.bytes(1024, 32), 3));
  Completion s;
  ASSERT_TRUE(poll_one(*pair.client.send_cq, s));
  EXPECT_EQ(s.status, CompletionStatus::kSuccess) << describe(s);
  EXPECT_EQ(s.opcode, Opcode::kSend);
}

TEST_P(ConnectedQpTest, MultipleSgesGatherAndScatter) {
  if (attributes().max_sge < 2) GTEST_SKIP() << "device max_sge is " << attributes().max_sge;
  const uint32_t sges = std::min(3u, attributes().max_sge);
  PairOptions options;
  options.client.send_sge = sges;
  options.server.receive_sge = 2;
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  Buffer a;
  Buffer b;
  Buffer in;
  Buffer in2;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, a));
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, b));
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, in));
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, in2));
  fill_pattern(a.bytes(0, 4096), 10);
  fill_pattern(b.bytes(0, 4096), 11);
  const Sge gather[3] = {a.sge(0, 10), b.sge(100, 50), a.sge(200, 100)};
  std::vector<std::byte> expected;
  for (uint32_t i = 0; i < sges; ++i) {
    const auto* p = static_cast<const std::byte*>(gather[i].address);
    expected.insert(expected.end(), p, p + gather[i].length);
  }
  const Sge scatter[2] = {in.sge(0, 64), in2.sge(1000, 1000)};
  ASSERT_OK(pair.server.qp->post_receive(1, scatter));
  ASSERT_OK(pair.client.qp->send(2, std::span(gather, sges), SendFlags::kSignaled));
  Completion r;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, r));
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  ASSERT_EQ(r.length, expected.size());
  const size_t first = std::min<size_t>(64, expected.size());
  EXPECT_EQ(std::memcmp(in.data(), expected.data(), first), 0) << "first scatter entry";
  EXPECT_EQ(std::memcmp(in2.data() + 1000, expected.data() + first, expected.size() - first), 0)
      << "second scatter entry";
}

TEST_P(ConnectedQpTest, InlineSendBufferReusableRightAfterPost) {
  REQUIRE_CAPABILITY(Capability::kInline);
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  const uint32_t max_inline = pair.client.qp->query().max_inline;
  ASSERT_GT(max_inline, 0u) << "max_inline 0 asks for the device's default";
  const uint32_t length = std::min(64u, max_inline);
  const Sge receive = scratch_.sge(1024, 256);
  ASSERT_OK(pair.server.qp->post_receive(1, std::span(&receive, 1)));
  // Not registered: inline data is copied at post time.
  std::vector<std::byte> data = pattern(length, 21);
  const Sge send{nullptr, data.data(), length};
  ASSERT_OK(
      pair.client.qp->send(2, std::span(&send, 1), SendFlags::kSignaled | SendFlags::kInline));
  fill_pattern(data, 99);  // reused at once
  Completion r;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, r));
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.length, length);
  EXPECT_TRUE(has_pattern(scratch_.bytes(1024, length), 21)) << "the data as it was at post time";
  Completion s;
  ASSERT_TRUE(poll_one(*pair.client.send_cq, s));
  EXPECT_EQ(s.status, CompletionStatus::kSuccess) << describe(s);
}

TEST_P(ConnectedQpTest, InlineSendLongerThanMaxInlineRefused) {
  REQUIRE_CAPABILITY(Capability::kInline);
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  const uint32_t max_inline = pair.client.qp->query().max_inline;
  std::vector<std::byte> data(max_inline + 1);
  const Sge send{nullptr, data.data(), max_inline + 1};
  EXPECT_FALSE(
      pair.client.qp->send(1, std::span(&send, 1), SendFlags::kSignaled | SendFlags::kInline)
          .is_ok())
      << "a malformed request is refused at post";
  EXPECT_EQ(pair.client.qp->query().state, QpState::kReadyToSend);
  EXPECT_TRUE(stays_empty(*pair.client.send_cq));
}

TEST_P(ConnectedQpTest, UnsignaledSendsProduceNoCompletion) {
  PairOptions options;
  options.client.signal_all_sends = false;
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  Buffer in;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, in));
  for (uint64_t i = 0; i < 5; ++i) {
    const Sge receive = in.sge(i * 64, 64);
    ASSERT_OK(pair.server.qp->post_receive(i, std::span(&receive, 1)));
  }
  for (uint64_t i = 0; i < 5; ++i) {
    scratch_.data()[i * 8] = static_cast<std::byte>(i + 1);
    const Sge send = scratch_.sge(i * 8, 8);
    const SendFlags flags = (i == 1 || i == 4) ? SendFlags::kSignaled : SendFlags::kNone;
    ASSERT_OK(pair.client.qp->send(i, std::span(&send, 1), flags));
  }
  std::vector<Completion> received;
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, 5, received));
  for (uint64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(received[i].wr_id, i) << "receives complete in order";
    EXPECT_EQ(received[i].status, CompletionStatus::kSuccess) << describe(received[i]);
    EXPECT_EQ(in.data()[i * 64], static_cast<std::byte>(i + 1));
  }
  Completion c;
  ASSERT_TRUE(poll_one(*pair.client.send_cq, c));
  EXPECT_EQ(c.wr_id, 1u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  ASSERT_TRUE(poll_one(*pair.client.send_cq, c));
  EXPECT_EQ(c.wr_id, 4u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_TRUE(stays_empty(*pair.client.send_cq)) << "only kSignaled sends complete";
}

TEST_P(ConnectedQpTest, ManySendsCompleteInPostOrderAtBothEnds) {
  PairOptions options;
  options.client.send_depth = 256;
  options.server.receive_depth = 256;
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  const uint32_t count = std::min<uint32_t>(
      {200, pair.client.qp->query().send_depth, pair.server.qp->query().receive_depth});
  Buffer out;
  Buffer in;
  ASSERT_NO_FATAL_FAILURE(register_buffer(count * 64, Access::kLocalWrite, out));
  ASSERT_NO_FATAL_FAILURE(register_buffer(count * 64, Access::kLocalWrite, in));
  for (uint32_t i = 0; i < count; ++i) {
    const Sge receive = in.sge(i * 64, 64);
    ASSERT_OK(pair.server.qp->post_receive(i, std::span(&receive, 1)));
  }
  for (uint32_t i = 0; i < count; ++i) {
    // Lengths differ so that a reordered delivery shows.
    const uint32_t length = 4 + i % 60;
    fill_pattern(out.bytes(i * 64, length), i);
    const Sge send = out.sge(i * 64, length);
    ASSERT_OK(pair.client.qp->send(1000 + i, std::span(&send, 1), SendFlags::kSignaled));
  }
  std::vector<Completion> sent;
  std::vector<Completion> received;
  ASSERT_TRUE(poll_n(*pair.client.send_cq, count, sent));
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, count, received));
  for (uint32_t i = 0; i < count; ++i) {
    SCOPED_TRACE("send " + std::to_string(i));
    EXPECT_EQ(sent[i].wr_id, 1000 + i);
    EXPECT_EQ(sent[i].status, CompletionStatus::kSuccess) << describe(sent[i]);
    EXPECT_EQ(received[i].wr_id, i);
    EXPECT_EQ(received[i].status, CompletionStatus::kSuccess) << describe(received[i]);
    EXPECT_EQ(received[i].length, 4 + i % 60);
    EXPECT_TRUE(has_pattern(in.bytes(i * 64, 4 + i % 60), i));
  }
}

// Large and tiny messages back to back, in one stream: a stream provider switches between
// reading large payloads straight into their receive buffers and batching small ones through a
// staging buffer, and must lose no byte or boundary at either switch (tcp reads only the next
// header after a large payload, so a tiny message right behind a large one is such a switch).
TEST_P(ConnectedQpTest, LargeAndTinySendsInterleavedArriveWhole) {
  constexpr std::array<uint32_t, 12> kLengths = {70000, 0, 3,     65536, 1,    4095,
                                                 4096,  0, 20000, 7,     8192, 262147};
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  constexpr size_t kSlot = 262148;
  Buffer out;
  Buffer in;
  ASSERT_NO_FATAL_FAILURE(register_buffer(kLengths.size() * kSlot, Access::kLocalWrite, out));
  ASSERT_NO_FATAL_FAILURE(register_buffer(kLengths.size() * kSlot, Access::kLocalWrite, in));
  for (uint32_t i = 0; i < kLengths.size(); ++i) {
    const Sge receive = in.sge(i * kSlot, static_cast<uint32_t>(kSlot));
    ASSERT_OK(pair.server.qp->post_receive(i, std::span(&receive, 1)));
  }
  for (uint32_t i = 0; i < kLengths.size(); ++i) {
    fill_pattern(out.bytes(i * kSlot, kLengths[i]), i);
    const Sge send = out.sge(i * kSlot, kLengths[i]);
    ASSERT_OK(pair.client.qp->send(100 + i, std::span(&send, kLengths[i] > 0 ? 1 : 0),
                                   SendFlags::kSignaled));
  }
  std::vector<Completion> sent;
  std::vector<Completion> received;
  ASSERT_TRUE(poll_n(*pair.client.send_cq, kLengths.size(), sent));
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, kLengths.size(), received));
  for (uint32_t i = 0; i < kLengths.size(); ++i) {
    SCOPED_TRACE("send " + std::to_string(i) + " of " + std::to_string(kLengths[i]) + " bytes");
    EXPECT_EQ(sent[i].status, CompletionStatus::kSuccess) << describe(sent[i]);
    ASSERT_EQ(received[i].status, CompletionStatus::kSuccess) << describe(received[i]);
    EXPECT_EQ(received[i].wr_id, i);
    EXPECT_EQ(received[i].length, kLengths[i]);
    EXPECT_TRUE(has_pattern(in.bytes(i * kSlot, kLengths[i]), i));
  }
}

// A sender that was polling when its sends filled the connection, and then stops polling
// without saying so (no notification armed, no sleep): the provider must not leave the rest of
// the stream waiting for that poller to come back. Software providers hand the connection to
// their progress thread; hardware moves it anyway. The receiver posts its receives only after
// the sends, so the connection is full while the sender still polls (before them on iWARP,
// where a send that finds no receive is fatal).
TEST_P(ConnectedQpTest, StreamCompletesAfterTheSenderStopsPolling) {
  constexpr uint32_t kCount = 8;
  constexpr uint32_t kLength = 1 << 20;  // larger than any ring or socket buffer in between
  PairOptions options;
  options.client.send_depth = kCount;
  options.server.receive_depth = kCount;
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  Buffer out;
  Buffer in;
  ASSERT_NO_FATAL_FAILURE(register_buffer(kCount * kLength, Access::kLocalWrite, out));
  ASSERT_NO_FATAL_FAILURE(register_buffer(kCount * kLength, Access::kLocalWrite, in));
  // One message through first, so that the connection's buffers (a fresh ring's pages) are in
  // place and the posts below fill the connection at once.
  {
    const Sge receive = in.sge(0, kLength);
    ASSERT_OK(pair.server.qp->post_receive(kCount, std::span(&receive, 1)));
    const Sge send = out.sge(0, kLength);
    ASSERT_OK(pair.client.qp->send(kCount, std::span(&send, 1), SendFlags::kSignaled));
    std::vector<Completion> done;
    ASSERT_TRUE(poll_n(*pair.server.receive_cq, 1, done));
    ASSERT_TRUE(poll_n(*pair.client.send_cq, 1, done));
  }
  const auto post_receives = [&] {
    for (uint32_t i = 0; i < kCount; ++i) {
      const Sge receive = in.sge(uint64_t{i} * kLength, kLength);
      ASSERT_OK(pair.server.qp->post_receive(i, std::span(&receive, 1)));
    }
  };
  const bool receives_first = has_limitation(Limitation::kNoReceiverNotReadyRetry);
  if (receives_first) {
    ASSERT_NO_FATAL_FAILURE(post_receives());
  }
  for (uint32_t i = 0; i < kCount; ++i) fill_pattern(out.bytes(uint64_t{i} * kLength, kLength), i);
  // A polling sender, right before it posts: its polls are what tell a software provider that
  // it moves its own data.
  std::array<Completion, 4> none;
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(pair.client.send_cq->poll(none), 0);
  for (uint32_t i = 0; i < kCount; ++i) {
    const Sge send = out.sge(uint64_t{i} * kLength, kLength);
    ASSERT_OK(pair.client.qp->send(i, std::span(&send, 1), SendFlags::kSignaled));
  }
  // From here only the receiver acts.
  if (!receives_first) {
    ASSERT_NO_FATAL_FAILURE(post_receives());
  }
  std::vector<Completion> received;
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, kCount, received));
  for (uint32_t i = 0; i < kCount; ++i) {
    SCOPED_TRACE("send " + std::to_string(i));
    EXPECT_EQ(received[i].status, CompletionStatus::kSuccess) << describe(received[i]);
    EXPECT_EQ(received[i].length, kLength);
    EXPECT_TRUE(has_pattern(in.bytes(uint64_t{i} * kLength, kLength), i));
  }
  std::vector<Completion> sent;
  ASSERT_TRUE(poll_n(*pair.client.send_cq, kCount, sent));
}

// ---- Flush ---------------------------------------------------------------------------------

TEST_P(ConnectedQpTest, ModifyToErrorFlushesPostedReceivesAndNewPosts) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  for (uint64_t i = 0; i < 4; ++i) {
    const Sge receive = scratch_.sge(i * 64, 64);
    ASSERT_OK(pair.server.qp->post_receive(i, std::span(&receive, 1)));
  }
  ASSERT_OK(pair.server.qp->modify(QpState::kError));
  EXPECT_EQ(pair.server.qp->query().state, QpState::kError);
  std::vector<Completion> flushed;
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, 4, flushed));
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(flushed[i].wr_id, i);
    EXPECT_EQ(flushed[i].status, CompletionStatus::kFlushed) << describe(flushed[i]);
    EXPECT_EQ(flushed[i].qp_number, pair.server.qp->number());
    EXPECT_EQ(flushed[i].qp_context, server_tag());
  }
  // New work requests on a QP in error are accepted and flushed (queue_pair.h).
  const Sge receive = scratch_.sge(0, 64);
  ASSERT_OK(pair.server.qp->post_receive(9, std::span(&receive, 1)));
  Completion c;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, c));
  EXPECT_EQ(c.wr_id, 9u);
  EXPECT_EQ(c.status, CompletionStatus::kFlushed) << describe(c);
  ASSERT_NO_FATAL_FAILURE(expect_new_send_flushed(pair.server));
}

// Sends still outstanding when the QP is moved to kError complete kFlushed; every send
// completes exactly once, in post order, and none succeeds after one was flushed. The peer posts
// no receive, so it holds the first message (receiver not ready) and the stream backs up: far
// more data than any socket buffer holds is certainly still queued when the QP is failed.
TEST_P(ConnectedQpTest, ModifyToErrorFlushesOutstandingSends) {
  SKIP_IF_LIMITATION(Limitation::kActiveSendFailsOnModifyToError,
                     "the send in progress completes local QP operation error");
  constexpr uint32_t kSize = 512 * 1024;
  if (attributes().max_message_size < kSize) GTEST_SKIP() << "max_message_size < 512 KiB";
  PairOptions options;
  options.client.send_depth = 128;
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  const uint32_t count = std::min(128u, pair.client.qp->query().send_depth);  // up to 64 MiB
  Buffer out;
  ASSERT_NO_FATAL_FAILURE(register_buffer(kSize, Access::kLocalWrite, out));
  const Sge send = out.sge(0, kSize);
  for (uint32_t i = 0; i < count; ++i) {
    ASSERT_OK(pair.client.qp->send(i, std::span(&send, 1), SendFlags::kSignaled));
  }
  ASSERT_OK(pair.client.qp->modify(QpState::kError));
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(*pair.client.send_cq, count, done));
  bool flushing = false;
  uint32_t flushed = 0;
  for (uint32_t i = 0; i < count; ++i) {
    EXPECT_EQ(done[i].wr_id, i) << "completions in post order";
    if (done[i].status == CompletionStatus::kFlushed) {
      flushing = true;
      ++flushed;
    } else {
      EXPECT_EQ(done[i].status, CompletionStatus::kSuccess) << describe(done[i]);
      EXPECT_FALSE(flushing) << "a send succeeded after an earlier one was flushed";
    }
  }
  std::printf("[ info ] %u of %u sends were flushed\n", flushed, count);
  EXPECT_GT(flushed, 0u) << count << " sends of " << kSize
                         << " bytes to a peer without receives cannot all have left";
  EXPECT_TRUE(stays_empty(*pair.client.send_cq)) << "each work request completes once";
  ASSERT_NO_FATAL_FAILURE(expect_new_send_flushed(pair.client));
}

WV_INSTANTIATE_FOR_PROVIDERS(ConnectedQpTest);

}  // namespace
}  // namespace wv::verbs::conformance
