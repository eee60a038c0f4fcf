#include "tcp_connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "crc32c.h"
#include "progress.h"
#include "soft_device.h"
#include "wv/copy.h"

namespace wv::verbs::tcp {

using soft::SendWorkRequest;
using soft::SoftConnectQueuePair;
using soft::WorkKind;

namespace {

// Bit 63 of an Immediate Data body (RFC 7306 leaves the 8 bytes to the ULP): the immediate
// belongs to the Send that follows, which is how a send-with-immediate travels on iWARP.
constexpr uint64_t kImmediateForNextSend = 1ull << 63;
// The STag of the zero-length RTR write; siw uses 1 too (some hardware treats 0 specially).
constexpr uint32_t kRtrStag = 1;
// Payload still to come past this size is read straight into its destination, so large
// messages are copied once (kernel to user memory), as in siw.
constexpr uint64_t kDirectReadThreshold = uint64_t{4} * 1024;
// Reads into the staging buffer stop here: enough for many small FPDUs per system call, little
// enough that a large payload is mostly left in the socket for direct placement.
constexpr size_t kStagingRead = size_t{8} * 1024;
// What follows a segment read straight into its destination when more segments of the message
// follow: pad, CRC and the next header. The readv that places the payload stages only this much,
// and so does the header read after it.
constexpr size_t kSegmentBoundaryRead = 3 + kMpaCrcBytes + kMaxFpduHeaderBytes;
constexpr size_t kRxBufferBytes = size_t{64} * 1024;
constexpr auto kParkCheck = std::chrono::milliseconds(1);

bool is_send(RdmapOpcode opcode) {
  return opcode == RdmapOpcode::kSend || opcode == RdmapOpcode::kSendInvalidate ||
         opcode == RdmapOpcode::kSendSolicited || opcode == RdmapOpcode::kSendSolicitedInvalidate;
}

bool carries_data(RdmapOpcode opcode) {
  return is_send(opcode) || opcode == RdmapOpcode::kWrite || opcode == RdmapOpcode::kReadResponse;
}

TerminateCode tagged_code(soft::KeyCheck check) {
  switch (check) {
    case soft::KeyCheck::kInvalidKey:
      return TerminateCode::kDdpTaggedInvalidStag;
    case soft::KeyCheck::kBounds:
      return TerminateCode::kDdpTaggedBaseBoundsViolation;
    case soft::KeyCheck::kWrongDomain:
    case soft::KeyCheck::kWrongQp:
      return TerminateCode::kDdpTaggedStagNotAssociated;
    default:
      return TerminateCode::kRdmapAccessRightsViolation;
  }
}

TerminateCode rdmap_code(soft::KeyCheck check) {
  switch (check) {
    case soft::KeyCheck::kInvalidKey:
      return TerminateCode::kRdmapInvalidStag;
    case soft::KeyCheck::kBounds:
      return TerminateCode::kRdmapBaseBoundsViolation;
    case soft::KeyCheck::kWrongDomain:
    case soft::KeyCheck::kWrongQp:
      return TerminateCode::kRdmapStagNotAssociated;
    default:
      return TerminateCode::kRdmapAccessRightsViolation;
  }
}

// What the requester's work request completes with when the peer terminates because of it.
CompletionStatus status_for(TerminateCode code) {
  switch (code) {
    case TerminateCode::kRdmapInvalidStag:
    case TerminateCode::kRdmapBaseBoundsViolation:
    case TerminateCode::kRdmapAccessRightsViolation:
    case TerminateCode::kRdmapStagNotAssociated:
    case TerminateCode::kRdmapToWrap:
    case TerminateCode::kRdmapProtectionUnspecified:
    case TerminateCode::kDdpTaggedInvalidStag:
    case TerminateCode::kDdpTaggedBaseBoundsViolation:
    case TerminateCode::kDdpTaggedStagNotAssociated:
    case TerminateCode::kDdpTaggedToWrap:
      return CompletionStatus::kRemoteAccessError;
    case TerminateCode::kDdpUntaggedNoBuffer:
      return CompletionStatus::kReceiverNotReady;
    case TerminateCode::kDdpUntaggedInvalidMo:
    case TerminateCode::kDdpUntaggedMessageTooLong:
    case TerminateCode::kRdmapUnexpectedOpcode:
      return CompletionStatus::kRemoteInvalidRequest;
    default:
      return CompletionStatus::kRemoteOperationError;
  }
}

// Builds iovecs for `length` bytes at `offset` of a scattered buffer; returns how many.
int gather(const soft::Segment* segments, uint32_t count, uint64_t offset, uint64_t length,
           iovec* out, int max) {
  int n = 0;
  for (uint32_t i = 0; i < count && length > 0 && n < max; ++i) {
    if (offset >= segments[i].length) {
      offset -= segments[i].length;
      continue;
    }
    const uint64_t chunk = std::min<uint64_t>(length, segments[i].length - offset);
    out[n++] = iovec{segments[i].address + offset, chunk};
    length -= chunk;
    offset = 0;
  }
  return n;
}

}  // namespace

// ---- ConnectionEvents ----

void ConnectionEvents::closed(Status reason) {
  std::vector<Completer<void>> waiters;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    reason_ = std::move(reason);
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

// ---- TcpConnection ----

TcpConnection::TcpConnection(int fd, soft::Progress& progress,
                             const std::shared_ptr<SoftConnectQueuePair>& qp,
                             std::shared_ptr<ConnectionEvents> events,
                             const ConnectionOptions& options)
    : fd_(fd),
      progress_(progress),
      qp_(qp),
      events_(std::move(events)),
      options_(options),
      max_payload_(static_cast<uint32_t>(
          std::clamp<uint64_t>(options.segment_size, 256, kMaxUntaggedPayload) & ~uint64_t{3})),
      responses_(std::max<uint32_t>(options.inbound_read_depth, 1)),
      rtr_pending_(options.send_rtr),
      may_transmit_(!options.wait_for_first_fpdu),
      rx_buffer_(kRxBufferBytes),
      header_lookahead_(kStagingRead) {}

TcpConnection::~TcpConnection() {
  ::close(fd_);
}

Status TcpConnection::start(soft::SoftCompletionQueue& send_cq,
                            soft::SoftCompletionQueue& receive_cq) {
  send_cq.add_progress_source(weak_from_this());
  if (&receive_cq != &send_cq) receive_cq.add_progress_source(weak_from_this());
  return progress_.add(fd_, EPOLLIN | EPOLLRDHUP, shared_from_this());
}

void TcpConnection::close() {
  if (closed_.exchange(true)) return;
  ::shutdown(fd_, SHUT_RDWR);
  progress_.remove(fd_);
  events_->closed(Status(Errc::kDisconnected, "connection closed"));
}

void TcpConnection::set_interest() {
  std::lock_guard lock(interest_mutex_);
  if (closed_) return;
  uint32_t events = EPOLLRDHUP;
  if (read_interest_ && !parked_) events |= EPOLLIN;
  if (write_interest_ && !parked_) events |= EPOLLOUT;
  if (events != interest_) {
    interest_ = events;
    (void)progress_.modify(fd_, events);
  }
}

// ---- transmit ----

void TcpConnection::kick_locked(SoftConnectQueuePair& qp) {
  pump_locked(qp);
}

void TcpConnection::receive_posted() {
  // Only a stalled stream needs the progress thread to look again; the common case is one load.
  if (rnr_stalled_.load(std::memory_order_acquire)) {
    progress_.post([self = shared_from_this()] { self->resume_after_rnr(); });
  }
}

void TcpConnection::pump_locked(SoftConnectQueuePair& qp) {
  while (!closed_) {
    if (frame_.active) {
      if (!write_frame()) {
        if (!closed_ && !tx_failed_) {
          write_interest_ = true;
          set_interest();
        }
        return;
      }
      finish_frame_locked(qp);
      continue;
    }
    if (!may_transmit_) break;
    frame_.reset();
    if (rtr_pending_) {
      rtr_pending_ = false;
      build_rtr_frame();
      continue;
    }
    if (responses_count_ > 0) {
      Response& response = responses_[responses_head_];
      do {
        build_response_frame(response);
      } while (frame_.extendable && frame_.has_room());
      continue;
    }
    if (current_ == nullptr) {
      current_ = qp.next_to_transmit_locked();
      current_stage_ = 0;
      if (current_ == nullptr) break;
    }
    do {
      build_request_frame(*current_);
    } while (frame_.extendable && frame_.has_room());
  }
  if (write_interest_) {
    write_interest_ = false;
    set_interest();
  }
}

bool TcpConnection::write_frame() {
  while (frame_.iov_index < frame_.iov_count) {
    // sendmsg rather than writev: MSG_NOSIGNAL, so a peer that died is an error, not SIGPIPE.
    msghdr message{};
    message.msg_iov = &frame_.iov[frame_.iov_index];
    message.msg_iovlen = static_cast<size_t>(frame_.iov_count - frame_.iov_index);
    const ssize_t n = ::sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) tx_failed_ = true;  // the reader sees it
      return false;
    }
    size_t written = static_cast<size_t>(n);
    while (written > 0) {
      iovec& iov = frame_.iov[frame_.iov_index];
      if (written >= iov.iov_len) {
        written -= iov.iov_len;
        ++frame_.iov_index;
      } else {
        iov.iov_base = static_cast<std::byte*>(iov.iov_base) + written;
        iov.iov_len -= written;
        written = 0;
      }
    }
    while (frame_.iov_index < frame_.iov_count && frame_.iov[frame_.iov_index].iov_len == 0) {
      ++frame_.iov_index;
    }
  }
  return true;
}

