// Receive buffers shared by many QPs: receive memory that does not grow with the peer count.
// Attributes are plain parameters (the 2008 review): kUnchanged keeps a value as it is.
#pragma once

#include <cstdint>
#include <span>

#include "wv/verbs/operation.h"
#include "wv/verbs/types.h"

namespace wv::verbs {

struct SrqAttributes {
  uint32_t max_wr = 0;   // receives it can hold; never 0
  uint32_t max_sge = 0;  // scatter entries per receive; never 0
  uint32_t limit = 0;    // limit event threshold; 0 = disarmed
  uint32_t posted = 0;   // receives currently queued
};

class SharedReceiveQueue {
 public:
  static constexpr uint32_t kUnchanged = UINT32_MAX;

  SharedReceiveQueue(const SharedReceiveQueue&) = delete;
  SharedReceiveQueue& operator=(const SharedReceiveQueue&) = delete;
  virtual ~SharedReceiveQueue() = default;

  virtual Status post_receive(uint64_t wr_id, std::span<const Sge> sges) = 0;
  // Grows max_wr (kResize) and/or sets the limit; a non-zero limit arms the limit event.
  virtual Status modify(uint32_t max_wr, uint32_t limit) = 0;
  // Done when the number of posted receives falls below the armed limit; the limit then
  // disarms (set it again with modify). kInvalidState if no limit is armed.
  virtual Operation<void> notify_limit() = 0;
  virtual SrqAttributes query() const = 0;

 protected:
  SharedReceiveQueue() = default;
};

}  // namespace wv::verbs
