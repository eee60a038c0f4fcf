// Datagram (UD) QPs and endpoints of the tcp provider: lookup over UDP, verbs UD semantics in
// the software engine, multicast, and robustness against malformed datagrams. Every wait is
// bounded; a test that cannot run here (multicast) skips and says why.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "wv/verbs.h"

namespace wv::verbs {
namespace {

using namespace std::chrono_literals;
using Milliseconds = std::chrono::milliseconds;

constexpr Milliseconds kBound = 10s;    // for what must happen
constexpr Milliseconds kQuiet = 300ms;  // for what must not happen
constexpr uint32_t kServerQkey = 0x11223344;
constexpr uint32_t kClientQkey = 0x55667788;
constexpr size_t kSlot = 8192;  // bytes per receive slot in the server buffer

std::vector<std::byte> to_bytes(std::string_view text) {
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

void fill_pattern(std::byte* at, size_t length, uint32_t seed) {
  for (size_t i = 0; i < length; ++i) at[i] = static_cast<std::byte>((seed * 131 + i * 7) & 0xff);
}

bool has_pattern(const std::byte* at, size_t length, uint32_t seed) {
  for (size_t i = 0; i < length; ++i) {
    if (at[i] != static_cast<std::byte>((seed * 131 + i * 7) & 0xff)) return false;
  }
  return true;
}

std::string describe(const Completion& c) {
  return "wr_id " + std::to_string(c.wr_id) + " " + std::string(to_string(c.opcode)) + " " +
         std::string(to_string(c.status)) + " length " + std::to_string(c.length);
}

// A port that is free for TCP and UDP on the loopback right now (DatagramEndpoint reports no
// bound address, so the test chooses one).
uint16_t free_port() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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

testing::AssertionResult poll_one(CompletionQueue& cq, Completion& out,
                                  Milliseconds timeout = kBound) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    const int n = cq.poll(std::span(&out, 1));
    if (n == 1) return testing::AssertionSuccess();
    if (n < 0) return testing::AssertionFailure() << "CQ in error: " << cq.status().to_string();
    std::this_thread::sleep_for(100us);
  }
  return testing::AssertionFailure() << "no completion within " << timeout.count() << " ms";
}

testing::AssertionResult stays_empty(CompletionQueue& cq, Milliseconds duration = kQuiet) {
  const auto end = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < end) {
    Completion c;
    if (cq.poll(std::span(&c, 1)) != 0) {
      return testing::AssertionFailure() << "unexpected completion: " << describe(c);
    }
    std::this_thread::sleep_for(1ms);
  }
  return testing::AssertionSuccess();
}

Status status_of(const Status& status) {
  return status;
}
template <typename T>
Status status_of(const Result<T>& result) {
  return result.status();
}

#define ASSERT_OK(expr)                                                         \
  do {                                                                          \
    const Status wv_status_ = status_of(expr);                                  \
    ASSERT_TRUE(wv_status_.is_ok()) << #expr << ": " << wv_status_.to_string(); \
  } while (0)

template <typename T>
T take(Result<T> result) {
  EXPECT_TRUE(result.is_ok()) << result.status().to_string();
  return result.is_ok() ? std::move(result).value() : T{};
}

struct Buffer {
  std::vector<std::byte> bytes;
  std::shared_ptr<MemoryRegion> region;
  Sge sge(size_t offset, uint32_t length) { return region->sge(bytes.data() + offset, length); }
  std::byte* at(size_t offset) { return bytes.data() + offset; }
};

struct Side {
  std::shared_ptr<CompletionQueue> send_cq;
  std::shared_ptr<CompletionQueue> receive_cq;
  std::shared_ptr<DatagramQueuePair> qp;
};

