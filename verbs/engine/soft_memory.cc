#include "soft_memory.h"

namespace wv::verbs::soft {

SoftMemoryRegion::~SoftMemoryRegion() {
  device_->keys().remove(detail::RegionAccess::local_key(*this));
  if (remote_key() != detail::RegionAccess::local_key(*this)) device_->keys().remove(remote_key());
}

SoftMemoryWindow::~SoftMemoryWindow() {
  if (const uint32_t key = key_.load(); key != 0) device_->keys().remove(key);
}

uint32_t SoftMemoryWindow::reserve_key() {
  // A placeholder entry nobody can use (no access, no bytes) holds the key until the bind runs.
  KeyEntry placeholder;
  placeholder.kind = KeyKind::kWindow;
  placeholder.protection_domain = domain_;
  return device_->keys().add(placeholder, key_.load());
}

void SoftMemoryWindow::bind(uint64_t address, uint64_t length, Access access, uint32_t qp_number,
                            uint32_t new_key) {
  const uint32_t old_key = key_.exchange(0);
  if (old_key != 0) device_->keys().remove(old_key);
  if (length == 0) return;  // a zero-length bind unbinds a type 1 window
  KeyEntry entry;
  entry.kind = KeyKind::kWindow;
  entry.address = address;
  entry.length = length;
  entry.access = access;
  entry.protection_domain = domain_;
  entry.bound_qp = type() == MemoryWindowType::kType2 ? qp_number : 0;
  entry.invalidatable = type() == MemoryWindowType::kType2;
  // Re-insert under the key promised at post time.
  device_->keys().insert(new_key, entry);
  key_.store(new_key, std::memory_order_release);
}

}  // namespace wv::verbs::soft
