#include "wv/collectives/communicator.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "algorithms.h"
#include "hierarchical.h"
#include "host_segment.h"
#include "nonblocking.h"
#include "scratch.h"
#include "shared_buffers.h"
#include "wv/config/config.h"
#include "wv/config/names.h"
#include "wv/copy.h"

namespace wv::coll {

using detail::Channel;
using detail::Group;
using detail::Reduction;

namespace {

// wv::Comm publishes each worker's address under this bootstrap key (transport/src/comm.cc);

std::atomic<uint32_t> next_context{0};

Status missing(const char* what) {
  return Status(Errc::kInvalidArgument, std::string(what) + " is null with a non-zero count");
}

std::vector<size_t> times(std::span<const size_t> counts, size_t element) {
  std::vector<size_t> bytes(counts.begin(), counts.end());
  for (size_t& b : bytes) b *= element;
  return bytes;
}

Status check_counts(std::span<const size_t> counts, int size, const char* what) {
  if (counts.size() != static_cast<size_t>(size)) {
    return Status(Errc::kInvalidArgument, std::string(what) + " has " +
                                              std::to_string(counts.size()) + " entries for " +
                                              std::to_string(size) + " ranks");
  }
  return Status::ok();
}

}  // namespace

Communicator::Communicator() : buffers_(std::make_shared<detail::SharedBuffers>()) {}
Communicator::~Communicator() = default;

Result<SharedBuffer> Communicator::allocate_buffer(size_t bytes) {
  auto allocated = buffers_->allocate(bytes);
  if (!allocated.is_ok()) return allocated.status();
  SharedBuffer buffer;
  buffer.owner_ = buffers_;
  buffer.id_ = allocated->id;
  buffer.data_ = allocated->address;
  buffer.size_ = bytes;
  return buffer;
}

Communicator::SharedBufferCounters Communicator::shared_buffer_counters() const {
  if (!segment_) return {};
  return {segment_->exposed_calls(), segment_->peer_buffers_read()};
}

SharedBuffer::SharedBuffer(SharedBuffer&& other) noexcept
    : owner_(std::move(other.owner_)), id_(other.id_), data_(other.data_), size_(other.size_) {
  other.id_ = 0;
  other.data_ = nullptr;
  other.size_ = 0;
}

SharedBuffer& SharedBuffer::operator=(SharedBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::move(other.owner_);
    id_ = std::exchange(other.id_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SharedBuffer::~SharedBuffer() {
  reset();
}

void SharedBuffer::reset() {
  if (owner_) owner_->release(id_);
  owner_.reset();
  data_ = nullptr;
  size_ = 0;
}

int Communicator::rank() const {
  return world_->rank;
}
int Communicator::size() const {
  return world_->size;
}

uint64_t Communicator::next_tag() {
  return detail::make_tag(context_, sequence_++, 0);
}

Result<std::unique_ptr<Communicator>> Communicator::create(Comm& comm, const Options& options) {
  std::unique_ptr<Communicator> c(new Communicator());
  c->comm_ = &comm;
  c->options_ = options;
  c->context_ = next_context.fetch_add(1) & 0x3f;
  if (options.table) {
    c->table_ = *options.table;
  } else {
    auto table = DecisionTable::configured();
    if (!table.is_ok()) return table.status();
    c->table_ = *table;
  }
  const auto& config = config::global();
  if (!config.is_ok()) return config.status();
  int fake_hosts = options.fake_hosts;
  if (fake_hosts < 0) {
    fake_hosts = static_cast<int>(config->get_int(config::names::kTopologyFakeHosts));
  }
  const transport::WaitPolicy wait = comm.worker().wait_policy();

  auto world = std::make_unique<Group>();
  world->worker = &comm.worker();
  world->rank = comm.rank();
  world->size = comm.size();
  world->timeout = options.timeout;
  world->wait = wait;
  for (int rank = 0; rank < comm.size(); ++rank) {
    auto peer = comm.peer(rank);
    if (!peer.is_ok()) return peer.status();
    world->peers.push_back(*peer);
    world->world.push_back(rank);
  }
  c->world_ = std::move(world);

  // Topology: every rank's placement, gathered around the ring.
  MachineInfo machine = describe_this_machine();
  struct Entry {
    uint64_t host_key;
    int32_t socket;
    int32_t near_nic;
  };
  std::vector<Entry> entries(static_cast<size_t>(comm.size()));
  entries[static_cast<size_t>(comm.rank())] = {std::hash<std::string>{}(machine.host_name),
                                               machine.socket, machine.near_nic ? 1 : 0};
  {
    Channel channel(*c->world_, c->next_tag(), nullptr);
    std::vector<size_t> bytes(static_cast<size_t>(comm.size()), sizeof(Entry));
    if (Status s = detail::allgather_ring(channel, entries.data(), bytes); !s.is_ok()) {
      return Status(s.code(), "topology exchange: " + s.message());
    }
  }
  std::vector<RankPlacement> placements;
  for (const Entry& e : entries) placements.push_back({e.host_key, e.socket, e.near_nic != 0});
  // Ranks on this machine, virtual hosts or not: whether the host segment's ranks share the
  // CPUs with more processes than there are.
  const auto machine_ranks =
      static_cast<int>(std::count_if(entries.begin(), entries.end(), [&](const Entry& e) {
        return e.host_key == entries[static_cast<size_t>(comm.rank())].host_key;
      }));
  const FakeLayout layout = config->get_string(config::names::kTopologyFakeLayout) == "cyclic"
                                ? FakeLayout::kCyclic
                                : FakeLayout::kBlock;
  const FakeNic fake_nic = config->get_string(config::names::kTopologyFakeNic) == "last"
                               ? FakeNic::kLast
                               : FakeNic::kNone;
  c->topology_ = Topology::build(placements, fake_hosts, layout, fake_nic);
  c->topology_.machine = machine;

  auto make_group = [&](const std::vector<int>& members) {
    auto g = std::make_unique<Group>();
    g->worker = &comm.worker();
    g->timeout = options.timeout;
    g->wait = wait;
    g->size = static_cast<int>(members.size());
    for (size_t i = 0; i < members.size(); ++i) {
      g->peers.push_back(c->world_->peers[static_cast<size_t>(members[i])]);
      g->world.push_back(members[i]);
      if (members[i] == comm.rank()) g->rank = static_cast<int>(i);
    }
    return g;
  };
  const int my_host = c->topology_.host_of_rank[static_cast<size_t>(comm.rank())];
  c->host_ = make_group(c->topology_.host_ranks[static_cast<size_t>(my_host)]);
  std::vector<int> leaders;
  for (int h = 0; h < c->topology_.host_count(); ++h) leaders.push_back(c->topology_.leader_of(h));
  c->leaders_ = make_group(leaders);
  if (c->host_->rank != 0) c->leaders_->rank = -1;  // not a member
  // Rank i of every host, when the hosts are of one size (several leaders per host).
  const auto& hosts = c->topology_.host_ranks;
  const bool even = std::all_of(hosts.begin(), hosts.end(),
                                [&](const auto& host) { return host.size() == hosts[0].size(); });
  if (even && hosts.size() > 1 && hosts[0].size() > 1) {
    std::vector<int> column;
    for (const auto& host : hosts) column.push_back(host[static_cast<size_t>(c->host_->rank)]);
    c->column_ = make_group(column);
  }

  const bool shared_memory = options.shared_memory < 0
                                 ? config->get_bool(config::names::kCollectivesSharedMemory)
                                 : options.shared_memory != 0;
  const uint64_t segment_tag = c->next_tag();  // taken by every rank: the sequences stay equal
  if (!shared_memory && c->host_->size > 1) {
    c->segment_status_ = "off (collectives_shared_memory is false)";
  } else if (c->host_->size > 1) {
    Channel channel(*c->host_, segment_tag, nullptr);
    auto segment = detail::HostSegment::create(channel, machine.last_level_cache_bytes,
                                               machine_ranks, c->buffers_, &c->segment_status_);
    if (!segment.is_ok()) {
      return Status(segment.status().code(), "host segment: " + segment.status().message());
    }
    c->segment_ = std::move(segment).value();
  }
  return c;
}

detail::HostSegment* Communicator::segment_for(const std::atomic<bool>* cancel) const {
  // Non-blocking collectives run on helper threads and may interleave; the segment's steps
  // may not.
  return cancel == nullptr ? segment_.get() : nullptr;
}

detail::HostSegment* Communicator::whole_job_segment(const std::atomic<bool>* cancel) const {
  return host_->size == size() ? segment_for(cancel) : nullptr;
}

std::string_view Communicator::select(Collective collective, uint64_t bytes) const {
  return table_.select(collective, bytes, size(), topology_.host_count());
}

Result<std::string> Communicator::pick(Collective collective, uint64_t bytes,
                                       std::string_view algorithm) const {
  if (algorithm.empty()) return std::string(select(collective, bytes));
  if (Status s = check_algorithm(collective, algorithm); !s.is_ok()) return s;
  return std::string(algorithm);
}

Status Communicator::check_root(int root) const {
  if (root < 0 || root >= size()) {
    return Status(Errc::kInvalidArgument,
                  "root " + std::to_string(root) + " is not in 0.." + std::to_string(size() - 1));
  }
  return Status::ok();
}

// ---- barrier ----

Status Communicator::run_barrier(uint64_t tag, const std::string& algorithm,
                                 const std::atomic<bool>* cancel) {
  Channel channel(*world_, tag, cancel);
  if (algorithm == "hierarchical") {
    detail::Hierarchy h{world_.get(), host_.get(),         leaders_.get(),
                        &topology_,   segment_for(cancel), column_.get()};
    return detail::barrier_hierarchical(channel, h);
  }
  if (algorithm == "shared_memory") {
    if (detail::HostSegment* segment = whole_job_segment(cancel)) return segment->barrier(channel);
  }
  return detail::barrier_dissemination(channel);
}

Status Communicator::barrier(std::string_view algorithm) {
  const uint64_t tag = next_tag();
  auto name = pick(Collective::kBarrier, 0, algorithm);
  if (!name.is_ok()) return name.status();
  return run_barrier(tag, *name, nullptr);
}

// ---- bcast ----

Status Communicator::run_bcast(uint64_t tag, void* buffer, size_t bytes, int root,
                               const std::string& algorithm, const std::atomic<bool>* cancel) {
  if (bytes == 0 || size() == 1) return Status::ok();
  Channel channel(*world_, tag, cancel);
  if (algorithm == "shared_memory") {
    if (detail::HostSegment* segment = whole_job_segment(cancel)) {
      return segment->bcast(channel, buffer, bytes, root);
    }
  }
  if (algorithm == "binomial" || algorithm == "shared_memory") {
    return detail::bcast_binomial(channel, buffer, bytes, root);
  }
  if (algorithm == "scatter_allgather") {
    return detail::bcast_scatter_allgather(channel, buffer, bytes, root);
  }
  if (algorithm == "chain") {
    return detail::bcast_chain(channel, buffer, bytes, root,
                               options_.chain_chunk == 0 ? 65536 : options_.chain_chunk);
  }
  detail::Hierarchy h{world_.get(), host_.get(),         leaders_.get(),
                      &topology_,   segment_for(cancel), column_.get()};
  return detail::bcast_hierarchical(channel, h, buffer, bytes, root);
}

Status Communicator::bcast(void* buffer, size_t count, DataType type, int root,
                           std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_root(root); !s.is_ok()) return s;
  if (count > 0 && buffer == nullptr) return missing("buffer");
  const size_t bytes = count * size_of(type);
  auto name = pick(Collective::kBcast, bytes, algorithm);
  if (!name.is_ok()) return name.status();
  return run_bcast(tag, buffer, bytes, root, *name, nullptr);
}

// ---- reduce ----

Status Communicator::reduce(const void* send, void* recv, size_t count, DataType type,
                            const ReduceOp& op, int root, std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_root(root); !s.is_ok()) return s;
  if (Status s = check_op(op, type); !s.is_ok()) return s;
  const size_t bytes = count * size_of(type);
  auto name = pick(Collective::kReduce, bytes, algorithm);
  if (!name.is_ok()) return name.status();
  const bool in_place = send == kInPlace;
  if (in_place && rank() != root) {
    return Status(Errc::kInvalidArgument, "reduce: kInPlace is for the root only");
  }
  const void* input = in_place ? recv : send;
  if (count > 0 && (input == nullptr || (rank() == root && recv == nullptr))) {
    return missing("buffer");
  }
  if (count == 0) return Status::ok();
  Channel channel(*world_, tag, nullptr);
  Reduction r{type, &op};
  if (detail::HostSegment* segment = whole_job_segment(nullptr);
      *name == "shared_memory" && segment != nullptr) {
    // The segment's allreduce with the result written at the root only.
    return segment->allreduce(channel, input, rank() == root ? recv : nullptr, count, r);
  }
  return detail::reduce_binomial(channel, input, recv, count, r, root);
}

// ---- allreduce ----

Status Communicator::run_allreduce(uint64_t tag, void* recv, size_t count, DataType type,
                                   const ReduceOp& op, const std::string& algorithm,
                                   const std::atomic<bool>* cancel) {
  if (count == 0 || size() == 1) return Status::ok();
  Channel channel(*world_, tag, cancel);
  Reduction r{type, &op};
  if (algorithm == "shared_memory") {  // without the segment (allreduce() uses it directly)
    return count * r.element() > size_t{64} * 1024
               ? detail::allreduce_rabenseifner(channel, recv, count, r)
               : detail::allreduce_recursive_doubling(channel, recv, count, r);
  }
  if (algorithm == "recursive_doubling") {
    return detail::allreduce_recursive_doubling(channel, recv, count, r);
  }
  if (algorithm == "rabenseifner") return detail::allreduce_rabenseifner(channel, recv, count, r);
  if (algorithm == "ring") return detail::allreduce_ring(channel, recv, count, r);
  detail::Hierarchy h{world_.get(), host_.get(),         leaders_.get(),
                      &topology_,   segment_for(cancel), column_.get()};
  return detail::allreduce_hierarchical(channel, h, recv, count, r);
}

Status Communicator::allreduce(const void* send, void* recv, size_t count, DataType type,
                               const ReduceOp& op, std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_op(op, type); !s.is_ok()) return s;
  const size_t bytes = count * size_of(type);
  auto name = pick(Collective::kAllreduce, bytes, algorithm);
  if (!name.is_ok()) return name.status();
  if (count > 0 && (recv == nullptr || send == nullptr)) return missing("buffer");
  const void* input = send == kInPlace ? recv : send;
  detail::HostSegment* segment = whole_job_segment(nullptr);
  if (*name == "shared_memory" && segment != nullptr && count > 0) {
    // Straight from send to recv: the segment reads the input once, so no copy first.
    Channel channel(*world_, tag, nullptr);
    return segment->allreduce(channel, input, recv, count, detail::Reduction{type, &op});
  }
  if (input != recv && bytes > 0) copy_bytes(recv, send, bytes);
  return run_allreduce(tag, recv, count, type, op, *name, nullptr);
}

