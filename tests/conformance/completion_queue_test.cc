// Completion queues: polling order, peek, notifications, resize, overrun (completion_queue.h).
#include <unistd.h>

#include <thread>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

class CompletionQueueTest : public VerbsTest {
 protected:
  // Completions without receives: signaled 8-byte RDMA writes into the scratch buffer.
  void post_writes(ConnectedPair& pair, uint64_t first_wr_id, int count) {
    const Sge sge = scratch_.sge(0, 8);
    for (int i = 0; i < count; ++i) {
      ASSERT_OK(pair.client.qp->rdma_write(first_wr_id + static_cast<uint64_t>(i),
                                           std::span(&sge, 1), scratch_.remote(2048),
                                           SendFlags::kSignaled));
    }
  }
  template <typename Predicate>
  static bool wait_until(Predicate done, Milliseconds timeout = kBound) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }
};

TEST_P(CompletionQueueTest, NewQueueIsEmptyWithRequestedCapacity) {
  std::shared_ptr<CompletionQueue> cq;
  ASSERT_NO_FATAL_FAILURE(make_cq(cq, 64));
  EXPECT_GE(cq->capacity(), 64u);
  EXPECT_OK(cq->status());
  EXPECT_EQ(cq->peek(), 0u);
  Completion c;
  EXPECT_EQ(cq->poll(std::span(&c, 1)), 0);
  EXPECT_EQ(cq->poll(std::span<Completion>()), 0);
}

TEST_P(CompletionQueueTest, PollReturnsOldestFirstAndPeekCounts) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  CompletionQueue& cq = *pair.client.send_cq;
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 100, 8));
  ASSERT_TRUE(wait_peek(cq, 8));
  EXPECT_EQ(cq.peek(), 8u);
  EXPECT_EQ(cq.poll(std::span<Completion>()), 0) << "an empty span takes nothing";
  EXPECT_EQ(cq.peek(), 8u);

  Completion first[3];
  ASSERT_EQ(cq.poll(first), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(first[i].wr_id, 100u + static_cast<uint64_t>(i));
  EXPECT_EQ(cq.peek(), 5u);
  Completion rest[10];
  ASSERT_EQ(cq.poll(rest), 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(rest[i].wr_id, 103u + static_cast<uint64_t>(i));
    EXPECT_EQ(rest[i].opcode, Opcode::kRdmaWrite);
    EXPECT_EQ(rest[i].status, CompletionStatus::kSuccess) << describe(rest[i]);
  }
  EXPECT_EQ(cq.peek(), 0u);
  EXPECT_EQ(cq.poll(rest), 0);
}

TEST_P(CompletionQueueTest, NotifyNextCompletionIgnoresQueuedOnesAndSignalsItsFd) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  CompletionQueue& cq = *pair.client.send_cq;
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 1, 1));
  ASSERT_TRUE(wait_peek(cq, 1));

  auto armed = cq.notify(NotifyOn::kNextCompletion);
  EXPECT_ERRC(Errc::kTimedOut, armed.wait(kQuiet))
      << "a completion queued before notify() does not fire it";
  EXPECT_FALSE(armed.ready());
  const int fd = armed.fd();
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(fd_readable(fd)) << "the fd of a pending operation is not readable";

  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 2, 1));
  EXPECT_OK(armed.wait(kBound));
  EXPECT_TRUE(armed.ready());
  EXPECT_TRUE(fd_readable(fd, kBound)) << "done: the fd becomes readable";
  EXPECT_TRUE(fd_readable(fd)) << "and stays readable";
  EXPECT_FALSE(armed.cancel()) << "a completed operation cannot be cancelled";
  std::vector<Completion> done;
  EXPECT_TRUE(poll_n(cq, 2, done));
}

TEST_P(CompletionQueueTest, NotificationFdSignalledUntilRead) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  CompletionQueue& cq = *pair.client.send_cq;
  const int fd = cq.notification_fd();
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(fd_readable(fd)) << "no notification has fired yet";

  auto armed = cq.notify(NotifyOn::kNextCompletion);
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 1, 1));
  ASSERT_OK(armed.wait(kBound));
  ASSERT_TRUE(fd_readable(fd, kBound)) << "a fired notification signals notification_fd()";
  EXPECT_TRUE(fd_readable(fd)) << "it stays readable until read";
  uint64_t count = 0;
  ASSERT_EQ(::read(fd, &count, sizeof(count)), static_cast<ssize_t>(sizeof(count)));
  EXPECT_GE(count, 1u);
  EXPECT_FALSE(fd_readable(fd)) << "reading the eventfd resets it";

  // Re-armed after the wakeup, as the header says.
  auto again = cq.notify(NotifyOn::kNextCompletion);
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 2, 1));
  ASSERT_OK(again.wait(kBound));
  EXPECT_TRUE(fd_readable(fd, kBound));
}

TEST_P(CompletionQueueTest, NotifySolicitedIgnoresUnsolicitedReceives) {
  SKIP_IF_LIMITATION(Limitation::kNoSolicitedNotification,
                     "the device never wakes a solicited-only waiter");
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  Buffer receive;
  ASSERT_NO_FATAL_FAILURE(register_buffer(4096, Access::kLocalWrite, receive));
  for (uint64_t i = 0; i < 2; ++i) {
    const Sge sge = receive.sge(i * 64, 64);
    ASSERT_OK(pair.server.qp->post_receive(i, std::span(&sge, 1)));
  }
  auto solicited = pair.server.receive_cq->notify(NotifyOn::kSolicited);
  const Sge payload = scratch_.sge(0, 16);
  ASSERT_OK(pair.client.qp->send(10, std::span(&payload, 1), SendFlags::kSignaled));
  Completion c;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_ERRC(Errc::kTimedOut, solicited.wait(kQuiet))
      << "an unsolicited receive does not fire notify(kSolicited)";

  ASSERT_OK(pair.client.qp->send(11, std::span(&payload, 1),
                                 SendFlags::kSignaled | SendFlags::kSolicited));
  EXPECT_OK(solicited.wait(kBound));
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, c));
  EXPECT_EQ(c.wr_id, 1u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
}

