// The datagram wire: what the engine's datagram QPs need from a provider to move datagrams.
//
// A SoftDatagramQueuePair keeps verbs semantics (validation, state, Q_Key checks, completions);
// the wire only carries one datagram at a time between QP numbers. It is called from posting
// threads (send) and calls back on the device's progress thread (deliver, resume_sends).
//
// Lifetime: a QP attach()es itself after construction and detach()es in its destructor. After
// detach returns, the wire neither delivers to the QP nor resumes it, so the receiver pointer
// never dangles. The wire delivers and resumes with its registry locked: a receiver must not
// call attach/detach/attach_multicast/detach_multicast from deliver() or resume_sends().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "work_request.h"
#include "wv/result.h"
#include "wv/verbs/queue_pair.h"
#include "wv/verbs/types.h"

namespace wv::verbs::soft {

class ProgressSource;

inline bool is_ipv4_mapped(const Gid& gid) {
  for (int i = 0; i < 10; ++i) {
    if (gid.raw[i] != 0) return false;
  }
  return gid.raw[10] == 0xff && gid.raw[11] == 0xff;
}

// An IPv4 multicast group has two GID spellings: IPv4-mapped (::ffff:239.1.2.3, as RoCEv2
// devices write it) and the IPoIB multicast GID ff1s:401b:pppp::239.1.2.3 (RFC 4391, what
// rdma_cm gives on InfiniBand). Both are accepted; the second is the canonical one, handed out
// by joins, because Gid::is_multicast() recognises it.
inline bool is_ipoib_ipv4_group(const Gid& gid) {
  if (gid.raw[0] != 0xff || (gid.raw[1] & 0xf0) != 0x10 || gid.raw[2] != 0x40 ||
      gid.raw[3] != 0x1b) {
    return false;
  }
  for (int i = 6; i < 12; ++i) {
    if (gid.raw[i] != 0) return false;
  }
  return true;
}

// The IPv4 group a GID names, if it names one (address in network order).
inline bool ipv4_group_of(const Gid& gid, std::array<uint8_t, 4>& address) {
  if (!is_ipoib_ipv4_group(gid) && !(is_ipv4_mapped(gid) && (gid.raw[12] & 0xf0) == 0xe0)) {
    return false;
  }
  for (int i = 0; i < 4; ++i) address[i] = gid.raw[12 + i];
  return true;
}

// The canonical GID of IPv4 group `address`: link-local scope, full-membership P_Key.
inline Gid ipv4_group_gid(const std::array<uint8_t, 4>& address) {
  Gid gid;
  gid.raw[0] = 0xff;
  gid.raw[1] = 0x12;
  gid.raw[2] = 0x40;
  gid.raw[3] = 0x1b;
  gid.raw[4] = 0xff;
  gid.raw[5] = 0xff;
  for (int i = 0; i < 4; ++i) gid.raw[12 + i] = address[i];
  return gid;
}

// One spelling per group, so that memberships match however the group was written.
inline Gid canonical_group(const Gid& gid) {
  std::array<uint8_t, 4> address;
  return ipv4_group_of(gid, address) ? ipv4_group_gid(address) : gid;
}

// A multicast group: an IPv6 (or InfiniBand) multicast GID, or an IPv4 group in either spelling.
inline bool is_multicast_group(const Gid& gid) {
  std::array<uint8_t, 4> address;
  return gid.is_multicast() || ipv4_group_of(gid, address);
}

// The transport fields of one datagram, in host order (the wire converts).
struct DatagramHeader {
  uint32_t source_qp_number = 0;
  uint32_t destination_qp_number = 0;
  uint32_t qkey = 0;
  uint32_t immediate = 0;
  bool has_immediate = false;
  bool solicited = false;
};

// A destination as the wire resolved it from an AddressVector at post time, so that sending
// later (after the socket was full) needs no second resolution. Opaque to the engine.
struct WireAddress {
  alignas(8) std::array<std::byte, 32> bytes{};
  uint32_t length = 0;
};

enum class SendResult : uint8_t {
  kSent,        // handed to the kernel (or the peer's ring): the send is complete
  kWouldBlock,  // nothing sent; the wire calls resume_sends() once it can take more
  kLost,        // the network refused it (no route, ...): UD reports no loss, so it completes
};

// Why a datagram was not placed; the wire counts drops by reason.
enum class DeliverResult : uint8_t {
  kDelivered,     // a receive completed (successfully or with kLocalLengthError)
  kQkeyMismatch,  // dropped silently, as verbs specifies
  kNoReceive,     // no receive posted: UD drops (there is no receiver-not-ready retry)
  kNotReady,      // the QP is not in a state that receives (reset, init, error)
};

// The QP side of the wire.
class DatagramReceiver {
 public:
  virtual ~DatagramReceiver() = default;
  // One datagram for this QP (progress thread). `payload` is valid during the call only.
  virtual DeliverResult deliver(const DatagramHeader& header,
                                std::span<const std::byte> payload) = 0;
  // The wire takes sends again after a kWouldBlock (progress thread).
  virtual void resume_sends() = 0;
};

class DatagramWire {
 public:
  virtual ~DatagramWire() = default;

  // The largest payload of one datagram (the port MTU); longer sends are refused at post.
  virtual uint32_t max_payload() const = 0;
  // Checks `address` and turns it into the wire's form; a refusal says what is wrong with it.
  virtual Status resolve(const AddressVector& address, WireAddress& out) const = 0;
  // Sends header + payload to `to`. Never blocks, never allocates. On kLost, `error` says why.
  virtual SendResult send(const WireAddress& to, const DatagramHeader& header,
                          std::span<const Segment> payload, int& error) = 0;
  // After a kWouldBlock: calls the QP's resume_sends() once the wire can take more.
  virtual void wait_writable(uint32_t qp_number) = 0;

  // Delivery of datagrams addressed to `qp_number`.
  virtual Status attach(uint32_t qp_number, DatagramReceiver* receiver) = 0;
  // Also ends every multicast attachment of the QP.
  virtual void detach(uint32_t qp_number) = 0;
  // Delivery of datagrams sent to `group` (with kMulticastQpNumber). Attachments are counted:
  // each attach needs its detach.
  virtual Status attach_multicast(const Gid& group, uint32_t qp_number) = 0;
  virtual Status detach_multicast(const Gid& group, uint32_t qp_number) = 0;
  // A wire whose datagrams a polling thread can move itself (no wakeup of the progress
  // thread) names the source that attached QPs register with their CQs.
  virtual std::weak_ptr<ProgressSource> progress_source() { return {}; }
};

}  // namespace wv::verbs::soft
