// A bounded FIFO of receive work requests: a QP's own receive queue, or the heart of an SRQ.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "work_request.h"
#include "wv/result.h"
#include "wv/verbs/types.h"

namespace wv::verbs::soft {

class ReceiveQueue {
 public:
  ReceiveQueue(uint32_t depth, uint32_t max_sge) : ring_(depth), max_sge_(max_sge) {}

  // Checks the buffers (domain, bounds, local write access) and queues the request.
  Status post(uint64_t wr_id, std::span<const Sge> sges, const void* domain);
  bool take(ReceiveWorkRequest& out);
  // Drains every queued request (for flushing).
  template <typename F>
  void drain(F&& each) {
    ReceiveWorkRequest request;
    while (take(request)) each(request);
  }
  uint32_t size() const { return count_; }
  uint32_t depth() const { return static_cast<uint32_t>(ring_.size()); }
  uint32_t max_sge() const { return max_sge_; }
  Status grow(uint32_t depth);

 private:
  std::vector<ReceiveWorkRequest> ring_;
  uint32_t head_ = 0;
  uint32_t count_ = 0;
  uint32_t max_sge_;
};

// Validates a gather/scatter list against the QP's domain, turning it into plain segments.
// `access` is what the local memory must allow (kLocalWrite for anything written into).
Status validate_sges(std::span<const Sge> sges, uint32_t max_sge, const void* domain, Access access,
                     Segment* out, uint64_t* total);

}  // namespace wv::verbs::soft
