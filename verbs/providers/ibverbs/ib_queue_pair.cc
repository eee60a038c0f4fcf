#include "ib_queue_pair.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "ib_address_handle.h"
#include "ib_convert.h"
#include "ib_shared_receive_queue.h"
#include "wv/verbs/connect_endpoint.h"

namespace wv::verbs::ib {

namespace {

constexpr uint32_t kGrhBytes = 40;

// How long a move into or out of kSendQueueDrained waits for the device to finish draining.
constexpr std::chrono::milliseconds kDrainBound{2000};

// Waits (bounded) until the device reports the send queue drained. The drain runs
// asynchronously after the move to SQD (rxe: in its requester task), and until it has finished
// rxe refuses every further transition but the one to kError with EINVAL. Devices that do not
// fill sq_draining answer 0 and do not wait.
void wait_until_drained(ibv_qp* qp) {
  const auto deadline = std::chrono::steady_clock::now() + kDrainBound;
  for (;;) {
    ibv_qp_attr attr{};
    ibv_qp_init_attr init{};
    if (ibv_query_qp(qp, &attr, IBV_QP_STATE, &init) != 0 || attr.qp_state != IBV_QPS_SQD ||
        attr.sq_draining == 0 || std::chrono::steady_clock::now() >= deadline) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

int send_flags_of(SendFlags flags) {
  int out = 0;
  if (has(flags, SendFlags::kSignaled)) out |= IBV_SEND_SIGNALED;
  if (has(flags, SendFlags::kFence)) out |= IBV_SEND_FENCE;
  if (has(flags, SendFlags::kSolicited)) out |= IBV_SEND_SOLICITED;
  if (has(flags, SendFlags::kInline)) out |= IBV_SEND_INLINE;
  return out;
}

bool pre_connection(QpState state) {
  return state == QpState::kReset || state == QpState::kInit || state == QpState::kReadyToReceive;
}

}  // namespace

// ---- QpCore ----------------------------------------------------------------------------------

QpCore::~QpCore() {
  if (qp_ == nullptr) return;
  const uint32_t number = qp_->qp_num;
  domain_->device()->unregister_qp(number);
  ibv_destroy_qp(qp_);
  // After the QP is gone: its completions still queued are translated with its context now.
  if (send_cq_) send_cq_->remove_qp(number);
  if (receive_cq_ && receive_cq_ != send_cq_) receive_cq_->remove_qp(number);
}

Status QpCore::create(ibv_qp_type type, void* context) {
  send_cq_ = std::dynamic_pointer_cast<IbCompletionQueue>(options_.send_cq);
  receive_cq_ = std::dynamic_pointer_cast<IbCompletionQueue>(options_.receive_cq);
  if (!send_cq_ || !receive_cq_) {
    return Status(Errc::kInvalidArgument,
                  "a QP of the ibverbs provider needs send and receive CQs of the same provider");
  }
  std::shared_ptr<IbSharedReceiveQueue> srq;
  if (options_.srq) {
    srq = std::dynamic_pointer_cast<IbSharedReceiveQueue>(options_.srq);
    if (!srq) return Status(Errc::kInvalidArgument, "the SRQ is not of the ibverbs provider");
    if (datagram_) {
      return Status(Errc::kNotSupported, "datagram QPs of the ibverbs provider take no SRQ");
    }
    srq_ = srq.get();
  }
  const DeviceAttributes& device = domain_->device()->attributes();
  ibv_qp_init_attr init{};
  init.qp_context = context;
  init.send_cq = send_cq_->cq();
  init.recv_cq = receive_cq_->cq();
  init.srq = srq ? srq->srq() : nullptr;
  init.cap.max_send_wr = options_.send_depth;
  init.cap.max_recv_wr = srq ? 0 : options_.receive_depth;
  init.cap.max_send_sge = options_.send_sge;
  init.cap.max_recv_sge = srq ? 0 : options_.receive_sge + (datagram_ ? 1 : 0);
  init.cap.max_inline_data = options_.max_inline == 0 ? device.max_inline : options_.max_inline;
  init.qp_type = type;
  init.sq_sig_all = options_.signal_all_sends ? 1 : 0;
  qp_ = ibv_create_qp(domain_->pd(), &init);
  if (qp_ == nullptr) return verbs_status(-1, "ibv_create_qp");
  max_inline_ = init.cap.max_inline_data;
  send_depth_ = init.cap.max_send_wr;
  receive_depth_ = init.cap.max_recv_wr;
  send_sge_ = init.cap.max_send_sge;
  receive_sge_ = init.cap.max_recv_sge - ((datagram_ && init.cap.max_recv_sge > 0) ? 1 : 0);
  CqQpEntry entry;
  entry.context = context;
  entry.datagram = datagram_;
  entry.srq = srq_;
  entry.qp = qp_;
  entry.shared = shared_;
  entry.counts_receives = receive_cq_ == send_cq_ && srq_ == nullptr;
  send_cq_->add_qp(qp_->qp_num, entry);
  if (receive_cq_ != send_cq_) {
    entry.counts_receives = srq_ == nullptr;
    entry.receive_only = true;
    receive_cq_->add_qp(qp_->qp_num, entry);
  }
  domain_->device()->register_qp(qp_->qp_num, shared_);
  return Status::ok();
}

void QpCore::set_peer(uint32_t peer_qp_number) {
  peer_qp_number_ = peer_qp_number;
  receive_cq_->set_peer(number(), peer_qp_number);
}

Status QpCore::convert(std::span<const Sge> sges, uint32_t max, bool inline_data, ibv_sge* out,
                       uint32_t* total) const {
  if (sges.size() > max || sges.size() > kMaxPostSge) {
    return Status(Errc::kInvalidArgument, std::to_string(sges.size()) +
                                              " SGEs, the QP takes at most " + std::to_string(max));
  }
  uint64_t sum = 0;
  for (size_t i = 0; i < sges.size(); ++i) {
    const Sge& sge = sges[i];
    out[i].addr = reinterpret_cast<uint64_t>(sge.address);
    out[i].length = sge.length;
    out[i].lkey = 0;
    sum += sge.length;
    if (sge.region == nullptr) {
      if (inline_data) continue;  // inline data needs no registration
      return Status(Errc::kInvalidArgument, "SGE " + std::to_string(i) + " names no region");
    }
    if (detail::RegionAccess::domain(*sge.region) != domain_.get()) {
      return Status(Errc::kInvalidArgument,
                    "SGE " + std::to_string(i) + " is in a region of another protection domain");
    }
    const auto begin = reinterpret_cast<uintptr_t>(sge.region->address());
    const auto at = reinterpret_cast<uintptr_t>(sge.address);
    if (at < begin || at + sge.length > begin + sge.region->length()) {
      return Status(Errc::kInvalidArgument,
                    "SGE " + std::to_string(i) + " lies outside its memory region");
    }
    out[i].lkey = detail::RegionAccess::local_key(*sge.region);
  }
  if (total != nullptr) *total = static_cast<uint32_t>(std::min<uint64_t>(sum, UINT32_MAX));
  return Status::ok();
}

void QpCore::flush_in_software(uint64_t wr_id, Opcode opcode, bool receive) {
  Completion c;
  c.wr_id = wr_id;
  c.qp_context = options_.context;
  c.opcode = opcode;
  c.status = CompletionStatus::kFlushed;
  c.qp_number = number();
  (receive ? receive_cq_ : send_cq_)->push(c);
}

Status QpCore::post_send(ibv_send_wr& wr, Opcode opcode) {
  if (pre_connection(state())) {
    return Status(Errc::kInvalidState, "QP " + std::to_string(number()) + " is in state " +
                                           std::string(to_string(state())) +
                                           ": sends need a connected QP");
  }
  const bool tracked_only = !domain_->device()->reports_qp_state();
  if (tracked_only && state() == QpState::kError) {
    // The device's view of the QP is not readable (siw): flushed here, as the API promises.
    if ((wr.send_flags & IBV_SEND_SIGNALED) != 0 || options_.signal_all_sends) {
      flush_in_software(wr.wr_id, opcode, false);
    }
    return Status::ok();
  }
  ibv_send_wr* bad = nullptr;
  const int rc = ibv_post_send(qp_, &wr, &bad);
  if (rc == 0) return Status::ok();
  ibv_qp_attr attr{};
  ibv_qp_init_attr init{};
  if (state() == QpState::kError ||
      (domain_->device()->reports_qp_state() &&
       ibv_query_qp(qp_, &attr, IBV_QP_STATE, &init) == 0 &&
       (attr.qp_state == IBV_QPS_ERR || attr.qp_state == IBV_QPS_SQE))) {
    // Some devices refuse posts to a QP in error; the API flushes them instead.
    set_state(QpState::kError);
    if ((wr.send_flags & IBV_SEND_SIGNALED) != 0 || options_.signal_all_sends) {
      flush_in_software(wr.wr_id, opcode, false);
    }
    return Status::ok();
  }
  if (rc == ENOMEM) {
    return Status(Errc::kQueueFull, "send queue of QP " + std::to_string(number()) + " is full");
  }
  return verbs_status(rc, "ibv_post_send");
}

Status QpCore::post_receive(uint64_t wr_id, std::span<const Sge> sges, const ibv_sge* prefix) {
  if (srq_ != nullptr) {
    return Status(Errc::kInvalidState, "QP " + std::to_string(number()) +
                                           " takes its receives from a shared receive queue");
  }
  if (state() == QpState::kReset) {
    return Status(Errc::kInvalidState,
                  "QP " + std::to_string(number()) + " is in reset: receives need kInit");
  }
  ibv_sge list[kMaxPostSge + 1];
  const uint32_t offset = prefix != nullptr ? 1 : 0;
  if (prefix != nullptr) list[0] = *prefix;
  if (Status status = convert(sges, receive_sge_, false, list + offset, nullptr); !status) {
    return status;
  }
  if (state() == QpState::kError) {
    // Devices flush the receive queue when the QP enters kError, not receives posted later
    // (rxe keeps them): flushed here, as the API promises.
    flush_in_software(wr_id, Opcode::kReceive, true);
    return Status::ok();
  }
  // The depth is enforced here: devices round queue depths up (rxe, siw) and would take more.
  if (state() != QpState::kError && shared_->receives_posted.load(std::memory_order_relaxed) >=
                                        static_cast<int64_t>(receive_depth_)) {
    return Status(Errc::kQueueFull, "receive queue of QP " + std::to_string(number()) +
                                        " is full (" + std::to_string(receive_depth_) +
                                        " receives posted)");
  }
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = list;
  wr.num_sge = static_cast<int>(sges.size() + offset);
  ibv_recv_wr* bad = nullptr;
  const int rc = ibv_post_recv(qp_, &wr, &bad);
  if (rc == 0) {
    shared_->receives_posted.fetch_add(1, std::memory_order_relaxed);
    return Status::ok();
  }
  ibv_qp_attr attr{};
  ibv_qp_init_attr init{};
  if (state() == QpState::kError ||
      (ibv_query_qp(qp_, &attr, IBV_QP_STATE, &init) == 0 && attr.qp_state == IBV_QPS_ERR &&
       domain_->device()->reports_qp_state())) {
    set_state(QpState::kError);
    flush_in_software(wr_id, Opcode::kReceive, true);
    return Status::ok();
  }
  if (rc == ENOMEM) {
    return Status(Errc::kQueueFull, "receive queue of QP " + std::to_string(number()) + " is full");
  }
  return verbs_status(rc, "ibv_post_recv");
}

QpAttributes QpCore::query() const {
  QpAttributes out;
  out.qp_number = number();
  out.peer_qp_number = peer_qp_number_;
  out.send_depth = send_depth_;
  out.receive_depth = receive_depth_;
  out.send_sge = send_sge_;
  out.receive_sge = receive_sge_;
  out.max_inline = max_inline_;
  out.qkey = qkey_;
  out.state = state();
  out.inbound_read_depth = shared_->inbound_read_depth.load(std::memory_order_relaxed);
  out.outbound_read_depth = shared_->outbound_read_depth.load(std::memory_order_relaxed);
  // siw answers ibv_query_qp without the state and with IRD and ORD swapped: what the provider
  // tracked stands there.
  if (!domain_->device()->reports_qp_state()) return out;
  ibv_qp_attr attr{};
  ibv_qp_init_attr init{};
  int mask = IBV_QP_STATE;
  if (!datagram_) mask |= IBV_QP_MAX_QP_RD_ATOMIC | IBV_QP_MAX_DEST_RD_ATOMIC;
  if (ibv_query_qp(qp_, &attr, mask, &init) == 0) {
    out.state = from_ibv_state(attr.qp_state);
    if (!datagram_) {
      out.inbound_read_depth = attr.max_dest_rd_atomic;
      out.outbound_read_depth = attr.max_rd_atomic;
    }
  }
  return out;
}

Status QpCore::transition(QpState target) {
  ibv_qp_attr attr{};
  attr.qp_state = to_ibv_state(target);
  int mask = IBV_QP_STATE;
  if (target == QpState::kInit) {
    attr.pkey_index = 0;
    attr.port_num = kQpPort;
    mask |= IBV_QP_PKEY_INDEX | IBV_QP_PORT;
    if (datagram_) {
      attr.qkey = qkey_;
      mask |= IBV_QP_QKEY;
    } else {
      attr.qp_access_flags =
          IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC;
      mask |= IBV_QP_ACCESS_FLAGS;
    }
  } else if (target == QpState::kReadyToSend && datagram_ &&
             state() != QpState::kSendQueueDrained) {
    attr.sq_psn = 0;
    mask |= IBV_QP_SQ_PSN;
  }
  const bool leaves_drained = state() == QpState::kSendQueueDrained && target != QpState::kError;
  if (leaves_drained) wait_until_drained(qp_);
  if (int rc = ibv_modify_qp(qp_, &attr, mask); rc != 0) {
    return verbs_status(rc, "ibv_modify_qp(" + std::string(to_string(target)) + ")");
  }
  // kSendQueueDrained means drained: the move returns once the device has finished (bounded).
  if (target == QpState::kSendQueueDrained) wait_until_drained(qp_);
  set_state(target);
  if (target == QpState::kReset) {
    peer_qp_number_ = 0;
    shared_->receives_posted.store(0, std::memory_order_relaxed);
    set_read_depths(0, 0);
  }
  return Status::ok();
}

Status QpCore::user_modify(QpState target) {
  const QpState now = query().state;
  bool allowed = false;
  switch (target) {
    case QpState::kError:
      allowed = true;
      break;
    case QpState::kReset:
      allowed = now == QpState::kError || now == QpState::kReset;
      if (allowed && now == QpState::kError && !datagram_ &&
          has(domain_->device()->attributes().limitations, Limitation::kNoReconnectAfterError)) {
        // The device would accept the move and keep the QP in error; the next connect fails.
        return Status(Errc::kNotSupported,
                      "device " + domain_->device()->attributes().name +
                          " cannot take a connected QP out of the error state (limitation "
                          "no_reconnect_after_error): create a new QP");
      }
      break;
    case QpState::kInit:
      allowed = now == QpState::kReset;
      break;
    case QpState::kReadyToReceive:
      allowed = datagram_ && now == QpState::kInit;
      break;
    case QpState::kReadyToSend:
      allowed = now == QpState::kSendQueueDrained || (datagram_ && now == QpState::kReadyToReceive);
      break;
    case QpState::kSendQueueDrained:
      allowed = now == QpState::kReadyToSend;
      if (allowed &&
          has(domain_->device()->attributes().limitations, Limitation::kNoSendQueueDrain)) {
        return Status(Errc::kNotSupported,
                      "device " + domain_->device()->attributes().name +
                          " has no send-queue-drained state (limitation no_send_queue_drain)");
      }
      break;
  }
  if (!allowed) {
    return Status(Errc::kInvalidState,
                  "QP " + std::to_string(number()) + ": " + std::string(to_string(now)) + " -> " +
                      std::string(to_string(target)) +
                      " is not a user transition (the endpoint connects the QP)");
  }
  set_state(now);
  return transition(target);
}

// ---- IbConnectQueuePair ----------------------------------------------------------------------

Result<std::shared_ptr<IbConnectQueuePair>> IbConnectQueuePair::create(
    std::shared_ptr<IbProtectionDomain> domain, const QueuePairOptions& options) {
  std::shared_ptr<IbConnectQueuePair> qp(new IbConnectQueuePair(std::move(domain), options));
  if (Status status = qp->core_.create(IBV_QPT_RC, options.context); !status) return status;
  // A new connected QP is in kInit so that receives can be posted before it connects.
  if (Status status = qp->core_.transition(QpState::kInit); !status) return status;
  return qp;
}

Result<OutOfBandAddress> IbConnectQueuePair::out_of_band_address() {
  const std::shared_ptr<IbDevice>& device = core_.domain()->device();
  if (device->transport() == Transport::kIwarp) {
    return Status(Errc::kNotSupported,
                  "device " + device->attributes().name +
                      " is iWARP, which connects only through its connection manager (MPA): use "
                      "a ConnectEndpoint (no capability out_of_band_connect)");
  }
  ibv_port_attr port{};
  if (int rc = ibv_query_port(device->context(), kQpPort, &port); rc != 0) {
    return verbs_status(rc, "ibv_query_port");
  }
  if (out_of_band_psn_ == 0) out_of_band_psn_ = (std::random_device{}() & 0xffffff) | 1;
  OutOfBandAddress address;
  address.qp_number = core_.number();
  address.psn = out_of_band_psn_;
  address.port = kQpPort;
  address.lid = port.lid;
  address.mtu = mtu_bytes(port.active_mtu);
  address.inbound_read_depth = device->attributes().max_inbound_read_depth;
  // RoCE: a RoCE v2 GID, the IPv4-mapped one where the netdev has an IPv4 address (what
  // rdma_cm would use); InfiniBand: the port GID at index 0.
  Gid ipv4_mapped;
  ipv4_mapped.raw[10] = ipv4_mapped.raw[11] = 0xff;
  ibv_gid gid{};
  const uint8_t index = device->source_gid_index(kQpPort, ipv4_mapped);
  if (int rc = ibv_query_gid(device->context(), kQpPort, index, &gid); rc != 0) {
    return verbs_status(rc, "ibv_query_gid");
  }
  std::memcpy(address.gid.raw.data(), gid.raw, sizeof gid.raw);
  return address;
}

Status IbConnectQueuePair::connect_out_of_band(const OutOfBandAddress& peer,
                                               const ConnectParameters& parameters) {
  auto local = out_of_band_address();
  if (!local.is_ok()) return local.status();
  if (Status status = peer.check(); !status) return status;
  if (!parameters.private_data.empty()) {
    return Status(Errc::kInvalidArgument, "an out-of-band connection carries no private data");
  }
  if (core_.state() != QpState::kInit) {
    return Status(Errc::kInvalidState, "connect_out_of_band needs a QP in kInit, not " +
                                           std::string(to_string(core_.state())));
  }
  const std::shared_ptr<IbDevice>& device = core_.domain()->device();
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = mtu_of_bytes(std::min(local->mtu, peer.mtu));
  attr.dest_qp_num = peer.qp_number;
  attr.rq_psn = peer.psn;
  attr.max_dest_rd_atomic =
      static_cast<uint8_t>(std::min<uint32_t>(local->inbound_read_depth, 255));
  attr.min_rnr_timer = 12;  // 0.64 ms between the peer's receiver-not-ready retries
  attr.ah_attr.port_num = local->port;
  attr.ah_attr.dlid = peer.lid;
  if (device->transport() == Transport::kRoce) {
    attr.ah_attr.is_global = 1;
    std::memcpy(attr.ah_attr.grh.dgid.raw, peer.gid.raw.data(), sizeof attr.ah_attr.grh.dgid.raw);
    attr.ah_attr.grh.sgid_index = device->source_gid_index(local->port, peer.gid);
    attr.ah_attr.grh.hop_limit = 64;
  }
  constexpr int kToReceive = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                             IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
  if (int rc = ibv_modify_qp(core_.qp(), &attr, kToReceive); rc != 0) {
    return verbs_status(rc, "ibv_modify_qp(ready to receive) to QP " +
                                std::to_string(peer.qp_number) + " at " + to_string(peer.gid));
  }
  core_.set_peer(peer.qp_number);
  core_.set_state(QpState::kReadyToReceive);
  const uint32_t wanted = parameters.outbound_read_depth == 0
                              ? device->attributes().max_outbound_read_depth
                              : parameters.outbound_read_depth;
  const uint32_t outbound = std::min({wanted, device->attributes().max_outbound_read_depth,
                                      peer.inbound_read_depth, uint32_t{255}});
  attr = {};
  attr.qp_state = IBV_QPS_RTS;
  attr.timeout = 14;  // 4.096 us * 2^14, about 67 ms per transport retry
  attr.retry_cnt = std::min<uint8_t>(parameters.retry_count, 7);
  attr.rnr_retry = std::min<uint8_t>(parameters.rnr_retry_count, 7);
  attr.sq_psn = local->psn;
  attr.max_rd_atomic = static_cast<uint8_t>(outbound);
  constexpr int kToSend = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                          IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC;
  if (int rc = ibv_modify_qp(core_.qp(), &attr, kToSend); rc != 0) {
    // Half connected is of no use: the QP goes to kError, from where it can be reset.
    (void)core_.transition(QpState::kError);
    return verbs_status(rc, "ibv_modify_qp(ready to send)");
  }
  core_.set_read_depths(local->inbound_read_depth, outbound);
  core_.set_state(QpState::kReadyToSend);
  return Status::ok();
}

Status IbConnectQueuePair::post_receive(uint64_t wr_id, std::span<const Sge> sges) {
  return core_.post_receive(wr_id, sges, nullptr);
}

Status IbConnectQueuePair::post(uint64_t wr_id, std::span<const Sge> sges, ibv_wr_opcode opcode,
                                Opcode api_opcode, SendFlags flags, ibv_send_wr& wr) {
  ibv_sge list[kMaxPostSge];
  uint32_t total = 0;
  const bool inline_data = has(flags, SendFlags::kInline);
  if (Status status = core_.convert(sges, core_.send_sge(), inline_data, list, &total); !status) {
    return status;
  }
  if (inline_data && total > core_.max_inline()) {
    return Status(Errc::kInvalidArgument, "inline send of " + std::to_string(total) +
                                              " bytes; the QP's inline limit is " +
                                              std::to_string(core_.max_inline()));
  }
  wr.wr_id = wr_id;
  wr.sg_list = list;
  wr.num_sge = static_cast<int>(sges.size());
  wr.opcode = opcode;
  wr.send_flags = send_flags_of(flags);
  return core_.post_send(wr, api_opcode);
}

Status IbConnectQueuePair::send(uint64_t wr_id, std::span<const Sge> sges, SendFlags flags) {
  ibv_send_wr wr{};
  return post(wr_id, sges, IBV_WR_SEND, Opcode::kSend, flags, wr);
}

Status IbConnectQueuePair::send_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                               uint32_t immediate, SendFlags flags) {
  ibv_send_wr wr{};
  wr.imm_data = htonl(immediate);
  return post(wr_id, sges, IBV_WR_SEND_WITH_IMM, Opcode::kSend, flags, wr);
}

Status IbConnectQueuePair::send_with_invalidate(uint64_t wr_id, std::span<const Sge> sges,
                                                uint32_t rkey, SendFlags flags) {
  ibv_send_wr wr{};
  wr.invalidate_rkey = rkey;
  return post(wr_id, sges, IBV_WR_SEND_WITH_INV, Opcode::kSend, flags, wr);
}

Status IbConnectQueuePair::rdma_write(uint64_t wr_id, std::span<const Sge> sges,
                                      RemoteAddress remote, SendFlags flags) {
  ibv_send_wr wr{};
  wr.wr.rdma.remote_addr = remote.address;
  wr.wr.rdma.rkey = remote.rkey;
  return post(wr_id, sges, IBV_WR_RDMA_WRITE, Opcode::kRdmaWrite, flags, wr);
}

Status IbConnectQueuePair::rdma_write_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                                     RemoteAddress remote, uint32_t immediate,
                                                     SendFlags flags) {
  ibv_send_wr wr{};
  wr.wr.rdma.remote_addr = remote.address;
  wr.wr.rdma.rkey = remote.rkey;
  wr.imm_data = htonl(immediate);
  return post(wr_id, sges, IBV_WR_RDMA_WRITE_WITH_IMM, Opcode::kRdmaWrite, flags, wr);
}

Status IbConnectQueuePair::rdma_read(uint64_t wr_id, std::span<const Sge> sges,
                                     RemoteAddress remote, SendFlags flags) {
  if (has(flags, SendFlags::kInline)) {
    return Status(Errc::kInvalidArgument, "an RDMA read cannot be inline");
  }
  // Refused here: a device may take more and silently fill only the first (siw).
  const DeviceAttributes& device = core_.domain()->device()->attributes();
  if (sges.size() > device.max_read_sge) {
    return Status(Errc::kInvalidArgument,
                  "an RDMA read into " + std::to_string(sges.size()) + " SGEs; " + device.name +
                      " scatters a read into at most " + std::to_string(device.max_read_sge));
  }
  ibv_send_wr wr{};
  wr.wr.rdma.remote_addr = remote.address;
  wr.wr.rdma.rkey = remote.rkey;
  return post(wr_id, sges, IBV_WR_RDMA_READ, Opcode::kRdmaRead, flags, wr);
}

Status IbConnectQueuePair::compare_and_swap(uint64_t wr_id, const Sge& result, RemoteAddress remote,
                                            uint64_t compare, uint64_t swap, SendFlags flags) {
  if (!has(core_.domain()->device()->attributes().capabilities, Capability::kAtomics)) {
    return Status(Errc::kNotSupported, "the device has no atomics");
  }
  if (result.length != 8 || remote.address % 8 != 0) {
    return Status(Errc::kInvalidArgument, "atomics take an 8-byte result and an aligned word");
  }
  ibv_send_wr wr{};
  wr.wr.atomic.remote_addr = remote.address;
  wr.wr.atomic.rkey = remote.rkey;
  wr.wr.atomic.compare_add = compare;
  wr.wr.atomic.swap = swap;
  return post(wr_id, std::span(&result, 1), IBV_WR_ATOMIC_CMP_AND_SWP, Opcode::kCompareAndSwap,
              flags, wr);
}

Status IbConnectQueuePair::fetch_and_add(uint64_t wr_id, const Sge& result, RemoteAddress remote,
                                         uint64_t add, SendFlags flags) {
  if (!has(core_.domain()->device()->attributes().capabilities, Capability::kAtomics)) {
    return Status(Errc::kNotSupported, "the device has no atomics");
  }
  if (result.length != 8 || remote.address % 8 != 0) {
    return Status(Errc::kInvalidArgument, "atomics take an 8-byte result and an aligned word");
  }
  ibv_send_wr wr{};
  wr.wr.atomic.remote_addr = remote.address;
  wr.wr.atomic.rkey = remote.rkey;
  wr.wr.atomic.compare_add = add;
  return post(wr_id, std::span(&result, 1), IBV_WR_ATOMIC_FETCH_AND_ADD, Opcode::kFetchAndAdd,
              flags, wr);
}

Result<uint32_t> IbConnectQueuePair::bind_memory_window(uint64_t wr_id, MemoryWindow& window,
                                                        const MemoryRegion& region, void* address,
                                                        uint64_t length, Access access,
                                                        SendFlags flags) {
  auto* mw = dynamic_cast<IbMemoryWindow*>(&window);
  const auto* mr = dynamic_cast<const IbMemoryRegion*>(&region);
  if (mw == nullptr || mr == nullptr || mw->domain() != core_.domain().get() ||
      detail::RegionAccess::domain(region) != core_.domain().get()) {
    return Status(Errc::kInvalidArgument,
                  "window and region must belong to this QP's protection domain");
  }
  if (pre_connection(core_.state())) {
    return Status(Errc::kInvalidState, "binding a window needs a connected QP");
  }
  const auto begin = reinterpret_cast<uintptr_t>(region.address());
  const auto at = reinterpret_cast<uintptr_t>(address);
  if (length > 0 && (at < begin || at + length > begin + region.length())) {
    return Status(Errc::kInvalidArgument, "the window lies outside its region");
  }
  ibv_mw_bind_info info{};
  info.mr = mr->mr();
  info.addr = reinterpret_cast<uint64_t>(address);
  info.length = length;
  info.mw_access_flags = to_ibv_access(access) & (IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE |
                                                  IBV_ACCESS_REMOTE_ATOMIC);
  if (window.type() == MemoryWindowType::kType1) {
    ibv_mw_bind bind{};
    bind.wr_id = wr_id;
    bind.send_flags = send_flags_of(flags) & ~IBV_SEND_INLINE;
    if (core_.options().signal_all_sends) bind.send_flags |= IBV_SEND_SIGNALED;
    bind.bind_info = info;
    if (int rc = ibv_bind_mw(core_.qp(), mw->mw(), &bind); rc != 0) {
      return verbs_status(rc, "ibv_bind_mw");
    }
    const uint32_t rkey = length == 0 ? 0 : mw->mw()->rkey;
    mw->set_remote_key(rkey);
    return rkey;
  }
  const uint32_t current = mw->remote_key() != 0 ? mw->remote_key() : mw->mw()->rkey;
  const uint32_t rkey = ibv_inc_rkey(current);
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = IBV_WR_BIND_MW;
  wr.send_flags = send_flags_of(flags) & ~IBV_SEND_INLINE;
  wr.bind_mw.mw = mw->mw();
  wr.bind_mw.rkey = rkey;
  wr.bind_mw.bind_info = info;
  if (Status status = core_.post_send(wr, Opcode::kBindMemoryWindow); !status) return status;
  mw->mw()->rkey = rkey;
  mw->set_remote_key(rkey);
  return rkey;
}

Status IbConnectQueuePair::invalidate(uint64_t wr_id, uint32_t rkey, SendFlags flags) {
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = IBV_WR_LOCAL_INV;
  wr.send_flags = send_flags_of(flags) & ~IBV_SEND_INLINE;
  wr.invalidate_rkey = rkey;
  return core_.post_send(wr, Opcode::kLocalInvalidate);
}

Result<std::unique_ptr<RemoteMapping>> IbConnectQueuePair::map_remote(RemoteAddress, uint64_t,
                                                                      Access) {
  if (core_.state() != QpState::kReadyToSend) {
    return Status(Errc::kInvalidState, "map_remote needs a connected QP (state " +
                                           std::string(to_string(core_.state())) + ")");
  }
  // The peer's memory is behind a NIC: only work requests reach it.
  return Status(Errc::kNotSupported, "an RDMA device's peer memory cannot be mapped");
}

// ---- IbDatagramQueuePair ---------------------------------------------------------------------

Result<std::shared_ptr<IbDatagramQueuePair>> IbDatagramQueuePair::create(
    std::shared_ptr<IbProtectionDomain> domain, const QueuePairOptions& options, uint32_t qkey) {
  std::shared_ptr<IbDatagramQueuePair> qp(new IbDatagramQueuePair(domain, options));
  qp->core_.set_qkey(qkey);
  if (Status status = qp->core_.create(IBV_QPT_UD, options.context); !status) return status;
  qp->grh_mr_ = ibv_reg_mr(domain->pd(), qp->grh_, sizeof(qp->grh_), IBV_ACCESS_LOCAL_WRITE);
  if (qp->grh_mr_ == nullptr) return verbs_status(-1, "ibv_reg_mr(GRH scratch)");
  qp->mtu_ = domain->device()->active_mtu(kQpPort);
  // Verbs walks a UD QP to RTS with no peer to name, so the API's datagram QP starts there.
  for (QpState step : {QpState::kInit, QpState::kReadyToReceive, QpState::kReadyToSend}) {
    if (Status status = qp->core_.transition(step); !status) return status;
  }
  return qp;
}

IbDatagramQueuePair::~IbDatagramQueuePair() {
  if (grh_mr_ != nullptr) ibv_dereg_mr(grh_mr_);
}

Status IbDatagramQueuePair::post_receive(uint64_t wr_id, std::span<const Sge> sges) {
  ibv_sge grh{};
  grh.addr = reinterpret_cast<uint64_t>(grh_);
  grh.length = kGrhBytes;
  grh.lkey = grh_mr_->lkey;
  return core_.post_receive(wr_id, sges, &grh);
}

Status IbDatagramQueuePair::post(uint64_t wr_id, std::span<const Sge> sges,
                                 const AddressHandle& destination, uint32_t remote_qp_number,
                                 uint32_t qkey, bool with_immediate, uint32_t immediate,
                                 SendFlags flags) {
  const auto* ah = dynamic_cast<const IbAddressHandle*>(&destination);
  if (ah == nullptr || ah->domain() != core_.domain().get()) {
    return Status(Errc::kInvalidArgument,
                  "the address handle belongs to another protection domain or provider");
  }
  ibv_sge list[kMaxPostSge];
  uint32_t total = 0;
  const bool inline_data = has(flags, SendFlags::kInline);
  if (Status status = core_.convert(sges, core_.send_sge(), inline_data, list, &total); !status) {
    return status;
  }
  if (total > mtu_) {
    return Status(Errc::kInvalidArgument, "datagram of " + std::to_string(total) +
                                              " bytes exceeds the port's MTU of " +
                                              std::to_string(mtu_));
  }
  if (inline_data && total > core_.max_inline()) {
    return Status(Errc::kInvalidArgument, "inline send longer than the QP's inline limit");
  }
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = list;
  wr.num_sge = static_cast<int>(sges.size());
  wr.opcode = with_immediate ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND;
  wr.send_flags = send_flags_of(flags);
  if (with_immediate) wr.imm_data = htonl(immediate);
  wr.wr.ud.ah = ah->ah();
  wr.wr.ud.remote_qpn = remote_qp_number;
  wr.wr.ud.remote_qkey = qkey;
  return core_.post_send(wr, Opcode::kSend);
}

Status IbDatagramQueuePair::send(uint64_t wr_id, std::span<const Sge> sges,
                                 const AddressHandle& destination, uint32_t remote_qp_number,
                                 uint32_t qkey, SendFlags flags) {
  return post(wr_id, sges, destination, remote_qp_number, qkey, false, 0, flags);
}

Status IbDatagramQueuePair::send_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                                const AddressHandle& destination,
                                                uint32_t remote_qp_number, uint32_t qkey,
                                                uint32_t immediate, SendFlags flags) {
  return post(wr_id, sges, destination, remote_qp_number, qkey, true, immediate, flags);
}

Status IbDatagramQueuePair::attach_multicast(const Gid& group, uint16_t lid) {
  ibv_gid gid{};
  std::memcpy(gid.raw, group.raw.data(), 16);
  if (int rc = ibv_attach_mcast(core_.qp(), &gid, lid); rc != 0) {
    return verbs_status(rc, "ibv_attach_mcast");
  }
  return Status::ok();
}

Status IbDatagramQueuePair::detach_multicast(const Gid& group, uint16_t lid) {
  ibv_gid gid{};
  std::memcpy(gid.raw, group.raw.data(), 16);
  if (int rc = ibv_detach_mcast(core_.qp(), &gid, lid); rc != 0) {
    return verbs_status(rc, "ibv_detach_mcast");
  }
  return Status::ok();
}

}  // namespace wv::verbs::ib
