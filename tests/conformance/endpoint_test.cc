// Connection management (connect_endpoint.h): states, private data, reject, refusal,
// disconnect, wildcard and specific listens, read depths.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

class EndpointTest : public VerbsTest {
 protected:
  // A client endpoint resolved to `destination`.
  void resolved_client(const SocketAddress& destination, std::shared_ptr<ConnectEndpoint>& out) {
    ASSERT_OK_AND_ASSIGN(out, provider_->create_connect_endpoint());
    ASSERT_OK(out->resolve_address(destination, kBound).wait(kBound));
    ASSERT_OK(out->resolve_route(kBound).wait(kBound));
  }
  // Another local IPv4 address than the suite's, or nullopt.
  std::optional<SocketAddress> other_local_address(uint16_t port) {
    SocketAddress primary = address(port);
    auto listed = provider_->addresses();
    if (listed.is_ok()) {
      for (const AddressInfo& info : listed.value()) {
        SocketAddress candidate = info.address;
        if (candidate.family() != AF_INET || candidate.is_wildcard()) continue;
        candidate.set_port(port);
        if (!(candidate == primary)) return candidate;
      }
    }
    if (primary == SocketAddress::ipv4_loopback(port)) {
      auto second = SocketAddress::parse("127.0.0.2:" + std::to_string(port));
      if (second.is_ok()) return second.value();
    }
    return std::nullopt;
  }
};

TEST_P(EndpointTest, StatesFollowConnectionSetup) {
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_OK_AND_ASSIGN(listener, provider_->create_connect_endpoint());
  EXPECT_EQ(listener->query().state, EndpointState::kIdle);
  ASSERT_OK(listener->bind(address(0)));
  EXPECT_EQ(listener->query().state, EndpointState::kBound);
  ASSERT_OK(listener->listen(4));
  EXPECT_EQ(listener->query().state, EndpointState::kListening);
  const SocketAddress listening = listener->query().local;
  ASSERT_NE(listening.port(), 0);

  QpSide client;
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));
  ASSERT_OK_AND_ASSIGN(client.endpoint, provider_->create_connect_endpoint());
  EXPECT_EQ(client.endpoint->query().state, EndpointState::kIdle);
  ASSERT_OK(
      client.endpoint
          ->resolve_address(listening.is_wildcard() ? address(listening.port()) : listening, kBound)
          .wait(kBound));
  EXPECT_EQ(client.endpoint->query().state, EndpointState::kAddressResolved);
  ASSERT_OK(client.endpoint->resolve_route(kBound).wait(kBound));
  EXPECT_EQ(client.endpoint->query().state, EndpointState::kRouteResolved);
  auto connecting = client.endpoint->connect(client.qp, {});
  ASSERT_OK_AND_ASSIGN(server.endpoint, listener->get_request().wait(kBound));
  EXPECT_EQ(server.endpoint->query().state, EndpointState::kRequestReceived);
  EXPECT_EQ(client.endpoint->query().state, EndpointState::kConnecting) << "waiting for the accept";
  EXPECT_EQ(listener->query().state, EndpointState::kListening) << "the listener keeps listening";
  auto accepting = server.endpoint->accept(server.qp, {});
  ASSERT_OK(connecting.wait(kBound));
  ASSERT_OK(accepting.wait(kBound));
  const ConnectAttributes c = client.endpoint->query();
  const ConnectAttributes s = server.endpoint->query();
  EXPECT_EQ(c.state, EndpointState::kConnected);
  EXPECT_EQ(s.state, EndpointState::kConnected);
  EXPECT_EQ(c.peer, s.local) << c.peer.to_string() << " vs " << s.local.to_string();
  EXPECT_EQ(s.peer, c.local) << s.peer.to_string() << " vs " << c.local.to_string();
  EXPECT_EQ(s.local.port(), listening.port());
  ASSERT_OK(client.endpoint->disconnect().wait(kBound));
  EXPECT_EQ(client.endpoint->query().state, EndpointState::kDisconnected);
}

TEST_P(EndpointTest, PrivateDataDeliveredBothWays) {
  PairOptions options;
  options.client_parameters.private_data = to_bytes("hello from the active side");
  options.server_parameters.private_data = to_bytes("and hello from the passive side");
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  EXPECT_EQ(pair.server_saw.private_data, options.client_parameters.private_data)
      << "the request carries the connect's private data";
  EXPECT_EQ(pair.client_saw.private_data, options.server_parameters.private_data)
      << "connect's result carries the accept's private data";
  EXPECT_EQ(pair.client.endpoint->query().peer_parameters.private_data,
            options.server_parameters.private_data);
  EXPECT_EQ(pair.server.endpoint->query().peer_parameters.private_data,
            options.client_parameters.private_data);
}

