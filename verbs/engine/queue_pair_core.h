// What connected and datagram software QPs share: the domain, the CQs, the receive side (the
// QP's own queue or an SRQ), number and context, and the parts of posting and failing that do
// not depend on the QP kind. The owning QP holds its own lock around the *_locked calls.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "receive_queue.h"
#include "work_request.h"
#include "wv/verbs/queue_pair.h"

namespace wv::verbs::soft {

class SoftCompletionQueue;
class SoftDevice;
class SoftProtectionDomain;
class SoftSharedReceiveQueue;
class Wire;

class QueuePairCore {
 public:
  QueuePairCore(std::shared_ptr<SoftProtectionDomain> domain, const QueuePairOptions& options,
                uint32_t number, uint32_t max_inline);

  SoftDevice& device() const;
  const void* domain() const;
  uint32_t number() const { return number_; }
  void* context() const { return context_; }
  uint32_t send_sge() const { return send_sge_; }
  uint32_t max_inline() const { return max_inline_; }
  SoftCompletionQueue& send_cq() const { return *send_cq_; }
  SoftCompletionQueue& receive_cq() const { return *receive_cq_; }
  bool signaled(SendFlags flags) const { return signal_all_ || has(flags, SendFlags::kSignaled); }

  // A completion of this QP, with the fields every completion carries filled in.
  Completion completion(uint64_t wr_id, Opcode opcode, CompletionStatus status) const {
    Completion completion;
    completion.wr_id = wr_id;
    completion.qp_context = context_;
    completion.qp_number = number_;
    completion.opcode = opcode;
    completion.status = status;
    return completion;
  }

  // The payload of a send-queue request: copied into `inline_data` (kInline) or validated as
  // segments of registered memory with `local_access`.
  Status gather(std::span<const Sge> sges, SendFlags flags, Access local_access, Segment* segments,
                std::byte* inline_data, uint32_t* count, uint64_t* length) const;

  // Receive side. A receive posted while the QP is in error completes at once, flushed.
  Status post_receive_locked(uint64_t wr_id, std::span<const Sge> sges, QpState state);
  // From the SRQ when there is one; then a `starved` wire is woken by the SRQ's next post.
  bool take_receive_locked(ReceiveWorkRequest& out, const std::shared_ptr<Wire>& starved = {});
  bool has_receive_locked() const;
  void flush_receives_locked();
  // Reset discards queued receives without completions, as in verbs.
  void discard_receives_locked();
  void fill_receive_attributes(QpAttributes& attributes) const;
  bool uses_srq() const { return srq_ != nullptr; }

  void raise_fatal_event(std::string_view reason) const;

 private:
  std::shared_ptr<SoftProtectionDomain> domain_;
  std::shared_ptr<SoftCompletionQueue> send_cq_;
  std::shared_ptr<SoftCompletionQueue> receive_cq_;
  std::shared_ptr<SoftSharedReceiveQueue> srq_;
  const uint32_t number_;
  void* const context_;
  const uint32_t send_sge_;
  const uint32_t max_inline_;
  const bool signal_all_;
  ReceiveQueue receive_queue_;
};

}  // namespace wv::verbs::soft
