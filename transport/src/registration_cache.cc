#include "registration_cache.h"

#include <unistd.h>

#include <algorithm>

namespace wv::transport {

namespace {

uintptr_t page_size() {
  static const uintptr_t size = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace

RegistrationCache::RegistrationCache(std::shared_ptr<verbs::ProtectionDomain> domain,
                                     size_t max_entries)
    : domain_(std::move(domain)), max_entries_(std::max<size_t>(max_entries, 1)) {
  register_cache(this);
}

RegistrationCache::~RegistrationCache() {
  unregister_cache(this);
}

Result<std::shared_ptr<verbs::MemoryRegion>> RegistrationCache::get(const void* address,
                                                                    size_t length,
                                                                    verbs::Access access) {
  const auto start = reinterpret_cast<uintptr_t>(address);
  const uintptr_t end = start + std::max<size_t>(length, 1);
  uint64_t epoch;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.upper_bound(start);
    if (it != entries_.begin()) {
      --it;
      Entry& entry = it->second;
      if (entry.end >= end && (entry.region->access() & access) == access) {
        lru_.splice(lru_.begin(), lru_, entry.lru);
        ++counters_.hits;
        return entry.region;
      }
    }
    ++counters_.misses;
    epoch = epoch_;
  }
  // Whole pages: neighbouring buffers of the same pages then share the entry. Registration
  // runs unlocked, so a hook firing meanwhile (from any thread) never waits for it.
  const uintptr_t page_start = start & ~(page_size() - 1);
  const uintptr_t page_end = (end + page_size() - 1) & ~(page_size() - 1);
  auto region =
      domain_->register_memory(reinterpret_cast<void*>(page_start), page_end - page_start, access);
  if (!region.is_ok()) return region.status();
  std::shared_ptr<verbs::MemoryRegion> registered = std::move(region).value();

  std::lock_guard lock(mutex_);
  if (epoch != epoch_) return registered;  // the memory may have changed: use once, uncached
  auto existing = entries_.find(page_start);
  if (existing != entries_.end()) {
    lru_.erase(existing->second.lru);
    entries_.erase(existing);
  }
  while (entries_.size() >= max_entries_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
    ++counters_.evictions;
  }
  lru_.push_front(page_start);
  longest_ = std::max(longest_, page_end - page_start);
  entries_.emplace(page_start, Entry{page_end, registered, lru_.begin()});
  return registered;
}

void RegistrationCache::invalidate(uintptr_t start, uintptr_t end) {
  std::lock_guard lock(mutex_);
  ++epoch_;
  // Entries start before `end`; those that also end after `start` overlap.
  auto it = entries_.lower_bound(end);
  while (it != entries_.begin()) {
    --it;
    // No entry is longer than longest_, so nothing starting this early reaches the range.
    if (it->first + longest_ <= start) break;
    if (it->second.end <= start) continue;
    lru_.erase(it->second.lru);
    it = entries_.erase(it);
    ++counters_.invalidations;
  }
}

RegistrationCache::Counters RegistrationCache::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

size_t RegistrationCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace wv::transport
