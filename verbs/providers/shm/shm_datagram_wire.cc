#include "shm_datagram_wire.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>

#include "shm_protocol.h"

namespace wv::verbs::shm {
namespace {

// A resolved address is the UDP wire's socket address (at most a sockaddr_in6, 28 bytes) and,
// for a destination on this host, a mark and the port whose ring to try first.
constexpr size_t kMarkOffset = 28;
constexpr std::byte kLocalMark{0x5d};
constexpr std::byte kGroupMark{0x6d};  // then the group's index in groups_
constexpr int kDirectoryWaitMs = 2000;
constexpr size_t kGidBytes = sizeof(Gid::raw);
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

// One handshake message of `type` carrying exactly `descriptors` descriptors, which land in
// `fds` (the caller's). False while nothing has arrived; kProtocolError for anything else the
// peer sent (its descriptors closed); the socket's own error when it failed or hung up.
Result<bool> receive_hello(int fd, ChannelMessage type, size_t descriptors, std::vector<int>& fds) {
  std::byte buffer[sizeof(ChannelHello)];
  size_t got = 0;
  if (Status status = receive_message(fd, buffer, &got, fds, descriptors); !status) return status;
  if (got == 0) return false;
  ChannelHello hello;
  if (got == sizeof(hello)) std::memcpy(&hello, buffer, sizeof(hello));
  if (got != sizeof(hello) || hello.magic != kChannelMagic || hello.version != kChannelVersion ||
      hello.type != type || fds.size() != descriptors) {
    for (int received : fds) ::close(received);
    fds.clear();
    return Status(Errc::kProtocolError, "an shm datagram handshake message that is not one");
  }
  return true;
}

// A holder's answer on `fd`: the group's directory, or null while nothing has arrived yet.
Result<std::unique_ptr<GroupDirectory>> take_directory(int fd, const Gid& group) {
  std::vector<int> fds;
  auto arrived = receive_hello(fd, ChannelMessage::kDirectory, 1, fds);
  if (!arrived.is_ok()) return arrived.status();
  if (!arrived.value()) return std::unique_ptr<GroupDirectory>();
  return GroupDirectory::attach(fds[0], group);
}

class WireHandler final : public soft::PollHandler {
 public:
  WireHandler(std::shared_ptr<ShmDatagramWire> wire, int fd) : wire_(std::move(wire)), fd_(fd) {}
  void on_events(uint32_t events) override { wire_->on_events(fd_, events); }
  void on_deadline() override { wire_->on_deadline(fd_); }

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
                                 uint32_t ring_bytes, GroupMode groups)
    : udp_(std::move(udp)),
      host_gids_(std::move(host_gids)),
      ring_bytes_(ring_bytes),
      groups_mode_(groups) {}

Result<std::shared_ptr<ShmDatagramWire>> ShmDatagramWire::open(std::shared_ptr<tcp::UdpWire> udp,
                                                               std::vector<Gid> host_gids,
                                                               uint32_t ring_bytes,
                                                               GroupMode groups) {
  if (entry_bytes(udp->max_payload()) > ring_bytes / 4) {
    return Status(Errc::kInvalidArgument,
                  "a datagram ring of " + std::to_string(ring_bytes) + " bytes cannot hold " +
                      std::to_string(udp->max_payload()) + "-byte datagrams");
  }
  std::shared_ptr<ShmDatagramWire> wire(
      new ShmDatagramWire(std::move(udp), std::move(host_gids), ring_bytes, groups));
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
  for (const auto& [fd, index] : group_sockets_) ::close(fd);
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
  result.group_drops = counters_.group_drops.load(std::memory_order_relaxed);
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
  if (progress_ == nullptr) return Status::ok();
  if (soft::is_multicast_group(gid)) {
    if (groups_mode_ == GroupMode::kUdp) return Status::ok();
    // The interface's const is about the address; finding a group's members changes the wire.
    auto& self = const_cast<ShmDatagramWire&>(*this);
    std::lock_guard lock(self.groups_mutex_);
    size_t index = 0;
    Group* group = self.group_locked(soft::canonical_group(gid), &index);
    if (group == nullptr) {
      return Status(Errc::kNoMemory, "the device sends to its limit of " +
                                         std::to_string(tcp::kMaxMulticastGroups) +
                                         " multicast groups");
    }
    self.find_group_locked(*group, index);
    out.bytes[kMarkOffset] = kGroupMark;
    const auto slot = static_cast<uint16_t>(index);
    std::memcpy(&out.bytes[kMarkOffset + 2], &slot, sizeof(slot));
    return Status::ok();
  }
  if (!on_this_host(gid)) return Status::ok();
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
    it->second->retry = !inserted;
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
  uint16_t slot = 0;
  std::memcpy(&slot, &to.bytes[kMarkOffset + 2], sizeof(slot));
  if (to.bytes[kMarkOffset] == kGroupMark) return send_to_group(slot, header, payload);
  if (to.bytes[kMarkOffset] == kLocalMark) {
    if (std::shared_ptr<Outbound> channel = ready_channel(slot)) {
      return send_on_ring(*channel, header, payload, nullptr);
    }
  }
  return udp_->send(to, header, payload, error);
}

void ShmDatagramWire::wait_on_ring(uint32_t qp_number) {
  std::lock_guard lock(waiters_mutex_);
  if (std::find(ring_waiters_.begin(), ring_waiters_.end(), qp_number) == ring_waiters_.end()) {
    ring_waiters_.push_back(qp_number);
  }
}

void ShmDatagramWire::stop_waiting(uint32_t qp_number) {
  std::lock_guard lock(waiters_mutex_);
  std::erase(ring_waiters_, qp_number);
}

soft::SendResult ShmDatagramWire::send_to_group(size_t index, const soft::DatagramHeader& header,
                                                std::span<const soft::Segment> payload) {
  // Registered first: whatever this send waits for resumes the waiters after it changes.
  wait_on_ring(header.source_qp_number);
  std::array<uint16_t, kMaxGroupMembers> ports;
  size_t count = 0;
  Gid gid;
  {
    std::lock_guard lock(groups_mutex_);
    if (index >= groups_.size()) {
      stop_waiting(header.source_qp_number);
      return soft::SendResult::kLost;
    }
    Group& group = *groups_[index];
    find_group_locked(group, index);
    if (group.finding) return soft::SendResult::kWouldBlock;
    if (group.directory == nullptr) {
      stop_waiting(header.source_qp_number);
      return soft::SendResult::kSent;  // no member on this host
    }
    if (const uint64_t generation = group.directory->generation(); generation != group.generation) {
      group.generation = generation;
      group.count = group.directory->members(group.ports);
    }
    count = group.count;
    std::copy_n(group.ports.begin(), count, ports.begin());
    gid = group.gid;
  }
  // Every member's channel first: a new member's ring is worth waiting for, one that failed
  // before (a member gone) is not.
  bool waiting = false;
  for (size_t i = 0; i < count; ++i) {
    std::unique_lock lock(outbound_mutex_);
    auto it = outbound_.find(ports[i]);
    if (it == outbound_.end()) {
      lock.unlock();
      request_channel(ports[i]);
      waiting = true;
    } else if (it->second->state == ChannelState::kConnecting && !it->second->retry) {
      waiting = true;
    }
  }
  if (waiting) return soft::SendResult::kWouldBlock;
  stop_waiting(header.source_qp_number);
  for (size_t i = 0; i < count; ++i) {
    if (std::shared_ptr<Outbound> channel = ready_channel(ports[i])) {
      (void)send_on_ring(*channel, header, payload, &gid);
    }
  }
  return soft::SendResult::kSent;
}

soft::SendResult ShmDatagramWire::send_on_ring(Outbound& channel,
                                               const soft::DatagramHeader& header,
                                               std::span<const soft::Segment> payload,
                                               const Gid* group) {
  uint64_t length = group != nullptr ? kGidBytes : 0;
  for (const soft::Segment& segment : payload) length += segment.length;
  const uint32_t bytes = entry_bytes(length);
  std::lock_guard lock(channel.producer_lock);
  bool malformed = false;
  std::byte* entry = channel.producer.reserve(bytes, &malformed);
  if (entry == nullptr) {
    if (malformed) {
      // The receiver wrote an impossible index into the ring: nothing more goes through it,
      // and the channel ends (its datagrams go by UDP until a new one is set up).
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      int ending = -1;
      {
        std::lock_guard closing(outbound_mutex_);
        if (channel.state == ChannelState::kReady) {
          channel.state = ChannelState::kClosed;
          channel.closed_at = Clock::now();
          ending = channel.socket;
        }
      }
      if (ending >= 0) {
        progress_->post([self = shared_from_this(), ending] { self->close_outbound(ending); });
      }
      return soft::SendResult::kLost;
    }
    if (group != nullptr) {
      counters_.group_drops.fetch_add(1, std::memory_order_relaxed);
      return soft::SendResult::kLost;
    }
    // Registered before the receiver is asked for a doorbell, so the doorbell finds it.
    wait_on_ring(header.source_qp_number);
    if (!channel.producer.wait_for_space(bytes)) return soft::SendResult::kWouldBlock;
    entry = channel.producer.reserve(bytes, &malformed);
    if (entry == nullptr) return soft::SendResult::kWouldBlock;
    stop_waiting(header.source_qp_number);
  }
  std::byte* at = entry + kEntryHeaderBytes;
  if (group != nullptr) {
    std::memcpy(at, group->raw.data(), kGidBytes);
    at += kGidBytes;
  }
  for (const soft::Segment& segment : payload) {
    if (segment.length == 0) continue;
    std::memcpy(at, segment.address, segment.length);
    at += segment.length;
  }
  EntryHeader fields;
  fields.size = bytes;
  fields.type = static_cast<uint8_t>(EntryType::kDatagram);
  fields.flags = static_cast<uint8_t>((header.has_immediate ? entry_flags::kImmediate : 0) |
                                      (header.solicited ? entry_flags::kSolicited : 0) |
                                      (group != nullptr ? entry_flags::kGroup : 0));
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
    {
      std::lock_guard lock(outbound_mutex_);
      channel->state = ChannelState::kClosed;
      channel->closed_at = Clock::now();
    }
    resume_ring_waiters();  // a group send waiting for this channel goes on without it
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
  {
    std::lock_guard lock(outbound_mutex_);  // senders read it to end a broken channel
    channel->socket = fd;
  }
  outbound_sockets_[fd] = port;
}

void ShmDatagramWire::on_outbound_reply(Outbound& channel) {
  std::vector<int> fds;
  auto arrived = receive_hello(channel.socket, ChannelMessage::kAccept, 1, fds);
  if (arrived.is_ok() && !arrived.value()) return;  // nothing yet
  if (!arrived.is_ok()) {
    if (arrived.status().code() == Errc::kProtocolError) {
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    }
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
  resume_ring_waiters();  // group sends wait for their members' channels
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
  std::lock_guard lock(drain_lock_);
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

bool ShmDatagramWire::accept_request_locked(Inbound& channel) {
  std::vector<int> fds;
  auto arrived = receive_hello(channel.socket, ChannelMessage::kRequest, 2, fds);
  if (arrived.is_ok() && !arrived.value()) return true;  // nothing yet
  if (!arrived.is_ok()) {
    if (arrived.status().code() == Errc::kProtocolError) {
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    }
    return false;
  }
  channel.peer_doorbell = fds[1];
  auto segment = Segment::attach(fds[0]);
  if (!segment.is_ok()) {
    counters_.malformed.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::unique_ptr<Segment> mapped = std::move(segment).value();
  const uint32_t ring_bytes = mapped->ring_bytes();
  channel.consumer = RingConsumer(&mapped->header().rings[0], mapped->ring_data(0), ring_bytes);
  ChannelHello accept;
  accept.type = ChannelMessage::kAccept;
  const int doorbell[] = {doorbell_fd_};
  if (!send_message(channel.socket, std::as_bytes(std::span(&accept, 1)), doorbell)) return false;
  channel.segment = std::move(mapped);  // from here on, pollers drain it too
  has_inbound_.store(true, std::memory_order_relaxed);
  counters_.channels_accepted.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ShmDatagramWire::close_inbound_locked(int fd) {
  progress_->remove(fd);
  inbound_.erase(fd);
}

// ---- Receiving (the progress thread, or a thread polling a CQ of an attached QP) ----

ShmDatagramWire::Drained ShmDatagramWire::drain_locked(Inbound& channel) {
  // Bounded, so that one busy sender cannot keep the progress thread from everything else.
  constexpr int kBatch = 256;
  for (int i = 0; i < kBatch; ++i) {
    EntryHeader entry;
    const std::byte* payload = nullptr;
    const char* why = nullptr;
    const RingConsumer::Peek peek = channel.consumer.peek(entry, &payload, &why);
    if (peek == RingConsumer::Peek::kEmpty) return Drained::kEmpty;
    const bool to_group = (entry.flags & entry_flags::kGroup) != 0;
    const uint32_t prefix = to_group ? kGidBytes : 0;
    if (peek == RingConsumer::Peek::kMalformed ||
        entry.type != static_cast<uint8_t>(EntryType::kDatagram) || entry.length < prefix ||
        entry.length - prefix > udp_->max_payload() ||
        (entry.address == kMulticastQpNumber) != to_group || entry.address > kMulticastQpNumber ||
        entry.tag > kMulticastQpNumber ||
        (entry.flags &
         ~(entry_flags::kImmediate | entry_flags::kSolicited | entry_flags::kGroup)) != 0) {
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      return Drained::kBroken;
    }
    soft::DatagramHeader header;
    header.source_qp_number = entry.tag;
    header.destination_qp_number = static_cast<uint32_t>(entry.address);
    header.qkey = entry.key;
    header.immediate = entry.immediate;
    header.has_immediate = (entry.flags & entry_flags::kImmediate) != 0;
    header.solicited = (entry.flags & entry_flags::kSolicited) != 0;
    counters_.ring_received.fetch_add(1, std::memory_order_relaxed);
    Gid group;
    if (to_group) std::memcpy(group.raw.data(), payload, kGidBytes);
    udp_->deliver(header, {payload + prefix, entry.length - prefix}, to_group ? &group : nullptr);
    if (channel.consumer.release(entry)) ring(channel.peer_doorbell);
  }
  return Drained::kMore;
}

bool ShmDatagramWire::drain_all_locked() {
  bool more = false;
  for (auto it = inbound_.begin(); it != inbound_.end();) {
    const Drained drained = it->second->segment ? drain_locked(*it->second) : Drained::kEmpty;
    if (drained == Drained::kBroken) {
      progress_->remove(it->first);  // the channel ends; its sender goes back to UDP
      it = inbound_.erase(it);
      continue;
    }
    more = more || drained == Drained::kMore;
    ++it;
  }
  return more;
}

void ShmDatagramWire::drain_rings() {
  std::lock_guard lock(drain_lock_);
  for (;;) {
    if (drain_all_locked()) continue;
    if (presence_.active()) {
      // A thread polls a CQ these rings feed and moves their datagrams itself: the senders
      // need not ring, and this thread looks again later in case the poller went away.
      progress_->set_deadline(doorbell_fd_, Clock::now() + kPollerRecheck);
      return;
    }
    bool arrived = false;
    for (const auto& [fd, channel] : inbound_) {
      if (channel->segment && channel->consumer.prepare_to_sleep()) arrived = true;
    }
    if (!arrived) return;
  }
}

void ShmDatagramWire::progress_from_poll() {
  presence_.note_poll();
  if (!has_inbound_.load(std::memory_order_relaxed) || !drain_lock_.try_lock()) return;
  (void)drain_all_locked();
  drain_lock_.unlock();
}

void ShmDatagramWire::poller_sleeping() {
  presence_.forget();
  ring(doorbell_fd_);  // the progress thread takes the rings back at once
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
  if (on_group_socket(fd, events)) return;
  bool accepted = false;
  {
    std::lock_guard lock(drain_lock_);
    auto it = inbound_.find(fd);
    if (it == inbound_.end()) return;
    Inbound& channel = *it->second;
    if (channel.segment == nullptr && (events & (EPOLLHUP | EPOLLERR)) == 0) {
      if (accept_request_locked(channel)) {
        accepted = channel.segment != nullptr;
      } else {
        close_inbound_locked(fd);
      }
    } else {
      // The sender left (or spoke out of turn): take what it sent, then end the channel.
      if (channel.segment) (void)drain_locked(channel);
      close_inbound_locked(fd);
    }
  }
  // Entries may have been written before this side looked: a sender rings only a consumer
  // that said it sleeps.
  if (accepted) drain_rings();
}

void ShmDatagramWire::on_deadline(int fd) {
  if (fd == doorbell_fd_) drain_rings();
}

// ---- Multicast groups ----

ShmDatagramWire::Group* ShmDatagramWire::group_locked(const Gid& gid, size_t* index) {
  for (size_t i = 0; i < groups_.size(); ++i) {
    if (groups_[i]->gid == gid) {
      *index = i;
      return groups_[i].get();
    }
  }
  if (groups_.size() >= tcp::kMaxMulticastGroups) return nullptr;
  groups_.push_back(std::make_unique<Group>());
  groups_.back()->gid = gid;
  *index = groups_.size() - 1;
  return groups_.back().get();
}

void ShmDatagramWire::watch_group_socket_locked(int fd, size_t index) {
  group_sockets_[fd] = index;
  if (!progress_->add(fd, EPOLLIN, std::make_shared<WireHandler>(shared_from_this(), fd))) {
    // Unwatched, its hang-up goes unnoticed; the directory itself keeps working.
    group_sockets_.erase(fd);
  }
}

void ShmDatagramWire::close_group_socket_locked(int fd) {
  if (group_sockets_.erase(fd) != 0) progress_->remove(fd);
  ::close(fd);
}

void ShmDatagramWire::find_group_locked(Group& group, size_t index) {
  if (group.directory != nullptr || group.finding || progress_ == nullptr) return;
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_storage address;
  const socklen_t length = unix_address(group_name(group.gid), address);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    ::close(fd);  // nobody holds the name: the group has no member on this host
    return;
  }
  group.socket = fd;
  group.finding = true;
  watch_group_socket_locked(fd, index);
}

Result<ShmDatagramWire::FoundDirectory> ShmDatagramWire::find_or_hold(const Gid& group) {
  sockaddr_storage address;
  const socklen_t length = unix_address(group_name(group), address);
  const auto* name = reinterpret_cast<const sockaddr*>(&address);
  for (int attempt = 0; attempt < 8; ++attempt) {
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno_status(Errc::kIoError, "socket for a multicast group");
    if (::connect(fd, name, length) == 0) {
      pollfd answer{fd, POLLIN, 0};
      if (::poll(&answer, 1, kDirectoryWaitMs) == 1) {
        auto directory = take_directory(fd, group);
        if (directory.is_ok() && directory.value() != nullptr) {
          return FoundDirectory{std::move(directory).value(), fd, false};
        }
      }
      ::close(fd);  // the holder left meanwhile, or said nonsense: ask whoever holds it now
      continue;
    }
    const int refused = errno;
    ::close(fd);
    if (refused == EAGAIN) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the holder's backlog
      continue;
    }
    if (refused != ECONNREFUSED && refused != ENOENT) {
      errno = refused;
      return errno_status(Errc::kIoError, "connecting to the holder of " + to_string(group));
    }
    // Nobody holds the name: this device starts the group's directory and holds it.
    auto directory = GroupDirectory::create(group);
    if (!directory.is_ok()) return directory.status();
    fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno_status(Errc::kIoError, "socket for a multicast group");
    if (::bind(fd, name, length) == 0 && ::listen(fd, 64) == 0) {
      return FoundDirectory{std::move(directory).value(), fd, true};
    }
    const int taken = errno;
    ::close(fd);
    if (taken != EADDRINUSE) {
      errno = taken;
      return errno_status(Errc::kIoError, "holding the name of " + to_string(group));
    }
  }
  return Status(Errc::kBusy, "the directory of multicast group " + to_string(group) +
                                 " could be neither found nor held on this host");
}

Status ShmDatagramWire::attach_multicast(const Gid& any_group, uint32_t qp_number) {
  if (groups_mode_ == GroupMode::kUdp) return udp_->attach_multicast(any_group, qp_number);
  if (progress_ == nullptr) return Status(Errc::kInvalidState, "datagram wire not started");
  const Gid gid = soft::canonical_group(any_group);
  std::lock_guard join(join_mutex_);
  if (Status status = udp_->attach_multicast(gid, qp_number); !status) return status;
  Status status;
  {
    std::unique_lock lock(groups_mutex_);
    size_t index = 0;
    Group* group = group_locked(gid, &index);
    if (group == nullptr) {
      status = Status(Errc::kNoMemory, "the device is in its limit of " +
                                           std::to_string(tcp::kMaxMulticastGroups) +
                                           " multicast groups");
    } else if (group->directory == nullptr || group->finding) {
      // Not a member yet, and no directory at hand: find the holder or become it. This blocks
      // (boundedly) on another device's progress thread, so it runs here, never on ours.
      lock.unlock();
      auto found = find_or_hold(gid);
      lock.lock();
      if (group->socket >= 0) close_group_socket_locked(group->socket);
      group->socket = -1;
      group->finding = false;
      group->directory.reset();
      if (!found.is_ok()) {
        status = found.status();
      } else {
        group->directory = std::move(found.value().directory);
        group->socket = found.value().socket;
        group->holder = found.value().holder;
        group->generation = ~uint64_t{0};
        watch_group_socket_locked(group->socket, index);
      }
    }
    if (status && group->attachments.empty()) {
      group->directory->prune();
      status = group->directory->add(udp_->port());
    }
    if (status) ++group->attachments[qp_number];
  }
  resume_ring_waiters();  // a send that waited for this group's directory goes on
  if (!status) (void)udp_->detach_multicast(gid, qp_number);
  return status;
}

void ShmDatagramWire::leave_locked(Group& group) {
  if (group.directory != nullptr) group.directory->remove(udp_->port());
  // Closing the name (or the connection to its holder) is what tells the others.
  for (int fd : group.accepted) close_group_socket_locked(fd);
  group.accepted.clear();
  if (group.socket >= 0) close_group_socket_locked(group.socket);
  group.socket = -1;
  group.holder = false;
  group.finding = false;
  group.directory.reset();
  group.generation = ~uint64_t{0};
  group.count = 0;
}

Status ShmDatagramWire::detach_multicast(const Gid& any_group, uint32_t qp_number) {
  if (groups_mode_ == GroupMode::kUdp) return udp_->detach_multicast(any_group, qp_number);
  const Gid gid = soft::canonical_group(any_group);
  std::lock_guard join(join_mutex_);
  if (Status status = udp_->detach_multicast(gid, qp_number); !status) return status;
  std::lock_guard lock(groups_mutex_);
  for (auto& group : groups_) {
    if (group->gid != gid) continue;
    auto it = group->attachments.find(qp_number);
    if (it == group->attachments.end()) break;
    if (--it->second == 0) group->attachments.erase(it);
    if (group->attachments.empty()) leave_locked(*group);
    break;
  }
  return Status::ok();
}

void ShmDatagramWire::detach(uint32_t qp_number) {
  udp_->detach(qp_number);
  std::lock_guard join(join_mutex_);
  std::lock_guard lock(groups_mutex_);
  for (auto& group : groups_) {
    if (group->attachments.erase(qp_number) != 0 && group->attachments.empty()) {
      leave_locked(*group);
    }
  }
}

void ShmDatagramWire::take_over_locked(Group& group, size_t index) {
  sockaddr_storage address;
  const socklen_t length = unix_address(group_name(group.gid), address);
  const auto* name = reinterpret_cast<const sockaddr*>(&address);
  for (int attempt = 0; attempt < 4; ++attempt) {
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (::bind(fd, name, length) == 0 && ::listen(fd, 64) == 0) {
      group.socket = fd;
      group.holder = true;
      group.directory->prune();  // the old holder, if it died
      watch_group_socket_locked(fd, index);
      return;
    }
    ::close(fd);
    // Another member got there first: its answer comes to on_group_socket.
    fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (::connect(fd, name, length) == 0) {
      group.socket = fd;
      group.finding = true;
      watch_group_socket_locked(fd, index);
      return;
    }
    ::close(fd);
  }
  // Neither: the members keep the directory they map, only newcomers cannot find it.
}

bool ShmDatagramWire::on_group_socket(int fd, uint32_t events) {
  bool resume = false;
  {
    std::lock_guard lock(groups_mutex_);
    auto it = group_sockets_.find(fd);
    if (it == group_sockets_.end()) return false;
    const size_t index = it->second;
    Group& group = *groups_[index];
    if (group.holder && fd == group.socket) {
      // Hand the directory to every device that asks, and keep the connection: its hang-up
      // is how the asker learns that this device no longer holds the name.
      for (;;) {
        const int asker = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (asker < 0) break;
        ChannelHello hello;
        hello.type = ChannelMessage::kDirectory;
        const int directory[] = {group.directory->fd()};
        if (group.accepted.size() >= kMaxInboundChannels ||
            !send_message(asker, std::as_bytes(std::span(&hello, 1)), directory)) {
          ::close(asker);
          continue;
        }
        group.accepted.push_back(asker);
        watch_group_socket_locked(asker, index);
      }
      return true;
    }
    if (auto asker = std::find(group.accepted.begin(), group.accepted.end(), fd);
        asker != group.accepted.end()) {
      // An asker says nothing more; anything on its connection is its leaving.
      group.accepted.erase(asker);
      close_group_socket_locked(fd);
      return true;
    }
    bool hung_up = true;
    if (group.finding) {
      auto found = take_directory(fd, group.gid);
      if (found.is_ok() && found.value() == nullptr && (events & (EPOLLHUP | EPOLLERR)) == 0) {
        return true;  // nothing yet
      }
      group.finding = false;
      resume = true;
      if (!found.is_ok()) {
        counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      } else if (found.value() != nullptr) {
        hung_up = false;  // the connection stays, to hear the holder leave
        std::unique_ptr<GroupDirectory> directory = std::move(found).value();
        if (group.directory == nullptr || group.directory->id() != directory->id()) {
          // A member that took over but met another directory moves its entry there.
          if (!group.attachments.empty()) {
            if (group.directory != nullptr) group.directory->remove(udp_->port());
            directory->prune();
            (void)directory->add(udp_->port());
          }
          group.directory = std::move(directory);
          group.generation = ~uint64_t{0};
        }
      }
    }
    if (hung_up) {
      // The holder left (or said nonsense): a member keeps the name alive, a sender forgets
      // the directory and looks again at its next send.
      close_group_socket_locked(fd);
      group.socket = -1;
      resume = true;
      if (!group.attachments.empty() && group.directory != nullptr) {
        take_over_locked(group, index);
      } else {
        group.directory.reset();
        group.generation = ~uint64_t{0};
      }
    }
  }
  if (resume) resume_ring_waiters();
  return true;
}

}  // namespace wv::verbs::shm
