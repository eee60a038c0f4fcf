// The hybrid provider (verbs/providers/hybrid): peers on this host are reached over the shm
// wire, everything else over tcp, on one tcp device; plain tcp peers on either side still
// connect. The whole conformance suite runs on it too (provider "hybrid"); this file checks
// which wire each connection took.
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "hybrid_endpoint.h"
#include "soft_side.h"
#include "wv/verbs.h"

namespace wv::verbs::hybrid {
namespace {

using test::kBound;

// A side with a registered buffer and, once connected, its endpoint.
struct Peer {
  test::Side side;
  std::vector<std::byte> memory = std::vector<std::byte>(256);
  std::shared_ptr<MemoryRegion> region;
  std::shared_ptr<ConnectEndpoint> endpoint;
};

void open_peer(const char* provider_name, Peer& peer) {
  ASSERT_NO_FATAL_FAILURE(test::open_side(provider_name, peer.side));
  auto region =
      peer.side.pd->register_memory(peer.memory.data(), peer.memory.size(), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok()) << region.status().to_string();
  peer.region = region.value();
}

// Mappings of shm connection segments in this process: one per side of each shm connection.
int shm_segments_mapped() {
  int count = 0;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find("wv-shm-connection") != std::string::npos) ++count;
  }
  return count;
}

// Listens on `listen_at` with `server`, connects `client` to `connect_to` (port filled in), and
// sends one message from the client to the server.
void connect_and_send(Peer& server, Peer& client, const SocketAddress& listen_at,
                      SocketAddress connect_to) {
  server.endpoint = server.side.provider->create_connect_endpoint().value();
  ASSERT_TRUE(server.endpoint->bind(listen_at).is_ok());
  ASSERT_TRUE(server.endpoint->listen(4).is_ok());
  connect_to.set_port(server.endpoint->query().local.port());

  const Sge receive = server.region->sge(server.memory.data(), 64);
  ASSERT_TRUE(server.side.qp->post_receive(1, std::span(&receive, 1)).is_ok());
  client.endpoint = client.side.provider->create_connect_endpoint().value();
  ASSERT_TRUE(client.endpoint->resolve_address(connect_to, kBound).wait(kBound).is_ok());
  ASSERT_TRUE(client.endpoint->resolve_route(kBound).wait(kBound).is_ok());
  auto connecting = client.endpoint->connect(client.side.qp, {});
  auto request = server.endpoint->get_request().wait(kBound);
  ASSERT_TRUE(request.is_ok()) << request.status().to_string();
  ASSERT_TRUE(request.value()->accept(server.side.qp, {}).wait(kBound).is_ok());
  auto connected = connecting.wait(kBound);
  ASSERT_TRUE(connected.is_ok()) << connected.status().to_string();
  server.endpoint = request.value();

  std::memcpy(client.memory.data(), "over the wire", 14);
  const Sge send = client.region->sge(client.memory.data(), 14);
  ASSERT_TRUE(client.side.qp->send(2, std::span(&send, 1), SendFlags::kSignaled).is_ok());
  Completion c;
  ASSERT_TRUE(test::poll_one(*server.side.cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess);
  EXPECT_EQ(c.length, 14u);
  EXPECT_EQ(std::memcmp(server.memory.data(), "over the wire", 14), 0);
}

TEST(HybridProvider, IsWhatAutoOpensWithoutRdmaDevicesAndUsesTheTcpDevice) {
  auto provider = Provider::open("auto");
  ASSERT_TRUE(provider.is_ok()) << provider.status().to_string();
  if (provider.value()->name() == "ibverbs") GTEST_SKIP() << "this host has an RDMA device";
  EXPECT_EQ(provider.value()->name(), "hybrid");
  test::Side side;
  ASSERT_NO_FATAL_FAILURE(test::open_side("hybrid", side));
  EXPECT_EQ(side.device->attributes().name, "tcp0");
}

struct WireCase {
  const char* name;
  const char* server;
  const char* client;
  bool wildcard_listen;
  int segments;  // shm segments mapped once connected: 2 over shm (one per side), 0 over tcp
};

class HybridWire : public testing::TestWithParam<WireCase> {};

TEST_P(HybridWire, ConnectionTakesTheExpectedWire) {
  const WireCase& wire = GetParam();
  ASSERT_EQ(shm_segments_mapped(), 0);
  Peer server;
  Peer client;
  ASSERT_NO_FATAL_FAILURE(open_peer(wire.server, server));
  ASSERT_NO_FATAL_FAILURE(open_peer(wire.client, client));
  const SocketAddress listen_at =
      wire.wildcard_listen ? SocketAddress::ipv4_any(0) : SocketAddress::ipv4_loopback(0);
  ASSERT_NO_FATAL_FAILURE(
      connect_and_send(server, client, listen_at, SocketAddress::ipv4_loopback(0)));
  EXPECT_EQ(shm_segments_mapped(), wire.segments);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HybridWire,
    testing::Values(
        // Peers on this host connect through shared memory, also through a wildcard listen.
        WireCase{"HybridPeersOnThisHostUseSharedMemory", "hybrid", "hybrid", false, 2},
        WireCase{"AWildcardListenerIsReachedThroughSharedMemory", "hybrid", "hybrid", true, 2},
        // No shm door at a plain tcp listener: the connect falls back to tcp.
        WireCase{"APlainTcpListenerIsReachedOverTcp", "tcp", "hybrid", false, 0},
        WireCase{"APlainTcpClientReachesAHybridListenerOverTcp", "hybrid", "tcp", false, 0}),
    [](const testing::TestParamInfo<WireCase>& param) { return std::string(param.param.name); });

TEST(HybridProvider, OnlyThisHostsAddressesAreLocal) {
  EXPECT_TRUE(HybridEndpoint::on_this_host(SocketAddress::ipv4_loopback(5000)));
  EXPECT_TRUE(HybridEndpoint::on_this_host(SocketAddress::parse("127.9.9.9:1").value()));
  EXPECT_TRUE(HybridEndpoint::on_this_host(SocketAddress::parse("[::1]:1").value()));
  // Documentation ranges (RFC 5737, RFC 3849): never an interface here.
  EXPECT_FALSE(HybridEndpoint::on_this_host(SocketAddress::parse("192.0.2.1:5000").value()));
  EXPECT_FALSE(HybridEndpoint::on_this_host(SocketAddress::parse("[2001:db8::1]:1").value()));
  // Every IPv4 address of an interface of this host that is up is.
  ifaddrs* list = nullptr;
  ASSERT_EQ(::getifaddrs(&list), 0);
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    if ((it->ifa_flags & IFF_UP) == 0) continue;
    const SocketAddress address(it->ifa_addr, sizeof(sockaddr_in));
    EXPECT_TRUE(HybridEndpoint::on_this_host(address)) << address.to_string();
  }
  ::freeifaddrs(list);
}

}  // namespace
}  // namespace wv::verbs::hybrid
