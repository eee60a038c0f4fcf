#include "shm_datagram_wire.h"

#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "shm_protocol.h"

namespace wv::verbs::shm {
namespace {

// The channel handshake (SOCK_SEQPACKET, host byte order):
//   request  sender -> receiver, with SCM_RIGHTS [segment memfd, sender's writable eventfd]
//   accept   receiver -> sender, with SCM_RIGHTS [receiver's doorbell eventfd]
// The socket then lives as long as the channel; its hang-up ends the channel on both sides.
constexpr uint32_t kChannelMagic = 0x57534447;  // "WSDG"
constexpr uint16_t kChannelVersion = 1;
enum class ChannelMessage : uint16_t { kRequest = 1, kAccept = 2 };
struct ChannelHello {
  uint32_t magic = kChannelMagic;
  uint16_t version = kChannelVersion;
  ChannelMessage type = ChannelMessage::kRequest;
};

// A resolved address is the UDP wire's socket address (at most a sockaddr_in6, 28 bytes) and,
// for a destination on this host, a mark and the port whose ring to try first.
constexpr size_t kMarkOffset = 28;
constexpr std::byte kLocalMark{0x5d};
static_assert(sizeof(sockaddr_in6) <= kMarkOffset);
static_assert(kMarkOffset + 4 <= sizeof(soft::WireAddress::bytes));

std::string datagram_name(uint16_t port) {
  return std::string(kDatagramNames) + std::to_string(port);
}

void ring(int doorbell) {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(doorbell, &one, sizeof(one));
}

void drain_eventfd(int fd) {
  uint64_t value = 0;
  [[maybe_unused]] const ssize_t n = ::read(fd, &value, sizeof(value));
}

class WireHandler final : public soft::PollHandler {
 public:
  WireHandler(std::shared_ptr<ShmDatagramWire> wire, int fd) : wire_(std::move(wire)), fd_(fd) {}
  void on_events(uint32_t events) override { wire_->on_events(fd_, events); }

 private:
  std::shared_ptr<ShmDatagramWire> wire_;
  int fd_;
};

}  // namespace

ShmDatagramWire::Outbound::~Outbound() {
  if (peer_doorbell >= 0) ::close(peer_doorbell);
}

ShmDatagramWire::Inbound::~Inbound() {
  if (socket >= 0) ::close(socket);
  if (peer_doorbell >= 0) ::close(peer_doorbell);
}

ShmDatagramWire::ShmDatagramWire(std::shared_ptr<tcp::UdpWire> udp, std::vector<Gid> host_gids,
                                 uint32_t ring_bytes)
    : udp_(std::move(udp)), host_gids_(std::move(host_gids)), ring_bytes_(ring_bytes) {}

Result<std::shared_ptr<ShmDatagramWire>> ShmDatagramWire::open(std::shared_ptr<tcp::UdpWire> udp,
                                                               std::vector<Gid> host_gids,
                                                               uint32_t ring_bytes) {
  if (entry_bytes(udp->max_payload()) > ring_bytes / 4) {
    return Status(Errc::kInvalidArgument,
                  "a datagram ring of " + std::to_string(ring_bytes) + " bytes cannot hold " +
                      std::to_string(udp->max_payload()) + "-byte datagrams");
  }
  std::shared_ptr<ShmDatagramWire> wire(
      new ShmDatagramWire(std::move(udp), std::move(host_gids), ring_bytes));
  wire->doorbell_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  wire->writable_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wire->doorbell_fd_ < 0 || wire->writable_fd_ < 0) {
    return errno_status(Errc::kIoError, "eventfd for shm datagrams");
  }
  wire->listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (wire->listen_fd_ < 0) return errno_status(Errc::kIoError, "shm datagram socket");
  const std::string name = datagram_name(wire->udp_->port());
  sockaddr_storage address;
  const socklen_t length = unix_address(name, address);
  if (::bind(wire->listen_fd_, reinterpret_cast<const sockaddr*>(&address), length) != 0 ||
      ::listen(wire->listen_fd_, 64) != 0) {
    return errno_status(Errc::kBusy, "listening on the shm datagram name " + name);
  }
  wire->outbound_.reserve(64);
  wire->ring_waiters_.reserve(64);
  wire->resuming_.reserve(64);
  return wire;
}

