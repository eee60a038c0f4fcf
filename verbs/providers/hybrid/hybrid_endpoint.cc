#include "hybrid_endpoint.h"

#include <netinet/in.h>

#include <algorithm>
#include <utility>

#include "request_queue.h"

namespace wv::verbs::hybrid {

HybridEndpoint::HybridEndpoint(std::shared_ptr<tcp::TcpConnectEndpoint> tcp,
                               std::shared_ptr<shm::ShmConnectEndpoint> shm)
    : tcp_(std::move(tcp)), shm_(std::move(shm)) {}

bool HybridEndpoint::on_this_host(const SocketAddress& address) {
  SocketAddress host = address;
  host.set_port(0);
  if (host.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(host.get());
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) return true;
  } else if (host.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(host.get());
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
  } else {
    return false;
  }
  const auto interfaces = SocketAddress::interfaces();  // port 0, like `host`
  return std::find(interfaces.begin(), interfaces.end(), host) != interfaces.end();
}

size_t HybridEndpoint::max_private_data() const {
  return std::min(tcp_->max_private_data(), shm_->max_private_data());
}

Status HybridEndpoint::bind(const SocketAddress& address) {
  if (Status status = tcp_->bind(address); !status) return status;
  // The door takes the address the tcp bind settled on (its ephemeral port included): the
  // port is this process's, so nobody else can hold the door's name.
  return shm_->bind(tcp_->query().local);
}

Status HybridEndpoint::listen(int backlog) {
  if (tcp_->query().state == EndpointState::kIdle) {
    if (Status status = bind(SocketAddress::ipv4_any(0)); !status) return status;
  }
  auto requests = std::make_shared<soft::RequestQueue>();
  tcp_->share_requests(requests);
  shm_->share_requests(requests);
  if (Status status = tcp_->listen(backlog); !status) return status;
  return shm_->listen(backlog);
}

Operation<std::shared_ptr<ConnectEndpoint>> HybridEndpoint::get_request() {
  // The tcp listener pops the queue both listeners feed.
  return tcp_->get_request();
}

std::shared_ptr<ConnectEndpoint> HybridEndpoint::active() const {
  std::lock_guard lock(mutex_);
  if (shm_chosen_) return shm_;
  return tcp_;
}

Operation<void> HybridEndpoint::resolve_address(const SocketAddress& destination,
                                                std::chrono::milliseconds timeout) {
  const bool local = on_this_host(destination);
  {
    std::lock_guard lock(mutex_);
    shm_chosen_ = local;
    destination_ = destination;
    resolve_timeout_ = timeout;
  }
  return active()->resolve_address(destination, timeout);
}

Operation<void> HybridEndpoint::resolve_route(std::chrono::milliseconds timeout) {
  return active()->resolve_route(timeout);
}

Operation<ConnectParameters> HybridEndpoint::connect(std::shared_ptr<ConnectQueuePair> qp,
                                                     const ConnectParameters& parameters) {
  if (active() == tcp_) return tcp_->connect(std::move(qp), parameters);
  auto attempt = shm_->connect(qp, parameters);
  // The shm endpoint finds out at once whether anybody has a door at the destination; a refusal
  // then left the QP untouched, and TCP is tried instead.
  if (!attempt.ready() || attempt.result().status().code() != Errc::kConnectionRefused) {
    return attempt;
  }
  SocketAddress destination;
  std::chrono::milliseconds timeout;
  {
    std::lock_guard lock(mutex_);
    shm_chosen_ = false;
    destination = destination_;
    timeout = resolve_timeout_;
  }
  if (auto resolved = tcp_->resolve_address(destination, timeout).wait(timeout); !resolved) {
    return Operation<ConnectParameters>::done(resolved.status());
  }
  if (auto routed = tcp_->resolve_route(timeout).wait(timeout); !routed) {
    return Operation<ConnectParameters>::done(routed.status());
  }
  return tcp_->connect(std::move(qp), parameters);
}

Operation<void> HybridEndpoint::accept(std::shared_ptr<ConnectQueuePair>,
                                       const ConnectParameters&) {
  return Operation<void>::done(
      Status(Errc::kInvalidState, "accept is for the endpoints get_request() returns"));
}

Status HybridEndpoint::reject(std::span<const std::byte>) {
  return Status(Errc::kInvalidState, "reject is for the endpoints get_request() returns");
}

Operation<void> HybridEndpoint::disconnect() {
  return active()->disconnect();
}

Operation<void> HybridEndpoint::notify_disconnect() {
  return active()->notify_disconnect();
}

ConnectAttributes HybridEndpoint::query() const {
  return active()->query();
}

}  // namespace wv::verbs::hybrid