class DatagramTest : public testing::Test {
 protected:
  void SetUp() override {
    provider_ = take(Provider::open("tcp"));
    ASSERT_NE(provider_, nullptr);
    device_ = take(provider_->open_device(""));
    ASSERT_NE(device_, nullptr);
    ASSERT_TRUE(has(device_->attributes().capabilities, Capability::kDatagram))
        << "the tcp provider offers datagram QPs";
    pd_ = take(device_->allocate_protection_domain());
    ASSERT_NE(pd_, nullptr);
    ASSERT_NO_FATAL_FAILURE(make_side(kServerQkey, &server_tag_, server_));
    ASSERT_NO_FATAL_FAILURE(make_side(kClientQkey, &client_tag_, client_));
    ASSERT_NO_FATAL_FAILURE(make_buffer(16 * kSlot, server_buffer_));
    ASSERT_NO_FATAL_FAILURE(make_buffer(16 * kSlot, client_buffer_));
    listener_ = take(provider_->create_datagram_endpoint());
    ASSERT_NE(listener_, nullptr);
    Status bound(Errc::kBusy, "no free port");
    for (int attempt = 0; attempt < 5 && !bound.is_ok(); ++attempt) {
      port_ = free_port();
      ASSERT_NE(port_, 0);
      bound = listener_->bind(SocketAddress::ipv4_loopback(port_));
    }
    ASSERT_TRUE(bound.is_ok()) << bound.to_string();
    ASSERT_TRUE(listener_->listen(4).is_ok());
  }

  void make_side(uint32_t qkey, void* context, Side& side,
                 std::shared_ptr<SharedReceiveQueue> srq = nullptr) {
    side.send_cq = take(device_->create_completion_queue(64));
    side.receive_cq = take(device_->create_completion_queue(64));
    ASSERT_NE(side.send_cq, nullptr);
    ASSERT_NE(side.receive_cq, nullptr);
    QueuePairOptions options;
    options.send_cq = side.send_cq;
    options.receive_cq = side.receive_cq;
    options.srq = std::move(srq);
    options.context = context;
    side.qp = take(pd_->create_datagram_queue_pair(options, qkey));
    ASSERT_NE(side.qp, nullptr);
    const QpAttributes attributes = side.qp->query();
    EXPECT_EQ(attributes.qkey, qkey);
    EXPECT_EQ(attributes.state, QpState::kReadyToSend) << "a datagram QP is usable at once";
  }

  void make_buffer(size_t size, Buffer& buffer) {
    buffer.bytes.resize(size);
    buffer.region = take(pd_->register_memory(buffer.bytes.data(), size, Access::kLocalWrite));
    ASSERT_NE(buffer.region, nullptr);
  }

  // The client looks the server QP up through the listener, which accepts with it.
  void lookup(DatagramPeer& peer, const std::vector<std::byte>& question = to_bytes("who?"),
              const std::vector<std::byte>& answer = to_bytes("the server")) {
    asker_ = take(provider_->create_datagram_endpoint());
    ASSERT_NE(asker_, nullptr);
    auto asking = asker_->lookup(SocketAddress::ipv4_loopback(port_), question, kBound);
    auto request = take(listener_->get_request().wait(kBound));
    ASSERT_NE(request, nullptr);
    EXPECT_EQ(request->request().private_data, question);
    ASSERT_OK(request->accept(server_.qp, answer).wait(kBound));
    peer = take(asking.wait(kBound));
    ASSERT_EQ(peer.qp_number, server_.qp->number());
    EXPECT_EQ(peer.qkey, kServerQkey);
    EXPECT_EQ(peer.private_data, answer);
    handle_ = take(pd_->create_address_handle(peer.address));
    ASSERT_NE(handle_, nullptr);
  }

  void post_receive(Side& side, uint64_t wr_id, uint32_t length = 4096) {
    const Sge sge = server_buffer_.sge((wr_id % 16) * kSlot, length);
    ASSERT_OK(side.qp->post_receive(wr_id, std::span(&sge, 1)));
  }

  // Sends `length` pattern bytes from the client and checks the send's own completion.
  void send(uint32_t qp_number, uint32_t qkey, uint32_t seed, uint64_t wr_id, uint32_t length = 64,
            const AddressHandle* to = nullptr) {
    fill_pattern(client_buffer_.at(0), length, seed);
    const Sge sge = client_buffer_.sge(0, length);
    ASSERT_OK(client_.qp->send(wr_id, std::span(&sge, 1), to ? *to : *handle_, qp_number, qkey,
                               SendFlags::kNone));
    Completion c;
    ASSERT_TRUE(poll_one(*client_.send_cq, c));
    EXPECT_EQ(c.wr_id, wr_id);
    EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
    EXPECT_EQ(c.opcode, Opcode::kSend);
    EXPECT_EQ(c.qp_context, &client_tag_);
    EXPECT_EQ(c.qp_number, client_.qp->number());
  }

