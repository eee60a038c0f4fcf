#include "shm_endpoint.h"

#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "shm_cma.h"
#include "shm_key_mirror.h"
#include "shm_provider.h"
#include "soft_queue_pair.h"

namespace wv::verbs::shm {
namespace {

constexpr size_t kMessageBytes = 1024;  // a handshake with the largest private data fits
static_assert(kMaxPrivateData + 400 < kMessageBytes);

uint16_t random_port() {
  uint16_t value = 0;
  if (::getrandom(&value, sizeof(value), 0) != sizeof(value))
    value = static_cast<uint16_t>(::getpid());
  // The range Linux uses for ephemeral ports, so the names look familiar.
  return static_cast<uint16_t>(32768 + value % (60999 - 32768));
}

pid_t peer_pid(int fd) {
  ucred credentials{};
  socklen_t length = sizeof(credentials);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return 0;
  return credentials.pid;
}

int open_socket() {
  return ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

// The wildcard of `address`'s family and port.
SocketAddress wildcard_of(const SocketAddress& address) {
  if (address.family() == AF_INET6) {
    sockaddr_in6 any{};
    any.sin6_family = AF_INET6;
    any.sin6_port = htons(address.port());
    any.sin6_addr = in6addr_any;
    return SocketAddress(reinterpret_cast<const sockaddr*>(&any), sizeof(any));
  }
  return SocketAddress::ipv4_any(address.port());
}

// Connects `fd` to the listen that serves `destination`: the specific name, else the wildcard.
Status connect_socket(int fd, std::string_view space, const SocketAddress& destination) {
  const SocketAddress candidates[] = {destination, wildcard_of(destination)};
  int error = ECONNREFUSED;
  for (const SocketAddress& candidate : candidates) {
    sockaddr_storage address;
    const socklen_t length = unix_address(socket_name(space, candidate), address);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), length) == 0) {
      return Status::ok();
    }
    error = errno;
    if (error != ECONNREFUSED && error != ENOENT) break;
  }
  if (error == ECONNREFUSED || error == ENOENT) {
    return Status(Errc::kConnectionRefused,
                  "nobody listens at " + destination.to_string() + " on this host (shm)");
  }
  return Status(Errc::kUnreachable,
                "connect to " + destination.to_string() + ": " + std::strerror(error));
}

// An accepted unix connection whose request is still arriving.
class IncomingHandshake final : public soft::PollHandler {
 public:
  IncomingHandshake(int fd, std::weak_ptr<ShmConnectEndpoint> listener, soft::Progress& progress)
      : fd_(fd), listener_(std::move(listener)), progress_(progress) {}
  ~IncomingHandshake() override {
    if (fd_ >= 0) ::close(fd_);
  }
  void on_events(uint32_t) override {
    if (fd_ < 0) return;
    std::array<std::byte, kMessageBytes> buffer;
    std::vector<int> fds;
    size_t got = 0;
    Status status = receive_message(fd_, buffer, &got, fds, 3);
    if (status && got == 0) return;
    Result<Handshake> request =
        status ? decode_handshake({buffer.data(), got}) : Result<Handshake>(status);
    if (!request.is_ok() || request->type != HandshakeType::kRequest ||
        fds.size() != (request->key_mirror ? 3u : 2u)) {
      for (int fd : fds) ::close(fd);
      progress_.remove(fd_);  // a malformed or abandoned request: drop the connection
      return;
    }
    const int fd = fd_;
    fd_ = -1;  // ownership moves to the request endpoint
    progress_.remove(fd);
    if (auto listener = listener_.lock()) {
      const int keys_fd = fds.size() == 3 ? fds[2] : -1;
      listener->on_incoming(fd, std::move(request).value(), fds[0], fds[1], keys_fd, peer_pid(fd));
    } else {
      ::close(fd);
      for (int descriptor : fds) ::close(descriptor);
    }
  }
  void on_deadline() override {
    if (fd_ >= 0) progress_.remove(fd_);
  }

 private:
  int fd_;
  std::weak_ptr<ShmConnectEndpoint> listener_;
  soft::Progress& progress_;
};