// ---- allgather ----

Status Communicator::allgather(const void* send, void* recv, size_t count, DataType type,
                               std::string_view algorithm) {
  const size_t block = count * size_of(type);
  if (detail::HostSegment* segment = whole_job_segment(nullptr);
      segment != nullptr && count > 0 && (algorithm.empty() || algorithm == "shared_memory")) {
    // Equal blocks through the segment need none of allgatherv's bookkeeping (or allocations).
    auto name = pick(Collective::kAllgather, block, algorithm);
    if (!name.is_ok()) return name.status();
    if (*name == "shared_memory") {
      if (recv == nullptr || send == nullptr) return missing("buffer");
      const uint64_t tag = next_tag();
      Channel channel(*world_, tag, nullptr);
      auto* out = static_cast<std::byte*>(recv);
      const void* mine = send == kInPlace ? out + static_cast<size_t>(rank()) * block : send;
      return segment->allgather(channel, mine, recv, block);
    }
  }
  std::vector<size_t> counts(static_cast<size_t>(size()), count);
  std::vector<size_t> displacements(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) displacements[i] = i * count;
  return allgatherv(send, count, recv, counts, displacements, type, algorithm);
}

Status Communicator::allgatherv(const void* send, size_t send_count, void* recv,
                                std::span<const size_t> counts,
                                std::span<const size_t> displacements, DataType type,
                                std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_counts(counts, size(), "counts"); !s.is_ok()) return s;
  if (Status s = check_counts(displacements, size(), "displacements"); !s.is_ok()) return s;
  const size_t me = static_cast<size_t>(rank());
  if (send != kInPlace && send_count != counts[me]) {
    return Status(Errc::kInvalidArgument, "allgatherv: send count " + std::to_string(send_count) +
                                              " differs from counts[rank] " +
                                              std::to_string(counts[me]));
  }
  const size_t element = size_of(type);
  size_t total = 0;
  for (size_t c : counts) total += c;
  auto name = pick(Collective::kAllgather, total * element / counts.size(), algorithm);
  if (!name.is_ok()) return name.status();
  if (total > 0 && recv == nullptr) return missing("recv");
  if (counts[me] > 0 && send == nullptr) return missing("send");
  auto* out = static_cast<std::byte*>(recv);
  if (send != kInPlace && counts[me] > 0) {
    std::memmove(out + displacements[me] * element, send, counts[me] * element);
  }
  if (total == 0 || size() == 1) return Status::ok();
  // The algorithms want blocks packed in rank order; use recv itself when it is laid out so.
  bool packed = true;
  for (size_t i = 0, at = 0; i < counts.size(); at += counts[i], ++i) {
    packed = packed && displacements[i] == at;
  }
  detail::Scratch scratch(packed ? 0 : total * element);
  std::byte* work = out;
  const std::vector<size_t> bytes = times(counts, element);
  const std::vector<size_t> offsets = detail::prefix(bytes);
  if (!packed) {
    work = scratch.data();
    if (bytes[me] > 0) copy_bytes(work + offsets[me], out + displacements[me] * element, bytes[me]);
  }
  Channel channel(*world_, tag, nullptr);
  Status s;
  detail::HostSegment* segment = whole_job_segment(nullptr);
  if (*name == "shared_memory" && segment != nullptr) {
    s = segment->allgatherv(channel, work, bytes);
  } else if (*name == "recursive_doubling") {
    s = detail::allgather_recursive_doubling(channel, work, bytes);
  } else if (*name == "bruck") {
    s = detail::allgather_bruck(channel, work, bytes);
  } else if (*name == "hierarchical") {
    detail::Hierarchy h{world_.get(), host_.get(),          leaders_.get(),
                        &topology_,   segment_for(nullptr), column_.get()};
    s = detail::allgather_hierarchical(channel, h, work, bytes);
  } else {
    s = detail::allgather_ring(channel, work, bytes);
  }
  if (!s.is_ok() || packed) return s;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (bytes[i] > 0) copy_bytes(out + displacements[i] * element, work + offsets[i], bytes[i]);
  }
  return Status::ok();
}

