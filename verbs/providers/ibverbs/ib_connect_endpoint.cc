#include "ib_connect_endpoint.h"

#include <cerrno>
#include <cstring>

#include "ib_convert.h"
#include "ib_provider.h"

namespace wv::verbs::ib {

namespace {

// InfiniBand CM: a REQ carries 92 bytes of private data, of which rdma_cm's header takes 36;
// one more byte is the provider's length frame.
constexpr size_t kIbMaxPrivateData = 56 - 1;
// iWARP: MPA allows 512 bytes; siw keeps 256 and takes the MPA v2 IRD/ORD words from them.
constexpr size_t kIwarpMaxPrivateData = 248;
// IB CM reject reason of a rejection by the peer's consumer (as opposed to "no listener").
constexpr int kIbConsumerReject = 28;

}  // namespace

Result<std::shared_ptr<IbConnectEndpoint>> IbConnectEndpoint::create(
    std::shared_ptr<IbProvider> provider) {
  std::shared_ptr<IbConnectEndpoint> endpoint(new IbConnectEndpoint(std::move(provider)));
  if (Status status = endpoint->cm_.open(RDMA_PS_TCP, endpoint->handler()); !status) {
    return status;
  }
  return endpoint;
}

IbConnectEndpoint::IbConnectEndpoint(std::shared_ptr<IbProvider> provider)
    : provider_(std::move(provider)), cm_(provider_->loop()) {}

IbConnectEndpoint::~IbConnectEndpoint() {
  cm_.close();
  std::lock_guard lock(mutex_);
  const Status gone(Errc::kCancelled, "endpoint destroyed");
  resolve_.complete(gone);
  connecting_.complete(gone);
  accepting_.complete(gone);
  disconnecting_.complete(gone);
  for (auto& waiter : disconnect_waiters_) waiter.complete(gone);
  for (auto& waiter : request_waiters_) waiter.complete(gone);
}

std::function<void(rdma_cm_event*)> IbConnectEndpoint::handler() {
  std::weak_ptr<IbConnectEndpoint> weak = weak_from_this();
  return [weak](rdma_cm_event* event) {
    auto self = weak.lock();
    if (!self) {
      rdma_ack_cm_event(event);
      return;
    }
    self->on_event(event);
  };
}

size_t IbConnectEndpoint::max_private_data() const {
  std::lock_guard lock(mutex_);
  const bool iwarp = cm_.id() != nullptr && cm_.id()->verbs != nullptr
                         ? is_iwarp(cm_.id())
                         : provider_->default_transport() == Transport::kIwarp;
  return iwarp ? kIwarpMaxPrivateData : kIbMaxPrivateData;
}

Status IbConnectEndpoint::bind(const SocketAddress& address) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kIdle) {
    return Status(Errc::kInvalidState, "bind needs an idle endpoint");
  }
  if (rdma_bind_addr(cm_.id(), const_cast<sockaddr*>(address.get())) != 0) {
    return verbs_status(-1, "rdma_bind_addr(" + address.to_string() + ")");
  }
  local_ = local_address_of(cm_.id());
  state_ = EndpointState::kBound;
  return Status::ok();
}

Status IbConnectEndpoint::listen(int backlog) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kBound) {
    return Status(Errc::kInvalidState, "listen needs a bound endpoint");
  }
  if (rdma_listen(cm_.id(), backlog) != 0) return verbs_status(-1, "rdma_listen");
  local_ = local_address_of(cm_.id());
  state_ = EndpointState::kListening;
  return Status::ok();
}

Operation<std::shared_ptr<ConnectEndpoint>> IbConnectEndpoint::get_request() {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kListening) {
    return Operation<std::shared_ptr<ConnectEndpoint>>::done(
        Status(Errc::kInvalidState, "get_request needs a listening endpoint"));
  }
  if (!requests_.empty()) {
    auto request = std::move(requests_.front());
    requests_.pop_front();
    return Operation<std::shared_ptr<ConnectEndpoint>>::done(std::move(request));
  }
  auto [op, completer] = Operation<std::shared_ptr<ConnectEndpoint>>::make();
  request_waiters_.push_back(completer);
  return std::move(op);
}