  std::shared_ptr<Provider> provider_;
  std::shared_ptr<Device> device_;
  std::shared_ptr<ProtectionDomain> pd_;
  int server_tag_ = 0;
  int client_tag_ = 0;
  Side server_;
  Side client_;
  Buffer server_buffer_;
  Buffer client_buffer_;
  std::shared_ptr<DatagramEndpoint> listener_;
  std::shared_ptr<DatagramEndpoint> asker_;
  std::shared_ptr<AddressHandle> handle_;
  uint16_t port_ = 0;
};

// ---- Lookup ----

TEST_F(DatagramTest, LookupAcceptCarriesQpQkeyAddressAndPrivateData) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer, to_bytes("question"), to_bytes("answer from server")));
  // The lookup went to 127.0.0.1, so that is where the device is reachable (IPv4-mapped).
  Gid loopback;
  loopback.raw[10] = 0xff;
  loopback.raw[11] = 0xff;
  loopback.raw[12] = 127;
  loopback.raw[15] = 1;
  EXPECT_EQ(peer.address.destination_gid, loopback) << to_string(peer.address.destination_gid);
  EXPECT_NE(peer.address.destination_port, 0) << "the device's UDP port";
  EXPECT_NE(peer.address.destination_port, port_) << "data goes to the device, not the listener";
  EXPECT_EQ(asker_->request().private_data, to_bytes("answer from server"));
}

TEST_F(DatagramTest, LookupRejectCarriesPrivateData) {
  asker_ = take(provider_->create_datagram_endpoint());
  auto asking = asker_->lookup(SocketAddress::ipv4_loopback(port_), to_bytes("let me in"), kBound);
  auto request = take(listener_->get_request().wait(kBound));
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->request().private_data, to_bytes("let me in"));
  ASSERT_TRUE(request->reject(to_bytes("no")).is_ok());
  auto result = asking.wait(kBound);
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.status().code(), Errc::kRejected) << result.status().to_string();
  EXPECT_EQ(asker_->request().private_data, to_bytes("no")) << "the refusal's private data";
  EXPECT_EQ(request->reject({}).code(), Errc::kInvalidState) << "a request is answered once";
}

TEST_F(DatagramTest, LookupRefusesOversizePrivateData) {
  asker_ = take(provider_->create_datagram_endpoint());
  std::vector<std::byte> too_long(asker_->max_private_data() + 1);
  auto result = asker_->lookup(SocketAddress::ipv4_loopback(port_), too_long, kBound).wait(kBound);
  EXPECT_EQ(result.status().code(), Errc::kInvalidArgument);
}

TEST_F(DatagramTest, LookupTimesOutWithoutListener) {
  asker_ = take(provider_->create_datagram_endpoint());
  const uint16_t nobody = free_port();
  ASSERT_NE(nobody, 0);
  auto result = asker_->lookup(SocketAddress::ipv4_loopback(nobody), {}, 300ms).wait(kBound);
  ASSERT_FALSE(result.is_ok());
  EXPECT_EQ(result.status().code(), Errc::kTimedOut) << result.status().to_string();
}

TEST_F(DatagramTest, AnEndpointLooksUpAgain) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  auto again = asker_->lookup(SocketAddress::ipv4_loopback(port_), to_bytes("2nd"), kBound);
  auto request = take(listener_->get_request().wait(kBound));
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->request().private_data, to_bytes("2nd"));
  ASSERT_TRUE(request->reject({}).is_ok());
  EXPECT_EQ(again.wait(kBound).status().code(), Errc::kRejected);
}

// The first request goes to a port nobody listens on yet: only a retransmission can reach the
// listener. Retransmissions that arrive while the request is pending are not new requests.
TEST_F(DatagramTest, LookupRetransmitsAndListenerIgnoresDuplicates) {
  auto late = take(provider_->create_datagram_endpoint());
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  asker_ = take(provider_->create_datagram_endpoint());
  auto asking = asker_->lookup(SocketAddress::ipv4_loopback(port), to_bytes("again"), 4000ms);
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(late->bind(SocketAddress::ipv4_loopback(port)).is_ok());
  ASSERT_TRUE(late->listen(4).is_ok());
  auto request = take(late->get_request().wait(kBound));
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->request().private_data, to_bytes("again"));
  // Spans at least one more retransmission (every timeout / 4) before answering.
  auto duplicate = late->get_request();
  EXPECT_FALSE(duplicate.wait(1200ms).is_ok()) << "a retransmission became a second request";
  ASSERT_OK(request->accept(server_.qp, {}).wait(kBound));
  auto peer = take(asking.wait(kBound));
  EXPECT_EQ(peer.qp_number, server_.qp->number());
  EXPECT_FALSE(duplicate.wait(kQuiet).is_ok());
  duplicate.cancel();
}