void TcpConnection::finish_frame_locked(SoftConnectQueuePair& qp) {
  frame_.active = false;
  if (!frame_.ends_item) return;
  if (frame_.from_response) {
    responses_head_ = (responses_head_ + 1) % responses_.size();
    --responses_count_;
  } else if (current_ != nullptr) {
    SendWorkRequest* request = current_;
    current_ = nullptr;
    qp.transmitted_locked(*request);
  }
}

void TcpConnection::finish_fpdu(size_t header_size, const soft::Segment* segments, uint32_t count,
                                uint64_t offset, uint32_t length) {
  Frame::Fpdu& fpdu = frame_.fpdus[static_cast<size_t>(frame_.fpdu_count++)];
  const int first = frame_.iov_count;
  int n = first;
  frame_.iov[n++] = iovec{fpdu.header.data(), header_size};
  n += gather(segments, count, offset, length, &frame_.iov[n],
              static_cast<int>(frame_.iov.size()) - n - 1);
  const auto ulpdu = static_cast<uint16_t>(header_size - kMpaLengthBytes + length);
  uint32_t crc = 0;
  if (options_.crc) {
    for (int i = first; i < n; ++i) {
      crc = crc32c_update(
          crc, {static_cast<const std::byte*>(frame_.iov[i].iov_base), frame_.iov[i].iov_len});
    }
  }
  fpdu.trailer = fpdu_trailer(ulpdu, options_.crc, crc);
  frame_.iov[n++] = iovec{fpdu.trailer.bytes.data(), fpdu.trailer.size};
  frame_.iov_count = n;
  frame_.active = true;
}

