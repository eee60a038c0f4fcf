#include "worker_impl.h"

#include <poll.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "wv/config/config.h"
#include "wv/config/names.h"
#include "wv/cpus.h"

namespace wv::transport {

namespace names = config::names;

namespace {

constexpr std::string_view kRaceLost = "wv: connect race, the peer's connect wins";
constexpr std::string_view kDuplicate = "wv: already connected";
constexpr std::string_view kMalformedHello = "wv: malformed hello";
constexpr int kListenBacklog = 128;

void* peer_context(PeerId id) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(id) + 1);
}

// "wv1 <uuid as 16 hex digits> <ip:port> <receive capacity>": the address a worker publishes
// and the private data of its connects. The acceptor learns which peer is calling, and every
// sender learns how large an eager message the receiver's buffers take (workers of one job
// may choose different eager limits: their cost models run on different machines).
std::vector<std::byte> encode_address(uint64_t uuid, std::string_view address, size_t capacity) {
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "wv1 %016llx ", static_cast<unsigned long long>(uuid));
  std::string text = prefix + std::string(address) + " " + std::to_string(capacity);
  std::vector<std::byte> bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

struct DecodedAddress {
  uint64_t uuid = 0;
  std::string address;
  size_t capacity = 0;
};

bool decode_address(std::span<const std::byte> bytes, DecodedAddress* out) {
  std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (text.size() < 22 || text.size() > 200 || text.compare(0, 4, "wv1 ") != 0 || text[20] != ' ') {
    return false;
  }
  uint64_t value = 0;
  for (int i = 4; i < 20; ++i) {
    char c = text[static_cast<size_t>(i)];
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return false;
    value = value << 4 | static_cast<uint64_t>(digit);
  }
  const size_t space = text.find(' ', 21);
  if (space == std::string::npos) return false;
  const std::string capacity = text.substr(space + 1);
  if (capacity.empty() || capacity.size() > 9 ||
      capacity.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  out->uuid = value;
  out->address = text.substr(21, space - 21);
  out->capacity = std::stoul(capacity);
  return out->capacity >= sizeof(wire::ReadyBody) &&
         verbs::SocketAddress::parse(out->address).is_ok();
}

std::string private_text(const std::vector<std::byte>& data) {
  return std::string(reinterpret_cast<const char*>(data.data()), data.size());
}

}  // namespace

std::string_view to_string(ProgressMode mode) {
  switch (mode) {
    case ProgressMode::kPoll:
      return "poll";
    case ProgressMode::kBlock:
      return "block";
    case ProgressMode::kHybrid:
      return "hybrid";
  }
  return "unknown";
}

namespace {

int usable_cpus() {
  return std::max(1, static_cast<int>(allowed_cpus().size()));
}

}  // namespace

Result<std::unique_ptr<Worker>> Worker::create(const WorkerOptions& options) {
  auto worker = std::make_unique<WorkerImpl>();
  if (Status status = worker->init(options); !status.is_ok()) return status;
  return std::unique_ptr<Worker>(std::move(worker));
}

WorkerImpl::WorkerImpl() = default;

WorkerImpl::~WorkerImpl() {
  stop_progress_thread();
  std::lock_guard lock(mutex_);
  // Orderly close of every connection so peers see a disconnect rather than a reset; the
  // operations are not waited for (the endpoints finish them on their own).
  for (auto& peer : peers_) {
    for (auto* connection : {peer->active.get(), peer->loopback.get()}) {
      if (connection && connection->endpoint && peer->state == PeerState::kConnected) {
        (void)connection->endpoint->disconnect();
      }
    }
  }
  next_request_.reset();
  listener_.reset();
  peers_.clear();
}

