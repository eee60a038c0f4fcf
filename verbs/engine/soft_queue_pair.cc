#include "soft_queue_pair.h"

#include <cstring>
#include <string>

#include "soft_completion_queue.h"
#include "soft_device.h"
#include "soft_memory.h"
#include "soft_protection_domain.h"
#include "soft_shared_receive_queue.h"

namespace wv::verbs::soft {

SoftConnectQueuePair::SoftConnectQueuePair(std::shared_ptr<SoftProtectionDomain> domain,
                                           const QueuePairOptions& options, uint32_t number,
                                           uint32_t max_inline)
    : core_(std::move(domain), options, number, max_inline), send_queue_(options.send_depth) {}

SoftConnectQueuePair::~SoftConnectQueuePair() {
  std::shared_ptr<Wire> wire;
  {
    std::lock_guard lock(mutex_);
    wire = std::move(wire_);
  }
  if (wire) wire->close();
}

SoftDevice& SoftConnectQueuePair::device() const {
  return core_.device();
}

QpAttributes SoftConnectQueuePair::query() const {
  std::lock_guard lock(mutex_);
  QpAttributes attributes;
  core_.fill_receive_attributes(attributes);
  attributes.state = state_;
  attributes.peer_qp_number = peer_qp_number_;
  attributes.send_depth = static_cast<uint32_t>(send_queue_.depth());
  attributes.inbound_read_depth = inbound_read_depth_;
  attributes.outbound_read_depth = outbound_read_depth_;
  return attributes;
}

Status SoftConnectQueuePair::modify(QpState state) {
  std::unique_lock lock(mutex_);
  const QpState from = state_;
  const auto refuse = [&] {
    return Status(Errc::kInvalidState, "QP " + std::to_string(core_.number()) + ": transition " +
                                           std::string(to_string(from)) + " -> " +
                                           std::string(to_string(state)) +
                                           " is not allowed (the endpoint connects QPs)");
  };
  switch (state) {
    case QpState::kError:
      fail_locked(CompletionStatus::kFlushed, "moved to error by the application", false);
      return Status::ok();
    case QpState::kReset:
      if (from != QpState::kError) return refuse();
      head_ = next_tx_ = tail_ = 0;
      outstanding_reads_ = 0;
      wire_.reset();
      peer_qp_number_ = 0;
      state_ = QpState::kReset;
      return Status::ok();
    case QpState::kInit:
      if (from != QpState::kReset) return refuse();
      state_ = QpState::kInit;
      return Status::ok();
    case QpState::kSendQueueDrained:
      if (from != QpState::kReadyToSend) return refuse();
      state_ = QpState::kSendQueueDrained;
      return Status::ok();
    case QpState::kReadyToSend:
      if (from != QpState::kSendQueueDrained) return refuse();
      state_ = QpState::kReadyToSend;
      if (wire_) wire_->kick_locked(*this);
      return Status::ok();
    case QpState::kReadyToReceive:
      return refuse();
  }
  return refuse();
}

Status SoftConnectQueuePair::connect_locked(std::shared_ptr<Wire> wire, uint32_t peer_qp_number,
                                            uint32_t inbound_read_depth,
                                            uint32_t outbound_read_depth) {
  if (state_ != QpState::kInit) {
    return Status(Errc::kInvalidState, "QP " + std::to_string(core_.number()) + " is in state " +
                                           std::string(to_string(state_)) +
                                           "; only a QP in init can be connected");
  }
  wire_ = std::move(wire);
  peer_qp_number_ = peer_qp_number;
  inbound_read_depth_ = inbound_read_depth;
  outbound_read_depth_ = outbound_read_depth;
  state_ = QpState::kReadyToSend;
  wire_->kick_locked(*this);
  return Status::ok();
}

// ---- Receive side ----

Status SoftConnectQueuePair::post_receive(uint64_t wr_id, std::span<const Sge> sges) {
  std::lock_guard lock(mutex_);
  Status status = core_.post_receive_locked(wr_id, sges, state_);
  if (status && state_ != QpState::kError && wire_) wire_->receive_posted();
  return status;
}

bool SoftConnectQueuePair::take_receive(const Wire& wire, ReceiveWorkRequest& out) {
  std::lock_guard lock(mutex_);
  if (wire_.get() != &wire) return false;
  return core_.take_receive_locked(out, wire_);
}

bool SoftConnectQueuePair::has_receive() const {
  std::lock_guard lock(mutex_);
  return core_.has_receive_locked();
}

void SoftConnectQueuePair::complete_receive(const ReceiveWorkRequest& request, Opcode opcode,
                                            uint32_t length, CompletionStatus status,
                                            CompletionFlags flags, uint32_t immediate,
                                            uint32_t invalidated_key, bool solicited) {
  Completion completion = core_.completion(request.wr_id, opcode, status);
  completion.source_qp_number = peer_qp_number_;
  completion.length = length;
  completion.flags = flags;
  completion.immediate = immediate;
  completion.invalidated_rkey = invalidated_key;
  if (!core_.receive_cq().push(completion, solicited)) {
    fail(CompletionStatus::kFatal, "receive completion queue overrun");
  }
}

KeyCheck SoftConnectQueuePair::resolve(uint32_t key, uint64_t address, uint64_t length,
                                       Access access, void** host) const {
  return device().keys().resolve(key, address, length, access, core_.domain(), core_.number(),
                                 host);
}

KeyCheck SoftConnectQueuePair::invalidate_remote(uint32_t key) {
  return device().keys().invalidate(key, core_.domain(), core_.number());
}

// ---- Send side ----

template <typename Fill>
Status SoftConnectQueuePair::post(WorkKind kind, uint64_t wr_id, std::span<const Sge> sges,
                                  SendFlags flags, Access local_access, Fill&& fill) {
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
  SendWorkRequest& request = slot(tail_);
  request.wr_id = wr_id;
  request.kind = kind;
  request.signaled = core_.signaled(flags);
  request.fence = has(flags, SendFlags::kFence);
  request.solicited = has(flags, SendFlags::kSolicited);
  request.transmitted_bytes = 0;
  request.transmitted = false;
  request.done = false;
  request.status = CompletionStatus::kSuccess;
  request.window = nullptr;
  if (Status status =
          core_.gather(sges, flags, local_access, request.segments.data(),
                       request.inline_data.data(), &request.segment_count, &request.length);
      !status) {
    return status;
  }
  if (Status status = fill(request); !status) return status;
  if (head_ == tail_ && state_ == QpState::kReadyToSend && wire_ &&
      wire_->transmit_at_once_locked(request)) {
    // Done without entering the queue: its slot stays free for the next post.
    if (request.signaled) push_send_completion_locked(request);
    return Status::ok();
  }
  ++tail_;
  if (state_ == QpState::kError) {
    request.done = true;
    request.transmitted = true;
    request.status = CompletionStatus::kFlushed;
    next_tx_ = tail_;
    retire_locked();
  } else if (wire_) {
    wire_->kick_locked(*this);
  } else {
    // Connected QPs always have a wire; no wire means no transport can carry the request.
    fail_locked(CompletionStatus::kTransportError, "QP has no connection");
  }
  return Status::ok();
}

namespace {
Status no_extra(SendWorkRequest&) {
  return Status::ok();
}
}  // namespace

Status SoftConnectQueuePair::send(uint64_t wr_id, std::span<const Sge> sges, SendFlags flags) {
  return post(WorkKind::kSend, wr_id, sges, flags, Access::kNone, no_extra);
}

Status SoftConnectQueuePair::send_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                                 uint32_t immediate, SendFlags flags) {
  return post(WorkKind::kSendWithImmediate, wr_id, sges, flags, Access::kNone,
              [immediate](SendWorkRequest& request) {
                request.immediate = immediate;
                return Status::ok();
              });
}

