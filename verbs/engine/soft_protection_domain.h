// The software protection domain: registration through the device's key table, and the
// factory of QPs, SRQs, windows and address handles of one domain.
#pragma once

#include <memory>

#include "soft_device.h"
#include "wv/host_memory.h"
#include "wv/verbs/protection_domain.h"

namespace wv::verbs::soft {

class SoftProtectionDomain final : public ProtectionDomain,
                                   public std::enable_shared_from_this<SoftProtectionDomain> {
 public:
  explicit SoftProtectionDomain(std::shared_ptr<SoftDevice> device) : device_(std::move(device)) {}

  Result<std::shared_ptr<MemoryRegion>> register_memory(void* address, size_t length,
                                                        Access access) override;
  Result<std::shared_ptr<MemoryRegion>> allocate_memory(size_t length, Access access) override;
  Result<std::shared_ptr<SharedReceiveQueue>> create_shared_receive_queue(uint32_t max_wr,
                                                                          uint32_t max_sge,
                                                                          uint32_t limit) override;
  Result<std::shared_ptr<ConnectQueuePair>> create_connect_queue_pair(
      const QueuePairOptions& options) override;
  Result<std::shared_ptr<DatagramQueuePair>> create_datagram_queue_pair(
      const QueuePairOptions& options, uint32_t qkey) override;
  Result<std::shared_ptr<MemoryWindow>> allocate_memory_window(MemoryWindowType type) override;
  Result<std::shared_ptr<AddressHandle>> create_address_handle(
      const AddressVector& address) override;

  const std::shared_ptr<SoftDevice>& device() const { return device_; }

 private:
  Status check_queue_pair_options(const QueuePairOptions& options) const;
  // register_memory of [address, address + length), which `owned` (if any) backs.
  Result<std::shared_ptr<MemoryRegion>> register_range(void* address, size_t length, Access access,
                                                       std::unique_ptr<HostMemory> owned);

  std::shared_ptr<SoftDevice> device_;
};

}  // namespace wv::verbs::soft