TEST_P(CompletionQueueTest, NotifySolicitedFiresOnErrorCompletion) {
  SKIP_IF_LIMITATION(Limitation::kNoSolicitedNotification,
                     "the device never wakes a solicited-only waiter");
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  const Sge sge = scratch_.sge(0, 64);
  ASSERT_OK(pair.server.qp->post_receive(5, std::span(&sge, 1)));
  auto solicited = pair.server.receive_cq->notify(NotifyOn::kSolicited);
  ASSERT_OK(pair.server.qp->modify(QpState::kError));
  EXPECT_OK(solicited.wait(kBound)) << "kSolicited also fires for any error completion";
  Completion c;
  ASSERT_TRUE(poll_one(*pair.server.receive_cq, c));
  EXPECT_EQ(c.wr_id, 5u);
  EXPECT_EQ(c.status, CompletionStatus::kFlushed) << describe(c);
}

TEST_P(CompletionQueueTest, BatchNotifyWaitsForCount) {
  REQUIRE_CAPABILITY(Capability::kBatchNotify);
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  CompletionQueue& cq = *pair.client.send_cq;
  auto batch = cq.batch_notify(3);
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 1, 2));
  ASSERT_TRUE(wait_peek(cq, 2));
  EXPECT_ERRC(Errc::kTimedOut, batch.wait(kQuiet)) << "two of three completions queued";
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 3, 1));
  EXPECT_OK(batch.wait(kBound));
  EXPECT_GE(cq.peek(), 3u);
}

TEST_P(CompletionQueueTest, ResizeGrowsAndKeepsQueuedCompletions) {
  REQUIRE_CAPABILITY(Capability::kResizeCompletionQueue);
  PairOptions options;
  ASSERT_NO_FATAL_FAILURE(make_cq(options.client.send_cq, 16));
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  CompletionQueue& cq = *pair.client.send_cq;
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 1, 4));
  ASSERT_TRUE(wait_peek(cq, 4));
  const uint32_t bigger = cq.capacity() * 2;
  ASSERT_OK(cq.resize(bigger));
  EXPECT_GE(cq.capacity(), bigger);
  EXPECT_EQ(cq.peek(), 4u);
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(cq, 4, done));
  for (size_t i = 0; i < done.size(); ++i) EXPECT_EQ(done[i].wr_id, 1 + i);
}

TEST_P(CompletionQueueTest, ResizeBelowQueuedIsInvalidArgument) {
  REQUIRE_CAPABILITY(Capability::kResizeCompletionQueue);
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  CompletionQueue& cq = *pair.client.send_cq;
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, 1, 4));
  ASSERT_TRUE(wait_peek(cq, 4));
  const uint32_t before = cq.capacity();
  EXPECT_ERRC(Errc::kInvalidArgument, cq.resize(2));
  EXPECT_EQ(cq.capacity(), before) << "a refused resize changes nothing";
  EXPECT_EQ(cq.peek(), 4u);
  EXPECT_OK(cq.resize(4)) << "exactly as many entries as are queued is allowed";
  EXPECT_GE(cq.capacity(), 4u);
  std::vector<Completion> done;
  ASSERT_TRUE(poll_n(cq, 4, done));
  for (size_t i = 0; i < done.size(); ++i) EXPECT_EQ(done[i].wr_id, 1 + i);
}

// More completions than entries: poll() returns what was queued, then -1; status() says why;
// the QPs using the queue are in error (and, being in error on their own, raise kQpFatal).
TEST_P(CompletionQueueTest, OverrunIsReported) {
  PairOptions options;
  ASSERT_NO_FATAL_FAILURE(make_cq(options.client.send_cq, 8));
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  CompletionQueue& cq = *pair.client.send_cq;
  const uint32_t capacity = cq.capacity();
  ASSERT_GE(capacity, 8u);
  ASSERT_LE(capacity, 1u << 16) << "the test posts one write per entry";
  for (uint32_t i = 0; i < capacity; ++i) {
    ASSERT_NO_FATAL_FAILURE(post_writes(pair, i, 1));
    ASSERT_TRUE(wait_peek(cq, i + 1));
  }
  ASSERT_OK(cq.status()) << "a full queue is not yet an overrun";
  ASSERT_NO_FATAL_FAILURE(post_writes(pair, capacity, 1));
  ASSERT_TRUE(wait_until([&] { return !cq.status().is_ok(); })) << "status() reports the overrun";

  std::vector<Completion> queued;
  ASSERT_TRUE(poll_n(cq, capacity, queued)) << "completions already queued are returned first";
  for (uint32_t i = 0; i < capacity; ++i) EXPECT_EQ(queued[i].wr_id, i);
  Completion c;
  EXPECT_EQ(cq.poll(std::span(&c, 1)), -1) << "then poll() reports the overrun";
  EXPECT_FALSE(cq.status().is_ok());
  EXPECT_FALSE(cq.status().message().empty());
  EXPECT_EQ(pair.client.qp->query().state, QpState::kError) << "the QPs using it are in error";
  DeviceEvent event;
  EXPECT_TRUE(wait_event(*device_, EventType::kQpFatal, pair.client.qp->number(), event));
}

WV_INSTANTIATE_FOR_PROVIDERS(CompletionQueueTest);

}  // namespace
}  // namespace wv::verbs::conformance
