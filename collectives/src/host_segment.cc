#include "host_segment.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "wv/config/config.h"
#include "wv/config/names.h"
#include "wv/copy.h"

namespace wv::coll::detail {

namespace {

constexpr uint32_t kMagic = 0x77766873;  // "wvhs"
constexpr size_t kLineBytes = 128;       // two cache lines: the adjacent-line prefetcher
                                         // would otherwise couple neighbours' counters
constexpr size_t kNameBytes = 64;
// A vector up to this size is reduced whole by every rank (one step); above it each rank
// reduces its share and the others copy it (two steps, a copy less per byte).
constexpr size_t kWholeReduceBytes = size_t{8} * 1024;
// Blocks of fewer bytes are not exposed: publishing and looking up cost more than the copy.
// With more ranks on the machine than CPUs, a rank whose buffer is read waiting for its readers
// costs context switches that a copy into the segment (which lets it run ahead) does not, so
// the bar is higher there (2 ranks, 4 KiB broadcast: 0.54 -> 0.30 us exposed; 4 ranks on 2
// CPUs: 1.0 -> 5.5 us). Every rank must judge alike (a rank that does not look would miss what
// a peer exposed), so the bar depends only on what all ranks of the host know.
// A broadcast's root waits for every reader, so there the bar is higher still (4 ranks on 2
// CPUs, 256 KiB: 21 us through the segment, 23-24 exposed; 16 MiB: 1988 and 1851).
constexpr size_t kExposeBytes = 1024;
constexpr size_t kExposeBytesOversubscribed = size_t{64} * 1024;
constexpr size_t kBcastExposeBytesOversubscribed = size_t{1024} * 1024;
// An allreduce over exposed buffers combines and copies out pieces of this size.
constexpr size_t kPushBytes = size_t{32} * 1024;

// result = first (op) operand(r) for every rank r with an operand (non-null), in rank order.
// The first combination reads `first` and writes `result` in one pass, so `first` need not be
// copied to `result` beforehand; `result` may be `first`.
template <typename Operand>
void combine_ranks(const Reduction& r, const std::byte* first, int members, Operand operand,
                   std::byte* result, size_t count) {
  const std::byte* accumulated = first;
  for (int rank = 0; rank < members; ++rank) {
    const std::byte* theirs = operand(rank);
    if (theirs == nullptr) continue;
    r.combine(accumulated, theirs, result, count);
    accumulated = result;
  }
  if (accumulated != result) copy_bytes(result, accumulated, count * r.element());
}

struct Header {
  uint32_t magic;
  uint32_t members;
  uint64_t chunk_bytes;
};

size_t tables_offset(int members) {
  const auto n = static_cast<size_t>(members);
  return kLineBytes + n * kLineBytes + n * HostSegment::kBuffers * HostSegment::kChunkBytes +
         n * HostSegment::kSlots * HostSegment::kSlotBytes;
}

// More ranks on this machine than CPUs: they take turns on them. The machine's CPUs, not this
// process's affinity (as the transport's waits use): every rank must judge alike, and a pinned
// rank may run on one CPU of many.
bool oversubscribed(int machine_ranks) {
  return machine_ranks > ::sysconf(_SC_NPROCESSORS_ONLN);
}

bool has_tables(int members) {
  return members <= SharedTable::kMaxMembers;
}

size_t segment_length(int members) {
  return tables_offset(members) + (has_tables(members) ? SharedTable::bytes(members) : 0);
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// A futex on the low half of an arrival counter (little endian: its first four bytes), shared
// between processes (no FUTEX_PRIVATE_FLAG).
uint32_t* futex_word(std::atomic<uint64_t>& counter) {
  static_assert(std::endian::native == std::endian::little);
  return reinterpret_cast<uint32_t*>(&counter);
}

void futex_wait(std::atomic<uint64_t>& counter, uint32_t seen, std::chrono::milliseconds bound) {
  timespec timeout{};
  timeout.tv_sec = static_cast<time_t>(bound.count() / 1000);
  timeout.tv_nsec = static_cast<long>(bound.count() % 1000) * 1000000;
  syscall(SYS_futex, futex_word(counter), FUTEX_WAIT, seen, &timeout, nullptr, 0);
}

void futex_wake(std::atomic<uint64_t>& counter) {
  syscall(SYS_futex, futex_word(counter), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

struct alignas(64) HostSegment::Line {
  std::atomic<uint64_t> arrived;
  std::atomic<uint32_t> sleepers;  // ranks asleep on `arrived`; its owner wakes them
  pid_t pid;
  // This rank's buffers of a call that the peers may read in place (HostSegment::expose),
  // written like a seqlock: exposed_step is the call's first arrival, 0 while being written.
  // The first 64 bytes hold them with the arrival counter: a peer that saw the arrival has
  // them already.
  std::atomic<uint64_t> exposed_step;
  std::atomic<uint64_t> exposed_at[2];  // input, output; 0: not exposed
  std::atomic<uint64_t> exposed_bytes[2];
  std::atomic<uint32_t> exposed_slot[2];
  std::atomic<uint64_t> published;  // the address of this rank's data for the peers' pulls
};

Result<std::unique_ptr<HostSegment>> HostSegment::create(Channel& host, size_t cache_bytes,
                                                         int machine_ranks,
                                                         std::shared_ptr<SharedBuffers> buffers,
                                                         std::string* unavailable) {
  const int members = host.size();
  if (members < 2) return std::unique_ptr<HostSegment>();
  if (static_cast<size_t>(members) > kChunkBytes / 64) {
    // An alltoall chunk holds a cache line per destination at least.
    *unavailable = "more than " + std::to_string(kChunkBytes / 64) + " ranks on one host";
    return std::unique_ptr<HostSegment>();
  }
  const size_t length = segment_length(members);
  const auto& config = config::global();
  if (const size_t planned =
          config.is_ok() ? config->get_size(config::names::kCollectivesStreamCache) : 0;
      planned != 0) {
    cache_bytes = planned;
  }

  // 1. Rank 0 creates it under a name nobody can guess (O_EXCL: nor hold beforehand).
  char name[kNameBytes] = {};
  std::string error;
  int fd = -1;
  if (host.rank() == 0) {
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce)
      nonce ^= static_cast<uint64_t>(getpid());
    std::snprintf(name, sizeof name, "/wv-coll-%d-%016llx", static_cast<int>(getpid()),
                  static_cast<unsigned long long>(nonce));
    fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      error = errno_text("shm_open");
    } else if (ftruncate(fd, static_cast<off_t>(length)) != 0) {
      error = errno_text("ftruncate");
    }
    if (!error.empty()) {
      if (fd >= 0) shm_unlink(name);
      name[0] = '\0';
    }
  }
  Channel naming = host.derive(host.group(), 1);
  if (Status s = bcast_binomial(naming, name, sizeof name, 0); !s.is_ok()) {
    if (fd >= 0) close(fd);
    if (host.rank() == 0 && name[0] != '\0') shm_unlink(name);
    return s;
  }

  // 2. The others open it by name; everyone maps it.
  if (host.rank() != 0 && name[0] != '\0') {
    fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) error = errno_text("shm_open");
  } else if (host.rank() != 0) {
    error = "the host's first rank could not create it";
  }
  void* base = MAP_FAILED;
  if (error.empty()) {
    struct stat st {};
    if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != length) {
      error = "the segment " + std::string(name) + " has the wrong size";
    } else {
      base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (base == MAP_FAILED) error = errno_text("mmap");
    }
  }
  if (fd >= 0) close(fd);
  std::unique_ptr<HostSegment> segment;
  if (base != MAP_FAILED) {
    segment.reset(new HostSegment(base, length, host.rank(), members, cache_bytes, machine_ranks,
                                  std::move(buffers)));
    if (host.rank() == 0) {
      auto* header = static_cast<Header*>(base);
      header->magic = kMagic;
      header->members = static_cast<uint32_t>(members);
      header->chunk_bytes = kChunkBytes;
    }
    segment->line(host.rank()).pid = getpid();
    segment->line(host.rank())
        .published.store(reinterpret_cast<uint64_t>(&segment->probe_), std::memory_order_release);
  }