Status WorkerImpl::init(const WorkerOptions& options) {
  const auto& global = config::global();
  if (!global.is_ok()) return global.status();
  config_ = global.value();
  for (const auto& [name, value] : options.settings) {
    if (Status status = config_->set(name, value, "WorkerOptions"); !status.is_ok()) return status;
  }
  const config::Config& config = *config_;

  std::string provider_name =
      options.provider.empty() ? config.get_string(names::kProvider) : options.provider;
  auto provider = verbs::Provider::open(provider_name);
  if (!provider.is_ok()) return provider.status();
  provider_ = std::move(provider).value();

  std::string device_name =
      options.device.empty() ? config.get_string(names::kDevice) : options.device;
  if (device_name.empty()) {
    auto devices = provider_->devices();
    if (!devices.is_ok()) return devices.status();
    if (devices->empty()) {
      return Status(Errc::kNotFound,
                    "provider " + std::string(provider_->name()) + " has no device");
    }
    device_name = devices->front().name;
  }
  auto device = provider_->open_device(device_name);
  if (!device.is_ok()) return device.status();
  device_ = std::move(device).value();
  const verbs::DeviceAttributes& attributes = device_->attributes();
  capabilities_ = attributes.capabilities;

  credit_window_ = static_cast<uint32_t>(config.get_int(names::kTransportCredits));
  send_depth_ = static_cast<uint32_t>(config.get_int(names::kTransportSendDepth));
  if (attributes.max_qp_wr) send_depth_ = std::min(send_depth_, attributes.max_qp_wr);
  // Few enough that a full send queue always holds a signaled send whose completion frees it.
  unsignaled_limit_ = std::clamp<uint32_t>(send_depth_ / 4, 1, 16);
  outbound_read_depth_ = std::max<uint32_t>(1, attributes.max_outbound_read_depth);
  unexpected_limit_ = config.get_size(names::kTransportUnexpectedLimit);
  const std::string& mode = config.get_string(names::kTransportProgress);
  wait_policy_.mode = mode == "poll"    ? ProgressMode::kPoll
                      : mode == "block" ? ProgressMode::kBlock
                                        : ProgressMode::kHybrid;
  wait_policy_.spin = std::chrono::microseconds(config.get_int(names::kTransportSpinUs));
  wait_policy_.yield = std::chrono::microseconds(config.get_int(names::kTransportYieldUs));
  if (options.local_processes > usable_cpus()) wait_policy_.spin = std::chrono::microseconds(0);
  connect_timeout_ = std::chrono::milliseconds(config.get_int(names::kConnectTimeoutMs));
  mailboxes_ = config.get_bool(names::kTransportMailbox) &&
               verbs::has(capabilities_, verbs::Capability::kRemoteMapping);

  auto domain = device_->allocate_protection_domain();
  if (!domain.is_ok()) return domain.status();
  domain_ = std::move(domain).value();
  if (Status status = choose_thresholds(); !status.is_ok()) return status;

  const auto receive_count = static_cast<uint32_t>(config.get_int(names::kTransportReceiveBuffers));
  const auto send_count = static_cast<uint32_t>(config.get_int(names::kTransportSendBuffers));
  // Receive buffers take the largest eager message any peer may choose (kMaxEagerLimit unless
  // configured), so this worker's own cost model never limits what peers send.
  const uint64_t eager_setting = config.get_size(names::kTransportEagerLimit);
  receive_capacity_ =
      std::max<size_t>(eager_setting ? eager_setting : kMaxEagerLimit, sizeof(wire::ReadyBody));
  const size_t send_size =
      sizeof(wire::Header) + std::max(thresholds_.eager_limit, sizeof(wire::ReadyBody));
  const size_t receive_size = sizeof(wire::Header) + receive_capacity_;
  uint32_t cq_entries =
      receive_count + std::max<uint32_t>(receive_count / 2, 8) + 4 * send_depth_ + 64;
  if (attributes.max_cqe) cq_entries = std::min(cq_entries, attributes.max_cqe);
  auto cq = device_->create_completion_queue(cq_entries);
  if (!cq.is_ok()) return cq.status();
  cq_ = std::move(cq).value();
  // The SRQ starts with receive_count buffers and can take half as many again: a reserve
  // posted when the SRQ's limit event says a burst is draining it faster than progress
  // reposts (memory stays independent of the peer count either way).
  const uint32_t reserve_count = std::max<uint32_t>(receive_count / 2, 8);
  auto srq = domain_->create_shared_receive_queue(receive_count + reserve_count, 1, 0);
  if (!srq.is_ok()) return srq.status();
  srq_ = std::move(srq).value();

  auto send_buffers = BufferPool::create(*domain_, send_count, send_size, verbs::Access::kNone);
  if (!send_buffers.is_ok()) return send_buffers.status();
  send_buffers_ = std::move(send_buffers).value();
  auto receive_buffers = BufferPool::create(*domain_, receive_count + reserve_count, receive_size,
                                            verbs::Access::kLocalWrite);
  if (!receive_buffers.is_ok()) return receive_buffers.status();
  receive_buffers_ = std::move(receive_buffers).value();
  auto atomic_buffers = BufferPool::create(*domain_, 256, 8, verbs::Access::kLocalWrite);
  if (!atomic_buffers.is_ok()) return atomic_buffers.status();
  atomic_buffers_ = std::move(atomic_buffers).value();
  deferred_limit_ = std::min<size_t>(kMaxDeferredReposts, receive_count / 8);
  for (uint32_t i = 0; i < receive_count; ++i) {
    uint32_t buffer = receive_buffers_->take();
    verbs::Sge sge = receive_buffers_->sge(buffer, receive_buffers_->buffer_size());
    if (Status status = srq_->post_receive(make_wr_id(WorkKind::kReceive, buffer), {&sge, 1});
        !status.is_ok()) {
      return status;
    }
  }
  if (has(capabilities_, verbs::Capability::kSrqLimitEvent)) {
    if (Status status = srq_->modify(verbs::SharedReceiveQueue::kUnchanged,
                                     std::max<uint32_t>(receive_count / 8, 1));
        !status.is_ok()) {
      return status;
    }
    srq_limit_.emplace(srq_->notify_limit());
  }
  cache_ = std::make_unique<RegistrationCache>(
      domain_, static_cast<size_t>(config.get_int(names::kTransportRegistrationCache)));

  if (getrandom(&uuid_, sizeof uuid_, 0) != sizeof uuid_) {
    return errno_status(Errc::kIoError, "getrandom for the worker's identity");
  }

  // The listener: an explicit address, else the provider's first non-loopback address.
  std::string listen = options.listen_address.empty() ? config.get_string(names::kTransportAddress)
                                                      : options.listen_address;
  if (listen.empty()) {
    listen = "127.0.0.1:0";
    auto addresses = provider_->addresses();
    if (addresses.is_ok()) {
      for (const verbs::AddressInfo& info : *addresses) {
        if (info.address.family() != AF_INET) continue;
        std::string text = info.address.to_string();
        if (text.rfind("127.", 0) == 0) continue;
        verbs::SocketAddress any = info.address;
        any.set_port(0);
        listen = any.to_string();
        break;
      }
    }
  } else if (listen.find(':') == std::string::npos) {
    listen += ":0";
  }
  auto bind_address = verbs::SocketAddress::parse(listen);
  if (!bind_address.is_ok()) return bind_address.status();
  auto listener = provider_->create_connect_endpoint();
  if (!listener.is_ok()) return listener.status();
  listener_ = std::move(listener).value();
  if (Status status = listener_->bind(*bind_address); !status.is_ok()) return status;
  if (Status status = listener_->listen(kListenBacklog); !status.is_ok()) return status;
  listen_address_ = listener_->query().local.to_string();
  next_request_.emplace(listener_->get_request());
  device_event_.emplace(device_->next_event());
  return Status::ok();
}

