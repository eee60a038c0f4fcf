// The shared memory of one shm connection: a header and two single-producer single-consumer
// byte rings, one per direction, in a memfd that both processes map.
//
// Why a memfd: it has no name in /dev/shm or anywhere else, it travels to the peer over the
// connection's unix socket (SCM_RIGHTS), and the kernel frees it when the last mapping and
// descriptor are gone, so processes that exit, crash or are killed leave nothing behind. The
// creator seals its size (F_SEAL_SHRINK | F_SEAL_GROW), and the side that maps a peer's memfd
// checks the seals first: a peer that could shrink the file would make every access a SIGBUS.
//
// Ring protocol. The producer writes entries at `head`, the consumer reads them at `tail`; both
// are byte counts that only grow (the position is count & (capacity - 1)) and private to their
// side. An entry is published by the last store the producer makes to it: its first word, the
// stamp, becomes `position ^ salt` (the salt is random per ring, so neither zeroed memory, nor
// an older lap's entry, nor payload bytes left at that spot can look like the entry the consumer
// expects). The consumer spins on the word at `tail` and finds the stamp and the entry in the
// same cache line: a small message costs the one cache-line transfer it must, no index line, no
// system call. Entries are whole cache lines; one that would cross the end is preceded by a pad
// entry filling the rest of the ring. The consumer publishes `tail` for the producer, which
// reads it only when its cached copy says the ring may be full.
//
// Compact entries. An entry whose type has kCompactType set carries only the first
// kCompactHeaderBytes of the header (stamp to key); the consumer reads the other fields as zero
// and finds the payload right after. A whole small message then fits the one cache line: a
// transport header and 8 bytes of data take 64 bytes with it and 128 with the full header,
// and each extra line is one more transfer between the cores on the critical path.
//
// Sleeping. A consumer about to sleep sets `consumer_sleeping` and looks at the stamp once
// more; a producer publishes a stamp and then looks at `consumer_sleeping`, ringing the
// consumer's doorbell (an eventfd) only when it is set. Both are sequentially consistent, so one
// of the two sees the other and no wakeup is lost. A producer that finds the ring full does the
// same with `producer_waiting`, which names the `tail` at which half the ring is free: the
// consumer rings the producer's doorbell once it has freed that much, one system call per half
// ring rather than one per entry while a fast producer keeps the ring full (a producer whose
// thread polls retries on its own before then).
//
// Everything the peer writes is checked before use: a peer that writes garbage (indices out of
// range, entry sizes that overrun, unknown types) produces kMalformed, never a wild access.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "wv/result.h"

namespace wv::verbs::shm {

inline constexpr size_t kCacheLine = 64;
inline constexpr uint64_t kSegmentMagic = 0x31474553'4d485357ull;  // "WSHMSEG1"
// 4: compact entries, 5: consumer_polled_ns, 6: kMaxHeldWrites pulled writes in flight
inline constexpr uint32_t kSegmentVersion = 6;
inline constexpr uint32_t kMinRingBytes = 16 * 1024;
inline constexpr uint32_t kMaxRingBytes = 64 * 1024 * 1024;

static_assert(std::atomic<uint64_t>::is_always_lock_free, "ring indices must be lock-free");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "ring flags must be lock-free");

// Each word on its own cache line: the flags change only around sleeps, so the producer's
// per-message look at `consumer_sleeping` hits its own cached copy instead of pulling the line
// the consumer writes `tail` to on every message.
struct alignas(kCacheLine) RingControl {
  uint64_t salt = 0;  // set by the segment's creator; each side reads it once
  alignas(kCacheLine) std::atomic<uint64_t> tail{0};               // written by the consumer
  alignas(kCacheLine) std::atomic<uint64_t> producer_waiting{0};   // set by the producer
  alignas(kCacheLine) std::atomic<uint32_t> consumer_sleeping{0};  // set by the consumer
  // When a thread of the consumer's process last polled a CQ the ring's connection feeds
  // (steady clock ns, every few polls; 0: it stopped): a polling peer answers a read through the
  // ring sooner than a one-sided read's system call.
  alignas(kCacheLine) std::atomic<int64_t> consumer_polled_ns{0};
};