// A datagram listen is UDP; a connect listen on the same port number is TCP: both work.
TEST_F(DatagramTest, DatagramAndConnectListensOnOnePortAreIndependent) {
  auto connect_listener = take(provider_->create_connect_endpoint());
  ASSERT_NE(connect_listener, nullptr);
  ASSERT_TRUE(connect_listener->bind(SocketAddress::ipv4_loopback(port_)).is_ok());
  ASSERT_TRUE(connect_listener->listen(4).is_ok());
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
}

// The answer names the address the lookup reached, even when the listener is on the wildcard.
TEST_F(DatagramTest, WildcardListenerAnswersWithTheAddressReached) {
  auto wildcard = take(provider_->create_datagram_endpoint());
  const uint16_t port = free_port();
  ASSERT_NE(port, 0);
  ASSERT_TRUE(wildcard->bind(SocketAddress::ipv4_any(port)).is_ok());
  ASSERT_TRUE(wildcard->listen(1).is_ok());
  asker_ = take(provider_->create_datagram_endpoint());
  auto asking = asker_->lookup(SocketAddress::ipv4_loopback(port), {}, kBound);
  auto request = take(wildcard->get_request().wait(kBound));
  ASSERT_NE(request, nullptr);
  ASSERT_OK(request->accept(server_.qp, {}).wait(kBound));
  const DatagramPeer peer = take(asking.wait(kBound));
  EXPECT_EQ(peer.address.destination_gid.raw[12], 127);
  EXPECT_EQ(peer.address.destination_gid.raw[15], 1);
  handle_ = take(pd_->create_address_handle(peer.address));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1));
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 5, 1));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
}

// A listen on a specific address wins over a wildcard listen on the same port.
TEST_F(DatagramTest, SpecificListenWinsOverWildcard) {
  auto wildcard = take(provider_->create_datagram_endpoint());
  ASSERT_TRUE(wildcard->bind(SocketAddress::ipv4_any(port_)).is_ok());
  ASSERT_TRUE(wildcard->listen(1).is_ok());
  auto wildcard_request = wildcard->get_request();
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));  // through listener_, bound to 127.0.0.1
  EXPECT_FALSE(wildcard_request.wait(kQuiet).is_ok()) << "the wildcard listen got the lookup";
  wildcard_request.cancel();
}

TEST_F(DatagramTest, LookupAndTrafficOverIpv6) {
  auto listener6 = take(provider_->create_datagram_endpoint());
  uint16_t port = 0;
  Status bound(Errc::kBusy, "no free port");
  for (int attempt = 0; attempt < 5 && bound.code() == Errc::kBusy; ++attempt) {
    port = free_port();
    bound = listener6->bind(take(SocketAddress::parse("[::1]:" + std::to_string(port))));
  }
  if (!bound.is_ok()) GTEST_SKIP() << "no IPv6 loopback here: " << bound.to_string();
  ASSERT_TRUE(listener6->listen(1).is_ok());
  asker_ = take(provider_->create_datagram_endpoint());
  auto asking = asker_->lookup(take(SocketAddress::parse("[::1]:" + std::to_string(port))),
                               to_bytes("v6"), kBound);
  auto request = take(listener6->get_request().wait(kBound));
  ASSERT_NE(request, nullptr);
  ASSERT_OK(request->accept(server_.qp, {}).wait(kBound));
  const DatagramPeer peer = take(asking.wait(kBound));
  Gid loopback6;
  loopback6.raw[15] = 1;
  EXPECT_EQ(peer.address.destination_gid, loopback6) << to_string(peer.address.destination_gid);
  handle_ = take(pd_->create_address_handle(peer.address));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1));
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 6, 1));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.source_qp_number, client_.qp->number());
  EXPECT_TRUE(has_pattern(server_buffer_.at(kSlot), 64, 6));
}

// ---- Send and receive ----

TEST_F(DatagramTest, SendAndReceiveCompletionFields) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1));
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 41, 10, 100));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 1u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.opcode, Opcode::kReceive);
  EXPECT_EQ(r.length, 100u) << "the payload only: no GRH in front";
  EXPECT_EQ(r.qp_context, &server_tag_);
  EXPECT_EQ(r.qp_number, server_.qp->number());
  EXPECT_EQ(r.source_qp_number, client_.qp->number());
  EXPECT_FALSE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_TRUE(has_pattern(server_buffer_.at(kSlot), 100, 41));
}

