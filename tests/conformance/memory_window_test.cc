// Memory windows: type 1 and type 2, bind, unbind, invalidate (memory_window.h, queue_pair.h;
// capabilities kMemoryWindowType1, kMemoryWindowType2, kSendWithInvalidate).
#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

constexpr size_t kWindowOffset = 1024;
constexpr uint64_t kWindowLength = 2048;
constexpr Access kWindowAccess = Access::kRemoteRead | Access::kRemoteWrite;

class MemoryWindowTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (!has_capability(Capability::kMemoryWindowType1) &&
        !has_capability(Capability::kMemoryWindowType2)) {
      GTEST_SKIP() << "device lacks capability memory_window_type1 and memory_window_type2";
    }
    ASSERT_NO_FATAL_FAILURE(make_pair(pair_));
    // The region itself grants no remote access: only the window does.
    ASSERT_NO_FATAL_FAILURE(
        register_buffer(8192, Access::kLocalWrite | Access::kBindMemoryWindow, target_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(8192, read_sink_access(), local_));
  }

  void allocate(MemoryWindowType type, std::shared_ptr<MemoryWindow>& out) {
    ASSERT_OK_AND_ASSIGN(out, pd_->allocate_memory_window(type));
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out->type(), type);
    EXPECT_EQ(out->remote_key(), 0u) << "0 while unbound";
  }

  // Binds through the server's QP and waits for the bind to complete.
  void bind(MemoryWindow& window, size_t offset, uint64_t length, uint32_t& rkey) {
    Result<uint32_t> bound =
        pair_.server.qp->bind_memory_window(60, window, *target_.region, target_.data() + offset,
                                            length, kWindowAccess, SendFlags::kSignaled);
    ASSERT_OK(bound);
    rkey = bound.value();
    Completion c;
    ASSERT_TRUE(poll_one(*pair_.server.send_cq, c));
    EXPECT_EQ(c.wr_id, 60u);
    EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    EXPECT_EQ(c.opcode, Opcode::kBindMemoryWindow);
    if (length != 0) {
      EXPECT_EQ(window.remote_key(), rkey) << "remote_key() is the current binding's key";
    }
  }

  RemoteAddress at(size_t offset, uint32_t rkey) const {
    return {reinterpret_cast<uint64_t>(target_.data() + offset), rkey};
  }

  // A write through the window lands; a read through it returns it.
  void expect_window_works(uint32_t rkey, uint32_t seed) {
    fill_pattern(local_.bytes(0, 256), seed);
    const Sge out = local_.sge(0, 256);
    ASSERT_OK(pair_.client.qp->rdma_write(1, std::span(&out, 1), at(kWindowOffset + 100, rkey),
                                          SendFlags::kSignaled));
    const Sge in = local_.sge(4096, 256);
    ASSERT_OK(pair_.client.qp->rdma_read(2, std::span(&in, 1), at(kWindowOffset + 100, rkey),
                                         SendFlags::kSignaled));
    std::vector<Completion> done;
    ASSERT_TRUE(poll_n(*pair_.client.send_cq, 2, done));
    for (const Completion& c : done) {
      EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    }
    EXPECT_TRUE(has_pattern(target_.bytes(kWindowOffset + 100, 256), seed));
    EXPECT_TRUE(has_pattern(local_.bytes(4096, 256), seed));
  }

  // Reads report the responder's refusal on every transport.
  void expect_read_refused(RemoteAddress remote) {
    const Sge in = local_.sge(0, 64);
    ASSERT_OK(pair_.client.qp->rdma_read(3, std::span(&in, 1), remote, SendFlags::kSignaled));
    Completion c;
    ASSERT_TRUE(poll_one(*pair_.client.send_cq, c));
    EXPECT_EQ(c.wr_id, 3u);
    EXPECT_EQ(c.status, CompletionStatus::kRemoteAccessError) << describe(c);
    EXPECT_TRUE(wait_qp_state(*pair_.client.qp, QpState::kError));
  }

  void check_bind_and_bounds(MemoryWindowType type) {
    std::shared_ptr<MemoryWindow> window;
    ASSERT_NO_FATAL_FAILURE(allocate(type, window));
    uint32_t rkey = 0;
    ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, kWindowLength, rkey));
    EXPECT_NE(rkey, 0u);
    EXPECT_NE(rkey, target_.region->remote_key());
    ASSERT_NO_FATAL_FAILURE(expect_window_works(rkey, 5));
    // Inside the region but before the window.
    ASSERT_NO_FATAL_FAILURE(expect_read_refused(at(kWindowOffset - 64, rkey)));
  }

  ConnectedPair pair_;
  Buffer target_;  // server memory reached only through windows
  Buffer local_;   // client memory
};

TEST_P(MemoryWindowTest, Type1BindGrantsAccessOnlyInsideTheWindow) {
  SKIP_IF_LIMITATION(Limitation::kMemoryWindowsNotEnforced,
                     "accesses through a window are not checked against it");
  REQUIRE_CAPABILITY(Capability::kMemoryWindowType1);
  ASSERT_NO_FATAL_FAILURE(check_bind_and_bounds(MemoryWindowType::kType1));
}

TEST_P(MemoryWindowTest, Type2BindGrantsAccessOnlyInsideTheWindow) {
  SKIP_IF_LIMITATION(Limitation::kMemoryWindowsNotEnforced,
                     "accesses through a window are not checked against it");
  REQUIRE_CAPABILITY(Capability::kMemoryWindowType2);
  ASSERT_NO_FATAL_FAILURE(check_bind_and_bounds(MemoryWindowType::kType2));
}

