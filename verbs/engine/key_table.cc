#include "key_table.h"

#include <sys/random.h>

#include <mutex>
#include <random>

namespace wv::verbs::soft {
namespace {

uint32_t random_key() {
  uint32_t key = 0;
  // getrandom never returns short for 4 bytes once the pool is initialised; fall back to
  // random_device (also the kernel's generator) if the call is unavailable.
  if (::getrandom(&key, sizeof(key), 0) != sizeof(key)) key = std::random_device{}();
  return key;
}

}  // namespace

std::string_view to_string(KeyCheck check) {
  switch (check) {
    case KeyCheck::kOk:
      return "ok";
    case KeyCheck::kInvalidKey:
      return "no such key";
    case KeyCheck::kWrongDomain:
      return "key belongs to another protection domain";
    case KeyCheck::kWrongQp:
      return "window is bound to another QP";
    case KeyCheck::kAccess:
      return "key does not grant the access";
    case KeyCheck::kBounds:
      return "range lies outside the key's memory";
  }
  return "unknown";
}

void KeyTable::set_listener(std::shared_ptr<KeyListener> listener) {
  std::unique_lock lock(mutex_);
  listener_ = std::move(listener);
  for (const auto& [key, entry] : entries_) changed_locked(key, &entry);
}

std::shared_ptr<KeyListener> KeyTable::listener() const {
  std::shared_lock lock(mutex_);
  return listener_;
}

uint32_t KeyTable::add(const KeyEntry& entry, uint32_t avoid) {
  std::unique_lock lock(mutex_);
  for (;;) {
    const uint32_t key = random_key();
    // 0 means "no key" throughout the API.
    if (key == 0 || key == avoid || entries_.contains(key)) continue;
    entries_.emplace(key, entry);
    changed_locked(key, &entry);
    return key;
  }
}

void KeyTable::insert(uint32_t key, const KeyEntry& entry) {
  std::unique_lock lock(mutex_);
  entries_[key] = entry;
  changed_locked(key, &entry);
}

void KeyTable::remove(uint32_t key) {
  std::unique_lock lock(mutex_);
  if (entries_.erase(key) != 0) changed_locked(key, nullptr);
}

KeyCheck KeyTable::invalidate(uint32_t key, const void* protection_domain, uint32_t qp_number) {
  std::unique_lock lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return KeyCheck::kInvalidKey;
  if (it->second.protection_domain != protection_domain) return KeyCheck::kWrongDomain;
  if (!it->second.invalidatable) return KeyCheck::kAccess;
  if (it->second.bound_qp != 0 && it->second.bound_qp != qp_number) return KeyCheck::kWrongQp;
  entries_.erase(it);
  changed_locked(key, nullptr);
  return KeyCheck::kOk;
}

KeyCheck KeyTable::resolve(uint32_t key, uint64_t address, uint64_t length, Access access,
                           const void* protection_domain, uint32_t qp_number, void** host) const {
  std::shared_lock lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return KeyCheck::kInvalidKey;
  const KeyEntry& entry = it->second;
  if (entry.protection_domain != protection_domain) return KeyCheck::kWrongDomain;
  if (entry.bound_qp != 0 && entry.bound_qp != qp_number) return KeyCheck::kWrongQp;
  if (!has(entry.access, access)) return KeyCheck::kAccess;
  // Written to avoid overflow: address + length may wrap for hostile input.
  if (address < entry.address || length > entry.length ||
      address - entry.address > entry.length - length) {
    return KeyCheck::kBounds;
  }
  *host = reinterpret_cast<void*>(address);
  return KeyCheck::kOk;
}

}  // namespace wv::verbs::soft
