#include "shm_connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "shm_cma.h"
#include "soft_device.h"
#include "wv/copy.h"

namespace wv::verbs::shm {

using soft::SendWorkRequest;
using soft::SoftConnectQueuePair;
using soft::WorkKind;

namespace {

constexpr auto kParkCheck = std::chrono::milliseconds(1);

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Copies `length` bytes at `offset` of a scattered buffer into `out` (the ring).
void gather_payload(const soft::Segment* segments, uint32_t count, uint64_t offset, std::byte* out,
                    uint64_t length) {
  for (uint32_t i = 0; i < count && length > 0; ++i) {
    if (offset >= segments[i].length) {
      offset -= segments[i].length;
      continue;
    }
    const uint64_t chunk = std::min<uint64_t>(length, segments[i].length - offset);
    copy_bytes(out, segments[i].address + offset, chunk);
    out += chunk;
    length -= chunk;
    offset = 0;
  }
}

// An RDMA write's payload landing in registered memory (the stand-in for the NIC's DMA).
void place_write(std::byte* host, const std::byte* payload, uint64_t length) {
  copy_bytes(host, payload, length);
}

bool valid_requester_status(uint32_t value) {
  return value > static_cast<uint32_t>(CompletionStatus::kSuccess) &&
         value <= static_cast<uint32_t>(CompletionStatus::kFatal);
}

// The peer's iovecs after an entry header: `count` of them, exactly filling the payload.
bool iovecs_of(const EntryHeader& header, const std::byte* payload, PullIovec* out) {
  if (header.count > soft::kMaxSge || header.length != header.count * sizeof(PullIovec)) {
    return false;
  }
  std::memcpy(out, payload, header.length);
  return true;
}

class SocketWatch final : public soft::PollHandler {
 public:
  explicit SocketWatch(std::weak_ptr<ShmConnection> connection)
      : connection_(std::move(connection)) {}
  void on_events(uint32_t events) override {
    if (auto connection = connection_.lock()) connection->on_socket_events(events);
  }
  void on_deadline() override {
    if (auto connection = connection_.lock()) connection->on_rnr_deadline();
  }

 private:
  std::weak_ptr<ShmConnection> connection_;
};

}  // namespace

// ---- ConnectionEvents ----

void ConnectionEvents::closed() {
  std::vector<Completer<void>> waiters;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    waiters.swap(waiters_);
  }
  for (auto& waiter : waiters) waiter.complete(Status::ok());
}

Operation<void> ConnectionEvents::wait_closed() {
  auto [operation, completer] = Operation<void>::make();
  std::lock_guard lock(mutex_);
  if (closed_) {
    completer.complete(Status::ok());
  } else {
    waiters_.push_back(completer);
  }
  return std::move(operation);
}

bool ConnectionEvents::is_closed() {
  std::lock_guard lock(mutex_);
  return closed_;
}

// ---- ShmConnection ----

ShmConnection::ShmConnection(std::unique_ptr<Segment> segment, int socket_fd, int doorbell_fd,
                             int peer_doorbell_fd, soft::Progress& progress,
                             const std::shared_ptr<SoftConnectQueuePair>& qp,
                             std::shared_ptr<ConnectionEvents> events,
                             const ConnectionOptions& options)
    : segment_(std::move(segment)),
      socket_fd_(socket_fd),
      doorbell_fd_(doorbell_fd),
      peer_doorbell_fd_(peer_doorbell_fd),
      progress_(progress),
      qp_(qp),
      events_(std::move(events)),
      options_(options),
      cma_(options.can_pull),
      cma_works_(options.cma_works),
      responses_(std::max<uint32_t>(options.inbound_read_depth, 1) + kMaxHeldWrites + 1) {
  if (options_.peer_keys) peer_memory_ = std::make_unique<PeerMemory>(options_.peer_pid);
  const int mine = options_.side;
  const int theirs = 1 - mine;
  SegmentHeader& header = segment_->header();
  const uint32_t bytes = segment_->ring_bytes();
  producer_ = RingProducer(&header.rings[mine], segment_->ring_data(mine), bytes);
  consumer_ = RingConsumer(&header.rings[theirs], segment_->ring_data(theirs), bytes);
  poller_.publish_to(&header.rings[theirs].consumer_polled_ns);
  max_payload_ = producer_.max_entry() - kEntryHeaderBytes;
  header.can_pull[mine].store(options_.can_pull    ? kPullEvery
                              : options_.cma_works ? kPullLone
                                                   : kPullNever,
                              std::memory_order_release);
}

ShmConnection::~ShmConnection() {
  ::close(socket_fd_);
  ::close(doorbell_fd_);
  ::close(peer_doorbell_fd_);
}

Status ShmConnection::start(soft::SoftCompletionQueue& send_cq,
                            soft::SoftCompletionQueue& receive_cq) {
  send_cq.add_progress_source(weak_from_this());
  if (&receive_cq != &send_cq) receive_cq.add_progress_source(weak_from_this());
  socket_watch_ = std::make_shared<SocketWatch>(weak_from_this());
  if (Status status = progress_.add(doorbell_fd_, EPOLLIN, shared_from_this()); !status) {
    return status;
  }
  if (Status status = progress_.add(socket_fd_, EPOLLRDHUP, socket_watch_); !status) {
    return status;
  }
  // Arms the doorbell (and serves anything the peer sent before this side was watching).
  progress_.post([self = shared_from_this()] { self->service(); });
  return Status::ok();
}

void ShmConnection::close() {
  if (closed_.exchange(true)) return;
  ::shutdown(socket_fd_, SHUT_RDWR);
  progress_.remove(doorbell_fd_);
  progress_.remove(socket_fd_);
  events_->closed();
}

void ShmConnection::ring_peer() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(peer_doorbell_fd_, &one, sizeof(one));
}

void ShmConnection::ring_self() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(doorbell_fd_, &one, sizeof(one));
}

// ---- transmit ----

void ShmConnection::kick_locked(SoftConnectQueuePair& qp) {
  pump_locked(qp);
}

