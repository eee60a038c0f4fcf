// Two processes: ping-pong, one-sided operations served while the target application sleeps,
// and a peer killed mid-transfer. The peer is this test re-executed in a child process (see
// fixture.h); the parent always reaps it, and both sides are bounded in time.
#include <signal.h>

#include <atomic>
#include <cstring>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

// What a passive peer tells the test: where to connect and which memory it exposes.
struct TargetInfo {
  uint16_t port = 0;
  uint64_t address = 0;
  uint32_t rkey = 0;
  uint32_t size = 0;
  uint64_t atomic_address = 0;
  uint32_t atomic_rkey = 0;
};

constexpr uint32_t kTargetSize = 1 << 20;
constexpr uint32_t kPattern = 77;
constexpr uint32_t kWrittenPattern = 78;
constexpr uint32_t kWrittenSize = 64 * 1024;

class MultiProcessTest : public VerbsTest {
 protected:
  // Peer side: listen, tell the parent (info.port is filled in), accept one connection.
  int accept_one(Channel& channel, TargetInfo info, QpSide& side) {
    make_side({}, server_tag(), side);
    PEER_CHECK_NO_FAILURE();
    std::shared_ptr<ConnectEndpoint> listener;
    listen_on(address(0), listener);
    PEER_CHECK_NO_FAILURE();
    info.port = listener->query().local.port();
    PEER_CHECK(channel.send_value(info));
    auto request = listener->get_request().wait(kBound);
    PEER_CHECK_OK(request);
    side.endpoint = request.value();
    PEER_CHECK_OK(side.endpoint->accept(side.qp, {}).wait(kBound));
    return 0;
  }

  // Test side: connect a new QP to the peer listening on `port`.
  void connect_to(uint16_t port, QpSide& side) {
    ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), side));
    ASSERT_OK_AND_ASSIGN(side.endpoint, provider_->create_connect_endpoint());
    ASSERT_OK(side.endpoint->resolve_address(address(port), kBound).wait(kBound));
    ASSERT_OK(side.endpoint->resolve_route(kBound).wait(kBound));
    ASSERT_OK(side.endpoint->connect(side.qp, {}).wait(kBound));
  }

  Access target_access() const {
    Access access = Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite;
    if (has_capability(Capability::kAtomics)) access = access | Access::kRemoteAtomic;
    return access;
  }
};

// ---- Ping-pong ---------------------------------------------------------------------------

constexpr uint64_t kPingPongs = 1000;

TEST_P(MultiProcessTest, PingPongThousandMessages) {
  if (peer_role()) {
    run_peer([&](Channel& channel) -> int {
      QpSide side;
      Buffer in;
      Buffer out;
      register_buffer(4096, Access::kLocalWrite, in);
      register_buffer(4096, Access::kLocalWrite, out);
      PEER_CHECK_NO_FAILURE();
      if (const int rc = accept_one(channel, TargetInfo{}, side); rc != 0) return rc;
      const Sge receive = in.sge(0, 64);
      PEER_CHECK_OK(side.qp->post_receive(0, std::span(&receive, 1)));
      // Tell the parent the receive is there before it sends (no receiver-not-ready here:
      // iWARP has no RNR retry, so each next receive is posted before the reply goes out).
      PEER_CHECK(channel.send_value(uint8_t{1}));
      for (uint64_t i = 0; i < kPingPongs; ++i) {
        Completion c;
        PEER_CHECK_TRUE(poll_one(*side.receive_cq, c));
        PEER_CHECK(c.status == CompletionStatus::kSuccess);
        PEER_CHECK(c.length == 8);
        uint64_t value = 0;
        std::memcpy(&value, in.data(), 8);
        PEER_CHECK(value == 2 * i);
        value += 1;
        std::memcpy(out.data(), &value, 8);
        if (i + 1 < kPingPongs) PEER_CHECK_OK(side.qp->post_receive(i + 1, std::span(&receive, 1)));
        const Sge reply = out.sge(0, 8);
        PEER_CHECK_OK(side.qp->send(i, std::span(&reply, 1), SendFlags::kSignaled));
        PEER_CHECK_TRUE(poll_one(*side.send_cq, c));
        PEER_CHECK(c.status == CompletionStatus::kSuccess);
      }
      uint8_t done = 0;
      PEER_CHECK(channel.receive_value(done, 30s));
      return 0;
    });
  }

  PeerProcess peer;
  ASSERT_NO_FATAL_FAILURE(PeerProcess::spawn("echo", peer));
  TargetInfo info;
  ASSERT_TRUE(peer.channel().receive_value(info)) << "the peer did not report its port";
  QpSide side;
  ASSERT_NO_FATAL_FAILURE(connect_to(info.port, side));
  uint8_t ready = 0;
  ASSERT_TRUE(peer.channel().receive_value(ready)) << "the peer did not post its first receive";
  Buffer in;
  Buffer out;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, in));
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, out));
  for (uint64_t i = 0; i < kPingPongs; ++i) {
    const Sge receive = in.sge(0, 64);
    ASSERT_OK(side.qp->post_receive(i, std::span(&receive, 1)));
    const uint64_t ping = 2 * i;
    std::memcpy(out.data(), &ping, 8);
    const Sge send = out.sge(0, 8);
    ASSERT_OK(side.qp->send(i, std::span(&send, 1), SendFlags::kSignaled));
    Completion c;
    ASSERT_TRUE(poll_one(*side.send_cq, c)) << "message " << i;
    ASSERT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    ASSERT_TRUE(poll_one(*side.receive_cq, c)) << "message " << i;
    ASSERT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    ASSERT_EQ(c.wr_id, i);
    uint64_t pong = 0;
    std::memcpy(&pong, in.data(), 8);
    ASSERT_EQ(pong, ping + 1) << "message " << i;
  }
  ASSERT_TRUE(peer.channel().send_value(uint8_t{1}));
  EXPECT_TRUE(peer.wait_exit());
}