TEST_P(EndpointTest, RejectCarriesPrivateData) {
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), listener));
  QpSide client;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_NO_FATAL_FAILURE(
      resolved_client(address(listener->query().local.port()), client.endpoint));
  ConnectParameters offer;
  offer.private_data = to_bytes("may I?");
  auto connecting = client.endpoint->connect(client.qp, offer);
  std::shared_ptr<ConnectEndpoint> request;
  ASSERT_OK_AND_ASSIGN(request, listener->get_request().wait(kBound));
  EXPECT_EQ(request->query().peer_parameters.private_data, offer.private_data);
  const std::vector<std::byte> reason = to_bytes("no, go away");
  ASSERT_OK(request->reject(reason));
  EXPECT_ERRC(Errc::kRejected, connecting.wait(kBound));
  const ConnectAttributes attributes = client.endpoint->query();
  EXPECT_EQ(attributes.state, EndpointState::kRejected);
  EXPECT_EQ(attributes.peer_parameters.private_data, reason)
      << "the reject's private data is in query()";
  EXPECT_NE(client.qp->query().state, QpState::kReadyToSend);
}

TEST_P(EndpointTest, MaxPrivateDataEnforced) {
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), listener));
  const SocketAddress destination = address(listener->query().local.port());
  QpSide client;
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));

  std::shared_ptr<ConnectEndpoint> too_long;
  ASSERT_NO_FATAL_FAILURE(resolved_client(destination, too_long));
  const size_t client_max = too_long->max_private_data();
  ASSERT_GT(client_max, 0u);
  ConnectParameters oversized;
  oversized.private_data = pattern(client_max + 1, 1);
  EXPECT_ERRC(Errc::kInvalidArgument, too_long->connect(client.qp, oversized).wait(kBound));
  auto nothing = listener->get_request();
  EXPECT_ERRC(Errc::kTimedOut, nothing.wait(kQuiet)) << "a refused connect sends no request";

  ASSERT_NO_FATAL_FAILURE(resolved_client(destination, client.endpoint));
  ConnectParameters exact;
  exact.private_data = pattern(client_max, 2);
  auto connecting = client.endpoint->connect(client.qp, exact);
  ASSERT_OK_AND_ASSIGN(server.endpoint, nothing.wait(kBound));
  EXPECT_EQ(server.endpoint->query().peer_parameters.private_data, exact.private_data)
      << "exactly max_private_data() bytes arrive intact";
  const size_t server_max = server.endpoint->max_private_data();
  ASSERT_GT(server_max, 0u);
  const std::vector<std::byte> too_much = pattern(server_max + 1, 3);
  EXPECT_ERRC(Errc::kInvalidArgument, server.endpoint->reject(too_much));
  ConnectParameters oversized_accept;
  oversized_accept.private_data = too_much;
  EXPECT_ERRC(Errc::kInvalidArgument,
              server.endpoint->accept(server.qp, oversized_accept).wait(kBound));
  ConnectParameters exact_accept;
  exact_accept.private_data = pattern(server_max, 4);
  ASSERT_OK(server.endpoint->accept(server.qp, exact_accept).wait(kBound));
  ConnectParameters accepted;
  ASSERT_OK_AND_ASSIGN(accepted, connecting.wait(kBound));
  EXPECT_EQ(accepted.private_data, exact_accept.private_data);
}

TEST_P(EndpointTest, ConnectWithoutListenerIsRefused) {
  // A port that is bound but not listening: nobody can take it while the test runs.
  const int blocker = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(blocker, 0);
  sockaddr_in bound{};
  bound.sin_family = AF_INET;
  const SocketAddress base = address(0);
  ASSERT_EQ(base.family(), AF_INET) << "this test binds an IPv4 socket";
  bound.sin_addr = reinterpret_cast<const sockaddr_in*>(base.get())->sin_addr;
  ASSERT_EQ(::bind(blocker, reinterpret_cast<sockaddr*>(&bound), sizeof(bound)), 0);
  socklen_t length = sizeof(bound);
  ASSERT_EQ(::getsockname(blocker, reinterpret_cast<sockaddr*>(&bound), &length), 0);
  const uint16_t port = ntohs(bound.sin_port);

  QpSide client;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_NO_FATAL_FAILURE(resolved_client(address(port), client.endpoint));
  EXPECT_ERRC(Errc::kConnectionRefused, client.endpoint->connect(client.qp, {}).wait(kBound));
  EXPECT_NE(client.endpoint->query().state, EndpointState::kConnected);
  ::close(blocker);
}

