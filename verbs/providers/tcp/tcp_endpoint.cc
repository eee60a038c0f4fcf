#include "tcp_endpoint.h"

#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "soft_queue_pair.h"
#include "tcp_provider.h"

namespace wv::verbs::tcp {
namespace {

// Writes a small control frame on a non-blocking socket, waiting at most `timeout_ms`.
Status write_all(int fd, std::span<const std::byte> bytes, int timeout_ms) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes = bytes.subspan(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, timeout_ms) <= 0) {
        return Status(Errc::kTimedOut, "peer does not take the MPA frame");
      }
      continue;
    }
    return errno_status(Errc::kDisconnected, "sending the MPA frame");
  }
  return Status::ok();
}

void set_socket_options(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

SocketAddress local_address(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  return SocketAddress(reinterpret_cast<sockaddr*>(&storage), length);
}

SocketAddress peer_address(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  ::getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  return SocketAddress(reinterpret_cast<sockaddr*>(&storage), length);
}

CrcPolicy crc_policy(const std::string& setting) {
  if (setting == "require") return CrcPolicy::kRequire;
  if (setting == "request") return CrcPolicy::kRequest;
  return CrcPolicy::kOff;
}

// Reads one MPA frame (header, then exactly its private data) without touching what follows,
// so the first FPDUs stay in the socket for the connection.
class FrameReader {
 public:
  explicit FrameReader(bool expect_reply) : expect_reply_(expect_reply) {}

  // kOk with *done when the frame is complete; kOk without when the socket ran dry.
  Status read(int fd, bool* done) {
    for (;;) {
      const size_t want =
          have_header_ ? kMpaFrameHeaderBytes + header_.private_data_length : kMpaFrameHeaderBytes;
      if (bytes_.size() == want && have_header_) {
        *done = true;
        return decode_mpa_private_data(
            header_, std::span<const std::byte>(bytes_).subspan(kMpaFrameHeaderBytes), frame_);
      }
      const size_t old = bytes_.size();
      bytes_.resize(want);
      const ssize_t n = ::recv(fd, bytes_.data() + old, want - old, 0);
      if (n <= 0) {
        bytes_.resize(old);
        if (n == 0) return Status(Errc::kDisconnected, "peer closed during the MPA exchange");
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Status::ok();
        return errno_status(Errc::kDisconnected, "reading the MPA frame");
      }
      bytes_.resize(old + static_cast<size_t>(n));
      if (!have_header_ && bytes_.size() == kMpaFrameHeaderBytes) {
        auto header = decode_mpa_header(
            std::span<const std::byte, kMpaFrameHeaderBytes>(bytes_.data(), kMpaFrameHeaderBytes),
            expect_reply_);
        if (!header.is_ok()) return header.status();
        header_ = header.value();
        have_header_ = true;
      }
    }
  }
  const MpaFrame& frame() const { return frame_; }

 private:
  bool expect_reply_;
  bool have_header_ = false;
  MpaFrameHeader header_;
  std::vector<std::byte> bytes_;
  MpaFrame frame_;
};

// An accepted TCP connection whose MPA request is still arriving.
class IncomingHandshake final : public soft::PollHandler {
 public:
  IncomingHandshake(int fd, std::weak_ptr<TcpConnectEndpoint> listener, soft::Progress& progress)
      : fd_(fd), listener_(std::move(listener)), progress_(progress), reader_(false) {}
  ~IncomingHandshake() override {
    if (fd_ >= 0) ::close(fd_);
  }
  void on_events(uint32_t) override {
    bool done = false;
    Status status = reader_.read(fd_, &done);
    if (!status) {
      progress_.remove(fd_);  // a malformed or abandoned request: drop the connection
      return;
    }
    if (!done) return;
    const int fd = fd_;
    fd_ = -1;  // ownership moves to the request endpoint
    progress_.remove(fd);
    if (auto listener = listener_.lock()) {
      listener->on_incoming(fd, reader_.frame());
    } else {
      ::close(fd);
    }
  }
  void on_deadline() override { progress_.remove(fd_); }

 private:
  int fd_;
  std::weak_ptr<TcpConnectEndpoint> listener_;
  soft::Progress& progress_;
  FrameReader reader_;
};

class Listener final : public soft::PollHandler {
 public:
  Listener(int fd, std::weak_ptr<TcpConnectEndpoint> endpoint, soft::Progress& progress,
           int64_t timeout_ms)
      : fd_(fd), endpoint_(std::move(endpoint)), progress_(progress), timeout_ms_(timeout_ms) {}
  void on_events(uint32_t) override {
    for (;;) {
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      set_socket_options(fd);
      auto handshake = std::make_shared<IncomingHandshake>(fd, endpoint_, progress_);
      if (!progress_.add(fd, EPOLLIN, handshake)) continue;
      // A peer that never completes its request is dropped after the connect timeout.
      progress_.set_deadline(fd,
                             soft::Progress::Clock::now() + std::chrono::milliseconds(timeout_ms_));
    }
  }

 private:
  int fd_;
  std::weak_ptr<TcpConnectEndpoint> endpoint_;
  soft::Progress& progress_;
  int64_t timeout_ms_;
};

// The active side: TCP connect, MPA request out, MPA reply in.
class ActiveHandshake final : public soft::PollHandler {
 public:
  ActiveHandshake(int fd, std::weak_ptr<TcpConnectEndpoint> endpoint, soft::Progress& progress,
                  MpaFrame request, Completer<ConnectParameters> completer, int timeout_ms)
      : fd_(fd),
        endpoint_(std::move(endpoint)),
        progress_(progress),
        request_(std::move(request)),
        completer_(std::move(completer)),
        timeout_ms_(timeout_ms),
        reader_(true) {}
  ~ActiveHandshake() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void on_events(uint32_t events) override {
    if (!completer_.pending()) {  // cancelled
      progress_.remove(fd_);
      return;
    }
    if (!connected_) {
      int error = 0;
      socklen_t length = sizeof(error);
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
        fail(Status(error == ECONNREFUSED ? Errc::kConnectionRefused : Errc::kUnreachable,
                    std::string("connect: ") + std::strerror(error != 0 ? error : ECONNREFUSED)));
        return;
      }
      connected_ = true;
      std::vector<std::byte> bytes;
      Status status = encode_mpa_frame(request_, bytes);
      if (status) status = write_all(fd_, bytes, timeout_ms_);
      if (!status) {
        fail(status);
        return;
      }
      (void)progress_.modify(fd_, EPOLLIN);
      return;
    }
    bool done = false;
    Status status = reader_.read(fd_, &done);
    if (!status) {
      fail(status);
      return;
    }
    if (!done) return;
    const int fd = fd_;
    fd_ = -1;
    progress_.remove(fd);
    if (auto endpoint = endpoint_.lock()) {
      endpoint->on_connected(fd, request_, reader_.frame(), completer_);
    } else {
      ::close(fd);
      completer_.complete(Status(Errc::kCancelled, "endpoint destroyed during connect"));
    }
  }

  void on_deadline() override {
    fail(Status(Errc::kTimedOut,
                "no MPA reply within connect_timeout_ms (" + std::to_string(timeout_ms_) + ")"));
  }

 private:
  void fail(Status status) {
    if (auto endpoint = endpoint_.lock()) endpoint->on_connect_failed();
    completer_.complete(std::move(status));
    progress_.remove(fd_);
  }

  int fd_;
  std::weak_ptr<TcpConnectEndpoint> endpoint_;
  soft::Progress& progress_;
  MpaFrame request_;
  Completer<ConnectParameters> completer_;
  int timeout_ms_;
  bool connected_ = false;
  FrameReader reader_;
};

}  // namespace

