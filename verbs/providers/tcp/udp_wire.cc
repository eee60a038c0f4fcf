#include "udp_wire.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include "ddp_rdmap.h"

namespace wv::verbs::tcp {
namespace {

constexpr int kReceiveBatch = 64;  // datagrams per wake-up, so other sockets get their turn
constexpr int kPortBaseTries = 64;
constexpr int kSocketBufferBytes = 4 << 20;
constexpr auto kMulticastProbeWait = std::chrono::milliseconds(200);
constexpr uint32_t kQpNumberMask = 0xffffff;

// A socket the progress thread reads: the device socket, or a multicast group's (owned).
class SocketHandler final : public soft::PollHandler {
 public:
  SocketHandler(std::shared_ptr<UdpWire> wire, int fd, bool owns_fd, const Gid* group)
      : wire_(std::move(wire)), fd_(fd), owns_fd_(owns_fd), is_group_(group != nullptr) {
    if (group != nullptr) group_ = *group;
  }
  ~SocketHandler() override {
    if (owns_fd_) ::close(fd_);  // a group socket: closing also leaves the group
  }
  void on_events(uint32_t events) override {
    wire_->on_events(fd_, events, is_group_ ? &group_ : nullptr);
  }

 private:
  std::shared_ptr<UdpWire> wire_;
  int fd_;
  bool owns_fd_;
  bool is_group_;
  Gid group_;
};

// Does a datagram this host sends to an IPv4 group come back to a member on this host? Tried
// with the device socket itself, so the answer holds for the route real sends take.
Status probe_multicast(int device_fd, int device_family) {
  uint32_t random = 0;
  if (::getrandom(&random, sizeof(random), 0) != sizeof(random)) random = 0x4242;
  sockaddr_in group{};
  group.sin_family = AF_INET;
  // 239.255/16: administratively scoped (RFC 2365), never routed beyond the site.
  group.sin_addr.s_addr = htonl(0xefff0000u | ((random & 0xfffe) + 1));
  const int rx = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (rx < 0) return errno_status(Errc::kNotSupported, "multicast probe socket");
  const auto fail = [rx](Status status) {
    ::close(rx);
    return status;
  };
  const std::string hint =
      "; multicast needs a multicast-capable interface with a route for 224.0.0.0/4 (a "
      "default route, or `ip route add 224.0.0.0/4 dev <if>`; on some kernels a bare lo also "
      "needs `ip link set lo multicast on`)";
  if (::bind(rx, reinterpret_cast<const sockaddr*>(&group), sizeof(group)) != 0) {
    return fail(errno_status(Errc::kNotSupported, "multicast probe: bind to a group address"));
  }
  socklen_t length = sizeof(group);
  ::getsockname(rx, reinterpret_cast<sockaddr*>(&group), &length);
  ip_mreqn membership{};
  membership.imr_multiaddr = group.sin_addr;
  membership.imr_address.s_addr = htonl(INADDR_ANY);
  if (::setsockopt(rx, IPPROTO_IP, IP_ADD_MEMBERSHIP, &membership, sizeof(membership)) != 0) {
    return fail(Status(Errc::kNotSupported, std::string("cannot join an IPv4 multicast group (") +
                                                std::strerror(errno) + ")" + hint));
  }
  uint64_t nonce = 0;
  if (::getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce)) nonce = 0x5756;
  ssize_t sent = -1;
  if (device_family == AF_INET6) {
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_port = group.sin_port;
    to.sin6_addr.s6_addr[10] = 0xff;
    to.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&to.sin6_addr.s6_addr[12], &group.sin_addr, 4);
    sent = ::sendto(device_fd, &nonce, sizeof(nonce), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  } else {
    sent = ::sendto(device_fd, &nonce, sizeof(nonce), MSG_NOSIGNAL,
                    reinterpret_cast<const sockaddr*>(&group), sizeof(group));
  }
  if (sent < 0) {
    return fail(
        Status(Errc::kNotSupported, std::string("cannot send to an IPv4 multicast group (") +
                                        std::strerror(errno) + ")" + hint));
  }
  const auto deadline = std::chrono::steady_clock::now() + kMulticastProbeWait;
  for (;;) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{rx, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    uint64_t got = 0;
    if (::recv(rx, &got, sizeof(got), 0) == sizeof(got) && got == nonce) {
      ::close(rx);
      return Status::ok();
    }
  }
  return fail(Status(Errc::kNotSupported,
                     "a multicast datagram sent by this host did not come back within " +
                         std::to_string(kMulticastProbeWait.count()) + " ms (IP_MULTICAST_LOOP)" +
                         hint));
}

}  // namespace

