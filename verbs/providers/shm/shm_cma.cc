#include "shm_cma.h"

#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "work_request.h"
#include "wv/cpus.h"

namespace wv::verbs::shm {
namespace {

constexpr uint64_t kProbeValue = 0x57562d53484d2d31ull;  // "WV-SHM-1"
// volatile: the word must exist in memory for the peer to read it.
volatile uint64_t probe_word = kProbeValue;

int yama_scope() {
  std::ifstream file("/proc/sys/kernel/yama/ptrace_scope");
  int scope = 0;
  if (!(file >> scope)) return 0;  // no Yama: the classic same-user rule
  return scope;
}

}  // namespace

uint64_t probe_address() {
  return reinterpret_cast<uint64_t>(&probe_word);
}

CmaSupport detect_cma(const std::string& setting) {
  CmaSupport support;
  if (setting == "off") {
    support.description = "off (shm_cma=off): RDMA read/write are copied through the ring";
    return support;
  }
  // A seccomp filter (containers) refuses the call itself, even on this process.
  uint64_t value = 0;
  iovec local{&value, sizeof(value)};
  iovec remote{const_cast<uint64_t*>(const_cast<volatile uint64_t*>(&probe_word)), sizeof(value)};
  if (::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) != sizeof(value) ||
      value != kProbeValue) {
    support.description = std::string("unavailable (process_vm_readv: ") + std::strerror(errno) +
                          "): RDMA read/write are copied through the ring";
    return support;
  }
  const int scope = yama_scope();
  if (scope >= 2) {
    support.description = "unavailable (Yama ptrace_scope=" + std::to_string(scope) +
                          "): RDMA read/write are copied through the ring";
    return support;
  }
  if (scope == 1) {
    // Yama scope 1 lets a process ptrace only its descendants; peers are usually siblings.
    // Declaring any process of this user a permitted tracer restores the classic same-user
    // rule for this process only, which is what cross-memory attach between ranks needs.
    if (::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0) != 0) {
      support.description = std::string("unavailable (Yama ptrace_scope=1, PR_SET_PTRACER: ") +
                            std::strerror(errno) + "): RDMA read/write are copied through the ring";
      return support;
    }
  }
  support.enabled = true;
  support.every_peer = setting == "on";
  support.description = support.every_peer
                            ? "single copy with process_vm_readv/writev (shm_cma=on)"
                            : "single copy with process_vm_readv/writev between processes that "
                              "share one CPU, for an RDMA read or write of 32 KiB or more that "
                              "comes alone, for a lone read of any size to a target that does "
                              "not poll (copied by the reader against the target's published "
                              "keys, without the target's CPU), and for the reads of a stream "
                              "when that measures faster than the ring; else through the ring "
                              "(shm_cma=auto)";
  if (scope == 1) support.description += " (Yama ptrace_scope=1: PR_SET_PTRACER_ANY set)";
  return support;
}

bool share_one_cpu(const std::vector<int>& mine, const std::vector<int>& theirs) {
  // allowed_cpus() lists each CPU once; an empty (unknown) set is not a shared one.
  return mine.size() == 1 && mine == theirs;
}

bool use_cma_with(const CmaSupport& support, pid_t peer_pid) {
  if (!support.enabled) return false;
  return support.every_peer || share_one_cpu(allowed_cpus(), allowed_cpus(peer_pid));
}

bool probe_peer(pid_t pid, uint64_t address) {
  if (pid <= 0 || address == 0) return false;
  uint64_t value = 0;
  iovec local{&value, sizeof(value)};
  iovec remote{reinterpret_cast<void*>(address), sizeof(value)};
  return ::process_vm_readv(pid, &local, 1, &remote, 1, 0) == sizeof(value) && value == kProbeValue;
}

Status cma_copy(pid_t pid, bool write, std::byte* local, uint64_t length, const PullIovec* remote,
                uint32_t count) {
  uint64_t done = 0;
  while (done < length) {
    iovec peer[soft::kMaxSge];
    unsigned long n = 0;
    uint64_t skip = done;
    uint64_t want = length - done;
    for (uint32_t i = 0; i < count && want > 0 && n < soft::kMaxSge; ++i) {
      if (skip >= remote[i].length) {
        skip -= remote[i].length;
        continue;
      }
      const uint64_t chunk = std::min(want, remote[i].length - skip);
      peer[n++] = iovec{reinterpret_cast<void*>(remote[i].base + skip), chunk};
      want -= chunk;
      skip = 0;
    }
    if (n == 0) return Status(Errc::kProtocolError, "the peer's buffers are shorter than the data");
    iovec mine{local + done, length - done};
    const ssize_t copied = write ? ::process_vm_writev(pid, &mine, 1, peer, n, 0)
                                 : ::process_vm_readv(pid, &mine, 1, peer, n, 0);
    if (copied < 0 && errno == EINTR) continue;
    if (copied <= 0) {
      return errno_status(Errc::kIoError, write ? "process_vm_writev to the peer"
                                                : "process_vm_readv from the peer");
    }
    done += static_cast<uint64_t>(copied);
  }
  return Status::ok();
}

}  // namespace wv::verbs::shm