TcpConnectEndpoint::TcpConnectEndpoint(std::shared_ptr<TcpProvider> provider,
                                       std::shared_ptr<soft::SoftDevice> device)
    : provider_(std::move(provider)), device_(std::move(device)) {}

TcpConnectEndpoint::~TcpConnectEndpoint() {
  if (fd_ < 0) return;
  if (state_ == EndpointState::kListening) {
    device_->progress().run_sync([this] { device_->progress().remove(fd_); });
  }
  ::close(fd_);
}

MpaSettings TcpConnectEndpoint::mpa_settings(const ConnectParameters& parameters) const {
  const DeviceAttributes& limits = device_->attributes();
  MpaSettings settings;
  settings.crc = crc_policy(provider_->settings().crc);
  const auto depth = [](uint32_t wanted, uint32_t limit) {
    return static_cast<uint16_t>(
        std::min<uint32_t>(wanted == 0 ? limit : std::min(wanted, limit), kMpaMaxIrdOrd));
  };
  settings.ird = depth(parameters.inbound_read_depth, limits.max_inbound_read_depth);
  settings.ord = depth(parameters.outbound_read_depth, limits.max_outbound_read_depth);
  // The RTR we send or accept is a zero-length RDMA write: it needs no read credit.
  settings.rtr =
      RtrFlags{.zero_length_send = false, .zero_length_write = true, .zero_length_read = false};
  return settings;
}

