#include "ib_datagram_endpoint.h"

#include <arpa/inet.h>

#include <cstring>

#include "ib_convert.h"
#include "ib_provider.h"

namespace wv::verbs::ib {

namespace {
constexpr int kSidrReject = 2;  // IB_SIDR_REJECT, the SIDR REP status of a consumer's reject
}  // namespace

namespace {

AddressVector address_of(const ibv_ah_attr& ah) {
  AddressVector out;
  std::memcpy(out.destination_gid.raw.data(), ah.grh.dgid.raw, 16);
  out.destination_lid = ah.dlid;
  out.service_level = ah.sl;
  out.port = ah.port_num;
  out.hop_limit = ah.grh.hop_limit;
  out.global_route = ah.is_global != 0;
  return out;
}

}  // namespace

Result<std::shared_ptr<IbDatagramEndpoint>> IbDatagramEndpoint::create(
    std::shared_ptr<IbProvider> provider) {
  std::shared_ptr<IbDatagramEndpoint> endpoint(new IbDatagramEndpoint(std::move(provider)));
  if (Status status = endpoint->cm_.open(RDMA_PS_UDP, endpoint->handler()); !status) {
    return status;
  }
  return endpoint;
}

IbDatagramEndpoint::IbDatagramEndpoint(std::shared_ptr<IbProvider> provider)
    : provider_(std::move(provider)), cm_(provider_->loop()) {}

IbDatagramEndpoint::~IbDatagramEndpoint() {
  cm_.close();
  std::map<std::string, std::unique_ptr<Membership>> memberships;
  {
    std::lock_guard lock(mutex_);
    const Status gone(Errc::kCancelled, "endpoint destroyed");
    looking_up_.complete(gone);
    for (auto& waiter : request_waiters_) waiter.complete(gone);
    for (auto& [key, membership] : memberships_) membership->joining.complete(gone);
    memberships.swap(memberships_);
  }
  for (auto& [key, membership] : memberships) (void)release(*membership);
}

std::function<void(rdma_cm_event*)> IbDatagramEndpoint::handler() {
  std::weak_ptr<IbDatagramEndpoint> weak = weak_from_this();
  return [weak](rdma_cm_event* event) {
    auto self = weak.lock();
    if (!self) {
      rdma_ack_cm_event(event);
      return;
    }
    self->on_event(event);
  };
}

Status IbDatagramEndpoint::bind(const SocketAddress& address) {
  std::lock_guard lock(mutex_);
  if (rdma_bind_addr(cm_.id(), const_cast<sockaddr*>(address.get())) != 0) {
    return verbs_status(-1, "rdma_bind_addr(" + address.to_string() + ")");
  }
  local_ = local_address_of(cm_.id());
  return Status::ok();
}

Status IbDatagramEndpoint::listen(int backlog) {
  std::lock_guard lock(mutex_);
  if (local_.empty()) return Status(Errc::kInvalidState, "listen needs a bound endpoint");
  if (rdma_listen(cm_.id(), backlog) != 0) return verbs_status(-1, "rdma_listen");
  listening_ = true;
  local_ = local_address_of(cm_.id());
  return Status::ok();
}

Operation<std::shared_ptr<DatagramEndpoint>> IbDatagramEndpoint::get_request() {
  std::lock_guard lock(mutex_);
  if (!listening_) {
    return Operation<std::shared_ptr<DatagramEndpoint>>::done(
        Status(Errc::kInvalidState, "get_request needs a listening endpoint"));
  }
  if (!requests_.empty()) {
    auto request = std::move(requests_.front());
    requests_.pop_front();
    return Operation<std::shared_ptr<DatagramEndpoint>>::done(std::move(request));
  }
  auto [op, completer] = Operation<std::shared_ptr<DatagramEndpoint>>::make();
  request_waiters_.push_back(completer);
  return std::move(op);
}

Operation<DatagramPeer> IbDatagramEndpoint::lookup(const SocketAddress& destination,
                                                   std::span<const std::byte> private_data,
                                                   std::chrono::milliseconds timeout) {
  std::lock_guard lock(mutex_);
  if (private_data.size() > kMaxPrivateData) {
    return Operation<DatagramPeer>::done(
        Status(Errc::kInvalidArgument,
               "private data longer than " + std::to_string(kMaxPrivateData) + " bytes"));
  }
  if (phase_ != Phase::kIdle || listening_ || incoming_) {
    return Operation<DatagramPeer>::done(
        Status(Errc::kInvalidState, "an endpoint looks up once, and not while listening"));
  }
  auto [op, completer] = Operation<DatagramPeer>::make();
  lookup_data_.assign(private_data.begin(), private_data.end());
  timeout_ = timeout;
  sockaddr* source = local_.empty() ? nullptr : const_cast<sockaddr*>(local_.get());
  if (rdma_resolve_addr(cm_.id(), source, const_cast<sockaddr*>(destination.get()),
                        static_cast<int>(timeout.count())) != 0) {
    completer.complete(verbs_status(-1, "rdma_resolve_addr(" + destination.to_string() + ")"));
    return std::move(op);
  }
  phase_ = Phase::kResolving;
  looking_up_ = completer;
  return std::move(op);
}

Operation<void> IbDatagramEndpoint::accept(std::shared_ptr<DatagramQueuePair> qp,
                                           std::span<const std::byte> private_data) {
  std::lock_guard lock(mutex_);
  if (!incoming_) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "accept needs an endpoint from get_request"));
  }
  auto own = std::dynamic_pointer_cast<IbDatagramQueuePair>(qp);
  if (!own) {
    return Operation<void>::done(
        Status(Errc::kInvalidArgument, "the QP is not of the ibverbs provider"));
  }
  if (private_data.size() > kMaxPrivateData) {
    return Operation<void>::done(Status(Errc::kInvalidArgument, "private data too long"));
  }
  const uint32_t qkey = htonl(own->core().qkey());
  std::vector<std::byte> framed =
      frame_private_data(false, private_data, std::as_bytes(std::span(&qkey, 1)));
  rdma_conn_param param{};
  param.private_data = framed.data();
  param.private_data_len = static_cast<uint8_t>(framed.size());
  param.qp_num = own->number();
  if (rdma_accept(cm_.id(), &param) != 0) {
    return Operation<void>::done(verbs_status(-1, "rdma_accept"));
  }
  incoming_ = false;
  return Operation<void>::done(Status::ok());
}