// ---- reduce_scatter ----

Status Communicator::reduce_scatter_block(const void* send, void* recv, size_t count, DataType type,
                                          const ReduceOp& op, std::string_view algorithm) {
  std::vector<size_t> counts(static_cast<size_t>(size()), count);
  return reduce_scatter(send, recv, counts, type, op, algorithm);
}

Status Communicator::reduce_scatter(const void* send, void* recv, std::span<const size_t> counts,
                                    DataType type, const ReduceOp& op, std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_counts(counts, size(), "counts"); !s.is_ok()) return s;
  if (Status s = check_op(op, type); !s.is_ok()) return s;
  const size_t element = size_of(type);
  const std::vector<size_t> offsets = detail::prefix(counts);
  const size_t total = offsets.back();
  auto name = pick(Collective::kReduceScatter, total * element, algorithm);
  if (!name.is_ok()) return name.status();
  if (total == 0) return Status::ok();
  const size_t me = static_cast<size_t>(rank());
  const bool in_place = send == kInPlace;
  if (recv == nullptr || (!in_place && send == nullptr)) return missing("buffer");
  if (detail::HostSegment* segment = whole_job_segment(nullptr);
      *name == "shared_memory" && segment != nullptr) {
    // Straight from the input: in place, this rank's share is combined where it lies (the others
    // read the rest meanwhile) and moved to the front once all are done.
    Channel channel(*world_, tag, nullptr);
    auto* out = static_cast<std::byte*>(recv);
    const void* input = in_place ? recv : send;
    std::byte* share = in_place ? out + offsets[me] * element : out;
    std::span<const size_t> starts(offsets.data(), counts.size());
    if (Status s = segment->reduce_scatter(channel, input, share, counts, starts,
                                           detail::Reduction{type, &op});
        !s.is_ok()) {
      return s;
    }
    if (in_place && counts[me] > 0 && share != out) std::memmove(out, share, counts[me] * element);
    return Status::ok();
  }
  detail::Scratch scratch(in_place ? 0 : total * element);
  std::byte* work = static_cast<std::byte*>(recv);
  if (!in_place) {
    copy_bytes(scratch.data(), send, total * element);
    work = scratch.data();
  }
  if (size() > 1) {
    Channel channel(*world_, tag, nullptr);
    Reduction r{type, &op};
    Status s = *name == "ring" ? detail::reduce_scatter_ring(channel, work, counts, r)
                               : detail::reduce_scatter_recursive_halving(channel, work, counts, r);
    if (!s.is_ok()) return s;
  }
  if (counts[me] > 0) {
    std::memmove(recv, work + offsets[me] * element, counts[me] * element);
  }
  return Status::ok();
}

