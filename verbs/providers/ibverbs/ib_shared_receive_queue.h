// A shared receive queue on an ibv_srq. The device's limit event (SRQ_LIMIT_REACHED) completes
// notify_limit(); the posted count is kept here because verbs cannot report it.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "wv/verbs/shared_receive_queue.h"

namespace wv::verbs::ib {

class IbProtectionDomain;

class IbSharedReceiveQueue final : public SharedReceiveQueue {
 public:
  IbSharedReceiveQueue(std::shared_ptr<IbProtectionDomain> domain, ibv_srq* srq, uint32_t max_wr,
                       uint32_t max_sge, uint32_t limit, uint32_t capacity)
      : domain_(std::move(domain)),
        srq_(srq),
        max_wr_(max_wr),
        max_sge_(max_sge),
        limit_(limit),
        capacity_(capacity) {}
  ~IbSharedReceiveQueue() override;

  Status post_receive(uint64_t wr_id, std::span<const Sge> sges) override;
  Status modify(uint32_t max_wr, uint32_t limit) override;
  Operation<void> notify_limit() override;
  SrqAttributes query() const override;

  ibv_srq* srq() const { return srq_; }
  // From the CQ: a receive of this SRQ completed.
  void on_consumed() { posted_.fetch_sub(1, std::memory_order_relaxed); }
  // From the device's async events.
  void on_limit_reached();

 private:
  std::shared_ptr<IbProtectionDomain> domain_;
  ibv_srq* srq_;
  mutable std::mutex mutex_;
  uint32_t max_wr_;
  uint32_t max_sge_;
  uint32_t limit_;
  uint32_t capacity_;  // what the device granted (at least max_wr_)
  std::atomic<int64_t> posted_{0};
  std::vector<Completer<void>> waiters_;
};

}  // namespace wv::verbs::ib
