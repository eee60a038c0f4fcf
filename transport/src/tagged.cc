// Tagged messaging: requests, matching against posted receives, unexpected messages.
#include <sched.h>

#include <cstring>
#include <string>

#include "worker_impl.h"
#include "wv/copy.h"

namespace wv::transport {

namespace {

constexpr uint32_t kGenerationMask = 0xffffff;  // request ids travel in 56-bit wr_ids

uint64_t make_request_id(uint32_t generation, uint32_t index) {
  return (uint64_t{generation} << 32) | index;
}

Status truncation(size_t message, size_t buffer) {
  return Status(Errc::kInvalidArgument, "message of " + std::to_string(message) +
                                            " bytes truncated to the receive buffer of " +
                                            std::to_string(buffer) + " bytes");
}

}  // namespace

Result<uint64_t> WorkerImpl::new_request(RequestKind kind) {
  uint32_t index;
  if (!free_requests_.empty()) {
    index = free_requests_.back();
    free_requests_.pop_back();
  } else {
    index = static_cast<uint32_t>(requests_.size());
    requests_.emplace_back();
  }
  RequestSlot& slot = requests_[index];
  // Copied from a constant: zeroing a temporary compiles to `rep stos`, which costs tens of
  // nanoseconds on these VMs (as `rep movsb` does, see wv/copy.h).
  static const RequestFields kFresh{};
  static_cast<RequestFields&>(slot) = kFresh;
  slot.kind = kind;
  return make_request_id(slot.generation, index);
}

RequestSlot* WorkerImpl::find_request(uint64_t id) {
  const auto index = static_cast<uint32_t>(id);
  if (index >= requests_.size()) return nullptr;
  RequestSlot& slot = requests_[index];
  if (slot.kind == RequestKind::kFree || slot.generation != (id >> 32)) return nullptr;
  return &slot;
}

void WorkerImpl::complete(uint64_t id, RequestSlot& request, Status status) {
  (void)id;
  if (request.done) return;
  request.done = true;
  request.status = std::move(status);
  if (request.kind == RequestKind::kPut || request.kind == RequestKind::kGet ||
      request.kind == RequestKind::kAtomic) {
    if (request.peer < peers_.size() && peers_[request.peer]->rma_pending > 0) {
      --peers_[request.peer]->rma_pending;
    }
  }
  if (request.atomic_slot != BufferPool::kNone) {
    if (request.status.is_ok() && request.atomic_result) {
      std::memcpy(request.atomic_result, atomic_buffers_->buffer(request.atomic_slot), 8);
    }
    atomic_buffers_->give(request.atomic_slot);
    request.atomic_slot = BufferPool::kNone;
  }
  if (request.framing_buffer != BufferPool::kNone) {
    send_buffers_->give(request.framing_buffer);
    request.framing_buffer = BufferPool::kNone;
  }
  request.region.reset();  // registrations stay cached; only this use ends
  request.fragment_regions.clear();
}

void WorkerImpl::release(uint64_t id, RequestSlot& request) {
  request.kind = RequestKind::kFree;
  request.region.reset();
  request.fragment_regions.clear();
  request.status = Status::ok();
  request.generation = (request.generation + 1) & kGenerationMask;
  if (request.generation == 0) request.generation = 1;
  free_requests_.push_back(static_cast<uint32_t>(id));
}

Status WorkerImpl::unexpected_overflow() const {
  return Status(Errc::kQueueFull,
                "unexpected-message queue full: " + std::to_string(unexpected_bytes_) +
                    " bytes received but not matched (transport_unexpected_limit = " +
                    std::to_string(unexpected_limit_) + "); post receives before peers send");
}

Result<Request> WorkerImpl::isend(PeerId peer_id, uint64_t tag, const void* buffer, size_t length,
                                  SendMode mode) {
  std::lock_guard lock(mutex_);
  if (unexpected_bytes_ > unexpected_limit_) return unexpected_overflow();
  if (buffer == nullptr && length != 0) {
    return Status(Errc::kInvalidArgument,
                  "isend of " + std::to_string(length) + " bytes from a null buffer");
  }
  auto peer = peer_for_send(peer_id);
  if (!peer.is_ok()) return peer.status();
  if (auto sent = send_at_once(**peer, tag, buffer, length, mode); sent.has_value()) {
    return *sent;
  }
  auto id = new_request(RequestKind::kSend);
  if (!id.is_ok()) return id.status();
  RequestSlot& request = requests_[static_cast<uint32_t>(*id)];
  request.peer = peer_id;
  request.tag = tag;
  request.buffer = static_cast<std::byte*>(const_cast<void*>(buffer));
  request.length = length;
  request.mode = mode;
  request.path = length <= thresholds_.inline_limit ? Path::kInline
                 : length <= (*peer)->eager_limit   ? Path::kEager
                                                    : Path::kRendezvous;
  if (request.path == Path::kRendezvous && thresholds_.scheme == RendezvousScheme::kWrite &&
      registers_per_fragment(length)) {
    request.fragment_access = verbs::Access::kNone;  // written from, fragment by fragment
  } else if (request.path == Path::kRendezvous) {
    // Read scheme: the receiver reads with one key, so the buffer is registered whole.
    const verbs::Access access = thresholds_.scheme == RendezvousScheme::kRead
                                     ? verbs::Access::kRemoteRead
                                     : verbs::Access::kNone;
    auto region = cache_->get(buffer, length, access);
    if (!region.is_ok()) {
      release(*id, request);
      return region.status();
    }
    request.region = std::move(region).value();
  }
  (*peer)->data.push_back(DataItem{.is_request = true, .value = *id, .bytes = 0});
  pump(**peer);
  return Request::from_id(*id);
}

std::optional<Result<Request>> WorkerImpl::send_at_once(Peer& peer, uint64_t tag,
                                                        const void* buffer, size_t length,
                                                        SendMode mode) {
  // An inline send (or one the peer's mailbox takes) with no data queued ahead and a credit at
  // hand goes now and is done: no request to allocate, queue, find, complete and release (what
  // post_data would do at once).
  if (mode != SendMode::kStandard ||
      (length > thresholds_.inline_limit && !fits_mailbox(peer, wire::kShortEagerBytes + length)) ||
      !peer.data.empty() || peer.puts_queued != 0 || peer.credits == 0) {
    return std::nullopt;
  }
  if (!peer.control.empty()) {
    pump(peer);  // control messages first, as pump sends them
    if (peer.state == PeerState::kFailed) return Result<Request>(peer.failure);
  }
  if (!peer.control.empty() || !can_post(peer)) return std::nullopt;
  wire::Header header{};
  header.type = wire::Type::kEager;
  header.tag = tag;
  header.payload_length = static_cast<uint32_t>(length);
  const bool posted =
      post_message(peer, header, {}, std::span(static_cast<const std::byte*>(buffer), length));
  if (peer.state == PeerState::kFailed) return Result<Request>(peer.failure);
  if (!posted) return std::nullopt;  // no queue space: the request waits in the queue
  --peer.credits;
  return Result<Request>(Request::completed());
}

Result<Request> WorkerImpl::irecv(PeerId source, uint64_t tag, uint64_t mask, void* buffer,
                                  size_t length) {
  std::lock_guard lock(mutex_);
  if (source != kAnyPeer && source >= peers_.size()) {
    return Status(Errc::kInvalidArgument, "no peer " + std::to_string(source));
  }
  if (buffer == nullptr && length != 0) {
    return Status(Errc::kInvalidArgument,
                  "irecv of " + std::to_string(length) + " bytes into a null buffer");
  }
  auto id = new_request(RequestKind::kReceive);
  if (!id.is_ok()) return id.status();
  const auto index = static_cast<uint32_t>(*id);
  RequestSlot& request = requests_[index];
  request.peer = source;
  request.tag = tag;
  request.mask = mask;
  request.buffer = static_cast<std::byte*>(buffer);
  request.length = length;

  const uint32_t found = unexpected_.find_matching(source, tag, mask);
  if (found != MatchQueue::kNone) {
    unexpected_.remove(found);
    UnexpectedMessage& message = unexpected_messages_[found];
    Peer& peer = *peers_[message.source];
    wire::Header header{};
    header.type = message.type;
    header.flags = message.flags;
    header.tag = message.tag;
    header.cookie = message.cookie;
    if (message.type == wire::Type::kEager) {
      match_eager(*id, request, message.source, header, message.payload);
    } else {
      request.result.tag = message.tag;
      start_rendezvous_receive(*id, request, message.source, message.cookie, message.rendezvous,
                               (message.flags & wire::kWriteScheme) != 0);
    }
    unexpected_bytes_ -= message.payload.size();
    message = UnexpectedMessage{};
    free_unexpected_.push_back(found);
    pump(peer);
  } else if (source != kAnyPeer && peers_[source]->state == PeerState::kFailed) {
    complete(*id, request, peers_[source]->failure);
  } else {
    posted_.push(index, source, tag, mask);
  }
  return Request::from_id(*id);
}

void WorkerImpl::match_eager(uint64_t request_id, RequestSlot& request, PeerId source,
                             const wire::Header& header, std::span<const std::byte> payload) {
  request.started = true;
  request.peer = source;
  request.result.source = source;
  request.result.tag = header.tag;
  request.result.length = std::min(payload.size(), request.length);
  if (request.result.length) copy_bytes(request.buffer, payload.data(), request.result.length);
  if (header.flags & wire::kSynchronous) {
    queue_control(*peers_[source],
                  ControlMessage{.type = wire::Type::kSyncAck, .cookie = header.cookie});
  }
  complete(
      request_id, request,
      payload.size() > request.length ? truncation(payload.size(), request.length) : Status::ok());
}

void WorkerImpl::deliver_eager(Peer& peer, const wire::Header& header,
                               std::span<const std::byte> payload) {
  const uint32_t index = posted_.find_accepting(peer.id, header.tag);
  if (index != MatchQueue::kNone) {
    posted_.remove(index);
    RequestSlot& request = requests_[index];
    match_eager(make_request_id(request.generation, index), request, peer.id, header, payload);
    return;
  }
  store_unexpected(peer, header).payload.assign(payload.begin(), payload.end());
  unexpected_bytes_ += payload.size();
}

UnexpectedMessage& WorkerImpl::store_unexpected(Peer& peer, const wire::Header& header) {
  uint32_t slot;
  if (!free_unexpected_.empty()) {
    slot = free_unexpected_.back();
    free_unexpected_.pop_back();
  } else {
    slot = static_cast<uint32_t>(unexpected_messages_.size());
    unexpected_messages_.emplace_back();
  }
  UnexpectedMessage& message = unexpected_messages_[slot];
  message.source = peer.id;
  message.tag = header.tag;
  message.type = header.type;
  message.flags = header.flags;
  message.cookie = header.cookie;
  unexpected_.push(slot, peer.id, header.tag, kTagMaskAll);
  ++counters_.unexpected_messages;
  return message;
}

void WorkerImpl::deliver_rendezvous(Peer& peer, const wire::Header& header,
                                    const wire::RendezvousBody& body) {
  const bool write_scheme = (header.flags & wire::kWriteScheme) != 0;
  const uint32_t index = posted_.find_accepting(peer.id, header.tag);
  if (index != MatchQueue::kNone) {
    posted_.remove(index);
    RequestSlot& request = requests_[index];
    request.result.tag = header.tag;
    start_rendezvous_receive(make_request_id(request.generation, index), request, peer.id,
                             header.cookie, body, write_scheme);
    return;
  }
  store_unexpected(peer, header).rendezvous = body;
}

Result<RequestResult> WorkerImpl::iprobe(PeerId source, uint64_t tag, uint64_t mask) {
  std::lock_guard lock(mutex_);
  (void)progress_locked();
  const uint32_t found = unexpected_.find_matching(source, tag, mask);
  if (found == MatchQueue::kNone) return Status(Errc::kNotFound, "no matching message yet");
  const UnexpectedMessage& message = unexpected_messages_[found];
  RequestResult result;
  result.source = message.source;
  result.tag = message.tag;
  result.length =
      message.type == wire::Type::kEager ? message.payload.size() : message.rendezvous.length;
  return result;
}

Result<RequestResult> WorkerImpl::probe(PeerId source, uint64_t tag, uint64_t mask,
                                        std::chrono::milliseconds bound) {
  Result<RequestResult> found = Status(Errc::kNotFound, "");
  Status status = progress_until(
      [&] {
        found = iprobe(source, tag, mask);
        return found.is_ok() || found.status().code() != Errc::kNotFound;
      },
      bound, "probe");
  if (!status.is_ok()) return status;
  return found;
}

Result<bool> WorkerImpl::test(Request handle, RequestResult* result) {
  if (handle.is_completed()) return take_completed(result);
  std::lock_guard lock(mutex_);
  Result<bool> done = take_if_done_locked(handle, result);
  if (!done.is_ok() || *done) return done;
  (void)progress_locked();
  return take_if_done_locked(handle, result);
}

Result<bool> WorkerImpl::take_completed(RequestResult* result) {
  if (result) *result = RequestResult{};
  return true;
}

Result<bool> WorkerImpl::take_if_done_locked(Request handle, RequestResult* result) {
  if (handle.is_completed()) return take_completed(result);
  RequestSlot* request = find_request(handle.id());
  if (!request) {
    return Status(Errc::kInvalidArgument,
                  "not a live request (already completed and released, or never issued)");
  }
  if (!request->done) return false;
  if (result) *result = request->result;
  Status status = request->status;
  release(handle.id(), *request);
  if (!status.is_ok()) return status;
  return true;
}

Status WorkerImpl::progress_until(DoneCheck done, std::chrono::milliseconds bound,
                                  std::string_view what) {
  // Reading the clock costs more than a pass over an idle network (it was a quarter of a
  // small-message ping-pong), so a spinning wait reads it once every kPassesPerClockRead passes,
  // and a wait that is over within those passes (most waits of a ping-pong) never reads it: the
  // bound and the wait policy's phases start at the first read.
  constexpr uint32_t kPassesPerClockRead = 32;
  Clock::time_point now;
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point idle_since;
  for (uint32_t pass = 1;; ++pass) {
    int progressed;
    {
      std::lock_guard lock(mutex_);
      if (done()) return Status::ok();
      progressed = progress_locked();
    }
    if (pass % kPassesPerClockRead == 0) {
      now = Clock::now();
      if (pass == kPassesPerClockRead) {
        deadline = now + bound;
        idle_since = now;
      }
    }
    if (pass < kPassesPerClockRead) continue;
    if (now >= deadline) {
      return Status(Errc::kTimedOut, std::string(what) + " not done within " +
                                         std::to_string(bound.count()) + " ms");
    }
    if (progressed != 0) {
      idle_since = now;
      continue;
    }
    switch (wait_policy_.phase(now - idle_since)) {
      case WaitPolicy::Phase::kSpin:
        break;
      case WaitPolicy::Phase::kYield:
        sched_yield();
        now = Clock::now();
        break;
      case WaitPolicy::Phase::kSleep: {
        auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
        (void)wait_for_event(
            std::clamp(remaining, std::chrono::milliseconds(1), std::chrono::milliseconds(100)));
        now = Clock::now();
        break;
      }
    }
  }
}

Status WorkerImpl::wait(Request handle, RequestResult* result, std::chrono::milliseconds bound) {
  if (handle.is_completed()) return take_completed(result).status();
  Status outcome;
  Status status = progress_until(
      [&] {
        auto done = take_if_done_locked(handle, result);
        if (!done.is_ok()) {
          outcome = done.status();
          return true;
        }
        return *done;
      },
      bound, "request");
  return status.is_ok() ? outcome : status;
}

Status WorkerImpl::wait_all(std::span<Request> requests, std::span<RequestResult> results,
                            std::chrono::milliseconds bound) {
  if (!results.empty() && results.size() < requests.size()) {
    return Status(Errc::kInvalidArgument, "wait_all needs one result per request");
  }
  Status first_error;
  std::vector<bool> finished(requests.size(), false);
  size_t remaining = requests.size();
  Status status = progress_until(
      [&] {
        for (size_t i = 0; i < requests.size(); ++i) {
          if (finished[i]) continue;
          auto done = take_if_done_locked(requests[i], results.empty() ? nullptr : &results[i]);
          if (done.is_ok() && !*done) continue;
          if (!done.is_ok() && first_error.is_ok()) first_error = done.status();
          finished[i] = true;
          requests[i] = Request();
          --remaining;
        }
        return remaining == 0;
      },
      bound, "wait_all");
  return status.is_ok() ? first_error : status;
}

Status WorkerImpl::cancel(Request handle) {
  if (handle.is_completed()) return Status::ok();  // done before a cancel could take it back
  std::lock_guard lock(mutex_);
  RequestSlot* request = find_request(handle.id());
  if (!request) return Status(Errc::kInvalidArgument, "not a live request");
  if (request->done || request->started) return Status::ok();
  if (request->kind == RequestKind::kReceive) {
    posted_.remove(static_cast<uint32_t>(handle.id()));
  } else if (request->kind != RequestKind::kSend) {
    return Status::ok();  // RMA cannot be taken back once issued
  }
  request->result.cancelled = true;
  complete(handle.id(), *request, Status::ok());
  return Status::ok();
}

}  // namespace wv::transport