// Side 0 is the connecting side (it creates the segment), side 1 the accepting side. Ring i
// carries what side i sends.
struct SegmentHeader {
  uint64_t magic = 0;
  uint32_t version = 0;
  uint32_t ring_bytes = 0;
  // can_pull[i]: which large RDMA writes side i copies itself from its peer with
  // process_vm_readv (a pull request instead of a copy through the ring): kPullNever,
  // kPullEvery, or kPullLone (a write with nothing else outstanding on the peer's QP).
  alignas(kCacheLine) std::atomic<uint32_t> can_pull[2];
  RingControl rings[2];
};

inline constexpr uint32_t kPullNever = 0;
inline constexpr uint32_t kPullEvery = 1;
inline constexpr uint32_t kPullLone = 2;

inline constexpr size_t kDataOffset = 4096;  // ring data starts on its own page
static_assert(sizeof(SegmentHeader) <= kDataOffset);

// A mapped segment (the memfd is closed once mapped, or kept for sending to the peer).
class Segment {
 public:
  // Creates a sealed memfd with rings of `ring_bytes` (a power of two) and maps it.
  static Result<std::unique_ptr<Segment>> create(uint32_t ring_bytes);
  // Maps a peer's memfd after checking its seals, size and header. Takes ownership of `fd`.
  static Result<std::unique_ptr<Segment>> attach(int fd);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  SegmentHeader& header() { return *static_cast<SegmentHeader*>(base_); }
  std::byte* ring_data(int side) {
    return static_cast<std::byte*>(base_) + kDataOffset + size_t{ring_bytes_} * side;
  }
  uint32_t ring_bytes() const { return ring_bytes_; }
  int fd() const { return fd_; }
  // Closes the memfd (after it was sent to the peer); the mapping stays.
  void close_fd();

 private:
  Segment() = default;
  void* base_ = nullptr;
  size_t size_ = 0;
  uint32_t ring_bytes_ = 0;
  int fd_ = -1;
};

// The fixed part of every ring entry.
struct EntryHeader {
  uint64_t stamp = 0;      // written last, by RingProducer::commit (see the ring protocol)
  uint32_t size = 0;       // bytes of the entry, this header included; whole cache lines
  uint8_t type = 0;        // EntryType
  uint8_t flags = 0;       // EntryFlags
  uint16_t count = 0;      // iovecs in the payload (pull / push requests)
  uint32_t length = 0;     // payload bytes in this entry
  uint32_t key = 0;        // rkey, or the key a send invalidates, or a status (terminate)
  uint32_t tag = 0;        // names the read, atomic or pulled write a response answers
  uint32_t immediate = 0;  // immediate data
  uint64_t address = 0;    // remote address, or the offset of a fragment in its message
  uint64_t value = 0;      // total length, compare operand, or an atomic's original value
};
static_assert(sizeof(EntryHeader) == 48);
inline constexpr uint32_t kEntryHeaderBytes = sizeof(EntryHeader);
inline constexpr uint32_t kCompactHeaderBytes = offsetof(EntryHeader, tag);
static_assert(kCompactHeaderBytes == 24);
inline constexpr uint8_t kPadType = 1;
inline constexpr uint8_t kCompactType = 0x80;  // or'ed into the type (see compact entries)

// Where an entry's payload starts.
inline constexpr uint32_t header_bytes(uint8_t type) {
  return (type & kCompactType) != 0 ? kCompactHeaderBytes : kEntryHeaderBytes;
}

