#include "wv/comm.h"

#include <cstring>
#include <string>

namespace wv {

namespace {

constexpr uint64_t kInternalTag = uint64_t{1} << 63;
constexpr uint64_t kReservedTagBits = kInternalTag | uint64_t{1} << 62;
constexpr std::string_view kAddressKey = "wv.worker.address";

struct WindowDescriptor {
  uint64_t address;
  uint64_t length;
  uint32_t key;
  uint32_t reserved;
};

}  // namespace

Result<std::unique_ptr<Comm>> Comm::init(const Options& options) {
  std::unique_ptr<Comm> comm(new Comm());
  comm->timeout_ = options.timeout;
  auto bootstrap = transport::Bootstrap::from_environment();
  if (!bootstrap.is_ok()) return bootstrap.status();
  comm->bootstrap_ = std::move(bootstrap).value();
  comm->rank_ = comm->bootstrap_->rank();
  comm->size_ = comm->bootstrap_->size();
  comm->local_rank_ = comm->bootstrap_->local_rank();
  transport::WorkerOptions worker_options = options.worker;
  if (worker_options.local_processes == 0) {
    worker_options.local_processes = comm->bootstrap_->local_size();
  }
  auto worker = transport::Worker::create(worker_options);
  if (!worker.is_ok()) return worker.status();
  comm->worker_ = std::move(worker).value();

  const std::vector<std::byte> address = comm->worker_->address();
  if (Status status = comm->bootstrap_->put(kAddressKey, address); !status.is_ok()) return status;
  if (Status status = comm->bootstrap_->fence(options.timeout); !status.is_ok()) return status;
  comm->peers_.resize(static_cast<size_t>(comm->size_));
  for (int rank = 0; rank < comm->size_; ++rank) {
    auto bytes = rank == comm->rank_ ? Result<std::vector<std::byte>>(address)
                                     : comm->bootstrap_->get(rank, kAddressKey, options.timeout);
    if (!bytes.is_ok()) {
      return Status(bytes.status().code(),
                    "address of rank " + std::to_string(rank) + ": " + bytes.status().message());
    }
    auto peer = comm->worker_->add_peer(*bytes);
    if (!peer.is_ok()) return peer.status();
    comm->peers_[static_cast<size_t>(rank)] = *peer;
    if (comm->ranks_.size() <= *peer) comm->ranks_.resize(*peer + 1, kAnySource);
    comm->ranks_[*peer] = rank;
  }
  return comm;
}

Comm::~Comm() = default;

Result<transport::PeerId> Comm::peer(int rank) const {
  if (rank < 0 || rank >= size_) {
    return Status(Errc::kInvalidArgument,
                  "rank " + std::to_string(rank) + " is not in 0.." + std::to_string(size_ - 1));
  }
  return peers_[static_cast<size_t>(rank)];
}

int Comm::rank_of(transport::PeerId peer) const {
  return peer < ranks_.size() ? ranks_[peer] : kAnySource;
}

MessageStatus Comm::to_status(const transport::RequestResult& result) const {
  return MessageStatus{.source = rank_of(result.source),
                       .tag = result.tag,
                       .length = result.length,
                       .cancelled = result.cancelled};
}

Status Comm::check_tag(uint64_t tag) const {
  if (tag & kReservedTagBits) {
    return Status(Errc::kInvalidArgument,
                  "tag " + std::to_string(tag) + " sets bit 62 or 63, which wv reserves");
  }
  return Status::ok();
}

uint64_t Comm::next_internal_tag() {
  return kInternalTag | (++internal_sequence_ << 16);
}

Result<transport::Request> Comm::isend(int destination, uint64_t tag, const void* buffer,
                                       size_t length) {
  if (Status status = check_tag(tag); !status.is_ok()) return status;
  auto to = peer(destination);
  if (!to.is_ok()) return to.status();
  return worker_->isend(*to, tag, buffer, length);
}

Result<transport::Request> Comm::irecv(int source, uint64_t tag, void* buffer, size_t length) {
  transport::PeerId from = transport::kAnyPeer;
  if (source != kAnySource) {
    auto p = peer(source);
    if (!p.is_ok()) return p.status();
    from = *p;
  }
  if (tag == kAnyTag) return worker_->irecv(from, 0, kReservedTagBits, buffer, length);
  if (Status status = check_tag(tag); !status.is_ok()) return status;
  return worker_->irecv(from, tag, transport::kTagMaskAll, buffer, length);
}

Status Comm::wait(transport::Request request, MessageStatus* status) {
  transport::RequestResult result;
  Status outcome = worker_->wait(request, &result, timeout_);
  if (status) *status = to_status(result);
  return outcome;
}

Status Comm::wait_all(std::span<transport::Request> requests) {
  return worker_->wait_all(requests, {}, timeout_);
}

Result<bool> Comm::test(transport::Request request, MessageStatus* status) {
  transport::RequestResult result;
  auto done = worker_->test(request, &result);
  if (done.is_ok() && *done && status) *status = to_status(result);
  return done;
}

Status Comm::send(int destination, uint64_t tag, const void* buffer, size_t length) {
  auto request = isend(destination, tag, buffer, length);
  if (!request.is_ok()) return request.status();
  return wait(*request);
}

Status Comm::ssend(int destination, uint64_t tag, const void* buffer, size_t length) {
  if (Status status = check_tag(tag); !status.is_ok()) return status;
  auto to = peer(destination);
  if (!to.is_ok()) return to.status();
  auto request = worker_->isend(*to, tag, buffer, length, transport::SendMode::kSynchronous);
  if (!request.is_ok()) return request.status();
  return wait(*request);
}

Result<MessageStatus> Comm::recv(int source, uint64_t tag, void* buffer, size_t length) {
  auto request = irecv(source, tag, buffer, length);
  if (!request.is_ok()) return request.status();
  MessageStatus status;
  if (Status outcome = wait(*request, &status); !outcome.is_ok()) return outcome;
  return status;
}

Result<MessageStatus> Comm::iprobe(int source, uint64_t tag) {
  transport::PeerId from = transport::kAnyPeer;
  if (source != kAnySource) {
    auto p = peer(source);
    if (!p.is_ok()) return p.status();
    from = *p;
  }
  auto found = tag == kAnyTag ? worker_->iprobe(from, 0, kReservedTagBits)
                              : worker_->iprobe(from, tag, transport::kTagMaskAll);
  if (!found.is_ok()) return found.status();
  return to_status(*found);
}

Result<MessageStatus> Comm::probe(int source, uint64_t tag) {
  transport::PeerId from = transport::kAnyPeer;
  if (source != kAnySource) {
    auto p = peer(source);
    if (!p.is_ok()) return p.status();
    from = *p;
  }
  auto found = tag == kAnyTag ? worker_->probe(from, 0, kReservedTagBits, timeout_)
                              : worker_->probe(from, tag, transport::kTagMaskAll, timeout_);
  if (!found.is_ok()) return found.status();
  return to_status(*found);
}

Status Comm::barrier() {
  // Dissemination: in round k every rank signals rank + 2^k and hears from rank - 2^k;
  // after ceil(log2 size) rounds everyone has (transitively) heard from everyone.
  const uint64_t tag = next_internal_tag();
  uint64_t round = 0;
  for (int distance = 1; distance < size_; distance *= 2, ++round) {
    const int to = (rank_ + distance) % size_;
    const int from = (rank_ - distance + size_) % size_;
    auto receive = worker_->irecv(peers_[static_cast<size_t>(from)], tag | round,
                                  transport::kTagMaskAll, nullptr, 0);
    if (!receive.is_ok()) return receive.status();
    auto send = worker_->isend(peers_[static_cast<size_t>(to)], tag | round, nullptr, 0);
    if (!send.is_ok()) return send.status();
    transport::Request both[] = {*send, *receive};
    if (Status status = worker_->wait_all(both, {}, timeout_); !status.is_ok()) {
      return Status(status.code(),
                    "barrier round " + std::to_string(round) + ": " + status.message());
    }
  }
  return Status::ok();
}

Result<std::unique_ptr<Window>> Comm::create_window(void* base, size_t length) {
  if (length == 0) return expose(nullptr, 0);
  auto memory = worker_->register_memory(base, length);
  if (!memory.is_ok()) return memory.status();
  return expose(std::move(memory).value(), length);
}

Result<std::unique_ptr<Window>> Comm::allocate_window(size_t length) {
  if (length == 0) return expose(nullptr, 0);
  auto memory = worker_->allocate_memory(length);
  if (!memory.is_ok()) return memory.status();
  return expose(std::move(memory).value(), length);
}

Result<std::unique_ptr<Window>> Comm::expose(std::unique_ptr<transport::RegisteredMemory> memory,
                                             uint64_t length) {
  std::unique_ptr<Window> window(new Window());
  window->comm_ = this;
  window->memory_ = std::move(memory);
  WindowDescriptor mine{};
  if (window->memory_) {
    mine.address = window->memory_->remote().address;
    mine.key = window->memory_->remote().key;
  }
  mine.length = length;
  // Every rank sends its descriptor to every other (an allgather of 24 bytes).
  const uint64_t tag = next_internal_tag();
  std::vector<WindowDescriptor> all(static_cast<size_t>(size_));
  all[static_cast<size_t>(rank_)] = mine;
  std::vector<transport::Request> requests;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    auto receive = worker_->irecv(peers_[static_cast<size_t>(r)], tag, transport::kTagMaskAll,
                                  &all[static_cast<size_t>(r)], sizeof(WindowDescriptor));
    if (!receive.is_ok()) return receive.status();
    requests.push_back(*receive);
  }
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    auto send = worker_->isend(peers_[static_cast<size_t>(r)], tag, &mine, sizeof mine);
    if (!send.is_ok()) return send.status();
    requests.push_back(*send);
  }
  if (Status status = worker_->wait_all(requests, {}, timeout_); !status.is_ok()) return status;
  for (const WindowDescriptor& d : all) {
    window->remotes_.push_back({d.address, d.key});
    window->lengths_.push_back(d.length);
  }
  return window;
}