TEST_F(DatagramTest, InlineSendNeedsNoRegistration) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1));
  std::byte unregistered[48];
  fill_pattern(unregistered, sizeof(unregistered), 21);
  const Sge sge{nullptr, unregistered, sizeof(unregistered)};
  ASSERT_OK(client_.qp->send(3, std::span(&sge, 1), *handle_, peer.qp_number, peer.qkey,
                             SendFlags::kInline));
  std::memset(unregistered, 0, sizeof(unregistered));  // copied at post: may be reused at once
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.length, sizeof(unregistered));
  EXPECT_TRUE(has_pattern(server_buffer_.at(kSlot), sizeof(unregistered), 21));
}

TEST_F(DatagramTest, GatherAndScatterAcrossSges) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  // Receive into two 40-byte pieces far apart; send from three pieces.
  const Sge receive[2] = {server_buffer_.sge(0, 40), server_buffer_.sge(kSlot, 40)};
  ASSERT_OK(server_.qp->post_receive(5, receive));
  std::vector<std::byte> expected(80);
  fill_pattern(expected.data(), expected.size(), 7);
  std::memcpy(client_buffer_.at(0), expected.data(), 30);
  std::memcpy(client_buffer_.at(1000), expected.data() + 30, 30);
  std::memcpy(client_buffer_.at(3000), expected.data() + 60, 20);
  const Sge gather[3] = {client_buffer_.sge(0, 30), client_buffer_.sge(1000, 30),
                         client_buffer_.sge(3000, 20)};
  ASSERT_OK(client_.qp->send(6, gather, *handle_, peer.qp_number, peer.qkey, SendFlags::kNone));
  Completion c;
  ASSERT_TRUE(poll_one(*client_.send_cq, c));
  ASSERT_TRUE(poll_one(*server_.receive_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
  EXPECT_EQ(c.length, 80u);
  EXPECT_EQ(std::memcmp(server_buffer_.at(0), expected.data(), 40), 0);
  EXPECT_EQ(std::memcmp(server_buffer_.at(kSlot), expected.data() + 40, 40), 0);
}

TEST_F(DatagramTest, ImmediateDataArrives) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 2));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 3));
  const Sge sge = client_buffer_.sge(0, 16);
  ASSERT_OK(client_.qp->send_with_immediate(11, std::span(&sge, 1), *handle_, peer.qp_number,
                                            peer.qkey, 0x01020304, SendFlags::kNone));
  // Immediate data alone, no payload.
  ASSERT_OK(client_.qp->send_with_immediate(12, {}, *handle_, peer.qp_number, peer.qkey, 0xfedcba98,
                                            SendFlags::kNone));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 2u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_TRUE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_EQ(r.immediate, 0x01020304u);
  EXPECT_EQ(r.length, 16u);
  EXPECT_EQ(r.source_qp_number, client_.qp->number());
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 3u);
  EXPECT_TRUE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_EQ(r.immediate, 0xfedcba98u);
  EXPECT_EQ(r.length, 0u);
  Completion s;
  ASSERT_TRUE(poll_one(*client_.send_cq, s));
  EXPECT_EQ(s.wr_id, 11u);
  ASSERT_TRUE(poll_one(*client_.send_cq, s));
  EXPECT_EQ(s.wr_id, 12u);
}

TEST_F(DatagramTest, QkeyMismatchIsDroppedSilently) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1));
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey + 1, 50, 20));
  // Controlled Q_Key (high bit): the client QP's own key, which is not the server's.
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, 0x80000000u, 51, 21));
  EXPECT_TRUE(stays_empty(*server_.receive_cq)) << "datagrams with a wrong Q_Key are dropped";
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 52, 22));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 1u) << "the receive waited for the datagram with the right key";
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_TRUE(has_pattern(server_buffer_.at(kSlot), 64, 52));
}

TEST_F(DatagramTest, ControlledQkeyUsesTheSendersOwnKey) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  Side same_key;
  int tag = 0;
  ASSERT_NO_FATAL_FAILURE(make_side(kServerQkey, &tag, same_key));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 4));
  const Sge sge = client_buffer_.sge(0, 8);
  ASSERT_OK(same_key.qp->send(1, std::span(&sge, 1), *handle_, peer.qp_number, 0x80000000u,
                              SendFlags::kNone));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 4u);
  EXPECT_EQ(r.source_qp_number, same_key.qp->number());
}