void TcpConnection::build_rtr_frame() {
  const size_t size =
      encode_tagged_header(frame_.next_header(), RdmapOpcode::kWrite, true, kRtrStag, 0, 0);
  frame_.ends_item = false;
  frame_.from_response = false;
  finish_fpdu(size, nullptr, 0, 0, 0);
}

void TcpConnection::build_request_frame(SendWorkRequest& request) {
  frame_.from_response = false;
  frame_.ends_item = false;
  frame_.extendable = false;
  std::span<std::byte> out(frame_.next_header());
  const uint64_t offset = request.transmitted_bytes;
  const auto chunk =
      static_cast<uint32_t>(std::min<uint64_t>(max_payload_, request.length - offset));
  const bool last = offset + chunk == request.length;

  const auto immediate_frame = [&](uint64_t body_value, bool solicited) {
    const size_t size = encode_untagged_header(
        out, solicited ? RdmapOpcode::kImmediateDataSolicited : RdmapOpcode::kImmediateData, true,
        kQueueSend, send_msn_++, 0, 0, kImmediateDataBodyBytes);
    encode_immediate_data(out.subspan(size), ImmediateDataBody{body_value});
    finish_fpdu(size + kImmediateDataBodyBytes, nullptr, 0, 0, 0);
  };

  switch (request.kind) {
    case WorkKind::kSendWithImmediate:
      if (current_stage_ == 0) {
        current_stage_ = 1;
        immediate_frame(kImmediateForNextSend | request.immediate, false);
        return;
      }
      [[fallthrough]];
    case WorkKind::kSend:
    case WorkKind::kSendWithInvalidate: {
      const bool invalidate = request.kind == WorkKind::kSendWithInvalidate;
      const RdmapOpcode opcode =
          request.solicited
              ? (invalidate ? RdmapOpcode::kSendSolicitedInvalidate : RdmapOpcode::kSendSolicited)
              : (invalidate ? RdmapOpcode::kSendInvalidate : RdmapOpcode::kSend);
      const size_t size = encode_untagged_header(
          out, opcode, last, kQueueSend, send_msn_, static_cast<uint32_t>(offset),
          invalidate ? request.immediate : 0, static_cast<uint16_t>(chunk));
      if (last) ++send_msn_;
      request.transmitted_bytes += chunk;
      frame_.ends_item = last;
      frame_.extendable = !last;
      finish_fpdu(size, request.segments.data(), request.segment_count, offset, chunk);
      return;
    }
    case WorkKind::kWrite:
    case WorkKind::kWriteWithImmediate:
      if (current_stage_ == 1) {
        frame_.ends_item = true;
        immediate_frame(request.immediate, request.solicited);
        return;
      } else {
        const size_t size =
            encode_tagged_header(out, RdmapOpcode::kWrite, last, request.remote.rkey,
                                 request.remote.address + offset, static_cast<uint16_t>(chunk));
        request.transmitted_bytes += chunk;
        frame_.extendable = !last;
        if (last) {
          if (request.kind == WorkKind::kWrite) {
            frame_.ends_item = true;
          } else {
            current_stage_ = 1;
          }
        }
        finish_fpdu(size, request.segments.data(), request.segment_count, offset, chunk);
        return;
      }
    case WorkKind::kRead: {
      request.wire_tag = request_sequence_++;
      const size_t size =
          encode_untagged_header(out, RdmapOpcode::kReadRequest, true, kQueueReadRequest,
                                 read_msn_++, 0, 0, kReadRequestBodyBytes);
      ReadRequestBody body;
      body.sink_stag = request.wire_tag;
      body.sink_offset = 0;
      body.read_size = static_cast<uint32_t>(request.length);
      body.source_stag = request.remote.rkey;
      body.source_offset = request.remote.address;
      encode_read_request(out.subspan(size), body);
      frame_.ends_item = true;
      finish_fpdu(size + kReadRequestBodyBytes, nullptr, 0, 0, 0);
      return;
    }
    case WorkKind::kCompareAndSwap:
    case WorkKind::kFetchAndAdd: {
      request.wire_tag = request_sequence_++;
      const size_t size =
          encode_untagged_header(out, RdmapOpcode::kAtomicRequest, true, kQueueReadRequest,
                                 read_msn_++, 0, 0, kAtomicRequestBodyBytes);
      AtomicRequestBody body;
      body.opcode = request.kind == WorkKind::kCompareAndSwap ? AtomicOpcode::kCompareSwap
                                                              : AtomicOpcode::kFetchAdd;
      body.request_id = request.wire_tag;
      body.remote_stag = request.remote.rkey;
      body.remote_offset = request.remote.address;
      body.add_or_swap_data = request.operand;
      body.add_or_swap_mask = ~uint64_t{0};
      body.compare_data = request.compare;
      body.compare_mask = ~uint64_t{0};
      encode_atomic_request(out.subspan(size), body);
      frame_.ends_item = true;
      finish_fpdu(size + kAtomicRequestBodyBytes, nullptr, 0, 0, 0);
      return;
    }
    case WorkKind::kBindWindow:
    case WorkKind::kLocalInvalidate:
      // Applied by the engine; never reaches the wire. Treat as sent: an empty frame.
      frame_.ends_item = true;
      frame_.active = true;
      return;
  }
}