std::vector<std::byte> WorkerImpl::address() const {
  return encode_address(uuid_, listen_address_, receive_capacity_);
}

// A hello is the address, then, where the sender offers the peer an inbox (mailbox.h),
// "|mb2 <inbox address, 16 hex digits> <its key, 8 hex digits> <a: asymmetric fences, s: not>".
constexpr std::string_view kInboxMark = "|mb2 ";
constexpr size_t kInboxTextBytes = 16 + 1 + 8 + 2;

std::vector<std::byte> WorkerImpl::hello(Peer& peer) {
  std::vector<std::byte> bytes = address();
  if (!mailboxes_ || peer.uuid == uuid_) return bytes;  // no mailbox to ourselves
  if (!peer.inbox) {
    auto inbox = Inbox::create(*domain_);
    if (!inbox.is_ok()) return bytes;  // the peer's messages all take the QP
    peer.inbox = std::move(inbox).value();
  }
  const verbs::RemoteAddress remote = peer.inbox->remote();
  char text[kInboxMark.size() + kInboxTextBytes + 1];
  std::snprintf(text, sizeof text, "%s%016llx %08x %c", kInboxMark.data(),
                static_cast<unsigned long long>(remote.address), remote.rkey,
                asymmetric_fences() ? 'a' : 's');
  const auto* first = reinterpret_cast<const std::byte*>(text);
  bytes.insert(bytes.end(), first, first + kInboxMark.size() + kInboxTextBytes);
  return bytes;
}

std::span<const std::byte> WorkerImpl::read_hello(std::span<const std::byte> hello,
                                                  std::optional<InboxOffer>* inbox) {
  const std::string_view text(reinterpret_cast<const char*>(hello.data()), hello.size());
  const size_t mark = text.find(kInboxMark);
  inbox->reset();
  if (mark == std::string_view::npos) return hello;
  const std::string_view offer = text.substr(mark + kInboxMark.size());
  unsigned long long address = 0;
  unsigned rkey = 0;
  char fences = 0;
  int consumed = 0;
  const std::string field(offer);
  if (offer.size() == kInboxTextBytes &&
      std::sscanf(field.c_str(), "%16llx %8x %c%n", &address, &rkey, &fences, &consumed) == 3 &&
      static_cast<size_t>(consumed) == kInboxTextBytes && (fences == 'a' || fences == 's')) {
    *inbox = InboxOffer{verbs::RemoteAddress{address, rkey}, fences == 'a'};
  }
  return hello.first(mark);
}

Result<PeerId> WorkerImpl::add_peer(std::span<const std::byte> address) {
  std::lock_guard lock(mutex_);
  DecodedAddress decoded;
  if (!decode_address(address, &decoded)) {
    return Status(Errc::kInvalidArgument,
                  "not a wv worker address (expected \"wv1 <uuid> <ip:port> <capacity>\")");
  }
  if (auto it = peer_by_uuid_.find(decoded.uuid); it != peer_by_uuid_.end()) return it->second;
  auto peer = std::make_unique<Peer>();
  peer->id = static_cast<PeerId>(peers_.size());
  peer->uuid = decoded.uuid;
  peer->address = std::move(decoded.address);
  peer->eager_limit = std::min(thresholds_.eager_limit, decoded.capacity);
  peer_by_uuid_.emplace(decoded.uuid, peer->id);
  peers_.push_back(std::move(peer));
  return peers_.back()->id;
}

