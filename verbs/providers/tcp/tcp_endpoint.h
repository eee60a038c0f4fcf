// ConnectEndpoint of the tcp provider: TCP connection setup followed by the MPA v2 exchange
// (RFC 5044 / 6581), whose private data and read depths carry the verbs connect parameters.
#pragma once

#include <memory>
#include <mutex>

#include "mpa.h"
#include "request_queue.h"
#include "soft_device.h"
#include "tcp_connection.h"
#include "wv/verbs/connect_endpoint.h"

namespace wv::verbs::tcp {

class TcpProvider;

class TcpConnectEndpoint final : public ConnectEndpoint,
                                 public std::enable_shared_from_this<TcpConnectEndpoint> {
 public:
  TcpConnectEndpoint(std::shared_ptr<TcpProvider> provider,
                     std::shared_ptr<soft::SoftDevice> device);
  ~TcpConnectEndpoint() override;

  size_t max_private_data() const override { return kMpaMaxPrivateData - kMpaIrdOrdBytes; }
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

  // Requests this endpoint receives once listening go to `queue` (shared with another
  // listener, so one get_request() serves both). Before listen().
  void share_requests(std::shared_ptr<soft::RequestQueue> queue) { requests_ = std::move(queue); }

  // Progress-thread side of the handshakes.
  void on_incoming(int fd, MpaFrame request);
  void on_connected(int fd, const MpaFrame& request, const MpaFrame& reply,
                    Completer<ConnectParameters>& completer);
  void on_connect_failed();

 private:
  MpaSettings mpa_settings(const ConnectParameters& parameters) const;
  Status check_parameters(const ConnectParameters& parameters) const;
  Result<std::shared_ptr<soft::SoftConnectQueuePair>> own_queue_pair(
      const std::shared_ptr<ConnectQueuePair>& qp) const;
  Status open_socket(int family);
  Status start_connection(int fd, const std::shared_ptr<soft::SoftConnectQueuePair>& qp,
                          const MpaNegotiation& negotiated, bool initiator);

  std::shared_ptr<TcpProvider> provider_;
  std::shared_ptr<soft::SoftDevice> device_;
  mutable std::mutex mutex_;
  EndpointState state_ = EndpointState::kIdle;
  int fd_ = -1;  // bound, listening, or an incoming connection before accept/reject
  SocketAddress local_;
  SocketAddress peer_;
  ConnectParameters peer_parameters_;
  MpaFrame request_;  // an incoming request
  std::shared_ptr<ConnectionEvents> events_;
  std::shared_ptr<soft::SoftConnectQueuePair> qp_;
  std::shared_ptr<soft::RequestQueue> requests_ = std::make_shared<soft::RequestQueue>();
};

}  // namespace wv::verbs::tcp