// ---- alltoall ----

Status Communicator::alltoall(const void* send, void* recv, size_t count, DataType type,
                              std::string_view algorithm) {
  const uint64_t tag = next_tag();
  const size_t element = size_of(type);
  const size_t block = count * element;
  auto name = pick(Collective::kAlltoall, block, algorithm);
  if (!name.is_ok()) return name.status();
  if (count == 0) return Status::ok();
  if (recv == nullptr || send == nullptr) return missing("buffer");
  const size_t n = static_cast<size_t>(size());
  const bool in_place = send == kInPlace || send == recv;
  detail::Scratch copy(in_place ? n * block : 0);
  if (in_place) {
    copy_bytes(copy.data(), recv, n * block);
    send = copy.data();
  }
  Channel channel(*world_, tag, nullptr);
  std::vector<size_t> offsets(n);
  for (size_t i = 0; i < n; ++i) offsets[i] = i * block;
  if (*name == "shared_memory") {
    if (detail::HostSegment* segment = whole_job_segment(nullptr)) {
      return segment->alltoall(channel, send, recv, block, offsets);
    }
  }
  if (*name == "hierarchical") {
    detail::Hierarchy h{world_.get(), host_.get(),          leaders_.get(),
                        &topology_,   segment_for(nullptr), column_.get()};
    return detail::alltoall_hierarchical(channel, h, send, recv, block);
  }
  if (*name == "bruck") return detail::alltoall_bruck(channel, send, recv, block);
  std::vector<size_t> bytes(n, block);
  if (*name == "linear") {
    return detail::alltoallv_linear(channel, send, bytes, offsets, recv, bytes, offsets);
  }
  return detail::alltoallv_pairwise(channel, send, bytes, offsets, recv, bytes, offsets);
}

