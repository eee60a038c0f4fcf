#include "udp_endpoint.h"

#include <arpa/inet.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "ddp_rdmap.h"
#include "soft_datagram_queue_pair.h"
#include "tcp_provider.h"

namespace wv::verbs::tcp {
namespace {

constexpr uint16_t kLookupMagic = 0x574c;
constexpr uint8_t kLookupVersion = 1;
constexpr uint8_t kTypeRequest = 1;
constexpr uint8_t kTypeAccept = 2;
constexpr uint8_t kTypeReject = 3;
constexpr size_t kRecentLookups = 256;  // answered lookups remembered for retransmissions
constexpr int kReceiveBatch = 64;

using Clock = std::chrono::steady_clock;

uint64_t random_id() {
  uint64_t id = 0;
  if (::getrandom(&id, sizeof(id), 0) != sizeof(id)) {
    id = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  return id;
}

struct AcceptFields {
  uint16_t port = 0;
  uint32_t qp_number = 0;
  uint32_t qkey = 0;
  Gid gid;
};

std::vector<std::byte> encode_lookup(uint8_t type, uint64_t id,
                                     std::span<const std::byte> private_data,
                                     const AcceptFields& accept = {}) {
  std::vector<std::byte> message(kLookupHeaderBytes + private_data.size());
  std::byte* at = message.data();
  store_be16(at, kLookupMagic);
  at[2] = static_cast<std::byte>(kLookupVersion);
  at[3] = static_cast<std::byte>(type);
  store_be64(at + 4, id);
  store_be16(at + 12, static_cast<uint16_t>(private_data.size()));
  store_be16(at + 14, accept.port);
  store_be32(at + 16, accept.qp_number);
  store_be32(at + 20, accept.qkey);
  std::memcpy(at + 24, accept.gid.raw.data(), 16);
  if (!private_data.empty()) {
    std::memcpy(at + kLookupHeaderBytes, private_data.data(), private_data.size());
  }
  return message;
}

// Checks a whole message; returns its type (0: malformed) and id.
uint8_t check_lookup(std::span<const std::byte> message, uint64_t& id) {
  if (message.size() < kLookupHeaderBytes) return 0;
  const std::byte* at = message.data();
  const auto type = static_cast<uint8_t>(at[3]);
  if (load_be16(at) != kLookupMagic || static_cast<uint8_t>(at[2]) != kLookupVersion) return 0;
  if (type != kTypeRequest && type != kTypeAccept && type != kTypeReject) return 0;
  const size_t length = load_be16(at + 12);
  if (length > kLookupMaxPrivateData || message.size() != kLookupHeaderBytes + length) return 0;
  id = load_be64(at + 4);
  return type;
}

std::span<const std::byte> private_data_of(std::span<const std::byte> message) {
  return message.subspan(kLookupHeaderBytes);
}

AddressVector address_vector(const Gid& gid, uint16_t port) {
  AddressVector address;
  address.destination_gid = gid;
  address.destination_port = port;
  address.global_route = true;
  return address;
}

// Reads one datagram with the local address it arrived at (IP_PKTINFO / IPV6_PKTINFO).
ssize_t receive_message(int fd, std::vector<std::byte>& buffer, SocketAddress& from,
                        SocketAddress& to) {
  sockaddr_storage source{};
  iovec iov{buffer.data(), buffer.size()};
  alignas(cmsghdr) char control[256];
  msghdr message{};
  message.msg_name = &source;
  message.msg_namelen = sizeof(source);
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  const ssize_t n = ::recvmsg(fd, &message, MSG_DONTWAIT | MSG_TRUNC);
  if (n < 0) return n;
  from = SocketAddress(reinterpret_cast<const sockaddr*>(&source), message.msg_namelen);
  to = SocketAddress();
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      sockaddr_in local{};
      local.sin_family = AF_INET;
      local.sin_addr = info.ipi_addr;
      to = SocketAddress(reinterpret_cast<const sockaddr*>(&local), sizeof(local));
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      sockaddr_in6 local{};
      local.sin6_family = AF_INET6;
      local.sin6_addr = info.ipi6_addr;
      to = SocketAddress(reinterpret_cast<const sockaddr*>(&local), sizeof(local));
    }
  }
  return n;
}

bool is_unspecified(const Gid& gid) {
  if (gid == Gid{}) return true;
  // IPv4-mapped 0.0.0.0
  Gid mapped_any;
  mapped_any.raw[10] = 0xff;
  mapped_any.raw[11] = 0xff;
  return gid == mapped_any;
}

class EndpointHandler final : public soft::PollHandler {
 public:
  EndpointHandler(std::weak_ptr<UdpDatagramEndpoint> endpoint,
                  std::shared_ptr<UdpDatagramEndpoint::Socket> socket)
      : endpoint_(std::move(endpoint)), socket_(std::move(socket)) {}
  void on_events(uint32_t) override {
    if (auto endpoint = endpoint_.lock()) endpoint->on_readable();
  }
  void on_deadline() override {
    if (auto endpoint = endpoint_.lock()) endpoint->on_deadline();
  }