WorkerCounters WorkerImpl::counters() const {
  std::lock_guard lock(mutex_);
  WorkerCounters counters = counters_;
  RegistrationCache::Counters cache = cache_->counters();
  counters.registration_cache_hits = cache.hits;
  counters.registration_cache_misses = cache.misses;
  counters.registration_cache_invalidations = cache.invalidations;
  return counters;
}

// ---- Connections ----

Result<Peer*> WorkerImpl::peer_for_send(PeerId id) {
  if (id >= peers_.size()) {
    return Status(Errc::kInvalidArgument, "no peer " + std::to_string(id) + " (" +
                                              std::to_string(peers_.size()) + " added)");
  }
  Peer& peer = *peers_[id];
  if (peer.state == PeerState::kFailed) return peer.failure;
  if (peer.state == PeerState::kIdle) start_connect(peer);
  if (peer.state == PeerState::kFailed) return peer.failure;
  return &peer;
}

Result<std::shared_ptr<verbs::ConnectQueuePair>> WorkerImpl::create_qp(Peer& peer) {
  verbs::QueuePairOptions options;
  options.send_cq = cq_;
  options.receive_cq = cq_;
  options.srq = srq_;
  options.send_depth = send_depth_;
  options.signal_all_sends = false;
  options.send_sge = 3;
  options.receive_sge = 1;
  options.max_inline = static_cast<uint32_t>(inline_bytes_);
  options.context = peer_context(peer.id);
  // Every connection may fill its send queue: the CQ must hold all of it plus the receives.
  const uint64_t connections = std::count_if(
      peers_.begin(), peers_.end(), [](const auto& p) { return p->state != PeerState::kIdle; });
  const uint64_t needed = receive_buffers_->count() + (connections + 2) * send_depth_ + 64;
  if (needed > cq_->capacity()) {
    if (Status status = cq_->resize(static_cast<uint32_t>(needed)); !status.is_ok()) {
      return status;
    }
  }
  return domain_->create_connect_queue_pair(options);
}

void WorkerImpl::start_connect(Peer& peer) {
  peer.deadline = Clock::now() + connect_timeout_;
  auto destination = verbs::SocketAddress::parse(peer.address);
  auto endpoint = provider_->create_connect_endpoint();
  if (!destination.is_ok() || !endpoint.is_ok()) {
    fail_peer(peer, !destination.is_ok() ? destination.status() : endpoint.status());
    return;
  }
  peer.outgoing = std::make_unique<Connection>();
  peer.outgoing->endpoint = std::move(endpoint).value();
  peer.outgoing->step.emplace(
      peer.outgoing->endpoint->resolve_address(*destination, connect_timeout_));
  peer.state = PeerState::kConnecting;
  unsettle(peer);
}

void WorkerImpl::progress_listener() {
  while (next_request_ && next_request_->ready()) {
    auto request = next_request_->result();
    next_request_.emplace(listener_->get_request());
    if (request.is_ok()) handle_request(std::move(request).value());
  }
}

void WorkerImpl::handle_request(std::shared_ptr<verbs::ConnectEndpoint> endpoint) {
  const verbs::ConnectAttributes attributes = endpoint->query();
  std::optional<InboxOffer> peer_inbox;
  const std::span<const std::byte> address =
      read_hello(attributes.peer_parameters.private_data, &peer_inbox);
  DecodedAddress decoded;
  if (!decode_address(address, &decoded)) {
    (void)endpoint->reject(std::as_bytes(std::span(kMalformedHello)));
    return;
  }
  const uint64_t uuid = decoded.uuid;
  auto id = add_peer(address);
  if (!id.is_ok()) {
    (void)endpoint->reject(std::as_bytes(std::span(kMalformedHello)));
    return;
  }
  Peer& peer = *peers_[*id];
  const bool self = uuid == uuid_;
  if (!self) {
    switch (peer.state) {
      case PeerState::kConnecting:
        if (uuid_ > peer.uuid) {
          // Both connected at once: the connect of the larger identity wins, on both sides.
          (void)endpoint->reject(std::as_bytes(std::span(kRaceLost)));
          return;
        }
        ++counters_.connect_races_resolved;
        break;
      case PeerState::kAccepting:
      case PeerState::kConnected:
      case PeerState::kFailed:
        (void)endpoint->reject(std::as_bytes(std::span(kDuplicate)));
        return;
      case PeerState::kIdle:
      case PeerState::kAwaiting:
        break;
    }
  } else if (peer.loopback) {
    (void)endpoint->reject(std::as_bytes(std::span(kDuplicate)));
    return;
  }
  auto qp = create_qp(peer);
  if (!qp.is_ok()) {
    (void)endpoint->reject({});
    if (!self) fail_peer(peer, qp.status());
    return;
  }
  auto connection = std::make_unique<Connection>();
  connection->incoming = true;
  connection->endpoint = std::move(endpoint);
  connection->qp = std::move(qp).value();
  verbs::ConnectParameters parameters;
  parameters.private_data = hello(peer);
  connection->step.emplace(connection->endpoint->accept(connection->qp, parameters));
  unsettle(peer);
  if (self) {
    peer.loopback = std::move(connection);
    return;
  }
  peer.peer_inbox = peer_inbox;
  peer.active = std::move(connection);
  peer.state = PeerState::kAccepting;
  peer.deadline = Clock::now() + connect_timeout_;
}

