#include "ib_device.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "ib_completion_queue.h"
#include "ib_convert.h"
#include "ib_protection_domain.h"
#include "ib_shared_receive_queue.h"

namespace wv::verbs::ib {

namespace {

bool is_ipv4_mapped(const uint8_t* raw) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(raw, kPrefix, sizeof(kPrefix)) == 0;
}

std::string firmware_of(const ibv_device_attr& attr) {
  return std::string(attr.fw_ver, strnlen(attr.fw_ver, sizeof(attr.fw_ver)));
}

}  // namespace

Result<std::shared_ptr<IbDevice>> IbDevice::open(ibv_device* device,
                                                 std::shared_ptr<EventLoop> loop) {
  ibv_context* context = ibv_open_device(device);
  if (context == nullptr) {
    return verbs_status(-1, std::string("ibv_open_device(") + ibv_get_device_name(device) + ")");
  }
  std::shared_ptr<IbDevice> opened(new IbDevice(context, std::move(loop)));
  if (Status status = opened->read_attributes(); !status) return status;
  std::weak_ptr<IbDevice> weak = opened;
  if (Status status = opened->loop_->add(context->async_fd,
                                         [weak] {
                                           if (auto self = weak.lock()) self->on_async_event();
                                         });
      !status) {
    return status;
  }
  return opened;
}

IbDevice::~IbDevice() {
  loop_->remove(context_->async_fd);
  {
    std::lock_guard lock(mutex_);
    for (auto& waiter : waiters_) {
      waiter.complete(Status(Errc::kCancelled, "device " + attributes_.name + " closed"));
    }
  }
  ibv_close_device(context_);
}

Status IbDevice::read_attributes() {
  ibv_device_attr device{};
  if (int rc = ibv_query_device(context_, &device); rc != 0) {
    return verbs_status(rc, "ibv_query_device");
  }
  DeviceAttributes& a = attributes_;
  a.name = ibv_get_device_name(context_->device);
  a.firmware_version = firmware_of(device);
  a.vendor_id = device.vendor_id;
  a.device_id = device.vendor_part_id;
  a.hardware_version = device.hw_ver;
  a.node_guid = be64toh(device.node_guid);
  a.system_image_guid = be64toh(device.sys_image_guid);
  a.max_mr_size = device.max_mr_size;
  a.page_size_mask = device.page_size_cap;
  a.max_qp = device.max_qp;
  a.max_qp_wr = device.max_qp_wr;
  a.max_sge = device.max_sge;
  // siw reports 1 and uses only a read's first SGE (an iWARP read request names one sink).
  a.max_read_sge =
      device.max_sge_rd > 0 ? std::min(device.max_sge_rd, device.max_sge) : device.max_sge;
  a.max_cq = device.max_cq;
  a.max_cqe = device.max_cqe;
  a.max_mr = device.max_mr;
  a.max_pd = device.max_pd;
  a.max_inbound_read_depth = device.max_qp_rd_atom;
  a.max_outbound_read_depth = device.max_qp_init_rd_atom;
  a.max_mw = device.max_mw;
  a.max_srq = device.max_srq;
  a.max_srq_wr = device.max_srq_wr;
  a.max_srq_sge = device.max_srq_sge;
  a.max_ah = device.max_ah;
  a.max_multicast_groups = device.max_mcast_grp;
  a.atomic_scope = device.atomic_cap == IBV_ATOMIC_GLOB  ? AtomicScope::kGlobal
                   : device.atomic_cap == IBV_ATOMIC_HCA ? AtomicScope::kDevice
                                                         : AtomicScope::kNone;
  a.port_count = device.phys_port_cnt;
  ibv_port_attr port{};
  if (int rc = ibv_query_port(context_, 1, &port); rc != 0) {
    return verbs_status(rc, "ibv_query_port(1)");
  }
  a.max_message_size = port.max_msg_sz;
  if (context_->device->transport_type == IBV_TRANSPORT_IWARP) {
    transport_ = Transport::kIwarp;
  } else if (port.link_layer == IBV_LINK_LAYER_ETHERNET) {
    transport_ = Transport::kRoce;
  } else {
    transport_ = Transport::kInfiniband;
  }
  probe_capabilities(device);
  return Status::ok();
}