Status Communicator::alltoallv(const void* send, std::span<const size_t> send_counts,
                               std::span<const size_t> send_displacements, void* recv,
                               std::span<const size_t> recv_counts,
                               std::span<const size_t> recv_displacements, DataType type,
                               std::string_view algorithm) {
  const uint64_t tag = next_tag();
  for (auto [list, what] : {std::pair{recv_counts, "recv_counts"},
                            std::pair{recv_displacements, "recv_displacements"}}) {
    if (Status s = check_counts(list, size(), what); !s.is_ok()) return s;
  }
  const bool in_place = send == kInPlace;
  if (!in_place) {
    for (auto [list, what] : {std::pair{send_counts, "send_counts"},
                              std::pair{send_displacements, "send_displacements"}}) {
      if (Status s = check_counts(list, size(), what); !s.is_ok()) return s;
    }
  }
  std::string name = algorithm.empty() ? "pairwise" : std::string(algorithm);
  if (Status s = check_algorithm(Collective::kAlltoall, name); !s.is_ok()) return s;
  if (name == "bruck" || name == "hierarchical" || name == "shared_memory") {
    return Status(Errc::kInvalidArgument,
                  "alltoallv: the " + name +
                      " algorithm needs equal blocks (use alltoall, or pairwise or linear)");
  }
  const size_t element = size_of(type);
  const std::vector<size_t> rb = times(recv_counts, element);
  const std::vector<size_t> ro = times(recv_displacements, element);
  // In place, MPI's rule: the same counts and displacements for sending and receiving, sent
  // from a copy of the receive blocks.
  std::vector<size_t> sb = in_place ? rb : times(send_counts, element);
  std::vector<size_t> so = in_place ? ro : times(send_displacements, element);
  size_t extent = 0;
  if (in_place) {
    for (size_t i = 0; i < rb.size(); ++i) extent = std::max(extent, ro[i] + rb[i]);
  }
  detail::Scratch copy(extent);
  if (in_place) {
    copy_bytes(copy.data(), recv, extent);
    send = copy.data();
  }
  Channel channel(*world_, tag, nullptr);
  if (name == "linear") return detail::alltoallv_linear(channel, send, sb, so, recv, rb, ro);
  return detail::alltoallv_pairwise(channel, send, sb, so, recv, rb, ro);
}