void WorkerImpl::progress_peer_connection(Peer& peer) {
  if (peer.loopback && peer.loopback->step && peer.loopback->step->ready()) {
    Status status = peer.loopback->step->result().status();
    peer.loopback->step.reset();
    if (!status.is_ok()) fail_peer(peer, status);
  }
  Connection* outgoing = peer.outgoing.get();
  if (outgoing) {
    if (outgoing->stage < 2 && outgoing->step && outgoing->step->ready()) {
      Status status = outgoing->step->result().status();
      outgoing->step.reset();
      if (!status.is_ok()) {
        if (peer.state == PeerState::kConnecting) fail_peer(peer, status);
        peer.outgoing.reset();
        return;
      }
      if (outgoing->stage == 0) {
        outgoing->stage = 1;
        outgoing->step.emplace(outgoing->endpoint->resolve_route(connect_timeout_));
      } else {
        auto qp = create_qp(peer);
        if (!qp.is_ok()) {
          fail_peer(peer, qp.status());
          return;
        }
        outgoing->qp = std::move(qp).value();
        verbs::ConnectParameters parameters;
        parameters.private_data = hello(peer);
        outgoing->stage = 2;
        outgoing->connect.emplace(outgoing->endpoint->connect(outgoing->qp, parameters));
      }
    } else if (outgoing->stage == 2 && outgoing->connect->ready()) {
      auto result = outgoing->connect->result();
      if (result.is_ok()) {
        if (peer.state == PeerState::kConnecting) {
          (void)read_hello(outgoing->endpoint->query().peer_parameters.private_data,
                           &peer.peer_inbox);
          peer.active = std::move(peer.outgoing);
          connected(peer);
        } else {
          // We accepted the peer's connect meanwhile; this one is surplus.
          (void)outgoing->endpoint->disconnect();
          peer.outgoing.reset();
        }
        return;
      }
      std::string reason = private_text(outgoing->endpoint->query().peer_parameters.private_data);
      if (result.status().code() == Errc::kRejected && reason == kRaceLost) {
        if (peer.state == PeerState::kConnecting) peer.state = PeerState::kAwaiting;
        ++counters_.connect_races_resolved;
      } else if (peer.state == PeerState::kConnecting) {
        fail_peer(peer, Status(result.status().code(),
                               "connecting to peer " + std::to_string(peer.id) + " at " +
                                   peer.address + ": " + result.status().message()));
      }
      peer.outgoing.reset();
      return;
    }
  }
  if (peer.state == PeerState::kAccepting && peer.active->step && peer.active->step->ready()) {
    Status status = peer.active->step->result().status();
    peer.active->step.reset();
    if (status.is_ok()) {
      connected(peer);
    } else {
      fail_peer(peer, Status(status.code(), "accepting peer " + std::to_string(peer.id) + ": " +
                                                status.message()));
    }
    return;
  }
  if ((peer.state == PeerState::kConnecting || peer.state == PeerState::kAccepting ||
       peer.state == PeerState::kAwaiting) &&
      Clock::now() > peer.deadline) {
    fail_peer(peer, Status(Errc::kTimedOut, "no connection to peer " + std::to_string(peer.id) +
                                                " at " + peer.address + " within " +
                                                std::to_string(connect_timeout_.count()) + " ms"));
  }
}

bool WorkerImpl::anything_connecting() const {
  return !unsettled_.empty();
}

void WorkerImpl::progress_device_events() {
  // A QP the device gave up on says why here (before its endpoint reports the disconnect).
  while (device_event_ && device_event_->ready()) {
    auto event = device_event_->result();
    device_event_.emplace(device_->next_event());
    if (!event.is_ok()) return;
    if (event->type != verbs::EventType::kQpFatal) continue;
    const auto context = reinterpret_cast<uintptr_t>(event->context);
    if (context == 0 || context > peers_.size()) continue;
    Peer& peer = *peers_[context - 1];
    // The provider queues what the peer sent before the failure ahead of the event, maybe just
    // after this pass polled: take it before the peer's requests fail (a job's last message).
    poll_completions();
    fail_peer(peer,
              Status(Errc::kDisconnected, "connection to peer " + std::to_string(peer.id) + " at " +
                                              peer.address + " failed: " + event->detail));
  }
}

