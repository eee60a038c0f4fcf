// Plain data of the verbs API: flags, attributes, work-request pieces and completions.
//
// Byte order, stated once: every field in this API is in host byte order (addresses, keys,
// queue pair numbers, immediate data, atomic operands). Providers convert to wire order.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace wv::verbs {

class MemoryRegion;

// Bit-flag enums opt in to |, & and a has() test.
template <typename E>
struct EnableFlags : std::false_type {};

template <typename E>
requires EnableFlags<E>::value constexpr E operator|(E a, E b) {
  using U = std::underlying_type_t<E>;
  return static_cast<E>(static_cast<U>(a) | static_cast<U>(b));
}
template <typename E>
requires EnableFlags<E>::value constexpr E operator&(E a, E b) {
  using U = std::underlying_type_t<E>;
  return static_cast<E>(static_cast<U>(a) & static_cast<U>(b));
}
template <typename E>
requires EnableFlags<E>::value constexpr bool has(E set, E flag) {
  return (set & flag) == flag;
}

// What a port speaks; upper layers adapt to it instead of assuming InfiniBand.
enum class Transport : uint8_t { kInfiniband, kRoce, kIwarp, kSoftware };
std::string_view to_string(Transport transport);

// What a device can do. Tests gated on a capability name it when they skip.
enum class Capability : uint32_t {
  kNone = 0,
  kAtomics = 1u << 0,            // compare-and-swap and fetch-and-add
  kImmediateData = 1u << 1,      // send / RDMA write with immediate
  kDatagram = 1u << 2,           // unreliable datagram QPs
  kMulticast = 1u << 3,          // datagram multicast attach/detach
  kMemoryWindowType1 = 1u << 4,  // windows bound and unbound through a QP, by the owner only
  kMemoryWindowType2 = 1u << 5,  // windows bound to one QP, invalidated locally or remotely
  kSendWithInvalidate = 1u << 6,
  kSharedReceiveQueue = 1u << 7,
  kSrqLimitEvent = 1u << 8,
  kBatchNotify = 1u << 9,  // CQ notification after N completions
  kResizeCompletionQueue = 1u << 10,
  // Errors found by the responder (bad rkey, no receive posted) complete the requester's work
  // request with an error status, as InfiniBand RC does. Without it (iWARP), sends and writes
  // complete once transmitted and a responder error arrives as a terminate that moves the QP
  // to the error state (an async QP-fatal event) and flushes what was still queued.
  kRemoteErrorsInCompletion = 1u << 11,
  // iWARP: the sink of an RDMA read must be registered with remote write access.
  kReadSinkNeedsRemoteWrite = 1u << 12,
  kInline = 1u << 13,  // sends of up to max_inline bytes are copied at post time
  // ConnectQueuePair::connect_out_of_band: InfiniBand and RoCE, whose QPs can be connected from
  // addresses the application exchanges itself, without a connection manager.
  kOutOfBandConnect = 1u << 14,
  // ConnectQueuePair::map_remote can succeed on some of the device's connections (shm; hybrid's
  // connections on one host): worth offering a peer memory to map.
  kRemoteMapping = 1u << 15,
};
template <>
struct EnableFlags<Capability> : std::true_type {};
std::string to_string(Capability set);

