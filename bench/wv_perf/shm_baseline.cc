#include "shm_baseline.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>

namespace wv::perf {

struct ShmPingPong::Area {
  alignas(64) std::atomic<uint64_t> ping{0};
  alignas(64) std::atomic<uint64_t> pong{0};
  alignas(64) std::atomic<uint64_t> size{0};
  std::atomic<uint32_t> quit{0};
  // Followed by the ping buffer and the pong buffer, max_size bytes each, cache-line aligned.
  std::byte* ping_data() { return reinterpret_cast<std::byte*>(this) + 4096; }
  std::byte* pong_data(size_t max_size) { return ping_data() + ((max_size + 63) & ~size_t{63}); }
};

Result<std::unique_ptr<ShmPingPong>> ShmPingPong::start(size_t max_size, int cpu,
                                                        std::chrono::milliseconds timeout) {
  max_size = std::max<size_t>(max_size, 1);
  const size_t bytes = 4096 + 2 * ((max_size + 63) & ~size_t{63});
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return Status(Errc::kNoMemory, "shm floor: mmap of the shared area");
  auto* area = new (memory) Area();
  auto child = Child::spawn([area, max_size, cpu, timeout] {
    if (cpu >= 0) (void)pin_to_cpu(cpu);
    return pong(area, max_size, timeout);
  });
  if (!child) {
    ::munmap(memory, bytes);
    return child.status();
  }
  return std::unique_ptr<ShmPingPong>(
      new ShmPingPong(area, bytes, max_size, std::move(child).value(), timeout));
}

ShmPingPong::~ShmPingPong() {
  area_->quit.store(1, std::memory_order_release);
  (void)child_.wait(timeout_);
  ::munmap(area_, bytes_);
}

int ShmPingPong::pong(Area* area, size_t max_size, std::chrono::milliseconds timeout) {
  std::vector<std::byte> local(max_size);
  uint64_t expected = 1;
  for (;;) {
    StallGuard guard(timeout);
    while (area->ping.load(std::memory_order_acquire) != expected) {
      if (area->quit.load(std::memory_order_relaxed) != 0) return 0;
      if (guard.idle()) return 1;
    }
    const size_t size = area->size.load(std::memory_order_relaxed);
    std::memcpy(local.data(), area->ping_data(), size);
    std::memcpy(area->pong_data(max_size), local.data(), size);
    area->pong.store(expected, std::memory_order_release);
    ++expected;
  }
}

Status ShmPingPong::ping(size_t size, uint64_t warmup, std::span<int64_t> samples_ns) {
  if (size > max_size_) return Status(Errc::kInvalidArgument, "shm floor: size above its area");
  local_.resize(max_size_);
  area_->size.store(size, std::memory_order_relaxed);
  const uint64_t total = warmup + samples_ns.size();
  for (uint64_t i = 0; i < total; ++i) {
    const Clock::time_point start = Clock::now();
    std::memcpy(area_->ping_data(), local_.data(), size);
    const uint64_t sequence = ++sequence_;
    area_->ping.store(sequence, std::memory_order_release);
    StallGuard guard(timeout_);
    while (area_->pong.load(std::memory_order_acquire) != sequence) {
      if (guard.idle()) return stalled("the shared-memory floor's pong process", timeout_);
    }
    std::memcpy(local_.data(), area_->pong_data(max_size_), size);
    const Clock::time_point end = Clock::now();
    if (i >= warmup) samples_ns[i - warmup] = (end - start).count();
  }
  return Status::ok();
}

Result<double> ShmPingPong::cma_mbps(size_t size, double seconds) {
  if (size == 0 || size > max_size_) {
    return Status(Errc::kInvalidArgument, "shm floor: CMA size outside its area");
  }
  local_.resize(max_size_);
  // The area is mapped at the same address in the pong process (mapped before the fork).
  const iovec local{local_.data(), size};
  const iovec remote{area_->pong_data(max_size_), size};
  uint64_t count = 1;
  for (;;) {
    const Clock::time_point start = Clock::now();
    for (uint64_t i = 0; i < count; ++i) {
      if (::process_vm_readv(child_.pid(), &local, 1, &remote, 1, 0) !=
          static_cast<ssize_t>(size)) {
        return errno_status(Errc::kNotSupported, "shm floor: process_vm_readv");
      }
    }
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    if (took >= seconds || count >= (uint64_t{1} << 30)) {
      return static_cast<double>(size) * static_cast<double>(count) / took / 1e6;
    }
    count = took * 8 < seconds ? count * 8 : count * 2;
  }
}

}  // namespace wv::perf