// Capabilities that libibverbs has no flag for are probed by creating the object once.
void IbDevice::probe_capabilities(const ibv_device_attr& device) {
  Capability caps = Capability::kNone;
  if (device.atomic_cap != IBV_ATOMIC_NONE) caps = caps | Capability::kAtomics;
  // Immediate data is mandatory in InfiniBand and RoCE; iWARP (RFC 5040) has none, and the
  // RFC 7306 extension is not offered through verbs by iWARP devices.
  if (transport_ != Transport::kIwarp) caps = caps | Capability::kImmediateData;
  if ((device.device_cap_flags & IBV_DEVICE_MEM_WINDOW) != 0 ||
      (device.device_cap_flags & IBV_DEVICE_MEM_WINDOW_TYPE_2A) != 0 ||
      (device.device_cap_flags & IBV_DEVICE_MEM_WINDOW_TYPE_2B) != 0) {
    if (device.max_mw > 0) {
      caps = caps | Capability::kMemoryWindowType1;
      if ((device.device_cap_flags &
           (IBV_DEVICE_MEM_WINDOW_TYPE_2A | IBV_DEVICE_MEM_WINDOW_TYPE_2B)) != 0) {
        caps = caps | Capability::kMemoryWindowType2;
      }
    }
  }
  if ((device.device_cap_flags & IBV_DEVICE_MEM_MGT_EXTENSIONS) != 0) {
    caps = caps | Capability::kSendWithInvalidate;
  }
  if (device.max_srq > 0)
    caps = caps | Capability::kSharedReceiveQueue | Capability::kSrqLimitEvent;
  if (transport_ != Transport::kIwarp) {
    caps = caps | Capability::kRemoteErrorsInCompletion | Capability::kOutOfBandConnect;
  }
  if (transport_ == Transport::kIwarp) caps = caps | Capability::kReadSinkNeedsRemoteWrite;

  ibv_pd* pd = ibv_alloc_pd(context_);
  ibv_cq* cq = ibv_create_cq(context_, 4, nullptr, nullptr, 0);
  if (pd != nullptr && cq != nullptr) {
    if (ibv_resize_cq(cq, 8) == 0) caps = caps | Capability::kResizeCompletionQueue;
    ibv_qp_init_attr init{};
    init.send_cq = cq;
    init.recv_cq = cq;
    init.cap.max_send_wr = 1;
    init.cap.max_recv_wr = 1;
    init.cap.max_send_sge = 1;
    init.cap.max_recv_sge = 1;
    init.qp_type = IBV_QPT_UD;
    if (ibv_qp* ud = ibv_create_qp(pd, &init); ud != nullptr) {
      caps = caps | Capability::kDatagram;
      if (device.max_mcast_grp > 0) caps = caps | Capability::kMulticast;
      ibv_destroy_qp(ud);
    }
    // The inline size is what the device grants an RC QP that asks for a lot.
    init.qp_type = IBV_QPT_RC;
    for (uint32_t ask : {1024u, 256u, 64u}) {
      init.cap.max_inline_data = ask;
      if (ibv_qp* rc = ibv_create_qp(pd, &init); rc != nullptr) {
        attributes_.max_inline = init.cap.max_inline_data;
        ibv_destroy_qp(rc);
        break;
      }
    }
    if (attributes_.max_inline > 0) caps = caps | Capability::kInline;
    if (device.max_srq > 0) {
      ibv_srq_init_attr srq_init{};
      srq_init.attr.max_wr = 4;
      srq_init.attr.max_sge = 1;
      if (ibv_srq* srq = ibv_create_srq(pd, &srq_init); srq != nullptr) {
        ibv_srq_attr grow{};
        grow.max_wr = srq_init.attr.max_wr * 2;
        resizes_srq_ = ibv_modify_srq(srq, &grow, IBV_SRQ_MAX_WR) == 0;
        ibv_destroy_srq(srq);
      }
    }
    // Does ibv_query_qp report the state? (siw's answer leaves it RESET.)
    init.cap.max_inline_data = 0;
    if (ibv_qp* rc = ibv_create_qp(pd, &init); rc != nullptr) {
      ibv_qp_attr attr{};
      attr.qp_state = IBV_QPS_INIT;
      attr.port_num = 1;
      attr.qp_access_flags = IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
      if (ibv_modify_qp(rc, &attr,
                        IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS) ==
          0) {
        ibv_qp_attr now{};
        ibv_qp_init_attr now_init{};
        reports_qp_state_ =
            ibv_query_qp(rc, &now, IBV_QP_STATE, &now_init) == 0 && now.qp_state == IBV_QPS_INIT;
      }
      ibv_destroy_qp(rc);
    }
  }
  if (cq != nullptr) ibv_destroy_cq(cq);
  if (pd != nullptr) ibv_dealloc_pd(pd);
  attributes_.capabilities = caps;

  // Differences from the API's reference semantics (types.h). Those of a transport follow from
  // it; the rest are the software devices' own, known by their driver's vendor id (Soft-RoCE
  // 0xffffff, SoftiWARP 0x626d74 "bmt") because no attribute reports them.
  constexpr uint32_t kSoftRoceVendor = 0xffffff;
  constexpr uint32_t kSoftIwarpVendor = 0x626d74;
  const bool soft_iwarp = device.vendor_id == kSoftIwarpVendor && transport_ == Transport::kIwarp;
  const bool soft_roce = device.vendor_id == kSoftRoceVendor && transport_ == Transport::kRoce;
  attributes_.kernel_emulated = soft_iwarp || soft_roce;
  // rdma_cm refuses a specific bind on a port a wildcard id holds (cma_check_port).
  Limitation limits =
      Limitation::kNoSpecificListenBesideWildcard | Limitation::kOneSidedServedByDevice;
  if (transport_ == Transport::kIwarp) {
    limits = limits | Limitation::kNoSendQueueDrain | Limitation::kNoReceiverNotReadyRetry;
  } else {
    limits = limits | Limitation::kReceiverNotReadyFailsOnlyTheRequester;
  }
  // rdma_cm joins IPv4 groups on RoCEv2 GIDs (cma_iboe_set_mgid): ::ffff:a.b.c.d.
  if (transport_ == Transport::kRoce) limits = limits | Limitation::kMulticastGidIpv4Mapped;
  if (soft_iwarp) {
    limits = limits | Limitation::kRefusedReadFlushed | Limitation::kReadDepthsRaisedToPeer |
             Limitation::kNoSolicitedNotification | Limitation::kLatePostsLostAfterError |
             Limitation::kNoReconnectAfterError | Limitation::kActiveSendFailsOnModifyToError |
             Limitation::kSendsOvertakeReads | Limitation::kReadAccessNotChecked |
             Limitation::kRefusedWriteFailsLocally | Limitation::kQueuedSendsLostOnConnectionLoss;
  }
  if (soft_roce) {
    limits = limits | Limitation::kLengthErrorAsOperationError;
    if (has(caps, Capability::kMemoryWindowType1)) {
      limits = limits | Limitation::kMemoryWindowsNotEnforced;
    }
  }
  attributes_.limitations = limits;
}