Status TcpConnectEndpoint::check_parameters(const ConnectParameters& parameters) const {
  if (parameters.private_data.size() > max_private_data()) {
    return Status(Errc::kInvalidArgument,
                  "private data of " + std::to_string(parameters.private_data.size()) +
                      " bytes exceeds the " + std::to_string(max_private_data()) +
                      " bytes MPA carries");
  }
  return Status::ok();
}

Result<std::shared_ptr<soft::SoftConnectQueuePair>> TcpConnectEndpoint::own_queue_pair(
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

Status TcpConnectEndpoint::open_socket(int family) {
  fd_ = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return errno_status(Errc::kIoError, "socket");
  const int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // Lets a specific-address listen share a port with a wildcard one; the kernel then prefers
  // the specific listener, which is the rule the API promises.
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  set_socket_options(fd_);
  return Status::ok();
}

Status TcpConnectEndpoint::bind(const SocketAddress& address) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kIdle) {
    return Status(Errc::kInvalidState,
                  "endpoint is " + std::string(to_string(state_)) + "; bind needs idle");
  }
  if (address.empty()) return Status(Errc::kInvalidArgument, "bind to an empty address");
  if (Status status = open_socket(address.family()); !status) return status;
  SocketAddress bound = address;
  if (bound.port() == 0 && provider_->settings().port_base != 0) {
    bound.set_port(provider_->settings().port_base);
  }
  if (::bind(fd_, bound.get(), bound.length()) != 0) {
    Status status = errno_status(errno == EADDRINUSE ? Errc::kBusy : Errc::kInvalidArgument,
                                 "bind " + bound.to_string());
    ::close(fd_);
    fd_ = -1;
    return status;
  }
  local_ = local_address(fd_);
  state_ = EndpointState::kBound;
  return Status::ok();
}

Status TcpConnectEndpoint::listen(int backlog) {
  if (backlog <= 0) return Status(Errc::kInvalidArgument, "listen backlog must be positive");
  {
    std::lock_guard lock(mutex_);
    if (state_ == EndpointState::kIdle) {
      // Listening without a bind serves every address on an ephemeral port.
    } else if (state_ != EndpointState::kBound) {
      return Status(Errc::kInvalidState,
                    "endpoint is " + std::string(to_string(state_)) + "; listen needs bound");
    }
  }
  if (state_ == EndpointState::kIdle) {
    if (Status status = bind(SocketAddress::ipv4_any(0)); !status) return status;
  }
  std::lock_guard lock(mutex_);
  if (::listen(fd_, backlog) != 0) return errno_status(Errc::kBusy, "listen");
  requests_->allow(static_cast<size_t>(backlog));
  state_ = EndpointState::kListening;
  auto listener = std::make_shared<Listener>(fd_, weak_from_this(), device_->progress(),
                                             provider_->settings().connect_timeout_ms);
  return device_->progress().add(fd_, EPOLLIN, listener);
}

