#include "soft_datagram_queue_pair.h"

#include <cstring>
#include <string>

#include "soft_completion_queue.h"
#include "soft_device.h"
#include "soft_protection_domain.h"
#include "soft_shared_receive_queue.h"
#include "wv/verbs/address_handle.h"

namespace wv::verbs::soft {

namespace {
// Q_Keys with the high bit set are "controlled": in a send they mean "use the QP's own Q_Key".
constexpr uint32_t kControlledQkeyBit = 0x80000000u;
constexpr uint32_t kMaxQpNumber = 0xffffff;
}  // namespace

SoftDatagramQueuePair::SoftDatagramQueuePair(std::shared_ptr<SoftProtectionDomain> domain,
                                             std::shared_ptr<DatagramWire> wire,
                                             const QueuePairOptions& options, uint32_t number,
                                             uint32_t qkey, uint32_t max_inline)
    : core_(std::move(domain), options, number, max_inline),
      wire_(std::move(wire)),
      qkey_(qkey),
      send_queue_(options.send_depth) {}

SoftDatagramQueuePair::~SoftDatagramQueuePair() {
  // After detach the progress thread no longer delivers to (or resumes) this object.
  if (attached_) wire_->detach(core_.number());
}

Status SoftDatagramQueuePair::start() {
  Status status = wire_->attach(core_.number(), this);
  attached_ = status.is_ok();
  if (std::weak_ptr<ProgressSource> source = wire_->progress_source(); !source.expired()) {
    core_.send_cq().add_progress_source(source);
    if (&core_.receive_cq() != &core_.send_cq()) core_.receive_cq().add_progress_source(source);
  }
  return status;
}

SoftDevice& SoftDatagramQueuePair::device() const {
  return core_.device();
}

QpAttributes SoftDatagramQueuePair::query() const {
  std::lock_guard lock(mutex_);
  QpAttributes attributes;
  core_.fill_receive_attributes(attributes);
  attributes.state = state_;
  attributes.send_depth = static_cast<uint32_t>(send_queue_.depth());
  attributes.qkey = qkey_;
  return attributes;
}

Status SoftDatagramQueuePair::modify(QpState state) {
  std::lock_guard lock(mutex_);
  const QpState from = state_;
  const auto refuse = [&] {
    return Status(Errc::kInvalidState, "datagram QP " + std::to_string(core_.number()) +
                                           ": transition " + std::string(to_string(from)) + " -> " +
                                           std::string(to_string(state)) + " is not allowed");
  };
  switch (state) {
    case QpState::kError:
      fail_locked(CompletionStatus::kFlushed, "moved to error by the application", false);
      return Status::ok();
    case QpState::kReset:
      if (from != QpState::kError && from != QpState::kInit) return refuse();
      // Reset discards what is queued without completions, as in verbs.
      head_ = tail_ = 0;
      core_.discard_receives_locked();
      state_ = QpState::kReset;
      return Status::ok();
    case QpState::kInit:
      if (from != QpState::kReset) return refuse();
      state_ = QpState::kInit;
      return Status::ok();
    case QpState::kReadyToReceive:
      // No endpoint connects a UD QP, so after a reset the application walks it back up.
      if (from != QpState::kInit) return refuse();
      state_ = QpState::kReadyToReceive;
      return Status::ok();
    case QpState::kReadyToSend:
      if (from != QpState::kReadyToReceive && from != QpState::kSendQueueDrained) return refuse();
      state_ = QpState::kReadyToSend;
      transmit_locked();
      return Status::ok();
    case QpState::kSendQueueDrained:
      if (from != QpState::kReadyToSend) return refuse();
      state_ = QpState::kSendQueueDrained;
      return Status::ok();
  }
  return refuse();
}

// ---- Receive side ----

Status SoftDatagramQueuePair::post_receive(uint64_t wr_id, std::span<const Sge> sges) {
  std::lock_guard lock(mutex_);
  return core_.post_receive_locked(wr_id, sges, state_);
}

bool SoftDatagramQueuePair::receives_locked() const {
  return state_ == QpState::kReadyToReceive || state_ == QpState::kReadyToSend ||
         state_ == QpState::kSendQueueDrained;
}

DeliverResult SoftDatagramQueuePair::deliver(const DatagramHeader& header,
                                             std::span<const std::byte> payload) {
  std::lock_guard lock(mutex_);
  if (!receives_locked()) return DeliverResult::kNotReady;
  if (header.qkey != qkey_) return DeliverResult::kQkeyMismatch;
  ReceiveWorkRequest request;
  if (!core_.take_receive_locked(request)) return DeliverResult::kNoReceive;
  Completion completion =
      core_.completion(request.wr_id, Opcode::kReceive, CompletionStatus::kSuccess);
  completion.source_qp_number = header.source_qp_number;
  if (payload.size() > request.capacity) {
    // Too long for the buffers: the receive is consumed with an error, but a UD QP has no
    // connection whose state this could corrupt, so the QP keeps working.
    completion.status = CompletionStatus::kLocalLengthError;
    completion.vendor_error = static_cast<uint32_t>(payload.size());
  } else {
    scatter(request.segments.data(), request.segment_count, 0, payload.data(), payload.size());
    completion.length = static_cast<uint32_t>(payload.size());
    if (header.has_immediate) {
      completion.flags = CompletionFlags::kWithImmediate;
      completion.immediate = header.immediate;
    }
  }
  if (!core_.receive_cq().push(completion, header.solicited)) {
    fail_locked(CompletionStatus::kFatal, "receive completion queue overrun", true);
  }
  return DeliverResult::kDelivered;
}

// ---- Send side ----

Status SoftDatagramQueuePair::post(uint64_t wr_id, std::span<const Sge> sges,
                                   const AddressHandle& destination, uint32_t remote_qp_number,
                                   uint32_t qkey, bool has_immediate, uint32_t immediate,
                                   SendFlags flags) {
  if (remote_qp_number > kMaxQpNumber) {
    return Status(Errc::kInvalidArgument, "remote QP number " + std::to_string(remote_qp_number) +
                                              " is not a 24-bit QP number");
  }
  const uint32_t max_payload = wire_->max_payload();
  std::lock_guard lock(mutex_);
  if (state_ != QpState::kReadyToSend && state_ != QpState::kError) {
    return Status(Errc::kInvalidState, "QP " + std::to_string(core_.number()) + " is in state " +
                                           std::string(to_string(state_)) +
                                           "; the send queue needs ready-to-send");
  }
  if (tail_ - head_ == send_queue_.depth()) {
    return Status(Errc::kQueueFull,
                  "send queue full (" + std::to_string(send_queue_.depth()) + " requests)");
  }
  Request& request = slot(tail_);
  uint64_t total = 0;
  if (Status status = core_.gather(sges, flags, Access::kNone, request.segments.data(),
                                   request.inline_data.data(), &request.segment_count, &total);
      !status) {
    return status;
  }
  if (total > max_payload) {
    return Status(Errc::kInvalidArgument, "datagram of " + std::to_string(total) +
                                              " bytes exceeds the port MTU of " +
                                              std::to_string(max_payload) + " bytes");
  }
  if (Status status = wire_->resolve(destination.address_vector(), request.destination); !status) {
    return status;
  }
  request.wr_id = wr_id;
  request.signaled = core_.signaled(flags);
  request.header.source_qp_number = core_.number();
  request.header.destination_qp_number = remote_qp_number;
  request.header.qkey = (qkey & kControlledQkeyBit) != 0 ? qkey_ : qkey;
  request.header.has_immediate = has_immediate;
  request.header.immediate = has_immediate ? immediate : 0;
  request.header.solicited = has(flags, SendFlags::kSolicited);
  ++tail_;
  if (state_ == QpState::kError) {
    ++head_;
    push_send_completion_locked(request, CompletionStatus::kFlushed, 0);
  } else {
    transmit_locked();
  }
  return Status::ok();
}

Status SoftDatagramQueuePair::send(uint64_t wr_id, std::span<const Sge> sges,
                                   const AddressHandle& destination, uint32_t remote_qp_number,
                                   uint32_t qkey, SendFlags flags) {
  return post(wr_id, sges, destination, remote_qp_number, qkey, false, 0, flags);
}

Status SoftDatagramQueuePair::send_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                                  const AddressHandle& destination,
                                                  uint32_t remote_qp_number, uint32_t qkey,
                                                  uint32_t immediate, SendFlags flags) {
  return post(wr_id, sges, destination, remote_qp_number, qkey, true, immediate, flags);
}