Status SoftConnectQueuePair::send_with_invalidate(uint64_t wr_id, std::span<const Sge> sges,
                                                  uint32_t rkey, SendFlags flags) {
  return post(WorkKind::kSendWithInvalidate, wr_id, sges, flags, Access::kNone,
              [rkey](SendWorkRequest& request) {
                request.immediate = rkey;
                return Status::ok();
              });
}

Status SoftConnectQueuePair::rdma_write(uint64_t wr_id, std::span<const Sge> sges,
                                        RemoteAddress remote, SendFlags flags) {
  return post(WorkKind::kWrite, wr_id, sges, flags, Access::kNone,
              [remote](SendWorkRequest& request) {
                request.remote = remote;
                return Status::ok();
              });
}

Status SoftConnectQueuePair::rdma_write_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                                       RemoteAddress remote, uint32_t immediate,
                                                       SendFlags flags) {
  return post(WorkKind::kWriteWithImmediate, wr_id, sges, flags, Access::kNone,
              [remote, immediate](SendWorkRequest& request) {
                request.remote = remote;
                request.immediate = immediate;
                return Status::ok();
              });
}

Status SoftConnectQueuePair::rdma_read(uint64_t wr_id, std::span<const Sge> sges,
                                       RemoteAddress remote, SendFlags flags) {
  if (has(flags, SendFlags::kInline)) {
    return Status(Errc::kInvalidArgument, "an RDMA read cannot be inline");
  }
  return post(WorkKind::kRead, wr_id, sges, flags, Access::kLocalWrite,
              [remote](SendWorkRequest& request) {
                request.remote = remote;
                return Status::ok();
              });
}