Operation<void> IbConnectEndpoint::resolve_address(const SocketAddress& destination,
                                                   std::chrono::milliseconds timeout) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kIdle && state_ != EndpointState::kBound) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "resolve_address needs an idle or bound endpoint"));
  }
  auto [op, completer] = Operation<void>::make();
  peer_ = destination;
  sockaddr* source =
      state_ == EndpointState::kBound ? const_cast<sockaddr*>(local_.get()) : nullptr;
  if (rdma_resolve_addr(cm_.id(), source, const_cast<sockaddr*>(destination.get()),
                        static_cast<int>(timeout.count())) != 0) {
    completer.complete(verbs_status(-1, "rdma_resolve_addr(" + destination.to_string() + ")"));
    return std::move(op);
  }
  resolve_ = completer;
  return std::move(op);
}

Operation<void> IbConnectEndpoint::resolve_route(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kAddressResolved) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "resolve_route needs a resolved address"));
  }
  auto [op, completer] = Operation<void>::make();
  if (rdma_resolve_route(cm_.id(), static_cast<int>(timeout.count())) != 0) {
    completer.complete(verbs_status(-1, "rdma_resolve_route"));
    return std::move(op);
  }
  resolve_ = completer;
  return std::move(op);
}

rdma_conn_param IbConnectEndpoint::conn_param(const ConnectParameters& parameters,
                                              std::vector<std::byte>& framed) const {
  const DeviceAttributes& device = qp_->core().domain()->device()->attributes();
  rdma_conn_param param{};
  framed = frame_private_data(is_iwarp(cm_.id()), parameters.private_data);
  param.private_data = framed.empty() ? nullptr : framed.data();
  param.private_data_len = static_cast<uint8_t>(framed.size());
  const uint32_t inbound =
      parameters.inbound_read_depth == 0
          ? device.max_inbound_read_depth
          : std::min(parameters.inbound_read_depth, device.max_inbound_read_depth);
  const uint32_t outbound =
      parameters.outbound_read_depth == 0
          ? device.max_outbound_read_depth
          : std::min(parameters.outbound_read_depth, device.max_outbound_read_depth);
  param.responder_resources = static_cast<uint8_t>(std::min<uint32_t>(inbound, 255));
  param.initiator_depth = static_cast<uint8_t>(std::min<uint32_t>(outbound, 255));
  param.retry_count = std::min<uint8_t>(parameters.retry_count, 7);
  param.rnr_retry_count = std::min<uint8_t>(parameters.rnr_retry_count, 7);
  param.qp_num = qp_->number();
  param.srq = qp_->core().options().srq ? 1 : 0;
  return param;
}

// rdma_cm reports the peer's read depths from the receiver's side (responder resources = the
// reads this side may serve = the peer's initiator depth); the API names what the peer offered.
ConnectParameters IbConnectEndpoint::peer_of(const rdma_conn_param& param, bool iwarp) const {
  ConnectParameters peer;
  peer.private_data = unframe_private_data(iwarp, param.private_data, param.private_data_len);
  peer.inbound_read_depth = param.initiator_depth;
  peer.outbound_read_depth = param.responder_resources;
  peer.retry_count = param.retry_count;
  peer.rnr_retry_count = param.rnr_retry_count;
  return peer;
}

Operation<ConnectParameters> IbConnectEndpoint::connect(std::shared_ptr<ConnectQueuePair> qp,
                                                        const ConnectParameters& parameters) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRouteResolved) {
    return Operation<ConnectParameters>::done(
        Status(Errc::kInvalidState, "connect needs a resolved route"));
  }
  auto own = std::dynamic_pointer_cast<IbConnectQueuePair>(qp);
  if (!own) {
    return Operation<ConnectParameters>::done(
        Status(Errc::kInvalidArgument, "the QP is not of the ibverbs provider"));
  }
  const size_t limit = is_iwarp(cm_.id()) ? kIwarpMaxPrivateData : kIbMaxPrivateData;
  if (parameters.private_data.size() > limit) {
    return Operation<ConnectParameters>::done(Status(
        Errc::kInvalidArgument, std::to_string(parameters.private_data.size()) +
                                    " bytes of private data; at most " + std::to_string(limit)));
  }
  if (own->core().state() != QpState::kInit) {
    return Operation<ConnectParameters>::done(
        Status(Errc::kInvalidState, "connect needs a QP in kInit"));
  }
  qp_ = std::move(own);
  offered_ = parameters;
  std::vector<std::byte> framed;
  rdma_conn_param param = conn_param(parameters, framed);
  auto [op, completer] = Operation<ConnectParameters>::make();
  if (rdma_connect(cm_.id(), &param) != 0) {
    completer.complete(verbs_status(-1, "rdma_connect"));
    qp_.reset();
    return std::move(op);
  }
  state_ = EndpointState::kConnecting;
  connecting_ = completer;
  return std::move(op);
}

