// Registered memory. A region is named by this handle everywhere in the API (Sge::region);
// the local key is the provider's business. The remote key is what a peer needs to reach it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "wv/verbs/types.h"

namespace wv::verbs {

namespace detail {
struct RegionAccess;
}

class MemoryRegion {
 public:
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;
  virtual ~MemoryRegion() = default;  // deregisters

  void* address() const { return address_; }
  size_t length() const { return length_; }
  Access access() const { return access_; }
  uint32_t remote_key() const { return remote_key_; }
  // The remote description of `bytes` bytes at `at` inside this region.
  RemoteAddress remote(const void* at) const {
    return {reinterpret_cast<uint64_t>(at), remote_key_};
  }
  Sge sge(void* at, uint32_t bytes) const { return {this, at, bytes}; }
  Sge sge() const { return {this, address_, static_cast<uint32_t>(length_)}; }

 protected:
  // `domain` is the provider's protection domain object; `local_key` its key for the region.
  MemoryRegion(void* address, size_t length, Access access, uint32_t remote_key, const void* domain,
               uint32_t local_key)
      : address_(address),
        length_(length),
        access_(access),
        remote_key_(remote_key),
        domain_(domain),
        local_key_(local_key) {}

 private:
  friend struct detail::RegionAccess;
  void* address_;
  size_t length_;
  Access access_;
  uint32_t remote_key_;
  const void* domain_;
  uint32_t local_key_;
};

namespace detail {
// For providers only: what a work request needs to check a region without a table lookup.
struct RegionAccess {
  static const void* domain(const MemoryRegion& region) { return region.domain_; }
  static uint32_t local_key(const MemoryRegion& region) { return region.local_key_; }
};
}  // namespace detail

}  // namespace wv::verbs
