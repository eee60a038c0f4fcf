#include "queue_pair_core.h"

#include <cstring>
#include <string>

#include "soft_completion_queue.h"
#include "soft_device.h"
#include "soft_protection_domain.h"
#include "soft_shared_receive_queue.h"

namespace wv::verbs::soft {

QueuePairCore::QueuePairCore(std::shared_ptr<SoftProtectionDomain> domain,
                             const QueuePairOptions& options, uint32_t number, uint32_t max_inline)
    : domain_(std::move(domain)),
      send_cq_(std::static_pointer_cast<SoftCompletionQueue>(options.send_cq)),
      receive_cq_(std::static_pointer_cast<SoftCompletionQueue>(options.receive_cq)),
      srq_(std::static_pointer_cast<SoftSharedReceiveQueue>(options.srq)),
      number_(number),
      context_(options.context),
      send_sge_(options.send_sge),
      max_inline_(max_inline),
      signal_all_(options.signal_all_sends),
      receive_queue_(options.srq ? 1 : options.receive_depth, options.receive_sge) {}

SoftDevice& QueuePairCore::device() const {
  return *domain_->device();
}

const void* QueuePairCore::domain() const {
  return domain_.get();
}

Status QueuePairCore::gather(std::span<const Sge> sges, SendFlags flags, Access local_access,
                             Segment* segments, std::byte* inline_data, uint32_t* count,
                             uint64_t* length) const {
  if (!has(flags, SendFlags::kInline)) {
    Status status = validate_sges(sges, send_sge_, domain_.get(), local_access, segments, length);
    if (status) *count = static_cast<uint32_t>(sges.size());
    return status;
  }
  uint64_t total = 0;
  for (const Sge& sge : sges) total += sge.length;
  if (total > max_inline_) {
    return Status(Errc::kInvalidArgument, "inline send of " + std::to_string(total) +
                                              " bytes exceeds the QP's inline limit " +
                                              std::to_string(max_inline_));
  }
  std::byte* to = inline_data;
  for (const Sge& sge : sges) {
    if (sge.length == 0) continue;
    std::memcpy(to, sge.address, sge.length);
    to += sge.length;
  }
  segments[0] = Segment{inline_data, static_cast<uint32_t>(total)};
  *count = total == 0 ? 0 : 1;
  *length = total;
  return Status::ok();
}

Status QueuePairCore::post_receive_locked(uint64_t wr_id, std::span<const Sge> sges,
                                          QpState state) {
  if (srq_) {
    return Status(Errc::kInvalidState, "QP " + std::to_string(number_) +
                                           " uses a shared receive queue; post receives there");
  }
  if (state == QpState::kReset) {
    return Status(Errc::kInvalidState, "QP " + std::to_string(number_) + " is in reset");
  }
  Status status = receive_queue_.post(wr_id, sges, domain_.get());
  if (!status || state != QpState::kError) return status;
  flush_receives_locked();
  return Status::ok();
}

bool QueuePairCore::take_receive_locked(ReceiveWorkRequest& out,
                                        const std::shared_ptr<Wire>& starved) {
  return srq_ ? srq_->take(out, starved) : receive_queue_.take(out);
}

bool QueuePairCore::has_receive_locked() const {
  return srq_ ? srq_->query().posted > 0 : receive_queue_.size() > 0;
}

void QueuePairCore::flush_receives_locked() {
  if (srq_) return;  // an SRQ outlives any one of its QPs
  receive_queue_.drain([&](const ReceiveWorkRequest& request) {
    receive_cq_->push(completion(request.wr_id, Opcode::kReceive, CompletionStatus::kFlushed),
                      false);
  });
}

void QueuePairCore::discard_receives_locked() {
  if (!srq_) receive_queue_.drain([](const ReceiveWorkRequest&) {});
}

void QueuePairCore::fill_receive_attributes(QpAttributes& attributes) const {
  attributes.qp_number = number_;
  attributes.receive_depth = srq_ ? 0 : receive_queue_.depth();
  attributes.send_sge = send_sge_;
  attributes.receive_sge = receive_queue_.max_sge();
  attributes.max_inline = max_inline_;
}

void QueuePairCore::raise_fatal_event(std::string_view reason) const {
  DeviceEvent event;
  event.type = EventType::kQpFatal;
  event.port = 1;
  event.context = context_;
  event.qp_number = number_;
  event.detail = std::string(reason);
  device().raise_event(std::move(event));
}

}  // namespace wv::verbs::soft