// ---- gather / scatter ----

Status Communicator::gather(const void* send, void* recv, size_t count, DataType type, int root,
                            std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_root(root); !s.is_ok()) return s;
  const size_t block = count * size_of(type);
  auto name = pick(Collective::kGather, block, algorithm);
  if (!name.is_ok()) return name.status();
  if (count == 0) return Status::ok();
  const bool is_root = rank() == root;
  if (send == kInPlace) {
    if (!is_root) return Status(Errc::kInvalidArgument, "gather: kInPlace is for the root only");
    send = static_cast<const std::byte*>(recv) + static_cast<size_t>(root) * block;
  }
  if (send == nullptr || (is_root && recv == nullptr)) return missing("buffer");
  Channel channel(*world_, tag, nullptr);
  if (detail::HostSegment* segment = whole_job_segment(nullptr);
      *name == "shared_memory" && segment != nullptr) {
    return segment->gather(channel, send, is_root ? recv : nullptr, block);
  }
  if (*name == "binomial" || *name == "shared_memory") {
    return detail::gather_binomial(channel, send, recv, block, root);
  }
  const size_t n = static_cast<size_t>(size());
  std::vector<size_t> bytes(n, block), offsets(n);
  for (size_t i = 0; i < n; ++i) offsets[i] = i * block;
  return detail::gatherv_linear(channel, send, block, recv, bytes, offsets, root);
}