Gid gid_of_address(const SocketAddress& address) {
  Gid gid;
  if (address.family() == AF_INET) {
    // IPv4-mapped IPv6, as RoCEv2 and iWARP devices report IPv4 addresses.
    gid.raw[10] = 0xff;
    gid.raw[11] = 0xff;
    std::memcpy(&gid.raw[12], &reinterpret_cast<const sockaddr_in*>(address.get())->sin_addr, 4);
  } else if (address.family() == AF_INET6) {
    std::memcpy(gid.raw.data(), &reinterpret_cast<const sockaddr_in6*>(address.get())->sin6_addr,
                16);
  }
  return gid;
}

void encode_datagram_header(const soft::DatagramHeader& header,
                            std::span<std::byte, kDatagramHeaderBytes> out) {
  std::byte* at = out.data();
  store_be16(at, kDatagramMagic);
  at[2] = static_cast<std::byte>(kDatagramVersion);
  at[3] = static_cast<std::byte>((header.has_immediate ? kDatagramFlagImmediate : 0) |
                                 (header.solicited ? kDatagramFlagSolicited : 0));
  store_be32(at + 4, header.source_qp_number);
  store_be32(at + 8, header.destination_qp_number);
  store_be32(at + 12, header.qkey);
  store_be32(at + 16, header.immediate);
}

HeaderCheck decode_datagram_header(std::span<const std::byte> datagram, soft::DatagramHeader& out) {
  if (datagram.size() < kDatagramHeaderBytes) return HeaderCheck::kShort;
  const std::byte* at = datagram.data();
  if (load_be16(at) != kDatagramMagic) return HeaderCheck::kBadMagic;
  if (static_cast<uint8_t>(at[2]) != kDatagramVersion) return HeaderCheck::kBadVersion;
  const auto flags = static_cast<uint8_t>(at[3]);
  if ((flags & ~(kDatagramFlagImmediate | kDatagramFlagSolicited)) != 0) {
    return HeaderCheck::kBadFlags;
  }
  out.source_qp_number = load_be32(at + 4);
  out.destination_qp_number = load_be32(at + 8);
  if ((out.source_qp_number & ~kQpNumberMask) != 0 ||
      (out.destination_qp_number & ~kQpNumberMask) != 0) {
    return HeaderCheck::kBadQpNumber;
  }
  out.qkey = load_be32(at + 12);
  out.immediate = load_be32(at + 16);
  out.has_immediate = (flags & kDatagramFlagImmediate) != 0;
  out.solicited = (flags & kDatagramFlagSolicited) != 0;
  return HeaderCheck::kOk;
}

UdpWire::UdpWire(uint32_t max_payload)
    : max_payload_(max_payload), staging_(kDatagramHeaderBytes + max_payload) {
  // Reserved once so that wait_writable and the resume swap never allocate on the data path.
  writable_waiters_.reserve(1024);
  resuming_.reserve(1024);
}

UdpWire::~UdpWire() {
  // The progress thread is gone (the device stops it first); group sockets were closed by
  // their handlers.
  if (fd_ >= 0) ::close(fd_);
}

Result<std::shared_ptr<UdpWire>> UdpWire::open(uint16_t port_base, uint32_t max_payload) {
  std::shared_ptr<UdpWire> wire(new UdpWire(max_payload));
  if (Status status = wire->open_socket(port_base); !status) return status;
  // Probed once per process: the answer is the host's, and a failing probe may cost its full
  // wait, which every device opened (a test suite opens many) would pay again.
  static std::mutex probe_mutex;
  static std::optional<Status> probed;
  {
    std::lock_guard lock(probe_mutex);
    if (!probed) probed = probe_multicast(wire->fd_, wire->family_);
    wire->multicast_status_ = *probed;
  }
  return wire;
}