TEST_F(DatagramTest, SendLongerThanMtuIsRefusedAtPost) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  const uint32_t mtu = take(device_->query_port(1)).active_mtu;
  ASSERT_EQ(mtu, 4096u);
  const Sge too_long = client_buffer_.sge(0, mtu + 1);
  const Status refused = client_.qp->send(1, std::span(&too_long, 1), *handle_, peer.qp_number,
                                          peer.qkey, SendFlags::kNone);
  EXPECT_EQ(refused.code(), Errc::kInvalidArgument) << refused.to_string();
  EXPECT_TRUE(stays_empty(*client_.send_cq, 50ms)) << "a refused post completes nothing";
  // Exactly the MTU goes through.
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1, mtu));
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 9, 2, mtu));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.length, mtu);
  EXPECT_TRUE(has_pattern(server_buffer_.at(kSlot), mtu, 9));
}

TEST_F(DatagramTest, ReceiveTooSmallCompletesWithLengthErrorAndQpStaysUsable) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1, 16));
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 2));
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 3, 1, 64));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 1u);
  EXPECT_EQ(r.status, CompletionStatus::kLocalLengthError) << describe(r);
  EXPECT_EQ(server_.qp->query().state, QpState::kReadyToSend) << "UD has no connection to lose";
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 4, 2, 64));
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 2u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_TRUE(has_pattern(server_buffer_.at(2 * kSlot), 64, 4));
}

TEST_F(DatagramTest, ModifyToErrorFlushesAndResetBringsItBack) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  for (uint64_t wr_id = 1; wr_id <= 3; ++wr_id)
    ASSERT_NO_FATAL_FAILURE(post_receive(server_, wr_id));
  ASSERT_TRUE(server_.qp->modify(QpState::kError).is_ok());
  EXPECT_EQ(server_.qp->query().state, QpState::kError);
  for (uint64_t wr_id = 1; wr_id <= 3; ++wr_id) {
    Completion r;
    ASSERT_TRUE(poll_one(*server_.receive_cq, r));
    EXPECT_EQ(r.wr_id, wr_id);
    EXPECT_EQ(r.status, CompletionStatus::kFlushed) << describe(r);
    EXPECT_EQ(r.qp_context, &server_tag_);
  }
  // Posted in error: both queues complete at once with kFlushed.
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 4));
  Completion c;
  ASSERT_TRUE(poll_one(*server_.receive_cq, c));
  EXPECT_EQ(c.status, CompletionStatus::kFlushed);
  ASSERT_TRUE(client_.qp->modify(QpState::kError).is_ok());
  const Sge sge = client_buffer_.sge(0, 8);
  ASSERT_OK(client_.qp->send(9, std::span(&sge, 1), *handle_, peer.qp_number, peer.qkey,
                             SendFlags::kNone));
  ASSERT_TRUE(poll_one(*client_.send_cq, c));
  EXPECT_EQ(c.wr_id, 9u);
  EXPECT_EQ(c.status, CompletionStatus::kFlushed) << describe(c);

  // A datagram QP is walked back up by the application.
  for (auto* side : {&server_, &client_}) {
    EXPECT_EQ(side->qp->modify(QpState::kReadyToSend).code(), Errc::kInvalidState);
    ASSERT_TRUE(side->qp->modify(QpState::kReset).is_ok());
    ASSERT_TRUE(side->qp->modify(QpState::kInit).is_ok());
    ASSERT_TRUE(side->qp->modify(QpState::kReadyToReceive).is_ok());
    ASSERT_TRUE(side->qp->modify(QpState::kReadyToSend).is_ok());
  }
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 5));
  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 77, 10));
  ASSERT_TRUE(poll_one(*server_.receive_cq, c));
  EXPECT_EQ(c.wr_id, 5u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess) << describe(c);
}

TEST_F(DatagramTest, SharedReceiveQueueReportsTheQp) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  auto srq = take(pd_->create_shared_receive_queue(8, 1, 0));
  ASSERT_NE(srq, nullptr);
  Side shared;
  int tag = 0;
  ASSERT_NO_FATAL_FAILURE(make_side(kServerQkey, &tag, shared, srq));
  const Sge sge = server_buffer_.sge(0, 256);
  ASSERT_TRUE(srq->post_receive(70, std::span(&sge, 1)).is_ok());
  ASSERT_NO_FATAL_FAILURE(send(shared.qp->number(), kServerQkey, 12, 1));
  Completion r;
  ASSERT_TRUE(poll_one(*shared.receive_cq, r));
  EXPECT_EQ(r.wr_id, 70u);
  EXPECT_EQ(r.qp_context, &tag);
  EXPECT_EQ(r.qp_number, shared.qp->number());
  EXPECT_TRUE(has_pattern(server_buffer_.at(0), 64, 12));
}

