// The regions a peer allocated (ProtectionDomain::allocate_memory) that this process mapped, so
// that it reads and writes them with loads and stores: no system call, no copy by the kernel,
// nothing from the peer's CPU, as an RDMA NIC would.
//
// The peer's key mirror names a region's memfd by its descriptor number in the peer; this side
// takes it with pidfd_getfd, which needs the permission process_vm_readv needs, checks that the
// key did not change meanwhile (the peer closes the memfd only after withdrawing the key, so the
// number was the region's) and that the file is sealed at its size (no SIGBUS later), and maps
// it shared. A mapping keeps the peer's pages alive after the peer frees the region: a copy that
// races with the peer's deregistration lands in pages nobody else uses, never in memory the peer
// reused. So that few stay alive that way, the cache is small and direct-mapped by key; a mapping
// whose key changed is dropped when a lookup finds it, and all go with the connection.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "shm_key_mirror.h"
#include "wv/host_memory.h"
#include "wv/verbs/remote_mapping.h"

namespace wv::verbs::shm {

class PeerMemory {
 public:
  explicit PeerMemory(pid_t peer) : files_(peer) {}
  ~PeerMemory();
  PeerMemory(const PeerMemory&) = delete;
  PeerMemory& operator=(const PeerMemory&) = delete;

  // This process's address of the peer's [address, address + length) that `keys` granted for
  // `key` as `grant`; null where it cannot be mapped (then the caller takes another path).
  std::byte* map(const PeerKeys& keys, uint32_t key, const PeerKeys::Grant& grant, uint64_t address,
                 uint64_t length);
  // The same range mapped for the caller to keep (ConnectQueuePair::map_remote; not cached);
  // null where it cannot be mapped.
  std::unique_ptr<RemoteMapping> map_kept(const PeerKeys& keys, uint32_t key,
                                          const PeerKeys::Grant& grant, uint64_t address,
                                          uint64_t length);

 private:
  struct Mapping {
    uint32_t key = 0;
    uint64_t sequence = 0;
    uint64_t start = 0;  // the peer's address of the file's offset 0
    SealedMapping mapping;
  };
  static constexpr size_t kSlots = 32;

  // The whole region behind `key`, mapped; empty where it cannot be.
  SealedMapping map_region(const PeerKeys& keys, uint32_t key, const PeerKeys::Grant& grant);
  bool attach(const PeerKeys& keys, uint32_t key, const PeerKeys::Grant& grant, Mapping& into);

  PeerFiles files_;
  std::array<Mapping, kSlots> mappings_{};
};

// ConnectQueuePair::map_remote's answer on the shm wire: a region of the peer kept mapped.
class ShmRemoteMapping final : public RemoteMapping {
 public:
  ShmRemoteMapping(SealedMapping mapping, std::byte* data, size_t length)
      : RemoteMapping(data, length), mapping_(mapping) {}
  ~ShmRemoteMapping() override { mapping_.unmap(); }

 private:
  SealedMapping mapping_;
};

}  // namespace wv::verbs::shm