namespace {
Status check_atomic(const Sge& result, RemoteAddress remote, SendFlags flags) {
  if (result.length != 8) {
    return Status(Errc::kInvalidArgument,
                  "atomic result buffer must be 8 bytes, not " + std::to_string(result.length));
  }
  if (remote.address % 8 != 0) {
    return Status(Errc::kInvalidArgument, "atomic target address must be 8-byte aligned");
  }
  if (has(flags, SendFlags::kInline)) {
    return Status(Errc::kInvalidArgument, "an atomic operation cannot be inline");
  }
  return Status::ok();
}
}  // namespace

Status SoftConnectQueuePair::compare_and_swap(uint64_t wr_id, const Sge& result,
                                              RemoteAddress remote, uint64_t compare, uint64_t swap,
                                              SendFlags flags) {
  if (Status status = check_atomic(result, remote, flags); !status) return status;
  return post(WorkKind::kCompareAndSwap, wr_id, std::span<const Sge>(&result, 1), flags,
              Access::kLocalWrite, [remote, compare, swap](SendWorkRequest& request) {
                request.remote = remote;
                request.compare = compare;
                request.operand = swap;
                return Status::ok();
              });
}

Status SoftConnectQueuePair::fetch_and_add(uint64_t wr_id, const Sge& result, RemoteAddress remote,
                                           uint64_t add, SendFlags flags) {
  if (Status status = check_atomic(result, remote, flags); !status) return status;
  return post(WorkKind::kFetchAndAdd, wr_id, std::span<const Sge>(&result, 1), flags,
              Access::kLocalWrite, [remote, add](SendWorkRequest& request) {
                request.remote = remote;
                request.operand = add;
                return Status::ok();
              });
}

Result<uint32_t> SoftConnectQueuePair::bind_memory_window(uint64_t wr_id, MemoryWindow& window,
                                                          const MemoryRegion& region, void* address,
                                                          uint64_t length, Access access,
                                                          SendFlags flags) {
  auto& soft_window = static_cast<SoftMemoryWindow&>(window);
  if (soft_window.domain() != core_.domain() ||
      detail::RegionAccess::domain(region) != core_.domain()) {
    return Status(Errc::kPermissionDenied,
                  "memory window and region must belong to the QP's protection domain");
  }
  if (!has(region.access(), Access::kBindMemoryWindow)) {
    return Status(Errc::kPermissionDenied, "region was not registered with kBindMemoryWindow");
  }
  const auto* base = static_cast<const std::byte*>(region.address());
  const auto* at = static_cast<const std::byte*>(address);
  if (at < base || length > region.length() ||
      static_cast<uint64_t>(at - base) > region.length() - length) {
    return Status(Errc::kPermissionDenied, "window range lies outside the region");
  }
  if (window.type() == MemoryWindowType::kType2 && length == 0) {
    return Status(Errc::kInvalidArgument,
                  "a type 2 window is unbound by invalidating its key, not by a zero-length bind");
  }
  // An unbind names no binding: its key is 0.
  const uint32_t key = length == 0 ? 0 : soft_window.reserve_key();
  Status status =
      post(WorkKind::kBindWindow, wr_id, {}, flags, Access::kNone, [&](SendWorkRequest& request) {
        request.window = &window;
        request.window_key = key;
        request.window_access = access;
        request.window_address = reinterpret_cast<uint64_t>(address);
        request.length = length;
        return Status::ok();
      });
  if (!status) {
    if (key != 0) device().keys().remove(key);
    return status;
  }
  return key;
}

namespace {
Status no_out_of_band(const SoftConnectQueuePair& qp) {
  return Status(Errc::kNotSupported,
                "device " + qp.device().attributes().name +
                    " connects QPs through its endpoints only (no capability out_of_band_connect)");
}
}  // namespace

Result<OutOfBandAddress> SoftConnectQueuePair::out_of_band_address() {
  return no_out_of_band(*this);
}

Status SoftConnectQueuePair::connect_out_of_band(const OutOfBandAddress&,
                                                 const ConnectParameters&) {
  return no_out_of_band(*this);
}

Status SoftConnectQueuePair::invalidate(uint64_t wr_id, uint32_t rkey, SendFlags flags) {
  return post(WorkKind::kLocalInvalidate, wr_id, {}, flags, Access::kNone,
              [rkey](SendWorkRequest& request) {
                request.immediate = rkey;
                return Status::ok();
              });
}

Result<std::unique_ptr<RemoteMapping>> SoftConnectQueuePair::map_remote(RemoteAddress remote,
                                                                        uint64_t length,
                                                                        Access access) {
  // Mapping takes a system call or two under the lock: a set-up call, not a data-path one.
  std::lock_guard lock(mutex_);
  if (state_ != QpState::kReadyToSend || !wire_) {
    return Status(Errc::kInvalidState,
                  "map_remote needs a connected QP (state " + std::string(to_string(state_)) + ")");
  }
  return wire_->map_remote_locked(remote, length, access);
}

