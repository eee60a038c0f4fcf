// The software datagram (UD) QP: verbs semantics for unreliable datagrams, independent of the
// wire that carries them (a DatagramWire of the provider).
//
// - Created in kReadyToSend: our API gives a UD QP no address to be moved through
//   init/ready-to-receive/ready-to-send with, so it starts usable. After a reset the
//   application moves it kReset -> kInit -> kReadyToReceive -> kReadyToSend itself.
// - One datagram is at most the wire's max_payload() (the port MTU): a longer send is refused
//   at post. A datagram longer than the receive's buffers completes that receive with
//   kLocalLengthError; the QP stays usable (a UD QP has no connection to lose).
// - A receive completion's length is the payload only: this API has no 40-byte GRH in front.
// - Q_Key: a datagram whose Q_Key differs from the QP's is dropped without a completion; a send
//   whose qkey has the high bit set uses the QP's own Q_Key (the verbs rule).
// - A send completes once the wire took the datagram (handed to the kernel); nothing tells the
//   sender whether it arrived. A datagram for a QP with no receive posted is dropped.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "datagram_wire.h"
#include "queue_pair_core.h"
#include "slot_ring.h"
#include "work_request.h"
#include "wv/verbs/queue_pair.h"

namespace wv::verbs::soft {

class SoftCompletionQueue;
class SoftDevice;
class SoftProtectionDomain;
class SoftSharedReceiveQueue;

class SoftDatagramQueuePair final : public DatagramQueuePair, public DatagramReceiver {
 public:
  SoftDatagramQueuePair(std::shared_ptr<SoftProtectionDomain> domain,
                        std::shared_ptr<DatagramWire> wire, const QueuePairOptions& options,
                        uint32_t number, uint32_t qkey, uint32_t max_inline);
  ~SoftDatagramQueuePair() override;

  // Registers the QP with the wire; called once, right after construction.
  Status start();

  uint32_t number() const override { return core_.number(); }
  void* context() const override { return core_.context(); }
  Status post_receive(uint64_t wr_id, std::span<const Sge> sges) override;
  QpAttributes query() const override;
  Status modify(QpState state) override;

  Status send(uint64_t wr_id, std::span<const Sge> sges, const AddressHandle& destination,
              uint32_t remote_qp_number, uint32_t qkey, SendFlags flags) override;
  Status send_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                             const AddressHandle& destination, uint32_t remote_qp_number,
                             uint32_t qkey, uint32_t immediate, SendFlags flags) override;
  Status attach_multicast(const Gid& group, uint16_t lid) override;
  Status detach_multicast(const Gid& group, uint16_t lid) override;

  // ---- The wire's side (progress thread) ----
  DeliverResult deliver(const DatagramHeader& header, std::span<const std::byte> payload) override;
  void resume_sends() override;

  SoftDevice& device() const;
  uint32_t qkey() const { return qkey_; }

 private:
  // One send-queue slot: everything needed to (re)transmit without the caller's objects.
  struct Request {
    uint64_t wr_id = 0;
    bool signaled = false;
    DatagramHeader header;
    WireAddress destination;
    uint32_t segment_count = 0;
    std::array<Segment, kMaxSge> segments{};
    std::array<std::byte, kMaxInline> inline_data{};
  };

  Status post(uint64_t wr_id, std::span<const Sge> sges, const AddressHandle& destination,
              uint32_t remote_qp_number, uint32_t qkey, bool has_immediate, uint32_t immediate,
              SendFlags flags);
  Request& slot(uint64_t index) { return send_queue_[index]; }
  // Hands queued datagrams to the wire while the QP may send and the wire takes them.
  void transmit_locked();
  void push_send_completion_locked(const Request& request, CompletionStatus status,
                                   uint32_t vendor_error);
  void fail_locked(CompletionStatus status, std::string_view reason, bool raise_event);
  bool receives_locked() const;

  QueuePairCore core_;
  const std::shared_ptr<DatagramWire> wire_;
  const uint32_t qkey_;
  bool attached_ = false;

  mutable std::mutex mutex_;
  QpState state_ = QpState::kReadyToSend;
  SlotRing<Request> send_queue_;
  uint64_t head_ = 0;  // oldest datagram not yet taken by the wire
  uint64_t tail_ = 0;  // next free slot
  bool waiting_writable_ = false;
};

}  // namespace wv::verbs::soft