// ---- One-sided operations while the target sleeps -------------------------------------------

TEST_P(MultiProcessTest, OneSidedServedWhileTargetSleeps) {
  if (peer_role()) {
    run_peer([&](Channel& channel) -> int {
      Buffer target;
      Buffer atomic;
      register_buffer(kTargetSize, target_access(), target);
      register_buffer(4096, target_access(), atomic);
      PEER_CHECK_NO_FAILURE();
      fill_pattern(target.bytes(0, kTargetSize), kPattern);
      TargetInfo info;
      info.address = reinterpret_cast<uint64_t>(target.data());
      info.rkey = target.region->remote_key();
      info.size = kTargetSize;
      info.atomic_address = reinterpret_cast<uint64_t>(atomic.data());
      info.atomic_rkey = atomic.region->remote_key();
      QpSide side;
      if (const int rc = accept_one(channel, info, side); rc != 0) return rc;
      // From here on the application makes no verbs call: it is blocked until the parent says
      // it is done. Everything the parent does is served by the provider on its own.
      uint64_t expected_atomic = 0;
      PEER_CHECK(channel.receive_value(expected_atomic, 45s));
      PEER_CHECK_TRUE(has_pattern(target.bytes(0, kWrittenSize), kWrittenPattern));
      PEER_CHECK_TRUE(has_pattern(target.bytes(kWrittenSize, kTargetSize - kWrittenSize), kPattern,
                                  kWrittenSize));
      const uint64_t word = std::atomic_ref<uint64_t>(*atomic.as<uint64_t>()).load();
      PEER_CHECK(word == expected_atomic);
      PEER_CHECK(channel.send_value(uint8_t{1}));
      return 0;
    });
  }

  PeerProcess peer;
  ASSERT_NO_FATAL_FAILURE(PeerProcess::spawn("target", peer));
  TargetInfo info;
  ASSERT_TRUE(peer.channel().receive_value(info)) << "the peer did not report its memory";
  QpSide side;
  ASSERT_NO_FATAL_FAILURE(connect_to(info.port, side));
  Buffer local;
  ASSERT_NO_FATAL_FAILURE(register_buffer(kTargetSize, read_sink_access(), local));
  const RemoteAddress remote{info.address, info.rkey};

  // Read the whole target.
  const Sge whole = local.sge(0, kTargetSize);
  ASSERT_OK(side.qp->rdma_read(1, std::span(&whole, 1), remote, SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*side.send_cq, c));
  ASSERT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_TRUE(has_pattern(local.bytes(0, kTargetSize), kPattern));

  // Write its start, then read it back.
  fill_pattern(local.bytes(0, kWrittenSize), kWrittenPattern);
  const Sge written = local.sge(0, kWrittenSize);
  ASSERT_OK(side.qp->rdma_write(2, std::span(&written, 1), remote, SendFlags::kSignaled));
  const Sge readback = local.sge(kWrittenSize, kWrittenSize);
  ASSERT_OK(side.qp->rdma_read(3, std::span(&readback, 1), remote, SendFlags::kSignaled));
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(*side.send_cq, 2, done));
  for (const Completion& d : done) EXPECT_EQ(d.status, CompletionStatus::kSuccess) << describe(d);
  EXPECT_TRUE(has_pattern(local.bytes(kWrittenSize, kWrittenSize), kWrittenPattern));

  // Atomics executed by the target.
  uint64_t expected_atomic = 0;
  if (has_capability(Capability::kAtomics)) {
    const RemoteAddress word{info.atomic_address, info.atomic_rkey};
    for (uint64_t i = 0; i < 100; ++i) {
      ASSERT_OK(side.qp->fetch_and_add(10 + i, local.sge(0, 8), word, 5, SendFlags::kSignaled));
      ASSERT_TRUE(poll_one(*side.send_cq, c));
      ASSERT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
      EXPECT_EQ(*local.as<uint64_t>(), 5 * i);
    }
    ASSERT_OK(side.qp->compare_and_swap(200, local.sge(0, 8), word, 500, 7, SendFlags::kSignaled));
    ASSERT_TRUE(poll_one(*side.send_cq, c));
    ASSERT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    EXPECT_EQ(*local.as<uint64_t>(), 500u);
    expected_atomic = 7;
  }
  ASSERT_TRUE(peer.channel().send_value(expected_atomic));
  uint8_t verdict = 0;
  EXPECT_TRUE(peer.channel().receive_value(verdict)) << "the target saw other memory contents";
  EXPECT_TRUE(peer.wait_exit());
}