TEST_P(EndpointTest, DisconnectNotifiesThePeerAndFlushes) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  for (uint64_t i = 0; i < 2; ++i) {
    const Sge sge = scratch_.sge(i * 64, 64);
    ASSERT_OK(pair.client.qp->post_receive(10 + i, std::span(&sge, 1)));
    ASSERT_OK(pair.server.qp->post_receive(20 + i, std::span(&sge, 1)));
  }
  auto server_notice = pair.server.endpoint->notify_disconnect();
  auto client_notice = pair.client.endpoint->notify_disconnect();
  EXPECT_FALSE(server_notice.ready());
  EXPECT_FALSE(client_notice.ready());

  ASSERT_OK(pair.client.endpoint->disconnect().wait(kBound));
  EXPECT_EQ(pair.client.endpoint->query().state, EndpointState::kDisconnected);
  EXPECT_OK(client_notice.wait(kBound)) << "the connection ended for this side too";
  std::vector<Completion> flushed;
  ASSERT_TRUE(poll_n(*pair.client.receive_cq, 2, flushed));
  for (uint64_t i = 0; i < 2; ++i) {
    EXPECT_EQ(flushed[i].wr_id, 10 + i);
    EXPECT_EQ(flushed[i].status, CompletionStatus::kFlushed) << describe(flushed[i]);
  }
  EXPECT_EQ(pair.client.qp->query().state, QpState::kError);

  EXPECT_OK(server_notice.wait(kBound)) << "the peer sees the disconnect";
  EXPECT_EQ(pair.server.endpoint->query().state, EndpointState::kDisconnected);
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, 2, flushed))
      << "the peer's outstanding work requests are flushed when the connection ends";
  for (uint64_t i = 0; i < 2; ++i) {
    EXPECT_EQ(flushed[i].wr_id, 20 + i);
    EXPECT_EQ(flushed[i].status, CompletionStatus::kFlushed) << describe(flushed[i]);
  }
  EXPECT_TRUE(wait_qp_state(*pair.server.qp, QpState::kError));
  ASSERT_NO_FATAL_FAILURE(expect_new_send_flushed(pair.client));
}

// What a sender saw complete before it disconnected reaches the peer: its receives complete with
// the data, and only the receives left over are flushed. (A job's last message is often sent
// just before its sender closes the connection and exits.)
TEST_P(EndpointTest, SendsCompletedBeforeADisconnectAreReceived) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  constexpr uint64_t kSends = 3;
  for (uint64_t i = 0; i <= kSends; ++i) {
    const Sge sge = scratch_.sge(i * 64, 64);
    ASSERT_OK(pair.server.qp->post_receive(20 + i, std::span(&sge, 1)));
  }
  for (uint64_t i = 0; i < kSends; ++i) {
    fill_pattern(scratch_.bytes(2048 + i * 64, 64), 300 + i);
    const Sge sge = scratch_.sge(2048 + i * 64, 64);
    ASSERT_OK(pair.client.qp->send(10 + i, std::span(&sge, 1), SendFlags::kSignaled));
  }
  std::vector<Completion> sent;
  ASSERT_TRUE(poll_n(*pair.client.send_cq, kSends, sent));
  for (const Completion& c : sent) EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  auto server_notice = pair.server.endpoint->notify_disconnect();
  ASSERT_OK(pair.client.endpoint->disconnect().wait(kBound));

  // By the time the peer learns of the disconnect, what came before it is in its CQ.
  ASSERT_OK(server_notice.wait(kBound));
  std::vector<Completion> received;
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, kSends, received, Milliseconds(0)))
      << "the disconnect overtook the data";
  std::vector<Completion> rest;
  ASSERT_TRUE(poll_n(*pair.server.receive_cq, 1, rest));
  received.push_back(rest[0]);
  for (uint64_t i = 0; i < kSends; ++i) {
    EXPECT_EQ(received[i].wr_id, 20 + i);
    ASSERT_EQ(received[i].status, CompletionStatus::kSuccess) << describe(received[i]);
    EXPECT_EQ(received[i].length, 64u);
    EXPECT_TRUE(has_pattern(scratch_.bytes(i * 64, 64), 300 + i)) << "send " << i;
  }
  EXPECT_EQ(received[kSends].wr_id, 20 + kSends);
  EXPECT_EQ(received[kSends].status, CompletionStatus::kFlushed) << describe(received[kSends]);
}

