#include "ib_protection_domain.h"

#include <cstring>

#include "ib_address_handle.h"
#include "ib_convert.h"
#include "ib_memory.h"
#include "ib_queue_pair.h"
#include "ib_shared_receive_queue.h"

namespace wv::verbs::ib {

IbProtectionDomain::~IbProtectionDomain() {
  ibv_dealloc_pd(pd_);
}

Result<std::shared_ptr<MemoryRegion>> IbProtectionDomain::register_memory(void* address,
                                                                          size_t length,
                                                                          Access access) {
  if (address == nullptr || length == 0) {
    return Status(Errc::kInvalidArgument, "registering an empty or null range");
  }
  ibv_mr* mr = ibv_reg_mr(pd_, address, length, to_ibv_access(access));
  if (mr == nullptr) return verbs_status(-1, "ibv_reg_mr");
  return std::shared_ptr<MemoryRegion>(
      std::make_shared<IbMemoryRegion>(shared_from_this(), mr, access));
}

Result<std::shared_ptr<MemoryRegion>> IbProtectionDomain::allocate_memory(size_t length,
                                                                          Access access) {
  auto memory = HostMemory::allocate(length);
  if (!memory.is_ok()) return memory.status();
  ibv_mr* mr = ibv_reg_mr(pd_, memory.value()->address(), length, to_ibv_access(access));
  if (mr == nullptr) return verbs_status(-1, "ibv_reg_mr");
  return std::shared_ptr<MemoryRegion>(
      std::make_shared<IbMemoryRegion>(shared_from_this(), mr, access, std::move(memory.value())));
}

Result<std::shared_ptr<SharedReceiveQueue>> IbProtectionDomain::create_shared_receive_queue(
    uint32_t max_wr, uint32_t max_sge, uint32_t limit) {
  if (max_wr == 0 || max_sge == 0) {
    return Status(Errc::kInvalidArgument, "an SRQ needs max_wr and max_sge above 0");
  }
  ibv_srq_init_attr init{};
  // A device that cannot grow an SRQ gets one with room to grow into (modify() raises the
  // software limit up to it); the depth asked for is enforced by the provider either way.
  const uint32_t device_max = device_->attributes().max_srq_wr;
  init.attr.max_wr =
      device_->resizes_srq() ? max_wr : std::max(max_wr, std::min(max_wr * 4, device_max));
  init.attr.max_sge = max_sge;
  init.attr.srq_limit = 0;
  ibv_srq* srq = ibv_create_srq(pd_, &init);
  if (srq == nullptr) return verbs_status(-1, "ibv_create_srq");
  auto out = std::make_shared<IbSharedReceiveQueue>(shared_from_this(), srq, max_wr,
                                                    init.attr.max_sge, 0, init.attr.max_wr);
  srq->srq_context = out.get();
  if (limit != 0) {
    if (Status status = out->modify(SharedReceiveQueue::kUnchanged, limit); !status) return status;
  }
  return std::shared_ptr<SharedReceiveQueue>(std::move(out));
}

Result<std::shared_ptr<ConnectQueuePair>> IbProtectionDomain::create_connect_queue_pair(
    const QueuePairOptions& options) {
  auto qp = IbConnectQueuePair::create(shared_from_this(), options);
  if (!qp.is_ok()) return qp.status();
  return std::shared_ptr<ConnectQueuePair>(std::move(qp).value());
}

Result<std::shared_ptr<DatagramQueuePair>> IbProtectionDomain::create_datagram_queue_pair(
    const QueuePairOptions& options, uint32_t qkey) {
  if (!has(device_->attributes().capabilities, Capability::kDatagram)) {
    return Status(Errc::kNotSupported,
                  "device " + device_->attributes().name + " has no unreliable datagram QPs");
  }
  auto qp = IbDatagramQueuePair::create(shared_from_this(), options, qkey);
  if (!qp.is_ok()) return qp.status();
  return std::shared_ptr<DatagramQueuePair>(std::move(qp).value());
}

Result<std::shared_ptr<MemoryWindow>> IbProtectionDomain::allocate_memory_window(
    MemoryWindowType type) {
  const Capability needed = type == MemoryWindowType::kType1 ? Capability::kMemoryWindowType1
                                                             : Capability::kMemoryWindowType2;
  if (!has(device_->attributes().capabilities, needed)) {
    return Status(Errc::kNotSupported, "device " + device_->attributes().name +
                                           " lacks capability " + to_string(needed));
  }
  ibv_mw* mw = ibv_alloc_mw(pd_, type == MemoryWindowType::kType1 ? IBV_MW_TYPE_1 : IBV_MW_TYPE_2);
  if (mw == nullptr) return verbs_status(-1, "ibv_alloc_mw");
  return std::shared_ptr<MemoryWindow>(
      std::make_shared<IbMemoryWindow>(shared_from_this(), mw, type));
}

Result<std::shared_ptr<AddressHandle>> IbProtectionDomain::create_address_handle(
    const AddressVector& address) {
  ibv_ah_attr attr{};
  attr.dlid = address.destination_lid;
  attr.sl = address.service_level;
  attr.port_num = address.port;
  // RoCE and iWARP route by GID only.
  attr.is_global = address.global_route || device_->transport() != Transport::kInfiniband;
  if (attr.is_global) {
    std::memcpy(attr.grh.dgid.raw, address.destination_gid.raw.data(), 16);
    attr.grh.sgid_index = device_->source_gid_index(address.port, address.destination_gid);
    attr.grh.hop_limit = address.hop_limit;
  }
  ibv_ah* ah = ibv_create_ah(pd_, &attr);
  if (ah == nullptr) return verbs_status(-1, "ibv_create_ah");
  return std::shared_ptr<AddressHandle>(
      std::make_shared<IbAddressHandle>(shared_from_this(), ah, address));
}

}  // namespace wv::verbs::ib