class Listener final : public soft::PollHandler {
 public:
  Listener(int fd, std::weak_ptr<ShmConnectEndpoint> endpoint, soft::Progress& progress,
           int64_t timeout_ms)
      : fd_(fd), endpoint_(std::move(endpoint)), progress_(progress), timeout_ms_(timeout_ms) {}
  void on_events(uint32_t) override {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      auto handshake = std::make_shared<IncomingHandshake>(fd, endpoint_, progress_);
      if (!progress_.add(fd, EPOLLIN, handshake)) continue;
      // A peer that never completes its request is dropped after the connect timeout.
      progress_.set_deadline(fd,
                             soft::Progress::Clock::now() + std::chrono::milliseconds(timeout_ms_));
    }
  }

 private:
  int fd_;
  std::weak_ptr<ShmConnectEndpoint> endpoint_;
  soft::Progress& progress_;
  int64_t timeout_ms_;
};

// The active side after its request went out: waits for the accept or reject.
class ActiveHandshake final : public soft::PollHandler {
 public:
  ActiveHandshake(int fd, std::weak_ptr<ShmConnectEndpoint> endpoint, soft::Progress& progress,
                  std::unique_ptr<Segment> segment, int doorbell_fd,
                  Completer<ConnectParameters> completer, int64_t timeout_ms)
      : fd_(fd),
        endpoint_(std::move(endpoint)),
        progress_(progress),
        segment_(std::move(segment)),
        doorbell_fd_(doorbell_fd),
        completer_(std::move(completer)),
        timeout_ms_(timeout_ms) {}
  ~ActiveHandshake() override {
    if (fd_ >= 0) ::close(fd_);
    if (doorbell_fd_ >= 0) ::close(doorbell_fd_);
  }

  void on_events(uint32_t events) override {
    if (fd_ < 0) return;
    if (!completer_.pending()) {  // cancelled
      progress_.remove(fd_);
      return;
    }
    std::array<std::byte, kMessageBytes> buffer;
    std::vector<int> fds;
    size_t got = 0;
    Status status = receive_message(fd_, buffer, &got, fds, 2);
    if (status && got == 0) {
      if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
        fail(Status(Errc::kConnectionRefused, "the shm listener closed the connection"));
      }
      return;
    }
    if (!status) {
      fail(status.code() == Errc::kDisconnected
               ? Status(Errc::kConnectionRefused,
                        "the shm listener dropped the request: " + status.message())
               : status);
      return;
    }
    auto reply = decode_handshake({buffer.data(), got});
    const bool accept = reply.is_ok() && reply->type == HandshakeType::kAccept;
    const size_t descriptors = accept ? (reply->key_mirror ? 2u : 1u) : 0u;
    if (!reply.is_ok() || reply->type == HandshakeType::kRequest || fds.size() != descriptors) {
      for (int fd : fds) ::close(fd);
      fail(reply.is_ok() ? Status(Errc::kProtocolError, "malformed shm handshake reply")
                         : reply.status());
      return;
    }
    const int fd = fd_;
    fd_ = -1;
    progress_.remove(fd);
    const int doorbell = doorbell_fd_;
    doorbell_fd_ = -1;
    if (auto endpoint = endpoint_.lock()) {
      endpoint->on_reply(fd, reply.value(), accept ? fds[0] : -1, fds.size() == 2 ? fds[1] : -1,
                         std::move(segment_), doorbell, completer_);
    } else {
      ::close(fd);
      ::close(doorbell);
      for (int descriptor : fds) ::close(descriptor);
      completer_.complete(Status(Errc::kCancelled, "endpoint destroyed during connect"));
    }
  }

  void on_deadline() override {
    fail(Status(Errc::kTimedOut,
                "no shm accept within connect_timeout_ms (" + std::to_string(timeout_ms_) + ")"));
  }

 private:
  void fail(Status status) {
    if (auto endpoint = endpoint_.lock()) endpoint->on_connect_failed();
    completer_.complete(std::move(status));
    if (fd_ >= 0) progress_.remove(fd_);
  }

  int fd_;
  std::weak_ptr<ShmConnectEndpoint> endpoint_;
  soft::Progress& progress_;
  std::unique_ptr<Segment> segment_;
  int doorbell_fd_;
  Completer<ConnectParameters> completer_;
  int64_t timeout_ms_;
};

}  // namespace

