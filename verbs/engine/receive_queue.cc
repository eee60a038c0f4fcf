#include "receive_queue.h"

#include <algorithm>
#include <string>

#include "wv/verbs/memory_region.h"

namespace wv::verbs::soft {

Status validate_sges(std::span<const Sge> sges, uint32_t max_sge, const void* domain, Access access,
                     Segment* out, uint64_t* total) {
  if (sges.size() > max_sge) {
    return Status(Errc::kInvalidArgument, std::to_string(sges.size()) +
                                              " scatter/gather entries exceed the QP's " +
                                              std::to_string(max_sge));
  }
  uint64_t sum = 0;
  for (size_t i = 0; i < sges.size(); ++i) {
    const Sge& sge = sges[i];
    if (sge.region == nullptr) {
      return Status(Errc::kInvalidArgument,
                    "scatter/gather entry " + std::to_string(i) + " names no memory region");
    }
    if (detail::RegionAccess::domain(*sge.region) != domain) {
      return Status(Errc::kPermissionDenied, "scatter/gather entry " + std::to_string(i) +
                                                 " uses a region of another protection domain");
    }
    const auto* base = static_cast<const std::byte*>(sge.region->address());
    const auto* at = static_cast<const std::byte*>(sge.address);
    if (at < base || sge.length > sge.region->length() ||
        static_cast<size_t>(at - base) > sge.region->length() - sge.length) {
      return Status(Errc::kPermissionDenied, "scatter/gather entry " + std::to_string(i) +
                                                 " lies outside its memory region");
    }
    if (access != Access::kNone && !has(sge.region->access(), access)) {
      return Status(Errc::kPermissionDenied, "scatter/gather entry " + std::to_string(i) +
                                                 ": region lacks local write access");
    }
    out[i] = Segment{static_cast<std::byte*>(sge.address), sge.length};
    sum += sge.length;
  }
  *total = sum;
  return Status::ok();
}

Status ReceiveQueue::post(uint64_t wr_id, std::span<const Sge> sges, const void* domain) {
  if (count_ == ring_.size()) {
    return Status(Errc::kQueueFull,
                  "receive queue full (" + std::to_string(ring_.size()) + " requests)");
  }
  uint32_t tail = head_ + count_;
  if (tail >= ring_.size()) tail -= static_cast<uint32_t>(ring_.size());
  ReceiveWorkRequest& request = ring_[tail];
  Status status = validate_sges(sges, max_sge_, domain, Access::kLocalWrite,
                                request.segments.data(), &request.capacity);
  if (!status) return status;
  request.wr_id = wr_id;
  request.segment_count = static_cast<uint32_t>(sges.size());
  ++count_;
  return Status::ok();
}

bool ReceiveQueue::take(ReceiveWorkRequest& out) {
  if (count_ == 0) return false;
  const ReceiveWorkRequest& request = ring_[head_];
  out.wr_id = request.wr_id;
  out.segment_count = request.segment_count;
  out.capacity = request.capacity;
  std::copy_n(request.segments.begin(), request.segment_count, out.segments.begin());
  head_ = head_ + 1 == ring_.size() ? 0 : head_ + 1;
  --count_;
  return true;
}

Status ReceiveQueue::grow(uint32_t depth) {
  if (depth < ring_.size()) {
    return Status(Errc::kInvalidArgument, "cannot shrink a receive queue from " +
                                              std::to_string(ring_.size()) + " to " +
                                              std::to_string(depth));
  }
  std::vector<ReceiveWorkRequest> ring(depth);
  for (uint32_t i = 0; i < count_; ++i) ring[i] = ring_[(head_ + i) % ring_.size()];
  ring_.swap(ring);
  head_ = 0;
  return Status::ok();
}

}  // namespace wv::verbs::soft