Status Communicator::gatherv(const void* send, size_t send_count, void* recv,
                             std::span<const size_t> counts, std::span<const size_t> displacements,
                             DataType type, int root, std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_root(root); !s.is_ok()) return s;
  const std::string name = algorithm.empty() ? "linear" : std::string(algorithm);
  if (Status s = check_algorithm(Collective::kGather, name); !s.is_ok()) return s;
  if (name != "linear") {
    return Status(Errc::kInvalidArgument,
                  "gatherv: only the linear algorithm (counts are known at the root only)");
  }
  const bool is_root = rank() == root;
  const size_t element = size_of(type);
  if (is_root) {
    if (Status s = check_counts(counts, size(), "counts"); !s.is_ok()) return s;
    if (Status s = check_counts(displacements, size(), "displacements"); !s.is_ok()) return s;
    if (send != kInPlace && send_count != counts[static_cast<size_t>(root)]) {
      return Status(Errc::kInvalidArgument, "gatherv: root's send count differs from its count");
    }
  } else if (send == kInPlace) {
    return Status(Errc::kInvalidArgument, "gatherv: kInPlace is for the root only");
  }
  Channel channel(*world_, tag, nullptr);
  std::vector<size_t> bytes, offsets;
  if (is_root) {
    bytes = times(counts, element);
    offsets = times(displacements, element);
  }
  return detail::gatherv_linear(channel, send, send_count * element, recv, bytes, offsets, root);
}