// ---- Multicast ----

TEST_F(DatagramTest, MulticastAttachAndDetach) {
  const uint16_t group_port = free_port();
  ASSERT_NE(group_port, 0);
  // A group of its own per process, so that parallel test runs do not hear each other.
  const std::string group_text = "239.255." + std::to_string((::getpid() >> 8) & 0xff) + "." +
                                 std::to_string((::getpid() & 0xff) | 1) + ":" +
                                 std::to_string(group_port);
  const SocketAddress group = take(SocketAddress::parse(group_text));
  if (!has(device_->attributes().capabilities, Capability::kMulticast)) {
    const auto refused = listener_->join_multicast(server_.qp, group).wait(kBound);
    ASSERT_FALSE(refused.is_ok()) << "no kMulticast, yet the join worked";
    GTEST_SKIP() << "device lacks Capability::kMulticast: " << refused.status().message();
  }
  Side second;
  int tag = 0;
  ASSERT_NO_FATAL_FAILURE(make_side(kServerQkey, &tag, second));
  const DatagramPeer joined = take(listener_->join_multicast(server_.qp, group).wait(kBound));
  EXPECT_EQ(joined.qp_number, kMulticastQpNumber);
  EXPECT_EQ(joined.qkey, kServerQkey);
  EXPECT_TRUE(joined.address.destination_gid.is_multicast())
      << to_string(joined.address.destination_gid);
  EXPECT_EQ(joined.address.destination_port, group_port);
  ASSERT_TRUE(second.qp->attach_multicast(joined.address.destination_gid, 0).is_ok());
  auto to_group = take(pd_->create_address_handle(joined.address));
  ASSERT_NE(to_group, nullptr);

  // Both attached QPs get a copy.
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 1));
  ASSERT_NO_FATAL_FAILURE(post_receive(second, 2));
  ASSERT_NO_FATAL_FAILURE(send(joined.qp_number, joined.qkey, 60, 30, 64, to_group.get()));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 1u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.source_qp_number, client_.qp->number());
  ASSERT_TRUE(poll_one(*second.receive_cq, r));
  EXPECT_EQ(r.wr_id, 2u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);

  // Detached: the second QP hears nothing more; the first still does.
  ASSERT_TRUE(second.qp->detach_multicast(joined.address.destination_gid, 0).is_ok());
  EXPECT_EQ(second.qp->detach_multicast(joined.address.destination_gid, 0).code(), Errc::kNotFound);
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 3));
  ASSERT_NO_FATAL_FAILURE(post_receive(second, 4));
  ASSERT_NO_FATAL_FAILURE(send(joined.qp_number, joined.qkey, 61, 31, 64, to_group.get()));
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 3u);
  EXPECT_TRUE(has_pattern(server_buffer_.at(3 * kSlot), 64, 61));
  EXPECT_TRUE(stays_empty(*second.receive_cq)) << "a detached QP gets nothing for the group";

  // Left: nobody on this host is in the group any more.
  ASSERT_TRUE(listener_->leave_multicast(group).is_ok());
  EXPECT_EQ(listener_->leave_multicast(group).code(), Errc::kNotFound);
  ASSERT_NO_FATAL_FAILURE(post_receive(server_, 5));
  ASSERT_NO_FATAL_FAILURE(send(joined.qp_number, joined.qkey, 62, 32, 64, to_group.get()));
  EXPECT_TRUE(stays_empty(*server_.receive_cq)) << "after leaving, the group is silent";
}

TEST_F(DatagramTest, AttachRefusesANonMulticastGid) {
  Gid unicast;
  unicast.raw[10] = 0xff;
  unicast.raw[11] = 0xff;
  unicast.raw[12] = 10;
  EXPECT_EQ(server_.qp->attach_multicast(unicast, 0).code(), Errc::kInvalidArgument);
}

// ---- Robustness ----