Status IbConnectEndpoint::move_qp(ibv_qp_state state, uint32_t read_depth_override) {
  ibv_qp_attr attr{};
  int mask = 0;
  attr.qp_state = state;
  if (rdma_init_qp_attr(cm_.id(), &attr, &mask) != 0) {
    return verbs_status(-1, "rdma_init_qp_attr");
  }
  if (state == IBV_QPS_RTR) {
    if (read_depth_override != 0) attr.max_dest_rd_atomic = read_depth_override;
    qp_->core().set_peer(attr.dest_qp_num);
  } else if (state == IBV_QPS_RTS && read_depth_override != 0) {
    attr.max_rd_atomic = read_depth_override;
  }
  if (int rc = ibv_modify_qp(qp_->core().qp(), &attr, mask); rc != 0) {
    return verbs_status(rc, "ibv_modify_qp(" + std::string(ibv_wc_status_str(IBV_WC_SUCCESS)) +
                                ") for the connection");
  }
  qp_->core().set_state(from_ibv_state(state));
  return Status::ok();
}

Operation<void> IbConnectEndpoint::accept(std::shared_ptr<ConnectQueuePair> qp,
                                          const ConnectParameters& parameters) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRequestReceived) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "accept needs an endpoint from get_request"));
  }
  auto own = std::dynamic_pointer_cast<IbConnectQueuePair>(qp);
  if (!own) {
    return Operation<void>::done(
        Status(Errc::kInvalidArgument, "the QP is not of the ibverbs provider"));
  }
  const bool iwarp = is_iwarp(cm_.id());
  if (parameters.private_data.size() > (iwarp ? kIwarpMaxPrivateData : kIbMaxPrivateData)) {
    return Operation<void>::done(Status(Errc::kInvalidArgument, "private data too long"));
  }
  qp_ = std::move(own);
  offered_ = parameters;
  std::vector<std::byte> framed;
  rdma_conn_param param = conn_param(parameters, framed);
  auto [op, completer] = Operation<void>::make();
  if (!iwarp) {
    if (Status status = move_qp(IBV_QPS_RTR, param.responder_resources); !status) {
      completer.complete(status);
      return std::move(op);
    }
  }
  if (rdma_accept(cm_.id(), &param) != 0) {
    completer.complete(verbs_status(-1, "rdma_accept"));
    return std::move(op);
  }
  state_ = EndpointState::kConnecting;
  accepting_ = completer;
  return std::move(op);
}

Status IbConnectEndpoint::reject(std::span<const std::byte> private_data) {
  std::lock_guard lock(mutex_);
  if (state_ != EndpointState::kRequestReceived) {
    return Status(Errc::kInvalidState, "reject needs an endpoint from get_request");
  }
  const bool iwarp = is_iwarp(cm_.id());
  if (private_data.size() > (iwarp ? kIwarpMaxPrivateData : kIbMaxPrivateData)) {
    return Status(Errc::kInvalidArgument, "private data too long");
  }
  std::vector<std::byte> framed = frame_private_data(iwarp, private_data);
  if (rdma_reject(cm_.id(), framed.empty() ? nullptr : framed.data(),
                  static_cast<uint8_t>(framed.size())) != 0) {
    return verbs_status(-1, "rdma_reject");
  }
  state_ = EndpointState::kRejected;
  return Status::ok();
}