void TcpConnection::build_response_frame(Response& response) {
  frame_.from_response = true;
  frame_.ends_item = false;
  frame_.extendable = false;
  std::span<std::byte> out(frame_.next_header());
  switch (response.kind) {
    case Response::Kind::kReadResponse: {
      const uint64_t offset = response.sent;
      const auto chunk =
          static_cast<uint32_t>(std::min<uint64_t>(max_payload_, response.length - offset));
      const bool last = offset + chunk == response.length;
      const size_t size =
          encode_tagged_header(out, RdmapOpcode::kReadResponse, last, response.sink_stag,
                               response.sink_offset + offset, static_cast<uint16_t>(chunk));
      response.sent += chunk;
      frame_.ends_item = last;
      frame_.extendable = !last;
      const soft::Segment source{const_cast<std::byte*>(response.source),
                                 static_cast<uint32_t>(response.length)};
      finish_fpdu(size, &source, 1, offset, chunk);
      return;
    }
    case Response::Kind::kAtomicResponse: {
      const size_t size =
          encode_untagged_header(out, RdmapOpcode::kAtomicResponse, true, kQueueAtomicResponse,
                                 atomic_response_msn_++, 0, 0, kAtomicResponseBodyBytes);
      encode_atomic_response(out.subspan(size), response.atomic);
      frame_.ends_item = true;
      finish_fpdu(size + kAtomicResponseBodyBytes, nullptr, 0, 0, 0);
      return;
    }
    case Response::Kind::kTerminate: {
      const size_t body = response.terminate.encoded_length();
      const size_t size =
          encode_untagged_header(out, RdmapOpcode::kTerminate, true, kQueueTerminate, 1, 0, 0,
                                 static_cast<uint16_t>(body));
      encode_terminate(out.subspan(size), response.terminate);
      frame_.ends_item = true;
      finish_fpdu(size + body, nullptr, 0, 0, 0);
      return;
    }
  }
}

bool TcpConnection::queue_response_locked(SoftConnectQueuePair& qp, const Response& response) {
  if (responses_count_ == responses_.size()) return false;
  responses_[(responses_head_ + responses_count_) % responses_.size()] = response;
  ++responses_count_;
  pump_locked(qp);
  return true;
}

// ---- receive ----

void TcpConnection::on_events(uint32_t events) {
  auto qp = qp_.lock();
  if (!qp) {
    close();
    return;
  }
  if (closed_) return;
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == 0 && poller_.active()) {
    park();
    return;
  }
  if ((events & EPOLLOUT) != 0) {
    std::lock_guard lock(qp->mutex());
    pump_locked(*qp);
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
    std::lock_guard rx(rx_mutex_);
    on_readable(*qp);
  }
}

void TcpConnection::park() {
  // An application thread is polling a CQ this stream feeds and moves the data itself; the
  // progress thread stays off the CPU it needs and looks again a little later.
  parked_ = true;
  set_interest();
  progress_.set_deadline(fd_, soft::Progress::Clock::now() + kParkCheck);
}

void TcpConnection::unpark() {
  std::lock_guard rx(rx_mutex_);
  if (!parked_.exchange(false)) return;
  set_interest();
  auto qp = qp_.lock();
  if (!qp || closed_) return;
  {
    std::lock_guard lock(qp->mutex());
    pump_locked(*qp);
  }
  if (!rnr_stalled_) on_readable(*qp);
}

void TcpConnection::poller_sleeping() {
  // Forget the last poll: a stream event arriving before the poller's next poll must be
  // served now, not parked for kParkCheck on the word of a poller that went to sleep.
  poller_.forget();
  if (parked_) progress_.post([self = shared_from_this()] { self->unpark(); });
}

void TcpConnection::progress_from_poll() {
  if (closed_) return;
  poller_.note_poll();
  // Wait rather than spin when the progress thread holds the stream: on a busy machine a spinning
  // poller would keep a preempted progress thread off the CPU for a whole scheduler slice.
  std::unique_lock rx(rx_mutex_);
  auto qp = qp_.lock();
  if (!qp) return;
  if (write_interest_) {
    std::lock_guard lock(qp->mutex());
    pump_locked(*qp);
  }
  if (!rnr_stalled_) on_readable(*qp);
}

void TcpConnection::on_deadline() {
  if (parked_ && !rnr_stalled_) {
    if (poller_.active()) {
      progress_.set_deadline(fd_, soft::Progress::Clock::now() + kParkCheck);
    } else {
      unpark();
    }
    return;
  }
  auto qp = qp_.lock();
  std::lock_guard rx(rx_mutex_);
  if (!qp || closed_ || !rnr_stalled_) return;
  rnr_stalled_ = false;
  terminate(*qp, TerminateCode::kDdpUntaggedNoBuffer, CompletionStatus::kFlushed,
            "receiver not ready: no receive was posted within rnr_timeout_ms (" +
                std::to_string(options_.rnr_timeout_ms) + ")");
}

void TcpConnection::stall_for_receive(SoftConnectQueuePair& qp) {
  // Receiver not ready: stop reading, so TCP pushes back on the sender, until a receive is
  // posted or rnr_timeout_ms passes.
  rnr_stalled_ = true;
  read_interest_ = false;
  set_interest();
  progress_.set_deadline(
      fd_, soft::Progress::Clock::now() + std::chrono::milliseconds(options_.rnr_timeout_ms));
  // A receive may have been posted between the failed take and the flag.
  if (qp.has_receive()) {
    progress_.post([self = shared_from_this()] { self->resume_after_rnr(); });
  }
}

void TcpConnection::resume_after_rnr() {
  std::lock_guard rx(rx_mutex_);
  if (!rnr_stalled_.exchange(false)) return;
  progress_.clear_deadline(fd_);
  read_interest_ = true;
  set_interest();
  if (auto qp = qp_.lock()) on_readable(*qp);
}