Status Communicator::scatter(const void* send, void* recv, size_t count, DataType type, int root,
                             std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_root(root); !s.is_ok()) return s;
  const size_t block = count * size_of(type);
  auto name = pick(Collective::kScatter, block, algorithm);
  if (!name.is_ok()) return name.status();
  if (count == 0) return Status::ok();
  const bool is_root = rank() == root;
  if (recv == kInPlace && !is_root) {
    return Status(Errc::kInvalidArgument, "scatter: kInPlace is for the root only");
  }
  if (recv == nullptr || (is_root && send == nullptr)) return missing("buffer");
  Channel channel(*world_, tag, nullptr);
  if (detail::HostSegment* segment = whole_job_segment(nullptr);
      *name == "shared_memory" && segment != nullptr) {
    return segment->scatter(channel, send, recv == kInPlace ? nullptr : recv, block, root);
  }
  if (*name == "binomial" || *name == "shared_memory") {
    return detail::scatter_binomial(channel, send, recv, block, root);
  }
  const size_t n = static_cast<size_t>(size());
  std::vector<size_t> bytes(n, block), offsets(n);
  for (size_t i = 0; i < n; ++i) offsets[i] = i * block;
  return detail::scatterv_linear(channel, send, bytes, offsets, recv, block, root);
}

Status Communicator::scatterv(const void* send, std::span<const size_t> counts,
                              std::span<const size_t> displacements, void* recv, size_t recv_count,
                              DataType type, int root, std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_root(root); !s.is_ok()) return s;
  const std::string name = algorithm.empty() ? "linear" : std::string(algorithm);
  if (Status s = check_algorithm(Collective::kScatter, name); !s.is_ok()) return s;
  if (name != "linear") {
    return Status(Errc::kInvalidArgument,
                  "scatterv: only the linear algorithm (counts are known at the root only)");
  }
  const bool is_root = rank() == root;
  const size_t element = size_of(type);
  if (is_root) {
    if (Status s = check_counts(counts, size(), "counts"); !s.is_ok()) return s;
    if (Status s = check_counts(displacements, size(), "displacements"); !s.is_ok()) return s;
  } else if (recv == kInPlace) {
    return Status(Errc::kInvalidArgument, "scatterv: kInPlace is for the root only");
  }
  Channel channel(*world_, tag, nullptr);
  std::vector<size_t> bytes, offsets;
  if (is_root) {
    bytes = times(counts, element);
    offsets = times(displacements, element);
  }
  return detail::scatterv_linear(channel, send, bytes, offsets, recv, recv_count * element, root);
}

// ---- non-blocking ----

Result<CollRequest> Communicator::launch(std::function<Status(const std::atomic<bool>*)> body) {
  CollRequest request;
  request.state_ = detail::NonBlocking::start(std::move(body));
  return request;
}

Result<CollRequest> Communicator::ibarrier(std::string_view algorithm) {
  const uint64_t tag = next_tag();
  auto name = pick(Collective::kBarrier, 0, algorithm);
  if (!name.is_ok()) return name.status();
  return launch([this, tag, name = *name](const std::atomic<bool>* cancel) {
    return run_barrier(tag, name, cancel);
  });
}

Result<CollRequest> Communicator::ibcast(void* buffer, size_t count, DataType type, int root,
                                         std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_root(root); !s.is_ok()) return s;
  if (count > 0 && buffer == nullptr) return missing("buffer");
  const size_t bytes = count * size_of(type);
  auto name = pick(Collective::kBcast, bytes, algorithm);
  if (!name.is_ok()) return name.status();
  return launch([=, this, name = *name](const std::atomic<bool>* cancel) {
    return run_bcast(tag, buffer, bytes, root, name, cancel);
  });
}

Result<CollRequest> Communicator::iallreduce(const void* send, void* recv, size_t count,
                                             DataType type, const ReduceOp& op,
                                             std::string_view algorithm) {
  const uint64_t tag = next_tag();
  if (Status s = check_op(op, type); !s.is_ok()) return s;
  const size_t bytes = count * size_of(type);
  auto name = pick(Collective::kAllreduce, bytes, algorithm);
  if (!name.is_ok()) return name.status();
  if (count > 0 && (recv == nullptr || send == nullptr)) return missing("buffer");
  if (send != kInPlace && send != recv && bytes > 0) copy_bytes(recv, send, bytes);
  return launch([=, this, name = *name](const std::atomic<bool>* cancel) {
    return run_allreduce(tag, recv, count, type, op, name, cancel);
  });
}

}  // namespace wv::coll