ShmConnectEndpoint::ShmConnectEndpoint(std::shared_ptr<ShmProvider> provider,
                                       std::shared_ptr<soft::SoftDevice> device,
                                       std::string_view names)
    : provider_(std::move(provider)), device_(std::move(device)), names_(names) {}

ShmConnectEndpoint::~ShmConnectEndpoint() {
  if (segment_fd_ >= 0) ::close(segment_fd_);
  if (peer_doorbell_fd_ >= 0) ::close(peer_doorbell_fd_);
  if (peer_keys_fd_ >= 0) ::close(peer_keys_fd_);
  if (fd_ < 0) return;
  if (state_ == EndpointState::kListening) {
    device_->progress().run_sync([this] { device_->progress().remove(fd_); });
  }
  ::close(fd_);
}

Status ShmConnectEndpoint::check_parameters(const ConnectParameters& parameters) const {
  if (parameters.private_data.size() > max_private_data()) {
    return Status(Errc::kInvalidArgument,
                  "private data of " + std::to_string(parameters.private_data.size()) +
                      " bytes exceeds the " + std::to_string(max_private_data()) +
                      " bytes shm carries");
  }
  return Status::ok();
}

Result<std::shared_ptr<soft::SoftConnectQueuePair>> ShmConnectEndpoint::own_queue_pair(
    const std::shared_ptr<ConnectQueuePair>& qp) const {
  if (!qp) return Status(Errc::kInvalidArgument, "no queue pair given");
  auto soft_qp = std::static_pointer_cast<soft::SoftConnectQueuePair>(qp);
  if (&soft_qp->device() != device_.get()) {
    return Status(Errc::kInvalidArgument, "the QP belongs to another device");
  }
  if (soft_qp->query().state != QpState::kInit) {
    return Status(Errc::kInvalidState, "the QP must be in init to be connected, not " +
                                           std::string(to_string(soft_qp->query().state)));
  }
  return soft_qp;
}

uint32_t ShmConnectEndpoint::offered(uint32_t wanted, uint32_t limit) const {
  return wanted == 0 ? limit : std::min(wanted, limit);
}

Status ShmConnectEndpoint::bind_locked(const SocketAddress& address) {
  if (address.empty()) return Status(Errc::kInvalidArgument, "bind to an empty address");
  if (address.family() != AF_INET && address.family() != AF_INET6) {
    return Status(Errc::kInvalidArgument, "shm binds IPv4 or IPv6 names");
  }
  const int fd = open_socket();
  if (fd < 0) return errno_status(Errc::kIoError, "socket(AF_UNIX)");
  SocketAddress bound = address;
  const bool ephemeral = address.port() == 0;
  for (int attempt = 0; attempt < (ephemeral ? 64 : 1); ++attempt) {
    if (ephemeral) bound.set_port(random_port());
    sockaddr_storage name;
    const socklen_t length = unix_address(socket_name(names_, bound), name);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&name), length) == 0) {
      fd_ = fd;
      local_ = bound;
      bound_ = true;
      return Status::ok();
    }
    if (errno != EADDRINUSE) break;
  }
  Status status = errno_status(errno == EADDRINUSE ? Errc::kBusy : Errc::kInvalidArgument,
                               "bind " + address.to_string() + " (shm)");
  ::close(fd);
  return status;
}

Status ShmConnectEndpoint::bind(const SocketAddress& address) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kIdle) {
    return Status(Errc::kInvalidState,
                  "endpoint is " + std::string(to_string(state_)) + "; bind needs idle");
  }
  if (Status status = bind_locked(address); !status) return status;
  state_ = EndpointState::kBound;
  return Status::ok();
}

