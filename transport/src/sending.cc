// Per-peer send queues. Three queues, posted in this order whenever something may unblock
// them (a completion, a credit, a new request):
//   control  small answers (credits, acknowledgements, rendezvous answers); need only queue
//            space, so they overtake data stalled for credits and cannot deadlock on them;
//   data     tagged sends and active messages, in order; each needs a credit;
//   rdma     requests with RDMA operations left to post (rendezvous fragments, put/get/atomics).
#include <cstring>

#include "worker_impl.h"

namespace wv::transport {

bool WorkerImpl::can_post(const Peer& peer) const {
  return peer.state == PeerState::kConnected && peer.in_flight < send_depth_;
}

void WorkerImpl::queue_control(Peer& peer, const ControlMessage& message) {
  if (peer.state == PeerState::kFailed) return;
  if (peer.control.empty() && can_post(peer) && post_control(peer, message)) return;
  peer.control.push_back(message);
}

void WorkerImpl::return_credits(Peer& peer, uint32_t count) {
  peer.credits_to_return += count;
  // Half a window unreturned and no traffic to carry it: say so explicitly. Credit messages
  // consume no credit themselves, so they are never stuck behind the data they unblock.
  if (peer.credits_to_return >= credit_window_ / 2 && !peer.credit_queued) {
    peer.credit_queued = true;
    queue_control(peer, ControlMessage{.type = wire::Type::kCredit});
  }
}

bool WorkerImpl::store_in_mailbox(Peer& peer, wire::Type type, uint16_t credits,
                                  std::span<const std::span<const std::byte>> parts, size_t bytes) {
  // Queued control messages go first, through the QP; so does anything behind RDMA writes.
  if (!fits_mailbox(peer, bytes) || peer.rdma_unordered || !peer.control.empty() ||
      !peer.outbox->store(peer.regular_sent, parts)) {
    return false;
  }
  peer.credits_to_return -= credits;
  ++counters_.messages_sent;
  ++counters_.mailbox_messages;
  // The caller takes a credit for a data message as it would for the QP; an entry needs none.
  if (wire::consumes_credit(type)) ++peer.credits;
  if (peer.outbox->receiver_may_sleep()) {
    queue_control(peer, ControlMessage{.type = wire::Type::kCredit, .wake = true});
  }
  return true;
}

bool WorkerImpl::post_message(Peer& peer, wire::Header& header, std::span<const std::byte> body,
                              std::span<const std::byte> payload, bool regular_only) {
  header.credits = static_cast<uint16_t>(std::min<uint32_t>(peer.credits_to_return, 0xffff));
  const size_t header_bytes = wire::shorten(header);
  const size_t total = header_bytes + body.size() + payload.size();
  if (!regular_only) {
    const std::span<const std::byte> parts[] = {
        std::as_bytes(std::span(&header, 1)).first(header_bytes), body, payload};
    if (store_in_mailbox(peer, header.type, header.credits, parts, total)) return true;
  }
  verbs::ConnectQueuePair& qp = *peer.active->qp;
  Status status;
  uint32_t buffer = BufferPool::kNone;
  bool signaled = true;
  if (total <= inline_bytes_) {
    // Inline: the device copies at post time, so the header may live on the stack and the
    // payload stays where the user has it.
    verbs::Sge sges[3];
    size_t count = 0;
    sges[count++] = {nullptr, &header, static_cast<uint32_t>(header_bytes)};
    if (!body.empty()) {
      sges[count++] = {nullptr, const_cast<std::byte*>(body.data()),
                       static_cast<uint32_t>(body.size())};
    }
    if (!payload.empty()) {
      sges[count++] = {nullptr, const_cast<std::byte*>(payload.data()),
                       static_cast<uint32_t>(payload.size())};
    }
    // Nothing waits for an inline send's completion, so most go without one: the next
    // signaled send's completion retires them, one completion per unsignaled_limit_ sends.
    signaled = peer.unsignaled + 1 >= unsignaled_limit_;
    status =
        qp.send(make_wr_id(WorkKind::kInlineSend, send_value(0, signaled ? peer.unsignaled : 0)),
                std::span(sges, count),
                signaled ? verbs::SendFlags::kSignaled | verbs::SendFlags::kInline
                         : verbs::SendFlags::kInline);
  } else {
    buffer = send_buffers_->take();
    if (buffer == BufferPool::kNone) return false;
    wire::frame(send_buffers_->buffer(buffer), header, header_bytes, body, payload);
    verbs::Sge sge = send_buffers_->sge(buffer, total);
    status = qp.send(make_wr_id(WorkKind::kSendBuffer, send_value(buffer, peer.unsignaled)),
                     {&sge, 1}, verbs::SendFlags::kSignaled);
  }
  if (!status.is_ok()) {
    if (buffer != BufferPool::kNone) send_buffers_->give(buffer);
    if (status.code() == Errc::kQueueFull) return false;
    fail_peer(peer, status);
    return true;  // the message is gone with the peer; nothing to retry
  }
  count_posted(peer, header.credits);
  peer.unsignaled = signaled ? 0 : peer.unsignaled + 1;
  return true;
}

uint16_t WorkerImpl::stamp_credits(const Peer& peer, std::byte* framed) {
  const auto credits = static_cast<uint16_t>(std::min<uint32_t>(peer.credits_to_return, 0xffff));
  std::memcpy(framed + offsetof(wire::Header, credits), &credits, sizeof credits);
  return credits;
}

void WorkerImpl::count_posted(Peer& peer, uint16_t credits) {
  peer.credits_to_return -= credits;
  ++peer.in_flight;
  ++peer.regular_sent;
  peer.rdma_unordered = false;
  ++counters_.messages_sent;
}

bool WorkerImpl::post_from_buffer(Peer& peer, uint32_t buffer, size_t bytes) {
  const uint16_t credits = stamp_credits(peer, send_buffers_->buffer(buffer));
  const std::span<const std::byte> framed(send_buffers_->buffer(buffer), bytes);
  if (store_in_mailbox(peer, static_cast<wire::Type>(std::to_integer<uint8_t>(framed[0])), credits,
                       {&framed, 1}, bytes)) {
    send_buffers_->give(buffer);
    return true;
  }
  verbs::Sge sge = send_buffers_->sge(buffer, bytes);
  Status status =
      peer.active->qp->send(make_wr_id(WorkKind::kSendBuffer, send_value(buffer, peer.unsignaled)),
                            {&sge, 1}, verbs::SendFlags::kSignaled);
  if (!status.is_ok()) {
    if (status.code() == Errc::kQueueFull) return false;
    send_buffers_->give(buffer);
    fail_peer(peer, status);
    return true;
  }
  count_posted(peer, credits);
  peer.unsignaled = 0;
  return true;
}

bool WorkerImpl::post_zero_copy(Peer& peer, uint64_t request_id, RequestSlot& request) {
  const uint16_t credits = stamp_credits(peer, send_buffers_->buffer(request.framing_buffer));
  const verbs::Sge sges[2] = {
      send_buffers_->sge(request.framing_buffer, request.framing_bytes),
      {request.region.get(), request.buffer, static_cast<uint32_t>(request.length)}};
  // Signaled: its completion ends the request (the caller may then change the payload). Like
  // RDMA operations it retires only itself; unsignaled sends before it wait for the next
  // signaled send's count.
  Status status = peer.active->qp->send(make_wr_id(WorkKind::kZeroCopy, request_id), sges,
                                        verbs::SendFlags::kSignaled);
  if (!status.is_ok()) {
    if (status.code() == Errc::kQueueFull) return false;
    fail_peer(peer, status);
    return true;
  }
  request.started = true;
  count_posted(peer, credits);
  return true;
}

bool WorkerImpl::post_control(Peer& peer, const ControlMessage& message) {
  if (message.type == wire::Type::kCredit && !message.wake) {
    peer.credit_queued = false;
    if (peer.credits_to_return == 0) return true;  // other traffic carried them meanwhile
  }
  wire::Header header{};
  header.type = message.type;
  header.flags = message.flags;
  header.cookie = message.cookie;
  std::span<const std::byte> body;
  if (message.type == wire::Type::kReadyToReceive)
    body = std::as_bytes(std::span(&message.ready, 1));
  // A wake-up must arrive through the QP: its completion is what wakes the receiver.
  const bool posted = post_message(peer, header, body, {}, message.wake);
  if (!posted && message.type == wire::Type::kCredit && !message.wake) peer.credit_queued = true;
  return posted;
}

WorkerImpl::Posted WorkerImpl::post_data(Peer& peer, const DataItem& item) {
  if (!item.is_request) {
    return post_from_buffer(peer, static_cast<uint32_t>(item.value), item.bytes) ? Posted::kSent
                                                                                 : Posted::kBlocked;
  }
  RequestSlot* request = find_request(item.value);
  if (!request || request->done) return Posted::kSkipped;  // cancelled while queued
  if (request->kind == RequestKind::kActiveSend) {
    return post_zero_copy(peer, item.value, *request) ? Posted::kSent : Posted::kBlocked;
  }
  wire::Header header{};
  header.tag = request->tag;
  header.cookie = item.value;
  if (request->path != Path::kRendezvous) {
    header.type = wire::Type::kEager;
    header.flags = request->mode == SendMode::kSynchronous ? wire::kSynchronous : 0;
    header.payload_length = static_cast<uint32_t>(request->length);
    if (!post_message(peer, header, {}, std::span(request->buffer, request->length))) {
      return Posted::kBlocked;
    }
    request->started = true;
    if (request->mode == SendMode::kStandard && !request->done) {
      complete(item.value, *request, Status::ok());
    }
    return Posted::kSent;
  }
  wire::RendezvousBody body{};
  body.length = request->length;
  header.type = wire::Type::kRendezvous;
  if (thresholds_.scheme == RendezvousScheme::kWrite) {
    header.flags = wire::kWriteScheme;
  } else {
    body.address = reinterpret_cast<uint64_t>(request->buffer);
    body.key = request->region->remote_key();
  }
  if (!post_message(peer, header, std::as_bytes(std::span(&body, 1)), {})) {
    return Posted::kBlocked;
  }
  request->started = true;
  ++counters_.rendezvous_transfers;
  return Posted::kSent;
}

void WorkerImpl::pump(Peer& peer) {
  if (peer.state != PeerState::kConnected) return;
  while (!peer.control.empty() && can_post(peer)) {
    if (!post_control(peer, peer.control.front())) break;
    peer.control.pop_front();
    if (peer.state != PeerState::kConnected) return;
  }
  for (;;) {
    // Behind a put or atomic not yet posted, messages wait: they must not arrive before it.
    while (!peer.data.empty() && peer.puts_queued == 0 && peer.credits > 0 && can_post(peer)) {
      const Posted posted = post_data(peer, peer.data.front());
      if (posted == Posted::kBlocked) break;
      peer.data.pop_front();
      if (posted == Posted::kSent) --peer.credits;
      if (peer.state != PeerState::kConnected) return;
    }
    const uint32_t puts_before = peer.puts_queued;
    while (!peer.rdma.empty() && can_post(peer)) {
      const RdmaItem item = peer.rdma.front();
      RequestSlot* request = find_request(item.request);
      if (request && !request->done && !post_rdma(peer, item.request, *request)) break;
      peer.rdma.pop_front();
      if (item.put) --peer.puts_queued;
      if (peer.state != PeerState::kConnected) return;
    }
    // The puts that held messages back are posted: the messages go now.
    if (puts_before == 0 || peer.puts_queued != 0 || peer.data.empty()) return;
  }
}

}  // namespace wv::transport
