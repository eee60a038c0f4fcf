// The software SRQ: a locked receive queue plus the limit event.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "receive_queue.h"
#include "wv/spin_lock.h"
#include "wv/verbs/shared_receive_queue.h"

namespace wv::verbs::soft {

class Wire;

class SoftSharedReceiveQueue final : public SharedReceiveQueue {
 public:
  SoftSharedReceiveQueue(const void* domain, uint32_t max_wr, uint32_t max_sge, uint32_t limit)
      : domain_(domain), queue_(max_wr, max_sge), limit_(limit) {}

  Status post_receive(uint64_t wr_id, std::span<const Sge> sges) override;
  Status modify(uint32_t max_wr, uint32_t limit) override;
  Operation<void> notify_limit() override;
  SrqAttributes query() const override;

  // Engine side: takes the oldest receive, firing the limit event when the count drops below it.
  // When there is none, `starved` (a connection that will stall for want of a receive) is
  // remembered and told by the next post_receive, as a QP's own receive queue would.
  bool take(ReceiveWorkRequest& out, const std::shared_ptr<Wire>& starved = {});
  const void* domain() const { return domain_; }

 private:
  const void* domain_;
  mutable SpinLock mutex_;
  ReceiveQueue queue_;
  uint32_t limit_;
  Completer<void> limit_reached_;
  std::vector<std::weak_ptr<Wire>> starved_;
};

}  // namespace wv::verbs::soft