// Where a device's behaviour differs from the API's reference semantics (the software providers)
// in a way no provider can paper over. Conformance tests check the documented behaviour instead
// and name the flag; the software providers report none.
enum class Limitation : uint32_t {
  kNone = 0,
  // No send-queue-drained state: iWARP verbs have none (siw turns SQD into a connection close).
  kNoSendQueueDrain = 1u << 0,
  // A send that finds no receive posted is a responder error at once (iWARP has no RNR retry).
  kNoReceiverNotReadyRetry = 1u << 1,
  // Receiver-not-ready is the requester's business (InfiniBand RNR NAK): the responder's QP
  // stays connected, and the requester retries rnr_retry_count times (7 meaning forever).
  kReceiverNotReadyFailsOnlyTheRequester = 1u << 2,
  // A read the responder refuses completes kFlushed, not kRemoteAccessError: the responder's
  // terminate closes the connection before the read completes (siw).
  kRefusedReadFlushed = 1u << 3,
  // A receive too short for the message completes kLocalQpOperationError at the receiver and
  // the send kRemoteOperationError (rxe), not kLocalLengthError / kRemoteInvalidRequest.
  kLengthErrorAsOperationError = 1u << 4,
  // Read depths are not negotiated down: the accepting side raises its inbound depth to the
  // connecting side's outbound depth (siw's relaxed IRD negotiation).
  kReadDepthsRaisedToPeer = 1u << 5,
  // A listen on a specific address cannot share a port with a wildcard listen (rdma_cm).
  kNoSpecificListenBesideWildcard = 1u << 6,
  // Memory windows are bound, but accesses through them are not checked against the window's
  // bounds and rights, and send-with-invalidate does not report the invalidated key (rxe).
  kMemoryWindowsNotEnforced = 1u << 7,
  // A kSolicited CQ notification does not fire, neither for a solicited receive nor for an
  // error completion (siw).
  kNoSolicitedNotification = 1u << 8,
  // RDMA reads and writes are served by the device (kernel or NIC) whether or not the target
  // process runs: a stopped peer still serves them until it is gone.
  kOneSidedServedByDevice = 1u << 9,
  // A work request posted just as the device moves the QP to the error state on its own may
  // never complete (siw flushes its user-mapped queues only on entering the error state).
  kLatePostsLostAfterError = 1u << 10,
  // Observed on siw, not worked around by the provider:
  // a connected QP in kError cannot be reset for another connection (siw_qp_modify has no
  // transition out of SIW_QP_STATE_ERROR: the device accepts kReset and kInit and keeps the QP in
  // error, which siw_accept and the MPA reply then refuse), so the provider refuses kError ->
  // kReset with kNotSupported;
  kNoReconnectAfterError = 1u << 11,
  // the send in progress when the QP is moved to kError completes kLocalQpOperationError (the
  // move suspends siw's transmitter, and its failure path completes the active WQE with
  // SIW_WC_LOC_QP_OP_ERR instead of flushing it: siw_qp_sq_process);
  kActiveSendFailsOnModifyToError = 1u << 12,
  // sends behind an RDMA read may complete before it (siw completes a send or write once it is
  // handed to TCP, a read when its response arrives: siw_qp_sq_process);
  kSendsOvertakeReads = 1u << 13,
  // an RDMA read of a region without remote read access is served (siw transmits the read
  // response after checking the source key with no access bits: siw_qp_sq_proc_tx);
  kReadAccessNotChecked = 1u << 14,
  // a write the responder refuses may complete kLocalQpOperationError instead of kSuccess when
  // the terminate arrives before the write's completion (the same failure path: the terminate
  // drops the connection while the write is still being handed to TCP).
  kRefusedWriteFailsLocally = 1u << 15,
  // A multicast group joined by an IPv4 address is addressed by the IPv4-mapped GID
  // ::ffff:a.b.c.d (RoCEv2, rdma_cm's default on RoCE ports), for which Gid::is_multicast()
  // does not hold, not by an ff00::/8 multicast GID.
  kMulticastGidIpv4Mapped = 1u << 16,
  // RDMA reads may be served while the target process does not run (the shm provider copies a
  // read itself where the target publishes its keys), writes and atomics are not (except writes
  // to a region from allocate_memory): a stopped peer still serves a read of registered memory
  // posted before any write, but nothing after that write.
  kReadsServedWithoutTarget = 1u << 17,
  // When the connection drops while the send queue is being transmitted, some of the work
  // requests behind the one in transmission may never complete (siw, seen on Linux 6.1: the
  // transmitter's failure path and the connection close that flushes the send queue race, and
  // one or more entries leave the queue without a completion). Callers must not wait for every
  // completion of a failed QP: the transport fails a peer's requests on the first error.
  kQueuedSendsLostOnConnectionLoss = 1u << 18,
};
template <>
struct EnableFlags<Limitation> : std::true_type {};
std::string to_string(Limitation set);