void WorkerImpl::unsettle(Peer& peer) {
  if (std::find(unsettled_.begin(), unsettled_.end(), peer.id) == unsettled_.end()) {
    unsettled_.push_back(peer.id);
  }
}

void WorkerImpl::progress_connections(bool thorough) {
  if (thorough) {
    progress_listener();
    progress_device_events();
    if (srq_limit_ && srq_limit_->ready()) {
      // The limit fired (and disarmed itself): post the reserve, once.
      srq_limit_.reset();
      for (uint32_t buffer = receive_buffers_->take(); buffer != BufferPool::kNone;
           buffer = receive_buffers_->take()) {
        repost_receive(buffer);
      }
      ++counters_.receive_reserve_posted;
    }
    for (auto& peer : peers_) {
      if (peer->state != PeerState::kConnected || !peer->active || !peer->active->closed ||
          !peer->active->closed->ready()) {
        continue;
      }
      peer->active->closed.reset();
      poll_completions();  // what the peer sent before it disconnected
      progress_device_events();
      fail_peer(*peer, Status(Errc::kDisconnected, "peer " + std::to_string(peer->id) + " at " +
                                                       peer->address + " disconnected"));
    }
  }
  // Indices: handling one peer may add another (an accepted request) to the list.
  for (size_t i = 0; i < unsettled_.size();) {
    Peer& peer = *peers_[unsettled_[i]];
    progress_peer_connection(peer);
    const bool settled =
        (peer.state == PeerState::kConnected || peer.state == PeerState::kFailed) &&
        !peer.outgoing && !(peer.loopback && peer.loopback->step);
    if (settled) {
      unsettled_[i] = unsettled_.back();
      unsettled_.pop_back();
    } else {
      ++i;
    }
  }
}

void WorkerImpl::connected(Peer& peer) {
  peer.state = PeerState::kConnected;
  peer.active->closed.emplace(peer.active->endpoint->notify_disconnect());
  peer.credits = credit_window_;
  // Mailboxes only where both sides offered one, so both decide alike. Ours is polled even if
  // mapping the peer's fails: the peer may still map ours.
  if (peer.inbox && peer.peer_inbox) {
    // Release-only stores where both processes take part in asymmetric fences: each side
    // knows both, so the sender's stores and the receiver's fences agree.
    const bool asymmetric = asymmetric_fences() && peer.peer_inbox->asymmetric;
    auto outbox = Outbox::map(*peer.active->qp, peer.peer_inbox->remote, asymmetric);
    if (outbox.is_ok()) peer.outbox = std::move(outbox).value();
    peer.inbox->set_asymmetric(asymmetric);
    mailbox_peers_.push_back(peer.id);
  }
  ++counters_.connections;
  pump(peer);
}

void WorkerImpl::fail_peer(Peer& peer, Status status) {
  if (peer.state == PeerState::kFailed) return;
  peer.state = PeerState::kFailed;
  peer.failure = status;
  if (peer.active && peer.active->qp) (void)peer.active->qp->modify(verbs::QpState::kError);
  std::erase(mailbox_peers_, peer.id);
  peer.outbox.reset();
  peer.data.for_each([&](const DataItem& item) {
    if (!item.is_request) send_buffers_->give(static_cast<uint32_t>(item.value));
  });
  peer.data.clear();
  peer.control.clear();
  peer.rdma.clear();
  peer.puts_queued = 0;
  // Every request that involves the peer fails; receives from any source stay posted.
  for (uint32_t index = 0; index < requests_.size(); ++index) {
    RequestSlot& request = requests_[index];
    if (request.kind == RequestKind::kFree || request.done || request.peer != peer.id) continue;
    const uint64_t id = (uint64_t{request.generation} << 32) | index;
    if (request.kind == RequestKind::kReceive && !request.started) posted_.remove(index);
    complete(id, request, status);
  }
}

// ---- Progress ----

Peer* WorkerImpl::peer_of(const verbs::Completion& completion) {
  const auto context = reinterpret_cast<uintptr_t>(completion.qp_context);
  if (context == 0 || context > peers_.size()) return nullptr;
  return peers_[context - 1].get();
}

void WorkerImpl::repost_receive(uint32_t buffer) {
  verbs::Sge sge = receive_buffers_->sge(buffer, receive_buffers_->buffer_size());
  // The SRQ holds every buffer, so this only fails if the device is gone; the buffer is then
  // lost to the pool, which only lowers the receive depth.
  (void)srq_->post_receive(make_wr_id(WorkKind::kReceive, buffer), {&sge, 1});
}

void WorkerImpl::defer_repost(uint32_t buffer) {
  if (deferred_count_ >= deferred_limit_) {
    repost_deferred();
    if (deferred_limit_ == 0) return repost_receive(buffer);
  }
  deferred_reposts_[deferred_count_++] = buffer;
}

void WorkerImpl::repost_deferred() {
  for (size_t i = 0; i < deferred_count_; ++i) repost_receive(deferred_reposts_[i]);
  deferred_count_ = 0;
}

