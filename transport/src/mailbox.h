// Mailboxes: small messages stored straight into the receiver's memory (Open MPI vader's "fast
// boxes"). On a connection whose peer memory this process can map (verbs map_remote: the shm
// wire), each side offers the other an Inbox in its connection hello; the other side maps it as
// its Outbox. A message that fits then costs the sender a copy and a release store, and
// the receiver a poll of one cache line: no work request, receive buffer or completion.
//
// Ordering with the connection's regular sends (which still carry what does not fit, what must
// follow RDMA writes, and everything while the mailbox is full): every mailbox message carries
// the number of regular sends its sender had posted before it. The receiver delivers it only
// once it has received that many, and before delivering a regular send it drains the mailbox
// messages sent before that one. A mailbox store precedes, in the sender's program order, every
// later post, so it is visible by the time the later send arrives.
//
// Sleep: a store wakes nobody. A receiver that is about to sleep counts itself in the inbox's
// sleepers word, fences and looks at its inboxes once more; a sender fences after its store
// and, seeing a sleeper, also sends an empty regular message, whose completion wakes it. The
// sender's fence is the costly half: a sequentially consistent store waits for the line the
// receiver polls (most of a store's cost). Where both processes registered for the kernel's
// global expedited membarrier, the sender stores with release only and the receiver, on its
// rare way to sleep, has the kernel fence every registered process instead (an asymmetric
// fence, as liburcu and folly do).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "wv/result.h"
#include "wv/verbs.h"

namespace wv::transport {

// Registers this process for asymmetric fences (once; later calls answer the first's result).
bool asymmetric_fences();

// What a connection hello offers the peer: an inbox, and whether its owner takes part in
// asymmetric fences.
struct InboxOffer {
  verbs::RemoteAddress remote;
  bool asymmetric = false;
};

// The layout both sides agree on. The receiver's words are on lines of their own: `sleepers` is
// read by the sender on every store and written rarely, `consumed` is written per message and
// read by the sender only when it finds the ring full.
//
// The ring holds entries of whole cache lines, each a stamp (sequence << 16 | length, stored
// last), the regular sends before it, and the message: an 8 B message takes one line, as in a
// ring of fixed slots, and one of ob1's 1 KiB messages with its headers fits too (vader's fast
// boxes also take messages of any size up to their limit). An entry that would cross the ring's
// end is preceded by a wrap mark, a stamp whose length is kWrapLength. Where an entry may start,
// the receiver must find zero, an older entry's stamp (an older sequence) or the new stamp, never
// message bytes that might look like a stamp: so it zeroes the first word of an entry's second
// and later lines before it hands them back. (Clearing the next entry's word was the sender's
// job at first, but a one-line message then waited for that line to come from the receiver's
// cache: 8 B btl/wv half round trips went from 0.240-0.245 to 0.261-0.276 us.)
struct MailboxLayout {
  static constexpr size_t kLineBytes = 64;
  static constexpr size_t kRingBytes = 16 * 1024;
  static constexpr size_t kEntryHeaderBytes = 16;
  static constexpr size_t kMaxEntryBytes = 18 * kLineBytes;
  static constexpr size_t kCapacity = kMaxEntryBytes - kEntryHeaderBytes;  // message bytes
  static constexpr uint64_t kWrapLength = 0xffff;
  static constexpr size_t kSleepersOffset = 0;
  static constexpr size_t kConsumedOffset = 64;
  static constexpr size_t kRingOffset = 128;
  static constexpr size_t kBytes = kRingOffset + kRingBytes;
  // The ring bytes an entry carrying `length` message bytes takes.
  static constexpr size_t entry_bytes(size_t length) {
    return (kEntryHeaderBytes + length + kLineBytes - 1) / kLineBytes * kLineBytes;
  }
};

// The receiving side: memory the peer maps, polled by this worker.
class Inbox {
 public:
  static Result<std::unique_ptr<Inbox>> create(verbs::ProtectionDomain& domain);

  // What the peer maps (its hello carries it).
  verbs::RemoteAddress remote() const;
  static constexpr int kEmpty = -1;      // nothing deliverable yet
  static constexpr int kMalformed = -2;  // a stamp no sender writes
  // The next message, copied into `out`, when it has arrived and its sender had posted at most
  // `regular_received` regular sends before it: its length, else kEmpty or kMalformed. Its lines
  // are handed back before this returns, so a handler may progress the worker again.
  int take(uint64_t regular_received, std::span<std::byte, MailboxLayout::kCapacity> out);
  // Whether an entry has arrived (deliverable or not).
  bool pending() const;
  // Counts a receiver about to sleep (senders then also send regularly), and takes it off again
  // once awake; only sleepers this inbox counted come off (it may be newer than a sleep).
  void add_sleeper();
  void remove_sleeper();
  // The sender stores with release only: a sleeper must fence for it (heavy_fence).
  void set_asymmetric(bool asymmetric) { asymmetric_ = asymmetric; }
  bool asymmetric() const { return asymmetric_; }
  // The receiver's side of the asymmetric fence: false when the kernel refused it.
  static bool heavy_fence();

 private:
  explicit Inbox(std::shared_ptr<verbs::MemoryRegion> memory);
  // The entry (or wrap mark) at the tail, `bytes` of the ring, is the sender's again.
  void hand_back(uint64_t bytes);

  std::shared_ptr<verbs::MemoryRegion> memory_;
  std::byte* base_;
  uint64_t next_ = 1;  // sequence of the next entry
  uint64_t tail_ = 0;  // ring bytes consumed
  int sleepers_added_ = 0;
  bool asymmetric_ = false;
};

// The sending side: the peer's inbox mapped into this process.
class Outbox {
 public:
  // kNotSupported where the connection cannot map the peer's memory. `asymmetric`: both sides
  // registered for asymmetric fences, so stores need only release.
  static Result<std::unique_ptr<Outbox>> map(verbs::ConnectQueuePair& qp,
                                             verbs::RemoteAddress inbox, bool asymmetric);

  // Stores one message made of `parts` (the caller keeps them within kCapacity bytes in all);
  // false when the ring has no room for it. `regular_before`: the regular sends posted so far.
  bool store(uint64_t regular_before, std::span<const std::span<const std::byte>> parts);
  // After a store: whether the receiver may be asleep (then it needs a regular message too).
  bool receiver_may_sleep() const;

 private:
  Outbox(std::unique_ptr<verbs::RemoteMapping> mapping, bool asymmetric);

  std::unique_ptr<verbs::RemoteMapping> mapping_;
  std::byte* base_;
  bool asymmetric_;
  uint64_t next_ = 1;      // sequence of the next entry
  uint64_t head_ = 0;      // ring bytes stored
  uint64_t consumed_ = 0;  // ring bytes the receiver consumed, as last read
};

}  // namespace wv::transport