bool ShmConnection::transmit_at_once_locked(SendWorkRequest& request) {
  // Sends and writes that fit one entry: they complete once in the ring (or stored in the
  // peer's mapped memory) and never wait for a pull. With nothing else waiting to go out, going
  // now keeps every ordering rule of the pump.
  if (request.is_read_like() || request.kind == WorkKind::kBindWindow ||
      request.kind == WorkKind::kLocalInvalidate || request.length > max_payload_ ||
      request.length >= kPullThreshold) {
    return false;
  }
  if (closed_.load(std::memory_order_relaxed) || current_ != nullptr || held_count_ > 0 ||
      responses_count_ > 0 || tx_blocked_.load(std::memory_order_relaxed)) {
    return false;
  }
  bool ring = false;
  const Emit emitted = emit_request_locked(request, true, &ring);
  if (ring) ring_peer();
  if (emitted == Emit::kFull) return false;  // nothing of it went: the pump retries it
  if (request.kind != WorkKind::kSend && request.kind != WorkKind::kSendWithImmediate) {
    ordered_head_ = producer_.head();  // it changes the peer's memory or keys
  }
  return true;
}

void ShmConnection::receive_posted() {
  // Only a receiver-not-ready stall needs the progress thread to look again, and only when no
  // application thread polls: a poller's next poll resumes the ring itself (a poller that goes
  // to sleep hands the connection back to the progress thread, see poller_sleeping()).
  if (rnr_stalled_.load(std::memory_order_acquire) && !poller_.active()) ring_self();
}

std::byte* ShmConnection::reserve_locked(uint32_t payload, EntryHeader& header, bool compact) {
  const uint32_t bytes = entry_bytes(payload, compact);
  bool malformed = false;
  std::byte* at = producer_.reserve(bytes, &malformed);
  if (at == nullptr) {
    blocked_bytes_ = malformed ? 0 : bytes;
    return nullptr;
  }
  header.size = bytes;
  header.length = payload;
  return at;
}

bool ShmConnection::commit_locked(const EntryHeader& header) {
  return producer_.commit(header);
}

ShmConnection::Emit ShmConnection::emit_request_locked(SendWorkRequest& request, bool lone,
                                                       bool* ring) {
  EntryHeader header{};
  switch (request.kind) {
    case WorkKind::kSend:
    case WorkKind::kSendWithImmediate:
    case WorkKind::kSendWithInvalidate:
    case WorkKind::kWrite:
    case WorkKind::kWriteWithImmediate: {
      const bool send = request.kind == WorkKind::kSend ||
                        request.kind == WorkKind::kSendWithImmediate ||
                        request.kind == WorkKind::kSendWithInvalidate;
      const bool immediate = request.kind == WorkKind::kSendWithImmediate ||
                             request.kind == WorkKind::kWriteWithImmediate;
      if (!send && write_directly_locked(request)) return Emit::kCompleted;
      const bool inline_data =
          request.segment_count == 1 && request.segments[0].address == request.inline_data.data();
      if (!send && request.length >= kPullThreshold && !inline_data &&
          pulls_write_locked(request, lone)) {
        // The target copies the whole write itself.
        const uint32_t count = request.segment_count;
        std::byte* at = reserve_locked(count * sizeof(PullIovec), header);
        if (at == nullptr) return Emit::kFull;
        header.type = static_cast<uint8_t>(EntryType::kWritePull);
        header.flags = immediate ? entry_flags::kImmediate : 0;
        header.count = static_cast<uint16_t>(count);
        header.key = request.remote.rkey;
        header.address = request.remote.address;
        header.value = request.length;
        header.immediate = request.immediate;
        request.wire_tag = ++tag_sequence_;
        header.tag = request.wire_tag;
        for (uint32_t i = 0; i < count; ++i) {
          const PullIovec iov{reinterpret_cast<uint64_t>(request.segments[i].address),
                              request.segments[i].length};
          std::memcpy(at + kEntryHeaderBytes + i * sizeof(PullIovec), &iov, sizeof(iov));
        }
        *ring |= commit_locked(header);
        return Emit::kHeld;
      }
      // A whole send without immediate data needs none of the fields past the compact header.
      const bool compact =
          send && !immediate && request.transmitted_bytes == 0 && request.length <= max_payload_;
      do {
        const uint64_t offset = request.transmitted_bytes;
        const auto chunk =
            static_cast<uint32_t>(std::min<uint64_t>(max_payload_, request.length - offset));
        std::byte* at = reserve_locked(chunk, header, compact);
        if (at == nullptr) return Emit::kFull;
        const bool last = offset + chunk == request.length;
        header.type = static_cast<uint8_t>(send ? EntryType::kSend : EntryType::kWrite);
        if (compact) header.type |= kCompactType;
        header.flags = static_cast<uint8_t>((offset == 0 ? entry_flags::kFirst : 0) |
                                            (last ? entry_flags::kLast : 0) |
                                            (immediate ? entry_flags::kImmediate : 0));
        if (request.kind == WorkKind::kSendWithInvalidate) {
          header.flags |= entry_flags::kInvalidate;
          header.key = request.immediate;
        } else if (!send) {
          header.key = request.remote.rkey;
        }
        if (request.solicited) header.flags |= entry_flags::kSolicited;
        header.immediate = request.kind == WorkKind::kSendWithInvalidate ? 0 : request.immediate;
        header.address = send ? offset : request.remote.address + offset;
        header.value = request.length;
        gather_payload(request.segments.data(), request.segment_count, offset,
                       at + header_bytes(header.type), chunk);
        *ring |= commit_locked(header);
        request.transmitted_bytes = offset + chunk;
      } while (request.transmitted_bytes < request.length);
      return Emit::kDone;
    }
    case WorkKind::kRead: {
      if (read_directly_locked(request, lone)) return Emit::kCompleted;
      // A large read is copied once, by CMA, where it works: by the target when it comes alone
      // (it ends sooner: the target's source is warm; btl/wv 1 MiB ping-pong 82 against 88-89
      // us pulled), by this side when a stream measured pulls faster than the ring
      // (TransferPathChooser); the ring carries the rest. Reads the target may push name their
      // sink.
      const bool grant = options_.cma_works && request.length >= kPullThreshold &&
                         (cma_.load(std::memory_order_relaxed) ||
                          (!lone && request.length >= kLonePushThreshold &&
                           read_paths_.next(request.length) == TransferPathChooser::Path::kCma));
      const uint32_t count = !grant && request.length >= kPullThreshold ? request.segment_count : 0;
      std::byte* at = reserve_locked(count * sizeof(PullIovec), header);
      if (at == nullptr) return Emit::kFull;
      header.type = static_cast<uint8_t>(EntryType::kReadRequest);
      header.flags = grant                                          ? entry_flags::kGrantRead
                     : lone && request.length >= kLonePushThreshold ? entry_flags::kPushRead
                                                                    : 0;
      header.count = static_cast<uint16_t>(count);
      header.key = request.remote.rkey;
      header.address = request.remote.address;
      header.value = request.length;
      request.wire_tag = ++tag_sequence_;
      header.tag = request.wire_tag;
      for (uint32_t i = 0; i < count; ++i) {
        const PullIovec iov{reinterpret_cast<uint64_t>(request.segments[i].address),
                            request.segments[i].length};
        std::memcpy(at + kEntryHeaderBytes + i * sizeof(PullIovec), &iov, sizeof(iov));
      }
      *ring |= commit_locked(header);
      return Emit::kDone;
    }
    case WorkKind::kCompareAndSwap:
    case WorkKind::kFetchAndAdd: {
      std::byte* at = reserve_locked(sizeof(uint64_t), header);
      if (at == nullptr) return Emit::kFull;
      header.type = static_cast<uint8_t>(EntryType::kAtomic);
      header.flags = request.kind == WorkKind::kCompareAndSwap ? entry_flags::kCompareSwap : 0;
      header.key = request.remote.rkey;
      header.address = request.remote.address;
      header.value = request.compare;
      request.wire_tag = ++tag_sequence_;
      header.tag = request.wire_tag;
      std::memcpy(at + kEntryHeaderBytes, &request.operand, sizeof(uint64_t));
      *ring |= commit_locked(header);
      return Emit::kDone;
    }
    case WorkKind::kBindWindow:
    case WorkKind::kLocalInvalidate:
      return Emit::kDone;  // applied by the engine; never reaches the wire
  }
  return Emit::kDone;
}