Status ShmConnectEndpoint::listen(int backlog) {
  if (backlog <= 0) return Status(Errc::kInvalidArgument, "listen backlog must be positive");
  std::lock_guard lock(mutex_);
  if (state_ == EndpointState::kIdle) {
    // Listening without a bind serves every address on an ephemeral port.
    if (Status status = bind_locked(SocketAddress::ipv4_any(0)); !status) return status;
    state_ = EndpointState::kBound;
  } else if (state_ != EndpointState::kBound) {
    return Status(Errc::kInvalidState,
                  "endpoint is " + std::string(to_string(state_)) + "; listen needs bound");
  }
  if (::listen(fd_, backlog) != 0) return errno_status(Errc::kBusy, "listen");
  requests_->allow(static_cast<size_t>(backlog));
  state_ = EndpointState::kListening;
  auto listener = std::make_shared<Listener>(fd_, weak_from_this(), device_->progress(),
                                             provider_->settings().connect_timeout_ms);
  return device_->progress().add(fd_, EPOLLIN, listener);
}

void ShmConnectEndpoint::on_incoming(int fd, Handshake request, int segment_fd, int doorbell_fd,
                                     int keys_fd, pid_t pid) {
  auto child = std::make_shared<ShmConnectEndpoint>(provider_, device_, names_);
  child->fd_ = fd;
  child->state_ = EndpointState::kRequestReceived;
  child->local_ = request.destination;
  child->peer_ = request.source;
  child->peer_parameters_.private_data = request.private_data;
  child->peer_parameters_.inbound_read_depth = request.inbound_read_depth;
  child->peer_parameters_.outbound_read_depth = request.outbound_read_depth;
  child->segment_fd_ = segment_fd;
  child->peer_doorbell_fd_ = doorbell_fd;
  child->peer_keys_fd_ = keys_fd;
  child->peer_pid_ = pid;
  child->request_ = std::move(request);
  // A full backlog lets the child go; its destructor drops the connection.
  requests_->push(std::move(child));
}

Operation<std::shared_ptr<ConnectEndpoint>> ShmConnectEndpoint::get_request() {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kListening) {
    return Operation<std::shared_ptr<ConnectEndpoint>>::done(Status(
        Errc::kInvalidState,
        "get_request needs a listening endpoint, this one is " + std::string(to_string(state_))));
  }
  return requests_->pop();
}

Operation<void> ShmConnectEndpoint::resolve_address(const SocketAddress& destination,
                                                    std::chrono::milliseconds) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kIdle && state_ != EndpointState::kBound) {
    return Operation<void>::done(
        Status(Errc::kInvalidState,
               "resolve_address on a " + std::string(to_string(state_)) + " endpoint"));
  }
  if (destination.empty() || destination.is_wildcard() || destination.port() == 0) {
    return Operation<void>::done(
        Status(Errc::kInvalidArgument, "cannot connect to " + destination.to_string()));
  }
  // Host-local names need no lookup; whether somebody listens is found at connect.
  peer_ = destination;
  state_ = EndpointState::kAddressResolved;
  return Operation<void>::done(Status::ok());
}

Operation<void> ShmConnectEndpoint::resolve_route(std::chrono::milliseconds) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kAddressResolved) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "resolve_route needs a resolved address, the endpoint is " +
                                        std::string(to_string(state_))));
  }
  state_ = EndpointState::kRouteResolved;
  return Operation<void>::done(Status::ok());
}

