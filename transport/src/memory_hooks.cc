// Process-wide hooks on the calls that take memory away from a virtual address range, so the
// registration caches drop entries before the range can be reused for other memory.
//
// The definitions below interpose libc's munmap, mremap and madvise for every caller that
// goes through the dynamic linker (the program, and libraries when the program exports the
// symbols, which the wv::transport target arranges). They perform the system call directly,
// never through libc, so they cannot recurse. Linked in because register_cache() lives here.
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <mutex>
#include <vector>

#include "registration_cache.h"

namespace wv::transport {

namespace {

std::mutex& caches_mutex() {
  static std::mutex mutex;
  return mutex;
}
std::vector<RegistrationCache*>& caches() {
  static std::vector<RegistrationCache*> list;
  return list;
}
// Lets every hook skip the lock while no cache exists (most of a program's life, often).
std::atomic<int> live_caches{0};

[[maybe_unused]] void invalidate_range(const void* address, size_t length) {
  if (live_caches.load(std::memory_order_acquire) == 0 || length == 0) return;
  const auto start = reinterpret_cast<uintptr_t>(address);
  invalidate_all_caches(start, start + length);
}

}  // namespace

void register_cache(RegistrationCache* cache) {
  std::lock_guard lock(caches_mutex());
  caches().push_back(cache);
  live_caches.fetch_add(1, std::memory_order_release);
}

void unregister_cache(RegistrationCache* cache) {
  std::lock_guard lock(caches_mutex());
  std::erase(caches(), cache);
  live_caches.fetch_sub(1, std::memory_order_release);
}

void invalidate_all_caches(uintptr_t start, uintptr_t end) {
  std::lock_guard lock(caches_mutex());
  for (RegistrationCache* cache : caches()) cache->invalidate(start, end);
}

}  // namespace wv::transport

// Not in TSan builds: TSan's own symbolizer unmaps memory while it holds its thread-registry
// lock, and an instrumented hook there reports a race of its own and deadlocks the process.
#if !defined(__SANITIZE_THREAD__)
extern "C" {

int munmap(void* address, size_t length) {
  wv::transport::invalidate_range(address, length);
  return static_cast<int>(syscall(SYS_munmap, address, length));
}

void* mremap(void* old_address, size_t old_size, size_t new_size, int flags, ...) {
  void* new_address = nullptr;
  if (flags & MREMAP_FIXED) {
    va_list args;
    va_start(args, flags);
    new_address = va_arg(args, void*);
    va_end(args);
  }
  wv::transport::invalidate_range(old_address, old_size);
  if (flags & MREMAP_FIXED) wv::transport::invalidate_range(new_address, new_size);
  long result = syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address);
  return reinterpret_cast<void*>(result);
}

int madvise(void* address, size_t length, int advice) {
  if (advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE) {
    wv::transport::invalidate_range(address, length);
  }
  return static_cast<int>(syscall(SYS_madvise, address, length, advice));
}

}  // extern "C"
#endif
