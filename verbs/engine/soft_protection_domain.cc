#include "soft_protection_domain.h"

#include <string>

#include "soft_datagram_queue_pair.h"
#include "soft_memory.h"
#include "soft_queue_pair.h"
#include "soft_shared_receive_queue.h"

namespace wv::verbs::soft {

Result<std::shared_ptr<MemoryRegion>> SoftProtectionDomain::register_memory(void* address,
                                                                            size_t length,
                                                                            Access access) {
  return register_range(address, length, access, nullptr);
}

Result<std::shared_ptr<MemoryRegion>> SoftProtectionDomain::allocate_memory(size_t length,
                                                                            Access access) {
  // Checked before the memory exists, so that no oversized memfd is ever created.
  if (length > device_->attributes().max_mr_size) {
    return Status(Errc::kInvalidArgument, "region of " + std::to_string(length) +
                                              " bytes exceeds the device's max_mr_size");
  }
  auto memory = HostMemory::allocate(length);
  if (!memory.is_ok()) return memory.status();
  void* address = memory.value()->address();
  return register_range(address, length, access, std::move(memory.value()));
}

Result<std::shared_ptr<MemoryRegion>> SoftProtectionDomain::register_range(
    void* address, size_t length, Access access, std::unique_ptr<HostMemory> owned) {
  if (address == nullptr && length != 0) {
    return Status(Errc::kInvalidArgument, "cannot register a null address");
  }
  if (length > device_->attributes().max_mr_size) {
    return Status(Errc::kInvalidArgument, "region of " + std::to_string(length) +
                                              " bytes exceeds the device's max_mr_size");
  }
  // Remote write and atomics imply that the memory may be written locally (verbs rule).
  if ((has(access, Access::kRemoteWrite) || has(access, Access::kRemoteAtomic)) &&
      !has(access, Access::kLocalWrite)) {
    return Status(Errc::kInvalidArgument,
                  "remote write or atomic access requires local write access");
  }
  KeyEntry entry;
  entry.kind = KeyKind::kRegion;
  entry.address = reinterpret_cast<uint64_t>(address);
  entry.length = length;
  entry.protection_domain = this;
  entry.access = access;
  // The local key is never given out; it grants nothing remotely.
  KeyEntry local = entry;
  local.access = Access::kNone;
  const uint32_t local_key = device_->keys().add(local);
  if (owned != nullptr) entry.shared_fd = owned->fd();
  const uint32_t remote_key = device_->keys().add(entry);
  return std::shared_ptr<MemoryRegion>(std::make_shared<SoftMemoryRegion>(
      device_, this, address, length, access, local_key, remote_key, std::move(owned)));
}

Result<std::shared_ptr<SharedReceiveQueue>> SoftProtectionDomain::create_shared_receive_queue(
    uint32_t max_wr, uint32_t max_sge, uint32_t limit) {
  const DeviceAttributes& limits = device_->attributes();
  if (max_wr == 0 || max_wr > limits.max_srq_wr) {
    return Status(Errc::kInvalidArgument, "SRQ max_wr " + std::to_string(max_wr) +
                                              " must be between 1 and " +
                                              std::to_string(limits.max_srq_wr));
  }
  if (max_sge == 0 || max_sge > limits.max_srq_sge) {
    return Status(Errc::kInvalidArgument, "SRQ max_sge " + std::to_string(max_sge) +
                                              " must be between 1 and " +
                                              std::to_string(limits.max_srq_sge));
  }
  if (limit >= max_wr) {
    return Status(Errc::kInvalidArgument, "SRQ limit must be below max_wr");
  }
  return std::shared_ptr<SharedReceiveQueue>(
      std::make_shared<SoftSharedReceiveQueue>(this, max_wr, max_sge, limit));
}

Status SoftProtectionDomain::check_queue_pair_options(const QueuePairOptions& options) const {
  const DeviceAttributes& limits = device_->attributes();
  if (!options.send_cq || !options.receive_cq) {
    return Status(Errc::kInvalidArgument, "a QP needs a send and a receive completion queue");
  }
  if (options.send_depth == 0 || options.send_depth > limits.max_qp_wr ||
      (!options.srq && (options.receive_depth == 0 || options.receive_depth > limits.max_qp_wr))) {
    return Status(Errc::kInvalidArgument,
                  "QP depths must be between 1 and " + std::to_string(limits.max_qp_wr));
  }
  if (options.send_sge > limits.max_sge || options.receive_sge == 0 ||
      options.receive_sge > limits.max_sge) {
    return Status(Errc::kInvalidArgument,
                  "QP scatter/gather counts must be at most " + std::to_string(limits.max_sge));
  }
  if (options.max_inline > limits.max_inline) {
    return Status(Errc::kInvalidArgument,
                  "QP max_inline must be at most " + std::to_string(limits.max_inline));
  }
  if (options.srq && static_cast<SoftSharedReceiveQueue*>(options.srq.get())->domain() != this) {
    return Status(Errc::kInvalidArgument, "the SRQ belongs to another protection domain");
  }
  return Status::ok();
}

Result<std::shared_ptr<ConnectQueuePair>> SoftProtectionDomain::create_connect_queue_pair(
    const QueuePairOptions& options) {
  if (Status status = check_queue_pair_options(options); !status) return status;
  const uint32_t max_inline =
      options.max_inline == 0 ? device_->attributes().max_inline : options.max_inline;
  return std::shared_ptr<ConnectQueuePair>(std::make_shared<SoftConnectQueuePair>(
      shared_from_this(), options, device_->allocate_qp_number(), max_inline));
}

Result<std::shared_ptr<DatagramQueuePair>> SoftProtectionDomain::create_datagram_queue_pair(
    const QueuePairOptions& options, uint32_t qkey) {
  const std::shared_ptr<DatagramWire>& wire = device_->datagram_wire();
  if (!wire) {
    return Status(Errc::kNotSupported, "device " + device_->attributes().name +
                                           " has no datagram wire (no Capability::kDatagram)");
  }
  if (Status status = check_queue_pair_options(options); !status) return status;
  const uint32_t max_inline =
      options.max_inline == 0 ? device_->attributes().max_inline : options.max_inline;
  auto qp = std::make_shared<SoftDatagramQueuePair>(
      shared_from_this(), wire, options, device_->allocate_qp_number(), qkey, max_inline);
  if (Status status = qp->start(); !status) return status;
  return std::shared_ptr<DatagramQueuePair>(std::move(qp));
}

Result<std::shared_ptr<MemoryWindow>> SoftProtectionDomain::allocate_memory_window(
    MemoryWindowType type) {
  return std::shared_ptr<MemoryWindow>(std::make_shared<SoftMemoryWindow>(device_, this, type));
}

Result<std::shared_ptr<AddressHandle>> SoftProtectionDomain::create_address_handle(
    const AddressVector& address) {
  return std::shared_ptr<AddressHandle>(std::make_shared<SoftAddressHandle>(address));
}

}  // namespace wv::verbs::soft
