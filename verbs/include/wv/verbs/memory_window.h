// A memory window: a remotely accessible view of part of a region, bound and unbound through a
// QP's send queue so that access can be granted and revoked cheaply and in order with traffic.
// Type 1 windows are unbound by binding them again with zero length; type 2 windows are bound
// to one QP and invalidated by a local invalidate or the peer's send-with-invalidate.
#pragma once

#include <cstdint>

#include "wv/verbs/types.h"

namespace wv::verbs {

class MemoryWindow {
 public:
  MemoryWindow(const MemoryWindow&) = delete;
  MemoryWindow& operator=(const MemoryWindow&) = delete;
  virtual ~MemoryWindow() = default;

  MemoryWindowType type() const { return type_; }
  // The key of the current binding; changes with every bind. 0 while unbound.
  virtual uint32_t remote_key() const = 0;

 protected:
  explicit MemoryWindow(MemoryWindowType type) : type_(type) {}

 private:
  MemoryWindowType type_;
};

}  // namespace wv::verbs
