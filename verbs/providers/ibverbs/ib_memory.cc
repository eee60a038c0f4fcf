#include "ib_memory.h"

#include "ib_protection_domain.h"

namespace wv::verbs::ib {

IbMemoryRegion::IbMemoryRegion(std::shared_ptr<IbProtectionDomain> domain, ibv_mr* mr,
                               Access access, std::unique_ptr<HostMemory> owned)
    : MemoryRegion(mr->addr, mr->length, access, mr->rkey, domain.get(), mr->lkey),
      domain_(std::move(domain)),
      mr_(mr),
      owned_(std::move(owned)) {}

IbMemoryRegion::~IbMemoryRegion() {
  ibv_dereg_mr(mr_);
}

IbMemoryWindow::~IbMemoryWindow() {
  ibv_dealloc_mw(mw_);
}

}  // namespace wv::verbs::ib