TEST_P(MemoryWindowTest, AccessPastTheWindowEndRefused) {
  SKIP_IF_LIMITATION(Limitation::kMemoryWindowsNotEnforced,
                     "accesses through a window are not checked against it");
  const MemoryWindowType type = has_capability(Capability::kMemoryWindowType2)
                                    ? MemoryWindowType::kType2
                                    : MemoryWindowType::kType1;
  std::shared_ptr<MemoryWindow> window;
  ASSERT_NO_FATAL_FAILURE(allocate(type, window));
  uint32_t rkey = 0;
  ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, kWindowLength, rkey));
  // Starts inside, ends 32 bytes past the window.
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(at(kWindowOffset + kWindowLength - 32, rkey)));
}

TEST_P(MemoryWindowTest, Type1UnbindWithZeroLengthRevokesTheKey) {
  REQUIRE_CAPABILITY(Capability::kMemoryWindowType1);
  std::shared_ptr<MemoryWindow> window;
  ASSERT_NO_FATAL_FAILURE(allocate(MemoryWindowType::kType1, window));
  uint32_t rkey = 0;
  ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, kWindowLength, rkey));
  ASSERT_NO_FATAL_FAILURE(expect_window_works(rkey, 6));
  uint32_t unbound = 0;
  ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, 0, unbound));
  EXPECT_EQ(window->remote_key(), 0u) << "0 while unbound";
  // bind_memory_window returns "the new rkey ... valid for the peer once the bind completes";
  // an unbind creates no key, so the key it returns is the unbound window's, 0.
  EXPECT_EQ(unbound, 0u) << "an unbind returned key 0x" << std::hex << unbound
                         << ", which names no binding";
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(at(kWindowOffset, rkey)));
}

TEST_P(MemoryWindowTest, Type1RebindChangesTheKey) {
  REQUIRE_CAPABILITY(Capability::kMemoryWindowType1);
  std::shared_ptr<MemoryWindow> window;
  ASSERT_NO_FATAL_FAILURE(allocate(MemoryWindowType::kType1, window));
  uint32_t first = 0;
  ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, kWindowLength, first));
  uint32_t second = 0;
  ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, kWindowLength, second));
  EXPECT_NE(first, second) << "the key changes with every bind";
  ASSERT_NO_FATAL_FAILURE(expect_window_works(second, 7));
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(at(kWindowOffset, first)));
}

TEST_P(MemoryWindowTest, Type2LocalInvalidateRevokesTheKey) {
  REQUIRE_CAPABILITY(Capability::kMemoryWindowType2);
  std::shared_ptr<MemoryWindow> window;
  ASSERT_NO_FATAL_FAILURE(allocate(MemoryWindowType::kType2, window));
  uint32_t rkey = 0;
  ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, kWindowLength, rkey));
  ASSERT_NO_FATAL_FAILURE(expect_window_works(rkey, 8));
  ASSERT_OK(pair_.server.qp->invalidate(61, rkey, SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair_.server.send_cq, c));
  EXPECT_EQ(c.wr_id, 61u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(c.opcode, Opcode::kLocalInvalidate);
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(at(kWindowOffset, rkey)));
}

TEST_P(MemoryWindowTest, SendWithInvalidateRevokesThePeersWindow) {
  SKIP_IF_LIMITATION(Limitation::kMemoryWindowsNotEnforced,
                     "accesses through a window are not checked against it");
  REQUIRE_CAPABILITY(Capability::kMemoryWindowType2);
  REQUIRE_CAPABILITY(Capability::kSendWithInvalidate);
  std::shared_ptr<MemoryWindow> window;
  ASSERT_NO_FATAL_FAILURE(allocate(MemoryWindowType::kType2, window));
  uint32_t rkey = 0;
  ASSERT_NO_FATAL_FAILURE(bind(*window, kWindowOffset, kWindowLength, rkey));
  ASSERT_NO_FATAL_FAILURE(expect_window_works(rkey, 9));
  const Sge receive = scratch_.sge(0, 64);
  ASSERT_OK(pair_.server.qp->post_receive(70, std::span(&receive, 1)));
  const Sge note = local_.sge(0, 16);
  ASSERT_OK(
      pair_.client.qp->send_with_invalidate(71, std::span(&note, 1), rkey, SendFlags::kSignaled));
  Completion r;
  ASSERT_TRUE(poll_one(*pair_.server.receive_cq, r));
  EXPECT_EQ(r.wr_id, 70u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.opcode, Opcode::kReceive);
  EXPECT_TRUE(has(r.flags, CompletionFlags::kWithInvalidate)) << describe(r);
  EXPECT_EQ(r.invalidated_rkey, rkey);
  EXPECT_EQ(r.length, 16u);
  Completion s;
  ASSERT_TRUE(poll_one(*pair_.client.send_cq, s));
  EXPECT_EQ(s.wr_id, 71u);
  EXPECT_EQ(s.status, CompletionStatus::kSuccess) << describe(s);
  EXPECT_EQ(s.opcode, Opcode::kSend);
  ASSERT_NO_FATAL_FAILURE(expect_read_refused(at(kWindowOffset, rkey)));
}

WV_INSTANTIATE_FOR_PROVIDERS(MemoryWindowTest);

}  // namespace
}  // namespace wv::verbs::conformance
