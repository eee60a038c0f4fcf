// The destination of datagram sends, made once from an AddressVector and reused.
#pragma once

#include "wv/verbs/types.h"

namespace wv::verbs {

class AddressHandle {
 public:
  AddressHandle(const AddressHandle&) = delete;
  AddressHandle& operator=(const AddressHandle&) = delete;
  virtual ~AddressHandle() = default;

  const AddressVector& address_vector() const { return address_vector_; }

 protected:
  explicit AddressHandle(const AddressVector& address_vector) : address_vector_(address_vector) {}

 private:
  AddressVector address_vector_;
};

}  // namespace wv::verbs
