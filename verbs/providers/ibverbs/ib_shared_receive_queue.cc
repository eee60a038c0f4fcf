#include "ib_shared_receive_queue.h"

#include "ib_convert.h"
#include "ib_protection_domain.h"
#include "ib_queue_pair.h"

namespace wv::verbs::ib {

IbSharedReceiveQueue::~IbSharedReceiveQueue() {
  for (auto& waiter : waiters_) waiter.complete(Status(Errc::kCancelled, "SRQ destroyed"));
  ibv_destroy_srq(srq_);
}

Status IbSharedReceiveQueue::post_receive(uint64_t wr_id, std::span<const Sge> sges) {
  ibv_sge list[kMaxPostSge];
  if (sges.size() > max_sge_ || sges.size() > kMaxPostSge) {
    return Status(
        Errc::kInvalidArgument,
        std::to_string(sges.size()) + " SGEs, the SRQ takes at most " + std::to_string(max_sge_));
  }
  for (size_t i = 0; i < sges.size(); ++i) {
    const Sge& sge = sges[i];
    if (sge.region == nullptr || detail::RegionAccess::domain(*sge.region) != domain_.get()) {
      return Status(Errc::kInvalidArgument,
                    "SGE " + std::to_string(i) + " is not in a region of the SRQ's domain");
    }
    const auto begin = reinterpret_cast<uintptr_t>(sge.region->address());
    const auto at = reinterpret_cast<uintptr_t>(sge.address);
    if (at < begin || at + sge.length > begin + sge.region->length()) {
      return Status(Errc::kInvalidArgument,
                    "SGE " + std::to_string(i) + " lies outside its memory region");
    }
    list[i] = {reinterpret_cast<uint64_t>(sge.address), sge.length,
               detail::RegionAccess::local_key(*sge.region)};
  }
  {
    std::lock_guard lock(mutex_);
    // Enforced here: devices round the depth up and would take more.
    if (posted_.load(std::memory_order_relaxed) >= static_cast<int64_t>(max_wr_)) {
      return Status(Errc::kQueueFull, "the shared receive queue is full (" +
                                          std::to_string(max_wr_) + " receives posted)");
    }
  }
  ibv_recv_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = list;
  wr.num_sge = static_cast<int>(sges.size());
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_srq_recv(srq_, &wr, &bad); rc != 0) {
    if (rc == ENOMEM) return Status(Errc::kQueueFull, "the shared receive queue is full");
    return verbs_status(rc, "ibv_post_srq_recv");
  }
  posted_.fetch_add(1, std::memory_order_relaxed);
  return Status::ok();
}

Status IbSharedReceiveQueue::modify(uint32_t max_wr, uint32_t limit) {
  std::lock_guard lock(mutex_);
  ibv_srq_attr attr{};
  int mask = 0;
  uint32_t new_max_wr = max_wr_;
  if (max_wr != kUnchanged && max_wr != max_wr_) {
    if (max_wr < static_cast<uint32_t>(std::max<int64_t>(posted_.load(), 0))) {
      return Status(Errc::kInvalidArgument,
                    "more receives are posted than " + std::to_string(max_wr) + " entries hold");
    }
    new_max_wr = max_wr;
    if (max_wr > capacity_) {
      attr.max_wr = max_wr;
      mask |= IBV_SRQ_MAX_WR;
    }
  }
  if (limit != kUnchanged) {
    attr.srq_limit = limit;
    mask |= IBV_SRQ_LIMIT;
  }
  if (mask != 0) {
    if (int rc = ibv_modify_srq(srq_, &attr, mask); rc != 0) {
      if ((mask & IBV_SRQ_MAX_WR) != 0 && rc == EOPNOTSUPP) {
        return Status(Errc::kNotSupported, "device " + domain_->device()->attributes().name +
                                               " cannot grow an SRQ beyond the " +
                                               std::to_string(capacity_) +
                                               " entries it was created with");
      }
      return verbs_status(rc, "ibv_modify_srq");
    }
    if ((mask & IBV_SRQ_MAX_WR) != 0) {
      capacity_ = attr.max_wr;
      ibv_srq_attr now{};
      if (ibv_query_srq(srq_, &now) == 0) capacity_ = std::max(capacity_, now.max_wr);
    }
  }
  max_wr_ = new_max_wr;
  if (limit != kUnchanged) limit_ = limit;
  return Status::ok();
}

Operation<void> IbSharedReceiveQueue::notify_limit() {
  std::lock_guard lock(mutex_);
  if (limit_ == 0) {
    return Operation<void>::done(
        Status(Errc::kInvalidState, "no SRQ limit is armed (set one with modify)"));
  }
  auto [op, completer] = Operation<void>::make();
  waiters_.push_back(completer);
  return std::move(op);
}

void IbSharedReceiveQueue::on_limit_reached() {
  std::vector<Completer<void>> fired;
  {
    std::lock_guard lock(mutex_);
    limit_ = 0;  // the device disarmed it
    fired.swap(waiters_);
  }
  for (auto& waiter : fired) waiter.complete(Status::ok());
}

SrqAttributes IbSharedReceiveQueue::query() const {
  std::lock_guard lock(mutex_);
  SrqAttributes out;
  out.max_wr = max_wr_;
  out.max_sge = max_sge_;
  out.limit = limit_;
  const int64_t posted = posted_.load(std::memory_order_relaxed);
  out.posted = posted < 0 ? 0 : static_cast<uint32_t>(posted);
  return out;
}

}  // namespace wv::verbs::ib
