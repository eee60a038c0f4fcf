// Queue pairs. Connected and datagram QPs are separate types (the 2008 review): datagram sends
// and multicast live only on DatagramQueuePair; RDMA, atomics and windows only on
// ConnectQueuePair. Every completion carries the context given at creation.
//
// Posting never blocks and never allocates. A malformed request (bad region, too many SGEs, wrong
// state, full queue) is refused with a Status and leaves the QP as it was; an error found while
// the request is processed becomes an error completion and moves the QP to kError, after which
// every outstanding and new work request completes with CompletionStatus::kFlushed.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "wv/result.h"
#include "wv/verbs/types.h"

namespace wv::verbs {

class AddressHandle;
class CompletionQueue;
class MemoryRegion;
class MemoryWindow;
class RemoteMapping;
class SharedReceiveQueue;

struct QueuePairOptions {
  std::shared_ptr<CompletionQueue> send_cq;
  std::shared_ptr<CompletionQueue> receive_cq;
  std::shared_ptr<SharedReceiveQueue> srq;  // optional; then receive_depth is ignored
  uint32_t send_depth = 128;
  uint32_t receive_depth = 128;
  uint32_t send_sge = 4;
  uint32_t receive_sge = 4;
  uint32_t max_inline = 0;       // 0: the device's default
  bool signal_all_sends = true;  // false: only kSignaled send-queue requests complete
  void* context = nullptr;       // returned in every completion of this QP
};

// A new connected QP starts in kInit, so receives can be posted before the endpoint connects it.
class QueuePair {
 public:
  QueuePair(const QueuePair&) = delete;
  QueuePair& operator=(const QueuePair&) = delete;
  virtual ~QueuePair() = default;

  virtual uint32_t number() const = 0;
  virtual void* context() const = 0;
  virtual Status post_receive(uint64_t wr_id, std::span<const Sge> sges) = 0;
  virtual QpAttributes query() const = 0;
  // User-driven transitions: any state -> kError (flushes), kError -> kReset, kReset -> kInit,
  // kReadyToSend <-> kSendQueueDrained. The others belong to the endpoint that connects the QP.
  virtual Status modify(QpState state) = 0;

 protected:
  QueuePair() = default;
};

// What a peer needs to connect to a QP out of band (ConnectQueuePair::connect_out_of_band).
// encode() gives kOutOfBandAddressBytes in network order for any byte channel; decode() checks
// the length and version and refuses anything else.
struct OutOfBandAddress {
  uint32_t qp_number = 0;
  uint32_t psn = 0;  // the first packet sequence number the QP sends
  Gid gid;           // the port's GID (RoCE: a RoCE v2 entry, IPv4-mapped where there is one)
  uint16_t lid = 0;  // InfiniBand: the port's LID; 0 on RoCE
  uint8_t port = 1;
  uint32_t mtu = 0;                 // the port's active MTU in bytes
  uint32_t inbound_read_depth = 0;  // RDMA reads (and atomics) the QP serves at once

  std::vector<std::byte> encode() const;
  static Result<OutOfBandAddress> decode(std::span<const std::byte> bytes);
  // kInvalidArgument naming the field when one is out of range (QP number and PSN are 24 bits,
  // the MTU a power of two from 256 to 4096, ports count from 1).
  Status check() const;
};
inline constexpr size_t kOutOfBandAddressBytes = 40;

struct ConnectParameters;

class ConnectQueuePair : public QueuePair {
 public:
  // Out-of-band connection, as InfiniBand and RoCE connect without a connection manager: each
  // side passes its QP's out_of_band_address() to the other by its own means (a socket, PMIx, a
  // file) and calls connect_out_of_band() with the peer's; the QP goes from kInit to
  // kReadyToSend. This side serves the reads its address announced (the device's maximum); its
  // outbound read depth (capped by the peer's announcement) and retry counts come from
  // `parameters`, and private data has no place (kInvalidArgument). Without
  // Capability::kOutOfBandConnect both return kNotSupported: iWARP connects only through its
  // connection manager (MPA), and the software providers' connections are their endpoints. No
  // message says goodbye: a side ends the connection by moving its QP to kError, and the peer
  // learns of it when its next request exhausts its retries.
  virtual Result<OutOfBandAddress> out_of_band_address() = 0;
  virtual Status connect_out_of_band(const OutOfBandAddress& peer,
                                     const ConnectParameters& parameters) = 0;