bool TcpConnection::fill(size_t want, size_t lookahead) {
  while (rx_end_ - rx_begin_ < want) {
    if (rx_begin_ > 0 && rx_buffer_.size() - rx_begin_ < want) {
      std::memmove(rx_buffer_.data(), rx_buffer_.data() + rx_begin_, rx_end_ - rx_begin_);
      rx_end_ -= rx_begin_;
      rx_begin_ = 0;
    }
    const size_t room = rx_buffer_.size() - rx_end_;
    const ssize_t n =
        ::recv(fd_, rx_buffer_.data() + rx_end_, std::min(room, std::max(want, lookahead)), 0);
    if (n > 0) {
      rx_end_ += static_cast<size_t>(n);
    } else if (n == 0) {
      rx_eof_ = true;
      return false;
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) rx_errno_ = errno;
      return false;
    }
  }
  return true;
}

void TcpConnection::on_readable(SoftConnectQueuePair& qp) {
  while (!closed_ && !rnr_stalled_) {
    Status status;
    bool stalled = false;
    switch (stage_) {
      case RxStage::kHeader: {
        if (!fill(4, header_lookahead_)) break;
        TerminateCode code{};
        status = check_control_bytes(rx_buffer_[rx_begin_ + 2], rx_buffer_[rx_begin_ + 3], &code);
        if (!status) {
          terminate(qp, code, CompletionStatus::kTransportError, status.message());
          return;
        }
        const size_t need = header_bytes_needed(rx_buffer_[rx_begin_ + 2]);
        if (!fill(need, header_lookahead_)) break;
        const std::span<const std::byte> bytes(rx_buffer_.data() + rx_begin_, need);
        auto decoded = decode_segment_header(bytes, &code);
        if (!decoded.is_ok()) {
          terminate(qp, code, CompletionStatus::kTransportError, decoded.status().message());
          return;
        }
        header_ = decoded.value();
        if (header_.payload_length < kDirectReadThreshold) header_lookahead_ = kStagingRead;
        offending_length_ = need;
        std::memcpy(offending_.data(), bytes.data(), need);
        rx_crc_ = options_.crc ? crc32c(bytes) : 0;
        rx_begin_ += need;
        payload_done_ = 0;
        if (!first_fpdu_seen_) {
          first_fpdu_seen_ = true;
          if (!may_transmit_) {
            std::lock_guard lock(qp.mutex());
            may_transmit_ = true;
            pump_locked(qp);
          }
        }
        stage_ = RxStage::kBegin;
        continue;
      }
      case RxStage::kBegin:
        status = begin_segment(qp, &stalled);
        if (!status) return;  // begin_segment terminated the connection
        if (stalled) {
          stall_for_receive(qp);
          return;
        }
        stage_ = RxStage::kPayload;
        continue;
      case RxStage::kPayload: {
        bool more = false;
        status = receive_payload(&more);
        if (!status) {
          terminate(qp, TerminateCode::kDdpUntaggedInvalidMo, CompletionStatus::kLocalLengthError,
                    status.message());
          return;
        }
        if (!more) break;
        stage_ = RxStage::kTrailer;
        continue;
      }
      case RxStage::kTrailer: {
        const size_t need = header_.pad_length() + kMpaCrcBytes;
        if (!fill(need, header_lookahead_)) break;
        status = check_fpdu_trailer(header_.ulpdu_length, {rx_buffer_.data() + rx_begin_, need},
                                    options_.crc, options_.crc ? rx_crc_ : 0);
        rx_begin_ += need;
        if (!status) {
          terminate(qp, TerminateCode::kMpaCrcError, CompletionStatus::kTransportError,
                    status.message());
          return;
        }
        stage_ = RxStage::kFinish;
        continue;
      }
      case RxStage::kFinish:
        status = end_segment(qp, &stalled);
        if (!status) return;
        if (stalled) {
          stall_for_receive(qp);
          return;
        }
        stage_ = RxStage::kHeader;
        // Nothing more staged: return now, so the completion is seen without first waiting for
        // a read that is most likely empty (a system call per message on the latency path).
        // Bytes still in the socket are read by the next poll, or the next epoll wakeup (level-
        // triggered).
        if (rx_begin_ == rx_end_) return;
        continue;
    }
    // The socket has no more bytes for now.
    if (rx_eof_ || rx_errno_ != 0) {
      lost(qp, CompletionStatus::kTransportError,
           rx_eof_ ? "connection closed by the peer"
                   : std::string("connection failed: ") + std::strerror(rx_errno_));
    }
    return;
  }
}