TEST_P(EndpointTest, WildcardListenServesALocalAddress) {
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(SocketAddress::ipv4_any(0), listener));
  EXPECT_TRUE(listener->query().local.is_wildcard());
  QpSide client;
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));
  ASSERT_NO_FATAL_FAILURE(connect_sides(*listener, client, server, {}, {}));
  EXPECT_FALSE(server.endpoint->query().local.is_wildcard())
      << "the accepted endpoint names the address the request came to";
}

TEST_P(EndpointTest, SpecificListenWinsOverWildcardOnTheSamePort) {
  SKIP_IF_LIMITATION(Limitation::kNoSpecificListenBesideWildcard,
                     "rdma_cm refuses a specific bind on a port a wildcard listen holds");
  std::shared_ptr<ConnectEndpoint> wildcard;
  ASSERT_NO_FATAL_FAILURE(listen_on(SocketAddress::ipv4_any(0), wildcard));
  const uint16_t port = wildcard->query().local.port();
  std::shared_ptr<ConnectEndpoint> specific;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(port), specific));
  EXPECT_EQ(specific->query().local.port(), port);

  auto wildcard_request = wildcard->get_request();
  auto specific_request = specific->get_request();
  QpSide client;
  QpSide server;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client));
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server));
  ASSERT_NO_FATAL_FAILURE(resolved_client(address(port), client.endpoint));
  auto connecting = client.endpoint->connect(client.qp, {});
  ASSERT_OK_AND_ASSIGN(server.endpoint, specific_request.wait(kBound));
  EXPECT_ERRC(Errc::kTimedOut, wildcard_request.wait(kQuiet))
      << "the request to the specific address went to the specific listen only";
  ASSERT_OK(server.endpoint->accept(server.qp, {}).wait(kBound));
  ASSERT_OK(connecting.wait(kBound));

  // Another local address on the same port still reaches the wildcard listen.
  const std::optional<SocketAddress> other = other_local_address(port);
  if (!other) {
    std::printf("[ info ] no second local address: the wildcard half is not checked\n");
    return;
  }
  SCOPED_TRACE("other address " + other->to_string());
  QpSide client2;
  QpSide server2;
  ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), client2));
  ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), server2));
  ASSERT_NO_FATAL_FAILURE(resolved_client(*other, client2.endpoint));
  auto connecting2 = client2.endpoint->connect(client2.qp, {});
  ASSERT_OK_AND_ASSIGN(server2.endpoint, wildcard_request.wait(kBound));
  ASSERT_OK(server2.endpoint->accept(server2.qp, {}).wait(kBound));
  ASSERT_OK(connecting2.wait(kBound));
}

TEST_P(EndpointTest, ListenerYieldsOneEndpointPerRequest) {
  constexpr int kClients = 3;
  std::shared_ptr<ConnectEndpoint> listener;
  ASSERT_NO_FATAL_FAILURE(listen_on(address(0), listener));
  const SocketAddress destination = address(listener->query().local.port());
  QpSide clients[kClients];
  QpSide servers[kClients];
  std::vector<Operation<ConnectParameters>> connecting;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_NO_FATAL_FAILURE(make_side({}, client_tag(), clients[i]));
    ASSERT_NO_FATAL_FAILURE(make_side({}, server_tag(), servers[i]));
    ASSERT_NO_FATAL_FAILURE(resolved_client(destination, clients[i].endpoint));
    ConnectParameters offer;
    offer.private_data = {static_cast<std::byte>(i)};
    connecting.push_back(clients[i].endpoint->connect(clients[i].qp, offer));
  }
  std::map<int, int> seen;
  for (int n = 0; n < kClients; ++n) {
    std::shared_ptr<ConnectEndpoint> request;
    ASSERT_OK_AND_ASSIGN(request, listener->get_request().wait(kBound));
    const auto data = request->query().peer_parameters.private_data;
    ASSERT_EQ(data.size(), 1u);
    const int who = static_cast<int>(data[0]);
    ASSERT_TRUE(who >= 0 && who < kClients);
    EXPECT_EQ(seen[who]++, 0) << "client " << who << " requested twice";
    servers[who].endpoint = request;
    ASSERT_OK(request->accept(servers[who].qp, {}).wait(kBound));
  }
  for (int i = 0; i < kClients; ++i) {
    ASSERT_OK(connecting[i].wait(kBound));
    EXPECT_EQ(clients[i].qp->query().peer_qp_number, expected_source_qp(*servers[i].qp));
    EXPECT_EQ(servers[i].qp->query().peer_qp_number, expected_source_qp(*clients[i].qp));
  }
  // Each client's QP is connected to the server QP that accepted its own request.
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE("client " + std::to_string(i));
    const Sge receive = scratch_.sge(1024 + static_cast<size_t>(i) * 64, 64);
    ASSERT_OK(servers[i].qp->post_receive(static_cast<uint64_t>(i), std::span(&receive, 1)));
    scratch_.data()[i] = static_cast<std::byte>(0x30 + i);
    const Sge send = scratch_.sge(static_cast<size_t>(i), 1);
    ASSERT_OK(
        clients[i].qp->send(static_cast<uint64_t>(i), std::span(&send, 1), SendFlags::kSignaled));
    Completion c;
    ASSERT_TRUE(poll_one(*servers[i].receive_cq, c));
    EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    EXPECT_EQ(scratch_.data()[1024 + i * 64], static_cast<std::byte>(0x30 + i));
  }
}