bool ShmConnection::pulls_write_locked(const SendWorkRequest& request, bool lone) {
  const uint32_t peer_pulls =
      segment_->header().can_pull[1 - options_.side].load(std::memory_order_acquire);
  if (peer_pulls == kPullEvery) return true;
  // Part of it went through the ring already (the ring filled).
  if (peer_pulls != kPullLone || request.length < kLonePushThreshold ||
      request.transmitted_bytes > 0) {
    return false;
  }
  // A ring write completes once in the ring, so only the ring shows whether earlier ones are
  // still in flight (then this one is part of a stream).
  if (lone && producer_.drained()) return true;
  if (!write_path_) write_path_ = write_paths_.next(request.length);
  return *write_path_ == TransferPathChooser::Path::kCma;
}

void ShmConnection::write_finished_locked(SoftConnectQueuePair& qp, uint64_t length,
                                          TransferPathChooser::Path path) {
  const bool measured = length >= kLonePushThreshold &&
                        (path == TransferPathChooser::Path::kCma ||
                         ring_bytes_since_pull_ >= uint64_t{2} * producer_.capacity());
  write_paths_.finished(measured ? std::optional(path) : std::nullopt, length, now_ns(),
                        held_count_ > 0 || current_ != nullptr || qp.more_to_transmit_locked());
}

SendWorkRequest* ShmConnection::take_held_locked() {
  SendWorkRequest* write = held_[held_head_];
  held_head_ = (held_head_ + 1) % kMaxHeldWrites;
  --held_count_;
  return write;
}

std::byte* ShmConnection::peer_mapping_locked(const SendWorkRequest& request, Access access,
                                              PeerKeys::Grant* grant) {
  // The ring's tail is the last look: in a ping-pong its line comes from the peer's core.
  if (!peer_memory_ || request.length == 0 ||
      !options_.peer_keys->check(request.remote.rkey, request.remote.address, request.length,
                                 access, options_.peer_domain, options_.peer_qp_number, grant) ||
      grant->shared_fd < 0 || !producer_.delivered(ordered_head_)) {
    return nullptr;
  }
  return peer_memory_->map(*options_.peer_keys, request.remote.rkey, *grant, request.remote.address,
                           request.length);
}

Result<std::unique_ptr<RemoteMapping>> ShmConnection::map_remote_locked(RemoteAddress remote,
                                                                        uint64_t length,
                                                                        Access access) {
  if (length == 0 || (access & (Access::kRemoteRead | Access::kRemoteWrite)) == Access::kNone) {
    return Status(Errc::kInvalidArgument,
                  "map_remote needs a length and remote read or write access");
  }
  if (!options_.peer_keys) {
    // No key mirror: cross-memory attach is off (shm_cma=off) or refused for this peer.
    return Status(Errc::kNotSupported,
                  "the peer's memory cannot be mapped: cross-memory attach is off or refused");
  }
  PeerKeys::Grant grant;
  if (!options_.peer_keys->check(remote.rkey, remote.address, length, access, options_.peer_domain,
                                 options_.peer_qp_number, &grant)) {
    return Status(Errc::kPermissionDenied, "key " + std::to_string(remote.rkey) +
                                               " does not grant that access to " +
                                               std::to_string(length) + " bytes at that address");
  }
  // peer_memory_ exists with the key mirror.
  std::unique_ptr<RemoteMapping> mapping =
      peer_memory_->map_kept(*options_.peer_keys, remote.rkey, grant, remote.address, length);
  if (!mapping) {
    return Status(Errc::kNotSupported,
                  "the peer's memory cannot be mapped (not from allocate_memory, or this process "
                  "may not take the peer's files)");
  }
  return mapping;
}

bool ShmConnection::write_directly_locked(const SendWorkRequest& request) {
  if (request.kind != WorkKind::kWrite || request.transmitted_bytes != 0) return false;
  PeerKeys::Grant grant;
  std::byte* to = peer_mapping_locked(request, Access::kRemoteWrite, &grant);
  if (to == nullptr) return false;
  // A deregistration racing with the copy cannot hurt: the pages stay this mapping's until it
  // goes (shm_peer_memory.h); the write completes, as one a NIC placed just in time would.
  gather_payload(request.segments.data(), request.segment_count, 0, to, request.length);
  return true;
}

