// The device's table of memory keys (regions and windows), shared by every software provider.
//
// Keys are random 32-bit values drawn from the kernel's generator, so a peer cannot guess a
// key it was not given; a lookup checks the protection domain, the QP a type 2 window is bound
// to, the access right and the bounds, and says which check failed.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <unordered_map>

#include "wv/result.h"
#include "wv/verbs/types.h"

namespace wv::verbs::soft {

enum class KeyKind : uint8_t { kRegion, kWindow };

struct KeyEntry {
  KeyKind kind = KeyKind::kRegion;
  uint64_t address = 0;
  uint64_t length = 0;
  Access access = Access::kNone;
  const void* protection_domain = nullptr;
  uint32_t bound_qp = 0;  // type 2 windows: the only QP that may use the key; 0 = any
  // A region from allocate_memory: its memfd (HostMemory), open while the key exists, which
  // maps `address` at offset 0; -1 otherwise.
  int shared_fd = -1;
  bool invalidatable = false;
};

enum class KeyCheck : uint8_t { kOk, kInvalidKey, kWrongDomain, kWrongQp, kAccess, kBounds };
std::string_view to_string(KeyCheck check);

// Told of every change to the table, in order, under its lock (so one call at a time): a
// provider that publishes the keys to its peers (the shm provider's KeyMirror). `entry` is null
// when the key went away.
class KeyListener {
 public:
  virtual ~KeyListener() = default;
  virtual void key_changed(uint32_t key, const KeyEntry* entry) = 0;
};

class KeyTable {
 public:
  // Installs `listener` (replacing any other) and tells it every key the table holds now.
  void set_listener(std::shared_ptr<KeyListener> listener);
  std::shared_ptr<KeyListener> listener() const;
  // Adds an entry under a fresh random key; `avoid` keeps a re-bound window from reusing its key.
  uint32_t add(const KeyEntry& entry, uint32_t avoid = 0);
  // Stores `entry` under a key handed out earlier by add() (a reserved window key).
  void insert(uint32_t key, const KeyEntry& entry);
  void remove(uint32_t key);
  // Invalidates a window key (remote send-with-invalidate or local invalidate).
  KeyCheck invalidate(uint32_t key, const void* protection_domain, uint32_t qp_number);
  // Checks [address, address + length) against `key` for `access` and returns the host pointer.
  KeyCheck resolve(uint32_t key, uint64_t address, uint64_t length, Access access,
                   const void* protection_domain, uint32_t qp_number, void** host) const;

 private:
  void changed_locked(uint32_t key, const KeyEntry* entry) const {
    if (listener_) listener_->key_changed(key, entry);
  }

  mutable std::shared_mutex mutex_;
  std::unordered_map<uint32_t, KeyEntry> entries_;
  std::shared_ptr<KeyListener> listener_;
};

}  // namespace wv::verbs::soft