Result<PortAttributes> IbDevice::query_port(uint8_t port) const {
  if (port < 1 || port > attributes_.port_count) {
    return Status(Errc::kInvalidArgument, "device " + attributes_.name + " has no port " +
                                              std::to_string(port) + " (ports 1.." +
                                              std::to_string(attributes_.port_count) + ")");
  }
  ibv_port_attr attr{};
  if (int rc = ibv_query_port(context_, port, &attr); rc != 0) {
    return verbs_status(rc, "ibv_query_port");
  }
  PortAttributes out;
  out.state = from_ibv_port_state(attr.state);
  out.transport = transport_;
  out.max_mtu = mtu_bytes(attr.max_mtu);
  out.active_mtu = mtu_bytes(attr.active_mtu);
  out.max_message_size = attr.max_msg_sz;
  out.gid_table_length = attr.gid_tbl_len;
  // iWARP has no partitions: everything is in the default one, which the API shows as a table
  // of one full-member default P_Key.
  out.pkey_table_length =
      transport_ == Transport::kIwarp && attr.pkey_tbl_len == 0 ? uint16_t{1} : attr.pkey_tbl_len;
  out.lid = attr.lid;
  out.sm_lid = attr.sm_lid;
  out.lmc = attr.lmc;
  return out;
}