bool ShmConnection::read_directly_locked(const SendWorkRequest& request, bool lone) {
  if (!options_.peer_keys) return false;
  PeerKeys::Grant grant;
  if (const std::byte* from = peer_mapping_locked(request, Access::kRemoteRead, &grant)) {
    soft::scatter(request.segments.data(), request.segment_count, 0, from, request.length);
    return options_.peer_keys->unchanged(request.remote.rkey, grant.sequence);
  }
  if (!lone || request.length == 0 || request.length > kDirectReadMax ||
      now_ns() - read_paths_.last_done_ns() < kDirectReadGap.count() ||
      soft::PollerPresence::recent(producer_.consumer_polled_ns(), kPeerPollingWindow) ||
      !producer_.delivered(ordered_head_) ||
      !options_.peer_keys->check(request.remote.rkey, request.remote.address, request.length,
                                 Access::kRemoteRead, options_.peer_domain, options_.peer_qp_number,
                                 &grant)) {
    return false;
  }
  // A failed copy (the peer's memory unmapped, the peer gone) is the ring path's to report.
  return pull_into(request, 0, request.length, request.remote.address) &&
         options_.peer_keys->unchanged(request.remote.rkey, grant.sequence);
}

bool ShmConnection::emit_response_locked(Response& response, bool* ring) {
  EntryHeader header{};
  header.tag = response.tag;
  switch (response.kind) {
    case Response::Kind::kReadData:
      do {
        const uint64_t offset = response.sent;
        const auto chunk =
            static_cast<uint32_t>(std::min<uint64_t>(max_payload_, response.length - offset));
        std::byte* at = reserve_locked(chunk, header);
        if (at == nullptr) return false;
        header.type = static_cast<uint8_t>(EntryType::kReadData);
        header.flags = offset + chunk == response.length ? entry_flags::kLast : 0;
        header.address = offset;
        if (chunk > 0) copy_bytes(at + kEntryHeaderBytes, response.source + offset, chunk);
        *ring |= commit_locked(header);
        response.sent = offset + chunk;
      } while (response.sent < response.length);
      return true;
    case Response::Kind::kReadDone:
    case Response::Kind::kReadGrant:
    case Response::Kind::kAtomicReply:
    case Response::Kind::kWriteDone: {
      std::byte* at = reserve_locked(0, header);
      if (at == nullptr) return false;
      header.type = static_cast<uint8_t>(
          response.kind == Response::Kind::kReadDone      ? EntryType::kReadDone
          : response.kind == Response::Kind::kReadGrant   ? EntryType::kReadGrant
          : response.kind == Response::Kind::kAtomicReply ? EntryType::kAtomicReply
                                                          : EntryType::kWriteDone);
      header.value = response.value;
      if (response.kind == Response::Kind::kReadGrant) {
        header.address = reinterpret_cast<uint64_t>(response.source);
      }
      *ring |= commit_locked(header);
      return true;
    }
  }
  return true;
}

void ShmConnection::pump_locked(SoftConnectQueuePair& qp) {
  bool ring = false;
  for (;;) {
    if (closed_) break;
    bool full = false;
    while (responses_count_ > 0) {
      if (!emit_response_locked(responses_[responses_head_], &ring)) {
        full = true;
        break;
      }
      responses_head_ = (responses_head_ + 1) % responses_.size();
      --responses_count_;
    }
    while (!full && held_count_ < kMaxHeldWrites && !closed_) {
      SendWorkRequest* request = current_ != nullptr ? current_ : qp.next_to_transmit_locked();
      if (request == nullptr) break;
      current_ = request;
      const Emit emitted = emit_request_locked(*request, qp.transmitting_alone_locked(), &ring);
      if (emitted == Emit::kFull) {
        full = true;
        break;
      }
      current_ = nullptr;
      write_path_.reset();
      if (request->kind != WorkKind::kRead && request->kind != WorkKind::kSend &&
          request->kind != WorkKind::kSendWithImmediate) {
        ordered_head_ = producer_.head();  // it changes the peer's memory or keys
      }
      if (emitted == Emit::kHeld) {
        held_[(held_head_ + held_count_) % kMaxHeldWrites] = request;
        ++held_count_;
        ring_bytes_since_pull_ = 0;
        qp.transmitted_locked(*request, true);
        continue;
      }
      const bool write =
          request->kind == WorkKind::kWrite || request->kind == WorkKind::kWriteWithImmediate;
      const uint64_t length = request->length;
      qp.transmitted_locked(*request);
      if (emitted == Emit::kCompleted) {
        if (!write) {
          qp.response_arrived_locked(*request, CompletionStatus::kSuccess);
          read_finished_locked(qp, length, std::nullopt);
        }
      } else if (write && length >= kLonePushThreshold) {
        ring_bytes_since_pull_ += length;
        write_finished_locked(qp, length, TransferPathChooser::Path::kRing);
      }
    }
    if (!full || closed_) {
      tx_blocked_.store(false, std::memory_order_relaxed);
      break;
    }
    if (blocked_bytes_ == 0) {
      if (ring) ring_peer();
      qp.fail_by_wire_locked(*this, CompletionStatus::kTransportError,
                             "the peer wrote an impossible ring index (malformed shared memory)");
      return;
    }
    // The ring is full. A poller retries at its next poll, so no doorbell is owed (each one
    // woke this side's progress thread, on the poller's own CPU when pinned: 4-5 per 1 MiB
    // message); parked, the progress thread takes over if the poller leaves. Without one, ask
    // the peer for a doorbell when it frees space, unless it just did.
    const bool polled = poller_.active();
    if (polled) park();
    if (polled || !producer_.wait_for_space(blocked_bytes_)) {
      tx_blocked_.store(true, std::memory_order_relaxed);
      break;
    }
  }
  if (ring) ring_peer();
}

bool ShmConnection::queue_response_locked(SoftConnectQueuePair& qp, const Response& response) {
  if (responses_count_ == responses_.size()) return false;
  responses_[(responses_head_ + responses_count_) % responses_.size()] = response;
  ++responses_count_;
  pump_locked(qp);
  return true;
}

// ---- receive ----

