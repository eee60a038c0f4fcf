// The slots of a work queue of `depth` requests, indexed by counters that only grow. The
// capacity is rounded up to a power of two so that an index finds its slot with a mask: the
// modulo by the depth was a 64-bit division on every post, transmit and retirement.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace wv::verbs::soft {

template <typename T>
class SlotRing {
 public:
  explicit SlotRing(uint32_t depth)
      : slots_(std::bit_ceil(std::max<uint32_t>(depth, 1))),
        mask_(slots_.size() - 1),
        depth_(depth) {}

  T& operator[](uint64_t index) { return slots_[index & mask_]; }
  const T& operator[](uint64_t index) const { return slots_[index & mask_]; }
  // The requests the queue holds at most (what the QP was created with).
  uint32_t depth() const { return depth_; }

 private:
  std::vector<T> slots_;
  uint64_t mask_;
  uint32_t depth_;
};

}  // namespace wv::verbs::soft