Status IbDatagramEndpoint::reject(std::span<const std::byte> private_data) {
  std::lock_guard lock(mutex_);
  if (!incoming_) return Status(Errc::kInvalidState, "reject needs an endpoint from get_request");
  if (private_data.size() > kMaxPrivateData) {
    return Status(Errc::kInvalidArgument, "private data too long");
  }
  std::vector<std::byte> framed = frame_private_data(false, private_data);
  if (rdma_reject(cm_.id(), framed.data(), static_cast<uint8_t>(framed.size())) != 0) {
    return verbs_status(-1, "rdma_reject");
  }
  incoming_ = false;
  return Status::ok();
}

DatagramPeer IbDatagramEndpoint::request() const {
  std::lock_guard lock(mutex_);
  return request_;
}

SocketAddress IbDatagramEndpoint::local_address() const {
  std::lock_guard lock(mutex_);
  return local_;
}

Operation<DatagramPeer> IbDatagramEndpoint::join_multicast(std::shared_ptr<DatagramQueuePair> qp,
                                                           const SocketAddress& group) {
  auto own = std::dynamic_pointer_cast<IbDatagramQueuePair>(qp);
  if (!own) {
    return Operation<DatagramPeer>::done(
        Status(Errc::kInvalidArgument, "the QP is not of the ibverbs provider"));
  }
  const std::string key = group.to_string();
  auto created = std::make_unique<Membership>(provider_->loop());
  Membership* membership = created.get();
  if (Status opened = membership->cm.open(RDMA_PS_UDP, membership_handler(key, membership));
      !opened) {
    return Operation<DatagramPeer>::done(opened);
  }
  auto [op, completer] = Operation<DatagramPeer>::make();
  std::unique_lock lock(mutex_);
  if (memberships_.count(key) != 0) {
    lock.unlock();
    created.reset();  // closes its channel, which must not happen under mutex_
    return Operation<DatagramPeer>::done(
        Status(Errc::kInvalidState, "already a member of (or joining) " + key));
  }
  membership->group = group;
  membership->qp = std::move(own);
  membership->joining = completer;
  // In the map before the id can produce events: the handler finds its membership there.
  memberships_[key] = std::move(created);
  rdma_cm_id* id = membership->cm.id();
  // The endpoint's own address with an ephemeral port: the bound or listening id holds the port.
  SocketAddress source = local_;
  if (!source.empty()) source.set_port(0);
  Status started = Status::ok();
  if (!source.empty() && !source.is_wildcard() && rdma_bind_addr(id, source.get()) != 0) {
    started = verbs_status(-1, "rdma_bind_addr(" + source.to_string() + ") for " + key);
  } else if (id->verbs != nullptr) {
    started = start_join(*membership);
  } else if (rdma_resolve_addr(id, source.empty() ? nullptr : source.get(),
                               const_cast<sockaddr*>(group.get()), 2000) != 0) {
    // No device yet: resolving the group's address picks one; the join follows on
    // ADDR_RESOLVED.
    started = verbs_status(-1, "rdma_resolve_addr(" + key + ")");
  }
  if (!started) {
    std::unique_ptr<Membership> failed = std::move(memberships_[key]);
    memberships_.erase(key);
    lock.unlock();
    (void)release(*failed);
    completer.complete(started);
  }
  return std::move(op);
}