 private:
  std::weak_ptr<UdpDatagramEndpoint> endpoint_;
  // Keeps the fd open while the progress thread may still look at it.
  std::shared_ptr<UdpDatagramEndpoint::Socket> socket_;
};

}  // namespace

UdpDatagramEndpoint::Socket::~Socket() {
  if (fd >= 0) ::close(fd);
}

UdpDatagramEndpoint::UdpDatagramEndpoint(std::shared_ptr<TcpProvider> provider,
                                         std::shared_ptr<soft::SoftDevice> device,
                                         std::shared_ptr<UdpWire> wire,
                                         std::shared_ptr<GroupMembership> membership)
    : provider_(std::move(provider)),
      device_(std::move(device)),
      wire_(std::move(wire)),
      membership_(membership ? std::move(membership) : wire_) {}

UdpDatagramEndpoint::~UdpDatagramEndpoint() {
  for (Joined& joined : joined_) {
    (void)joined.qp->detach_multicast(gid_of_address(joined.group), 0);
    (void)membership_->leave_group(joined.group);
  }
  if (role_ == Role::kRequest) {
    // Abandoned without an answer: say no now rather than let the asker time out.
    (void)answer_locked(encode_lookup(kTypeReject, record_->id, {}));
  }
  if (watched_) device_->progress().remove(socket_->fd);
}

Status UdpDatagramEndpoint::open_socket_locked(int family) {
  const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status(Errc::kIoError, "datagram endpoint socket");
  auto socket = std::make_shared<Socket>(fd);
  const int one = 1;
  // Lets a listen on a specific address share its port with a wildcard listen; the kernel
  // hands a lookup to the most specific one.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // The local address a lookup arrived at is the one the asker can reach the device at.
  if (family == AF_INET) {
    ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
  } else {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
  }
  socket_ = std::move(socket);
  family_ = family;
  return Status::ok();
}