void WorkerImpl::handle_message(Peer& peer, std::span<const std::byte> bytes, bool regular) {
  wire::Header header{};
  const size_t header_bytes = wire::decode(bytes, receive_capacity_, &header);
  if (header_bytes == 0) {
    fail_peer(peer, Status(Errc::kProtocolError, "malformed message from peer " +
                                                     std::to_string(peer.id) + ": " +
                                                     wire::check(bytes, receive_capacity_)));
    return;
  }
  peer.credits += header.credits;
  const auto body = bytes.subspan(header_bytes);
  switch (header.type) {
    case wire::Type::kEager:
      deliver_eager(peer, header, body);
      break;
    case wire::Type::kRendezvous: {
      wire::RendezvousBody rendezvous{};
      (void)wire::read_at(body, 0, &rendezvous);
      deliver_rendezvous(peer, header, rendezvous);
      break;
    }
    case wire::Type::kActive:
      deliver_active(peer, header, body);
      break;
    case wire::Type::kReadyToReceive: {
      wire::ReadyBody ready{};
      (void)wire::read_at(body, 0, &ready);
      handle_ready(peer, header, ready);
      break;
    }
    case wire::Type::kFinish:
      handle_finish(peer, header);
      break;
    case wire::Type::kSyncAck: {
      RequestSlot* request = find_request(header.cookie);
      if (request && request->kind == RequestKind::kSend && !request->done) {
        complete(header.cookie, *request, Status::ok());
      }
      break;
    }
    case wire::Type::kCredit:
      break;
  }
  // A mailbox entry is no receive buffer: it takes no credit and returns none.
  if (regular && wire::consumes_credit(header.type)) return_credits(peer, 1);
  ++counters_.messages_received;
}

int WorkerImpl::drain_inbox(Peer& peer) {
  alignas(8) std::array<std::byte, MailboxLayout::kCapacity> message;
  int handled = 0;
  while (peer.state == PeerState::kConnected) {
    const int length = peer.inbox->take(peer.regular_received, message);
    if (length == Inbox::kEmpty) break;
    if (length == Inbox::kMalformed) {
      fail_peer(peer, Status(Errc::kProtocolError,
                             "malformed mailbox entry from peer " + std::to_string(peer.id)));
      break;
    }
    handle_message(peer, std::span<const std::byte>(message.data(), static_cast<size_t>(length)),
                   false);
    ++handled;
  }
  return handled;
}

int WorkerImpl::poll_mailboxes() {
  int handled = 0;
  // By index: a handler may connect another peer, which grows the list.
  for (size_t i = 0; i < mailbox_peers_.size(); ++i) {
    Peer& peer = *peers_[mailbox_peers_[i]];
    const int count = drain_inbox(peer);
    if (count != 0 && peer.state == PeerState::kConnected) pump(peer);
    handled += count;
  }
  return handled;
}

bool WorkerImpl::announce_sleep() {
  bool heavy_fence = false;
  for (PeerId id : mailbox_peers_) {
    Inbox& inbox = *peers_[id]->inbox;
    inbox.add_sleeper();
    heavy_fence = heavy_fence || inbox.asymmetric();
  }
  // Without the fence a sender's store might go unseen by both sides: do not sleep.
  bool may_sleep = !heavy_fence || Inbox::heavy_fence();
  for (size_t i = 0; may_sleep && i < mailbox_peers_.size(); ++i) {
    may_sleep = !peers_[mailbox_peers_[i]]->inbox->pending();
  }
  if (!may_sleep) announce_awake();
  return may_sleep;
}

void WorkerImpl::announce_awake() {
  for (PeerId id : mailbox_peers_) peers_[id]->inbox->remove_sleeper();
}

