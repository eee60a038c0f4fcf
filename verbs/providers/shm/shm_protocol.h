// What travels between two shm peers: the connection handshake on the unix socket, and the
// entries of the shared rings (shm_ring.h has the entry header).
//
// Handshake (SOCK_SEQPACKET, one message each, host byte order: both ends are on one host):
//   request  client -> server, with SCM_RIGHTS [segment memfd, client doorbell eventfd]
//   accept   server -> client, with SCM_RIGHTS [server doorbell eventfd]
//   reject   server -> client, no descriptors
// The socket then stays open for the life of the connection: its hang-up is how each side
// learns that the peer closed, crashed or was killed.
//
// Ring entries (EntryHeader fields used; "tag" names requests whose answer comes back):
//   kSend          flags first/last/immediate/invalidate/solicited; address = offset in the
//                  message; key = key to invalidate; payload = data. A whole message without
//                  immediate data goes as a compact entry (shm_ring.h).
//   kWrite         data through the ring; address = remote address of this fragment; key =
//                  rkey; value = total length (first fragment: the whole range is checked)
//   kWritePull     large write the target copies itself (process_vm_readv); address, key,
//                  value = length; tag; count iovecs {u64 base, u64 length} of the source
//   kReadRequest   address, key, value = length, tag; flags kGrantRead (the requester pulls
//                  the data itself) or kPushRead; count iovecs of the sink (for a target that
//                  pushes with process_vm_writev)
//   kAtomic        flags kCompareSwap; address, key, value = compare; payload = u64 swap/add
//   kReadData      tag; address = offset in the read; payload = data; kLast ends the read
//   kReadDone      tag: the target pushed all the data of the read
//   kReadGrant     tag; address = where the checked range starts in the target; value = length:
//                  the requester copies it with process_vm_readv
//   kAtomicReply   tag; value = original value
//   kWriteDone     tag: the target has copied a pulled write
//   kTerminate     key = CompletionStatus of the requester's oldest read/atomic when
//                  flags has kAboutRequest; payload = reason text
//   kDatagram      (datagram channels, shm_datagram_wire.h) flags immediate/solicited/group;
//                  tag = source QP; address = destination QP; key = Q_Key; payload = data,
//                  after the group's 16-byte GID for a group datagram
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wv/result.h"
#include "wv/verbs/socket_address.h"

namespace wv::verbs::shm {

enum class EntryType : uint8_t {
  kPad = 1,
  kSend = 2,
  kWrite = 3,
  kWritePull = 4,
  kReadRequest = 5,
  kAtomic = 6,
  kReadData = 7,
  kReadDone = 8,
  kAtomicReply = 9,
  kWriteDone = 10,
  kTerminate = 11,
  kDatagram = 12,
  kReadGrant = 13,
};

namespace entry_flags {
inline constexpr uint8_t kFirst = 1u << 0;
inline constexpr uint8_t kLast = 1u << 1;
inline constexpr uint8_t kImmediate = 1u << 2;
inline constexpr uint8_t kInvalidate = 1u << 3;
inline constexpr uint8_t kSolicited = 1u << 4;
inline constexpr uint8_t kCompareSwap = 1u << 5;
inline constexpr uint8_t kAboutRequest = 1u << 6;
inline constexpr uint8_t kGroup = 1u << 7;  // kDatagram: to a group, whose GID starts the payload
// kReadRequest: the requester has nothing else outstanding on the connection, so the target
// answers with one process_vm_writev where CMA works, whichever path its stream of reads takes
// otherwise (a bit kAtomic uses for kCompareSwap; no type carries both).
inline constexpr uint8_t kPushRead = 1u << 5;
// kReadRequest: the requester copies the data itself with process_vm_readv; the target answers
// with kReadGrant once the key is checked (a bit kTerminate uses for kAboutRequest).
inline constexpr uint8_t kGrantRead = 1u << 6;
}  // namespace entry_flags

struct PullIovec {
  uint64_t base = 0;
  uint64_t length = 0;
};

// ---- Handshake ----

inline constexpr uint32_t kHandshakeMagic = 0x5753484b;  // "WSHK"
inline constexpr uint16_t kHandshakeVersion = 2;         // 2: domain, key mirror
inline constexpr size_t kMaxPrivateData = 256;

enum class HandshakeType : uint16_t { kRequest = 1, kAccept = 2, kReject = 3 };

struct Handshake {
  HandshakeType type = HandshakeType::kRequest;
  uint32_t qp_number = 0;
  uint32_t inbound_read_depth = 0;
  uint32_t outbound_read_depth = 0;
  // Where the sender keeps kProbeValue, so the receiver can test process_vm_readv on it.
  uint64_t probe_address = 0;
  bool can_pull = false;  // accept: the server copies from/to the client with CMA
  // The sender's QP's protection domain as its key table names it, and whether its key mirror
  // (shm_key_mirror.h) comes with the message, after the segment and doorbell descriptors.
  uint64_t domain = 0;
  bool key_mirror = false;
  SocketAddress source;       // request: the client's address
  SocketAddress destination;  // request: the address the client connected to
  std::vector<std::byte> private_data;
};

// Encodes `message` into `out`; fails when the private data is too long.
Status encode_handshake(const Handshake& message, std::vector<std::byte>& out);
// Decodes a whole message; any inconsistency is kProtocolError.
Result<Handshake> decode_handshake(std::span<const std::byte> bytes);

// Sends one message with up to three descriptors (non-blocking socket, small message).
Status send_message(int socket, std::span<const std::byte> bytes, std::span<const int> fds);
// Receives one message and its descriptors into `fds` (owned by the caller). *got is 0 when
// nothing is there yet; the peer's close is kDisconnected. A truncated message, or more
// descriptors than `max_fds`, is kProtocolError (every descriptor received is closed then).
Status receive_message(int socket, std::span<std::byte> buffer, size_t* got, std::vector<int>& fds,
                       size_t max_fds);

// Name spaces of listening sockets: the shm provider's own, and the shm side doors of the
// hybrid provider's tcp listeners (a tcp port is its owner's alone, so its door's name is too).
inline constexpr std::string_view kShmNames = "wv-shm/";
inline constexpr std::string_view kTcpDoorNames = "wv-tcp/";

// The abstract unix socket name that stands for `address` ("\0wv-shm/127.0.0.1:5000").
std::string socket_name(std::string_view space, const SocketAddress& address);
// Fills a sockaddr_un with the abstract name; returns its length.
socklen_t unix_address(const std::string& name, sockaddr_storage& out);

}  // namespace wv::verbs::shm
