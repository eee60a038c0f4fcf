// ConnectEndpoint of the hybrid provider: a tcp endpoint and an shm endpoint over one device.
//
// Listening: the tcp listener plus an shm "side door" named after the tcp address it was bound
// to (shm_protocol.h kTcpDoorNames), both feeding one request queue; a request endpoint that
// get_request() returns is the wire's own and accepts or rejects as that provider does.
// Connecting: a destination that is one of this host's addresses is tried through its side door
// first; nobody there (a plain tcp peer, or no listener) falls back to TCP at once. A remote
// destination never looks for a door, so a wildcard door on this host cannot capture it.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>

#include "shm_endpoint.h"
#include "tcp_endpoint.h"
#include "wv/verbs/connect_endpoint.h"

namespace wv::verbs::hybrid {

class HybridEndpoint final : public ConnectEndpoint {
 public:
  HybridEndpoint(std::shared_ptr<tcp::TcpConnectEndpoint> tcp,
                 std::shared_ptr<shm::ShmConnectEndpoint> shm);

  size_t max_private_data() const override;
  Status bind(const SocketAddress& address) override;
  Status listen(int backlog) override;
  Operation<std::shared_ptr<ConnectEndpoint>> get_request() override;
  Operation<void> resolve_address(const SocketAddress& destination,
                                  std::chrono::milliseconds timeout) override;
  Operation<void> resolve_route(std::chrono::milliseconds timeout) override;
  Operation<ConnectParameters> connect(std::shared_ptr<ConnectQueuePair> qp,
                                       const ConnectParameters& parameters) override;
  Operation<void> accept(std::shared_ptr<ConnectQueuePair> qp,
                         const ConnectParameters& parameters) override;
  Status reject(std::span<const std::byte> private_data) override;
  Operation<void> disconnect() override;
  Operation<void> notify_disconnect() override;
  ConnectAttributes query() const override;

  // Whether `address` is one of this host's (loopback or an interface's).
  static bool on_this_host(const SocketAddress& address);

 private:
  // The endpoint that resolves and connects: shm_ for a host-local destination, else tcp_.
  std::shared_ptr<ConnectEndpoint> active() const;

  const std::shared_ptr<tcp::TcpConnectEndpoint> tcp_;
  const std::shared_ptr<shm::ShmConnectEndpoint> shm_;
  mutable std::mutex mutex_;
  bool shm_chosen_ = false;
  SocketAddress destination_;
  std::chrono::milliseconds resolve_timeout_{0};
};

}  // namespace wv::verbs::hybrid
