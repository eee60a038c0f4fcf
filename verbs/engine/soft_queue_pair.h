// The software connected QP: verbs semantics (validation, state machine, ordering, fences,
// read depth, completions, flushing) in one place, independent of the wire that carries it.
//
// A Wire (one per connection; tcp today, shm later) moves the bytes. The QP calls the wire
// with its lock held when new work may be transmitted; the wire calls back into the QP to pick
// the next request, to place incoming data and to report what finished.
#pragma once

#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "key_table.h"
#include "queue_pair_core.h"
#include "slot_ring.h"
#include "work_request.h"
#include "wv/spin_lock.h"
#include "wv/verbs/queue_pair.h"
#include "wv/verbs/remote_mapping.h"

namespace wv::verbs::soft {

class SoftCompletionQueue;
class SoftConnectQueuePair;
class SoftDevice;
class SoftProtectionDomain;
class SoftSharedReceiveQueue;

class Wire {
 public:
  virtual ~Wire() = default;
  // New work is queued on `qp`: transmit what may go now. Called with the QP lock held.
  virtual void kick_locked(SoftConnectQueuePair& qp) = 0;
  // A request posted while the QP has nothing outstanding: carry it out now, whole, if the wire
  // can complete it without waiting for anything (then it completes at once and skips the send
  // queue's bookkeeping: the latency path of a ping-pong). False leaves it to the queue and
  // kick_locked. Called with the QP lock held.
  virtual bool transmit_at_once_locked(SendWorkRequest& /*request*/) { return false; }
  // A receive was posted: a stream stalled for want of one (receiver not ready) may resume.
  virtual void receive_posted() = 0;
  // ConnectQueuePair::map_remote for a connected QP, called with the QP lock held; a wire that
  // cannot map the peer's memory says kNotSupported.
  virtual Result<std::unique_ptr<RemoteMapping>> map_remote_locked(RemoteAddress /*remote*/,
                                                                   uint64_t /*length*/,
                                                                   Access /*access*/) {
    return Status(Errc::kNotSupported, "this wire cannot map the peer's memory");
  }
  // The QP is done with the connection (error, disconnect, destruction). Idempotent; must not
  // call back into the QP.
  virtual void close() = 0;
};

class SoftConnectQueuePair final : public ConnectQueuePair {
 public:
  SoftConnectQueuePair(std::shared_ptr<SoftProtectionDomain> domain,
                       const QueuePairOptions& options, uint32_t number, uint32_t max_inline);
  ~SoftConnectQueuePair() override;

  uint32_t number() const override { return core_.number(); }
  void* context() const override { return core_.context(); }
  Status post_receive(uint64_t wr_id, std::span<const Sge> sges) override;
  QpAttributes query() const override;
  Status modify(QpState state) override;
  Result<OutOfBandAddress> out_of_band_address() override;
  Status connect_out_of_band(const OutOfBandAddress& peer,
                             const ConnectParameters& parameters) override;

  Status send(uint64_t wr_id, std::span<const Sge> sges, SendFlags flags) override;
  Status send_with_immediate(uint64_t wr_id, std::span<const Sge> sges, uint32_t immediate,
                             SendFlags flags) override;
  Status send_with_invalidate(uint64_t wr_id, std::span<const Sge> sges, uint32_t rkey,
                              SendFlags flags) override;
  Status rdma_write(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                    SendFlags flags) override;
  Status rdma_write_with_immediate(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                                   uint32_t immediate, SendFlags flags) override;
  Status rdma_read(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                   SendFlags flags) override;
  Status compare_and_swap(uint64_t wr_id, const Sge& result, RemoteAddress remote, uint64_t compare,
                          uint64_t swap, SendFlags flags) override;
  Status fetch_and_add(uint64_t wr_id, const Sge& result, RemoteAddress remote, uint64_t add,
                       SendFlags flags) override;
  Result<uint32_t> bind_memory_window(uint64_t wr_id, MemoryWindow& window,
                                      const MemoryRegion& region, void* address, uint64_t length,
                                      Access access, SendFlags flags) override;
  Status invalidate(uint64_t wr_id, uint32_t rkey, SendFlags flags) override;
  Result<std::unique_ptr<RemoteMapping>> map_remote(RemoteAddress remote, uint64_t length,
                                                    Access access) override;

