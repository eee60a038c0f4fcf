// Registrations of user buffers, reused across messages: keyed by address range, bounded
// (least recently used entries are dropped), and invalidated when the memory under an entry is
// unmapped, remapped or discarded, so a freed-and-reused address is never sent from a stale
// registration (which, on hardware, pins the old pages).
//
// Invalidation comes from the process-wide memory hooks (memory_hooks.cc): munmap, mremap and
// madvise(DONTNEED/FREE/REMOVE) called through the dynamic linker are seen before they take
// effect. Limit: glibc's free() unmaps large chunks through an internal call the hooks cannot
// see; the software providers address memory by virtual address and are unaffected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>

#include "wv/result.h"
#include "wv/verbs/memory_region.h"
#include "wv/verbs/protection_domain.h"

namespace wv::transport {

class RegistrationCache {
 public:
  struct Counters {
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t invalidations = 0;
    uint64_t evictions = 0;
  };

  RegistrationCache(std::shared_ptr<verbs::ProtectionDomain> domain, size_t max_entries);
  ~RegistrationCache();
  RegistrationCache(const RegistrationCache&) = delete;
  RegistrationCache& operator=(const RegistrationCache&) = delete;

  // A region covering [address, address + length) with at least `access`. Entries in use by
  // an operation stay registered until it drops its reference, even if invalidated meanwhile.
  Result<std::shared_ptr<verbs::MemoryRegion>> get(const void* address, size_t length,
                                                   verbs::Access access);
  // Drops every entry overlapping the range (memory hooks; also callable directly).
  void invalidate(uintptr_t start, uintptr_t end);
  Counters counters() const;
  size_t size() const;

 private:
  struct Entry {
    uintptr_t end;
    std::shared_ptr<verbs::MemoryRegion> region;
    std::list<uintptr_t>::iterator lru;
  };

  std::shared_ptr<verbs::ProtectionDomain> domain_;
  size_t max_entries_;
  mutable std::mutex mutex_;
  std::map<uintptr_t, Entry> entries_;  // by start address
  std::list<uintptr_t> lru_;            // most recently used first
  uintptr_t longest_ = 0;               // the longest entry ever inserted
  uint64_t epoch_ = 0;                  // bumped by every invalidation
  Counters counters_;
};

// The process-wide list the memory hooks walk (memory_hooks.cc).
void register_cache(RegistrationCache* cache);
void unregister_cache(RegistrationCache* cache);
void invalidate_all_caches(uintptr_t start, uintptr_t end);

}  // namespace wv::transport
