// The hybrid provider (verbs/providers/hybrid): peers on this host are reached over the shm
// wire, everything else over tcp, on one tcp device; plain tcp peers on either side still
// connect. The whole conformance suite runs on it too (provider "hybrid"); this file checks
// which wire each connection took.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "hybrid_endpoint.h"
#include "wv/verbs.h"

namespace wv::verbs::hybrid {
namespace {

using namespace std::chrono_literals;
constexpr auto kBound = 10s;

struct Side {
  std::shared_ptr<Provider> provider;
  std::shared_ptr<Device> device;
  std::shared_ptr<ProtectionDomain> pd;
  std::shared_ptr<CompletionQueue> cq;
  std::shared_ptr<ConnectQueuePair> qp;
  std::shared_ptr<MemoryRegion> region;
  std::vector<std::byte> memory = std::vector<std::byte>(256);
  std::shared_ptr<ConnectEndpoint> endpoint;
};

void open_side(const char* provider_name, Side& side) {
  auto provider = Provider::open(provider_name);
  ASSERT_TRUE(provider.is_ok()) << provider.status().to_string();
  side.provider = provider.value();
  auto device = side.provider->open_device("");
  ASSERT_TRUE(device.is_ok()) << device.status().to_string();
  side.device = device.value();
  side.pd = side.device->allocate_protection_domain().value();
  side.cq = side.device->create_completion_queue(64).value();
  QueuePairOptions options;
  options.send_cq = side.cq;
  options.receive_cq = side.cq;
  auto qp = side.pd->create_connect_queue_pair(options);
  ASSERT_TRUE(qp.is_ok()) << qp.status().to_string();
  side.qp = qp.value();
  auto region =
      side.pd->register_memory(side.memory.data(), side.memory.size(), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok()) << region.status().to_string();
  side.region = region.value();
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

bool poll_one(CompletionQueue& cq, Completion& out) {
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cq.poll(std::span(&out, 1)) == 1) return true;
    std::this_thread::sleep_for(100us);
  }
  return false;
}

// Listens on `listen_at` with `server`, connects `client` to `connect_to` (port filled in), and
// sends one message from the client to the server.
void connect_and_send(Side& server, Side& client, const SocketAddress& listen_at,
                      SocketAddress connect_to) {
  server.endpoint = server.provider->create_connect_endpoint().value();
  ASSERT_TRUE(server.endpoint->bind(listen_at).is_ok());
  ASSERT_TRUE(server.endpoint->listen(4).is_ok());
  connect_to.set_port(server.endpoint->query().local.port());

  const Sge receive = server.region->sge(server.memory.data(), 64);
  ASSERT_TRUE(server.qp->post_receive(1, std::span(&receive, 1)).is_ok());
  client.endpoint = client.provider->create_connect_endpoint().value();
  ASSERT_TRUE(client.endpoint->resolve_address(connect_to, kBound).wait(kBound).is_ok());
  ASSERT_TRUE(client.endpoint->resolve_route(kBound).wait(kBound).is_ok());
  auto connecting = client.endpoint->connect(client.qp, {});
  auto request = server.endpoint->get_request().wait(kBound);
  ASSERT_TRUE(request.is_ok()) << request.status().to_string();
  ASSERT_TRUE(request.value()->accept(server.qp, {}).wait(kBound).is_ok());
  auto connected = connecting.wait(kBound);
  ASSERT_TRUE(connected.is_ok()) << connected.status().to_string();
  server.endpoint = request.value();

  std::memcpy(client.memory.data(), "over the wire", 14);
  const Sge send = client.region->sge(client.memory.data(), 14);
  ASSERT_TRUE(client.qp->send(2, std::span(&send, 1), SendFlags::kSignaled).is_ok());
  Completion c;
  ASSERT_TRUE(poll_one(*server.cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess);
  EXPECT_EQ(c.length, 14u);
  EXPECT_EQ(std::memcmp(server.memory.data(), "over the wire", 14), 0);
}

TEST(HybridProvider, IsWhatAutoOpensWithoutRdmaDevicesAndUsesTheTcpDevice) {
  auto provider = Provider::open("auto");
  ASSERT_TRUE(provider.is_ok()) << provider.status().to_string();
  if (provider.value()->name() == "ibverbs") GTEST_SKIP() << "this host has an RDMA device";
  EXPECT_EQ(provider.value()->name(), "hybrid");
  Side side;
  ASSERT_NO_FATAL_FAILURE(open_side("hybrid", side));
  EXPECT_EQ(side.device->attributes().name, "tcp0");
}

TEST(HybridProvider, PeersOnThisHostConnectThroughSharedMemory) {
  ASSERT_EQ(shm_segments_mapped(), 0);
  Side server;
  Side client;
  ASSERT_NO_FATAL_FAILURE(open_side("hybrid", server));
  ASSERT_NO_FATAL_FAILURE(open_side("hybrid", client));
  ASSERT_NO_FATAL_FAILURE(connect_and_send(server, client, SocketAddress::ipv4_loopback(0),
                                           SocketAddress::ipv4_loopback(0)));
  EXPECT_EQ(shm_segments_mapped(), 2) << "both sides map one shm segment";
}

TEST(HybridProvider, AWildcardListenerIsReachedThroughSharedMemoryToo) {
  Side server;
  Side client;
  ASSERT_NO_FATAL_FAILURE(open_side("hybrid", server));
  ASSERT_NO_FATAL_FAILURE(open_side("hybrid", client));
  ASSERT_NO_FATAL_FAILURE(connect_and_send(server, client, SocketAddress::ipv4_any(0),
                                           SocketAddress::ipv4_loopback(0)));
  EXPECT_EQ(shm_segments_mapped(), 2);
}

TEST(HybridProvider, APlainTcpListenerOnThisHostIsReachedOverTcp) {
  Side server;
  Side client;
  ASSERT_NO_FATAL_FAILURE(open_side("tcp", server));
  ASSERT_NO_FATAL_FAILURE(open_side("hybrid", client));
  ASSERT_NO_FATAL_FAILURE(connect_and_send(server, client, SocketAddress::ipv4_loopback(0),
                                           SocketAddress::ipv4_loopback(0)));
  EXPECT_EQ(shm_segments_mapped(), 0) << "no shm door there: the connect fell back to tcp";
}

TEST(HybridProvider, APlainTcpClientReachesAHybridListener) {
  Side server;
  Side client;
  ASSERT_NO_FATAL_FAILURE(open_side("hybrid", server));
  ASSERT_NO_FATAL_FAILURE(open_side("tcp", client));
  ASSERT_NO_FATAL_FAILURE(connect_and_send(server, client, SocketAddress::ipv4_loopback(0),
                                           SocketAddress::ipv4_loopback(0)));
  EXPECT_EQ(shm_segments_mapped(), 0);
}

TEST(HybridProvider, OnlyThisHostsAddressesAreLocal) {
  EXPECT_TRUE(HybridEndpoint::on_this_host(SocketAddress::ipv4_loopback(5000)));
  EXPECT_TRUE(HybridEndpoint::on_this_host(SocketAddress::parse("127.9.9.9:1").value()));
  EXPECT_TRUE(HybridEndpoint::on_this_host(SocketAddress::parse("[::1]:1").value()));
  // Documentation ranges (RFC 5737, RFC 3849): never an interface here.
  EXPECT_FALSE(HybridEndpoint::on_this_host(SocketAddress::parse("192.0.2.1:5000").value()));
  EXPECT_FALSE(HybridEndpoint::on_this_host(SocketAddress::parse("[2001:db8::1]:1").value()));
  // Every address of an interface of this host is.
  ifaddrs* list = nullptr;
  ASSERT_EQ(::getifaddrs(&list), 0);
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    const SocketAddress address(it->ifa_addr, sizeof(sockaddr_in));
    EXPECT_TRUE(HybridEndpoint::on_this_host(address)) << address.to_string();
  }
  ::freeifaddrs(list);
}

}  // namespace
}  // namespace wv::verbs::hybrid