Operation<ConnectParameters> ShmConnectEndpoint::connect(std::shared_ptr<ConnectQueuePair> qp,
                                                         const ConnectParameters& parameters) {
  using Op = Operation<ConnectParameters>;
  if (Status status = check_parameters(parameters); !status) return Op::done(status);
  auto soft_qp = own_queue_pair(qp);
  if (!soft_qp.is_ok()) return Op::done(soft_qp.status());

  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRouteResolved) {
    return Op::done(Status(Errc::kInvalidState,
                           "connect needs resolve_address and resolve_route first; the endpoint "
                           "is " +
                               std::string(to_string(state_))));
  }
  auto segment = Segment::create(provider_->settings().ring_bytes);
  if (!segment.is_ok()) return Op::done(segment.status());
  const int doorbell = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (doorbell < 0) return Op::done(errno_status(Errc::kIoError, "eventfd"));
  // A bound endpoint keeps its socket (and name); otherwise an unnamed one does.
  int fd = fd_;
  fd_ = -1;
  if (fd < 0) fd = open_socket();
  if (fd < 0) {
    ::close(doorbell);
    return Op::done(errno_status(Errc::kIoError, "socket(AF_UNIX)"));
  }
  if (!bound_) {
    local_ = peer_;
    local_.set_port(random_port());
  }
  const DeviceAttributes& limits = device_->attributes();
  offered_inbound_ = offered(parameters.inbound_read_depth, limits.max_inbound_read_depth);
  offered_outbound_ = offered(parameters.outbound_read_depth, limits.max_outbound_read_depth);
  Handshake request;
  request.type = HandshakeType::kRequest;
  request.qp_number = soft_qp.value()->number();
  request.inbound_read_depth = offered_inbound_;
  request.outbound_read_depth = offered_outbound_;
  request.probe_address = probe_address();
  request.source = local_;
  request.destination = peer_;
  request.private_data = parameters.private_data;
  std::vector<int> fds = {segment.value()->fd(), doorbell};
  offer_key_mirror(*soft_qp.value(), request, fds);
  std::vector<std::byte> bytes;
  Status status = encode_handshake(request, bytes);
  if (status) status = connect_socket(fd, names_, peer_);
  if (status) status = send_message(fd, bytes, fds);
  if (!status) {
    ::close(fd);
    ::close(doorbell);
    state_ = EndpointState::kError;
    return Op::done(status);
  }
  segment.value()->close_fd();  // the peer has its copy; the mapping stays
  qp_ = std::move(soft_qp).value();
  state_ = EndpointState::kConnecting;
  auto [operation, completer] = Op::make();
  const int64_t timeout_ms = provider_->settings().connect_timeout_ms;
  soft::Progress& progress = device_->progress();
  auto handshake = std::make_shared<ActiveHandshake>(
      fd, weak_from_this(), progress, std::move(segment).value(), doorbell, completer, timeout_ms);
  completer.set_cancel_handler(
      [&progress, fd] { progress.post([&progress, fd] { progress.remove(fd); }); });
  if (Status added = progress.add(fd, EPOLLIN | EPOLLRDHUP, handshake); !added) {
    completer.complete(added);
    return std::move(operation);
  }
  progress.set_deadline(fd, soft::Progress::Clock::now() + std::chrono::milliseconds(timeout_ms));
  return std::move(operation);
}

void ShmConnectEndpoint::offer_key_mirror(const soft::SoftConnectQueuePair& qp, Handshake& message,
                                          std::vector<int>& fds) const {
  message.domain = reinterpret_cast<uint64_t>(qp.domain());
  if (!provider_->cma().enabled) return;  // nobody reads this process by CMA
  // Without a mirror (no memfd) reads of this side go through the ring, as before.
  auto mirror = KeyMirror::of(*device_);
  if (!mirror.is_ok()) return;
  message.key_mirror = true;
  fds.push_back(mirror.value()->fd());
}