uint32_t IbDevice::active_mtu(uint8_t port) const {
  ibv_port_attr attr{};
  if (ibv_query_port(context_, port, &attr) != 0) return 0;
  return mtu_bytes(attr.active_mtu);
}

Result<std::vector<Gid>> IbDevice::gid_table(uint8_t port) const {
  auto attr = query_port(port);
  if (!attr.is_ok()) return attr.status();
  std::vector<Gid> table(attr->gid_table_length);
  // One call for the valid entries instead of one query (a sysfs read) per entry.
  std::vector<ibv_gid_entry> entries(table.size());
  const ssize_t n = ibv_query_gid_table(context_, entries.data(), entries.size(), 0);
  if (n >= 0) {
    for (ssize_t i = 0; i < n; ++i) {
      if (entries[i].port_num != port || entries[i].gid_index >= table.size()) continue;
      std::memcpy(table[entries[i].gid_index].raw.data(), entries[i].gid.raw, 16);
    }
    return table;
  }
  for (uint32_t i = 0; i < table.size(); ++i) {
    ibv_gid gid{};
    if (ibv_query_gid(context_, port, static_cast<int>(i), &gid) == 0) {
      std::memcpy(table[i].raw.data(), gid.raw, 16);
    }
  }
  return table;
}

Result<std::vector<uint16_t>> IbDevice::pkey_table(uint8_t port) const {
  auto attr = query_port(port);
  if (!attr.is_ok()) return attr.status();
  std::vector<uint16_t> table(attr->pkey_table_length);
  if (transport_ == Transport::kIwarp) {
    ibv_port_attr raw{};
    if (ibv_query_port(context_, port, &raw) == 0 && raw.pkey_tbl_len == 0) {
      table.assign(1, 0xffff);
      return table;
    }
  }
  for (uint32_t i = 0; i < table.size(); ++i) {
    __be16 pkey = 0;
    if (int rc = ibv_query_pkey(context_, port, static_cast<int>(i), &pkey); rc != 0) {
      return verbs_status(rc, "ibv_query_pkey");
    }
    table[i] = ntohs(pkey);
  }
  return table;
}

uint8_t IbDevice::source_gid_index(uint8_t port, const Gid& destination) const {
  if (transport_ != Transport::kRoce) return 0;
  const bool want_v4 = is_ipv4_mapped(destination.raw.data());
  ibv_port_attr attr{};
  if (ibv_query_port(context_, port, &attr) != 0) return 0;
  int fallback = -1;
  // Only the first entries: RoCE puts the addresses of the netdev there.
  const int limit = std::min<int>(attr.gid_tbl_len, 16);
  for (int i = 0; i < limit; ++i) {
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(context_, port, i, &entry, 0) != 0) continue;
    if (entry.gid_type != IBV_GID_TYPE_ROCE_V2) continue;
    if (is_ipv4_mapped(entry.gid.raw) == want_v4) return static_cast<uint8_t>(i);
    if (fallback < 0) fallback = i;
  }
  return static_cast<uint8_t>(fallback < 0 ? 0 : fallback);
}

Result<std::shared_ptr<CompletionQueue>> IbDevice::create_completion_queue(uint32_t entries) {
  auto cq = IbCompletionQueue::create(shared_from_this(), entries);
  if (!cq.is_ok()) return cq.status();
  return std::shared_ptr<CompletionQueue>(std::move(cq).value());
}

Result<std::shared_ptr<ProtectionDomain>> IbDevice::allocate_protection_domain() {
  ibv_pd* pd = ibv_alloc_pd(context_);
  if (pd == nullptr) return verbs_status(-1, "ibv_alloc_pd");
  return std::shared_ptr<ProtectionDomain>(
      std::make_shared<IbProtectionDomain>(shared_from_this(), pd));
}