Status UdpDatagramEndpoint::bind_locked(const SocketAddress& address) {
  if (role_ != Role::kIdle || socket_) {
    return Status(Errc::kInvalidState, "bind needs a fresh endpoint");
  }
  if (address.empty()) return Status(Errc::kInvalidArgument, "bind to an empty address");
  if (Status status = open_socket_locked(address.family()); !status) return status;
  if (::bind(socket_->fd, address.get(), address.length()) != 0) {
    Status status = errno_status(errno == EADDRINUSE ? Errc::kBusy : Errc::kInvalidArgument,
                                 "bind " + address.to_string());
    socket_.reset();
    return status;
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(socket_->fd, reinterpret_cast<sockaddr*>(&bound), &length);
  local_ = SocketAddress(reinterpret_cast<const sockaddr*>(&bound), length);
  role_ = Role::kBound;
  return Status::ok();
}

Status UdpDatagramEndpoint::bind(const SocketAddress& address) {
  std::lock_guard lock(mutex_);
  return bind_locked(address);
}

Status UdpDatagramEndpoint::listen(int backlog) {
  if (backlog <= 0) return Status(Errc::kInvalidArgument, "listen backlog must be positive");
  std::lock_guard lock(mutex_);
  if (role_ == Role::kIdle) {
    // Listening without a bind serves every address on an ephemeral port.
    if (Status status = bind_locked(SocketAddress::ipv4_any(0)); !status) return status;
  }
  if (role_ != Role::kBound) {
    return Status(Errc::kInvalidState, "listen needs an idle or bound endpoint");
  }
  backlog_ = static_cast<size_t>(backlog);
  role_ = Role::kListening;
  if (!watched_) {
    receive_buffer_.resize(kLookupHeaderBytes + kLookupMaxPrivateData + 1);
    Status status = device_->progress().add(
        socket_->fd, EPOLLIN, std::make_shared<EndpointHandler>(weak_from_this(), socket_));
    if (!status) return status;
    watched_ = true;
  }
  return Status::ok();
}

Operation<std::shared_ptr<DatagramEndpoint>> UdpDatagramEndpoint::get_request() {
  using Op = Operation<std::shared_ptr<DatagramEndpoint>>;
  std::lock_guard lock(mutex_);
  if (role_ != Role::kListening) {
    return Op::done(Status(Errc::kInvalidState, "get_request needs a listening endpoint"));
  }
  if (!requests_.empty()) {
    auto request = std::move(requests_.front());
    requests_.pop_front();
    return Op::done(std::move(request));
  }
  auto [operation, completer] = Op::make();
  request_waiters_.push_back(completer);
  return std::move(operation);
}

// ---- Looking up ----

Operation<DatagramPeer> UdpDatagramEndpoint::lookup(const SocketAddress& destination,
                                                    std::span<const std::byte> private_data,
                                                    std::chrono::milliseconds timeout) {
  using Op = Operation<DatagramPeer>;
  if (private_data.size() > kLookupMaxPrivateData) {
    return Op::done(Status(Errc::kInvalidArgument,
                           "lookup private data of " + std::to_string(private_data.size()) +
                               " bytes exceeds " + std::to_string(kLookupMaxPrivateData)));
  }
  if (destination.empty() || destination.is_wildcard() || destination.port() == 0) {
    return Op::done(Status(Errc::kInvalidArgument, "cannot look up at " + destination.to_string()));
  }
  if (timeout.count() <= 0) {
    timeout = std::chrono::milliseconds(provider_->settings().connect_timeout_ms);
  }
  std::unique_lock lock(mutex_);
  if (role_ == Role::kRequest || role_ == Role::kAccepted || role_ == Role::kRejected) {
    return Op::done(
        Status(Errc::kInvalidState, "an endpoint from get_request answers; it cannot look up"));
  }
  if (lookup_.pending()) {
    return Op::done(Status(Errc::kBusy, "a lookup is already pending on this endpoint"));
  }
  if (!socket_) {
    if (Status status = open_socket_locked(destination.family()); !status) {
      return Op::done(status);
    }
  } else if (family_ != destination.family()) {
    return Op::done(
        Status(Errc::kInvalidArgument, "the endpoint's socket is " +
                                           std::string(family_ == AF_INET ? "IPv4" : "IPv6") +
                                           ", it cannot reach " + destination.to_string()));
  }
  if (!watched_) {
    receive_buffer_.resize(kLookupHeaderBytes + kLookupMaxPrivateData + 1);
    Status status = device_->progress().add(
        socket_->fd, EPOLLIN, std::make_shared<EndpointHandler>(weak_from_this(), socket_));
    if (!status) return Op::done(status);
    watched_ = true;
  }
  auto [operation, completer] = Op::make();
  lookup_ = completer;
  lookup_id_ = random_id();
  lookup_destination_ = destination;
  lookup_message_ = encode_lookup(kTypeRequest, lookup_id_, private_data);
  lookup_timeout_ = timeout;
  lookup_interval_ = std::max(timeout / kLookupAttempts, std::chrono::milliseconds(1));
  lookup_end_ = Clock::now() + timeout;
  answer_ = DatagramPeer();
  const ssize_t sent = ::sendto(socket_->fd, lookup_message_.data(), lookup_message_.size(),
                                MSG_NOSIGNAL, destination.get(), destination.length());
  if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
    Status status = errno_status(Errc::kUnreachable, "lookup at " + destination.to_string());
    lookup_ = Completer<DatagramPeer>();
    lock.unlock();
    completer.complete(status);
    return std::move(operation);
  }
  // A cancelled lookup needs nothing undone: the deadline and any late answer find it done.
  device_->progress().set_deadline(socket_->fd,
                                   std::min(Clock::now() + lookup_interval_, lookup_end_));
  return std::move(operation);
}