// Read depths: each side offers what it serves (inbound) and issues (outbound); a QP never
// issues more reads than its peer serves.
TEST_P(EndpointTest, ReadDepthsNegotiated) {
  const uint32_t in_max = attributes().max_inbound_read_depth;
  const uint32_t out_max = attributes().max_outbound_read_depth;
  PairOptions options;
  options.client_parameters.outbound_read_depth = std::min(8u, out_max);
  options.client_parameters.inbound_read_depth = std::min(2u, in_max);
  options.server_parameters.inbound_read_depth = std::min(4u, in_max);
  options.server_parameters.outbound_read_depth = std::min(1u, out_max);
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair, options));
  EXPECT_EQ(pair.server_saw.outbound_read_depth, options.client_parameters.outbound_read_depth);
  EXPECT_EQ(pair.server_saw.inbound_read_depth, options.client_parameters.inbound_read_depth);
  if (has_limitation(Limitation::kReadDepthsRaisedToPeer)) {
    // Only what holds on every device: a QP never issues more reads than its peer serves.
    const QpAttributes client = pair.client.qp->query();
    const QpAttributes server = pair.server.qp->query();
    EXPECT_GE(server.inbound_read_depth, client.outbound_read_depth);
    EXPECT_GE(client.inbound_read_depth, server.outbound_read_depth);
    EXPECT_EQ(pair.client_saw.inbound_read_depth, server.inbound_read_depth);
    EXPECT_EQ(pair.client_saw.outbound_read_depth, server.outbound_read_depth);
    GTEST_SKIP() << "device " << attributes().name
                 << " has limitation kReadDepthsRaisedToPeer: the accepting side raised its "
                    "inbound depth to "
                 << server.inbound_read_depth << " instead of limiting the client to "
                 << options.server_parameters.inbound_read_depth
                 << "; only the invariants were checked";
  }
  EXPECT_EQ(pair.client_saw.inbound_read_depth, options.server_parameters.inbound_read_depth);
  EXPECT_EQ(pair.client_saw.outbound_read_depth, options.server_parameters.outbound_read_depth);

  const QpAttributes client = pair.client.qp->query();
  const QpAttributes server = pair.server.qp->query();
  EXPECT_EQ(client.outbound_read_depth, std::min(options.client_parameters.outbound_read_depth,
                                                 options.server_parameters.inbound_read_depth));
  EXPECT_EQ(server.outbound_read_depth, std::min(options.server_parameters.outbound_read_depth,
                                                 options.client_parameters.inbound_read_depth));
  EXPECT_GE(server.inbound_read_depth, client.outbound_read_depth);
  EXPECT_LE(server.inbound_read_depth, options.server_parameters.inbound_read_depth);
  EXPECT_GE(client.inbound_read_depth, server.outbound_read_depth);
  EXPECT_LE(client.inbound_read_depth, options.client_parameters.inbound_read_depth);
}

TEST_P(EndpointTest, ZeroReadDepthsMeanTheDeviceMaximum) {
  ConnectedPair pair;
  ASSERT_NO_FATAL_FAILURE(make_pair(pair));
  const uint32_t expected =
      std::min(attributes().max_outbound_read_depth, attributes().max_inbound_read_depth);
  EXPECT_EQ(pair.client.qp->query().outbound_read_depth, expected);
  EXPECT_EQ(pair.server.qp->query().outbound_read_depth, expected);
  EXPECT_GE(pair.client.qp->query().inbound_read_depth, expected);
  EXPECT_GE(pair.server.qp->query().inbound_read_depth, expected);
}

WV_INSTANTIATE_FOR_PROVIDERS(EndpointTest);

}  // namespace
}  // namespace wv::verbs::conformance