bool ShmConnection::drain(SoftConnectQueuePair& qp) {
  // A producer on another core can keep the ring from ever running empty: after a ring's worth
  // the caller gets the thread back (a poll returns; the progress thread looks for a poller).
  uint64_t consumed = 0;
  for (;;) {
    if (closed_) return false;
    if (consumed >= segment_->ring_bytes()) return true;
    if (rnr_stalled_.load(std::memory_order_relaxed)) {
      if (!qp.has_receive()) return false;
      // The deadline stays armed: on_rnr_deadline() finds the stall over, or a later one.
      rnr_stalled_.store(false, std::memory_order_relaxed);
    }
    EntryHeader header;
    const std::byte* payload = nullptr;
    const char* why = "";
    switch (consumer_.peek(header, &payload, &why)) {
      case RingConsumer::Peek::kEmpty:
        return false;
      case RingConsumer::Peek::kMalformed:
        malformed(qp, why);
        return false;
      case RingConsumer::Peek::kEntry:
        break;
    }
    const Outcome outcome = handle(qp, header, payload);
    if (outcome != Outcome::kDone) return false;
    consumed += header.size;
    if (consumer_.release(header)) ring_peer();
  }
}

ShmConnection::Outcome ShmConnection::handle(SoftConnectQueuePair& qp, const EntryHeader& header,
                                             const std::byte* payload) {
  switch (static_cast<EntryType>(header.type)) {
    case EntryType::kSend:
      return on_send(qp, header, payload);
    case EntryType::kWrite:
      return on_write(qp, header, payload);
    case EntryType::kWritePull:
      return on_write_pull(qp, header, payload);
    case EntryType::kReadRequest:
      return on_read_request(qp, header, payload);
    case EntryType::kAtomic:
      return on_atomic(qp, header, payload);
    case EntryType::kReadData:
    case EntryType::kReadDone:
    case EntryType::kReadGrant:
    case EntryType::kAtomicReply:
    case EntryType::kWriteDone:
      return on_response(qp, header, payload);
    case EntryType::kTerminate:
      return on_terminate(qp, header, payload);
    case EntryType::kPad:
    case EntryType::kDatagram:  // datagram channels only
      break;
  }
  return malformed(qp, "ring entry of unknown type " + std::to_string(header.type));
}

ShmConnection::Outcome ShmConnection::stall(SoftConnectQueuePair& qp) {
  rnr_stalled_.store(true, std::memory_order_release);
  stall_began_ = soft::Progress::Clock::now();
  // One deadline at a time: a sender far ahead of its receiver stalls once per message, and
  // arming from an application thread wakes the progress thread (a system call each).
  if (!rnr_deadline_armed_) {
    rnr_deadline_armed_ = true;
    progress_.set_deadline(socket_fd_,
                           stall_began_ + std::chrono::milliseconds(options_.rnr_timeout_ms));
  }
  // A receive posted between the failed take and the flag found no stall to wake.
  if (qp.has_receive()) ring_self();
  return Outcome::kStall;
}

ShmConnection::Outcome ShmConnection::on_send(SoftConnectQueuePair& qp, const EntryHeader& header,
                                              const std::byte* payload) {
  const bool first = (header.flags & entry_flags::kFirst) != 0;
  if (!receiving_) {
    if (!first || header.address != 0) {
      return malformed(qp, "send fragment without the start of its message");
    }
    if (!qp.take_receive(*this, receive_)) return stall(qp);
    receiving_ = true;
    receive_offset_ = 0;
  } else if (first || header.address != receive_offset_) {
    return malformed(qp, "send fragment out of sequence");
  }
  if (receive_offset_ + header.length > receive_.capacity) {
    receiving_ = false;
    qp.complete_receive(receive_, Opcode::kReceive, 0, CompletionStatus::kLocalLengthError,
                        CompletionFlags::kNone, 0, 0, false);
    terminate(qp, false, CompletionStatus::kRemoteInvalidRequest, CompletionStatus::kFlushed,
              "message longer than the receive buffer of " + std::to_string(receive_.capacity) +
                  " bytes");
    return Outcome::kFailed;
  }
  if (header.length > 0 && !soft::scatter(receive_.segments.data(), receive_.segment_count,
                                          receive_offset_, payload, header.length)) {
    return malformed(qp, "send payload beyond its receive buffer");
  }
  receive_offset_ += header.length;
  if ((header.flags & entry_flags::kLast) == 0) return Outcome::kDone;
  receiving_ = false;
  CompletionFlags flags = CompletionFlags::kNone;
  CompletionStatus status = CompletionStatus::kSuccess;
  uint32_t invalidated = 0;
  if ((header.flags & entry_flags::kImmediate) != 0)
    flags = flags | CompletionFlags::kWithImmediate;
  if ((header.flags & entry_flags::kInvalidate) != 0) {
    if (qp.invalidate_remote(header.key) == soft::KeyCheck::kOk) {
      flags = flags | CompletionFlags::kWithInvalidate;
      invalidated = header.key;
    } else {
      status = CompletionStatus::kRemoteInvalidRequest;
    }
  }
  qp.complete_receive(receive_, Opcode::kReceive, static_cast<uint32_t>(receive_offset_), status,
                      flags, header.immediate, invalidated,
                      (header.flags & entry_flags::kSolicited) != 0);
  if (status != CompletionStatus::kSuccess) {
    terminate(qp, false, CompletionStatus::kRemoteInvalidRequest, CompletionStatus::kFlushed,
              "send with invalidate named a key this QP cannot invalidate");
    return Outcome::kFailed;
  }
  return Outcome::kDone;
}

ShmConnection::Outcome ShmConnection::on_write(SoftConnectQueuePair& qp, const EntryHeader& header,
                                               const std::byte* payload) {
  const bool first = (header.flags & entry_flags::kFirst) != 0;
  // The first fragment checks the whole write, so a refused write writes nothing at all.
  if (first && header.value > 0) {
    void* host = nullptr;
    const soft::KeyCheck check =
        qp.resolve(header.key, header.address, header.value, Access::kRemoteWrite, &host);
    if (check != soft::KeyCheck::kOk) {
      terminate(qp, false, CompletionStatus::kRemoteAccessError, CompletionStatus::kFlushed,
                "RDMA write refused: " + std::string(to_string(check)));
      return Outcome::kFailed;
    }
  }
  if (header.length > 0) {
    void* host = nullptr;
    const soft::KeyCheck check =
        qp.resolve(header.key, header.address, header.length, Access::kRemoteWrite, &host);
    if (check != soft::KeyCheck::kOk) {
      terminate(qp, false, CompletionStatus::kRemoteAccessError, CompletionStatus::kFlushed,
                "RDMA write refused: " + std::string(to_string(check)));
      return Outcome::kFailed;
    }
    place_write(static_cast<std::byte*>(host), payload, header.length);
  }
  if ((header.flags & entry_flags::kLast) == 0 || (header.flags & entry_flags::kImmediate) == 0) {
    return Outcome::kDone;
  }
  // Placing the data again after a stall is harmless: the same bytes land in the same place.
  soft::ReceiveWorkRequest receive;
  if (!qp.take_receive(*this, receive)) return stall(qp);
  qp.complete_receive(receive, Opcode::kReceiveRdmaWithImmediate,
                      static_cast<uint32_t>(header.value), CompletionStatus::kSuccess,
                      CompletionFlags::kWithImmediate, header.immediate, 0,
                      (header.flags & entry_flags::kSolicited) != 0);
  return Outcome::kDone;
}