void WorkerImpl::handle_completion(const verbs::Completion& completion) {
  Peer* peer = peer_of(completion);
  const uint64_t value = wr_value(completion.wr_id);
  uint32_t retired = 1;  // send-queue requests this completion ends: itself and unsignaled ones
  switch (wr_kind(completion.wr_id)) {
    case WorkKind::kReceive: {
      const auto buffer = static_cast<uint32_t>(value);
      if (completion.status == verbs::CompletionStatus::kSuccess && peer &&
          peer->state != PeerState::kFailed) {
        // Mailbox messages sent before this one go first.
        if (peer->inbox && peer->peer_inbox) drain_inbox(*peer);
        ++peer->regular_received;
        handle_message(
            *peer, std::span<const std::byte>(receive_buffers_->buffer(buffer), completion.length),
            true);
      }
      defer_repost(buffer);
      if (peer) pump(*peer);
      return;
    }
    case WorkKind::kSendBuffer:
      send_buffers_->give(send_buffer(value));
      [[fallthrough]];
    case WorkKind::kInlineSend:
      ++counters_.send_completions;
      retired += send_retired(value);
      break;
    case WorkKind::kZeroCopy:
      if (RequestSlot* request = find_request(value); request && !request->done) {
        complete(value, *request,
                 completion.status == verbs::CompletionStatus::kSuccess
                     ? Status::ok()
                     : Status(Errc::kIoError,
                              "active message to peer " + std::to_string(request->peer) +
                                  " failed: " + std::string(verbs::to_string(completion.status))));
      }
      break;
    case WorkKind::kFragment:
      if (peer) {
        const bool ok = completion.status == verbs::CompletionStatus::kSuccess;
        fragment_done(
            *peer, value, ok,
            ok ? Status::ok()
               : Status(Errc::kIoError,
                        "RDMA operation to peer " + std::to_string(peer->id) +
                            " failed: " + std::string(verbs::to_string(completion.status))));
      }
      break;
  }
  if (!peer) return;
  peer->in_flight -= std::min(peer->in_flight, retired);
  if (completion.status != verbs::CompletionStatus::kSuccess) {
    fail_peer(*peer, Status(Errc::kDisconnected,
                            "connection to peer " + std::to_string(peer->id) +
                                " failed: " + std::string(verbs::to_string(completion.status))));
    return;
  }
  pump(*peer);
}

int WorkerImpl::poll_completions() {
  // A handler may progress the worker again (btl/wv's ob1 waiting on a free list): that inner
  // pass must not overwrite the completions this one still handles, so it takes its own.
  if (polling_) {
    std::array<verbs::Completion, kCompletionBatch> nested;
    return poll_completions_into(nested);
  }
  polling_ = true;
  struct Done {
    bool& polling;
    ~Done() { polling = false; }
  } done{polling_};
  return poll_completions_into(completions_);
}

int WorkerImpl::poll_completions_into(std::span<verbs::Completion> completions) {
  int handled = 0;
  for (;;) {
    int count = cq_->poll(completions);
    if (count <= 0) break;
    for (int i = 0; i < count; ++i) handle_completion(completions[static_cast<size_t>(i)]);
    handled += count;
    if (static_cast<size_t>(count) < completions.size()) break;
  }
  return handled;
}

int WorkerImpl::progress() {
  std::lock_guard lock(mutex_);
  return progress_locked();
}

int WorkerImpl::progress_locked() {
  int handled = mailbox_peers_.empty() ? 0 : poll_mailboxes();
  // A pass that delivered from a mailbox returns at once (a ping-pong's reply waits for it); the
  // CQ is polled by the next pass, and by every 8th that delivers, so a stream keeps it served.
  if (handled == 0 || (++mailbox_passes_ & 7) == 0) handled += poll_completions();
  if (handled == 0 && deferred_count_ != 0) repost_deferred();
  progress_connections((++progress_calls_ & 31) == 0);
  return handled;
}

Status WorkerImpl::wait_for_event(std::chrono::milliseconds bound) {
  if (wait_policy_.mode == ProgressMode::kPoll) return Status::ok();
  bool connecting;
  int request_fd = -1;
  {
    std::lock_guard lock(mutex_);
    repost_deferred();  // a sleeping worker leaves every buffer with the SRQ
    connecting = anything_connecting();
    if (next_request_) request_fd = next_request_->fd();
    // Senders that store into our inboxes from now on also send through the QP (mailbox.h).
    if (!announce_sleep()) return Status::ok();
  }
  struct Awake {
    WorkerImpl& worker;
    ~Awake() {
      std::lock_guard lock(worker.mutex_);
      worker.announce_awake();
    }
  } awake{*this};
  auto notification = cq_->notify(verbs::NotifyOn::kNextCompletion);
  if (cq_->peek() > 0) {
    notification.cancel();
    return Status::ok();
  }
  // Sleep until a completion or a connection request; connection set-up under way completes
  // outside the CQ, so look again soon while any is.
  pollfd fds[2] = {{notification.fd(), POLLIN, 0}, {request_fd, POLLIN, 0}};
  const auto sleep = connecting ? std::min(bound, std::chrono::milliseconds(1)) : bound;
  int ready = ::poll(fds, request_fd >= 0 ? 2 : 1, static_cast<int>(sleep.count()));
  notification.cancel();
  if (ready < 0 && errno != EINTR) return errno_status(Errc::kIoError, "poll");
  return Status::ok();
}

Status WorkerImpl::start_progress_thread() {
  std::lock_guard lock(mutex_);
  if (progress_thread_.joinable()) {
    return Status(Errc::kInvalidState, "the progress thread is already running");
  }
  stop_progress_.store(false);
  progress_thread_ = std::thread([this] {
    while (!stop_progress_.load(std::memory_order_relaxed)) {
      if (progress() == 0) (void)wait_for_event(std::chrono::milliseconds(10));
    }
  });
  return Status::ok();
}

void WorkerImpl::stop_progress_thread() {
  stop_progress_.store(true);
  if (progress_thread_.joinable()) progress_thread_.join();
}

}  // namespace wv::transport