void TcpConnectEndpoint::on_incoming(int fd, MpaFrame request) {
  auto child = std::make_shared<TcpConnectEndpoint>(provider_, device_);
  child->fd_ = fd;
  child->state_ = EndpointState::kRequestReceived;
  child->local_ = local_address(fd);
  child->peer_ = peer_address(fd);
  child->peer_parameters_.private_data = request.private_data;
  child->peer_parameters_.inbound_read_depth = request.enhanced ? request.ird : 0;
  child->peer_parameters_.outbound_read_depth = request.enhanced ? request.ord : 0;
  child->request_ = std::move(request);
  // A full backlog lets the child go; its destructor drops the connection.
  requests_->push(std::move(child));
}

Operation<std::shared_ptr<ConnectEndpoint>> TcpConnectEndpoint::get_request() {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kListening) {
    return Operation<std::shared_ptr<ConnectEndpoint>>::done(Status(
        Errc::kInvalidState,
        "get_request needs a listening endpoint, this one is " + std::string(to_string(state_))));
  }
  return requests_->pop();
}

Operation<void> TcpConnectEndpoint::resolve_address(const SocketAddress& destination,
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
  // IP addresses need no lookup here; the route is the kernel's, checked at connect.
  peer_ = destination;
  if (fd_ < 0) {
    if (Status status = open_socket(destination.family()); !status) {
      return Operation<void>::done(status);
    }
  }
  state_ = EndpointState::kAddressResolved;
  return Operation<void>::done(Status::ok());
}

Operation<void> TcpConnectEndpoint::resolve_route(std::chrono::milliseconds) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kAddressResolved) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "resolve_route needs a resolved address, the endpoint is " +
                                        std::string(to_string(state_))));
  }
  state_ = EndpointState::kRouteResolved;
  return Operation<void>::done(Status::ok());
}

Operation<ConnectParameters> TcpConnectEndpoint::connect(std::shared_ptr<ConnectQueuePair> qp,
                                                         const ConnectParameters& parameters) {
  using Op = Operation<ConnectParameters>;
  if (Status status = check_parameters(parameters); !status) return Op::done(status);
  auto soft_qp = own_queue_pair(qp);
  if (!soft_qp.is_ok()) return Op::done(soft_qp.status());
  auto request = make_mpa_request(mpa_settings(parameters), parameters.private_data);
  if (!request.is_ok()) return Op::done(request.status());

  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRouteResolved) {
    return Op::done(Status(Errc::kInvalidState,
                           "connect needs resolve_address and resolve_route first; the endpoint "
                           "is " +
                               std::string(to_string(state_))));
  }
  if (::connect(fd_, peer_.get(), peer_.length()) != 0 && errno != EINPROGRESS) {
    return Op::done(
        errno_status(errno == ECONNREFUSED ? Errc::kConnectionRefused : Errc::kUnreachable,
                     "connect to " + peer_.to_string()));
  }
  local_ = local_address(fd_);
  qp_ = std::move(soft_qp).value();
  state_ = EndpointState::kConnecting;
  auto [operation, completer] = Op::make();
  const int timeout_ms = static_cast<int>(provider_->settings().connect_timeout_ms);
  auto handshake =
      std::make_shared<ActiveHandshake>(fd_, weak_from_this(), device_->progress(),
                                        std::move(request).value(), completer, timeout_ms);
  const int fd = fd_;
  fd_ = -1;  // the handshake owns the socket now
  soft::Progress& progress = device_->progress();
  completer.set_cancel_handler(
      [&progress, fd] { progress.post([&progress, fd] { progress.remove(fd); }); });
  if (Status status = progress.add(fd, EPOLLOUT, handshake); !status) {
    completer.complete(status);
    return std::move(operation);
  }
  progress.set_deadline(fd, soft::Progress::Clock::now() + std::chrono::milliseconds(timeout_ms));
  return std::move(operation);
}