ShmConnection::Outcome ShmConnection::on_write_pull(SoftConnectQueuePair& qp,
                                                    const EntryHeader& header,
                                                    const std::byte* payload) {
  PullIovec source[soft::kMaxSge];
  if (!iovecs_of(header, payload, source)) return malformed(qp, "pulled write with bad iovecs");
  if (!pull_done_ && header.value > 0) {
    void* host = nullptr;
    const soft::KeyCheck check =
        qp.resolve(header.key, header.address, header.value, Access::kRemoteWrite, &host);
    if (check != soft::KeyCheck::kOk) {
      terminate(qp, false, CompletionStatus::kRemoteAccessError, CompletionStatus::kFlushed,
                "RDMA write refused: " + std::string(to_string(check)));
      return Outcome::kFailed;
    }
    if (!cma_.load(std::memory_order_relaxed) && !cma_works_) {
      return malformed(qp, "the peer asked for a pulled write this side never offered");
    }
    if (Status status = cma_copy(options_.peer_pid, false, static_cast<std::byte*>(host),
                                 header.value, source, header.count);
        !status) {
      terminate(qp, false, CompletionStatus::kRemoteOperationError,
                CompletionStatus::kTransportError, "pulling an RDMA write: " + status.message());
      return Outcome::kFailed;
    }
  }
  pull_done_ = true;
  if ((header.flags & entry_flags::kImmediate) != 0) {
    soft::ReceiveWorkRequest receive;
    if (!qp.take_receive(*this, receive)) return stall(qp);
    qp.complete_receive(receive, Opcode::kReceiveRdmaWithImmediate,
                        static_cast<uint32_t>(header.value), CompletionStatus::kSuccess,
                        CompletionFlags::kWithImmediate, header.immediate, 0, false);
  }
  pull_done_ = false;
  Response response{};
  response.kind = Response::Kind::kWriteDone;
  response.tag = header.tag;
  std::unique_lock lock(qp.mutex());
  if (!queue_response_locked(qp, response)) {
    lock.unlock();
    return malformed(qp, "the peer has more requests outstanding than it may");
  }
  return Outcome::kDone;
}

ShmConnection::Outcome ShmConnection::on_read_request(SoftConnectQueuePair& qp,
                                                      const EntryHeader& header,
                                                      const std::byte* payload) {
  PullIovec sink[soft::kMaxSge];
  if (!iovecs_of(header, payload, sink)) return malformed(qp, "read request with bad iovecs");
  if (header.value > (uint64_t{1} << 31)) return malformed(qp, "read request too long");
  void* host = nullptr;
  if (header.value > 0) {
    const soft::KeyCheck check =
        qp.resolve(header.key, header.address, header.value, Access::kRemoteRead, &host);
    if (check != soft::KeyCheck::kOk) {
      terminate(qp, true, CompletionStatus::kRemoteAccessError, CompletionStatus::kFlushed,
                "RDMA read refused: " + std::string(to_string(check)));
      return Outcome::kFailed;
    }
  }
  Response response{};
  response.tag = header.tag;
  response.kind = Response::Kind::kReadData;
  response.source = static_cast<const std::byte*>(host);
  response.length = header.value;
  const bool push = cma_.load(std::memory_order_relaxed) ||
                    (cma_works_ && (header.flags & entry_flags::kPushRead) != 0);
  if ((header.flags & entry_flags::kGrantRead) != 0) {
    response.kind = Response::Kind::kReadGrant;  // the requester copies the checked range
    response.value = header.value;
  } else if (header.count > 0 && header.value > 0 && push) {
    Status status = cma_copy(options_.peer_pid, true, static_cast<std::byte*>(host), header.value,
                             sink, header.count);
    if (status) {
      response.kind = Response::Kind::kReadDone;
    } else if (status.message().find("Operation not permitted") != std::string::npos) {
      cma_.store(false, std::memory_order_relaxed);  // the ring carries it from now on
      cma_works_ = false;
    } else {
      terminate(qp, true, CompletionStatus::kRemoteOperationError,
                CompletionStatus::kTransportError, "pushing an RDMA read: " + status.message());
      return Outcome::kFailed;
    }
  }
  std::unique_lock lock(qp.mutex());
  if (!queue_response_locked(qp, response)) {
    lock.unlock();
    terminate(
        qp, true, CompletionStatus::kRemoteOperationError, CompletionStatus::kFlushed,
        "the peer exceeded the inbound read depth of " + std::to_string(qp.inbound_read_depth()));
    return Outcome::kFailed;
  }
  return Outcome::kDone;
}

ShmConnection::Outcome ShmConnection::on_atomic(SoftConnectQueuePair& qp, const EntryHeader& header,
                                                const std::byte* payload) {
  if (header.length != sizeof(uint64_t)) return malformed(qp, "atomic without its operand");
  uint64_t operand = 0;
  std::memcpy(&operand, payload, sizeof(operand));
  void* host = nullptr;
  soft::KeyCheck check = qp.resolve(header.key, header.address, 8, Access::kRemoteAtomic, &host);
  if (check == soft::KeyCheck::kOk && header.address % 8 != 0) check = soft::KeyCheck::kBounds;
  if (check != soft::KeyCheck::kOk) {
    terminate(qp, true, CompletionStatus::kRemoteAccessError, CompletionStatus::kFlushed,
              "atomic refused: " + std::string(to_string(check)));
    return Outcome::kFailed;
  }
  std::atomic_ref<uint64_t> target(*static_cast<uint64_t*>(host));
  uint64_t original;
  if ((header.flags & entry_flags::kCompareSwap) != 0) {
    original = header.value;
    target.compare_exchange_strong(original, operand);
  } else {
    original = target.fetch_add(operand);
  }
  Response response{};
  response.kind = Response::Kind::kAtomicReply;
  response.tag = header.tag;
  response.value = original;
  std::unique_lock lock(qp.mutex());
  if (!queue_response_locked(qp, response)) {
    lock.unlock();
    terminate(qp, true, CompletionStatus::kRemoteOperationError, CompletionStatus::kFlushed,
              "the peer exceeded the inbound read depth");
    return Outcome::kFailed;
  }
  return Outcome::kDone;
}