ShmDatagramWire::~ShmDatagramWire() {
  for (int fd : {listen_fd_, doorbell_fd_, writable_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  for (const auto& [fd, port] : outbound_sockets_) ::close(fd);
}

Status ShmDatagramWire::start(soft::Progress& progress) {
  progress_ = &progress;
  for (int fd : {listen_fd_, doorbell_fd_, writable_fd_}) {
    if (Status status =
            progress.add(fd, EPOLLIN, std::make_shared<WireHandler>(shared_from_this(), fd));
        !status) {
      return status;
    }
  }
  return Status::ok();
}

ShmDatagramCounters ShmDatagramWire::counters() const {
  ShmDatagramCounters result;
  result.ring_sends = counters_.ring_sends.load(std::memory_order_relaxed);
  result.ring_received = counters_.ring_received.load(std::memory_order_relaxed);
  result.channels_opened = counters_.channels_opened.load(std::memory_order_relaxed);
  result.channels_accepted = counters_.channels_accepted.load(std::memory_order_relaxed);
  result.malformed = counters_.malformed.load(std::memory_order_relaxed);
  return result;
}

// ---- Sending ----

bool ShmDatagramWire::on_this_host(const Gid& gid) const {
  if (soft::is_ipv4_mapped(gid)) {
    if (gid.raw[12] == 127) return true;
  } else {
    Gid loopback;
    loopback.raw[15] = 1;
    if (gid == loopback) return true;
  }
  return std::find(host_gids_.begin(), host_gids_.end(), gid) != host_gids_.end();
}

Status ShmDatagramWire::resolve(const AddressVector& address, soft::WireAddress& out) const {
  if (Status status = udp_->resolve(address, out); !status) return status;
  out.bytes[kMarkOffset] = std::byte{0};
  const Gid& gid = address.destination_gid;
  if (progress_ == nullptr || soft::is_multicast_group(gid) || !on_this_host(gid)) {
    return Status::ok();
  }
  out.bytes[kMarkOffset] = kLocalMark;
  std::memcpy(&out.bytes[kMarkOffset + 2], &address.destination_port, sizeof(uint16_t));
  request_channel(address.destination_port);
  return Status::ok();
}

void ShmDatagramWire::request_channel(uint16_t port) const {
  {
    std::lock_guard lock(outbound_mutex_);
    auto [it, inserted] = outbound_.try_emplace(port);
    if (!inserted) {
      Outbound& channel = *it->second;
      if (channel.state != ChannelState::kClosed ||
          Clock::now() - channel.closed_at < kChannelRetry) {
        return;
      }
    }
    it->second = std::make_shared<Outbound>();
  }
  // Set up on the progress thread, never here: resolve() runs under the posting QP's lock,
  // which the progress thread may need before it can answer (a device sending to itself).
  auto self = std::const_pointer_cast<ShmDatagramWire>(shared_from_this());
  progress_->post([self, port] { self->connect_channel(port); });
}

std::shared_ptr<ShmDatagramWire::Outbound> ShmDatagramWire::ready_channel(uint16_t port) {
  std::lock_guard lock(outbound_mutex_);
  auto it = outbound_.find(port);
  if (it == outbound_.end() || it->second->state != ChannelState::kReady) return nullptr;
  return it->second;
}

soft::SendResult ShmDatagramWire::send(const soft::WireAddress& to,
                                       const soft::DatagramHeader& header,
                                       std::span<const soft::Segment> payload, int& error) {
  if (to.bytes[kMarkOffset] == kLocalMark) {
    uint16_t port = 0;
    std::memcpy(&port, &to.bytes[kMarkOffset + 2], sizeof(port));
    if (std::shared_ptr<Outbound> channel = ready_channel(port)) {
      return send_on_ring(*channel, header, payload);
    }
  }
  return udp_->send(to, header, payload, error);
}

soft::SendResult ShmDatagramWire::send_on_ring(Outbound& channel,
                                               const soft::DatagramHeader& header,
                                               std::span<const soft::Segment> payload) {
  uint64_t length = 0;
  for (const soft::Segment& segment : payload) length += segment.length;
  const uint32_t bytes = entry_bytes(length);
  std::lock_guard lock(channel.producer_lock);
  bool malformed = false;
  std::byte* entry = channel.producer.reserve(bytes, &malformed);
  if (entry == nullptr) {
    if (malformed) {
      // The receiver wrote an impossible index into the ring: nothing more goes through it.
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      return soft::SendResult::kLost;
    }
    {
      // Registered before the receiver is asked for a doorbell, so the doorbell finds it.
      std::lock_guard waiters(waiters_mutex_);
      if (std::find(ring_waiters_.begin(), ring_waiters_.end(), header.source_qp_number) ==
          ring_waiters_.end()) {
        ring_waiters_.push_back(header.source_qp_number);
      }
    }
    if (!channel.producer.wait_for_space(bytes)) return soft::SendResult::kWouldBlock;
    entry = channel.producer.reserve(bytes, &malformed);
    if (entry == nullptr) return soft::SendResult::kWouldBlock;
  }
  std::byte* at = entry + kEntryHeaderBytes;
  for (const soft::Segment& segment : payload) {
    if (segment.length == 0) continue;
    std::memcpy(at, segment.address, segment.length);
    at += segment.length;
  }
  EntryHeader fields;
  fields.size = bytes;
  fields.type = static_cast<uint8_t>(EntryType::kDatagram);
  fields.flags = static_cast<uint8_t>((header.has_immediate ? entry_flags::kImmediate : 0) |
                                      (header.solicited ? entry_flags::kSolicited : 0));
  fields.length = static_cast<uint32_t>(length);
  fields.key = header.qkey;
  fields.tag = header.source_qp_number;
  fields.immediate = header.immediate;
  fields.address = header.destination_qp_number;
  if (channel.producer.commit(fields)) ring(channel.peer_doorbell);
  counters_.ring_sends.fetch_add(1, std::memory_order_relaxed);
  return soft::SendResult::kSent;
}

void ShmDatagramWire::wait_writable(uint32_t qp_number) {
  {
    std::lock_guard lock(waiters_mutex_);
    // A QP stopped by a full ring is already registered (send_on_ring); only a full socket
    // concerns the UDP wire.
    if (std::find(ring_waiters_.begin(), ring_waiters_.end(), qp_number) != ring_waiters_.end()) {
      return;
    }
  }
  udp_->wait_writable(qp_number);
}

// ---- Channel setup and teardown (progress thread) ----

void ShmDatagramWire::connect_channel(uint16_t port) {
  std::shared_ptr<Outbound> channel;
  {
    std::lock_guard lock(outbound_mutex_);
    auto it = outbound_.find(port);
    if (it == outbound_.end() || it->second->state != ChannelState::kConnecting) return;
    channel = it->second;
  }
  int fd = -1;
  const auto fail = [&] {
    if (fd >= 0) ::close(fd);
    std::lock_guard lock(outbound_mutex_);
    channel->state = ChannelState::kClosed;
    channel->closed_at = Clock::now();
  };
  auto segment = Segment::create(ring_bytes_);
  if (!segment.is_ok()) return fail();
  fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail();
  sockaddr_storage address;
  const socklen_t length = unix_address(datagram_name(port), address);
  // No such name: the port is a device without shm datagrams (or nobody's); UDP it is.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) return fail();
  const ChannelHello hello;
  const int fds[] = {segment.value()->fd(), writable_fd_};
  if (!send_message(fd, std::as_bytes(std::span(&hello, 1)), fds)) return fail();
  segment.value()->close_fd();
  channel->segment = std::move(segment).value();
  if (!progress_->add(fd, EPOLLIN, std::make_shared<WireHandler>(shared_from_this(), fd))) {
    return fail();
  }
  channel->socket = fd;
  outbound_sockets_[fd] = port;
}

void ShmDatagramWire::on_outbound_reply(Outbound& channel) {
  std::byte buffer[sizeof(ChannelHello)];
  size_t got = 0;
  std::vector<int> fds;
  Status status = receive_message(channel.socket, buffer, &got, fds, 1);
  if (status && got == 0) return;  // nothing yet
  ChannelHello hello;
  if (got == sizeof(hello)) std::memcpy(&hello, buffer, sizeof(hello));
  if (!status || got != sizeof(hello) || hello.magic != kChannelMagic ||
      hello.version != kChannelVersion || hello.type != ChannelMessage::kAccept ||
      fds.size() != 1) {
    for (int fd : fds) ::close(fd);
    if (status) counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return close_outbound(channel.socket);
  }
  SegmentHeader& shared = channel.segment->header();
  channel.peer_doorbell = fds[0];
  channel.producer = RingProducer(&shared.rings[0], channel.segment->ring_data(0), ring_bytes_);
  {
    std::lock_guard lock(outbound_mutex_);
    channel.state = ChannelState::kReady;
  }
  counters_.channels_opened.fetch_add(1, std::memory_order_relaxed);  // after: tests wait on it
}

void ShmDatagramWire::close_outbound(int fd) {
  auto socket = outbound_sockets_.find(fd);
  if (socket == outbound_sockets_.end()) return;
  const uint16_t port = socket->second;
  outbound_sockets_.erase(socket);
  progress_->remove(fd);
  ::close(fd);
  {
    std::lock_guard lock(outbound_mutex_);
    auto it = outbound_.find(port);
    if (it != outbound_.end() && it->second->socket == fd) {
      it->second->state = ChannelState::kClosed;
      it->second->closed_at = Clock::now();
      it->second->socket = -1;
    }
  }
  // A QP waiting for this ring's space now sends by UDP instead.
  resume_ring_waiters();
}

void ShmDatagramWire::accept_senders() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (inbound_.size() >= kMaxInboundChannels ||
        !progress_->add(fd, EPOLLIN, std::make_shared<WireHandler>(shared_from_this(), fd))) {
      ::close(fd);  // the sender stays on UDP
      continue;
    }
    auto channel = std::make_unique<Inbound>();
    channel->socket = fd;
    inbound_.emplace(fd, std::move(channel));
  }
}