Status TcpConnection::begin_segment(SoftConnectQueuePair& qp, bool* stalled) {
  placement_count_ = 0;
  placement_offset_ = 0;
  const uint32_t length = header_.payload_length;
  if (is_send(header_.opcode)) {
    if (header_.msn != expected_send_msn_) {
      terminate(qp, TerminateCode::kDdpUntaggedInvalidMsnRange, CompletionStatus::kTransportError,
                "send with MSN " + std::to_string(header_.msn) + ", expected " +
                    std::to_string(expected_send_msn_));
      return Status(Errc::kProtocolError, "bad MSN");
    }
    if (!receiving_) {
      if (header_.message_offset != 0) {
        terminate(
            qp, TerminateCode::kDdpUntaggedInvalidMo, CompletionStatus::kTransportError,
            "first segment of a send starts at offset " + std::to_string(header_.message_offset));
        return Status(Errc::kProtocolError, "bad MO");
      }
      if (!qp.take_receive(*this, receive_)) {
        *stalled = true;
        return Status::ok();
      }
      receiving_ = true;
    }
    if (uint64_t{header_.message_offset} + length > receive_.capacity) {
      qp.complete_receive(receive_, Opcode::kReceive, 0, CompletionStatus::kLocalLengthError,
                          CompletionFlags::kNone, 0, 0, false);
      receiving_ = false;
      terminate(qp, TerminateCode::kDdpUntaggedMessageTooLong, CompletionStatus::kFlushed,
                "message longer than the receive buffer of " + std::to_string(receive_.capacity) +
                    " bytes");
      return Status(Errc::kProtocolError, "too long");
    }
    std::copy_n(receive_.segments.begin(), receive_.segment_count, placement_);
    placement_count_ = receive_.segment_count;
    placement_offset_ = header_.message_offset;
    return Status::ok();
  }
  switch (header_.opcode) {
    case RdmapOpcode::kWrite: {
      if (length == 0) return Status::ok();  // zero-length writes (RTR) name no memory
      void* host = nullptr;
      const soft::KeyCheck check =
          qp.resolve(header_.stag, header_.tagged_offset, length, Access::kRemoteWrite, &host);
      if (check != soft::KeyCheck::kOk) {
        terminate(qp, tagged_code(check), CompletionStatus::kFlushed,
                  "RDMA write refused: " + std::string(to_string(check)));
        return Status(Errc::kPermissionDenied, "write refused");
      }
      placement_[0] = soft::Segment{static_cast<std::byte*>(host), length};
      placement_count_ = 1;
      return Status::ok();
    }
    case RdmapOpcode::kReadResponse: {
      std::lock_guard lock(qp.mutex());
      SendWorkRequest* read = qp.oldest_pending_locked(false);
      if (read == nullptr || read->wire_tag != header_.stag ||
          header_.tagged_offset + length > read->length) {
        current_read_ = nullptr;
        // Unlock happens at scope end; terminate takes the lock itself.
      } else {
        current_read_ = read;
        std::copy_n(read->segments.begin(), read->segment_count, placement_);
        placement_count_ = read->segment_count;
        placement_offset_ = header_.tagged_offset;
        return Status::ok();
      }
      break;
    }
    default:
      if (header_.payload_length > body_.size()) {
        terminate(qp, TerminateCode::kRdmapUnexpectedOpcode, CompletionStatus::kTransportError,
                  "control message too long");
        return Status(Errc::kProtocolError, "too long");
      }
      return Status::ok();
  }
  terminate(qp, TerminateCode::kDdpTaggedStagNotAssociated, CompletionStatus::kTransportError,
            "read response that matches no outstanding read");
  return Status(Errc::kProtocolError, "unexpected read response");
}

Status TcpConnection::receive_payload(bool* more) {
  const uint64_t total = header_.payload_length;
  if (!carries_data(header_.opcode)) {
    if (!fill(total, kStagingRead)) return Status::ok();
    copy_bytes(body_.data(), rx_buffer_.data() + rx_begin_, total);
    if (options_.crc) rx_crc_ = crc32c_update(rx_crc_, {rx_buffer_.data() + rx_begin_, total});
    rx_begin_ += total;
    *more = true;
    return Status::ok();
  }
  while (payload_done_ < total) {
    const uint64_t remaining = total - payload_done_;
    const uint64_t buffered = std::min<uint64_t>(remaining, rx_end_ - rx_begin_);
    const uint64_t at = placement_offset_ + payload_done_;
    if (buffered > 0) {
      const std::byte* from = rx_buffer_.data() + rx_begin_;
      if (placement_count_ > 0 &&
          !soft::scatter(placement_, placement_count_, at, from, buffered)) {
        return Status(Errc::kProtocolError, "payload beyond its destination");
      }
      if (options_.crc) rx_crc_ = crc32c_update(rx_crc_, {from, buffered});
      rx_begin_ += buffered;
      payload_done_ += buffered;
      continue;
    }
    if (remaining >= kDirectReadThreshold && placement_count_ > 0) {
      // The same call also stages what follows the payload (the trailer, the next header and
      // whatever small FPDUs come after), so a segment costs one system call, not two.
      iovec iov[soft::kMaxSge + 1];
      const int n = gather(placement_, placement_count_, at, remaining, iov, soft::kMaxSge);
      uint64_t gathered = 0;
      for (int i = 0; i < n; ++i) gathered += iov[i].iov_len;
      rx_begin_ = 0;
      rx_end_ = 0;
      // Inside a message of several segments the next FPDU is its continuation: stage only the
      // boundary, so that the next segment's payload is placed too. After a message's last
      // segment, whatever comes next may be small: a staging read's worth.
      const size_t tail = header_.last ? kStagingRead : kSegmentBoundaryRead;
      iov[n] = iovec{rx_buffer_.data(), tail};
      header_lookahead_ = tail;
      const ssize_t got = ::readv(fd_, iov, n + 1);
      if (got > 0) {
        // Bytes past the destination (gathered < remaining) land staged, where scatter refuses
        // them as it refuses any payload beyond its destination.
        const uint64_t placed = std::min<uint64_t>(static_cast<uint64_t>(got), gathered);
        if (options_.crc) {
          uint64_t left = placed;
          for (int i = 0; i < n && left > 0; ++i) {
            const uint64_t piece = std::min<uint64_t>(left, iov[i].iov_len);
            rx_crc_ =
                crc32c_update(rx_crc_, {static_cast<const std::byte*>(iov[i].iov_base), piece});
            left -= piece;
          }
        }
        payload_done_ += placed;
        rx_end_ = static_cast<size_t>(static_cast<uint64_t>(got) - placed);
        continue;
      }
      if (got == 0) {
        rx_eof_ = true;
      } else if (errno == EINTR) {
        continue;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        rx_errno_ = errno;
      }
      return Status::ok();
    }
    if (!fill(1, kStagingRead)) return Status::ok();
  }
  *more = true;
  return Status::ok();
}

