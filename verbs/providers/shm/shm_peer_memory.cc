#include "shm_peer_memory.h"

#include <unistd.h>

namespace wv::verbs::shm {
namespace {

// `address` in `mapping` (whose offset 0 is the peer's address `start`) when all of
// [address, address + length) lies in it; else null. The key's bounds were checked against the
// mirror; the file must hold them too.
std::byte* within(const SealedMapping& mapping, uint64_t start, uint64_t address, uint64_t length) {
  const uint64_t offset = address - start;
  if (mapping.base == nullptr || address < start || offset > mapping.bytes ||
      length > mapping.bytes - offset) {
    return nullptr;
  }
  return mapping.base + offset;
}

}  // namespace

PeerMemory::~PeerMemory() {
  for (Mapping& mapping : mappings_) mapping.mapping.unmap();
}

std::byte* PeerMemory::map(const PeerKeys& keys, uint32_t key, const PeerKeys::Grant& grant,
                           uint64_t address, uint64_t length) {
  if (grant.shared_fd < 0 || files_.refused()) return nullptr;
  Mapping& mapping = mappings_[key % kSlots];
  if (mapping.mapping.base != nullptr &&
      (mapping.key != key || mapping.sequence != grant.sequence)) {
    mapping.mapping.unmap();
  }
  if (mapping.mapping.base == nullptr && !attach(keys, key, grant, mapping)) return nullptr;
  return within(mapping.mapping, mapping.start, address, length);
}

std::unique_ptr<RemoteMapping> PeerMemory::map_kept(const PeerKeys& keys, uint32_t key,
                                                    const PeerKeys::Grant& grant, uint64_t address,
                                                    uint64_t length) {
  SealedMapping mapping = map_region(keys, key, grant);
  std::byte* at = within(mapping, grant.start, address, length);
  if (at == nullptr) {
    mapping.unmap();
    return nullptr;
  }
  return std::make_unique<ShmRemoteMapping>(mapping, at, length);
}

SealedMapping PeerMemory::map_region(const PeerKeys& keys, uint32_t key,
                                     const PeerKeys::Grant& grant) {
  if (grant.shared_fd < 0 || files_.refused()) return {};
  const int fd = files_.take(grant.shared_fd);
  if (fd < 0) return {};
  // The peer closes the memfd only after withdrawing the key: an unchanged key means the number
  // was the region's.
  SealedMapping mapping =
      keys.unchanged(key, grant.sequence) ? SealedMapping::map(fd) : SealedMapping{};
  ::close(fd);
  return mapping;
}

bool PeerMemory::attach(const PeerKeys& keys, uint32_t key, const PeerKeys::Grant& grant,
                        Mapping& into) {
  SealedMapping mapping = map_region(keys, key, grant);
  if (mapping.base == nullptr) return false;
  into = Mapping{key, grant.sequence, grant.start, mapping};
  return true;
}

}  // namespace wv::verbs::shm