Window::~Window() = default;

size_t Window::length(int rank) const {
  return rank >= 0 && static_cast<size_t>(rank) < lengths_.size()
             ? lengths_[static_cast<size_t>(rank)]
             : 0;
}

Result<transport::RemoteMemory> Window::target(int rank, size_t offset, size_t length) const {
  if (rank < 0 || static_cast<size_t>(rank) >= remotes_.size()) {
    return Status(Errc::kInvalidArgument, "rank " + std::to_string(rank) + " is not in the job");
  }
  const uint64_t exposed = lengths_[static_cast<size_t>(rank)];
  if (offset > exposed || length > exposed - offset) {
    return Status(Errc::kInvalidArgument, "window access [" + std::to_string(offset) + ", +" +
                                              std::to_string(length) + ") outside the " +
                                              std::to_string(exposed) + " bytes rank " +
                                              std::to_string(rank) + " exposed");
  }
  const transport::RemoteMemory& remote = remotes_[static_cast<size_t>(rank)];
  return transport::RemoteMemory{remote.address + offset, remote.key};
}

Result<transport::Request> Window::put(int rank, size_t offset, const void* source, size_t length) {
  auto remote = target(rank, offset, length);
  if (!remote.is_ok()) return remote.status();
  return comm_->worker_->put(comm_->peers_[static_cast<size_t>(rank)], source, length, *remote);
}

