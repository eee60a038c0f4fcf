// Memory regions and windows of the software device, backed by its key table.
#pragma once

#include <atomic>
#include <memory>

#include "soft_device.h"
#include "wv/host_memory.h"
#include "wv/verbs/address_handle.h"
#include "wv/verbs/memory_region.h"
#include "wv/verbs/memory_window.h"

namespace wv::verbs::soft {

class SoftMemoryRegion final : public MemoryRegion {
 public:
  // `owned`: the memory of a region from allocate_memory, freed after the keys are gone.
  SoftMemoryRegion(std::shared_ptr<SoftDevice> device, const void* domain, void* address,
                   size_t length, Access access, uint32_t local_key, uint32_t remote_key,
                   std::unique_ptr<HostMemory> owned = nullptr)
      : MemoryRegion(address, length, access, remote_key, domain, local_key),
        device_(std::move(device)),
        owned_(std::move(owned)) {}
  ~SoftMemoryRegion() override;

 private:
  std::shared_ptr<SoftDevice> device_;
  std::unique_ptr<HostMemory> owned_;
};

class SoftMemoryWindow final : public MemoryWindow {
 public:
  SoftMemoryWindow(std::shared_ptr<SoftDevice> device, const void* domain, MemoryWindowType type)
      : MemoryWindow(type), device_(std::move(device)), domain_(domain) {}
  ~SoftMemoryWindow() override;

  uint32_t remote_key() const override { return key_.load(std::memory_order_acquire); }
  const void* domain() const { return domain_; }
  // Replaces the current binding (engine side, in send-queue order).
  void bind(uint64_t address, uint64_t length, Access access, uint32_t qp_number, uint32_t new_key);
  // A fresh key for the next bind, reserved now so that post can return it.
  uint32_t reserve_key();

 private:
  std::shared_ptr<SoftDevice> device_;
  const void* domain_;
  std::atomic<uint32_t> key_{0};
};

class SoftAddressHandle final : public AddressHandle {
 public:
  explicit SoftAddressHandle(const AddressVector& address) : AddressHandle(address) {}
};

}  // namespace wv::verbs::soft
