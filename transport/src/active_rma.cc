// Active messages and RMA: the API the Open MPI BTL maps onto.
#include <algorithm>
#include <cstring>
#include <string>

#include "worker_impl.h"

namespace wv::transport {

namespace {

// [address, address + length) inside `region` (a cached region may cover more).
class RegisteredMemoryImpl final : public RegisteredMemory {
 public:
  RegisteredMemoryImpl(std::shared_ptr<verbs::MemoryRegion> region, void* address, size_t length)
      : region_(std::move(region)), address_(address), length_(length) {}
  RemoteMemory remote() const override {
    return {reinterpret_cast<uint64_t>(address_), region_->remote_key()};
  }
  void* address() const override { return address_; }
  size_t length() const override { return length_; }

 private:
  std::shared_ptr<verbs::MemoryRegion> region_;
  void* address_;
  size_t length_;
};

}  // namespace

Status WorkerImpl::set_am_handler(uint8_t id, AmHandler handler) {
  std::lock_guard lock(mutex_);
  am_handlers_[id] = std::move(handler);
  return Status::ok();
}

size_t WorkerImpl::am_limit() const {
  return thresholds_.eager_limit;
}

Result<Peer*> WorkerImpl::active_message_peer(PeerId peer_id, size_t header_bytes, size_t bytes) {
  if (bytes > am_limit() || header_bytes > 0xffff) {
    return Status(Errc::kInvalidArgument,
                  "active message of " + std::to_string(bytes) +
                      " bytes exceeds am_limit() = " + std::to_string(am_limit()));
  }
  auto found = peer_for_send(peer_id);
  if (!found.is_ok()) return found.status();
  if (bytes > (*found)->eager_limit) {
    return Status(Errc::kInvalidArgument, "active message of " + std::to_string(bytes) +
                                              " bytes exceeds what peer " +
                                              std::to_string(peer_id) + " receives (" +
                                              std::to_string((*found)->eager_limit) + ")");
  }
  return found;
}

namespace {

wire::Header active_header(uint8_t id, size_t header_bytes, size_t bytes) {
  wire::Header header{};
  header.type = wire::Type::kActive;
  header.am_id = id;
  header.am_header_length = static_cast<uint16_t>(header_bytes);
  header.payload_length = static_cast<uint32_t>(bytes);
  return header;
}

}  // namespace

Status WorkerImpl::am_send(PeerId peer_id, uint8_t id, std::span<const std::byte> header,
                           std::span<const std::byte> payload) {
  std::lock_guard lock(mutex_);
  const size_t bytes = header.size() + payload.size();
  auto found = active_message_peer(peer_id, header.size(), bytes);
  if (!found.is_ok()) return found.status();
  Peer& peer = **found;
  wire::Header wire_header = active_header(id, header.size(), bytes);
  const size_t header_bytes = wire::shorten(wire_header);
  // Nothing queued ahead of it and room to post: an inline send copies header and payload at
  // post time, so a small message needs no send buffer and, like inline tagged sends, mostly no
  // completion (each one cost the sender a CQ entry to push, poll and handle). So does a store
  // into the peer's mailbox.
  if ((header_bytes + bytes <= inline_bytes_ || fits_mailbox(peer, header_bytes + bytes)) &&
      peer.data.empty() && peer.puts_queued == 0 && peer.credits > 0 && can_post(peer) &&
      post_message(peer, wire_header, header, payload)) {
    --peer.credits;
    return Status::ok();
  }
  const uint32_t buffer = send_buffers_->take();
  if (buffer == BufferPool::kNone) {
    return Status(Errc::kQueueFull, "every eager send buffer is in flight; progress and retry");
  }
  const size_t framed =
      wire::frame(send_buffers_->buffer(buffer), wire_header, header_bytes, header, payload);
  peer.data.push_back(DataItem{.is_request = false, .value = buffer, .bytes = framed});
  pump(peer);
  return Status::ok();
}

Result<Request> WorkerImpl::am_send_zcopy(PeerId peer_id, uint8_t id,
                                          std::span<const std::byte> header,
                                          std::span<const std::byte> payload) {
  std::lock_guard lock(mutex_);
  if (payload.empty()) {
    return Status(Errc::kInvalidArgument, "am_send_zcopy of an empty payload (use am_send)");
  }
  const size_t bytes = header.size() + payload.size();
  auto found = active_message_peer(peer_id, header.size(), bytes);
  if (!found.is_ok()) return found.status();
  Peer& peer = **found;
  auto region = cache_->get(payload.data(), payload.size(), verbs::Access::kNone);
  if (!region.is_ok()) return region.status();
  const uint32_t buffer = send_buffers_->take();
  if (buffer == BufferPool::kNone) {
    return Status(Errc::kQueueFull, "every eager send buffer is in flight; progress and retry");
  }
  auto request_id = new_request(RequestKind::kActiveSend);
  if (!request_id.is_ok()) {
    send_buffers_->give(buffer);
    return request_id.status();
  }
  wire::Header wire_header = active_header(id, header.size(), bytes);
  const size_t header_bytes = wire::shorten(wire_header);
  const size_t framed =
      wire::frame(send_buffers_->buffer(buffer), wire_header, header_bytes, header, {});
  RequestSlot& request = requests_[static_cast<uint32_t>(*request_id)];
  request.peer = peer_id;
  request.buffer = const_cast<std::byte*>(payload.data());
  request.length = payload.size();
  request.region = std::move(region).value();
  request.framing_buffer = buffer;
  request.framing_bytes = static_cast<uint32_t>(framed);
  peer.data.push_back(DataItem{.is_request = true, .value = *request_id, .bytes = 0});
  pump(peer);
  return Request::from_id(*request_id);
}

void WorkerImpl::deliver_active(Peer& peer, const wire::Header& header,
                                std::span<const std::byte> bytes) {
  const AmHandler& handler = am_handlers_[header.am_id];
  if (!handler) {
    fail_peer(peer, Status(Errc::kProtocolError,
                           "peer " + std::to_string(peer.id) + " sent active message id " +
                               std::to_string(header.am_id) + ", which has no handler here"));
    return;
  }
  handler(peer.id, bytes.first(header.am_header_length), bytes.subspan(header.am_header_length));
}

verbs::Access WorkerImpl::exposed_access() const {
  verbs::Access access =
      verbs::Access::kLocalWrite | verbs::Access::kRemoteRead | verbs::Access::kRemoteWrite;
  if (has(capabilities_, verbs::Capability::kAtomics))
    access = access | verbs::Access::kRemoteAtomic;
  return access;
}

namespace {

Result<std::unique_ptr<RegisteredMemory>> registered(
    Result<std::shared_ptr<verbs::MemoryRegion>> region, void* address, size_t length) {
  if (!region.is_ok()) return region.status();
  return std::unique_ptr<RegisteredMemory>(
      std::make_unique<RegisteredMemoryImpl>(std::move(region).value(), address, length));
}

}  // namespace

Result<std::unique_ptr<RegisteredMemory>> WorkerImpl::register_memory(void* address,
                                                                      size_t length) {
  std::lock_guard lock(mutex_);
  return registered(domain_->register_memory(address, length, exposed_access()), address, length);
}

Result<std::unique_ptr<RegisteredMemory>> WorkerImpl::allocate_memory(size_t length) {
  std::lock_guard lock(mutex_);
  auto region = domain_->allocate_memory(length, exposed_access());
  if (!region.is_ok()) return region.status();
  void* address = region.value()->address();
  return registered(std::move(region), address, length);
}

Result<std::unique_ptr<RegisteredMemory>> WorkerImpl::register_memory_cached(void* address,
                                                                             size_t length) {
  std::lock_guard lock(mutex_);
  return registered(cache_->get(address, length, exposed_access()), address, length);
}

Result<Request> WorkerImpl::start_rma(RequestKind kind, PeerId peer_id, std::byte* local,
                                      size_t length, RemoteMemory remote) {
  std::lock_guard lock(mutex_);
  if (local == nullptr && length != 0) {
    return Status(Errc::kInvalidArgument, "RMA with a null local buffer");
  }
  auto peer = peer_for_send(peer_id);
  if (!peer.is_ok()) return peer.status();
  auto id = new_request(kind);
  if (!id.is_ok()) return id.status();
  RequestSlot& request = requests_[static_cast<uint32_t>(*id)];
  request.peer = peer_id;
  request.buffer = local;
  request.length = length;
  request.transfer_length = length;
  request.remote = remote;
  request.started = true;
  if (length == 0) {
    complete(*id, request, Status::ok());
    return Request::from_id(*id);
  }
  const verbs::Access access =
      kind == RequestKind::kGet ? sink_access(false) : verbs::Access::kNone;
  if (registers_per_fragment(length)) {
    request.fragment_access = access;
  } else {
    auto region = cache_->get(local, length, access);
    if (!region.is_ok()) {
      release(*id, request);
      return region.status();
    }
    request.region = std::move(region).value();
  }
  if (kind == RequestKind::kPut) (*peer)->unfenced_put = remote;
  ++(*peer)->rma_pending;
  const bool put = kind == RequestKind::kPut;
  (*peer)->puts_queued += put ? 1 : 0;
  (*peer)->rdma.push_back(RdmaItem{.request = *id, .put = put});
  pump(**peer);
  return Request::from_id(*id);
}

Result<Request> WorkerImpl::put(PeerId peer, const void* local, size_t length,
                                RemoteMemory remote) {
  return start_rma(RequestKind::kPut, peer, static_cast<std::byte*>(const_cast<void*>(local)),
                   length, remote);
}

Result<Request> WorkerImpl::get(PeerId peer, void* local, size_t length, RemoteMemory remote) {
  return start_rma(RequestKind::kGet, peer, static_cast<std::byte*>(local), length, remote);
}

namespace {

Status check_atomic(verbs::Capability capabilities, RemoteMemory remote) {
  if (!has(capabilities, verbs::Capability::kAtomics)) {
    return Status(Errc::kNotSupported, "the device has no atomic operations");
  }
  if (remote.address % 8 != 0) {
    return Status(Errc::kInvalidArgument, "atomic target address is not 8-byte aligned");
  }
  return Status::ok();
}

}  // namespace

Result<Request> WorkerImpl::atomic_fetch_add(PeerId peer, RemoteMemory remote, uint64_t add,
                                             uint64_t* result) {
  return atomic_compare_swap_or_add(peer, remote, false, 0, add, result);
}

Result<Request> WorkerImpl::atomic_compare_swap(PeerId peer, RemoteMemory remote, uint64_t compare,
                                                uint64_t swap, uint64_t* result) {
  return atomic_compare_swap_or_add(peer, remote, true, compare, swap, result);
}

Result<Request> WorkerImpl::atomic_compare_swap_or_add(PeerId peer_id, RemoteMemory remote,
                                                       bool compare_swap, uint64_t compare,
                                                       uint64_t operand, uint64_t* result) {
  std::lock_guard lock(mutex_);
  if (Status status = check_atomic(capabilities_, remote); !status.is_ok()) return status;
  auto peer = peer_for_send(peer_id);
  if (!peer.is_ok()) return peer.status();
  const uint32_t slot = atomic_buffers_->take();
  if (slot == BufferPool::kNone) {
    return Status(Errc::kQueueFull, "every atomic result buffer is in flight; progress and retry");
  }
  auto id = new_request(RequestKind::kAtomic);
  if (!id.is_ok()) {
    atomic_buffers_->give(slot);
    return id.status();
  }
  RequestSlot& request = requests_[static_cast<uint32_t>(*id)];
  request.peer = peer_id;
  request.remote = remote;
  request.started = true;
  request.is_compare_swap = compare_swap;
  request.atomic_compare = compare;
  request.atomic_operand = operand;
  request.atomic_result = result;
  request.atomic_slot = slot;
  request.transfer_length = 8;
  ++(*peer)->rma_pending;
  ++(*peer)->puts_queued;
  (*peer)->rdma.push_back(RdmaItem{.request = *id, .put = true});
  pump(**peer);
  return Request::from_id(*id);
}

Status WorkerImpl::flush(PeerId peer, std::chrono::milliseconds bound) {
  {
    std::lock_guard lock(mutex_);
    if (peer != kAnyPeer && peer >= peers_.size()) {
      return Status(Errc::kInvalidArgument, "no peer " + std::to_string(peer));
    }
  }
  auto all_done = [&] {
    if (peer != kAnyPeer) return peers_[peer]->rma_pending == 0;
    return std::none_of(peers_.begin(), peers_.end(), [](const auto& p) { return p->rma_pending; });
  };
  // Puts complete when sent; a read from the last put's target comes back only after the
  // target has placed every write ahead of it on the connection.
  std::vector<Request> fences;
  {
    std::lock_guard lock(mutex_);
    for (auto& p : peers_) {
      if ((peer != kAnyPeer && p->id != peer) || !p->unfenced_put) continue;
      const RemoteMemory target = *p->unfenced_put;
      p->unfenced_put.reset();
      auto fence = start_rma(RequestKind::kGet, p->id, fence_sink_.data(), 1, target);
      if (!fence.is_ok()) return fence.status();
      fences.push_back(*fence);
    }
  }
  Status status = progress_until(all_done, bound, "flush");
  if (!status.is_ok()) return status;
  for (Request& fence : fences) {
    if (Status done = wait(fence, nullptr, bound); !done.is_ok()) {
      return Status(done.code(), "flush: reading back behind the puts: " + done.message());
    }
  }
  return Status::ok();
}

}  // namespace wv::transport
