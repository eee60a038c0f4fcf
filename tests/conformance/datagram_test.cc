// Datagram QPs and endpoints (datagram_endpoint.h, queue_pair.h, address_handle.h; capabilities
// kDatagram, kMulticast).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

constexpr uint32_t kServerQkey = 0x11223344;
constexpr uint32_t kClientQkey = 0x55667788;
constexpr uint32_t kImmediate = 0x01020304;

// DatagramEndpoint has no query() that would report the port a bind to port 0 got, so the test
// picks a port that is free for both TCP and UDP right now.
uint16_t free_port(const SocketAddress& on) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr = reinterpret_cast<const sockaddr_in*>(on.get())->sin_addr;
    socklen_t length = sizeof(address);
    uint16_t port = 0;
    if (tcp >= 0 && udp >= 0 &&
        ::bind(tcp, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
        ::getsockname(tcp, reinterpret_cast<sockaddr*>(&address), &length) == 0 &&
        ::bind(udp, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
      port = ntohs(address.sin_port);
    }
    if (tcp >= 0) ::close(tcp);
    if (udp >= 0) ::close(udp);
    if (port != 0) return port;
  }
  return 0;
}

class DatagramTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    REQUIRE_CAPABILITY(Capability::kDatagram);
    ASSERT_NO_FATAL_FAILURE(make_datagram_qp(kServerQkey, server_tag(), server_, server_qp_));
    ASSERT_NO_FATAL_FAILURE(make_datagram_qp(kClientQkey, client_tag(), client_, client_qp_));
    ASSERT_NO_FATAL_FAILURE(register_buffer(64 * 1024, Access::kLocalWrite, buffer_));
    ASSERT_EQ(address(0).family(), AF_INET) << "this suite's datagram tests use IPv4";
    ASSERT_OK_AND_ASSIGN(listener_, provider_->create_datagram_endpoint());
    Status bound(Errc::kInvalidState, "no free port");
    for (int attempt = 0; attempt < 5 && !bound.is_ok(); ++attempt) {
      port_ = free_port(address(0));
      ASSERT_NE(port_, 0);
      bound = listener_->bind(address(port_));
    }
    ASSERT_OK(bound);
    ASSERT_OK(listener_->listen(4));
  }

  void make_datagram_qp(uint32_t qkey, void* context, QpSide& cqs,
                        std::shared_ptr<DatagramQueuePair>& qp) {
    QueuePairOptions options;
    ASSERT_NO_FATAL_FAILURE(make_cq(options.send_cq));
    ASSERT_NO_FATAL_FAILURE(make_cq(options.receive_cq));
    options.context = context;
    options.send_sge = std::min(options.send_sge, attributes().max_sge);
    options.receive_sge = std::min(options.receive_sge, attributes().max_sge);
    cqs.send_cq = options.send_cq;
    cqs.receive_cq = options.receive_cq;
    cqs.context = context;
    ASSERT_OK_AND_ASSIGN(qp, pd_->create_datagram_queue_pair(options, qkey));
    ASSERT_NE(qp, nullptr);
    EXPECT_EQ(qp->query().qkey, qkey);
  }

  // The client looks the server's QP up through the listener, which accepts with server_qp_.
  void lookup(DatagramPeer& peer, std::vector<std::byte> question = to_bytes("who is there?"),
              std::vector<std::byte> answer = to_bytes("the server QP")) {
    ASSERT_OK_AND_ASSIGN(client_endpoint_, provider_->create_datagram_endpoint());
    auto asking = client_endpoint_->lookup(address(port_), question, kBound);
    std::shared_ptr<DatagramEndpoint> request;
    ASSERT_OK_AND_ASSIGN(request, listener_->get_request().wait(kBound));
    EXPECT_EQ(request->request().private_data, question);
    ASSERT_OK(request->accept(server_qp_, answer).wait(kBound));
    ASSERT_OK_AND_ASSIGN(peer, asking.wait(kBound));
    EXPECT_EQ(peer.qp_number, server_qp_->number());
    EXPECT_EQ(peer.qkey, kServerQkey);
    EXPECT_EQ(peer.private_data, answer);
  }

  void post_receive(uint64_t wr_id) {
    const Sge sge = buffer_.sge((wr_id % 16) * 4096, 4096);
    ASSERT_OK(server_qp_->post_receive(wr_id, std::span(&sge, 1)));
  }

  void send(const AddressHandle& to, uint32_t qp_number, uint32_t qkey, uint32_t seed,
            uint64_t wr_id) {
    fill_pattern(scratch_.bytes(0, 64), seed);
    const Sge sge = scratch_.sge(0, 64);
    ASSERT_OK(
        client_qp_->send(wr_id, std::span(&sge, 1), to, qp_number, qkey, SendFlags::kSignaled));
    Completion c;
    ASSERT_TRUE(poll_one(*client_.send_cq, c));
    EXPECT_EQ(c.wr_id, wr_id);
    EXPECT_EQ(c.status, CompletionStatus::kSuccess)
        << "a datagram send completes locally: " << describe(c);
    EXPECT_EQ(c.opcode, Opcode::kSend);
  }

  QpSide server_;
  QpSide client_;
  std::shared_ptr<DatagramQueuePair> server_qp_;
  std::shared_ptr<DatagramQueuePair> client_qp_;
  std::shared_ptr<DatagramEndpoint> listener_;
  std::shared_ptr<DatagramEndpoint> client_endpoint_;
  uint16_t port_ = 0;
  Buffer buffer_;
};

TEST_P(DatagramTest, LookupAndAcceptGiveTheServersQp) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  std::shared_ptr<AddressHandle> handle;
  ASSERT_OK_AND_ASSIGN(handle, pd_->create_address_handle(peer.address));
  EXPECT_EQ(handle->address_vector().destination_gid, peer.address.destination_gid);
  EXPECT_EQ(handle->address_vector().destination_port, peer.address.destination_port);
}

