// The scope of memory keys: regions, windows and QPs of one domain may be used together only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "wv/result.h"
#include "wv/verbs/queue_pair.h"
#include "wv/verbs/types.h"

namespace wv::verbs {

class AddressHandle;
class MemoryRegion;
class MemoryWindow;
class SharedReceiveQueue;

class ProtectionDomain {
 public:
  ProtectionDomain(const ProtectionDomain&) = delete;
  ProtectionDomain& operator=(const ProtectionDomain&) = delete;
  virtual ~ProtectionDomain() = default;

  virtual Result<std::shared_ptr<MemoryRegion>> register_memory(void* address, size_t length,
                                                                Access access) = 0;
  // Memory the provider allocates and registers in one step (page-aligned, zeroed, freed when
  // the region is destroyed), like UCX's ucp_mem_map with UCP_MEM_MAP_ALLOCATE. Where the
  // provider can, peers reach it more cheaply than a region of the caller's memory: on shm they
  // map it and read and write it themselves, without a system call or this process's CPU.
  virtual Result<std::shared_ptr<MemoryRegion>> allocate_memory(size_t length, Access access) = 0;
  virtual Result<std::shared_ptr<SharedReceiveQueue>> create_shared_receive_queue(
      uint32_t max_wr, uint32_t max_sge, uint32_t limit) = 0;
  virtual Result<std::shared_ptr<ConnectQueuePair>> create_connect_queue_pair(
      const QueuePairOptions& options) = 0;
  virtual Result<std::shared_ptr<DatagramQueuePair>> create_datagram_queue_pair(
      const QueuePairOptions& options, uint32_t qkey) = 0;
  virtual Result<std::shared_ptr<MemoryWindow>> allocate_memory_window(MemoryWindowType type) = 0;
  virtual Result<std::shared_ptr<AddressHandle>> create_address_handle(
      const AddressVector& address) = 0;

 protected:
  ProtectionDomain() = default;
};

}  // namespace wv::verbs
