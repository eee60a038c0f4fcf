// The floors of the shm provider, measured in the same run as wv so that wv's numbers read as
// ratios on a noisy machine:
// - latency: a plain two-process shared-memory ping-pong. Each side copies `size` bytes into a
//   shared buffer and publishes a sequence number in its own cache line; the other spins on it
//   and copies the bytes out. For small sizes this is the cache-line transfer every shared-memory
//   message pays; nothing a provider does can be faster.
// - bandwidth: single-threaded memcpy of `size` bytes between two private buffers: a single-copy
//   transfer (cross-memory attach) moves bytes at best at this speed; and what one
//   process_vm_readv from the other process achieves, the kernel copy shm's large RDMA reads and
//   writes are made of (on the project's VMs well below memcpy).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "process.h"
#include "wv/result.h"

namespace wv::perf {

class ShmPingPong {
 public:
  // Maps the shared area and forks the pong process (pinned to `cpu` when >= 0). The pong side
  // only spins and copies; it ends on quit, when the parent dies, or after `timeout` idle.
  static Result<std::unique_ptr<ShmPingPong>> start(size_t max_size, int cpu,
                                                    std::chrono::milliseconds timeout);
  ~ShmPingPong();
  ShmPingPong(const ShmPingPong&) = delete;
  ShmPingPong& operator=(const ShmPingPong&) = delete;

  // `warmup` untimed round trips, then one timed round trip per element of `samples_ns`.
  Status ping(size_t size, uint64_t warmup, std::span<int64_t> samples_ns);
  // MB/s of process_vm_readv of `size` bytes from the pong process, repeated for about `seconds`.
  Result<double> cma_mbps(size_t size, double seconds);

 private:
  struct Area;
  ShmPingPong(Area* area, size_t bytes, size_t max_size, Child child,
              std::chrono::milliseconds timeout)
      : area_(area),
        bytes_(bytes),
        max_size_(max_size),
        child_(std::move(child)),
        timeout_(timeout) {}
  static int pong(Area* area, size_t max_size, std::chrono::milliseconds timeout);

  Area* area_;
  size_t bytes_;
  size_t max_size_;
  Child child_;
  std::chrono::milliseconds timeout_;
  uint64_t sequence_ = 0;
  std::vector<std::byte> local_;
};

}  // namespace wv::perf
