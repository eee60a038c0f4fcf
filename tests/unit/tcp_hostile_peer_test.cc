// A hostile or broken peer on the tcp provider's wire: a raw socket that speaks (or pretends to
// speak) MPA to a listening endpoint. Whatever it sends, the provider must drop that connection
// with a clear error, move the QP to error, answer with a Terminate where iWARP says so, and
// keep serving everyone else. Never a crash or a hang.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "crc32c.h"
#include "ddp_rdmap.h"
#include "mpa.h"
#include "stream_parser.h"
#include "wv/verbs.h"

namespace wv::verbs::tcp {
namespace {

using namespace std::chrono_literals;

constexpr auto kBound = 10s;

// A blocking client socket with a receive timeout, so no read in this test can hang.
class RawPeer {
 public:
  explicit RawPeer(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~RawPeer() { ::close(fd_); }
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;

  bool connected() const { return connected_; }
  bool send(std::span<const std::byte> bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // Everything the provider sends until it closes the stream (or the timeout).
  std::vector<std::byte> read_until_closed() {
    std::vector<std::byte> all;
    std::byte chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return all;
      all.insert(all.end(), chunk, chunk + n);
    }
  }
  // What has arrived, up to `capacity` bytes; 0 once the stream ended or the timeout passed.
  size_t read_some(std::byte* out, size_t capacity) {
    const ssize_t n = ::recv(fd_, out, capacity, 0);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  bool read_exactly(std::byte* out, size_t length) {
    while (length > 0) {
      const ssize_t n = ::recv(fd_, out, length, 0);
      if (n <= 0) return false;
      out += n;
      length -= static_cast<size_t>(n);
    }
    return true;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class HostilePeerTest : public testing::Test {
 protected:
  void SetUp() override {
    auto provider = Provider::open("tcp");
    ASSERT_TRUE(provider.is_ok()) << provider.status().to_string();
    provider_ = provider.value();
    auto device = provider_->open_device("");
    ASSERT_TRUE(device.is_ok()) << device.status().to_string();
    device_ = device.value();
    auto pd = device_->allocate_protection_domain();
    auto cq = device_->create_completion_queue(64);
    ASSERT_TRUE(pd.is_ok() && cq.is_ok());
    pd_ = pd.value();
    cq_ = cq.value();
    auto listener = provider_->create_connect_endpoint();
    ASSERT_TRUE(listener.is_ok());
    listener_ = listener.value();
    ASSERT_TRUE(listener_->bind(SocketAddress::ipv4_loopback(0)).is_ok());
    ASSERT_TRUE(listener_->listen(8).is_ok());
    port_ = listener_->query().local.port();
  }

  std::shared_ptr<ConnectQueuePair> make_qp() {
    QueuePairOptions options;
    options.send_cq = cq_;
    options.receive_cq = cq_;
    auto qp = pd_->create_connect_queue_pair(options);
    EXPECT_TRUE(qp.is_ok());
    return qp.is_ok() ? qp.value() : nullptr;
  }

  // The raw peer's MPA request, the provider's accept, and the reply read back.
  void handshake(RawPeer& peer, std::shared_ptr<ConnectQueuePair> qp, bool crc = false) {
    MpaSettings settings;
    settings.crc = crc ? CrcPolicy::kRequire : CrcPolicy::kOff;
    settings.peer_to_peer = false;  // RFC 5044 rules: the initiator (we) sends first
    auto request = make_mpa_request(settings, {});
    ASSERT_TRUE(request.is_ok());
    std::vector<std::byte> bytes;
    ASSERT_TRUE(encode_mpa_frame(request.value(), bytes).is_ok());
    ASSERT_TRUE(peer.send(bytes));
    auto incoming = listener_->get_request().wait(kBound);
    ASSERT_TRUE(incoming.is_ok()) << incoming.status().to_string();
    ASSERT_TRUE(incoming.value()->accept(std::move(qp), {}).wait(kBound).is_ok());
    std::byte header[kMpaFrameHeaderBytes];
    ASSERT_TRUE(peer.read_exactly(header, sizeof(header)));
    auto decoded =
        decode_mpa_header(std::span<const std::byte, kMpaFrameHeaderBytes>(header), true);
    ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    std::vector<std::byte> private_data(decoded.value().private_data_length);
    ASSERT_TRUE(peer.read_exactly(private_data.data(), private_data.size()));
    // MPA: CRC is used when either side asks for it, so the reply must agree.
    ASSERT_EQ(decoded.value().crc, crc);
    accepted_ = incoming.value();
  }

  bool wait_error(const ConnectQueuePair& qp) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (std::chrono::steady_clock::now() < deadline) {
      if (qp.query().state == QpState::kError) return true;
      Completion c;
      (void)cq_->poll({&c, 1});  // lets the provider progress from this thread too
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  // The QP-fatal event's explanation, which must say what was wrong.
  std::string fatal_event_detail() {
    auto event = device_->next_event().wait(kBound);
    if (!event.is_ok()) return "no event: " + event.status().to_string();
    EXPECT_EQ(event.value().type, EventType::kQpFatal);
    return event.value().detail;
  }

  // The single Terminate the provider answered with, decoded.
  static Result<TerminateBody> terminate_in(std::span<const std::byte> stream) {
    StreamParser parser(false);
    std::vector<StreamParser::OwnedSegment> segments;
    (void)parser.feed(stream, segments);
    for (const auto& segment : segments) {
      if (segment.header.opcode == RdmapOpcode::kTerminate) {
        return decode_terminate(segment.payload);
      }
    }
    return Status(Errc::kNotFound, "no Terminate among " + std::to_string(segments.size()) +
                                       " segments of " + std::to_string(stream.size()) + " bytes");
  }

  std::shared_ptr<Provider> provider_;
  std::shared_ptr<Device> device_;
  std::shared_ptr<ProtectionDomain> pd_;
  std::shared_ptr<CompletionQueue> cq_;
  std::shared_ptr<ConnectEndpoint> listener_;
  std::shared_ptr<ConnectEndpoint> accepted_;
  uint16_t port_ = 0;
};

TEST_F(HostilePeerTest, GarbageInsteadOfMpaRequestIsDroppedAndTheListenerServesOthers) {
  {
    RawPeer peer(port_);
    ASSERT_TRUE(peer.connected());
    std::vector<std::byte> garbage(64, std::byte{0x5a});
    ASSERT_TRUE(peer.send(garbage));
    EXPECT_TRUE(peer.read_until_closed().empty()) << "a bad MPA key gets no reply, only a close";
  }
  // The listener is unharmed: a well-formed peer still gets through.
  RawPeer good(port_);
  ASSERT_TRUE(good.connected());
  ASSERT_NO_FATAL_FAILURE(handshake(good, make_qp()));
}

TEST_F(HostilePeerTest, GarbageFpdusFailTheQpWithAClearError) {
  auto qp = make_qp();
  RawPeer peer(port_);
  ASSERT_TRUE(peer.connected());
  ASSERT_NO_FATAL_FAILURE(handshake(peer, qp));
  // DDP version 3 and a reserved RDMAP opcode: nothing valid.
  std::vector<std::byte> garbage{std::byte{0x00}, std::byte{0x10}, std::byte{0x43},
                                 std::byte{0x4f}};
  garbage.resize(64, std::byte{0xee});
  ASSERT_TRUE(peer.send(garbage));
  EXPECT_TRUE(wait_error(*qp));
  const std::string detail = fatal_event_detail();
  EXPECT_NE(detail.find("version"), std::string::npos) << detail;
  const auto reply = peer.read_until_closed();
  auto terminate = terminate_in(reply);
  ASSERT_TRUE(terminate.is_ok()) << terminate.status().to_string();
  EXPECT_EQ(terminate_layer(terminate.value().code), static_cast<uint8_t>(TerminateLayer::kDdp))
      << describe(terminate.value().code);
}

TEST_F(HostilePeerTest, WriteWithAnUnknownStagIsTerminatedAndNothingIsWritten) {
  auto qp = make_qp();
  RawPeer peer(port_);
  ASSERT_TRUE(peer.connected());
  ASSERT_NO_FATAL_FAILURE(handshake(peer, qp));
  std::vector<std::byte> victim(4096, std::byte{0});
  auto region = pd_->register_memory(victim.data(), victim.size(),
                                     Access::kLocalWrite | Access::kRemoteWrite);
  ASSERT_TRUE(region.is_ok());
  // A guessed key: the real one plus one. Keys are random, so guessing must not work.
  const uint32_t guess = region.value()->remote_key() + 1;
  std::vector<std::byte> fpdu(kMaxFpduHeaderBytes + 64 + kMaxTrailerBytes);
  const size_t header = encode_tagged_header(fpdu, RdmapOpcode::kWrite, true, guess,
                                             reinterpret_cast<uint64_t>(victim.data()), 64);
  ASSERT_GT(header, 0u);
  std::memset(fpdu.data() + header, 0xab, 64);
  const FpduTrailer trailer = fpdu_trailer(static_cast<uint16_t>(header - 2 + 64), false, 0);
  std::memcpy(fpdu.data() + header + 64, trailer.bytes.data(), trailer.size);
  fpdu.resize(header + 64 + trailer.size);
  ASSERT_TRUE(peer.send(fpdu));
  EXPECT_TRUE(wait_error(*qp));
  const std::string detail = fatal_event_detail();
  EXPECT_NE(detail.find("no such key"), std::string::npos) << detail;
  auto terminate = terminate_in(peer.read_until_closed());
  ASSERT_TRUE(terminate.is_ok()) << terminate.status().to_string();
  EXPECT_EQ(terminate.value().code, TerminateCode::kDdpTaggedInvalidStag)
      << describe(terminate.value().code);
  for (std::byte b : victim) ASSERT_EQ(b, std::byte{0}) << "memory was written with a bad key";
}

// One untagged Send FPDU of `payload` bytes of 0x42, MSN 1, with the CRC computed (or spoiled).
std::vector<std::byte> send_fpdu(size_t payload, bool crc, bool spoil) {
  std::vector<std::byte> fpdu(kMaxFpduHeaderBytes + payload + kMaxTrailerBytes);
  const size_t header = encode_untagged_header(fpdu, RdmapOpcode::kSend, true, kQueueSend, 1, 0, 0,
                                               static_cast<uint16_t>(payload));
  std::memset(fpdu.data() + header, 0x42, payload);
  const auto ulpdu = static_cast<uint16_t>(header - kMpaLengthBytes + payload);
  const uint32_t sum = crc ? crc32c({fpdu.data(), header + payload}) : 0;
  const FpduTrailer trailer = fpdu_trailer(ulpdu, crc, sum);
  std::memcpy(fpdu.data() + header + payload, trailer.bytes.data(), trailer.size);
  fpdu.resize(header + payload + trailer.size);
  if (spoil) fpdu[header] ^= std::byte{0x01};  // one payload bit flipped after the CRC
  return fpdu;
}

TEST_F(HostilePeerTest, NegotiatedCrcIsCheckedOnEveryFpdu) {
  auto qp = make_qp();
  std::vector<std::byte> sink(256);
  auto region = pd_->register_memory(sink.data(), sink.size(), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok());
  const Sge receive = region.value()->sge(sink.data(), static_cast<uint32_t>(sink.size()));
  ASSERT_TRUE(qp->post_receive(1, {&receive, 1}).is_ok());
  ASSERT_TRUE(qp->post_receive(2, {&receive, 1}).is_ok());
  RawPeer peer(port_);
  ASSERT_TRUE(peer.connected());
  ASSERT_NO_FATAL_FAILURE(handshake(peer, qp, /*crc=*/true));
  // A correct CRC delivers the message (101 bytes: the CRC covers 3 bytes of pad too)...
  ASSERT_TRUE(peer.send(send_fpdu(101, true, false)));
  Completion c;
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  int got = 0;
  while (got == 0 && std::chrono::steady_clock::now() < deadline) got = cq_->poll({&c, 1});
  ASSERT_EQ(got, 1);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess);
  EXPECT_EQ(c.length, 101u);
  EXPECT_EQ(sink[100], std::byte{0x42});
  // ...a flipped bit does not: the QP fails and the peer is told why.
  auto spoiled = send_fpdu(100, true, true);
  spoiled[kMpaLengthBytes + 6 + 4 + 3] = std::byte{2};  // MSN 2: in sequence, only the CRC is bad
  ASSERT_TRUE(peer.send(spoiled));
  EXPECT_TRUE(wait_error(*qp));
  const std::string detail = fatal_event_detail();
  EXPECT_NE(detail.find("CRC"), std::string::npos) << detail;
  auto terminate = terminate_in(peer.read_until_closed());
  ASSERT_TRUE(terminate.is_ok()) << terminate.status().to_string();
  EXPECT_EQ(terminate.value().code, TerminateCode::kMpaCrcError)
      << describe(terminate.value().code);
}

// The other direction: what the provider itself puts on the wire for messages larger than one
// segment, which it writes as runs of FPDUs per system call. Every FPDU must stand alone: its own
// header, offsets that continue the previous one, the L flag only on the last, and a CRC of its
// own bytes (the parser checks it).
TEST_F(HostilePeerTest, LargeMessagesLeaveAsWellFormedFpdusWithCrc) {
  auto qp = make_qp();
  constexpr size_t kSendBytes = 200'000;  // 4 segments, the last one short
  constexpr size_t kWriteBytes = 150'001;
  constexpr uint32_t kRkey = 0x1234;
  constexpr uint64_t kRemote = 0x10000;
  std::vector<std::byte> source(kSendBytes + kWriteBytes);
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<std::byte>(i * 7 + i / 251);
  std::vector<std::byte> sink(16);
  auto region = pd_->register_memory(source.data(), source.size(), Access::kLocalWrite);
  auto sink_region = pd_->register_memory(sink.data(), sink.size(), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok() && sink_region.is_ok());
  const Sge receive = sink_region.value()->sge(sink.data(), static_cast<uint32_t>(sink.size()));
  ASSERT_TRUE(qp->post_receive(1, {&receive, 1}).is_ok());
  RawPeer peer(port_);
  ASSERT_TRUE(peer.connected());
  ASSERT_NO_FATAL_FAILURE(handshake(peer, qp, /*crc=*/true));
  // The responder sends nothing before the initiator's first FPDU.
  ASSERT_TRUE(peer.send(send_fpdu(1, true, false)));
  const Sge send = region.value()->sge(source.data(), kSendBytes);
  const Sge write = region.value()->sge(source.data() + kSendBytes, kWriteBytes);
  ASSERT_TRUE(qp->send(2, {&send, 1}, SendFlags::kNone).is_ok());
  ASSERT_TRUE(
      qp->rdma_write(3, {&write, 1}, RemoteAddress{kRemote, kRkey}, SendFlags::kNone).is_ok());

  StreamParser parser(/*crc_enabled=*/true);
  std::vector<StreamParser::OwnedSegment> segments;
  std::vector<std::byte> sent;     // the Send's payload as the peer reassembles it
  std::vector<std::byte> written;  // the Write's
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  bool send_done = false;
  bool write_done = false;
  while (!(send_done && write_done) && std::chrono::steady_clock::now() < deadline) {
    std::vector<std::byte> chunk(65536);
    const size_t n = peer.read_some(chunk.data(), chunk.size());
    ASSERT_GT(n, 0u) << "the provider stopped sending";
    ASSERT_TRUE(parser.feed({chunk.data(), n}, segments).is_ok()) << parser.status().to_string();
    for (const auto& segment : segments) {
      const SegmentHeader& h = segment.header;
      ASSERT_LE(segment.payload.size(), kMaxUntaggedPayload);
      if (h.opcode == RdmapOpcode::kSend) {
        ASSERT_FALSE(send_done);
        EXPECT_EQ(h.msn, 1u);
        EXPECT_EQ(h.message_offset, sent.size()) << "segments out of order or lost";
        sent.insert(sent.end(), segment.payload.begin(), segment.payload.end());
        send_done = h.last;
        EXPECT_EQ(h.last, sent.size() == kSendBytes);
      } else {
        ASSERT_EQ(h.opcode, RdmapOpcode::kWrite);
        ASSERT_TRUE(send_done) << "the Write overtook the Send";
        EXPECT_EQ(h.stag, kRkey);
        EXPECT_EQ(h.tagged_offset, kRemote + written.size());
        written.insert(written.end(), segment.payload.begin(), segment.payload.end());
        write_done = h.last;
        EXPECT_EQ(h.last, written.size() == kWriteBytes);
      }
    }
    segments.clear();
  }
  ASSERT_TRUE(send_done && write_done) << "sent " << sent.size() << " written " << written.size();
  EXPECT_TRUE(std::equal(sent.begin(), sent.end(), source.begin()));
  EXPECT_TRUE(std::equal(written.begin(), written.end(), source.begin() + kSendBytes));
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST_F(HostilePeerTest, TruncatedStreamEndsTheQpWithoutHanging) {
  auto qp = make_qp();
  {
    RawPeer peer(port_);
    ASSERT_TRUE(peer.connected());
    ASSERT_NO_FATAL_FAILURE(handshake(peer, qp));
    // Half of a Send header, then the peer vanishes.
    const std::byte half[] = {std::byte{0x00}, std::byte{0x30}, std::byte{0x41}};
    ASSERT_TRUE(peer.send(half));
  }
  EXPECT_TRUE(wait_error(*qp));
  const std::string detail = fatal_event_detail();
  EXPECT_NE(detail.find("closed"), std::string::npos) << detail;
}

}  // namespace
}  // namespace wv::verbs::tcp
