#include "ib_completion_queue.h"

#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "ib_convert.h"
#include "ib_shared_receive_queue.h"

namespace wv::verbs::ib {

namespace {
constexpr uint32_t kGrhBytes = 40;
constexpr int kPollBatch = 16;
}  // namespace

Result<std::shared_ptr<IbCompletionQueue>> IbCompletionQueue::create(
    std::shared_ptr<IbDevice> device, uint32_t entries) {
  if (entries == 0 || entries > device->attributes().max_cqe) {
    return Status(Errc::kInvalidArgument, "completion queue of " + std::to_string(entries) +
                                              " entries (device allows 1.." +
                                              std::to_string(device->attributes().max_cqe) + ")");
  }
  ibv_comp_channel* channel = ibv_create_comp_channel(device->context());
  if (channel == nullptr) return verbs_status(-1, "ibv_create_comp_channel");
  std::shared_ptr<IbCompletionQueue> cq(new IbCompletionQueue(device, channel, entries));
  // One spare entry per emulated overrun check: the device queue may be larger than asked.
  cq->cq_ = ibv_create_cq(device->context(), static_cast<int>(entries), cq.get(), channel, 0);
  if (cq->cq_ == nullptr) return verbs_status(-1, "ibv_create_cq");
  std::weak_ptr<IbCompletionQueue> weak = cq;
  if (Status status = device->loop()->add(channel->fd,
                                          [weak] {
                                            if (auto self = weak.lock()) {
                                              self->on_channel_readable();
                                            }
                                          });
      !status) {
    return status;
  }
  return cq;
}

IbCompletionQueue::~IbCompletionQueue() {
  device_->loop()->remove(channel_->fd);
  for (auto& [kind, waiter] : waiters_) {
    waiter.complete(Status(Errc::kCancelled, "completion queue destroyed"));
  }
  if (cq_ != nullptr) ibv_destroy_cq(cq_);
  ibv_destroy_comp_channel(channel_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

void IbCompletionQueue::translate(const ibv_wc& wc, Completion& c) const {
  c = Completion{};
  c.wr_id = wc.wr_id;
  c.status = from_ibv_status(wc.status);
  c.vendor_error = wc.vendor_err;
  c.qp_number = wc.qp_num;
  c.opcode = from_ibv_opcode(wc.opcode);
  c.length = wc.byte_len;
  const CqQpEntry* entry = last_entry_;
  if (entry == nullptr || last_qp_number_ != wc.qp_num) {
    auto it = qps_.find(wc.qp_num);
    entry = it == qps_.end() ? nullptr : &it->second;
    last_entry_ = entry;
    last_qp_number_ = wc.qp_num;
  }
  if (entry != nullptr) c.qp_context = entry->context;
  const bool receive = (wc.opcode & IBV_WC_RECV) != 0;
  if (entry != nullptr && entry->shared) {
    // A QP with separate CQs knows a receive by its CQ (the opcode of an error completion is
    // undefined); one CQ for both queues tells them apart by the opcode.
    if (entry->counts_receives && (entry->receive_only || receive)) {
      entry->shared->receives_posted.fetch_sub(1, std::memory_order_relaxed);
    }
    if (wc.status != IBV_WC_SUCCESS) {
      entry->shared->state.store(QpState::kError, std::memory_order_release);
    }
  }
  if (wc.status != IBV_WC_SUCCESS) {
    c.length = 0;
    return;
  }
  if (receive) {
    if (entry != nullptr && entry->datagram) {
      c.length = wc.byte_len >= kGrhBytes ? wc.byte_len - kGrhBytes : 0;
      c.source_qp_number = wc.src_qp;
    } else if (entry != nullptr) {
      c.source_qp_number = entry->peer_qp_number;
    }
    if (entry != nullptr && entry->srq != nullptr) entry->srq->on_consumed();
  } else if (wc.opcode == IBV_WC_COMP_SWAP || wc.opcode == IBV_WC_FETCH_ADD) {
    c.length = 8;
  }
  if ((wc.wc_flags & IBV_WC_WITH_IMM) != 0) {
    c.flags = c.flags | CompletionFlags::kWithImmediate;
    c.immediate = ntohl(wc.imm_data);
  } else if ((wc.wc_flags & IBV_WC_WITH_INV) != 0) {
    c.flags = c.flags | CompletionFlags::kWithInvalidate;
    c.invalidated_rkey = wc.invalidated_rkey;
  }
}

void IbCompletionQueue::drain_locked() const {
  ibv_wc wcs[kPollBatch];
  for (;;) {
    const int n = ibv_poll_cq(cq_, kPollBatch, wcs);
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      if (queued_.size() >= capacity_) {
        // More completions than the queue was created for: the overrun the API reports, as a
        // device whose queue is exactly that size would.
        if (status_.is_ok()) {
          status_ = Status(Errc::kQueueFull, "completion queue overrun: more than " +
                                                 std::to_string(capacity_) + " completions");
          // The device raises no event for an overrun it never saw: the provider does, as
          // for a QP that went to the error state on its own.
          for (const auto& [number, qp] : qps_) {
            ibv_qp_attr attr{};
            attr.qp_state = IBV_QPS_ERR;
            ibv_modify_qp(qp.qp, &attr, IBV_QP_STATE);
            device_->qp_failed(number, qp.context, "completion queue overrun");
          }
        }
        continue;
      }
      Completion c;
      translate(wcs[i], c);
      queued_.push_back(c);
    }
  }
}

int IbCompletionQueue::poll(std::span<Completion> out) {
  std::lock_guard lock(lock_);
  size_t n = 0;
  while (n < out.size() && !queued_.empty()) {
    out[n++] = queued_.front();
    queued_.pop_front();
  }
  if (!status_.is_ok()) {
    if (n == 0) return -1;
    return static_cast<int>(n);
  }
  ibv_wc wcs[kPollBatch];
  while (n < out.size()) {
    const int want = static_cast<int>(std::min<size_t>(kPollBatch, out.size() - n));
    const int got = ibv_poll_cq(cq_, want, wcs);
    if (got <= 0) break;
    for (int i = 0; i < got; ++i) translate(wcs[i], out[n++]);
    if (got < want) break;
  }
  return static_cast<int>(n);
}

size_t IbCompletionQueue::peek() const {
  std::lock_guard lock(lock_);
  drain_locked();
  return queued_.size();
}

void IbCompletionQueue::push(const Completion& completion) {
  {
    std::lock_guard lock(lock_);
    drain_locked();  // keeps the software completion behind what the device already has
    queued_.push_back(completion);
  }
}

void IbCompletionQueue::add_qp(uint32_t qp_number, const CqQpEntry& entry) {
  std::lock_guard lock(lock_);
  qps_[qp_number] = entry;
}

void IbCompletionQueue::set_peer(uint32_t qp_number, uint32_t peer_qp_number) {
  std::lock_guard lock(lock_);
  if (auto it = qps_.find(qp_number); it != qps_.end()) it->second.peer_qp_number = peer_qp_number;
}

void IbCompletionQueue::remove_qp(uint32_t qp_number) {
  std::lock_guard lock(lock_);
  drain_locked();
  qps_.erase(qp_number);
  last_entry_ = nullptr;
}

void IbCompletionQueue::on_overrun(std::string why) {
  std::lock_guard lock(lock_);
  if (status_.is_ok()) status_ = Status(Errc::kQueueFull, std::move(why));
}

Operation<void> IbCompletionQueue::notify(NotifyOn kind) {
  std::lock_guard lock(lock_);
  auto [op, completer] = Operation<void>::make();
  bool any_next = kind == NotifyOn::kNextCompletion;
  for (auto& [k, w] : waiters_) any_next |= (k == NotifyOn::kNextCompletion && w.pending());
  if (int rc = ibv_req_notify_cq(cq_, any_next ? 0 : 1); rc != 0) {
    completer.complete(verbs_status(rc, "ibv_req_notify_cq"));
    return std::move(op);
  }
  waiters_.emplace_back(kind, completer);
  return std::move(op);
}

Operation<void> IbCompletionQueue::batch_notify(size_t) {
  return Operation<void>::done(
      Status(Errc::kNotSupported, "device " + device_->attributes().name +
                                      " has no batch notification (capability batch_notify)"));
}

int IbCompletionQueue::notification_fd() {
  std::lock_guard lock(lock_);
  if (event_fd_ < 0) event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return event_fd_;
}

void IbCompletionQueue::on_channel_readable() {
  ibv_cq* cq = nullptr;
  void* context = nullptr;
  unsigned events = 0;
  while (ibv_get_cq_event(channel_, &cq, &context) == 0) ++events;
  if (events == 0) return;
  ibv_ack_cq_events(cq_, events);
  std::vector<std::pair<NotifyOn, Completer<void>>> fired;
  {
    std::lock_guard lock(lock_);
    fired.swap(waiters_);
    if (event_fd_ >= 0) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(event_fd_, &one, sizeof(one));
    }
  }
  for (auto& [kind, waiter] : fired) waiter.complete(Status::ok());
}

Status IbCompletionQueue::resize(uint32_t entries) {
  std::lock_guard lock(lock_);
  drain_locked();
  if (entries < queued_.size()) {
    return Status(Errc::kInvalidArgument, "cannot resize to " + std::to_string(entries) +
                                              " entries: " + std::to_string(queued_.size()) +
                                              " completions are queued");
  }
  if (entries == 0 || entries > device_->attributes().max_cqe) {
    return Status(Errc::kInvalidArgument, "completion queue of " + std::to_string(entries) +
                                              " entries is out of the device's range");
  }
  if (int rc = ibv_resize_cq(cq_, static_cast<int>(std::max(entries, 1u))); rc != 0) {
    return verbs_status(rc, "ibv_resize_cq");
  }
  capacity_ = entries;
  return Status::ok();
}

uint32_t IbCompletionQueue::capacity() const {
  std::lock_guard lock(lock_);
  return capacity_;
}

Status IbCompletionQueue::status() const {
  std::lock_guard lock(lock_);
  drain_locked();
  return status_;
}

}  // namespace wv::verbs::ib
