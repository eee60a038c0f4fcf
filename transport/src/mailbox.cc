#include "mailbox.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace wv::transport {
namespace {

using Layout = MailboxLayout;
constexpr int kLengthBits = 16;
static_assert(Layout::kCapacity < (1u << kLengthBits));

// The mailbox words live in memory the other process maps too: atomic_ref keeps each access a
// single aligned access with the ordering asked for.
std::atomic_ref<uint64_t> word(std::byte* at) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(at));
}

std::byte* ring_at(std::byte* base, uint64_t position) {
  return base + Layout::kRingOffset + position % Layout::kRingBytes;
}

// Where the stamp's length cannot reach: a message never has kWrapLength bytes.
static_assert(Layout::kCapacity < Layout::kWrapLength);
static_assert(Layout::kRingBytes % Layout::kLineBytes == 0 &&
              (Layout::kRingBytes & (Layout::kRingBytes - 1)) == 0);

long membarrier(int command) {
  return syscall(SYS_membarrier, command, 0, 0);
}

}  // namespace

bool asymmetric_fences() {
  static const bool registered = [] {
    const long commands = membarrier(MEMBARRIER_CMD_QUERY);
    return commands >= 0 && (commands & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
           membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
  }();
  return registered;
}

bool Inbox::heavy_fence() {
  return membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

Result<std::unique_ptr<Inbox>> Inbox::create(verbs::ProtectionDomain& domain) {
  auto memory = domain.allocate_memory(Layout::kBytes, verbs::Access::kLocalWrite |
                                                           verbs::Access::kRemoteWrite |
                                                           verbs::Access::kRemoteRead);
  if (!memory.is_ok()) return memory.status();
  return std::unique_ptr<Inbox>(new Inbox(std::move(memory).value()));
}

Inbox::Inbox(std::shared_ptr<verbs::MemoryRegion> memory)
    : memory_(std::move(memory)), base_(static_cast<std::byte*>(memory_->address())) {}

verbs::RemoteAddress Inbox::remote() const {
  return memory_->remote(base_);
}

int Inbox::take(uint64_t regular_received, std::span<std::byte, Layout::kCapacity> out) {
  for (;;) {
    const uint64_t offset = tail_ % Layout::kRingBytes;
    std::byte* at = ring_at(base_, tail_);
    const uint64_t stamp = word(at).load(std::memory_order_acquire);
    if (stamp >> kLengthBits != next_) return kEmpty;
    const uint64_t length = stamp & ((uint64_t{1} << kLengthBits) - 1);
    if (length == Layout::kWrapLength) {
      if (offset == 0) return kMalformed;  // a wrap mark where the ring begins
      hand_back(Layout::kRingBytes - offset);
      continue;
    }
    uint64_t regular_before;
    std::memcpy(&regular_before, at + sizeof stamp, sizeof regular_before);
    if (regular_before > regular_received) return kEmpty;  // a regular send ahead of it is due
    const size_t bytes = Layout::entry_bytes(length);
    if (length > Layout::kCapacity || offset + bytes > Layout::kRingBytes) return kMalformed;
    std::memcpy(out.data(), at + Layout::kEntryHeaderBytes, length);
    // The first line's word is a stamp, which cannot pass for a later one.
    for (size_t line = Layout::kLineBytes; line < bytes; line += Layout::kLineBytes) {
      word(at + line).store(0, std::memory_order_relaxed);
    }
    hand_back(bytes);
    return static_cast<int>(length);
  }
}

void Inbox::hand_back(uint64_t bytes) {
  tail_ += bytes;
  ++next_;
  word(base_ + Layout::kConsumedOffset).store(tail_, std::memory_order_release);
}

bool Inbox::pending() const {
  return word(ring_at(base_, tail_)).load(std::memory_order_seq_cst) >> kLengthBits == next_;
}

void Inbox::add_sleeper() {
  ++sleepers_added_;
  word(base_ + Layout::kSleepersOffset).fetch_add(1, std::memory_order_seq_cst);
}

void Inbox::remove_sleeper() {
  if (sleepers_added_ == 0) return;
  --sleepers_added_;
  word(base_ + Layout::kSleepersOffset).fetch_sub(1, std::memory_order_seq_cst);
}

Result<std::unique_ptr<Outbox>> Outbox::map(verbs::ConnectQueuePair& qp, verbs::RemoteAddress inbox,
                                            bool asymmetric) {
  auto mapping = qp.map_remote(inbox, Layout::kBytes,
                               verbs::Access::kRemoteWrite | verbs::Access::kRemoteRead);
  if (!mapping.is_ok()) return mapping.status();
  return std::unique_ptr<Outbox>(new Outbox(std::move(mapping).value(), asymmetric));
}

Outbox::Outbox(std::unique_ptr<verbs::RemoteMapping> mapping, bool asymmetric)
    : mapping_(std::move(mapping)), base_(mapping_->data()), asymmetric_(asymmetric) {}

bool Outbox::store(uint64_t regular_before, std::span<const std::span<const std::byte>> parts) {
  size_t length = 0;
  for (const auto& part : parts) length += part.size();
  const uint64_t bytes = Layout::entry_bytes(length);
  const uint64_t offset = head_ % Layout::kRingBytes;
  const uint64_t wrap = offset + bytes > Layout::kRingBytes ? Layout::kRingBytes - offset : 0;
  const uint64_t needed = wrap + bytes;
  if (head_ + needed - consumed_ > Layout::kRingBytes) {
    consumed_ = word(base_ + Layout::kConsumedOffset).load(std::memory_order_acquire);
    if (head_ + needed - consumed_ > Layout::kRingBytes) return false;
  }
  if (wrap != 0) {
    // The entry after it orders it for a sleeping receiver (see below), so release suffices.
    word(ring_at(base_, head_))
        .store(next_ << kLengthBits | Layout::kWrapLength, std::memory_order_release);
    ++next_;
    head_ += wrap;
  }
  std::byte* at = ring_at(base_, head_);
  std::memcpy(at + sizeof(uint64_t), &regular_before, sizeof regular_before);
  size_t copied = 0;
  for (const auto& part : parts) {
    if (part.empty()) continue;
    std::memcpy(at + Layout::kEntryHeaderBytes + copied, part.data(), part.size());
    copied += part.size();
  }
  // With the load of `sleepers` after it, this pairs with the receiver's count-then-look before
  // it sleeps, so that one of the two sees the other: a sequentially consistent store, or, with
  // asymmetric fences, a release store the receiver's heavy fence orders for it.
  const uint64_t stamp = next_ << kLengthBits | length;
  if (asymmetric_) {
    word(at).store(stamp, std::memory_order_release);
  } else {
    word(at).store(stamp, std::memory_order_seq_cst);
  }
  ++next_;
  head_ += bytes;
  return true;
}

bool Outbox::receiver_may_sleep() const {
  // Keeps the compiler from hoisting the load above the store; the CPU's side is the heavy fence.
  if (asymmetric_) std::atomic_signal_fence(std::memory_order_seq_cst);
  return word(base_ + Layout::kSleepersOffset).load(std::memory_order_seq_cst) != 0;
}

}  // namespace wv::transport
