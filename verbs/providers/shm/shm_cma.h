// Cross-memory attach (process_vm_readv / process_vm_writev): the single copy of large RDMA
// reads and writes between two processes, done by the target after it has checked the key.
//
// Why the target copies: it checks the rkey in its own key table and copies while its progress
// thread holds the request, so a peer never needs the target's keys and a region deregistered
// later is never touched (the initiator's memory is named by the initiator, for its own request).
//
// The kernel allows it when the caller may ptrace the peer: same user, and no stricter Yama
// policy or seccomp filter. Where it is refused (EPERM, ENOSYS), everything is copied through
// the ring instead; `shm_cma=off` forces that.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "shm_protocol.h"
#include "wv/result.h"

namespace wv::verbs::shm {

// What this process can do, decided once per provider (and confirmed per connection).
struct CmaSupport {
  bool enabled = false;
  std::string description;  // for wv_info: why enabled or not
};
// `setting` is the shm_cma parameter (auto | off).
CmaSupport detect_cma(const std::string& setting);

// The address of a word holding kProbeValue in this process, for the peer's probe.
uint64_t probe_address();
// True when process_vm_readv of `pid`'s probe word works and returns the probe value.
bool probe_peer(pid_t pid, uint64_t address);

// Copies `length` bytes between local memory and the peer's iovecs (write = to the peer).
Status cma_copy(pid_t pid, bool write, std::byte* local, uint64_t length, const PullIovec* remote,
                uint32_t count);

}  // namespace wv::verbs::shm