void UdpDatagramEndpoint::on_deadline() {
  std::unique_lock lock(mutex_);
  if (!lookup_.pending()) return;
  const auto now = Clock::now();
  if (now >= lookup_end_) {
    Completer<DatagramPeer> completer = std::move(lookup_);
    lookup_ = Completer<DatagramPeer>();
    const std::string where = lookup_destination_.to_string();
    lock.unlock();
    completer.complete(Status(Errc::kTimedOut, "no answer to the lookup at " + where + " within " +
                                                   std::to_string(lookup_timeout_.count()) +
                                                   " ms (" + std::to_string(kLookupAttempts) +
                                                   " attempts)"));
    return;
  }
  send_lookup_locked();
  device_->progress().set_deadline(socket_->fd, std::min(now + lookup_interval_, lookup_end_));
}

void UdpDatagramEndpoint::send_lookup_locked() {
  // A lost retransmission is what the next one is for: errors are not fatal here.
  (void)::sendto(socket_->fd, lookup_message_.data(), lookup_message_.size(), MSG_NOSIGNAL,
                 lookup_destination_.get(), lookup_destination_.length());
}

void UdpDatagramEndpoint::on_answer(std::span<const std::byte> message, uint8_t type, uint64_t id) {
  std::unique_lock lock(mutex_);
  if (!lookup_.pending() || id != lookup_id_) return;  // late, duplicate or stray
  const std::byte* at = message.data();
  DatagramPeer peer;
  const auto data = private_data_of(message);
  peer.private_data.assign(data.begin(), data.end());
  Status refusal;
  if (type == kTypeAccept) {
    const uint16_t port = load_be16(at + 14);
    const uint32_t qp_number = load_be32(at + 16);
    if (port == 0 || qp_number > kMulticastQpNumber) return;  // malformed: keep waiting
    Gid gid;
    std::memcpy(gid.raw.data(), at + 24, 16);
    if (is_unspecified(gid)) gid = gid_of_address(lookup_destination_);
    peer.address = address_vector(gid, port);
    peer.qp_number = qp_number;
    peer.qkey = load_be32(at + 20);
  } else {
    refusal = Status(Errc::kRejected, "the lookup at " + lookup_destination_.to_string() +
                                          " was rejected (" + std::to_string(data.size()) +
                                          " bytes of private data in request())");
  }
  answer_ = peer;
  Completer<DatagramPeer> completer = std::move(lookup_);
  lookup_ = Completer<DatagramPeer>();
  device_->progress().clear_deadline(socket_->fd);
  lock.unlock();
  if (refusal.is_ok()) {
    completer.complete(std::move(peer));
  } else {
    completer.complete(std::move(refusal));
  }
}

// ---- Listening ----

