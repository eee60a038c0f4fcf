// Cross-memory attach (process_vm_readv / process_vm_writev): the single copy of large RDMA
// reads and writes between two processes, done after the target has checked the key.
//
// Who copies: the target checks the rkey in its own key table, so a peer never needs the
// target's keys. It copies itself while it holds the request (writes it pulls, lone reads it
// pushes), so a region deregistered later is never touched. The reads of a stream are the
// exception: the target grants the checked range and the reader pulls it, because writing into
// the reader's cold pages ran at 6.2-6.4 GB/s against 9.4-10.0 for reading the same
// (a bandwidth window). A region the target deregisters between grant and pull may still be read
// (as a hardware read in flight may), or the pull fails and the QP with it; the target's memory
// is only ever read.
//
// The kernel allows it when the caller may ptrace the peer: same user, and no stricter Yama
// policy or seccomp filter. Where it is refused (EPERM, ENOSYS), everything is copied through
// the ring instead; `shm_cma=off` forces that.
//
// Where it is allowed, it is still not always the faster copy. Through the ring the initiator
// copies in while the target copies out, two cores each doing one copy of the pipeline, with
// the ring in cache: on this project's 2-core VMs 10-16 GB/s for 64 KiB-16 MiB writes and
// reads against 5-10 GB/s for the single copy (and btl/wv 1.4-2.3x vader's bandwidth against
// 0.6-0.9x). Two processes confined to one CPU take turns instead, and there the single copy
// is 3x the ring. So `shm_cma=auto` uses it only between processes whose CPU sets together
// hold a single CPU; `shm_cma=on` uses it for every peer. (Oversubscribed processes free to
// run anywhere also take turns; pin them, or set on.) A lone transfer is the exception: an RDMA
// read or write of 32 KiB or more with nothing else outstanding on its QP (a rendezvous in a
// ping-pong) waits for the whole pipeline, and one copy ends sooner; where CMA works, `auto`
// uses it for those. The ring's speed also depends on how far apart the two CPUs are (under a
// VM it fell to 2.2 GB/s whenever the host placed the vCPUs apart), so where CMA works the reads
// of a stream take whichever path their connection measured faster (TransferPathChooser).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "shm_protocol.h"
#include "wv/result.h"

namespace wv::verbs::shm {

// What this process can do, decided once per provider (and confirmed per connection).
struct CmaSupport {
  bool enabled = false;
  bool every_peer = false;  // shm_cma=on: not only peers that share this process's one CPU
  std::string description;  // for wv_info: why enabled or not, and for which peers
};
// `setting` is the shm_cma parameter (auto | on | off).
CmaSupport detect_cma(const std::string& setting);

// What CMA does on one connection.
struct CmaWith {
  bool works = false;           // this process may copy to and from the peer: lone transfers use it
  bool every_transfer = false;  // shm_cma chose it for every large read and write (both sides)
};

// Whether two processes allowed on these CPUs can only take turns: together they have one CPU.
bool share_one_cpu(const std::vector<int>& mine, const std::vector<int>& theirs);
// Whether RDMA reads and writes with the process `peer_pid` go by CMA.
bool use_cma_with(const CmaSupport& support, pid_t peer_pid);

// The address of a word holding kProbeValue in this process, for the peer's probe.
uint64_t probe_address();
// True when process_vm_readv of `pid`'s probe word works and returns the probe value.
bool probe_peer(pid_t pid, uint64_t address);

// Copies `length` bytes between local memory and the peer's iovecs (write = to the peer).
Status cma_copy(pid_t pid, bool write, std::byte* local, uint64_t length, const PullIovec* remote,
                uint32_t count);

}  // namespace wv::verbs::shm