void ShmDatagramWire::on_inbound_request(Inbound& channel) {
  std::byte buffer[sizeof(ChannelHello)];
  size_t got = 0;
  std::vector<int> fds;
  Status status = receive_message(channel.socket, buffer, &got, fds, 2);
  if (status && got == 0) return;
  ChannelHello hello;
  if (got == sizeof(hello)) std::memcpy(&hello, buffer, sizeof(hello));
  if (!status || got != sizeof(hello) || hello.magic != kChannelMagic ||
      hello.version != kChannelVersion || hello.type != ChannelMessage::kRequest ||
      fds.size() != 2) {
    for (int fd : fds) ::close(fd);
    if (status) counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return close_inbound(channel.socket);
  }
  channel.peer_doorbell = fds[1];
  auto segment = Segment::attach(fds[0]);
  if (!segment.is_ok()) {
    counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return close_inbound(channel.socket);
  }
  channel.segment = std::move(segment).value();
  const uint32_t ring_bytes = channel.segment->ring_bytes();
  channel.consumer =
      RingConsumer(&channel.segment->header().rings[0], channel.segment->ring_data(0), ring_bytes);
  ChannelHello accept;
  accept.type = ChannelMessage::kAccept;
  const int doorbell[] = {doorbell_fd_};
  if (!send_message(channel.socket, std::as_bytes(std::span(&accept, 1)), doorbell)) {
    return close_inbound(channel.socket);
  }
  counters_.channels_accepted.fetch_add(1, std::memory_order_relaxed);
  // Entries may have been written before this side looked: the sender only rings a consumer
  // that said it sleeps.
  drain_rings();
}