void UdpDatagramEndpoint::on_readable() {
  for (int i = 0; i < kReceiveBatch; ++i) {
    SocketAddress from;
    SocketAddress to;
    int fd;
    {
      std::lock_guard lock(mutex_);
      fd = socket_->fd;
    }
    const ssize_t n = receive_message(fd, receive_buffer_, from, to);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (static_cast<size_t>(n) > receive_buffer_.size()) continue;  // too long: not ours
    const std::span<const std::byte> message(receive_buffer_.data(), static_cast<size_t>(n));
    uint64_t id = 0;
    const uint8_t type = check_lookup(message, id);
    if (type == kTypeRequest) {
      on_request(id, from, to, private_data_of(message));
    } else if (type != 0) {
      on_answer(message, type, id);
    }
  }
}

void UdpDatagramEndpoint::on_request(uint64_t id, const SocketAddress& from,
                                     const SocketAddress& to,
                                     std::span<const std::byte> private_data) {
  std::unique_lock lock(mutex_);
  if (role_ != Role::kListening) return;
  for (const auto& record : recent_) {
    if (record->id != id || !(record->from == from)) continue;
    // A retransmission: repeat the answer if there is one; a pending one answers later.
    std::lock_guard record_lock(record->mutex);
    if (!record->answer.empty()) {
      (void)::sendto(socket_->fd, record->answer.data(), record->answer.size(), MSG_NOSIGNAL,
                     from.get(), from.length());
    }
    return;
  }
  // Over the backlog the request is dropped unrecorded: its retransmission may find room.
  if (requests_.size() >= backlog_) return;
  auto record = std::make_shared<Record>();
  record->id = id;
  record->from = from;
  recent_.push_back(record);
  if (recent_.size() > kRecentLookups) recent_.pop_front();

  auto child = std::make_shared<UdpDatagramEndpoint>(provider_, device_, wire_, membership_);
  child->role_ = Role::kRequest;
  child->socket_ = socket_;
  child->local_ = local_;
  child->record_ = std::move(record);
  child->arrived_at_ = !to.empty() ? to : local_;
  child->request_.address = address_vector(gid_of_address(from), from.port());
  child->request_.private_data.assign(private_data.begin(), private_data.end());

  Completer<std::shared_ptr<DatagramEndpoint>> waiter;
  while (!request_waiters_.empty()) {
    waiter = std::move(request_waiters_.front());
    request_waiters_.pop_front();
    if (waiter.pending()) break;
    waiter = Completer<std::shared_ptr<DatagramEndpoint>>();
  }
  if (!waiter) {
    requests_.push_back(std::move(child));
    return;
  }
  lock.unlock();
  if (!waiter.complete(std::shared_ptr<DatagramEndpoint>(child))) {
    std::lock_guard relock(mutex_);
    requests_.push_back(std::move(child));
  }
}

Status UdpDatagramEndpoint::answer_locked(std::vector<std::byte> message) {
  const ssize_t sent = ::sendto(socket_->fd, message.data(), message.size(), MSG_NOSIGNAL,
                                record_->from.get(), record_->from.length());
  const int error = errno;
  {
    // Kept even if this send failed: the asker retransmits and gets it then.
    std::lock_guard record_lock(record_->mutex);
    record_->answer = std::move(message);
  }
  if (sent < 0 && error != EAGAIN && error != EWOULDBLOCK && error != ENOBUFS) {
    return Status(Errc::kUnreachable,
                  "answering " + record_->from.to_string() + ": " + std::strerror(error));
  }
  return Status::ok();
}

Result<std::shared_ptr<soft::SoftDatagramQueuePair>> UdpDatagramEndpoint::own_queue_pair(
    const std::shared_ptr<DatagramQueuePair>& qp) const {
  if (!qp) return Status(Errc::kInvalidArgument, "no queue pair given");
  auto soft_qp = std::dynamic_pointer_cast<soft::SoftDatagramQueuePair>(qp);
  if (!soft_qp || &soft_qp->device() != device_.get()) {
    return Status(Errc::kInvalidArgument, "the QP belongs to another device");
  }
  return soft_qp;
}

