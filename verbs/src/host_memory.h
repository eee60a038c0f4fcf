// The memory behind a region a protection domain allocates (ProtectionDomain::allocate_memory):
// a memfd mapped shared rather than anonymous memory, so that a peer process on the host may
// map the same pages. The shm provider's peers do (shm_peer_memory.h): they read and write such a
// region with plain loads and stores, without a system call or this process's CPU.
#pragma once

#include <cstddef>
#include <memory>

#include "wv/result.h"

namespace wv::verbs {

class HostMemory {
 public:
  // `length` bytes (at least 1), page-aligned and zeroed.
  static Result<std::unique_ptr<HostMemory>> allocate(size_t length);
  ~HostMemory();
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;

  void* address() const { return address_; }
  size_t length() const { return length_; }
  // The memfd; stays open as long as the memory (peers take it by number, see shm_peer_memory.h).
  int fd() const { return fd_; }

 private:
  HostMemory() = default;
  void* address_ = nullptr;
  size_t length_ = 0;
  size_t mapped_ = 0;
  int fd_ = -1;
};

}  // namespace wv::verbs
