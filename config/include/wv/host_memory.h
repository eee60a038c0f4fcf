// Memory that other processes of the host may map: a memfd sealed at its size and mapped shared,
// rather than anonymous memory. The process that allocates it (HostMemory) names the memfd by its
// descriptor number; a peer takes that descriptor with pidfd_getfd (PeerFiles), which needs the
// permission process_vm_readv needs, and maps the same pages (map_sealed). From then on the peer
// reads and writes them with loads and stores: no system call, no copy by the kernel, nothing
// from the owner's CPU. The shm provider's RDMA to regions from allocate_memory works that way
// (shm_peer_memory.h), and so do the collectives' steps over SharedBuffers (wv::coll).
//
// A peer's mapping keeps the pages alive after the owner frees them, so a copy racing with the
// owner's free lands in pages nobody else uses, never in memory the owner reused.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "wv/result.h"

namespace wv {

class HostMemory {
 public:
  // `length` bytes (at least 1), page-aligned and zeroed. `name` shows in /proc/<pid>/maps.
  static Result<std::unique_ptr<HostMemory>> allocate(size_t length,
                                                      const char* name = "wv-region");
  ~HostMemory();
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;

  void* address() const { return address_; }
  size_t length() const { return length_; }
  // The memfd; stays open as long as the memory (peers take it by number).
  int fd() const { return fd_; }
  // The memfd's inode number: a peer that took a descriptor by number checks it is this file.
  uint64_t inode() const { return inode_; }

 private:
  HostMemory() = default;
  void* address_ = nullptr;
  size_t length_ = 0;
  size_t mapped_ = 0;
  int fd_ = -1;
  uint64_t inode_ = 0;
};

// The descriptors of one peer process, taken by number.
class PeerFiles {
 public:
  explicit PeerFiles(pid_t peer) : peer_(peer) {}
  ~PeerFiles();
  PeerFiles(const PeerFiles&) = delete;
  PeerFiles& operator=(const PeerFiles&) = delete;

  // This process's descriptor for the peer's descriptor `fd` (the caller closes it), or -1.
  // Once the kernel refused for want of permission or support (or the peer is gone), it is not
  // asked again: refused() is then true.
  int take(int fd);
  bool refused() const { return refused_; }

 private:
  const pid_t peer_;
  int pidfd_ = -1;  // opened on first use
  bool refused_ = false;
};

// A shared mapping of a whole file that is sealed at its size (so no page of it can vanish under
// a reader: no SIGBUS), when `fd` is one and, if `inode` is not 0, is that inode; else empty.
struct SealedMapping {
  std::byte* base = nullptr;
  size_t bytes = 0;
  static SealedMapping map(int fd, uint64_t inode = 0);
  void unmap();
};

}  // namespace wv