Status UdpWire::open_socket(uint16_t port_base) {
  // Dual-stack IPv6 reaches IPv4 (mapped) and IPv6 peers with one socket; IPv4 alone when the
  // host has no IPv6.
  family_ = AF_INET6;
  fd_ = ::socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ >= 0) {
    const int zero = 0;
    if (::setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  if (fd_ < 0) {
    family_ = AF_INET;
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return errno_status(Errc::kIoError, "datagram socket");
  }
  const int one = 1;
  const int zero = 0;
  // Local members of a group hear this host's multicast; the wildcard socket itself hears no
  // group traffic (group sockets do, each for its own group).
  ::setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_LOOP, &one, sizeof(one));
  ::setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof(zero));
  if (family_ == AF_INET6) ::setsockopt(fd_, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &one, sizeof(one));
  // Bursts of MTU-sized datagrams overflow the default buffers quickly; best effort.
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &kSocketBufferBytes, sizeof(kSocketBufferBytes));
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &kSocketBufferBytes, sizeof(kSocketBufferBytes));

  const auto bind_port = [&](uint16_t port) {
    if (family_ == AF_INET6) {
      sockaddr_in6 address{};
      address.sin6_family = AF_INET6;
      address.sin6_addr = in6addr_any;
      address.sin6_port = htons(port);
      return ::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    address.sin_port = htons(port);
    return ::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  };
  int rc = -1;
  if (port_base != 0) {
    // No SO_REUSEADDR: a device's port is its own. Another device on this host (another
    // process with the same configuration) takes the next one.
    for (int i = 0; i < kPortBaseTries && port_base + i <= 65535 && rc != 0; ++i) {
      rc = bind_port(static_cast<uint16_t>(port_base + i));
    }
  } else {
    rc = bind_port(0);
  }
  if (rc != 0) {
    Status status = errno_status(
        Errc::kBusy,
        "binding the datagram socket" +
            (port_base != 0 ? " from tcp_port_base " + std::to_string(port_base) : std::string()));
    ::close(fd_);
    fd_ = -1;
    return status;
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &length);
  port_ = SocketAddress(reinterpret_cast<const sockaddr*>(&bound), length).port();
  return Status::ok();
}

Status UdpWire::start(soft::Progress& progress) {
  progress_ = &progress;
  return progress.add(fd_, EPOLLIN,
                      std::make_shared<SocketHandler>(shared_from_this(), fd_, false, nullptr));
}

UdpWireCounters UdpWire::counters() const {
  UdpWireCounters result;
  result.received = counters_.received.load(std::memory_order_relaxed);
  result.delivered = counters_.delivered.load(std::memory_order_relaxed);
  result.malformed = counters_.malformed.load(std::memory_order_relaxed);
  result.oversize = counters_.oversize.load(std::memory_order_relaxed);
  result.unknown_destination = counters_.unknown_destination.load(std::memory_order_relaxed);
  result.qkey_mismatch = counters_.qkey_mismatch.load(std::memory_order_relaxed);
  result.no_receive = counters_.no_receive.load(std::memory_order_relaxed);
  result.not_ready = counters_.not_ready.load(std::memory_order_relaxed);
  result.lost_sends = counters_.lost_sends.load(std::memory_order_relaxed);
  return result;
}

// ---- Sending ----