  // 3. All or none: the members agree (this is also the barrier before the unlink).
  int32_t mapped = segment ? 1 : 0;
  const ReduceOp min(Op::kMin);
  Channel agreeing = host.derive(host.group(), 2);
  Status agreed =
      allreduce_recursive_doubling(agreeing, &mapped, 1, Reduction{DataType::kInt32, &min});
  if (host.rank() == 0 && name[0] != '\0') shm_unlink(name);
  if (!agreed.is_ok()) return agreed;
  if (mapped == 0) {
    *unavailable = error.empty() ? "another rank of this host could not map it" : error;
    return std::unique_ptr<HostSegment>();
  }
  for (int rank = 0; rank < members; ++rank) segment->pids_.push_back(segment->line(rank).pid);
  if (has_tables(members)) {
    segment->table_.emplace(static_cast<std::byte*>(base) + tables_offset(members), members);
    segment->peers_ = std::make_unique<PeerMappings>(*segment->table_, host.rank());
    segment->buffers_->attach(*segment->table_, host.rank());
  }

  // 4. Whether every rank may read every other's memory (cross-memory attach: ptrace rules,
  //    containers); all or none again, because the pulling collectives take other steps.
  int32_t can_pull = config.is_ok() && config->get_bool(config::names::kCollectivesPull) ? 1 : 0;
  for (int rank = 0; rank < members && can_pull == 1; ++rank) {
    if (rank == host.rank()) continue;
    uint64_t seen = 0;
    const uint64_t at = segment->line(rank).published.load(std::memory_order_acquire);
    can_pull = segment->pull(rank, &seen, at, sizeof seen).is_ok() && seen == kProbe ? 1 : 0;
  }
  Channel probing = host.derive(host.group(), 3);
  if (Status s =
          allreduce_recursive_doubling(probing, &can_pull, 1, Reduction{DataType::kInt32, &min});
      !s.is_ok()) {
    return s;
  }
  segment->can_pull_ = can_pull == 1;
  return segment;
}

Status HostSegment::pull(int rank, void* to, uint64_t from, size_t length) const {
  auto* out = static_cast<std::byte*>(to);
  while (length > 0) {
    iovec local{out, length};
    iovec remote{reinterpret_cast<void*>(from), length};
    const ssize_t got = process_vm_readv(line(rank).pid, &local, 1, &remote, 1, 0);
    if (got <= 0) {
      return Status(errno == ESRCH ? Errc::kDisconnected : Errc::kIoError,
                    "host segment: reading rank " + std::to_string(rank) +
                        "'s memory: " + std::strerror(got < 0 ? errno : EIO));
    }
    out += got;
    from += static_cast<uint64_t>(got);
    length -= static_cast<size_t>(got);
  }
  return Status::ok();
}

template <typename Pull>
Status HostSegment::pulled(const Channel& c, const void* mine, Pull&& pull_all) {
  line(rank_).published.store(reinterpret_cast<uint64_t>(mine), std::memory_order_release);
  if (Status s = wait_all(c, arrive()); !s.is_ok()) return s;
  Status pulled = pull_all();
  // Nobody leaves (and reuses its buffer) before every rank has read it; a rank whose pull
  // failed still arrives, so the others are not left waiting.
  if (Status s = wait_all(c, arrive()); !s.is_ok()) return s;
  return pulled;
}

HostSegment::HostSegment(void* base, size_t length, int rank, int members, size_t cache_bytes,
                         int machine_ranks, std::shared_ptr<SharedBuffers> buffers)
    : base_(base),
      length_(length),
      rank_(rank),
      members_(members),
      stream_from_(cache_bytes == 0 ? SIZE_MAX : cache_bytes / (2 * static_cast<size_t>(members))),
      seen_(new uint64_t[static_cast<size_t>(members)]()),
      expose_from_(oversubscribed(machine_ranks) ? kExposeBytesOversubscribed : kExposeBytes),
      bcast_expose_from_(oversubscribed(machine_ranks) ? kBcastExposeBytesOversubscribed
                                                       : kExposeBytes),
      buffers_(std::move(buffers)),
      views_(new View[static_cast<size_t>(members)]) {}

HostSegment::Copy HostSegment::output_copy(size_t bytes) const {
  return bytes >= stream_from_ ? stream_bytes : copy_bytes;
}

HostSegment::~HostSegment() {
  if (table_) buffers_->detach();
  peers_.reset();
  munmap(base_, length_);
}

HostSegment::Exposed HostSegment::expose(const void* input, size_t input_bytes, const void* output,
                                         size_t output_bytes) {
  if (!table_) return {};
  map_peers();
  // A buffer every peer has mapped (each acknowledged its id in this rank's table).
  const auto exposable = [&](const void* at, size_t bytes) {
    const SharedBuffers::Found found = buffers_->find(at, bytes);
    if (found.slot < 0) return found;
    for (int reader = 0; reader < members_; ++reader) {
      if (reader != rank_ &&
          table_->mapped_by(rank_, found.slot, reader).load(std::memory_order_acquire) !=
              found.id) {
        return SharedBuffers::Found{};
      }
    }
    return found;
  };
  const SharedBuffers::Found in = exposable(input, input_bytes);
  const SharedBuffers::Found out =
      output != nullptr ? exposable(output, output_bytes) : SharedBuffers::Found{};
  // Nothing to expose, nothing to write: the peers poll this line, and a description left from
  // an earlier call names another step, which they take for nothing exposed.
  if (in.slot < 0 && out.slot < 0) return {};
  Line& mine = line(rank_);
  mine.exposed_step.store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const auto publish = [&](int which, const SharedBuffers::Found& found, const void* at,
                           size_t bytes) {
    const auto w = static_cast<size_t>(which);
    mine.exposed_at[w].store(found.slot < 0 ? 0 : reinterpret_cast<uint64_t>(at),
                             std::memory_order_relaxed);
    mine.exposed_bytes[w].store(bytes, std::memory_order_relaxed);
    mine.exposed_slot[w].store(static_cast<uint32_t>(found.slot), std::memory_order_relaxed);
  };
  publish(0, in, input, input_bytes);
  publish(1, out, output, output_bytes);
  mine.exposed_step.store(arrived_ + 1, std::memory_order_release);
  if (in.slot >= 0 || out.slot >= 0) ++exposed_calls_;
  return {in.slot >= 0, out.slot >= 0};
}

void HostSegment::map_peers() {
  if (table_) peers_->refresh(pids_);
}

Status HostSegment::view_peer(int rank, uint64_t step) {
  View& view = views_[static_cast<size_t>(rank)];
  view = View{};
  if (!table_) return Status::ok();
  const Line& peer = line(rank);
  // A rank that exposed something stays in the call until this rank's next arrival, so its
  // description holds; one that moved on already (another step) exposed nothing.
  if (peer.exposed_step.load(std::memory_order_acquire) != step) return Status::ok();
  uint64_t at[2];
  uint64_t bytes[2];
  uint32_t slot[2];
  for (size_t w = 0; w < 2; ++w) {
    at[w] = peer.exposed_at[w].load(std::memory_order_relaxed);
    bytes[w] = peer.exposed_bytes[w].load(std::memory_order_relaxed);
    slot[w] = peer.exposed_slot[w].load(std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (peer.exposed_step.load(std::memory_order_relaxed) != step) return Status::ok();
  std::byte* found[2] = {nullptr, nullptr};
  for (size_t w = 0; w < 2; ++w) {
    if (at[w] == 0) continue;
    found[w] = peers_->find(rank, slot[w], at[w], bytes[w]);
    if (found[w] == nullptr) {
      return Status(Errc::kInvalidState, "host segment: rank " + std::to_string(rank) +
                                             " exposed a buffer this rank has not mapped");
    }
  }
  view = View{found[0], found[1]};
  if (at[0] != 0 || at[1] != 0) ++peer_buffers_read_;
  return Status::ok();
}

template <typename Needed>
Result<HostSegment::Exposure> HostSegment::view_peers(uint64_t step, bool exposing, Needed needed) {
  Exposure exposure;
  for (int rank = 0; rank < members_; ++rank) {
    View& view = views_[static_cast<size_t>(rank)];
    if (rank == rank_ || !exposing) {
      view = View{};
      continue;
    }
    if (Status s = view_peer(rank, step); !s.is_ok()) return s;
    exposure.any_input |= view.input != nullptr;
    exposure.any_output |= view.output != nullptr;
    exposure.all_inputs &= view.input != nullptr || !needed(rank);
    exposure.all_outputs &= view.output != nullptr;
  }
  exposure.all_inputs &= exposing;
  exposure.all_outputs &= exposing;
  return exposure;
}

template <typename Read>
Status HostSegment::read_from_exposed_root(const Channel& c, int root, const void* buffer,
                                           size_t bytes, Read&& read, bool* done) {
  *done = false;
  const uint64_t first_arrival = arrived_ + 1;
  if (rank_ == root) {
    if (!expose(buffer, bytes, nullptr, 0).input) return Status::ok();
    *done = true;
    return wait_all(c, arrive());
  }
  map_peers();  // so that the root may expose its next buffers
  if (Status s = wait_for(c, root, first_arrival); !s.is_ok()) return s;
  if (Status s = view_peer(root, first_arrival); !s.is_ok()) return s;
  const std::byte* roots = views_[static_cast<size_t>(root)].input;
  if (roots == nullptr) return Status::ok();
  read(roots);
  arrive();
  *done = true;
  return Status::ok();
}

Status HostSegment::release(const Channel& c, bool exposed, bool any_exposed) {
  if (!any_exposed) return Status::ok();
  const uint64_t done = arrive();
  return exposed ? wait_all(c, done) : Status::ok();
}

HostSegment::Line& HostSegment::line(int rank) const {
  static_assert(sizeof(Line) <= kLineBytes);
  return *reinterpret_cast<Line*>(static_cast<std::byte*>(base_) + kLineBytes +
                                  static_cast<size_t>(rank) * kLineBytes);
}

std::byte* HostSegment::chunk_buffer(int rank, uint64_t chunk) const {
  const size_t index = static_cast<size_t>(rank) * kBuffers + static_cast<size_t>(chunk % kBuffers);
  return static_cast<std::byte*>(base_) + kLineBytes + static_cast<size_t>(members_) * kLineBytes +
         index * kChunkBytes;
}

std::byte* HostSegment::slot_buffer(int rank, uint64_t slot) const {
  const auto members = static_cast<size_t>(members_);
  const size_t index = static_cast<size_t>(rank) * kSlots + static_cast<size_t>(slot % kSlots);
  return static_cast<std::byte*>(base_) + kLineBytes + members * kLineBytes +
         members * kBuffers * kChunkBytes + index * kSlotBytes;
}

uint64_t HostSegment::arrive() {
  Line& mine = line(rank_);
  mine.arrived.store(++arrived_, std::memory_order_seq_cst);
  // Ordered after the store (seq_cst both ways): a rank that went to sleep on the old value
  // is seen here, or it sees the new value before it sleeps.
  if (mine.sleepers.load(std::memory_order_seq_cst) > 0) futex_wake(mine.arrived);
  return arrived_;
}

Status HostSegment::begin(const Channel& c, Turns& turns, bool writes) {
  ++turns.begun;
  // Of turn begun - size, the buffer's previous one.
  uint64_t& slot = turns.reads_done[turns.begun % turns.reads_done.size()];
  const uint64_t reads_done = slot;
  slot = 0;
  if (!writes || reads_done == 0) return Status::ok();
  return wait_all(c, reads_done);
}

Status HostSegment::wait_for(const Channel& c, int rank, uint64_t step) {
  uint64_t& seen = seen_[static_cast<size_t>(rank)];
  if (seen >= step) return Status::ok();
  Line& peer = line(rank);
  std::atomic<uint64_t>& counter = peer.arrived;
  if ((seen = counter.load(std::memory_order_acquire)) >= step) return Status::ok();
  using Clock = std::chrono::steady_clock;
  const Group& group = c.group();
  const Clock::time_point start = Clock::now();
  Clock::time_point last_check = start;
  auto phase = group.wait.phase(std::chrono::nanoseconds(0));
  for (uint32_t spins = 1;; ++spins) {
    if ((seen = counter.load(std::memory_order_acquire)) >= step) return Status::ok();
    if (phase == transport::WaitPolicy::Phase::kSpin && (spins & 1023) != 0) {
      cpu_relax();  // the clock only now and then while spinning
      continue;
    }
    const auto waited = Clock::now() - start;
    if (c.cancelled()) return Status(Errc::kCancelled, "collective cancelled");
    if (waited >= group.timeout) {
      return Status(Errc::kTimedOut,
                    "host segment: rank " + std::to_string(group.world[static_cast<size_t>(rank)]) +
                        " did not reach step " + std::to_string(step) + " within " +
                        std::to_string(group.timeout.count()) +
                        " ms (it is stuck, or the ranks' collective calls differ)");
    }
    phase = group.wait.phase(waited);
    if (phase == transport::WaitPolicy::Phase::kSpin) continue;
    // Yielding costs a context switch and no system call on the peer's side; sleeping costs
    // the peer a futex wake. Either way, notice a peer that is gone and keep the transport
    // moving now and then.
    if (phase == transport::WaitPolicy::Phase::kYield) {
      sched_yield();
      continue;
    }
    if (Clock::now() - last_check >= kSleepBound) {
      last_check = Clock::now();
      const pid_t pid = peer.pid;
      if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
        return Status(Errc::kDisconnected,
                      "host segment: rank " +
                          std::to_string(group.world[static_cast<size_t>(rank)]) + " (pid " +
                          std::to_string(pid) + ") has exited");
      }
      (void)group.worker->progress();
    }
    peer.sleepers.fetch_add(1, std::memory_order_seq_cst);
    const uint64_t now = counter.load(std::memory_order_seq_cst);
    if (now < step) futex_wait(counter, static_cast<uint32_t>(now), kSleepBound);
    peer.sleepers.fetch_sub(1, std::memory_order_relaxed);
  }
}

Status HostSegment::wait_all(const Channel& c, uint64_t step) {
  for (int rank = 0; rank < members_; ++rank) {
    if (rank == rank_) continue;
    if (Status s = wait_for(c, rank, step); !s.is_ok()) return s;
  }
  return Status::ok();
}

Status HostSegment::barrier(const Channel& c) {
  return wait_all(c, arrive());
}

Status HostSegment::bcast(const Channel& c, void* buffer, size_t bytes, int root) {
  auto* data = static_cast<std::byte*>(buffer);
  const bool small = bytes <= kSlotPayload;
  Turns& turns = small ? slots_ : chunks_;
  const size_t step = small ? kSlotPayload : kChunkBytes;
  const Copy write = output_copy(bytes);
  // A large one whose root exposes its buffer is one step.
  if (!small && bytes >= bcast_expose_from_) {
    bool done = false;
    Status s = read_from_exposed_root(
        c, root, buffer, bytes, [&](const std::byte* roots) { write(data, roots, bytes); }, &done);
    if (!s.is_ok() || done) return s;
  }
  for (size_t offset = 0; offset < bytes; offset += step) {
    const size_t length = std::min(step, bytes - offset);
    const bool writes = rank_ == root;
    if (Status s = begin(c, turns, writes); !s.is_ok()) return s;
    std::byte* at = small ? slot_buffer(root, turns.begun) : chunk_buffer(root, turns.begun);
    // A slot's turn number, stored after its data (release) and read before it (acquire).
    std::atomic<uint64_t>* turn = nullptr;
    if (small) {
      turn = reinterpret_cast<std::atomic<uint64_t>*>(at);
      at += kSlotHeader;
    }
    if (writes) {
      copy_bytes(at, data + offset, length);
      if (turn != nullptr) turn->store(turns.begun, std::memory_order_release);
    } else {
      // The root numbers the slot before it arrives, so either one says the data is there.
      if (turn == nullptr || turn->load(std::memory_order_acquire) != turns.begun) {
        if (Status s = wait_for(c, root, arrived_ + 1); !s.is_ok()) return s;
      }
      write(data + offset, at, length);
    }
    // The readers arrive once they have read: the root may write this buffer again as soon
    // as they all have, while they read the next one.
    end(turns, turns.begun, arrive());
  }
  return Status::ok();
}

Status HostSegment::allreduce(const Channel& c, const void* input, void* output, size_t count,
                              const Reduction& r) {
  const size_t element = r.element();
  const size_t per_chunk = kChunkBytes / element;
  const auto* in = static_cast<const std::byte*>(input);
  auto* out = static_cast<std::byte*>(output);
  const Copy write = output_copy(count * element);
  // Inputs and outputs of the share steps (vectors of more than kWholeReduceBytes) in place
  // where exposed: a rank combines its share straight from the exposed inputs (into its exposed
  // output), and the others copy it from there.
  const bool exposing = count * element > kWholeReduceBytes && count * element >= expose_from_;
  const uint64_t first_arrival = arrived_ + 1;
  const Exposed exposed =
      exposing ? expose(input, count * element, output, count * element) : Exposed{};
  bool any_output_exposed = exposed.output;
  for (size_t first = 0; first < count; first += per_chunk) {
    const size_t elements = std::min(per_chunk, count - first);
    const size_t bytes = elements * element;
    const std::byte* from = in + first * element;
    std::byte* to = out != nullptr ? out + first * element : nullptr;
    if (Status s = begin_chunk(c, true); !s.is_ok()) return s;
    std::byte* mine = chunk_buffer(rank_, chunks_.begun);
    if (bytes <= kWholeReduceBytes) {
      // Every rank combines every contribution, in rank order: the same result everywhere.
      copy_bytes(mine, from, bytes);
      const uint64_t copied = arrive();
      if (to != nullptr) {  // a reduce's other ranks leave at once: only the root reads
        if (Status s = wait_all(c, copied); !s.is_ok()) return s;
        combine_ranks(
            r, chunk_buffer(0, chunks_.begun), members_,
            [&](int rank) { return rank == 0 ? nullptr : chunk_buffer(rank, chunks_.begun); }, to,
            elements);
      }
      end_chunk(arrived_ + 1);  // read until this rank's next arrival
      continue;
    }
    // Share j of the chunk is rank j's to combine: the others put their share j in their
    // buffers, rank j combines its own input with those into its buffer, and every rank copies
    // each share from its owner's buffer to its output (its own before it waits).
    const EvenSplit shares(elements, members_);
    const auto share = [&](int rank) { return shares.size(rank); };
    const auto start = [&](int rank) { return shares.start(rank) * element; };
    if (!exposed.input) {
      for (int rank = 0; rank < members_; ++rank) {
        if (rank != rank_) {
          copy_bytes(mine + start(rank), from + start(rank), share(rank) * element);
        }
      }
    }
    if (Status s = wait_all(c, arrive()); !s.is_ok()) return s;
    if (first == 0) {
      auto peers = view_peers(first_arrival, exposing);
      if (!peers.is_ok()) return peers.status();
      any_output_exposed |= peers->any_output;
      // Every rank knows it now: the arrival was the inputs' barrier.
      if (exposed.input && exposed.output && peers->all_inputs && peers->all_outputs) {
        end_chunk(arrived_ + 1);
        allreduce_exposed(in, out, count, r);
        return release(c, true, true);
      }
    }
    // Where rank `rank` keeps this chunk's input (output) share of rank `of`.
    const auto input_of = [&](int rank, int of) {
      return input_or(rank, exposing, first * element + start(of),
                      chunk_buffer(rank, chunks_.begun) + start(of));
    };
    const auto output_of = [&](int rank) {
      const std::byte* exposed_output = views_[static_cast<size_t>(rank)].output;
      return exposed_output != nullptr ? exposed_output + first * element + start(rank)
                                       : chunk_buffer(rank, chunks_.begun) + start(rank);
    };
    std::byte* combined_at = exposed.output ? to + start(rank_) : mine + start(rank_);
    combine_ranks(
        r, from + start(rank_), members_,
        [&](int rank) { return rank == rank_ ? nullptr : input_of(rank, rank_); }, combined_at,
        share(rank_));
    const uint64_t combined = arrive();
    if (to == nullptr) {
      // No result here: this rank's share is read from its buffer until its next arrival, but
      // an exposed input must outlast the others' combining.
      if (exposed.input) {
        if (Status s = wait_all(c, combined); !s.is_ok()) return s;
      }
      end_chunk(arrived_ + 1);
      continue;
    }
    if (!exposed.output) write(to + start(rank_), combined_at, share(rank_) * element);
    if (Status s = wait_all(c, combined); !s.is_ok()) return s;
    for (int rank = 0; rank < members_; ++rank) {
      if (rank != rank_) write(to + start(rank), output_of(rank), share(rank) * element);
    }
    end_chunk(arrived_ + 1);
  }
  return release(c, exposed.output, any_output_exposed);
}

void HostSegment::allreduce_exposed(const std::byte* input, std::byte* output, size_t count,
                                    const Reduction& r) {
  const size_t element = r.element();
  const EvenSplit shares(count, members_);
  const size_t end = (shares.start(rank_) + shares.size(rank_)) * element;
  // Pieces small enough that a combined one is still in the cache when it is copied out.
  const size_t piece = kPushBytes / element * element;
  // Past the cache the copies to the peers' outputs bypass it: this rank's output is the one
  // it reads them from, and the peers' are not read here again.
  const Copy write = output_copy(count * element);
  for (size_t at = shares.start(rank_) * element; at < end; at += piece) {
    const size_t bytes = std::min(piece, end - at);
    combine_ranks(
        r, input + at, members_,
        [&](int rank) {
          return rank == rank_ ? nullptr : views_[static_cast<size_t>(rank)].input + at;
        },
        output + at, bytes / element);
    for (int rank = 0; rank < members_; ++rank) {
      if (rank != rank_) write(views_[static_cast<size_t>(rank)].output + at, output + at, bytes);
    }
  }
}

Status HostSegment::reduce_scatter(const Channel& c, const void* input, void* output, size_t count,
                                   const Reduction& r) {
  const EvenSplit shares(count, members_);
  return reduce_shares(c, static_cast<const std::byte*>(input),
                       static_cast<std::byte*>(output) + shares.start(rank_) * r.element(), shares,
                       r);
}

Status HostSegment::reduce_scatter(const Channel& c, const void* input, void* share,
                                   std::span<const size_t> counts, std::span<const size_t> starts,
                                   const Reduction& r) {
  struct Listed {
    std::span<const size_t> counts;
    std::span<const size_t> starts;
    size_t size(int rank) const { return counts[static_cast<size_t>(rank)]; }
    size_t start(int rank) const { return starts[static_cast<size_t>(rank)]; }
  };
  return reduce_shares(c, static_cast<const std::byte*>(input), static_cast<std::byte*>(share),
                       Listed{counts, starts}, r);
}

template <typename Shares>
Status HostSegment::reduce_shares(const Channel& c, const std::byte* in, std::byte* result,
                                  const Shares& shares, const Reduction& r) {
  const size_t element = r.element();
  const auto share = [&](int rank) { return shares.size(rank); };
  const auto start = [&](int rank) { return shares.start(rank); };
  size_t count = 0;
  size_t longest = 0;
  for (int rank = 0; rank < members_; ++rank) {
    count += share(rank);
    longest = std::max(longest, share(rank));
  }
  // A chunk buffer holds one piece per share; each step moves a piece of every share.
  const size_t slot = kChunkBytes / static_cast<size_t>(members_) / element;  // elements
  const auto piece = [&](int rank, size_t first) {
    return first < share(rank) ? std::min(slot, share(rank) - first) : 0;
  };
  // An exposed input is read in place by the ranks whose shares it holds; when every input is,
  // each rank combines its whole share at once.
  const uint64_t first_arrival = arrived_ + 1;
  const bool exposing = count * element >= expose_from_;
  const bool exposed = exposing && expose(in, count * element, nullptr, 0).input;
  bool any_exposed = exposed;
  for (size_t first = 0; first < longest; first += slot) {
    if (Status s = begin_chunk(c, true); !s.is_ok()) return s;
    std::byte* mine = chunk_buffer(rank_, chunks_.begun);
    for (int rank = 0; rank < members_ && !exposed; ++rank) {
      if (rank == rank_) continue;
      copy_bytes(mine + static_cast<size_t>(rank) * slot * element,
                 in + (start(rank) + first) * element, piece(rank, first) * element);
    }
    if (Status s = wait_all(c, arrive()); !s.is_ok()) return s;
    if (first == 0 && exposing) {
      auto peers = view_peers(first_arrival, exposing);
      if (!peers.is_ok()) return peers.status();
      any_exposed |= peers->any_input;
      if (exposed && peers->all_inputs) {
        end_chunk(arrived_ + 1);
        const size_t at = start(rank_) * element;
        combine_ranks(
            r, in + at, members_,
            [&](int rank) {
              return rank == rank_ ? nullptr : views_[static_cast<size_t>(rank)].input + at;
            },
            result, share(rank_));
        return release(c, true, true);
      }
    }
    const size_t at = (start(rank_) + first) * element;
    combine_ranks(
        r, in + at, members_,
        [&](int rank) {
          if (rank == rank_) return static_cast<const std::byte*>(nullptr);
          return input_or(
              rank, exposing, at,
              chunk_buffer(rank, chunks_.begun) + static_cast<size_t>(rank_) * slot * element);
        },
        result + first * element, piece(rank_, first));
    end_chunk(arrived_ + 1);
  }
  return release(c, exposed, any_exposed);
}

template <typename BytesOf, typename PlaceOf>
Status HostSegment::gather_blocks(const Channel& c, const std::byte* send, std::byte* recv,
                                  BytesOf bytes_of, PlaceOf place_of, size_t longest) {
  size_t total = 0;
  for (int rank = 0; rank < members_; ++rank) total += bytes_of(rank);
  const Copy write = output_copy(total);
  if (recv != nullptr && send != recv + place_of(rank_)) {
    write(recv + place_of(rank_), send, bytes_of(rank_));
  }
  const uint64_t first_arrival = arrived_ + 1;
  const bool exposing = longest >= expose_from_;
  bool exposed = false;
  if (exposing && bytes_of(rank_) > 0) {
    exposed = expose(send, bytes_of(rank_), nullptr, 0).input;
  } else if (exposing) {
    map_peers();  // nothing to expose, but the others' blocks to read
  }
  bool any_exposed = exposed;
  for (size_t offset = 0; offset < longest; offset += kChunkBytes) {
    const auto piece = [&](int rank) {
      const size_t block = bytes_of(rank);
      return offset < block ? std::min(kChunkBytes, block - offset) : 0;
    };
    if (Status s = begin_chunk(c, true); !s.is_ok()) return s;
    if (!exposed) copy_bytes(chunk_buffer(rank_, chunks_.begun), send + offset, piece(rank_));
    const uint64_t copied = arrive();
    if (recv == nullptr && !exposing) {  // a gather's other ranks: only the root reads
      end_chunk(arrived_ + 1);
      continue;
    }
    if (Status s = wait_all(c, copied); !s.is_ok()) return s;
    if (offset == 0 && exposing) {
      // A rank with an empty block has nothing to expose and counts as exposed.
      auto peers =
          view_peers(first_arrival, exposing, [&](int rank) { return bytes_of(rank) > 0; });
      if (!peers.is_ok()) return peers.status();
      any_exposed |= peers->any_input;
      if ((exposed || bytes_of(rank_) == 0) && peers->all_inputs) {  // whole blocks, no more steps
        end_chunk(arrived_ + 1);
        for (int rank = 0; rank < members_ && recv != nullptr; ++rank) {
          if (rank != rank_ && bytes_of(rank) > 0) {
            write(recv + place_of(rank), views_[static_cast<size_t>(rank)].input, bytes_of(rank));
          }
        }
        return release(c, exposed, true);
      }
    }
    for (int rank = 0; rank < members_ && recv != nullptr; ++rank) {
      if (rank == rank_ || piece(rank) == 0) continue;
      write(recv + place_of(rank) + offset,
            input_or(rank, exposing, offset, chunk_buffer(rank, chunks_.begun)), piece(rank));
    }
    end_chunk(arrived_ + 1);
  }
  return release(c, exposed, any_exposed);
}

Status HostSegment::allgather(const Channel& c, const void* send, void* recv, size_t block) {
  if (can_pull_ && block >= kPullBytes) {
    auto* out = static_cast<std::byte*>(recv);
    const auto at = [block](int rank) { return static_cast<size_t>(rank) * block; };
    if (send != out + at(rank_)) copy_bytes(out + at(rank_), send, block);
    return pulled(c, send, [&] {
      for (int rank = 0; rank < members_; ++rank) {
        if (rank == rank_) continue;
        const uint64_t from = line(rank).published.load(std::memory_order_acquire);
        if (Status s = pull(rank, out + at(rank), from, block); !s.is_ok()) return s;
      }
      return Status::ok();
    });
  }
  return gather_blocks(
      c, static_cast<const std::byte*>(send), static_cast<std::byte*>(recv),
      [block](int) { return block; },
      [block](int rank) { return static_cast<size_t>(rank) * block; }, block);
}

Status HostSegment::gather(const Channel& c, const void* send, void* recv, size_t block) {
  return gather_blocks(
      c, static_cast<const std::byte*>(send), static_cast<std::byte*>(recv),
      [block](int) { return block; },
      [block](int rank) { return static_cast<size_t>(rank) * block; }, block);
}

Status HostSegment::scatter(const Channel& c, const void* send, void* recv, size_t block,
                            int root) {
  const auto* in = static_cast<const std::byte*>(send);
  auto* out = static_cast<std::byte*>(recv);
  const auto members = static_cast<size_t>(members_);
  const auto me = static_cast<size_t>(rank_);
  if (rank_ == root) {
    if (out != nullptr) copy_bytes(out, in + me * block, block);
    if (members == 1) return Status::ok();
  }
  const Copy write = output_copy(block * members);
  // As a broadcast: the readers take their blocks straight from an exposed `send`.
  if (block * members >= bcast_expose_from_) {
    bool done = false;
    Status s = read_from_exposed_root(
        c, root, send, block * members,
        [&](const std::byte* roots) { write(out, roots + me * block, block); }, &done);
    if (!s.is_ok() || done) return s;
  }
  // Else a piece of every block per step, one slot of the root's chunk buffer per reader.
  const size_t slot = std::max<size_t>(kChunkBytes / (members - 1) / 64 * 64, 64);
  const auto slot_of = [&](size_t rank) {
    return (rank < static_cast<size_t>(root) ? rank : rank - 1) * slot;
  };
  for (size_t offset = 0; offset < block; offset += slot) {
    const size_t piece = std::min(slot, block - offset);
    if (Status s = begin_chunk(c, rank_ == root); !s.is_ok()) return s;
    std::byte* chunk = chunk_buffer(root, chunks_.begun);
    if (rank_ == root) {
      for (size_t rank = 0; rank < members; ++rank) {
        if (rank != me) copy_bytes(chunk + slot_of(rank), in + rank * block + offset, piece);
      }
    } else {
      if (Status s = wait_for(c, root, arrived_ + 1); !s.is_ok()) return s;
      write(out + offset, chunk + slot_of(me), piece);
    }
    // The readers arrive once they have read (as in bcast).
    end_chunk(arrive());
  }
  return Status::ok();
}

Status HostSegment::allgatherv(const Channel& c, void* buffer, std::span<const size_t> bytes) {
  auto* data = static_cast<std::byte*>(buffer);
  const std::vector<size_t> offsets = prefix(bytes);
  return gather_blocks(
      c, data + offsets[static_cast<size_t>(rank_)], data,
      [bytes](int rank) { return bytes[static_cast<size_t>(rank)]; },
      [&offsets](int rank) { return offsets[static_cast<size_t>(rank)]; },
      *std::max_element(bytes.begin(), bytes.end()));
}

Status HostSegment::alltoall(const Channel& c, const void* send, void* recv, size_t block,
                             std::span<const size_t> places) {
  const auto* in = static_cast<const std::byte*>(send);
  auto* out = static_cast<std::byte*>(recv);
  const auto at = [places](int rank) { return places[static_cast<size_t>(rank)]; };
  copy_bytes(out + at(rank_), in + at(rank_), block);
  if (can_pull_ && block >= kPullBytes) {
    // One copy per byte: every rank reads its block straight from each sender's buffer.
    return pulled(c, send, [&] {
      for (int rank = 0; rank < members_; ++rank) {
        if (rank == rank_) continue;
        const uint64_t from = line(rank).published.load(std::memory_order_acquire) + at(rank_);
        if (Status s = pull(rank, out + at(rank), from, block); !s.is_ok()) return s;
      }
      return Status::ok();
    });
  }
  // Each step moves a piece of every block. With few ranks every destination's piece has a
  // chunk buffer of its own (fewer, larger steps); with many they share one buffer. A step's
  // buffers must have been read two steps back, not one (their reads end at this step's
  // arrival): so at most half the buffers per step.
  const Copy write = output_copy(block * static_cast<size_t>(members_));
  const bool wide = static_cast<size_t>(members_ - 1) <= kBuffers / 2;
  const size_t steps_chunks = wide ? static_cast<size_t>(members_ - 1) : 1;
  const size_t slot =
      wide ? kChunkBytes
           : std::max<size_t>(kChunkBytes / static_cast<size_t>(members_) / 64 * 64, 64);
  // Where sender `from` puts its piece for `to`, in chunks begun from `first`.
  const auto piece_at = [&](int from, int to, uint64_t first) {
    if (!wide) return chunk_buffer(from, first) + static_cast<size_t>(to) * slot;
    return chunk_buffer(from, first + static_cast<uint64_t>(to < from ? to : to - 1));
  };
  const uint64_t first_arrival = arrived_ + 1;
  const size_t send_bytes = *std::max_element(places.begin(), places.end()) + block;
  const bool exposing = block >= expose_from_;
  const bool exposed = exposing && expose(send, send_bytes, nullptr, 0).input;
  bool any_exposed = exposed;
  for (size_t offset = 0; offset < block; offset += slot) {
    const size_t piece = std::min(slot, block - offset);
    const uint64_t first = chunks_.begun + 1;
    for (size_t i = 0; i < steps_chunks; ++i) {
      if (Status s = begin_chunk(c, true); !s.is_ok()) return s;
    }
    for (int rank = 0; rank < members_ && !exposed; ++rank) {
      if (rank != rank_) copy_bytes(piece_at(rank_, rank, first), in + at(rank) + offset, piece);
    }
    if (Status s = wait_all(c, arrive()); !s.is_ok()) return s;
    if (offset == 0 && exposing) {
      auto peers = view_peers(first_arrival, exposing);
      if (!peers.is_ok()) return peers.status();
      any_exposed |= peers->any_input;
      if (exposed && peers->all_inputs) {  // whole blocks, no more steps
        for (uint64_t chunk = first; chunk <= chunks_.begun; ++chunk) {
          end(chunks_, chunk, arrived_ + 1);
        }
        for (int rank = 0; rank < members_; ++rank) {
          if (rank != rank_) {
            write(out + at(rank), views_[static_cast<size_t>(rank)].input + at(rank_), block);
          }
        }
        return release(c, true, true);
      }
    }
    for (int rank = 0; rank < members_; ++rank) {
      if (rank == rank_) continue;
      write(out + at(rank) + offset,
            input_or(rank, exposing, at(rank_) + offset, piece_at(rank, rank_, first)), piece);
    }
    for (uint64_t chunk = first; chunk <= chunks_.begun; ++chunk) end(chunks_, chunk, arrived_ + 1);
  }
  return release(c, exposed, any_exposed);
}

}  // namespace wv::coll::detail