Status IbDatagramEndpoint::start_join(Membership& membership) {
  if (rdma_join_multicast(membership.cm.id(), membership.group.get(), nullptr) != 0) {
    return verbs_status(-1, "rdma_join_multicast(" + membership.group.to_string() + ")");
  }
  membership.join_issued = true;
  return Status::ok();
}

Status IbDatagramEndpoint::release(Membership& membership) {
  Status status = Status::ok();
  if (membership.attached) {
    const AddressVector& av = membership.peer.address;
    status = membership.qp->detach_multicast(av.destination_gid, av.destination_lid);
    membership.attached = false;
  }
  if (membership.join_issued) {
    rdma_leave_multicast(membership.cm.id(), membership.group.get());
    membership.join_issued = false;
  }
  membership.cm.close();
  return status;
}

Status IbDatagramEndpoint::leave_multicast(const SocketAddress& group) {
  std::unique_lock lock(mutex_);
  auto it = memberships_.find(group.to_string());
  if (it == memberships_.end()) {
    return Status(Errc::kNotFound, "not a member of " + group.to_string());
  }
  std::unique_ptr<Membership> membership = std::move(it->second);
  memberships_.erase(it);
  lock.unlock();
  // A join still under way ends here.
  membership->joining.complete(Status(Errc::kCancelled, "left " + group.to_string()));
  return release(*membership);
}

std::function<void(rdma_cm_event*)> IbDatagramEndpoint::membership_handler(std::string key,
                                                                           const Membership* tag) {
  std::weak_ptr<IbDatagramEndpoint> weak = weak_from_this();
  return [weak, key = std::move(key), tag](rdma_cm_event* event) {
    auto self = weak.lock();
    if (!self) {
      rdma_ack_cm_event(event);
      return;
    }
    self->on_membership_event(key, tag, event);
  };
}

void IbDatagramEndpoint::on_membership_event(const std::string& key, const Membership* tag,
                                             rdma_cm_event* event) {
  const rdma_cm_event_type type = event->event;
  const int status = event->status;
  rdma_ud_param ud = event->param.ud;
  ud.private_data = nullptr;  // freed by the ack; a join carries none
  ud.private_data_len = 0;
  rdma_ack_cm_event(event);

  std::unique_lock lock(mutex_);
  auto it = memberships_.find(key);
  if (it == memberships_.end() || it->second.get() != tag) return;  // left meanwhile
  Membership& membership = *it->second;
  Status failed = Status::ok();
  switch (type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
      failed = start_join(membership);
      break;
    case RDMA_CM_EVENT_ADDR_ERROR:
      failed =
          Status(Errc::kUnreachable,
                 "resolving " + key + " failed: " + std::strerror(status < 0 ? -status : status));
      break;
    case RDMA_CM_EVENT_MULTICAST_JOIN: {
      DatagramPeer peer = peer_of(ud, false);
      peer.qp_number = kMulticastQpNumber;
      peer.qkey = membership.qp->core().qkey();
      failed = membership.qp->attach_multicast(peer.address.destination_gid,
                                               peer.address.destination_lid);
      if (!failed) break;
      membership.peer = peer;
      membership.attached = true;
      membership.joining.complete(peer);
      return;
    }
    case RDMA_CM_EVENT_MULTICAST_ERROR:
      failed = Status(Errc::kUnreachable,
                      "joining " + key + " failed (status " + std::to_string(status) + ")");
      break;
    default:
      return;
  }
  if (failed) return;
  // A failed join (or a membership the fabric ended) leaves the group and frees the id; an
  // application still holding the group learns it from leave_multicast's kNotFound.
  std::unique_ptr<Membership> gone = std::move(it->second);
  memberships_.erase(it);
  lock.unlock();
  gone->joining.complete(failed);
  (void)release(*gone);
}

