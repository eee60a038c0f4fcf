// The transport's messages on a connected QP. Every message is one verbs send: a header, then
// (eager, active message) the payload. Fields are little-endian on the wire (both ends are this
// code on x86-64/aarch64; the header is checked, never trusted, on receipt).
//
// Short headers. The messages small sends are made of, an active message and a standard eager
// send, need neither a cookie nor a payload length (the receive's length says it), so they
// carry only a prefix of Header: 8 bytes for an active message, 16 (with the tag) for an eager
// send, flagged kShort. On the shm provider a small message then fits one cache line with the
// ring's entry header, and each extra line is one more transfer between cores on the critical
// path (about 20 ns, over 100 when the host places the two cores far apart).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

namespace wv::transport::wire {

enum class Type : uint8_t {
  kEager = 1,           // tagged message with its payload
  kRendezvous = 2,      // ready-to-send: a tagged message too large for eager (RendezvousBody)
  kActive = 3,          // active message: handler id, header length, header + payload
  kCredit = 4,          // only returns credits
  kSyncAck = 5,         // the receiver matched a synchronous eager send (cookie = sender request)
  kFinish = 6,          // rendezvous done (cookie = request of the side that waits for it)
  kReadyToReceive = 7,  // write scheme: the receiver's buffer (ReadyBody)
};

enum Flags : uint8_t {
  kSynchronous = 1u << 0,  // kEager: the sender waits for kSyncAck
  kWriteScheme = 1u << 1,  // kRendezvous: the receiver answers kReadyToReceive, no read
  kTruncated = 1u << 2,    // kFinish / kReadyToReceive: the receiver took fewer bytes
  kShort = 1u << 3,        // kActive, kEager: the header is a prefix (see short headers)
};

// Message types that consume one of the receiver's credits (and return one when processed).
inline bool consumes_credit(Type type) {
  return type == Type::kEager || type == Type::kRendezvous || type == Type::kActive;
}

struct Header {
  Type type;
  uint8_t flags;
  uint8_t am_id;              // kActive
  uint8_t reserved = 0;       // zero on the wire
  uint16_t credits;           // credits the sender returns to the receiver
  uint16_t am_header_length;  // kActive: header bytes at the start of the payload
  uint64_t tag;               // kEager, kRendezvous
  uint32_t payload_length;    // bytes after the header (and after a body)
  uint32_t reserved2 = 0;
  uint64_t cookie;  // the sender's request (kEager synchronous, kRendezvous), or the request
                    // the message completes (kSyncAck, kFinish, kReadyToReceive)
};
static_assert(sizeof(Header) == 32 && std::is_trivially_copyable_v<Header>);
inline constexpr size_t kShortActiveBytes = offsetof(Header, tag);
inline constexpr size_t kShortEagerBytes = offsetof(Header, payload_length);
static_assert(kShortActiveBytes == 8 && kShortEagerBytes == 16);

// The bytes of a short header of this type and these flags, or 0 when it has no short form.
inline size_t short_bytes(Type type, uint8_t flags) {
  if (type == Type::kActive) return kShortActiveBytes;
  if (type == Type::kEager && (flags & kSynchronous) == 0) return kShortEagerBytes;
  return 0;
}

// Marks `header` short when its type allows it and returns the bytes it takes on the wire: the
// message starts with that prefix of the struct.
inline size_t shorten(Header& header) {
  const size_t bytes = short_bytes(header.type, header.flags);
  if (bytes == 0) return sizeof(Header);
  header.flags = static_cast<uint8_t>(header.flags | kShort);
  return bytes;
}

// Writes a message into `out` (a send buffer): the first `header_bytes` of `header` (its short
// form, see shorten), then `first` and `second`. Returns the bytes written.
inline size_t frame(std::byte* out, const Header& header, size_t header_bytes,
                    std::span<const std::byte> first, std::span<const std::byte> second) {
  std::memcpy(out, &header, header_bytes);
  if (!first.empty()) std::memcpy(out + header_bytes, first.data(), first.size());
  if (!second.empty()) std::memcpy(out + header_bytes + first.size(), second.data(), second.size());
  return header_bytes + first.size() + second.size();
}

struct RendezvousBody {
  uint64_t length;   // message size
  uint64_t address;  // read scheme: the sender's buffer
  uint32_t key;      // read scheme: its remote key
  uint32_t reserved = 0;
};
static_assert(sizeof(RendezvousBody) == 24);

struct ReadyBody {
  uint64_t length;  // bytes the receiver takes (<= the message)
  uint64_t address;
  uint32_t key;
  uint32_t reserved = 0;
  uint64_t receiver_cookie;  // what the sender's kFinish names
};
static_assert(sizeof(ReadyBody) == 32);

inline constexpr size_t kMaxControlBytes = sizeof(Header) + sizeof(ReadyBody);

// Copies a trivially copyable T out of `bytes` at `offset`; false if it does not fit.
template <typename T>
bool read_at(std::span<const std::byte> bytes, size_t offset, T* out) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof(T)) return false;
  std::memcpy(out, bytes.data() + offset, sizeof(T));
  return true;
}

// The receive path's check: reads the header of a received message into *header (a short one
// completed: its payload length from the bytes received, the fields it lacks zero) and returns
// where the rest of the message starts, or 0 when the message is malformed.
size_t decode(std::span<const std::byte> message, size_t eager_limit, Header* header);
// Why a received message is malformed, or empty when it is well-formed.
std::string check(std::span<const std::byte> message, size_t eager_limit);

}  // namespace wv::transport::wire
