#include "shm_ring.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <new>
#include <string>

namespace wv::verbs::shm {
namespace {

bool power_of_two(uint64_t value) {
  return value != 0 && (value & (value - 1)) == 0;
}

uint64_t random_salt() {
  uint64_t salt = 0;
  if (::getrandom(&salt, sizeof(salt), 0) != sizeof(salt)) {
    salt = static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15ull ^
           reinterpret_cast<uintptr_t>(&salt);
  }
  // Odd, while positions are whole cache lines: a stamp is never zero, so zeroed memory is
  // never an entry.
  return salt | 1;
}

std::atomic_ref<uint64_t> stamp_word(const std::byte* entry) {
  return std::atomic_ref<uint64_t>(
      *reinterpret_cast<uint64_t*>(const_cast<std::byte*>(entry)));  // NOLINT: shared memory
}

}  // namespace

Result<std::unique_ptr<Segment>> Segment::create(uint32_t ring_bytes) {
  if (!power_of_two(ring_bytes) || ring_bytes < kMinRingBytes || ring_bytes > kMaxRingBytes) {
    return Status(Errc::kInvalidArgument, "shm ring size " + std::to_string(ring_bytes) +
                                              " must be a power of two between " +
                                              std::to_string(kMinRingBytes) + " and " +
                                              std::to_string(kMaxRingBytes));
  }
  const int fd = ::memfd_create("wv-shm-connection", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return errno_status(Errc::kIoError, "memfd_create");
  const size_t size = kDataOffset + size_t{ring_bytes} * 2;
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0 ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    Status status = errno_status(Errc::kIoError, "sizing and sealing the shm segment");
    ::close(fd);
    return status;
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    Status status = errno_status(Errc::kIoError, "mmap of the shm segment");
    ::close(fd);
    return status;
  }
  auto* header = new (base) SegmentHeader();
  header->ring_bytes = ring_bytes;
  for (RingControl& ring : header->rings) ring.salt = random_salt();
  header->version = kSegmentVersion;
  header->magic = kSegmentMagic;
  std::unique_ptr<Segment> segment(new Segment());
  segment->base_ = base;
  segment->size_ = size;
  segment->ring_bytes_ = ring_bytes;
  segment->fd_ = fd;
  return segment;
}

Result<std::unique_ptr<Segment>> Segment::attach(int fd) {
  std::unique_ptr<Segment> segment(new Segment());
  segment->fd_ = fd;
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return Status(Errc::kProtocolError, "the peer's shm segment is not sealed against shrinking");
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) return errno_status(Errc::kIoError, "fstat of the shm segment");
  const auto size = static_cast<uint64_t>(info.st_size);
  if (size < kDataOffset + 2 * uint64_t{kMinRingBytes} ||
      size > kDataOffset + 2 * uint64_t{kMaxRingBytes}) {
    return Status(Errc::kProtocolError,
                  "the peer's shm segment has an impossible size " + std::to_string(size));
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno_status(Errc::kIoError, "mmap of the peer's shm segment");
  segment->base_ = base;
  segment->size_ = size;
  // Read once: the peer may change the header later, the ring size used here never changes.
  const auto* header = static_cast<const SegmentHeader*>(base);
  const uint64_t magic = header->magic;
  const uint32_t version = header->version;
  const uint32_t ring_bytes = header->ring_bytes;
  if (magic != kSegmentMagic || version != kSegmentVersion) {
    return Status(Errc::kProtocolError, "the peer's shm segment has a bad magic or version");
  }
  if (!power_of_two(ring_bytes) || ring_bytes < kMinRingBytes || ring_bytes > kMaxRingBytes ||
      kDataOffset + 2 * uint64_t{ring_bytes} > size) {
    return Status(Errc::kProtocolError,
                  "the peer's shm segment names a bad ring size " + std::to_string(ring_bytes));
  }
  segment->ring_bytes_ = ring_bytes;
  return segment;
}

Segment::~Segment() {
  if (base_ != nullptr) ::munmap(base_, size_);
  close_fd();
}

void Segment::close_fd() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// ---- RingProducer ----

bool RingProducer::fits(uint32_t bytes) const {
  const uint64_t pos = head_ & (capacity_ - 1);
  const uint64_t contiguous = capacity_ - pos;
  const uint64_t need = bytes <= contiguous ? bytes : contiguous + bytes;
  return head_ + need - cached_tail_ <= capacity_;
}

void RingProducer::publish(std::byte* entry, uint64_t position, const EntryHeader& header) {
  // Everything but the stamp, then the stamp with release: the consumer that sees the stamp
  // sees the whole entry.
  std::memcpy(entry + sizeof(header.stamp),
              reinterpret_cast<const std::byte*>(&header) + sizeof(header.stamp),
              header_bytes(header.type) - sizeof(header.stamp));
  stamp_word(entry).store(position ^ salt_, std::memory_order_seq_cst);
}

std::byte* RingProducer::reserve(uint32_t bytes, bool* malformed) {
  if (!fits(bytes)) {
    const uint64_t tail = control_->tail.load(std::memory_order_acquire);
    if (tail > head_ || head_ - tail > capacity_) {
      *malformed = true;
      return nullptr;
    }
    cached_tail_ = tail;
    if (!fits(bytes)) return nullptr;
  }
  uint64_t pos = head_ & (capacity_ - 1);
  const uint64_t contiguous = capacity_ - pos;
  if (bytes > contiguous) {
    // The entry would cross the end: a pad fills the rest, the entry starts at 0.
    EntryHeader pad{};
    pad.size = static_cast<uint32_t>(contiguous);
    pad.type = kPadType;
    publish(data_ + pos, head_, pad);
    head_ += contiguous;
    pos = 0;
  }
  reserved_ = data_ + pos;
  return reserved_;
}

bool RingProducer::commit(const EntryHeader& header) {
  publish(reserved_, head_, header);
  head_ += header.size;
  reserved_ = nullptr;
  return control_->consumer_sleeping.load(std::memory_order_seq_cst) != 0 &&
         control_->consumer_sleeping.exchange(0, std::memory_order_seq_cst) != 0;
}

bool RingProducer::wait_for_space(uint32_t bytes) {
  // The ring is fuller than half (an entry needs less than half of it, pad included), so this
  // tail is ahead of the consumer's and never 0.
  control_->producer_waiting.store(head_ - capacity_ / 2, std::memory_order_seq_cst);
  const uint64_t tail = control_->tail.load(std::memory_order_seq_cst);
  if (tail <= head_ && head_ - tail <= capacity_) cached_tail_ = tail;
  if (!fits(bytes)) return false;
  control_->producer_waiting.store(0, std::memory_order_relaxed);
  return true;
}

// ---- RingConsumer ----

uint64_t RingConsumer::stamp_at_tail(std::memory_order order) const {
  return stamp_word(data_ + (tail_ & (capacity_ - 1))).load(order);
}

void RingConsumer::advance(uint64_t bytes) {
  std::atomic_ref<uint64_t>(tail_).store(tail_ + bytes, std::memory_order_relaxed);
}

bool RingConsumer::maybe_ready() const {
  const uint64_t tail =
      std::atomic_ref<uint64_t>(const_cast<uint64_t&>(tail_)).load(std::memory_order_relaxed);
  return stamp_word(data_ + (tail & (capacity_ - 1))).load(std::memory_order_acquire) ==
         (tail ^ salt_);
}

RingConsumer::Peek RingConsumer::peek(EntryHeader& header, const std::byte** payload,
                                      const char** why) {
  for (;;) {
    if (stamp_at_tail(std::memory_order_acquire) != (tail_ ^ salt_)) return Peek::kEmpty;
    const uint64_t pos = tail_ & (capacity_ - 1);
    const uint64_t contiguous = capacity_ - pos;  // whole cache lines, so the header fits
    // One copy of the header out of shared memory; only the copy is checked and used.
    std::memcpy(&header, data_ + pos, sizeof(header));
    const uint32_t size = header.size;
    if (size == 0 || size % kCacheLine != 0 || size > contiguous) {
      *why = "ring entry size out of range";
      return Peek::kMalformed;
    }
    if (header.type == kPadType) {
      advance(size);
      continue;
    }
    const uint32_t header_length = header_bytes(header.type);
    if ((header.type & kCompactType) != 0) {
      // The bytes after the compact header are payload, not fields.
      header.type &= ~kCompactType;
      header.tag = 0;
      header.immediate = 0;
      header.address = 0;
      header.value = 0;
    }
    if (uint64_t{header_length} + header.length > size) {
      *why = "ring entry shorter than its header and payload";
      return Peek::kMalformed;
    }
    *payload = data_ + pos + header_length;
    return Peek::kEntry;
  }
}

bool RingConsumer::release(const EntryHeader& header) {
  advance(header.size);
  control_->tail.store(tail_, std::memory_order_seq_cst);
  const uint64_t wanted = control_->producer_waiting.load(std::memory_order_seq_cst);
  return wanted != 0 && tail_ >= wanted &&
         control_->producer_waiting.exchange(0, std::memory_order_seq_cst) != 0;
}

bool RingConsumer::prepare_to_sleep() {
  control_->consumer_sleeping.store(1, std::memory_order_seq_cst);
  if (stamp_at_tail(std::memory_order_seq_cst) != (tail_ ^ salt_)) return false;
  control_->consumer_sleeping.store(0, std::memory_order_relaxed);
  return true;
}

}  // namespace wv::verbs::shm