Operation<void> UdpDatagramEndpoint::accept(std::shared_ptr<DatagramQueuePair> qp,
                                            std::span<const std::byte> private_data) {
  using Op = Operation<void>;
  if (private_data.size() > kLookupMaxPrivateData) {
    return Op::done(
        Status(Errc::kInvalidArgument,
               "accept private data exceeds " + std::to_string(kLookupMaxPrivateData) + " bytes"));
  }
  auto soft_qp = own_queue_pair(qp);
  if (!soft_qp.is_ok()) return Op::done(soft_qp.status());
  std::lock_guard lock(mutex_);
  if (role_ != Role::kRequest) {
    return Op::done(
        Status(Errc::kInvalidState, "accept needs an unanswered endpoint from get_request"));
  }
  AcceptFields fields;
  fields.port = wire_->port();
  fields.qp_number = (*soft_qp)->number();
  fields.qkey = (*soft_qp)->qkey();
  // The device socket listens on every address, so the one the lookup reached works; a
  // wildcard (unknown) leaves the GID zero and the asker uses the address it sent to.
  if (!arrived_at_.empty() && !arrived_at_.is_wildcard()) {
    fields.gid = gid_of_address(arrived_at_);
  }
  role_ = Role::kAccepted;
  // UDP has no handshake to wait for: the answer is out (or will be repeated) now.
  return Op::done(answer_locked(encode_lookup(kTypeAccept, record_->id, private_data, fields)));
}

Status UdpDatagramEndpoint::reject(std::span<const std::byte> private_data) {
  if (private_data.size() > kLookupMaxPrivateData) {
    return Status(Errc::kInvalidArgument, "reject private data exceeds " +
                                              std::to_string(kLookupMaxPrivateData) + " bytes");
  }
  std::lock_guard lock(mutex_);
  if (role_ != Role::kRequest) {
    return Status(Errc::kInvalidState, "reject needs an unanswered endpoint from get_request");
  }
  role_ = Role::kRejected;
  return answer_locked(encode_lookup(kTypeReject, record_->id, private_data));
}

DatagramPeer UdpDatagramEndpoint::request() const {
  std::lock_guard lock(mutex_);
  if (record_) return request_;
  return answer_;
}

SocketAddress UdpDatagramEndpoint::local_address() const {
  std::lock_guard lock(mutex_);
  return local_;
}

// ---- Multicast ----

Operation<DatagramPeer> UdpDatagramEndpoint::join_multicast(std::shared_ptr<DatagramQueuePair> qp,
                                                            const SocketAddress& group) {
  using Op = Operation<DatagramPeer>;
  auto soft_qp = own_queue_pair(qp);
  if (!soft_qp.is_ok()) return Op::done(soft_qp.status());
  if (Status status = membership_->join_group(group); !status) return Op::done(status);
  // The IPoIB spelling of the group, so that Gid::is_multicast() holds for it.
  const Gid gid = soft::canonical_group(gid_of_address(group));
  if (Status status = (*soft_qp)->attach_multicast(gid, 0); !status) {
    (void)membership_->leave_group(group);
    return Op::done(status);
  }
  {
    std::lock_guard lock(mutex_);
    joined_.push_back({group, *soft_qp});
  }
  DatagramPeer peer;
  peer.address = address_vector(gid, group.port());
  peer.qp_number = kMulticastQpNumber;
  peer.qkey = (*soft_qp)->qkey();
  return Op::done(std::move(peer));
}

Status UdpDatagramEndpoint::leave_multicast(const SocketAddress& group) {
  Joined joined;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(joined_.begin(), joined_.end(),
                           [&](const Joined& entry) { return entry.group == group; });
    if (it == joined_.end()) {
      return Status(Errc::kNotFound,
                    "this endpoint did not join multicast group " + group.to_string());
    }
    joined = std::move(*it);
    joined_.erase(it);
  }
  Status detached = joined.qp->detach_multicast(gid_of_address(group), 0);
  Status left = membership_->leave_group(group);
  return detached ? left : detached;
}

}  // namespace wv::verbs::tcp