// ---- Peer killed mid-transfer --------------------------------------------------------------

TEST_P(MultiProcessTest, PeerKilledMidTransferFailsOutstandingWork) {
  SKIP_IF_LIMITATION(Limitation::kLatePostsLostAfterError,
                     "work requests posted as the QP fails may never complete");
  if (peer_role()) {
    run_peer([&](Channel& channel) -> int {
      Buffer target;
      register_buffer(kTargetSize, target_access(), target);
      PEER_CHECK_NO_FAILURE();
      TargetInfo info;
      info.address = reinterpret_cast<uint64_t>(target.data());
      info.rkey = target.region->remote_key();
      info.size = kTargetSize;
      QpSide side;
      if (const int rc = accept_one(channel, info, side); rc != 0) return rc;
      uint8_t never = 0;
      channel.receive_value(never, 50s);  // killed long before
      return 0;
    });
  }

  PeerProcess peer;
  ASSERT_NO_FATAL_FAILURE(PeerProcess::spawn("victim", peer));
  TargetInfo info;
  ASSERT_TRUE(peer.channel().receive_value(info));
  QpSide side;
  ASSERT_NO_FATAL_FAILURE(connect_to(info.port, side));
  auto ended = side.endpoint->notify_disconnect();
  Buffer local;
  ASSERT_NO_FATAL_FAILURE(register_buffer(kTargetSize, read_sink_access(), local));
  const Sge receive = local.sge(0, 64);
  ASSERT_OK(side.qp->post_receive(900, std::span(&receive, 1)));
  const RemoteAddress remote{info.address, info.rkey};
  const Sge chunk = local.sge(0, 256 * 1024);

  // A transfer under way...
  uint64_t next = 0;
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(side.qp->rdma_read(next++, std::span(&chunk, 1), remote, SendFlags::kSignaled));
  }
  Completion c;
  ASSERT_TRUE(poll_one(*side.send_cq, c));
  ASSERT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  uint64_t completed = 1;
  // ...the peer stops (so that these reads are certainly outstanding), then dies.
  peer.kill(SIGSTOP);
  const uint64_t first_unservable = next;
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(side.qp->rdma_read(next++, std::span(&chunk, 1), remote, SendFlags::kSignaled));
    ASSERT_OK(side.qp->rdma_write(next++, std::span(&chunk, 1), remote, SendFlags::kSignaled));
  }
  peer.kill(SIGKILL);
  EXPECT_FALSE(peer.wait_exit()) << "the peer was killed";
  // Where the device serves one-sided operations, the stopped peer still served those; only
  // what is posted after it is gone cannot be. Where only reads are served without it, the
  // first read may be; none behind the write that follows it.
  const uint64_t unservable = has_limitation(Limitation::kOneSidedServedByDevice) ? next
                              : has_limitation(Limitation::kReadsServedWithoutTarget)
                                  ? first_unservable + 2
                                  : first_unservable;
  // Posted after the peer is gone (or flushed because the QP is already in error).
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK(side.qp->rdma_read(next++, std::span(&chunk, 1), remote, SendFlags::kSignaled));
  }

  std::vector<Completion> rest;
  ASSERT_TRUE(poll_n(*side.send_cq, next - completed, rest))
      << "every outstanding work request completes within " << kBound.count() << " ms";
  std::string summary;
  for (const Completion& d : rest) {
    summary += std::to_string(d.wr_id) + ":" + std::string(to_string(d.opcode)) + "=" +
               std::string(to_string(d.status)) + " ";
  }
  std::printf("[ info ] completions after the kill: %s\n", summary.c_str());
  bool failing = false;
  for (const Completion& d : rest) {
    SCOPED_TRACE(describe(d));
    EXPECT_EQ(d.wr_id, completed++) << "completions in post order";
    const bool failed = d.status != CompletionStatus::kSuccess;
    if (d.wr_id >= unservable && d.opcode == Opcode::kRdmaRead) {
      EXPECT_TRUE(failed) << "a read the dead peer never served cannot succeed";
    }
    if (failing) {
      EXPECT_TRUE(failed) << "success after an error";
    }
    failing = failing || failed;
  }
  EXPECT_TRUE(failing);
  EXPECT_TRUE(wait_qp_state(*side.qp, QpState::kError));
  ASSERT_TRUE(poll_one(*side.receive_cq, c));
  EXPECT_EQ(c.wr_id, 900u);
  EXPECT_NE(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_OK(ended.wait(kBound)) << "notify_disconnect fires when the peer dies";
  ASSERT_NO_FATAL_FAILURE(expect_new_send_flushed(side));
}

WV_INSTANTIATE_FOR_PROVIDERS(MultiProcessTest);

}  // namespace
}  // namespace wv::verbs::conformance