enum class Access : uint32_t {
  kNone = 0,
  kLocalWrite = 1u << 0,
  kRemoteRead = 1u << 1,
  kRemoteWrite = 1u << 2,
  kRemoteAtomic = 1u << 3,
  kBindMemoryWindow = 1u << 4,
};
template <>
struct EnableFlags<Access> : std::true_type {};

enum class SendFlags : uint32_t {
  kNone = 0,
  kSignaled = 1u << 0,   // produce a completion even when the QP does not signal every send
  kFence = 1u << 1,      // wait for earlier RDMA reads and atomics before starting
  kSolicited = 1u << 2,  // wake a receiver waiting for solicited completions
  kInline = 1u << 3,     // copy the data at post time; buffers need no registration
};
template <>
struct EnableFlags<SendFlags> : std::true_type {};

// 128-bit global identifier, stored as it appears on the wire (a GID is an address, not a number).
struct Gid {
  std::array<uint8_t, 16> raw{};
  bool is_multicast() const { return raw[0] == 0xff; }
  friend bool operator==(const Gid&, const Gid&) = default;
};
std::string to_string(const Gid& gid);

// A buffer of registered local memory: the region it lies in and the bytes used.
struct Sge {
  const MemoryRegion* region = nullptr;
  void* address = nullptr;
  uint32_t length = 0;
};

// Memory of the peer, named by the key the peer gave out (memory region or window).
struct RemoteAddress {
  uint64_t address = 0;
  uint32_t rkey = 0;
};

enum class Opcode : uint8_t {
  kSend,
  kRdmaWrite,
  kRdmaRead,
  kCompareAndSwap,
  kFetchAndAdd,
  kBindMemoryWindow,
  kLocalInvalidate,
  kReceive,
  kReceiveRdmaWithImmediate,  // a receive consumed by an RDMA write with immediate
};
std::string_view to_string(Opcode opcode);

enum class CompletionStatus : uint8_t {
  kSuccess,
  kLocalLengthError,       // receive buffer too small, or message larger than allowed
  kLocalQpOperationError,  // the work request is malformed for this QP
  kLocalProtectionError,   // a local buffer is outside its region or lacks the access
  kFlushed,                // the QP was in error when the work request was processed
  kMemoryWindowBindError,
  kRemoteAccessError,     // the peer refused the rkey, bounds or access rights
  kRemoteOperationError,  // the peer could not carry out the operation
  kRemoteInvalidRequest,  // the peer saw a malformed request (e.g. message too long)
  kReceiverNotReady,      // no receive was posted at the peer within the retry bound
  kTransportError,        // the connection failed (peer gone, timeout, protocol error)
  kFatal,
};
std::string_view to_string(CompletionStatus status);

enum class CompletionFlags : uint8_t {
  kNone = 0,
  kWithImmediate = 1u << 0,
  kWithInvalidate = 1u << 1,  // a send-with-invalidate invalidated `invalidated_rkey`
};
template <>
struct EnableFlags<CompletionFlags> : std::true_type {};

// One completed work request. `qp_context` is the context given when the QP was created, so a
// receive taken from a shared receive queue still says which QP it arrived on.
struct Completion {
  uint64_t wr_id = 0;
  void* qp_context = nullptr;
  uint32_t length = 0;  // bytes received, read, or 8 for atomics
  Opcode opcode = Opcode::kSend;
  CompletionStatus status = CompletionStatus::kSuccess;
  CompletionFlags flags = CompletionFlags::kNone;
  uint32_t immediate = 0;
  uint32_t invalidated_rkey = 0;
  uint32_t qp_number = 0;  // the local QP the work request belonged to
  // Receives on datagram QPs: the sending QP. Connected QPs report the peer's number where the
  // transport carries it (InfiniBand/RoCE); iWARP never names QPs on the wire, so it is 0 there.
  uint32_t source_qp_number = 0;
  uint32_t vendor_error = 0;  // provider detail, for logs only
};

enum class AtomicScope : uint8_t { kNone, kDevice, kGlobal };