Status UdpWire::resolve(const AddressVector& address, soft::WireAddress& out) const {
  if (address.destination_port == 0) {
    return Status(Errc::kInvalidArgument,
                  "the address vector has no destination_port (the peer device's UDP port)");
  }
  Gid gid = address.destination_gid;
  if (std::array<uint8_t, 4> group; soft::ipv4_group_of(gid, group)) {
    // An IPv4 group in its IPoIB spelling goes out as the IPv4 address it names.
    gid = Gid{};
    gid.raw[10] = 0xff;
    gid.raw[11] = 0xff;
    std::memcpy(&gid.raw[12], group.data(), 4);
  }
  const bool mapped = soft::is_ipv4_mapped(gid);
  if (mapped ? (gid.raw[12] | gid.raw[13] | gid.raw[14] | gid.raw[15]) == 0 : gid == Gid{}) {
    return Status(Errc::kInvalidArgument, "the address vector's destination_gid is unspecified");
  }
  if (!mapped && gid.raw[0] == 0xfe && (gid.raw[1] & 0xc0) == 0x80) {
    return Status(Errc::kNotSupported, "link-local IPv6 destination " + to_string(gid) +
                                           " needs an interface scope a GID cannot carry");
  }
  if (family_ == AF_INET6) {
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_port = htons(address.destination_port);
    std::memcpy(&to.sin6_addr, gid.raw.data(), 16);
    static_assert(sizeof(to) <= sizeof(out.bytes));
    std::memcpy(out.bytes.data(), &to, sizeof(to));
    out.length = sizeof(to);
    return Status::ok();
  }
  if (!mapped) {
    return Status(Errc::kNotSupported, "IPv6 destination " + to_string(gid) +
                                           " but this host's datagram socket is IPv4 only");
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(address.destination_port);
  std::memcpy(&to.sin_addr, &gid.raw[12], 4);
  std::memcpy(out.bytes.data(), &to, sizeof(to));
  out.length = sizeof(to);
  return Status::ok();
}

soft::SendResult UdpWire::send(const soft::WireAddress& to, const soft::DatagramHeader& header,
                               std::span<const soft::Segment> payload, int& error) {
  std::array<std::byte, kDatagramHeaderBytes> bytes;
  encode_datagram_header(header, bytes);
  iovec iov[1 + soft::kMaxSge];
  iov[0] = {bytes.data(), bytes.size()};
  size_t count = 1;
  for (const soft::Segment& segment : payload) {
    if (segment.length == 0) continue;
    iov[count++] = {segment.address, segment.length};
  }
  msghdr message{};
  message.msg_name = const_cast<std::byte*>(to.bytes.data());
  message.msg_namelen = to.length;
  message.msg_iov = iov;
  message.msg_iovlen = count;
  for (;;) {
    if (::sendmsg(fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return soft::SendResult::kSent;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return soft::SendResult::kWouldBlock;
    error = errno;
    counters_.lost_sends.fetch_add(1, std::memory_order_relaxed);
    return soft::SendResult::kLost;
  }
}

void UdpWire::wait_writable(uint32_t qp_number) {
  std::lock_guard lock(writable_mutex_);
  writable_waiters_.push_back(qp_number);
  if (!watching_writable_ && progress_ != nullptr) {
    watching_writable_ = true;
    (void)progress_->modify(fd_, EPOLLIN | EPOLLOUT);
  }
}

// ---- Registry ----

Status UdpWire::attach(uint32_t qp_number, soft::DatagramReceiver* receiver) {
  std::unique_lock lock(registry_mutex_);
  if (!receivers_.emplace(qp_number, receiver).second) {
    return Status(Errc::kBusy, "QP number " + std::to_string(qp_number) + " is already attached");
  }
  return Status::ok();
}

void UdpWire::detach(uint32_t qp_number) {
  std::unique_lock lock(registry_mutex_);
  receivers_.erase(qp_number);
  std::erase_if(memberships_,
                [qp_number](const Membership& entry) { return entry.qp_number == qp_number; });
}

Status UdpWire::attach_multicast(const Gid& any_group, uint32_t qp_number) {
  const Gid group = soft::canonical_group(any_group);
  std::unique_lock lock(registry_mutex_);
  if (receivers_.find(qp_number) == receivers_.end()) {
    return Status(Errc::kNotFound, "QP " + std::to_string(qp_number) + " is not on this wire");
  }
  size_t groups = 0;
  for (size_t i = 0; i < memberships_.size(); ++i) {
    Membership& entry = memberships_[i];
    if (entry.group == group && entry.qp_number == qp_number) {
      ++entry.count;
      return Status::ok();
    }
    // Count distinct groups: an entry is the first of its group if none before it matches.
    const bool first = std::none_of(memberships_.begin(), memberships_.begin() + i,
                                    [&](const Membership& e) { return e.group == entry.group; });
    if (first) ++groups;
  }
  const bool new_group = std::none_of(memberships_.begin(), memberships_.end(),
                                      [&](const Membership& e) { return e.group == group; });
  if (new_group && groups >= kMaxMulticastGroups) {
    return Status(Errc::kNoMemory, "the device is attached to its limit of " +
                                       std::to_string(kMaxMulticastGroups) + " multicast groups");
  }
  memberships_.push_back({group, qp_number, 1});
  return Status::ok();
}

Status UdpWire::detach_multicast(const Gid& any_group, uint32_t qp_number) {
  const Gid group = soft::canonical_group(any_group);
  std::unique_lock lock(registry_mutex_);
  for (auto it = memberships_.begin(); it != memberships_.end(); ++it) {
    if (it->group == group && it->qp_number == qp_number) {
      if (--it->count == 0) memberships_.erase(it);
      return Status::ok();
    }
  }
  return Status(Errc::kNotFound,
                "QP " + std::to_string(qp_number) + " is not attached to " + to_string(group));
}

// ---- Multicast membership of the host ----

Status check_group_address(const SocketAddress& group) {
  if (group.family() != AF_INET ||
      !IN_MULTICAST(ntohl(reinterpret_cast<const sockaddr_in*>(group.get())->sin_addr.s_addr))) {
    return Status(Errc::kInvalidArgument,
                  group.to_string() + " is not an IPv4 multicast group (224.0.0.0/4)");
  }
  if (group.port() == 0) {
    return Status(Errc::kInvalidArgument,
                  "multicast group " + group.to_string() + " needs a port: members receive on it");
  }
  return Status::ok();
}

Status UdpWire::join_group(const SocketAddress& group) {
  if (Status status = check_group_address(group); !status) return status;
  if (!multicast_status_) return multicast_status_;
  if (progress_ == nullptr) return Status(Errc::kInvalidState, "datagram wire not started");
  std::lock_guard lock(groups_mutex_);
  for (GroupSocket& existing : groups_) {
    if (existing.address == group) {
      ++existing.users;
      return Status::ok();
    }
  }
  if (groups_.size() >= kMaxMulticastGroups) {
    return Status(Errc::kNoMemory, "the device joined its limit of " +
                                       std::to_string(kMaxMulticastGroups) + " multicast groups");
  }
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status(Errc::kIoError, "multicast socket");
  const int one = 1;
  const int zero = 0;
  // Several devices (processes) of one host share the group's port; each gets every datagram.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // Bound to the group address, the socket hears only this group, not others on the port.
  ::setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof(zero));
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBufferBytes, sizeof(kSocketBufferBytes));
  ip_mreqn membership{};
  membership.imr_multiaddr = reinterpret_cast<const sockaddr_in*>(group.get())->sin_addr;
  membership.imr_address.s_addr = htonl(INADDR_ANY);
  Status status;
  if (::bind(fd, group.get(), group.length()) != 0) {
    status = errno_status(errno == EADDRINUSE ? Errc::kBusy : Errc::kIoError,
                          "binding multicast group " + group.to_string());
  } else if (::setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &membership, sizeof(membership)) !=
             0) {
    status = errno_status(Errc::kIoError, "joining multicast group " + group.to_string());
  }
  if (!status) {
    ::close(fd);
    return status;
  }
  const Gid gid = soft::canonical_group(gid_of_address(group));
  // The handler owns the socket from here: it closes it once the progress thread lets it go.
  status = progress_->add(fd, EPOLLIN,
                          std::make_shared<SocketHandler>(shared_from_this(), fd, true, &gid));
  if (!status) return status;
  groups_.push_back({group, fd, 1});
  return Status::ok();
}