void ShmDatagramWire::close_inbound(int fd) {
  progress_->remove(fd);
  inbound_.erase(fd);
}

// ---- Receiving (progress thread) ----

bool ShmDatagramWire::drain(Inbound& channel) {
  // Bounded, so that one busy sender cannot keep the progress thread from everything else.
  constexpr int kBatch = 256;
  for (int i = 0; i < kBatch; ++i) {
    EntryHeader entry;
    const std::byte* payload = nullptr;
    const char* why = nullptr;
    const RingConsumer::Peek peek = channel.consumer.peek(entry, &payload, &why);
    if (peek == RingConsumer::Peek::kEmpty) return true;
    if (peek == RingConsumer::Peek::kMalformed ||
        entry.type != static_cast<uint8_t>(EntryType::kDatagram) ||
        entry.length > udp_->max_payload() || entry.address > kMulticastQpNumber ||
        entry.tag > kMulticastQpNumber ||
        (entry.flags & ~(entry_flags::kImmediate | entry_flags::kSolicited)) != 0) {
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      close_inbound(channel.socket);
      return true;
    }
    soft::DatagramHeader header;
    header.source_qp_number = entry.tag;
    header.destination_qp_number = static_cast<uint32_t>(entry.address);
    header.qkey = entry.key;
    header.immediate = entry.immediate;
    header.has_immediate = (entry.flags & entry_flags::kImmediate) != 0;
    header.solicited = (entry.flags & entry_flags::kSolicited) != 0;
    counters_.ring_received.fetch_add(1, std::memory_order_relaxed);
    // Group traffic never comes through a ring: a group QP number here is unknown destination.
    udp_->deliver(header, {payload, entry.length}, nullptr);
    if (channel.consumer.release(entry)) ring(channel.peer_doorbell);
  }
  return false;
}

