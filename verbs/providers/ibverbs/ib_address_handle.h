// The destination of datagram sends: an ibv_ah made from an AddressVector.
#pragma once

#include <infiniband/verbs.h>

#include <memory>

#include "wv/verbs/address_handle.h"

namespace wv::verbs::ib {

class IbProtectionDomain;

class IbAddressHandle final : public AddressHandle {
 public:
  IbAddressHandle(std::shared_ptr<IbProtectionDomain> domain, ibv_ah* ah,
                  const AddressVector& vector)
      : AddressHandle(vector), domain_(std::move(domain)), ah_(ah) {}
  ~IbAddressHandle() override { ibv_destroy_ah(ah_); }

  ibv_ah* ah() const { return ah_; }
  const IbProtectionDomain* domain() const { return domain_.get(); }

 private:
  std::shared_ptr<IbProtectionDomain> domain_;
  ibv_ah* ah_;
};

}  // namespace wv::verbs::ib