Result<transport::Request> Window::get(int rank, size_t offset, void* destination, size_t length) {
  auto remote = target(rank, offset, length);
  if (!remote.is_ok()) return remote.status();
  return comm_->worker_->get(comm_->peers_[static_cast<size_t>(rank)], destination, length,
                             *remote);
}

Result<transport::Request> Window::fetch_add(int rank, size_t offset, uint64_t add,
                                             uint64_t* result) {
  auto remote = target(rank, offset, 8);
  if (!remote.is_ok()) return remote.status();
  return comm_->worker_->atomic_fetch_add(comm_->peers_[static_cast<size_t>(rank)], *remote, add,
                                          result);
}

Result<transport::Request> Window::compare_swap(int rank, size_t offset, uint64_t compare,
                                                uint64_t swap, uint64_t* result) {
  auto remote = target(rank, offset, 8);
  if (!remote.is_ok()) return remote.status();
  return comm_->worker_->atomic_compare_swap(comm_->peers_[static_cast<size_t>(rank)], *remote,
                                             compare, swap, result);
}

Status Window::flush(int rank) {
  if (rank == kAnySource) return comm_->worker_->flush(transport::kAnyPeer, comm_->timeout_);
  if (rank < 0 || rank >= comm_->size_) {
    return Status(Errc::kInvalidArgument, "rank " + std::to_string(rank) + " is not in the job");
  }
  return comm_->worker_->flush(comm_->peers_[static_cast<size_t>(rank)], comm_->timeout_);
}

}  // namespace wv