Operation<void> IbConnectEndpoint::disconnect() {
  std::lock_guard lock(mutex_);
  if (state_ == EndpointState::kDisconnected || state_ == EndpointState::kError) {
    return Operation<void>::done(Status::ok());
  }
  if (state_ != EndpointState::kConnected) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "disconnect needs a connected endpoint"));
  }
  auto [op, completer] = Operation<void>::make();
  disconnect_sent_ = true;
  const int rc = rdma_disconnect(cm_.id());
  // The QP is not the id's, so flushing it is the endpoint's job.
  if (qp_) {
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_ERR;
    ibv_modify_qp(qp_->core().qp(), &attr, IBV_QP_STATE);
    qp_->core().set_state(QpState::kError);
  }
  if (rc != 0) {
    ended();
    completer.complete(Status::ok());
    return std::move(op);
  }
  disconnecting_ = completer;
  return std::move(op);
}

Operation<void> IbConnectEndpoint::notify_disconnect() {
  std::lock_guard lock(mutex_);
  if (state_ == EndpointState::kDisconnected || state_ == EndpointState::kError) {
    return Operation<void>::done(Status::ok());
  }
  auto [op, completer] = Operation<void>::make();
  disconnect_waiters_.push_back(completer);
  return std::move(op);
}

ConnectAttributes IbConnectEndpoint::query() const {
  std::lock_guard lock(mutex_);
  ConnectAttributes out;
  out.state = state_;
  out.local = local_;
  out.peer = peer_;
  out.peer_parameters = peer_parameters_;
  return out;
}

void IbConnectEndpoint::ended() {
  state_ = EndpointState::kDisconnected;
  if (qp_) {
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_ERR;
    ibv_modify_qp(qp_->core().qp(), &attr, IBV_QP_STATE);
    qp_->core().set_state(QpState::kError);
  }
  disconnecting_.complete(Status::ok());
  for (auto& waiter : disconnect_waiters_) waiter.complete(Status::ok());
  disconnect_waiters_.clear();
}

void IbConnectEndpoint::fail_connection(Status status) {
  connecting_.complete(status);
  accepting_.complete(status);
  if (state_ == EndpointState::kConnecting) {
    if (qp_) qp_->core().set_state(QpState::kInit);
    qp_.reset();
  }
}

void IbConnectEndpoint::on_connect_request(rdma_cm_event* event) {
  rdma_cm_id* id = event->id;
  const bool iwarp = is_iwarp(id);
  ConnectParameters peer = peer_of(event->param.conn, iwarp);
  rdma_ack_cm_event(event);
  std::shared_ptr<IbConnectEndpoint> incoming(new IbConnectEndpoint(provider_));
  if (Status status = incoming->cm_.adopt(id, incoming->handler()); !status) {
    return;  // the peer sees its request time out
  }
  incoming->state_ = EndpointState::kRequestReceived;
  incoming->peer_parameters_ = std::move(peer);
  incoming->local_ = local_address_of(id);
  incoming->peer_ = peer_address_of(id);
  std::lock_guard lock(mutex_);
  while (!request_waiters_.empty()) {
    auto waiter = std::move(request_waiters_.front());
    request_waiters_.pop_front();
    if (waiter.complete(std::shared_ptr<ConnectEndpoint>(incoming))) return;
  }
  requests_.push_back(std::move(incoming));
}