ShmConnection::Outcome ShmConnection::on_response(SoftConnectQueuePair& qp,
                                                  const EntryHeader& header,
                                                  const std::byte* payload) {
  std::unique_lock lock(qp.mutex());
  // A QP that failed meanwhile (and closed this connection) has flushed the request; its slot
  // may be reused already, by a later connection of the same QP.
  if (closed_) return Outcome::kDone;
  const auto type = static_cast<EntryType>(header.type);
  if (type == EntryType::kWriteDone) {
    if (held_count_ == 0 || held_[held_head_]->wire_tag != header.tag || header.length != 0) {
      lock.unlock();
      return malformed(qp, "write acknowledgement that matches no pulled write");
    }
    SendWorkRequest* write = take_held_locked();
    const uint64_t length = write->length;
    qp.write_copied_locked(*write);
    write_finished_locked(qp, length, TransferPathChooser::Path::kCma);
    pump_locked(qp);
    return Outcome::kDone;
  }
  const bool atomic = type == EntryType::kAtomicReply;
  std::optional<TransferPathChooser::Path> path;  // how a read's data came, if this side knows
  SendWorkRequest* request = qp.oldest_pending_locked(atomic);
  if (request == nullptr || request->wire_tag != header.tag) {
    lock.unlock();
    return malformed(qp, "response that matches no outstanding read or atomic");
  }
  if (atomic) {
    if (header.length != 0) {
      lock.unlock();
      return malformed(qp, "atomic reply with a payload");
    }
    std::memcpy(request->segments[0].address, &header.value, sizeof(uint64_t));
  } else if (type == EntryType::kReadData) {
    if (header.address > request->length || header.length > request->length - header.address ||
        !soft::scatter(request->segments.data(), request->segment_count, header.address, payload,
                       header.length)) {
      lock.unlock();
      return malformed(qp, "read data beyond its read");
    }
    if ((header.flags & entry_flags::kLast) == 0) return Outcome::kDone;
    path = TransferPathChooser::Path::kRing;
  } else if (header.length != 0) {
    lock.unlock();
    return malformed(qp, "read completion with a payload");
  } else if (type == EntryType::kReadGrant) {
    if (header.value != request->length || !options_.cma_works) {
      lock.unlock();
      return malformed(qp, "read grant this side did not ask for");
    }
    Status status;
    if (!pull_read(qp, lock, header.tag, header.address, &status)) {
      if (status) return Outcome::kDone;  // flushed meanwhile
      lock.unlock();
      terminate(qp, false, CompletionStatus::kRemoteOperationError,
                CompletionStatus::kTransportError, "pulling an RDMA read: " + status.message());
      return Outcome::kFailed;
    }
    request = qp.oldest_pending_locked(false);
    path = TransferPathChooser::Path::kCma;
  }
  const uint64_t length = request->length;
  qp.response_arrived_locked(*request, CompletionStatus::kSuccess);
  if (!atomic) read_finished_locked(qp, length, path);
  pump_locked(qp);
  return Outcome::kDone;
}

bool ShmConnection::pull_read(SoftConnectQueuePair& qp, std::unique_lock<SpinLock>& lock,
                              uint64_t tag, uint64_t source, Status* status) {
  // A piece at a time: the QP lock is not held for a whole large copy, and a read flushed
  // between pieces (its buffer the application's again) is not written further.
  constexpr uint64_t kPiece = uint64_t{256} * 1024;
  for (uint64_t done = 0;;) {
    SendWorkRequest* read = qp.oldest_pending_locked(false);
    if (closed_ || read == nullptr || read->wire_tag != tag) return false;
    if (done == read->length) return true;
    const uint64_t piece = std::min(kPiece, read->length - done);
    *status = pull_into(*read, done, piece, source + done);
    if (!*status) return false;
    done += piece;
    lock.unlock();
    lock.lock();
  }
}

Status ShmConnection::pull_into(const SendWorkRequest& read, uint64_t offset, uint64_t length,
                                uint64_t source) const {
  for (uint32_t i = 0; i < read.segment_count && length > 0; ++i) {
    const soft::Segment& segment = read.segments[i];
    if (offset >= segment.length) {
      offset -= segment.length;
      continue;
    }
    const uint64_t chunk = std::min<uint64_t>(length, segment.length - offset);
    const PullIovec from{source, chunk};
    if (Status status =
            cma_copy(options_.peer_pid, false, segment.address + offset, chunk, &from, 1);
        !status) {
      return status;
    }
    source += chunk;
    length -= chunk;
    offset = 0;
  }
  if (length > 0)
    return Status(Errc::kProtocolError, "the read's buffers are shorter than the read");
  return Status::ok();
}

void ShmConnection::read_finished_locked(SoftConnectQueuePair& qp, uint64_t length,
                                         std::optional<TransferPathChooser::Path> path) {
  read_paths_.finished(length >= kLonePushThreshold ? path : std::nullopt, length, now_ns(),
                       qp.oldest_pending_locked(false) != nullptr);
}

ShmConnection::Outcome ShmConnection::on_terminate(SoftConnectQueuePair& qp,
                                                   const EntryHeader& header,
                                                   const std::byte* payload) {
  std::string reason(reinterpret_cast<const char*>(payload),
                     std::min<uint32_t>(header.length, 200));
  for (char& c : reason) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  const bool about_request = (header.flags & entry_flags::kAboutRequest) != 0;
  const CompletionStatus status = about_request && valid_requester_status(header.key)
                                      ? static_cast<CompletionStatus>(header.key)
                                      : CompletionStatus::kFlushed;
  std::lock_guard lock(qp.mutex());
  if (!closed_ && held_count_ > 0 && !about_request) {
    // A write the peer refused was handed over, like a transmitted one: it completes, and the
    // QP error that follows tells the application (the iWARP rule the engine follows). The
    // peer serves the ring in order, so it refused the oldest; later ones are flushed.
    qp.write_copied_locked(*take_held_locked());
  }
  qp.fail_by_wire_locked(*this, status, "peer terminated the connection: " + reason);
  return Outcome::kFailed;
}