Status UdpWire::leave_group(const SocketAddress& group) {
  std::lock_guard lock(groups_mutex_);
  for (auto it = groups_.begin(); it != groups_.end(); ++it) {
    if (it->address == group) {
      if (--it->users == 0) {
        progress_->remove(it->fd);
        groups_.erase(it);
      }
      return Status::ok();
    }
  }
  return Status(Errc::kNotFound, "the device is not in multicast group " + group.to_string());
}

// ---- Receiving (progress thread) ----

void UdpWire::on_events(int fd, uint32_t events, const Gid* group) {
  if ((events & EPOLLOUT) != 0 && fd == fd_) {
    {
      std::lock_guard lock(writable_mutex_);
      resuming_.swap(writable_waiters_);
      watching_writable_ = false;
      (void)progress_->modify(fd_, EPOLLIN);
    }
    resume_sends(resuming_);
    resuming_.clear();
  }
  if ((events & EPOLLERR) != 0) {
    // Clears a pending socket error so that level-triggered epoll does not spin on it.
    int error = 0;
    socklen_t length = sizeof(error);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
  }
  if ((events & (EPOLLIN | EPOLLERR)) != 0) receive(fd, group);
}

void UdpWire::receive(int fd, const Gid* group) {
  for (int i = 0; i < kReceiveBatch; ++i) {
    // MSG_TRUNC: the result is the datagram's real length, so an oversize one is recognised.
    const ssize_t n = ::recv(fd, staging_.data(), staging_.size(), MSG_TRUNC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // drained (EAGAIN), or an error the next wake-up clears
    }
    counters_.received.fetch_add(1, std::memory_order_relaxed);
    if (static_cast<size_t>(n) > staging_.size()) {
      counters_.oversize.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const std::span<const std::byte> datagram(staging_.data(), static_cast<size_t>(n));
    soft::DatagramHeader header;
    if (decode_datagram_header(datagram, header) != HeaderCheck::kOk) {
      counters_.malformed.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const auto payload = datagram.subspan(kDatagramHeaderBytes);
    const bool to_group = header.destination_qp_number == kMulticastQpNumber;
    if (to_group != (group != nullptr)) {
      // Group traffic must come to a group socket and name the multicast QP, and vice versa.
      counters_.unknown_destination.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    deliver(header, payload, group);
  }
}

void UdpWire::deliver(const soft::DatagramHeader& header, std::span<const std::byte> payload,
                      const Gid* group) {
  if (group != nullptr) {
    deliver_multicast(*group, header, payload);
  } else {
    deliver_unicast(header, payload);
  }
}

void UdpWire::resume_sends(std::span<const uint32_t> qp_numbers) {
  std::shared_lock lock(registry_mutex_);
  for (const uint32_t qp_number : qp_numbers) {
    if (auto it = receivers_.find(qp_number); it != receivers_.end()) it->second->resume_sends();
  }
}

void UdpWire::count(soft::DeliverResult result) {
  switch (result) {
    case soft::DeliverResult::kDelivered:
      counters_.delivered.fetch_add(1, std::memory_order_relaxed);
      return;
    case soft::DeliverResult::kQkeyMismatch:
      counters_.qkey_mismatch.fetch_add(1, std::memory_order_relaxed);
      return;
    case soft::DeliverResult::kNoReceive:
      counters_.no_receive.fetch_add(1, std::memory_order_relaxed);
      return;
    case soft::DeliverResult::kNotReady:
      counters_.not_ready.fetch_add(1, std::memory_order_relaxed);
      return;
  }
}

void UdpWire::deliver_unicast(const soft::DatagramHeader& header,
                              std::span<const std::byte> payload) {
  std::shared_lock lock(registry_mutex_);
  auto it = receivers_.find(header.destination_qp_number);
  if (it == receivers_.end()) {
    counters_.unknown_destination.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  count(it->second->deliver(header, payload));
}

void UdpWire::deliver_multicast(const Gid& group, const soft::DatagramHeader& header,
                                std::span<const std::byte> payload) {
  std::shared_lock lock(registry_mutex_);
  bool any = false;
  for (const Membership& entry : memberships_) {
    if (entry.group != group) continue;
    auto it = receivers_.find(entry.qp_number);
    if (it == receivers_.end()) continue;
    any = true;
    // Every attached QP gets its own copy, the sender's included (verbs multicast loopback).
    count(it->second->deliver(header, payload));
  }
  if (!any) counters_.unknown_destination.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace wv::verbs::tcp
