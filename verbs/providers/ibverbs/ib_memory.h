// Registered memory (ibv_mr) and memory windows (ibv_mw) of the ibverbs provider.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <memory>

#include "wv/host_memory.h"
#include "wv/verbs/memory_region.h"
#include "wv/verbs/memory_window.h"

namespace wv::verbs::ib {

class IbProtectionDomain;

class IbMemoryRegion final : public MemoryRegion {
 public:
  // `domain` is the IbProtectionDomain, the identity posts compare SGEs against.
  // `owned`: the memory of a region from allocate_memory, freed after deregistration.
  IbMemoryRegion(std::shared_ptr<IbProtectionDomain> domain, ibv_mr* mr, Access access,
                 std::unique_ptr<HostMemory> owned = nullptr);
  ~IbMemoryRegion() override;

  ibv_mr* mr() const { return mr_; }

 private:
  std::shared_ptr<IbProtectionDomain> domain_;
  ibv_mr* mr_;
  std::unique_ptr<HostMemory> owned_;
};

class IbMemoryWindow final : public MemoryWindow {
 public:
  IbMemoryWindow(std::shared_ptr<IbProtectionDomain> domain, ibv_mw* mw, MemoryWindowType type)
      : MemoryWindow(type), domain_(std::move(domain)), mw_(mw) {}
  ~IbMemoryWindow() override;

  uint32_t remote_key() const override { return rkey_.load(std::memory_order_acquire); }
  ibv_mw* mw() const { return mw_; }
  const IbProtectionDomain* domain() const { return domain_.get(); }
  // The key of the latest bind (libibverbs tracks type 2 keys only through the work request).
  void set_remote_key(uint32_t rkey) { rkey_.store(rkey, std::memory_order_release); }

 private:
  std::shared_ptr<IbProtectionDomain> domain_;
  ibv_mw* mw_;
  std::atomic<uint32_t> rkey_{0};
};

}  // namespace wv::verbs::ib