void ShmConnection::terminate(SoftConnectQueuePair& qp, bool about_request,
                              CompletionStatus requester_status, CompletionStatus local_status,
                              const std::string& reason) {
  std::lock_guard lock(qp.mutex());
  if (!closed_) {
    // Best effort: the terminate goes into the ring if it has room; the connection ends anyway.
    EntryHeader header{};
    const auto length = static_cast<uint32_t>(std::min<size_t>(reason.size(), 200));
    if (std::byte* at = reserve_locked(length, header); at != nullptr) {
      header.type = static_cast<uint8_t>(EntryType::kTerminate);
      header.flags = about_request ? entry_flags::kAboutRequest : 0;
      header.key = static_cast<uint32_t>(requester_status);
      std::memcpy(at + kEntryHeaderBytes, reason.data(), length);
      commit_locked(header);
      ring_peer();
    }
  }
  qp.fail_by_wire_locked(*this, local_status, reason);
}

ShmConnection::Outcome ShmConnection::malformed(SoftConnectQueuePair& qp, const std::string& why) {
  terminate(qp, false, CompletionStatus::kTransportError, CompletionStatus::kTransportError,
            "malformed shared ring from the peer: " + why);
  return Outcome::kFailed;
}

void ShmConnection::lost(SoftConnectQueuePair& qp, const std::string& reason) {
  std::lock_guard lock(qp.mutex());
  qp.fail_by_wire_locked(*this, CompletionStatus::kTransportError, reason);
  close();
}

// ---- progress ----

void ShmConnection::service() {
  auto qp = qp_.lock();
  if (!qp) {
    close();
    return;
  }
  if (tx_blocked_.load(std::memory_order_relaxed)) {
    std::lock_guard lock(qp->mutex());
    pump_locked(*qp);
  }
  std::lock_guard rx(rx_mutex_);
  for (;;) {
    const bool more = drain(*qp);
    if (closed_ || rnr_stalled_.load(std::memory_order_relaxed)) return;
    // A poller that came back moves the data itself: served from here as well, a stream would
    // keep this thread and the poller (often on one CPU) fighting over it, each at half speed.
    if (more && poller_.active()) {
      park();
      return;
    }
    // Sleep on the doorbell; an entry that arrived meanwhile is served first.
    if (!more && !consumer_.prepare_to_sleep()) return;
  }
}

void ShmConnection::on_events(uint32_t) {
  uint64_t value = 0;
  [[maybe_unused]] ssize_t got = ::read(doorbell_fd_, &value, sizeof(value));
  if (closed_) return;
  if (poller_.active()) {
    park();
    return;
  }
  service();
}

void ShmConnection::park() {
  // An application thread polls a CQ this connection feeds and moves the data itself: the
  // progress thread neither competes for the ring nor asks the peer for doorbells, and looks
  // again a little later in case the poller stopped without saying so (once armed, the check
  // re-arms itself while the poller stays: parking again costs nothing).
  if (parked_.exchange(true, std::memory_order_relaxed)) return;
  progress_.set_deadline(doorbell_fd_, soft::Progress::Clock::now() + kParkCheck);
}

void ShmConnection::unpark() {
  if (!parked_.exchange(false)) return;
  if (closed_) return;
  service();
}

void ShmConnection::on_deadline() {
  if (!parked_.load(std::memory_order_relaxed)) return;
  if (poller_.active()) {
    progress_.set_deadline(doorbell_fd_, soft::Progress::Clock::now() + kParkCheck);
  } else {
    unpark();
  }
}

void ShmConnection::poller_sleeping() {
  // Forget the last poll: a doorbell ringing before the poller's next poll must be served
  // now, not parked for kParkCheck on the word of a poller that went to sleep.
  poller_.forget();
  if (parked_.load(std::memory_order_relaxed)) {
    progress_.post([self = shared_from_this()] { self->unpark(); });
  }
}

void ShmConnection::progress_from_poll() {
  if (closed_.load(std::memory_order_relaxed)) return;
  poller_.note_poll();
  // The common case of a spinning poller, decided without a lock or a reference count.
  const bool tx_blocked = tx_blocked_.load(std::memory_order_relaxed);
  if (!tx_blocked && !consumer_.maybe_ready()) return;
  auto qp = qp_.lock();
  if (!qp) return;
  if (tx_blocked) {
    std::lock_guard lock(qp->mutex());
    pump_locked(*qp);
  }
  std::unique_lock rx(rx_mutex_, std::try_to_lock);
  if (!rx) {
    // The progress thread is serving the ring right now; what it finds lands in the CQ.
    return;
  }
  drain(*qp);
}

void ShmConnection::on_socket_events(uint32_t events) {
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0) return;
  auto qp = qp_.lock();
  if (!qp) {
    close();
    return;
  }
  if (closed_) return;
  {
    // What the peer wrote before it went (a terminate, the last data) still counts.
    std::lock_guard rx(rx_mutex_);
    if (!rnr_stalled_.load(std::memory_order_relaxed)) drain(*qp);
  }
  if (!closed_) lost(*qp, "the peer closed the connection (or its process ended)");
}

void ShmConnection::on_rnr_deadline() {
  auto qp = qp_.lock();
  if (!qp || closed_) return;
  std::lock_guard rx(rx_mutex_);
  rnr_deadline_armed_ = false;
  if (!rnr_stalled_.load(std::memory_order_relaxed) || qp->has_receive()) {
    // A receive came after all; the ring is served again (a new stall arms a new deadline).
    drain(*qp);
    return;
  }
  const auto expires = stall_began_ + std::chrono::milliseconds(options_.rnr_timeout_ms);
  if (soft::Progress::Clock::now() < expires) {
    // The deadline was armed for an earlier stall that ended; this one has time left.
    rnr_deadline_armed_ = true;
    progress_.set_deadline(socket_fd_, expires);
    return;
  }
  rnr_stalled_.store(false, std::memory_order_relaxed);
  terminate(*qp, false, CompletionStatus::kReceiverNotReady, CompletionStatus::kFlushed,
            "receiver not ready: no receive was posted within rnr_timeout_ms (" +
                std::to_string(options_.rnr_timeout_ms) + ")");
}

}  // namespace wv::verbs::shm
