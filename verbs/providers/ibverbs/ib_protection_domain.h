// A protection domain on an ibv_pd: the factory of regions, windows, SRQs, QPs and address
// handles, all of which keep the domain (and through it the device) alive.
#pragma once

#include <infiniband/verbs.h>

#include <memory>

#include "ib_device.h"
#include "wv/verbs/protection_domain.h"

namespace wv::verbs::ib {

class IbProtectionDomain final : public ProtectionDomain,
                                 public std::enable_shared_from_this<IbProtectionDomain> {
 public:
  IbProtectionDomain(std::shared_ptr<IbDevice> device, ibv_pd* pd)
      : device_(std::move(device)), pd_(pd) {}
  ~IbProtectionDomain() override;

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

  ibv_pd* pd() const { return pd_; }
  const std::shared_ptr<IbDevice>& device() const { return device_; }

 private:
  std::shared_ptr<IbDevice> device_;
  ibv_pd* pd_;
};

}  // namespace wv::verbs::ib
