// Overlapped operations (operation.h): the one rule, on both paths — a call either completes at
// once or returns a pending operation that can be waited on with a bound, polled, cancelled and
// signalled through a file descriptor.
#include <sys/epoll.h>
#include <unistd.h>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

class OverlappedTest : public VerbsTest {
 protected:
  // Starts a connection to `listener` (the request arrives there); `client` is resolved.
  void start_connect(ConnectEndpoint& listener, QpSide& client,
                     std::optional<Operation<ConnectParameters>>& connecting) {
    ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
    ASSERT_OK_AND_ASSIGN(client.endpoint, provider_->create_connect_endpoint());
    const SocketAddress destination = address(listener.query().local.port());
    ASSERT_OK(client.endpoint->resolve_address(destination, kBound).wait(kBound));
    ASSERT_OK(client.endpoint->resolve_route(kBound).wait(kBound));
    connecting.emplace(client.endpoint->connect(client.qp, {}));
  }
};

TEST_P(OverlappedTest, PendingOperationTimesOutAndStaysPending) {
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), listener));
  auto request = listener->get_request();
  EXPECT_ERRC(Errc::kTimedOut, request.wait(kQuiet));
  EXPECT_FALSE(request.ready()) << "a timed-out wait leaves the operation pending";
  EXPECT_ERRC(Errc::kInvalidState, request.result()) << "result() of a pending operation";
  const int fd = request.fd();
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(fd_readable(fd));

  QpSide client;
  std::optional<Operation<ConnectParameters>> connecting;
  ASSERT_NO_FATAL_FAILURE(start_connect(*listener, client, connecting));
  EXPECT_TRUE(fd_readable(fd, kBound)) << "the fd becomes readable when the operation is done";
  EXPECT_TRUE(request.ready());
  std::shared_ptr<ConnectEndpoint> server_endpoint;
  ASSERT_OK_AND_ASSIGN(server_endpoint, request.result());
  EXPECT_TRUE(fd_readable(fd)) << "and stays readable";
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));
  ASSERT_OK(server_endpoint->accept(server.qp, {}).wait(kBound));
  ASSERT_OK(connecting->wait(kBound));
}

TEST_P(OverlappedTest, CancelledGetRequestDoesNotSwallowTheNextRequest) {
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), listener));
  auto cancelled = listener->get_request();
  const int fd = cancelled.fd();
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(cancelled.cancel());
  EXPECT_TRUE(cancelled.ready());
  EXPECT_ERRC(Errc::kCancelled, cancelled.result());
  EXPECT_ERRC(Errc::kCancelled, cancelled.wait(0ms));
  EXPECT_TRUE(fd_readable(fd)) << "a cancelled operation is done: its fd is readable";
  EXPECT_FALSE(cancelled.cancel()) << "cancelling twice";

  QpSide client;
  std::optional<Operation<ConnectParameters>> connecting;
  ASSERT_NO_FATAL_FAILURE(start_connect(*listener, client, connecting));
  std::shared_ptr<ConnectEndpoint> server_endpoint;
  ASSERT_OK_AND_ASSIGN(server_endpoint, listener->get_request().wait(kBound));
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));
  ASSERT_OK(server_endpoint->accept(server.qp, {}).wait(kBound));
  ASSERT_OK(connecting->wait(kBound));
}

// The other path: an operation already done when the caller looks at it (here refused).
TEST_P(OverlappedTest, OperationDoneAtOnceBehavesTheSame) {
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), listener));
  QpSide client;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_OK_AND_ASSIGN(client.endpoint, provider_->create_connect_endpoint());
  ASSERT_OK(client.endpoint->resolve_address(address(listener->query().local.port()), kBound)
                .wait(kBound));
  ASSERT_OK(client.endpoint->resolve_route(kBound).wait(kBound));
  ConnectParameters oversized;
  oversized.private_data = pattern(client.endpoint->max_private_data() + 1, 1);
  auto refused = client.endpoint->connect(client.qp, oversized);
  std::printf("[ info ] refused connect was %s when connect() returned\n",
              refused.ready() ? "already done" : "pending");
  EXPECT_ERRC(Errc::kInvalidArgument, refused.wait(kBound));
  const int fd = refused.fd();
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(fd_readable(fd)) << "an fd asked for after completion is readable at once";
  EXPECT_ERRC(Errc::kInvalidArgument, refused.wait(0ms));
  EXPECT_FALSE(refused.cancel());
  EXPECT_ERRC(Errc::kInvalidArgument, refused.result()) << "cancel() did not change the result";
}

TEST_P(OverlappedTest, EpollReportsWhichOperationIsDone) {
  std::shared_ptr<ConnectEndpoint> first;
  std::shared_ptr<ConnectEndpoint> second;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), first));
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), second));
  auto first_request = first->get_request();
  auto second_request = second->get_request();
  const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(epoll, 0);
  epoll_event entry{};
  entry.events = EPOLLIN;
  entry.data.u32 = 1;
  ASSERT_EQ(::epoll_ctl(epoll, EPOLL_CTL_ADD, first_request.fd(), &entry), 0);
  entry.data.u32 = 2;
  ASSERT_EQ(::epoll_ctl(epoll, EPOLL_CTL_ADD, second_request.fd(), &entry), 0);
  epoll_event ready[2];
  EXPECT_EQ(::epoll_wait(epoll, ready, 2, 0), 0) << "nothing done yet";

  QpSide client;
  std::optional<Operation<ConnectParameters>> connecting;
  ASSERT_NO_FATAL_FAILURE(start_connect(*second, client, connecting));
  const int n = ::epoll_wait(epoll, ready, 2, static_cast<int>(kBound.count()));
  ASSERT_EQ(n, 1);
  EXPECT_EQ(ready[0].data.u32, 2u) << "the second listener got the request";
  EXPECT_FALSE(first_request.ready());
  EXPECT_TRUE(second_request.ready());
  ::close(epoll);
  first_request.cancel();
  std::shared_ptr<ConnectEndpoint> server_endpoint;
  ASSERT_OK_AND_ASSIGN(server_endpoint, second_request.result());
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));
  ASSERT_OK(server_endpoint->accept(server.qp, {}).wait(kBound));
  ASSERT_OK(connecting->wait(kBound));
}

TEST_P(OverlappedTest, CancelledCqNotificationStaysCancelled) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  auto cancelled = pair.client.send_cq->notify(NotifyOn::kNextCompletion);
  EXPECT_TRUE(cancelled.cancel());
  auto armed = pair.client.send_cq->notify(NotifyOn::kNextCompletion);
  const Sge sge = scratch_.sge(0, 8);
  ASSERT_OK(pair.client.qp->rdma_write(1, std::span(&sge, 1), scratch_.remote(1024),
                                       SendFlags::kSignaled));
  EXPECT_OK(armed.wait(kBound));
  EXPECT_ERRC(Errc::kCancelled, cancelled.result()) << "a completion does not revive it";
  Completion c;
  ASSERT_TRUE(poll_one(*pair.client.send_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
}

WV_INSTANTIATE_FOR_PROVIDERS(OverlappedTest);

}  // namespace
}  // namespace wv::verbs::conformance