Status TcpConnection::end_segment(SoftConnectQueuePair& qp, bool* stalled) {
  const std::span<const std::byte> body(body_.data(), header_.payload_length);
  if (is_send(header_.opcode)) {
    if (!header_.last) return Status::ok();
    CompletionFlags flags = CompletionFlags::kNone;
    uint32_t immediate = 0;
    uint32_t invalidated = 0;
    if (pending_immediate_valid_) {
      flags = flags | CompletionFlags::kWithImmediate;
      immediate = pending_immediate_;
      pending_immediate_valid_ = false;
    }
    CompletionStatus status = CompletionStatus::kSuccess;
    if (carries_invalidate_stag(header_.opcode)) {
      if (qp.invalidate_remote(header_.invalidate_stag) == soft::KeyCheck::kOk) {
        flags = flags | CompletionFlags::kWithInvalidate;
        invalidated = header_.invalidate_stag;
      } else {
        status = CompletionStatus::kRemoteInvalidRequest;
      }
    }
    const bool solicited = header_.opcode == RdmapOpcode::kSendSolicited ||
                           header_.opcode == RdmapOpcode::kSendSolicitedInvalidate;
    receiving_ = false;
    ++expected_send_msn_;
    qp.complete_receive(receive_, Opcode::kReceive, header_.message_offset + header_.payload_length,
                        status, flags, immediate, invalidated, solicited);
    if (status != CompletionStatus::kSuccess) {
      terminate(qp, TerminateCode::kRdmapStagCannotBeInvalidated, CompletionStatus::kFlushed,
                "send with invalidate named a key this QP cannot invalidate");
      return Status(Errc::kPermissionDenied, "invalidate refused");
    }
    return Status::ok();
  }
  switch (header_.opcode) {
    case RdmapOpcode::kWrite:
      return Status::ok();
    case RdmapOpcode::kReadResponse:
      if (header_.last && current_read_ != nullptr) {
        std::lock_guard lock(qp.mutex());
        // A QP that failed meanwhile (and closed this connection) has flushed the read; its
        // slot may be reused already, by a later connection of the same QP.
        if (closed_) return Status::ok();
        qp.response_arrived_locked(*current_read_, CompletionStatus::kSuccess);
        current_read_ = nullptr;
        pump_locked(qp);
      }
      return Status::ok();
    case RdmapOpcode::kReadRequest: {
      auto request = decode_read_request(body);
      if (!request.is_ok()) {
        terminate(qp, TerminateCode::kRdmapUnexpectedOpcode, CompletionStatus::kTransportError,
                  request.status().message());
        return request.status();
      }
      return serve_read_request(qp, request.value());
    }
    case RdmapOpcode::kAtomicRequest: {
      auto request = decode_atomic_request(body);
      if (!request.is_ok()) {
        terminate(qp, TerminateCode::kRdmapUnexpectedOpcode, CompletionStatus::kTransportError,
                  request.status().message());
        return request.status();
      }
      return serve_atomic(qp, request.value());
    }
    case RdmapOpcode::kAtomicResponse: {
      auto response = decode_atomic_response(body);
      if (!response.is_ok()) {
        terminate(qp, TerminateCode::kRdmapUnexpectedOpcode, CompletionStatus::kTransportError,
                  response.status().message());
        return response.status();
      }
      return on_atomic_response(qp, response.value());
    }
    case RdmapOpcode::kImmediateData:
    case RdmapOpcode::kImmediateDataSolicited: {
      auto immediate = decode_immediate_data(body);
      if (!immediate.is_ok()) {
        terminate(qp, TerminateCode::kRdmapUnexpectedOpcode, CompletionStatus::kTransportError,
                  immediate.status().message());
        return immediate.status();
      }
      const uint64_t data = immediate.value().data;
      if ((data & kImmediateForNextSend) != 0) {
        pending_immediate_ = static_cast<uint32_t>(data);
        pending_immediate_valid_ = true;
        ++expected_send_msn_;
        return Status::ok();
      }
      soft::ReceiveWorkRequest receive;
      if (!qp.take_receive(*this, receive)) {
        *stalled = true;
        return Status::ok();
      }
      ++expected_send_msn_;
      qp.complete_receive(receive, Opcode::kReceiveRdmaWithImmediate, 0, CompletionStatus::kSuccess,
                          CompletionFlags::kWithImmediate, static_cast<uint32_t>(data), 0,
                          header_.opcode == RdmapOpcode::kImmediateDataSolicited);
      return Status::ok();
    }
    case RdmapOpcode::kTerminate:
      return handle_terminate(qp, body);
    default:
      break;
  }
  terminate(qp, TerminateCode::kRdmapUnexpectedOpcode, CompletionStatus::kTransportError,
            "unexpected opcode " + std::string(to_string(header_.opcode)));
  return Status(Errc::kProtocolError, "unexpected opcode");
}

Status TcpConnection::serve_read_request(SoftConnectQueuePair& qp, const ReadRequestBody& body) {
  if (header_.msn != expected_request_msn_++) {
    terminate(qp, TerminateCode::kDdpUntaggedInvalidMsnRange, CompletionStatus::kTransportError,
              "read request out of sequence");
    return Status(Errc::kProtocolError, "bad MSN");
  }
  void* host = nullptr;
  if (body.read_size > 0) {
    const soft::KeyCheck check = qp.resolve(body.source_stag, body.source_offset, body.read_size,
                                            Access::kRemoteRead, &host);
    if (check != soft::KeyCheck::kOk) {
      terminate(qp, rdmap_code(check), CompletionStatus::kFlushed,
                "RDMA read refused: " + std::string(to_string(check)));
      return Status(Errc::kPermissionDenied, "read refused");
    }
  }
  Response response{};
  response.kind = Response::Kind::kReadResponse;
  response.source = static_cast<const std::byte*>(host);
  response.length = body.read_size;
  response.sink_stag = body.sink_stag;
  response.sink_offset = body.sink_offset;
  std::unique_lock lock(qp.mutex());
  if (!queue_response_locked(qp, response)) {
    lock.unlock();
    terminate(qp, TerminateCode::kRdmapStreamCatastrophic, CompletionStatus::kFlushed,
              "peer exceeded the inbound read depth of " + std::to_string(qp.inbound_read_depth()));
    return Status(Errc::kProtocolError, "read depth exceeded");
  }
  return Status::ok();
}