void IbConnectEndpoint::on_event(rdma_cm_event* event) {
  if (event->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
    on_connect_request(event);
    return;
  }
  const rdma_cm_event_type type = event->event;
  const int status = event->status;
  const bool iwarp = is_iwarp(cm_.id());
  ConnectParameters peer = peer_of(event->param.conn, iwarp);
  const bool has_private_data = event->param.conn.private_data_len > 0;
  const uint32_t local_ird = event->param.conn.initiator_depth;
  const uint32_t local_ord = event->param.conn.responder_resources;
  rdma_ack_cm_event(event);

  std::lock_guard lock(mutex_);
  switch (type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
      state_ = EndpointState::kAddressResolved;
      local_ = local_address_of(cm_.id());
      resolve_.complete(Status::ok());
      break;
    case RDMA_CM_EVENT_ADDR_ERROR:
      resolve_.complete(Status(Errc::kUnreachable,
                               "address resolution of " + peer_.to_string() +
                                   " failed: " + std::strerror(status < 0 ? -status : status)));
      break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
      state_ = EndpointState::kRouteResolved;
      resolve_.complete(Status::ok());
      break;
    case RDMA_CM_EVENT_ROUTE_ERROR:
      resolve_.complete(Status(Errc::kUnreachable,
                               "route resolution to " + peer_.to_string() +
                                   " failed: " + std::strerror(status < 0 ? -status : status)));
      break;
    case RDMA_CM_EVENT_CONNECT_RESPONSE: {
      // InfiniBand/RoCE active side: the QP is ours, so RTR, RTS and the RTU are ours too.
      Status moved = move_qp(IBV_QPS_RTR, 0);
      if (moved) moved = move_qp(IBV_QPS_RTS, 0);
      if (moved && rdma_establish(cm_.id()) != 0) moved = verbs_status(-1, "rdma_establish");
      if (!moved) {
        state_ = EndpointState::kError;
        fail_connection(moved);
        break;
      }
      state_ = EndpointState::kConnected;
      peer_parameters_ = peer;
      connecting_.complete(peer);
      break;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
      if (state_ != EndpointState::kConnecting) break;
      if (accepting_.pending()) {
        if (!iwarp) {
          if (Status moved = move_qp(IBV_QPS_RTS, 0); !moved) {
            state_ = EndpointState::kError;
            fail_connection(moved);
            break;
          }
        } else if (qp_) {
          qp_->core().set_state(QpState::kReadyToSend);
          qp_->core().set_read_depths(local_ird, local_ord);
        }
        state_ = EndpointState::kConnected;
        accepting_.complete(Status::ok());
      } else if (connecting_.pending()) {
        // iWARP: the device moved the QP to RTS during MPA negotiation. The event carries this
        // side's negotiated IRD (initiator_depth) and ORD (responder_resources); the peer's are
        // their mirror image.
        if (qp_) {
          qp_->core().set_state(QpState::kReadyToSend);
          qp_->core().set_read_depths(local_ird, local_ord);
        }
        if (iwarp) {
          peer.inbound_read_depth = local_ord;
          peer.outbound_read_depth = local_ird;
        }
        state_ = EndpointState::kConnected;
        peer_parameters_ = peer;
        connecting_.complete(peer);
      }
      break;
    case RDMA_CM_EVENT_REJECTED: {
      // iWARP: an MPA reject arrives as ECONNRESET (siw) or ECONNREFUSED with the reject's
      // private data; no listener is a TCP reset without any.
      const bool by_peer =
          iwarp ? (status == -ECONNRESET || (status == -ECONNREFUSED && has_private_data))
                : status == kIbConsumerReject;
      peer_parameters_ = peer;
      state_ = by_peer ? EndpointState::kRejected : EndpointState::kError;
      fail_connection(by_peer
                          ? Status(Errc::kRejected, "the peer rejected the connection")
                          : Status(Errc::kConnectionRefused,
                                   "connection refused by " + peer_.to_string() +
                                       " (no listener; reason " + std::to_string(status) + ")"));
      break;
    }
    case RDMA_CM_EVENT_UNREACHABLE:
      state_ = EndpointState::kError;
      fail_connection(Status(
          status == -ETIMEDOUT || status == ETIMEDOUT ? Errc::kTimedOut : Errc::kConnectionRefused,
          "peer " + peer_.to_string() + " unreachable (status " + std::to_string(status) + ")"));
      break;
    case RDMA_CM_EVENT_CONNECT_ERROR:
      state_ = EndpointState::kError;
      fail_connection(Status(Errc::kProtocolError,
                             "connection setup failed (status " + std::to_string(status) + ")"));
      break;
    case RDMA_CM_EVENT_DISCONNECTED:
      if (!disconnect_sent_) {
        disconnect_sent_ = true;
        rdma_disconnect(cm_.id());  // answers the peer's request (IB DREP)
        // iWARP reports a responder's error as a terminate that closes the connection; the
        // device raises no event at this side (siw), so the provider does (types.h,
        // kRemoteErrorsInCompletion).
        if (iwarp && qp_ && state_ == EndpointState::kConnected) {
          qp_->core().domain()->device()->qp_failed(
              qp_->number(), qp_->core().context(),
              "the iWARP connection was closed by the peer (a terminate or a disconnect)");
        }
      }
      ended();
      break;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      state_ = EndpointState::kError;
      fail_connection(Status(Errc::kDisconnected, "the RDMA device was removed"));
      ended();
      state_ = EndpointState::kError;
      break;
    default:
      break;  // timewait exit, address change: nothing for the API
  }
}

}  // namespace wv::verbs::ib