Status ShmConnectEndpoint::start_connection(std::unique_ptr<Segment> segment, int fd,
                                            int doorbell_fd, int peer_doorbell_fd,
                                            const PeerSide& peer, CmaWith cma, int side,
                                            uint32_t inbound, uint32_t outbound) {
  ConnectionOptions options;
  options.side = side;
  options.peer_pid = peer.pid;
  options.can_pull = cma.every_transfer;
  options.cma_works = cma.works;
  options.peer_qp_number = peer.qp_number;
  options.peer_domain = peer.domain;
  if (peer.keys_fd >= 0) {
    auto keys = PeerKeys::attach(peer.keys_fd);
    // A mirror that does not map only costs the one-sided reads.
    if (keys.is_ok() && cma.works) options.peer_keys = std::move(keys).value();
  }
  uint32_t peer_qp_number = peer.qp_number;
  options.rnr_timeout_ms = provider_->settings().rnr_timeout_ms;
  options.inbound_read_depth = inbound;
  events_ = std::make_shared<ConnectionEvents>();
  auto connection =
      std::make_shared<ShmConnection>(std::move(segment), fd, doorbell_fd, peer_doorbell_fd,
                                      device_->progress(), qp_, events_, options);
  // On an iWARP device (the hybrid provider's tcp device) completions name no peer QP, as
  // on its TCP connections: the wire does not change what the device reports.
  const auto port = device_->query_port(1);
  if (port.is_ok() && port->transport == Transport::kIwarp) peer_qp_number = 0;
  {
    std::lock_guard qp_lock(qp_->mutex());
    Status status = qp_->connect_locked(connection, peer_qp_number, inbound, outbound);
    if (!status) return status;
  }
  return connection->start(qp_->send_cq(), qp_->receive_cq());
}

void ShmConnectEndpoint::on_reply(int fd, const Handshake& reply, int peer_doorbell_fd, int keys_fd,
                                  std::unique_ptr<Segment> segment, int doorbell_fd,
                                  Completer<ConnectParameters>& completer) {
  std::unique_lock lock(mutex_);
  peer_parameters_.private_data = reply.private_data;
  peer_parameters_.inbound_read_depth = reply.inbound_read_depth;
  peer_parameters_.outbound_read_depth = reply.outbound_read_depth;
  if (reply.type == HandshakeType::kReject) {
    ::close(fd);
    ::close(doorbell_fd);
    if (keys_fd >= 0) ::close(keys_fd);
    state_ = EndpointState::kRejected;
    lock.unlock();
    completer.complete(Status(Errc::kRejected, "the peer rejected the connection"));
    return;
  }
  const pid_t pid = peer_pid(fd);
  CmaWith cma;
  cma.works = provider_->cma().enabled && probe_peer(pid, reply.probe_address);
  cma.every_transfer = reply.can_pull && cma.works && use_cma_with(provider_->cma(), pid);
  const uint32_t outbound = std::min(offered_outbound_, reply.inbound_read_depth);
  const PeerSide peer{pid, reply.qp_number, reply.domain, keys_fd};
  Status status = start_connection(std::move(segment), fd, doorbell_fd, peer_doorbell_fd, peer, cma,
                                   0, offered_inbound_, std::max<uint32_t>(outbound, 1));
  if (!status) {
    state_ = EndpointState::kError;
    lock.unlock();
    completer.complete(status);
    return;
  }
  state_ = EndpointState::kConnected;
  ConnectParameters result = peer_parameters_;
  lock.unlock();
  completer.complete(std::move(result));
}

void ShmConnectEndpoint::on_connect_failed() {
  std::lock_guard lock(mutex_);
  state_ = EndpointState::kError;
}