Status TcpConnection::serve_atomic(SoftConnectQueuePair& qp, const AtomicRequestBody& body) {
  if (header_.msn != expected_request_msn_++) {
    terminate(qp, TerminateCode::kDdpUntaggedInvalidMsnRange, CompletionStatus::kTransportError,
              "atomic request out of sequence");
    return Status(Errc::kProtocolError, "bad MSN");
  }
  void* host = nullptr;
  soft::KeyCheck check =
      qp.resolve(body.remote_stag, body.remote_offset, 8, Access::kRemoteAtomic, &host);
  if (check == soft::KeyCheck::kOk && body.remote_offset % 8 != 0) {
    check = soft::KeyCheck::kBounds;
  }
  if (check != soft::KeyCheck::kOk) {
    terminate(qp, rdmap_code(check), CompletionStatus::kFlushed,
              "atomic refused: " + std::string(to_string(check)));
    return Status(Errc::kPermissionDenied, "atomic refused");
  }
  std::atomic_ref<uint64_t> target(*static_cast<uint64_t*>(host));
  uint64_t original = target.load();
  if (body.opcode == AtomicOpcode::kFetchAdd) {
    original = target.fetch_add(body.add_or_swap_data);
  } else {
    // Masked compare-and-swap (RFC 7306 §5.2.1); full masks give the verbs operation.
    for (;;) {
      if (((original ^ body.compare_data) & body.compare_mask) != 0) break;
      const uint64_t desired =
          (original & ~body.add_or_swap_mask) | (body.add_or_swap_data & body.add_or_swap_mask);
      if (target.compare_exchange_weak(original, desired)) break;
    }
  }
  Response response{};
  response.kind = Response::Kind::kAtomicResponse;
  response.atomic = AtomicResponseBody{body.request_id, original};
  std::unique_lock lock(qp.mutex());
  if (!queue_response_locked(qp, response)) {
    lock.unlock();
    terminate(qp, TerminateCode::kRdmapStreamCatastrophic, CompletionStatus::kFlushed,
              "peer exceeded the inbound read depth");
    return Status(Errc::kProtocolError, "read depth exceeded");
  }
  return Status::ok();
}

Status TcpConnection::on_atomic_response(SoftConnectQueuePair& qp, const AtomicResponseBody& body) {
  std::unique_lock lock(qp.mutex());
  if (closed_) return Status::ok();  // the QP failed meanwhile; see kReadResponse
  SendWorkRequest* atomic = qp.oldest_pending_locked(true);
  if (atomic == nullptr || atomic->wire_tag != body.request_id) {
    lock.unlock();
    terminate(qp, TerminateCode::kRdmapUnexpectedOpcode, CompletionStatus::kTransportError,
              "atomic response that matches no outstanding atomic");
    return Status(Errc::kProtocolError, "unexpected atomic response");
  }
  std::memcpy(atomic->segments[0].address, &body.original_value, sizeof(uint64_t));
  qp.response_arrived_locked(*atomic, CompletionStatus::kSuccess);
  pump_locked(qp);
  return Status::ok();
}

Status TcpConnection::handle_terminate(SoftConnectQueuePair& qp, std::span<const std::byte> body) {
  auto decoded = decode_terminate(body);
  const TerminateCode code =
      decoded.is_ok() ? decoded.value().code : TerminateCode::kRdmapLocalCatastrophic;
  // Only a read or atomic is still waiting at this side for the peer's verdict; for anything
  // else the peer's error flushes what is queued.
  bool about_request = false;
  if (decoded.is_ok() && decoded.value().ddp_header_included &&
      decoded.value().ddp_header_length >= 2) {
    const auto opcode = static_cast<uint8_t>(decoded.value().ddp_header[1] & std::byte{0x0f});
    about_request = opcode == static_cast<uint8_t>(RdmapOpcode::kReadRequest) ||
                    opcode == static_cast<uint8_t>(RdmapOpcode::kAtomicRequest);
  }
  std::lock_guard lock(qp.mutex());
  qp.fail_by_wire_locked(*this, about_request ? status_for(code) : CompletionStatus::kFlushed,
                         "peer terminated the connection: " + std::string(describe(code)));
  return Status(Errc::kDisconnected, "terminated by peer");
}

void TcpConnection::terminate(SoftConnectQueuePair& qp, TerminateCode code, CompletionStatus status,
                              const std::string& reason) {
  std::lock_guard lock(qp.mutex());
  if (!closed_ && !frame_.active) {
    // Best effort: the terminate goes out now if the socket takes it; the stream ends anyway.
    Response response{};
    response.kind = Response::Kind::kTerminate;
    response.terminate = make_terminate_body(code, {offending_.data(), offending_length_});
    frame_.reset();
    build_response_frame(response);
    (void)write_frame();
    frame_.active = false;
  }
  qp.fail_by_wire_locked(*this, status, reason);
}

void TcpConnection::lost(SoftConnectQueuePair& qp, CompletionStatus status,
                         const std::string& reason) {
  std::lock_guard lock(qp.mutex());
  qp.fail_by_wire_locked(*this, status, reason);
  close();
}

}  // namespace wv::verbs::tcp