void ShmDatagramWire::drain_rings() {
  // Collected first: draining may close a channel, which erases it from the map.
  std::vector<int> sockets;
  sockets.reserve(inbound_.size());
  bool done = false;
  while (!done) {
    done = true;
    sockets.clear();
    for (const auto& [fd, channel] : inbound_) {
      if (channel->segment) sockets.push_back(fd);
    }
    for (int fd : sockets) {
      if (auto it = inbound_.find(fd); it != inbound_.end() && !drain(*it->second)) done = false;
    }
    if (!done) continue;
    for (int fd : sockets) {
      auto it = inbound_.find(fd);
      if (it != inbound_.end() && it->second->consumer.prepare_to_sleep()) done = false;
    }
  }
}

void ShmDatagramWire::resume_ring_waiters() {
  {
    std::lock_guard lock(waiters_mutex_);
    resuming_.swap(ring_waiters_);
  }
  udp_->resume_sends(resuming_);
  resuming_.clear();
}

void ShmDatagramWire::on_events(int fd, uint32_t events) {
  if (fd == doorbell_fd_) {
    drain_eventfd(fd);
    drain_rings();
    return;
  }
  if (fd == writable_fd_) {
    drain_eventfd(fd);
    resume_ring_waiters();
    return;
  }
  if (fd == listen_fd_) {
    accept_senders();
    return;
  }
  if (auto it = outbound_sockets_.find(fd); it != outbound_sockets_.end()) {
    std::shared_ptr<Outbound> channel;
    bool connecting = false;
    {
      std::lock_guard lock(outbound_mutex_);
      if (auto found = outbound_.find(it->second); found != outbound_.end()) {
        channel = found->second;
        connecting = channel->state == ChannelState::kConnecting;
      }
    }
    if (channel == nullptr || channel->socket != fd || (events & (EPOLLHUP | EPOLLERR)) != 0 ||
        !connecting) {
      // The receiver left, or spoke after the handshake, where nothing more is said.
      return close_outbound(fd);
    }
    return on_outbound_reply(*channel);
  }
  if (auto it = inbound_.find(fd); it != inbound_.end()) {
    Inbound& channel = *it->second;
    if (channel.segment == nullptr && (events & EPOLLIN) != 0) return on_inbound_request(channel);
    // The sender left (or spoke out of turn): take what it sent, then end the channel.
    if (channel.segment) drain(channel);
    if (inbound_.count(fd) != 0) close_inbound(fd);
  }
}

}  // namespace wv::verbs::shm