void SoftDatagramQueuePair::transmit_locked() {
  while (head_ != tail_ && state_ == QpState::kReadyToSend) {
    Request& request = slot(head_);
    int error = 0;
    const SendResult result = wire_->send(
        request.destination, request.header,
        std::span<const Segment>(request.segments.data(), request.segment_count), error);
    if (result == SendResult::kWouldBlock) {
      // The socket is full: keep the datagram queued (in order) until the wire resumes us.
      if (!waiting_writable_) {
        waiting_writable_ = true;
        wire_->wait_writable(core_.number());
      }
      return;
    }
    ++head_;
    // A datagram the network refused is lost like one dropped on the way: the send succeeded
    // as far as UD can tell. vendor_error keeps the errno for logs.
    if (request.signaled) {
      push_send_completion_locked(request, CompletionStatus::kSuccess,
                                  result == SendResult::kLost ? static_cast<uint32_t>(error) : 0);
    }
  }
}

void SoftDatagramQueuePair::resume_sends() {
  std::lock_guard lock(mutex_);
  waiting_writable_ = false;
  transmit_locked();
}

void SoftDatagramQueuePair::push_send_completion_locked(const Request& request,
                                                        CompletionStatus status,
                                                        uint32_t vendor_error) {
  Completion completion = core_.completion(request.wr_id, Opcode::kSend, status);
  completion.vendor_error = vendor_error;
  if (!core_.send_cq().push(completion, false) && state_ != QpState::kError) {
    fail_locked(CompletionStatus::kFatal, "send completion queue overrun", true);
  }
}

void SoftDatagramQueuePair::fail_locked(CompletionStatus, std::string_view reason,
                                        bool raise_event) {
  if (state_ == QpState::kError) return;
  state_ = QpState::kError;
  // Nothing was half sent (a datagram goes whole or not at all): all that waits is flushed.
  while (head_ != tail_) {
    const Request& request = slot(head_);
    ++head_;
    push_send_completion_locked(request, CompletionStatus::kFlushed, 0);
  }
  core_.flush_receives_locked();
  if (raise_event) core_.raise_fatal_event(reason);
}

// ---- Multicast ----

Status SoftDatagramQueuePair::attach_multicast(const Gid& group, uint16_t) {
  // The LID is InfiniBand routing; IP-based wires find the group by its address alone.
  if (!is_multicast_group(group)) {
    return Status(Errc::kInvalidArgument,
                  "GID " + to_string(group) + " is not a multicast group address");
  }
  return wire_->attach_multicast(group, core_.number());
}

Status SoftDatagramQueuePair::detach_multicast(const Gid& group, uint16_t) {
  if (!is_multicast_group(group)) {
    return Status(Errc::kInvalidArgument,
                  "GID " + to_string(group) + " is not a multicast group address");
  }
  return wire_->detach_multicast(group, core_.number());
}

}  // namespace wv::verbs::soft