TEST_P(DatagramTest, LookupRejected) {
  ASSERT_OK_AND_ASSIGN(client_endpoint_, provider_->create_datagram_endpoint());
  auto asking = client_endpoint_->lookup(address(port_), to_bytes("let me in"), kBound);
  std::shared_ptr<DatagramEndpoint> request;
  ASSERT_OK_AND_ASSIGN(request, listener_->get_request().wait(kBound));
  ASSERT_OK(request->reject(to_bytes("no")));
  EXPECT_ERRC(Errc::kRejected, asking.wait(kBound));
}

TEST_P(DatagramTest, SendCarriesSourceQpAndImmediate) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  std::shared_ptr<AddressHandle> handle;
  ASSERT_OK_AND_ASSIGN(handle, pd_->create_address_handle(peer.address));
  ASSERT_NO_FATAL_FAILURE(post_receive(1));
  ASSERT_NO_FATAL_FAILURE(send(*handle, peer.qp_number, peer.qkey, 41, 10));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 1u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.opcode, Opcode::kReceive);
  EXPECT_EQ(r.length, 64u);
  EXPECT_EQ(r.qp_context, server_tag());
  EXPECT_EQ(r.qp_number, server_qp_->number());
  EXPECT_EQ(r.source_qp_number, client_qp_->number());
  EXPECT_FALSE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_TRUE(has_pattern(buffer_.bytes(4096, 64), 41));

  if (!has_capability(Capability::kImmediateData)) return;
  ASSERT_NO_FATAL_FAILURE(post_receive(2));
  const Sge sge = scratch_.sge(0, 16);
  ASSERT_OK(client_qp_->send_with_immediate(11, std::span(&sge, 1), *handle, peer.qp_number,
                                            peer.qkey, kImmediate, SendFlags::kSignaled));
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 2u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_TRUE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_EQ(r.immediate, kImmediate) << std::hex << "got 0x" << r.immediate;
  EXPECT_EQ(r.source_qp_number, client_qp_->number());
  Completion s;
  ASSERT_TRUE(poll_one(*client_.send_cq, s));
  EXPECT_EQ(s.status, CompletionStatus::kSuccess) << describe(s);
}

TEST_P(DatagramTest, QkeyMismatchDropsTheDatagram) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  std::shared_ptr<AddressHandle> handle;
  ASSERT_OK_AND_ASSIGN(handle, pd_->create_address_handle(peer.address));
  ASSERT_NO_FATAL_FAILURE(post_receive(1));
  ASSERT_NO_FATAL_FAILURE(send(*handle, peer.qp_number, peer.qkey + 1, 50, 20));
  EXPECT_TRUE(stays_empty(*server_.receive_cq)) << "a datagram with the wrong Q_Key is dropped";
  // The receive is still there for a datagram with the right key.
  ASSERT_NO_FATAL_FAILURE(send(*handle, peer.qp_number, peer.qkey, 51, 21));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 1u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_TRUE(has_pattern(buffer_.bytes(4096, 64), 51));
}

TEST_P(DatagramTest, MulticastAttachAndDetach) {
  REQUIRE_CAPABILITY(Capability::kMulticast);
  const uint16_t group_port = free_port(address(0));
  ASSERT_NE(group_port, 0);
  SocketAddress group;
  ASSERT_OK_AND_ASSIGN(group, SocketAddress::parse("239.255.77.1:" + std::to_string(group_port)));
  DatagramPeer joined;
  ASSERT_OK_AND_ASSIGN(joined, listener_->join_multicast(server_qp_, group).wait(kBound));
  if (has_limitation(Limitation::kMulticastGidIpv4Mapped)) {
    Gid mapped;
    mapped.raw[10] = 0xff;
    mapped.raw[11] = 0xff;
    std::memcpy(&mapped.raw[12], &reinterpret_cast<const sockaddr_in*>(group.get())->sin_addr, 4);
    EXPECT_EQ(to_string(joined.address.destination_gid), to_string(mapped));
  } else {
    EXPECT_TRUE(joined.address.destination_gid.is_multicast());
  }
  std::shared_ptr<AddressHandle> handle;
  ASSERT_OK_AND_ASSIGN(handle, pd_->create_address_handle(joined.address));

  ASSERT_NO_FATAL_FAILURE(post_receive(1));
  ASSERT_NO_FATAL_FAILURE(send(*handle, joined.qp_number, joined.qkey, 60, 30));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.source_qp_number, client_qp_->number());
  EXPECT_TRUE(has_pattern(buffer_.bytes(4096, 64), 60));

  ASSERT_OK(
      server_qp_->detach_multicast(joined.address.destination_gid, joined.address.destination_lid));
  ASSERT_NO_FATAL_FAILURE(post_receive(2));
  ASSERT_NO_FATAL_FAILURE(send(*handle, joined.qp_number, joined.qkey, 61, 31));
  EXPECT_TRUE(stays_empty(*server_.receive_cq)) << "a detached QP gets nothing for the group";

  ASSERT_OK(
      server_qp_->attach_multicast(joined.address.destination_gid, joined.address.destination_lid));
  ASSERT_NO_FATAL_FAILURE(send(*handle, joined.qp_number, joined.qkey, 62, 32));
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 2u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_TRUE(has_pattern(buffer_.bytes(2 * 4096, 64), 62));
  EXPECT_OK(listener_->leave_multicast(group));
}

WV_INSTANTIATE_FOR_PROVIDERS(DatagramTest);

}  // namespace
}  // namespace wv::verbs::conformance
