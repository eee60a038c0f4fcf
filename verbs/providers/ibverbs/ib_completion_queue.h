// A completion queue on an ibv_cq with its own completion channel.
//
// Each completion carries the QP's user context. libibverbs only gives the QP number, so the CQ
// keeps a table keyed by QP number. A QP being destroyed first moves its completions still in
// the device's queue into this CQ's software queue (translated with its own context) and only
// then leaves the table, so a later QP that reuses the number never inherits them.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ib_device.h"
#include "wv/spin_lock.h"
#include "wv/verbs/completion_queue.h"

namespace wv::verbs::ib {

class IbSharedReceiveQueue;

// What a QP shares with its CQs and its device. The provider tracks the QP's state itself:
// some devices (siw) report no state through ibv_query_qp, and a QP goes to kError on its own
// when an error completion is polled or an async QP event arrives.
struct QpShared {
  std::atomic<QpState> state{QpState::kReset};
  std::atomic<uint32_t> inbound_read_depth{0};  // as set when connected (iWARP: from rdma_cm)
  std::atomic<uint32_t> outbound_read_depth{0};
  std::atomic<int64_t> receives_posted{0};  // receives posted and not yet completed
};

// What the CQ needs to know about a QP whose completions it receives.
struct CqQpEntry {
  void* context = nullptr;
  uint32_t peer_qp_number = 0;  // reported as source_qp_number for connected receives
  bool datagram = false;        // receives start with a 40-byte GRH the API does not show
  IbSharedReceiveQueue* srq = nullptr;
  ibv_qp* qp = nullptr;
  std::shared_ptr<QpShared> shared;
  // This CQ takes the receive completions of a QP with its own receive queue; only those
  // (receive_only), or mixed with its sends.
  bool counts_receives = false;
  bool receive_only = false;
};

class IbCompletionQueue final : public CompletionQueue,
                                public std::enable_shared_from_this<IbCompletionQueue> {
 public:
  static Result<std::shared_ptr<IbCompletionQueue>> create(std::shared_ptr<IbDevice> device,
                                                           uint32_t entries);
  ~IbCompletionQueue() override;

  int poll(std::span<Completion> out) override;
  size_t peek() const override;
  Operation<void> notify(NotifyOn kind) override;
  Operation<void> batch_notify(size_t count) override;
  int notification_fd() override;
  Status resize(uint32_t entries) override;
  uint32_t capacity() const override;
  Status status() const override;

  ibv_cq* cq() const { return cq_; }
  void add_qp(uint32_t qp_number, const CqQpEntry& entry);
  void set_peer(uint32_t qp_number, uint32_t peer_qp_number);
  // Moves the QP's queued completions to the software queue, then forgets the QP.
  void remove_qp(uint32_t qp_number);
  // A completion made in software (a work request flushed at post time).
  void push(const Completion& completion);
  void on_overrun(std::string why);

 private:
  IbCompletionQueue(std::shared_ptr<IbDevice> device, ibv_comp_channel* channel, uint32_t entries)
      : device_(std::move(device)), channel_(channel), capacity_(entries) {}
  // Both with lock_ held.
  void translate(const ibv_wc& wc, Completion& out) const;
  void drain_locked() const;
  void on_channel_readable();

  std::shared_ptr<IbDevice> device_;
  ibv_comp_channel* channel_;
  ibv_cq* cq_ = nullptr;
  // Held for a poll's few dozen instructions; the event loop's notification path is the only
  // other regular taker, so a contended wait is rare and short.
  mutable SpinLock lock_;
  uint32_t capacity_;
  mutable std::deque<Completion> queued_;  // drained from the device or made in software
  mutable Status status_;
  std::unordered_map<uint32_t, CqQpEntry> qps_;
  // The QP of the last completion: completions come in runs from one QP, and the hash lookup
  // is a third of translate()'s cost. Elements of an unordered_map keep their address until
  // erased, so only remove_qp() clears it.
  mutable const CqQpEntry* last_entry_ = nullptr;
  mutable uint32_t last_qp_number_ = 0;
  std::vector<std::pair<NotifyOn, Completer<void>>> waiters_;
  int event_fd_ = -1;
};

}  // namespace wv::verbs::ib