// ---- Requester progress ----

bool SoftConnectQueuePair::apply_local_locked(SendWorkRequest& request) {
  if (request.kind == WorkKind::kBindWindow) {
    static_cast<SoftMemoryWindow*>(request.window)
        ->bind(request.window_address, request.length, request.window_access, core_.number(),
               request.window_key);
    return true;
  }
  return invalidate_remote(request.immediate) == KeyCheck::kOk;
}

SendWorkRequest* SoftConnectQueuePair::next_to_transmit_locked() {
  if (state_ != QpState::kReadyToSend) return nullptr;
  while (next_tx_ < tail_) {
    SendWorkRequest& request = slot(next_tx_);
    if (request.fence && outstanding_reads_ > 0) return nullptr;
    if (request.kind == WorkKind::kBindWindow || request.kind == WorkKind::kLocalInvalidate) {
      const bool ok = apply_local_locked(request);
      request.transmitted = true;
      request.done = true;
      ++next_tx_;
      if (!ok) {
        request.status = CompletionStatus::kLocalProtectionError;
        fail_locked(CompletionStatus::kLocalProtectionError,
                    "local invalidate of a key that is not a window of this QP");
        return nullptr;
      }
      retire_locked();
      continue;
    }
    if (request.is_read_like() && outstanding_reads_ >= outbound_read_depth_) return nullptr;
    return &request;
  }
  return nullptr;
}

void SoftConnectQueuePair::transmitted_locked(SendWorkRequest& request, bool held) {
  request.transmitted = true;
  ++next_tx_;
  if (request.is_read_like()) {
    ++outstanding_reads_;
  } else if (!held) {
    request.done = true;
    retire_locked();
  }
}

void SoftConnectQueuePair::write_copied_locked(SendWorkRequest& request) {
  request.done = true;
  retire_locked();
}

SendWorkRequest* SoftConnectQueuePair::oldest_pending_locked(bool atomic) {
  for (uint64_t i = head_; i < next_tx_; ++i) {
    SendWorkRequest& request = slot(i);
    if (request.done || !request.is_read_like()) continue;
    if ((request.kind != WorkKind::kRead) == atomic) return &request;
  }
  return nullptr;
}

void SoftConnectQueuePair::response_arrived_locked(SendWorkRequest& request,
                                                   CompletionStatus status) {
  request.done = true;
  request.status = status;
  --outstanding_reads_;
  retire_locked();
}

void SoftConnectQueuePair::push_send_completion_locked(const SendWorkRequest& request) {
  Completion completion = core_.completion(request.wr_id, opcode_of(request.kind), request.status);
  if (request.kind == WorkKind::kRead) {
    completion.length = static_cast<uint32_t>(request.length);
  } else if (request.kind == WorkKind::kCompareAndSwap || request.kind == WorkKind::kFetchAndAdd) {
    completion.length = 8;
  }
  if (!core_.send_cq().push(completion, false) && state_ != QpState::kError) {
    fail_locked(CompletionStatus::kFatal, "send completion queue overrun");
  }
}

void SoftConnectQueuePair::retire_locked() {
  while (head_ < next_tx_ && slot(head_).done) {
    const SendWorkRequest& request = slot(head_);
    if (request.signaled || request.status != CompletionStatus::kSuccess) {
      push_send_completion_locked(request);
    }
    ++head_;
  }
}

void SoftConnectQueuePair::fail_locked(CompletionStatus status, std::string_view reason,
                                       bool raise_event) {
  if (state_ == QpState::kError) return;
  state_ = QpState::kError;
  // Completions leave in post order, so once one fails, everything after it is flushed, even
  // requests that were already carried out (as on InfiniBand).
  bool failed = false;
  for (uint64_t i = head_; i < tail_; ++i) {
    SendWorkRequest& request = slot(i);
    if (request.done && !failed) continue;
    request.status =
        failed || status == CompletionStatus::kFlushed ? CompletionStatus::kFlushed : status;
    request.done = true;
    failed = true;
  }
  next_tx_ = tail_;
  outstanding_reads_ = 0;
  retire_locked();
  core_.flush_receives_locked();
  if (wire_) wire_->close();
  if (raise_event) core_.raise_fatal_event(reason);
}

void SoftConnectQueuePair::fail_by_wire_locked(const Wire& wire, CompletionStatus status,
                                               std::string_view reason) {
  if (wire_.get() == &wire) fail_locked(status, reason);
}

void SoftConnectQueuePair::fail(CompletionStatus status, std::string_view reason) {
  std::lock_guard lock(mutex_);
  fail_locked(status, reason);
}

}  // namespace wv::verbs::soft