struct DeviceAttributes {
  std::string name;
  std::string firmware_version;
  uint32_t vendor_id = 0;
  uint32_t device_id = 0;  // the vendor's part id
  uint32_t hardware_version = 0;
  uint64_t node_guid = 0;
  uint64_t system_image_guid = 0;
  uint64_t max_mr_size = 0;
  uint64_t page_size_mask = 0;
  uint32_t max_qp = 0;
  uint32_t max_qp_wr = 0;
  uint32_t max_sge = 0;
  uint32_t max_read_sge = 0;  // SGEs one RDMA read may scatter into (siw: 1)
  uint32_t max_cq = 0;
  uint32_t max_cqe = 0;
  uint32_t max_mr = 0;
  uint32_t max_pd = 0;
  uint32_t max_inbound_read_depth = 0;   // RDMA reads a QP serves at once (IRD)
  uint32_t max_outbound_read_depth = 0;  // RDMA reads a QP issues at once (ORD)
  uint32_t max_mw = 0;
  uint32_t max_srq = 0;
  uint32_t max_srq_wr = 0;
  uint32_t max_srq_sge = 0;
  uint32_t max_ah = 0;
  uint32_t max_multicast_groups = 0;
  uint32_t max_inline = 0;
  uint32_t max_message_size = 0;
  AtomicScope atomic_scope = AtomicScope::kNone;
  uint8_t port_count = 0;
  Capability capabilities = Capability::kNone;
  Limitation limitations = Limitation::kNone;  // none on the software providers
  // The kernel emulates the device over a network interface (Soft-RoCE, SoftiWARP): its round
  // trips cost a kernel network stack's, an order of magnitude more than a NIC's.
  bool kernel_emulated = false;
};

enum class PortState : uint8_t { kDown, kInit, kArmed, kActive };
std::string_view to_string(PortState state);

struct PortAttributes {
  PortState state = PortState::kDown;
  Transport transport = Transport::kSoftware;
  uint32_t max_mtu = 0;
  uint32_t active_mtu = 0;
  uint32_t max_message_size = 0;
  uint32_t gid_table_length = 0;
  uint16_t pkey_table_length = 0;
  uint16_t lid = 0;
  uint16_t sm_lid = 0;
  uint8_t lmc = 0;
};

// Where a datagram goes: the route to a port. For IP-based transports the GID carries the IP.
struct AddressVector {
  Gid destination_gid;
  uint16_t destination_lid = 0;
  uint8_t service_level = 0;
  uint8_t port = 1;
  uint8_t hop_limit = 64;
  bool global_route = true;
  uint16_t destination_port = 0;  // software providers: the peer device's UDP port
};

enum class QpState : uint8_t {
  kReset,
  kInit,
  kReadyToReceive,
  kReadyToSend,
  kSendQueueDrained,
  kError,
};
std::string_view to_string(QpState state);

struct QpAttributes {
  QpState state = QpState::kReset;
  uint32_t qp_number = 0;
  uint32_t peer_qp_number = 0;  // as Completion::source_qp_number: 0 where the wire names no QPs
  uint32_t send_depth = 0;
  uint32_t receive_depth = 0;
  uint32_t send_sge = 0;
  uint32_t receive_sge = 0;
  uint32_t max_inline = 0;
  uint32_t inbound_read_depth = 0;
  uint32_t outbound_read_depth = 0;
  uint32_t qkey = 0;  // datagram QPs
};

enum class MemoryWindowType : uint8_t { kType1 = 1, kType2 = 2 };

// Asynchronous events a device reports outside the completion path.
enum class EventType : uint8_t {
  kPortActive,
  kPortDown,
  kQpFatal,  // a QP went to the error state on its own (terminate, peer loss, CQ overrun)
  kCompletionQueueError,
  kDeviceFatal,
};
std::string_view to_string(EventType type);

struct DeviceEvent {
  EventType type = EventType::kDeviceFatal;
  uint8_t port = 0;
  void* context = nullptr;  // the QP's context for QP events
  uint32_t qp_number = 0;
  std::string detail;  // why, in words (e.g. the terminate's error)
};

}  // namespace wv::verbs