  // ---- The wire's side ----
  SpinLock& mutex() { return mutex_; }
  SoftDevice& device() const;
  // The protection domain as the device's key table names it.
  const void* domain() const { return core_.domain(); }
  QpState state_locked() const { return state_; }
  uint32_t inbound_read_depth() const { return inbound_read_depth_; }
  SoftCompletionQueue& send_cq() const { return core_.send_cq(); }
  SoftCompletionQueue& receive_cq() const { return core_.receive_cq(); }
  // The connection is up: the QP moves to kReadyToSend with the negotiated read depths.
  Status connect_locked(std::shared_ptr<Wire> wire, uint32_t peer_qp_number,
                        uint32_t inbound_read_depth, uint32_t outbound_read_depth);

  // Requester: the next request to transmit, honouring fences and the outbound read depth.
  SendWorkRequest* next_to_transmit_locked();
  // All of `request` went out; sends and writes are complete now, reads wait for data, and a
  // write the target copies from this process itself (`held`: its source must stay untouched)
  // waits for write_copied_locked. Completions still leave in post order.
  void transmitted_locked(SendWorkRequest& request, bool held = false);
  void write_copied_locked(SendWorkRequest& request);
  // Requests are posted that have not gone out yet.
  bool more_to_transmit_locked() const { return next_tx_ < tail_; }
  // Whether the request about to go out is the only one: nothing queued behind it and no read
  // waiting for its response (a latency-bound exchange, not a stream).
  bool transmitting_alone_locked() const {
    return outstanding_reads_ == 0 && tail_ - next_tx_ == 1;
  }
  // The oldest transmitted read (or atomic) still waiting for its response.
  SendWorkRequest* oldest_pending_locked(bool atomic);
  void response_arrived_locked(SendWorkRequest& request, CompletionStatus status);

  // Responder (progress thread). No receive goes to a wire that is not the QP's connection.
  bool take_receive(const Wire& wire, ReceiveWorkRequest& out);
  bool has_receive() const;
  void complete_receive(const ReceiveWorkRequest& request, Opcode opcode, uint32_t length,
                        CompletionStatus status, CompletionFlags flags, uint32_t immediate,
                        uint32_t invalidated_key, bool solicited);
  KeyCheck resolve(uint32_t key, uint64_t address, uint64_t length, Access access,
                   void** host) const;
  KeyCheck invalidate_remote(uint32_t key);

  // Moves the QP to kError: the oldest unfinished send-queue request completes with `status`
  // (unless kFlushed), every other one and every queued receive with kFlushed. `reason`
  // becomes a kQpFatal device event when the error did not come from the application.
  void fail_locked(CompletionStatus status, std::string_view reason, bool raise_event = true);
  void fail(CompletionStatus status, std::string_view reason);
  // fail_locked on behalf of `wire`, only while it is the QP's connection: an old connection's
  // late news (its peer hung up after the QP was reset and connected again) has no say.
  void fail_by_wire_locked(const Wire& wire, CompletionStatus status, std::string_view reason);

 private:
  // Validates and queues one send-queue request; `fill` sets the kind-specific fields.
  template <typename Fill>
  Status post(WorkKind kind, uint64_t wr_id, std::span<const Sge> sges, SendFlags flags,
              Access local_access, Fill&& fill);
  SendWorkRequest& slot(uint64_t index) { return send_queue_[index]; }
  void retire_locked();
  void push_send_completion_locked(const SendWorkRequest& request);
  bool apply_local_locked(SendWorkRequest& request);

  QueuePairCore core_;

  mutable SpinLock mutex_;
  QpState state_ = QpState::kInit;
  std::shared_ptr<Wire> wire_;
  uint32_t peer_qp_number_ = 0;
  uint32_t inbound_read_depth_ = 0;
  uint32_t outbound_read_depth_ = 0;
  SlotRing<SendWorkRequest> send_queue_;
  uint64_t head_ = 0;     // oldest request not yet completed
  uint64_t next_tx_ = 0;  // next request to transmit
  uint64_t tail_ = 0;     // next free slot
  uint32_t outstanding_reads_ = 0;
};

}  // namespace wv::verbs::soft