// Writes a datagram header as udp_wire.h documents it (network byte order).
std::vector<std::byte> datagram(uint16_t magic, uint8_t version, uint8_t flags, uint32_t source,
                                uint32_t destination, uint32_t qkey, uint32_t immediate,
                                std::string_view payload) {
  std::vector<std::byte> bytes(20 + payload.size());
  const uint16_t magic_be = htons(magic);
  const uint32_t fields[4] = {htonl(source), htonl(destination), htonl(qkey), htonl(immediate)};
  std::memcpy(bytes.data(), &magic_be, 2);
  bytes[2] = static_cast<std::byte>(version);
  bytes[3] = static_cast<std::byte>(flags);
  std::memcpy(bytes.data() + 4, fields, sizeof(fields));
  std::memcpy(bytes.data() + 20, payload.data(), payload.size());
  return bytes;
}

TEST_F(DatagramTest, MalformedDatagramsAreDroppedAndValidTrafficContinues) {
  DatagramPeer peer;
  ASSERT_NO_FATAL_FAILURE(lookup(peer));
  const int raw = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(raw, 0);
  sockaddr_in device{};
  device.sin_family = AF_INET;
  device.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  device.sin_port = htons(peer.address.destination_port);
  const auto send_raw = [&](const std::vector<std::byte>& bytes) {
    return ::sendto(raw, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&device),
                    sizeof(device)) == static_cast<ssize_t>(bytes.size());
  };
  const uint32_t qpn = peer.qp_number;
  for (uint64_t wr_id = 1; wr_id <= 4; ++wr_id)
    ASSERT_NO_FATAL_FAILURE(post_receive(server_, wr_id));

  // A hand-made datagram in the documented format arrives: the garbage below differs from it
  // in one field each, so it is that field that gets it dropped.
  ASSERT_TRUE(send_raw(datagram(0x5756, 1, 1, 0x123456, qpn, kServerQkey, 0xdeadbeef, "raw!")));
  Completion r;
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 1u);
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_EQ(r.length, 4u);
  EXPECT_EQ(r.source_qp_number, 0x123456u);
  EXPECT_TRUE(has(r.flags, CompletionFlags::kWithImmediate));
  EXPECT_EQ(r.immediate, 0xdeadbeefu);
  EXPECT_EQ(std::memcmp(server_buffer_.at(kSlot), "raw!", 4), 0);

  std::vector<std::vector<std::byte>> garbage = {
      {},                                           // empty
      {std::byte{0x57}},                            // one byte
      std::vector<std::byte>(19, std::byte{0x57}),  // short header
      datagram(0x5757, 1, 0, 1, qpn, kServerQkey, 0, "bad magic"),
      datagram(0x5756, 2, 0, 1, qpn, kServerQkey, 0, "bad version"),
      datagram(0x5756, 1, 0x80, 1, qpn, kServerQkey, 0, "unknown flag"),
      datagram(0x5756, 1, 0, 0x1000000, qpn, kServerQkey, 0, "25-bit source QPN"),
      datagram(0x5756, 1, 0, 1, qpn ^ 0x5a5a5a, kServerQkey, 0, "unknown destination"),
      datagram(0x5756, 1, 0, 1, 0xffffff, kServerQkey, 0, "multicast QPN, unicast address"),
      datagram(0x5756, 1, 0, 1, qpn, kServerQkey, 0, std::string(4097, 'x')),  // over the MTU
  };
  uint32_t seed = 12345;
  for (int i = 0; i < 200; ++i) {  // random lengths and bytes
    std::vector<std::byte> noise(seed % 5000);
    for (auto& b : noise) {
      seed = seed * 1103515245 + 12345;
      b = static_cast<std::byte>(seed >> 16);
    }
    garbage.push_back(std::move(noise));
  }
  for (const auto& bytes : garbage) EXPECT_TRUE(send_raw(bytes));
  ::close(raw);
  EXPECT_TRUE(stays_empty(*server_.receive_cq)) << "malformed datagrams never reach a QP";

  ASSERT_NO_FATAL_FAILURE(send(peer.qp_number, peer.qkey, 99, 50));
  ASSERT_TRUE(poll_one(*server_.receive_cq, r));
  EXPECT_EQ(r.wr_id, 2u) << "the receives the garbage could have taken are still there";
  EXPECT_EQ(r.status, CompletionStatus::kSuccess) << describe(r);
  EXPECT_TRUE(has_pattern(server_buffer_.at(2 * kSlot), 64, 99));
}

}  // namespace
}  // namespace wv::verbs
