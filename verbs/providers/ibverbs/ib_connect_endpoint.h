// ConnectEndpoint on rdma_cm (RDMA_PS_TCP), required on iWARP and used on InfiniBand/RoCE too.
//
// The QP is created on the protection domain before the endpoint knows it, so it is not the
// rdma_cm_id's QP: the endpoint passes its number to rdma_cm and, on InfiniBand/RoCE, moves it
// through RTR and RTS itself with the attributes rdma_init_qp_attr computes (iWARP devices move
// their QPs to RTS inside the connection setup).
#pragma once

#include <deque>
#include <memory>
#include <mutex>

#include "ib_cm_common.h"
#include "ib_queue_pair.h"
#include "wv/verbs/connect_endpoint.h"

namespace wv::verbs::ib {

class IbProvider;

class IbConnectEndpoint final : public ConnectEndpoint,
                                public std::enable_shared_from_this<IbConnectEndpoint> {
 public:
  static Result<std::shared_ptr<IbConnectEndpoint>> create(std::shared_ptr<IbProvider> provider);
  ~IbConnectEndpoint() override;

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

 private:
  explicit IbConnectEndpoint(std::shared_ptr<IbProvider> provider);
  std::function<void(rdma_cm_event*)> handler();
  void on_event(rdma_cm_event* event);
  void on_connect_request(rdma_cm_event* event);
  // With mutex_ held.
  Status move_qp(ibv_qp_state state, uint32_t read_depth_override);
  void fail_connection(Status status);
  void ended();
  rdma_conn_param conn_param(const ConnectParameters& parameters,
                             std::vector<std::byte>& framed) const;
  ConnectParameters peer_of(const rdma_conn_param& param, bool iwarp) const;

  std::shared_ptr<IbProvider> provider_;
  CmChannel cm_;
  mutable std::mutex mutex_;
  EndpointState state_ = EndpointState::kIdle;
  SocketAddress local_;
  SocketAddress peer_;
  ConnectParameters peer_parameters_;
  ConnectParameters offered_;
  std::shared_ptr<IbConnectQueuePair> qp_;
  bool disconnect_sent_ = false;
  Completer<void> resolve_;
  Completer<ConnectParameters> connecting_;
  Completer<void> accepting_;
  Completer<void> disconnecting_;
  std::vector<Completer<void>> disconnect_waiters_;
  std::deque<std::shared_ptr<ConnectEndpoint>> requests_;
  std::deque<Completer<std::shared_ptr<ConnectEndpoint>>> request_waiters_;
};

}  // namespace wv::verbs::ib