Status TcpConnectEndpoint::start_connection(int fd,
                                            const std::shared_ptr<soft::SoftConnectQueuePair>& qp,
                                            const MpaNegotiation& negotiated, bool initiator) {
  ConnectionOptions options;
  options.crc = negotiated.crc;
  options.segment_size = provider_->settings().segment_size;
  options.rnr_timeout_ms = provider_->settings().rnr_timeout_ms;
  options.send_rtr = initiator && negotiated.rtr != RtrType::kNone;
  // MPA: the responder sends nothing before the initiator's first FPDU.
  options.wait_for_first_fpdu = !initiator;
  options.inbound_read_depth = negotiated.ird;
  events_ = std::make_shared<ConnectionEvents>();
  auto connection = std::make_shared<TcpConnection>(fd, device_->progress(), qp, events_, options);
  {
    std::lock_guard qp_lock(qp->mutex());
    Status status = qp->connect_locked(connection, 0, negotiated.ird, negotiated.ord);
    if (!status) return status;
  }
  return connection->start(qp->send_cq(), qp->receive_cq());
}

void TcpConnectEndpoint::on_connected(int fd, const MpaFrame& request, const MpaFrame& reply,
                                      Completer<ConnectParameters>& completer) {
  std::unique_lock lock(mutex_);
  peer_parameters_.private_data = reply.private_data;
  peer_parameters_.inbound_read_depth = reply.enhanced ? reply.ird : 0;
  peer_parameters_.outbound_read_depth = reply.enhanced ? reply.ord : 0;
  auto negotiated = negotiate_as_initiator(mpa_settings({}), request, reply);
  if (!negotiated.is_ok()) {
    ::close(fd);
    state_ = reply.reject ? EndpointState::kRejected : EndpointState::kError;
    lock.unlock();
    completer.complete(negotiated.status());
    return;
  }
  Status status = start_connection(fd, qp_, negotiated.value(), true);
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

void TcpConnectEndpoint::on_connect_failed() {
  std::lock_guard lock(mutex_);
  state_ = EndpointState::kError;
}

Operation<void> TcpConnectEndpoint::accept(std::shared_ptr<ConnectQueuePair> qp,
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
  ResponderDecision decision =
      negotiate_as_responder(mpa_settings(parameters), request_, parameters.private_data);
  std::vector<std::byte> bytes;
  Status status = encode_mpa_frame(decision.reply, bytes);
  if (status) {
    status = write_all(fd_, bytes, static_cast<int>(provider_->settings().connect_timeout_ms));
  }
  if (status && !decision.status) status = decision.status;
  if (!status) {
    state_ = EndpointState::kError;
    return Operation<void>::done(status);
  }
  qp_ = std::move(soft_qp).value();
  const int fd = fd_;
  fd_ = -1;
  status = start_connection(fd, qp_, decision.negotiated, false);
  state_ = status ? EndpointState::kConnected : EndpointState::kError;
  return Operation<void>::done(status);
}

Status TcpConnectEndpoint::reject(std::span<const std::byte> private_data) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRequestReceived) {
    return Status(Errc::kInvalidState, "reject needs an endpoint from get_request, this one is " +
                                           std::string(to_string(state_)));
  }
  if (private_data.size() > max_private_data()) {
    return Status(Errc::kInvalidArgument,
                  "reject private data exceeds " + std::to_string(max_private_data()) + " bytes");
  }
  std::vector<std::byte> bytes;
  Status status = encode_mpa_frame(make_mpa_reject(request_, private_data), bytes);
  if (status) {
    status = write_all(fd_, bytes, static_cast<int>(provider_->settings().connect_timeout_ms));
  }
  ::shutdown(fd_, SHUT_WR);
  ::close(fd_);
  fd_ = -1;
  state_ = EndpointState::kRejected;
  return status;
}

Operation<void> TcpConnectEndpoint::disconnect() {
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
  // Moving the QP to error flushes its work and closes the stream; the peer sees the end.
  (void)qp->modify(QpState::kError);
  return Operation<void>::done(Status::ok());
}

Operation<void> TcpConnectEndpoint::notify_disconnect() {
  std::lock_guard lock(mutex_);
  if (!events_) {
    return Operation<void>::done(Status(
        Errc::kInvalidState,
        "notify_disconnect needs a connection, the endpoint is " + std::string(to_string(state_))));
  }
  return events_->wait_closed();
}

ConnectAttributes TcpConnectEndpoint::query() const {
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

}  // namespace wv::verbs::tcp