Operation<DeviceEvent> IbDevice::next_event() {
  std::lock_guard lock(mutex_);
  if (!events_.empty()) {
    DeviceEvent event = std::move(events_.front());
    events_.pop_front();
    return Operation<DeviceEvent>::done(std::move(event));
  }
  auto [op, completer] = Operation<DeviceEvent>::make();
  waiters_.push_back(completer);
  std::weak_ptr<IbDevice> weak = weak_from_this();
  completer.set_cancel_handler([weak, completer]() mutable {
    auto self = weak.lock();
    if (!self) return;
    (void)completer;
    std::lock_guard guard(self->mutex_);
    // Drop cancelled waiters so that the next event goes to a live one.
    std::erase_if(self->waiters_, [](const Completer<DeviceEvent>& c) { return !c.pending(); });
  });
  return std::move(op);
}

void IbDevice::deliver(DeviceEvent event) {
  std::lock_guard lock(mutex_);
  while (!waiters_.empty()) {
    Completer<DeviceEvent> waiter = std::move(waiters_.front());
    waiters_.pop_front();
    if (waiter.complete(event)) return;
  }
  events_.push_back(std::move(event));
}

void IbDevice::register_qp(uint32_t number, std::weak_ptr<QpShared> shared) {
  std::lock_guard lock(qps_mutex_);
  qps_[number] = std::move(shared);
}

void IbDevice::unregister_qp(uint32_t number) {
  std::lock_guard lock(qps_mutex_);
  qps_.erase(number);
}

void IbDevice::qp_failed(uint32_t number, void* context, std::string detail) {
  {
    std::lock_guard lock(qps_mutex_);
    if (auto it = qps_.find(number); it != qps_.end()) {
      if (auto shared = it->second.lock()) {
        shared->state.store(QpState::kError, std::memory_order_release);
      }
    }
  }
  DeviceEvent event;
  event.type = EventType::kQpFatal;
  event.context = context;
  event.qp_number = number;
  event.detail = std::move(detail);
  deliver(std::move(event));
}

void IbDevice::on_async_event() {
  ibv_async_event event;
  while (ibv_get_async_event(context_, &event) == 0) {
    DeviceEvent out;
    out.detail = ibv_event_type_str(event.event_type);
    bool deliver_it = true;
    switch (event.event_type) {
      case IBV_EVENT_PORT_ACTIVE:
        out.type = EventType::kPortActive;
        out.port = static_cast<uint8_t>(event.element.port_num);
        break;
      case IBV_EVENT_PORT_ERR:
        out.type = EventType::kPortDown;
        out.port = static_cast<uint8_t>(event.element.port_num);
        break;
      case IBV_EVENT_QP_FATAL:
      case IBV_EVENT_QP_REQ_ERR:
      case IBV_EVENT_QP_ACCESS_ERR:
        out.type = EventType::kQpFatal;
        // The QP cannot be destroyed before this event is acknowledged, so it is valid here;
        // its context is the one given at creation.
        out.context = event.element.qp->qp_context;
        out.qp_number = event.element.qp->qp_num;
        {
          std::lock_guard guard(qps_mutex_);
          if (auto it = qps_.find(out.qp_number); it != qps_.end()) {
            if (auto shared = it->second.lock()) {
              shared->state.store(QpState::kError, std::memory_order_release);
            }
          }
        }
        break;
      case IBV_EVENT_CQ_ERR:
        out.type = EventType::kCompletionQueueError;
        if (auto* cq = static_cast<IbCompletionQueue*>(event.element.cq->cq_context)) {
          cq->on_overrun("the device reported a completion queue error (overrun)");
        }
        break;
      case IBV_EVENT_SRQ_LIMIT_REACHED:
        deliver_it = false;
        if (auto* srq = static_cast<IbSharedReceiveQueue*>(event.element.srq->srq_context)) {
          srq->on_limit_reached();
        }
        break;
      case IBV_EVENT_DEVICE_FATAL:
        out.type = EventType::kDeviceFatal;
        break;
      default:
        deliver_it = false;  // communication established, last WQE, SQ drained: not API events
        break;
    }
    ibv_ack_async_event(&event);
    if (deliver_it) deliver(std::move(out));
  }
}

}  // namespace wv::verbs::ib