DatagramPeer IbDatagramEndpoint::peer_of(const rdma_ud_param& param, bool with_qkey) const {
  DatagramPeer peer;
  peer.address = address_of(param.ah_attr);
  peer.qp_number = param.qp_num;
  peer.qkey = param.qkey;
  uint32_t qkey = 0;
  std::span<std::byte> header;
  if (with_qkey) header = std::as_writable_bytes(std::span(&qkey, 1));
  peer.private_data =
      unframe_private_data(false, param.private_data, param.private_data_len, header);
  if (with_qkey && param.private_data_len >= 5) peer.qkey = ntohl(qkey);
  return peer;
}

void IbDatagramEndpoint::fail(Status status) {
  phase_ = Phase::kIdle;
  looking_up_.complete(status);
}

void IbDatagramEndpoint::on_request(rdma_cm_event* event) {
  rdma_cm_id* id = event->id;
  DatagramPeer peer = peer_of(event->param.ud, false);
  rdma_ack_cm_event(event);
  std::shared_ptr<IbDatagramEndpoint> incoming(new IbDatagramEndpoint(provider_));
  if (Status status = incoming->cm_.adopt(id, incoming->handler()); !status) return;
  incoming->incoming_ = true;
  incoming->request_ = std::move(peer);
  incoming->local_ = local_address_of(id);
  std::lock_guard lock(mutex_);
  while (!request_waiters_.empty()) {
    auto waiter = std::move(request_waiters_.front());
    request_waiters_.pop_front();
    if (waiter.complete(std::shared_ptr<DatagramEndpoint>(incoming))) return;
  }
  requests_.push_back(std::move(incoming));
}

void IbDatagramEndpoint::on_event(rdma_cm_event* event) {
  if (event->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
    on_request(event);
    return;
  }
  const rdma_cm_event_type type = event->event;
  const int status = event->status;
  const rdma_ud_param ud = event->param.ud;
  // Copied before the ack frees the event's private data.
  std::vector<std::byte> data;
  if (ud.private_data != nullptr) {
    const auto* bytes = static_cast<const std::byte*>(ud.private_data);
    data.assign(bytes, bytes + ud.private_data_len);
  }
  rdma_ud_param copy = ud;
  copy.private_data = data.empty() ? nullptr : data.data();
  rdma_ack_cm_event(event);

  std::lock_guard lock(mutex_);
  switch (type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
      local_ = local_address_of(cm_.id());
      phase_ = Phase::kRouting;
      if (rdma_resolve_route(cm_.id(), static_cast<int>(timeout_.count())) != 0) {
        fail(verbs_status(-1, "rdma_resolve_route"));
      }
      break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED: {
      phase_ = Phase::kAsking;
      std::vector<std::byte> framed = frame_private_data(false, lookup_data_);
      rdma_conn_param param{};
      param.private_data = framed.data();
      param.private_data_len = static_cast<uint8_t>(framed.size());
      if (rdma_connect(cm_.id(), &param) != 0) fail(verbs_status(-1, "rdma_connect (lookup)"));
      break;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
      phase_ = Phase::kDone;
      request_ = peer_of(copy, true);
      looking_up_.complete(request_);
      break;
    case RDMA_CM_EVENT_REJECTED:
      request_ = peer_of(copy, false);
      fail(Status(Errc::kRejected, "the peer rejected the lookup"));
      break;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
      fail(Status(Errc::kUnreachable, "resolution failed: " + std::string(std::strerror(
                                                                  status < 0 ? -status : status))));
      break;
    case RDMA_CM_EVENT_UNREACHABLE:
      // A SIDR reply with status IB_SIDR_REJECT (2): the peer's consumer rejected the lookup.
      if (phase_ == Phase::kAsking && status == kSidrReject) {
        request_ = peer_of(copy, false);
        fail(Status(Errc::kRejected, "the peer rejected the lookup"));
        break;
      }
      [[fallthrough]];
    case RDMA_CM_EVENT_CONNECT_ERROR:
      fail(Status(status == -ETIMEDOUT ? Errc::kTimedOut : Errc::kConnectionRefused,
                  "lookup got no answer (status " + std::to_string(status) + ")"));
      break;
    default:
      break;
  }
}

}  // namespace wv::verbs::ib