// The ring bytes an entry with `payload` bytes takes, with a full or a compact header.
inline constexpr uint32_t entry_bytes(uint64_t payload, bool compact = false) {
  const uint64_t header = compact ? kCompactHeaderBytes : kEntryHeaderBytes;
  return static_cast<uint32_t>((header + payload + kCacheLine - 1) & ~(kCacheLine - 1));
}

class RingProducer {
 public:
  RingProducer() = default;
  RingProducer(RingControl* control, std::byte* data, uint32_t capacity)
      : control_(control), data_(data), capacity_(capacity), salt_(control->salt) {}

  // Room for an entry of `bytes` (from entry_bytes()) at once, or null when the ring is full.
  // The caller writes the payload after the header's place (header_bytes() of its type);
  // commit() writes the header (its first kCompactHeaderBytes for a compact type) and
  // publishes the entry. Sets *malformed when the consumer's index is impossible.
  std::byte* reserve(uint32_t bytes, bool* malformed);
  // Writes `header` (its size is the reserved bytes) into the entry reserve() returned and
  // publishes it. Returns true when the consumer sleeps and must be woken (its flag is cleared:
  // one doorbell per sleep).
  bool commit(const EntryHeader& header);
  // The ring is full: ask the consumer for a doorbell once it frees space. Returns true if
  // space for `bytes` appeared meanwhile (then no doorbell is owed).
  bool wait_for_space(uint32_t bytes);
  // The largest entry reserve() ever grants (so any entry eventually fits).
  uint32_t max_entry() const { return capacity_ / 4; }
  uint32_t capacity() const { return capacity_; }
  uint64_t head() const { return head_; }
  // The consumer has released every entry published: nothing is in flight to it.
  bool drained() const { return control_->tail.load(std::memory_order_acquire) == head_; }
  // The consumer's consumer_polled_ns.
  int64_t consumer_polled_ns() const {
    return control_->consumer_polled_ns.load(std::memory_order_relaxed);
  }
  // The consumer has released every entry published before head() was `position`.
  bool delivered(uint64_t position) const {
    return control_->tail.load(std::memory_order_acquire) >= position;
  }

 private:
  bool fits(uint32_t bytes) const;
  void publish(std::byte* entry, uint64_t position, const EntryHeader& header);

  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  uint32_t capacity_ = 0;
  uint64_t salt_ = 0;
  uint64_t head_ = 0;
  uint64_t cached_tail_ = 0;
  std::byte* reserved_ = nullptr;
};

class RingConsumer {
 public:
  enum class Peek : uint8_t { kEmpty, kEntry, kMalformed };

  RingConsumer() = default;
  RingConsumer(RingControl* control, const std::byte* data, uint32_t capacity)
      : control_(control), data_(data), capacity_(capacity), salt_(control->salt) {}

  // The next entry (pads skipped): its header copied out (the peer cannot change it after the
  // checks; a compact entry's reads as a full one, kCompactType cleared and the fields it does
  // not carry zero) and its payload, `header.length` bytes, still in the ring until release().
  Peek peek(EntryHeader& header, const std::byte** payload, const char** why);
  // Frees the entry peek() returned. Returns true when the producer waits for space and must
  // be woken.
  bool release(const EntryHeader& header);
  // About to sleep: sets the flag and returns true if an entry arrived meanwhile (then the
  // consumer must not sleep).
  bool prepare_to_sleep();
  bool empty() const { return stamp_at_tail(std::memory_order_acquire) != (tail_ ^ salt_); }
  // Whether an entry may be waiting, callable without the consumer's lock while another thread
  // consumes (a hint for pollers of empty rings; peek() decides).
  bool maybe_ready() const;

 private:
  uint64_t stamp_at_tail(std::memory_order order) const;
  void advance(uint64_t bytes);

  RingControl* control_ = nullptr;
  const std::byte* data_ = nullptr;
  uint32_t capacity_ = 0;
  uint64_t salt_ = 0;
  uint64_t tail_ = 0;  // stored atomically (advance()): maybe_ready() reads it without the lock
};

}  // namespace wv::verbs::shm