Operation<void> ShmConnectEndpoint::accept(std::shared_ptr<ConnectQueuePair> qp,
                                           const ConnectParameters& parameters) {
  if (Status status = check_parameters(parameters); !status) return Operation<void>::done(status);
  auto soft_qp = own_queue_pair(qp);
  if (!soft_qp.is_ok()) return Operation<void>::done(soft_qp.status());
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRequestReceived) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "accept needs an endpoint from get_request, this one is " +
                                        std::string(to_string(state_))));
  }
  const auto fail = [&](Status status) {
    state_ = EndpointState::kError;
    return Operation<void>::done(std::move(status));
  };
  auto segment = Segment::attach(segment_fd_);
  segment_fd_ = -1;  // owned by the segment (closed with it)
  if (!segment.is_ok()) return fail(segment.status());
  segment.value()->close_fd();
  const int doorbell = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (doorbell < 0) return fail(errno_status(Errc::kIoError, "eventfd"));
  const DeviceAttributes& limits = device_->attributes();
  const uint32_t inbound = offered(parameters.inbound_read_depth, limits.max_inbound_read_depth);
  const uint32_t outbound = offered(parameters.outbound_read_depth, limits.max_outbound_read_depth);
  CmaWith cma;
  cma.works = provider_->cma().enabled && probe_peer(peer_pid_, request_.probe_address);
  cma.every_transfer = cma.works && use_cma_with(provider_->cma(), peer_pid_);
  Handshake reply;
  reply.type = HandshakeType::kAccept;
  reply.qp_number = soft_qp.value()->number();
  reply.inbound_read_depth = inbound;
  reply.outbound_read_depth = outbound;
  reply.probe_address = probe_address();
  reply.can_pull = cma.every_transfer;
  reply.private_data = parameters.private_data;
  std::vector<int> fds = {doorbell};
  offer_key_mirror(*soft_qp.value(), reply, fds);
  std::vector<std::byte> bytes;
  Status status = encode_handshake(reply, bytes);
  if (status) status = send_message(fd_, bytes, fds);
  if (!status) {
    ::close(doorbell);
    return fail(status);
  }
  qp_ = std::move(soft_qp).value();
  const int fd = fd_;
  fd_ = -1;
  const int peer_doorbell = peer_doorbell_fd_;
  peer_doorbell_fd_ = -1;
  const PeerSide peer{peer_pid_, request_.qp_number, request_.domain, peer_keys_fd_};
  peer_keys_fd_ = -1;
  status = start_connection(std::move(segment).value(), fd, doorbell, peer_doorbell, peer, cma, 1,
                            inbound,
                            std::max<uint32_t>(std::min(outbound, request_.inbound_read_depth), 1));
  state_ = status ? EndpointState::kConnected : EndpointState::kError;
  return Operation<void>::done(status);
}

Status ShmConnectEndpoint::reject(std::span<const std::byte> private_data) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRequestReceived) {
    return Status(Errc::kInvalidState, "reject needs an endpoint from get_request, this one is " +
                                           std::string(to_string(state_)));
  }
  if (private_data.size() > max_private_data()) {
    return Status(Errc::kInvalidArgument,
                  "reject private data exceeds " + std::to_string(max_private_data()) + " bytes");
  }
  Handshake reply;
  reply.type = HandshakeType::kReject;
  reply.private_data.assign(private_data.begin(), private_data.end());
  std::vector<std::byte> bytes;
  Status status = encode_handshake(reply, bytes);
  if (status) status = send_message(fd_, bytes, {});
  ::shutdown(fd_, SHUT_WR);
  ::close(fd_);
  fd_ = -1;
  state_ = EndpointState::kRejected;
  return status;
}

Operation<void> ShmConnectEndpoint::disconnect() {
  std::shared_ptr<soft::SoftConnectQueuePair> qp;
  {
    std::lock_guard lock(mutex_);
    if (state_ != EndpointState::kConnected) {
      return Operation<void>::done(Status(
          Errc::kInvalidState,
          "disconnect needs a connected endpoint, this one is " + std::string(to_string(state_))));
    }
    state_ = EndpointState::kDisconnected;
    qp = qp_;
  }
  // Moving the QP to error flushes its work and closes the socket; the peer sees the hang-up.
  (void)qp->modify(QpState::kError);
  return Operation<void>::done(Status::ok());
}

Operation<void> ShmConnectEndpoint::notify_disconnect() {
  std::lock_guard lock(mutex_);
  if (!events_) {
    return Operation<void>::done(Status(
        Errc::kInvalidState,
        "notify_disconnect needs a connection, the endpoint is " + std::string(to_string(state_))));
  }
  return events_->wait_closed();
}

ConnectAttributes ShmConnectEndpoint::query() const {
  std::lock_guard lock(mutex_);
  ConnectAttributes attributes;
  attributes.state = state_;
  if (state_ == EndpointState::kConnected && events_ && events_->is_closed()) {
    attributes.state = EndpointState::kDisconnected;
  }
  attributes.local = local_;
  attributes.peer = peer_;
  attributes.peer_parameters = peer_parameters_;
  return attributes;
}

}  // namespace wv::verbs::shm