  virtual Status send(uint64_t wr_id, std::span<const Sge> sges, SendFlags flags) = 0;
  virtual Status send_with_immediate(uint64_t wr_id, std::span<const Sge> sges, uint32_t immediate,
                                     SendFlags flags) = 0;
  // Sends and invalidates the peer's memory window (or region) named by `rkey`.
  virtual Status send_with_invalidate(uint64_t wr_id, std::span<const Sge> sges, uint32_t rkey,
                                      SendFlags flags) = 0;
  virtual Status rdma_write(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                            SendFlags flags) = 0;
  // Consumes a receive at the peer, which completes with the immediate and no data.
  virtual Status rdma_write_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                           RemoteAddress remote, uint32_t immediate,
                                           SendFlags flags) = 0;
  virtual Status rdma_read(uint64_t wr_id, std::span<const Sge> sges, RemoteAddress remote,
                           SendFlags flags) = 0;
  // 64-bit atomics on an 8-byte aligned remote word; the original value lands in `result`.
  virtual Status compare_and_swap(uint64_t wr_id, const Sge& result, RemoteAddress remote,
                                  uint64_t compare, uint64_t swap, SendFlags flags) = 0;
  virtual Status fetch_and_add(uint64_t wr_id, const Sge& result, RemoteAddress remote,
                               uint64_t add, SendFlags flags) = 0;
  // Binds `window` to [address, address + length) of `region`; the new rkey is returned at once
  // and is valid for the peer once the bind completes (it is ordered with later sends).
  // Binding a type 1 window with length 0 unbinds it.
  virtual Result<uint32_t> bind_memory_window(uint64_t wr_id, MemoryWindow& window,
                                              const MemoryRegion& region, void* address,
                                              uint64_t length, Access access, SendFlags flags) = 0;
  // Local invalidate of a type 2 window's key.
  virtual Status invalidate(uint64_t wr_id, uint32_t rkey, SendFlags flags) = 0;

  // The peer's [remote.address, remote.address + length), which its key grants `access` to, mapped
  // into this process (remote_mapping.h). Only where the peer's memory can be mapped: the shm
  // wire (shm, and hybrid's connections on one host) maps memory the peer took from
  // ProtectionDomain::allocate_memory. Errors: kInvalidState unless the QP is connected
  // (kReadyToSend), kPermissionDenied when the key does not grant `access` to the range,
  // kNotSupported for any other memory or wire (RDMA devices, tcp, a peer whose files this
  // process may not take, shm_cma=off), where the caller uses work requests instead.
  virtual Result<std::unique_ptr<RemoteMapping>> map_remote(RemoteAddress remote, uint64_t length,
                                                            Access access) = 0;
};

// The QP number a datagram is sent to to reach every QP attached to a multicast group.
inline constexpr uint32_t kMulticastQpNumber = 0xffffff;

// Unreliable datagrams (UD).
// - A new datagram QP is in kReadyToSend at once: verbs walks a UD QP through init and
//   ready-to-receive with no peer to name, so there is nothing to wait for. After a reset the
//   application walks it back: kReset -> kInit -> kReadyToReceive -> kReadyToSend (modify).
// - The Q_Key is given at creation. A datagram whose Q_Key differs is dropped without a
//   completion; a send's `qkey` with the high bit set means "use this QP's own Q_Key".
// - One datagram carries at most the port's active MTU: a longer send is refused at post
//   (kInvalidArgument). A datagram longer than the receive's buffers completes that receive
//   with kLocalLengthError and the QP stays usable. A datagram for a QP with no receive posted
//   is dropped (there is no receiver-not-ready retry).
// - A send completes once the datagram left (was handed to the kernel or the adapter); nothing
//   says whether it arrived.
// - A receive completion carries the payload length only (no 40-byte GRH precedes the data in
//   this API), the sender's QP number in source_qp_number, and kWithImmediate + immediate.
// - Multicast: an attached QP receives what is sent to the group with kMulticastQpNumber.
//   Software providers ignore `lid`; DatagramEndpoint::join_multicast also makes the host a
//   member of the group, attach/detach only choose which QPs receive it.
class DatagramQueuePair : public QueuePair {
 public:
  virtual Status send(uint64_t wr_id, std::span<const Sge> sges, const AddressHandle& destination,
                      uint32_t remote_qp_number, uint32_t qkey, SendFlags flags) = 0;
  virtual Status send_with_immediate(uint64_t wr_id, std::span<const Sge> sges,
                                     const AddressHandle& destination, uint32_t remote_qp_number,
                                     uint32_t qkey, uint32_t immediate, SendFlags flags) = 0;
  virtual Status attach_multicast(const Gid& group, uint16_t lid) = 0;
  virtual Status detach_multicast(const Gid& group, uint16_t lid) = 0;
};

}  // namespace wv::verbs
