// Large messages and RDMA: the rendezvous schemes and the posting of fragments.
//
// Read scheme:  sender --kRendezvous(address, key)--> receiver; once matched the receiver
//               RDMA-reads in fragments and answers kFinish; the sender's request completes.
// Write scheme: sender --kRendezvous--> receiver; once matched the receiver answers
//               kReadyToReceive(address, key); the sender RDMA-writes in fragments and then
//               sends kFinish, which the connection delivers after the writes' data.
#include <string>

#include "worker_impl.h"

namespace wv::transport {

verbs::Access WorkerImpl::sink_access(bool write_scheme) const {
  verbs::Access access = verbs::Access::kLocalWrite;
  if (write_scheme || has(capabilities_, verbs::Capability::kReadSinkNeedsRemoteWrite)) {
    access = access | verbs::Access::kRemoteWrite;
  }
  return access;
}

void WorkerImpl::send_finish(Peer& peer, uint64_t cookie, bool truncated) {
  queue_control(peer,
                ControlMessage{.type = wire::Type::kFinish,
                               .flags = static_cast<uint8_t>(truncated ? wire::kTruncated : 0),
                               .cookie = cookie});
}

void WorkerImpl::start_rendezvous_receive(uint64_t request_id, RequestSlot& request, PeerId source,
                                          uint64_t sender_cookie, const wire::RendezvousBody& body,
                                          bool write_scheme) {
  Peer& peer = *peers_[source];
  request.started = true;
  request.peer = source;
  request.result.source = source;
  request.peer_cookie = sender_cookie;
  request.write_scheme = write_scheme;
  request.truncated = body.length > request.length;
  request.transfer_length = std::min<uint64_t>(body.length, request.length);
  request.result.length = request.transfer_length;
  Status failure;
  if (!write_scheme && registers_per_fragment(request.transfer_length)) {
    request.fragment_access = sink_access(false);  // registered as each read is posted
  } else if (request.transfer_length > 0) {
    auto region = cache_->get(request.buffer, request.transfer_length, sink_access(write_scheme));
    if (region.is_ok()) {
      request.region = std::move(region).value();
    } else {
      failure = region.status();
      request.transfer_length = 0;
    }
  }
  if (write_scheme) {
    wire::ReadyBody ready{};
    ready.length = request.transfer_length;
    if (request.region) {
      ready.address = reinterpret_cast<uint64_t>(request.buffer);
      ready.key = request.region->remote_key();
    }
    ready.receiver_cookie = request_id;
    queue_control(peer, ControlMessage{
                            .type = wire::Type::kReadyToReceive,
                            .flags = static_cast<uint8_t>(request.truncated ? wire::kTruncated : 0),
                            .cookie = sender_cookie,
                            .ready = ready});
    if (!failure.is_ok()) complete(request_id, request, failure);
    return;  // the sender's kFinish completes the request
  }
  if (request.transfer_length == 0) {
    send_finish(peer, sender_cookie, request.truncated);
    Status status = failure;
    if (status.is_ok() && request.truncated) {
      status = Status(Errc::kInvalidArgument, "message of " + std::to_string(body.length) +
                                                  " bytes truncated to the receive buffer of " +
                                                  std::to_string(request.length) + " bytes");
    }
    complete(request_id, request, status);
    return;
  }
  request.remote = RemoteMemory{body.address, body.key};
  peer.rdma.push_back(RdmaItem{.request = request_id});
  pump(peer);
}

void WorkerImpl::handle_ready(Peer& peer, const wire::Header& header, const wire::ReadyBody& body) {
  RequestSlot* request = find_request(header.cookie);
  if (!request || request->kind != RequestKind::kSend || request->peer != peer.id ||
      request->done || !request->started || body.length > request->length) {
    fail_peer(peer,
              Status(Errc::kProtocolError, "peer " + std::to_string(peer.id) +
                                               " answered a rendezvous this worker did not offer"));
    return;
  }
  request->transfer_length = body.length;
  request->remote = RemoteMemory{body.address, body.key};
  request->peer_cookie = body.receiver_cookie;
  request->write_scheme = true;
  if (body.length == 0) {
    send_finish(peer, body.receiver_cookie, false);
    complete(header.cookie, *request, Status::ok());
    return;
  }
  peer.rdma.push_back(RdmaItem{.request = header.cookie});
  pump(peer);
}

void WorkerImpl::handle_finish(Peer& peer, const wire::Header& header) {
  RequestSlot* request = find_request(header.cookie);
  const bool expected = request && request->peer == peer.id && !request->done && request->started &&
                        (request->kind == RequestKind::kSend ||
                         (request->kind == RequestKind::kReceive && request->write_scheme));
  if (!expected) {
    // A receive that failed locally (registration) completed early; its finish is late.
    if (request && request->done) return;
    fail_peer(peer, Status(Errc::kProtocolError, "peer " + std::to_string(peer.id) +
                                                     " finished a transfer this worker did "
                                                     "not start"));
    return;
  }
  Status status;
  if (request->kind == RequestKind::kReceive && request->truncated) {
    status = Status(Errc::kInvalidArgument, "message truncated to the receive buffer of " +
                                                std::to_string(request->length) + " bytes");
  }
  complete(header.cookie, *request, status);
}

bool WorkerImpl::post_rdma(Peer& peer, uint64_t request_id, RequestSlot& request) {
  verbs::ConnectQueuePair& qp = *peer.active->qp;
  const uint64_t wr_id = make_wr_id(WorkKind::kFragment, request_id);
  if (request.kind == RequestKind::kAtomic) {
    if (request.issued) return true;
    if (peer.reads_in_flight >= outbound_read_depth_) return false;
    verbs::Sge result{atomic_buffers_->sge(request.atomic_slot, 8)};
    verbs::RemoteAddress remote{request.remote.address, request.remote.key};
    Status status = request.is_compare_swap
                        ? qp.compare_and_swap(wr_id, result, remote, request.atomic_compare,
                                              request.atomic_operand, verbs::SendFlags::kSignaled)
                        : qp.fetch_and_add(wr_id, result, remote, request.atomic_operand,
                                           verbs::SendFlags::kSignaled);
    if (!status.is_ok()) {
      if (status.code() == Errc::kQueueFull) return false;
      complete(request_id, request, status);
      return true;
    }
    request.issued = 8;
    ++peer.in_flight;
    ++peer.reads_in_flight;
    peer.rdma_unordered = true;
    return true;
  }
  // Reads: rendezvous receives (read scheme) and gets. Writes: rendezvous sends, puts.
  const bool read = request.kind == RequestKind::kReceive || request.kind == RequestKind::kGet;
  while (request.issued < request.transfer_length && can_post(peer)) {
    if (read && peer.reads_in_flight >= outbound_read_depth_) return false;
    const size_t bytes =
        std::min(thresholds_.fragment_size, request.transfer_length - request.issued);
    const verbs::MemoryRegion* region = request.region.get();
    if (!region) {
      auto fragment = cache_->get(request.buffer + request.issued, bytes, request.fragment_access);
      if (!fragment.is_ok()) {
        complete(request_id, request, fragment.status());
        if (request.kind == RequestKind::kReceive) send_finish(peer, request.peer_cookie, true);
        return true;
      }
      request.fragment_regions.push_back(std::move(fragment).value());
      region = request.fragment_regions.back().get();
    }
    verbs::Sge sge{region, request.buffer + request.issued, static_cast<uint32_t>(bytes)};
    verbs::RemoteAddress remote{request.remote.address + request.issued, request.remote.key};
    Status status = read ? qp.rdma_read(wr_id, {&sge, 1}, remote, verbs::SendFlags::kSignaled)
                         : qp.rdma_write(wr_id, {&sge, 1}, remote, verbs::SendFlags::kSignaled);
    if (!status.is_ok()) {
      if (!request.region) request.fragment_regions.pop_back();
      if (status.code() == Errc::kQueueFull) return false;
      complete(request_id, request, status);
      if (request.kind == RequestKind::kReceive) send_finish(peer, request.peer_cookie, true);
      return true;
    }
    request.issued += bytes;
    ++peer.in_flight;
    if (read) ++peer.reads_in_flight;
    if (!read) peer.rdma_unordered = true;
  }
  if (request.issued < request.transfer_length) return false;
  // Write scheme: the finish goes after the last write, so it arrives after the data.
  if (request.kind == RequestKind::kSend) send_finish(peer, request.peer_cookie, false);
  return true;
}

void WorkerImpl::fragment_done(Peer& peer, uint64_t request_id, bool ok, const Status& failure) {
  RequestSlot* request = find_request(request_id);
  if (!request) return;
  const bool read_like = request->kind == RequestKind::kReceive ||
                         request->kind == RequestKind::kGet ||
                         request->kind == RequestKind::kAtomic;
  if (read_like && peer.reads_in_flight > 0) --peer.reads_in_flight;
  if (request->done) return;
  if (!ok) {
    complete(request_id, *request, failure);
    return;
  }
  const size_t bytes =
      request->kind == RequestKind::kAtomic
          ? 8
          : std::min(thresholds_.fragment_size, request->transfer_length - request->completed);
  request->completed += bytes;
  if (!request->fragment_regions.empty()) request->fragment_regions.pop_front();
  const size_t total = request->kind == RequestKind::kAtomic ? 8 : request->transfer_length;
  if (request->completed < total) return;
  Status status;
  if (request->kind == RequestKind::kReceive) {
    send_finish(peer, request->peer_cookie, request->truncated);
    if (request->truncated) {
      status = Status(Errc::kInvalidArgument, "message truncated to the receive buffer of " +
                                                  std::to_string(request->length) + " bytes");
    }
  }
  complete(request_id, *request, status);
}

}  // namespace wv::transport
