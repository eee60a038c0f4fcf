// The tcp provider's datagram wire: UD datagrams over UDP, one socket per device.
//
// The device socket is bound to the wildcard address (dual-stack IPv6 when the host has IPv6,
// else IPv4) on an ephemeral port, or on the first free port from `tcp_port_base` when that is
// set. The device's progress thread reads it into one staging buffer and copies each datagram
// into the receive request's buffers (UD is a copy path); nothing is allocated per datagram.
//
// Wire format, network byte order, followed by the payload (at most the port MTU):
//    0  u16  magic 0x5756 ("WV")
//    2  u8   version 1
//    3  u8   flags: bit 0 immediate present, bit 1 solicited; the other bits must be 0
//    4  u32  source QP number (24 bits)
//    8  u32  destination QP number (24 bits; 0xFFFFFF addresses a multicast group)
//   12  u32  Q_Key
//   16  u32  immediate data (0 when absent)
// A datagram that is short, has another magic, version or unknown flags, is longer than the
// MTU, or names no attached QP is dropped and counted; it never reaches a QP.
//
// An AddressVector names a destination by destination_gid (IPv4-mapped ::ffff:a.b.c.d, or an
// IPv6 address) and destination_port (the peer device's UDP port).
//
// Multicast (IPv4): a join opens a socket bound to the group's address and port and adds the
// host to the group (IP_ADD_MEMBERSHIP); sends loop back (IP_MULTICAST_LOOP) so that processes
// on one host receive each other, with a hop limit of 1 (one subnet, like an InfiniBand
// subnet). The host needs an interface with a route for 224.0.0.0/4: a default route is
// enough; a host with only `lo` (a bare network namespace, a sandbox) needs
// `ip route add 224.0.0.0/4 dev lo`, and on some kernels `ip link set lo multicast on`.
// The first open() in a process probes this by sending one datagram to a random 239.255/16
// group and waiting briefly (200 ms at most) for it to come back; multicast_status() says why it
// failed, and the device then lacks Capability::kMulticast.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "datagram_wire.h"
#include "progress.h"
#include "wv/result.h"
#include "wv/verbs/socket_address.h"

namespace wv::verbs::tcp {

inline constexpr size_t kDatagramHeaderBytes = 20;
inline constexpr uint16_t kDatagramMagic = 0x5756;
inline constexpr uint8_t kDatagramVersion = 1;
inline constexpr uint8_t kDatagramFlagImmediate = 1u << 0;
inline constexpr uint8_t kDatagramFlagSolicited = 1u << 1;
// How many multicast groups one device can be in (each is a socket with one membership).
inline constexpr uint32_t kMaxMulticastGroups = 256;

void encode_datagram_header(const soft::DatagramHeader& header,
                            std::span<std::byte, kDatagramHeaderBytes> out);

enum class HeaderCheck : uint8_t { kOk, kShort, kBadMagic, kBadVersion, kBadFlags, kBadQpNumber };
// Checks and decodes the header of a whole datagram.
HeaderCheck decode_datagram_header(std::span<const std::byte> datagram, soft::DatagramHeader& out);

// What the wire saw; for logs and diagnostics.
struct UdpWireCounters {
  uint64_t received = 0;
  uint64_t delivered = 0;
  uint64_t malformed = 0;  // short, bad magic, version, flags or QP number
  uint64_t oversize = 0;   // longer than the MTU
  uint64_t unknown_destination = 0;
  uint64_t qkey_mismatch = 0;
  uint64_t no_receive = 0;
  uint64_t not_ready = 0;
  uint64_t lost_sends = 0;  // the kernel refused to send (no route, ...)
};

// The host's membership of multicast groups, which a datagram endpoint's joins and leaves
// count: a socket in the IP group for UDP, nothing for shared-memory rings.
class GroupMembership {
 public:
  virtual ~GroupMembership() = default;
  virtual Status join_group(const SocketAddress& group) = 0;
  virtual Status leave_group(const SocketAddress& group) = 0;
};

// What a group address must be: IPv4 multicast (224.0.0.0/4) with a port.
Status check_group_address(const SocketAddress& group);

class UdpWire final : public soft::DatagramWire,
                      public GroupMembership,
                      public std::enable_shared_from_this<UdpWire> {
 public:
  // Opens and binds the device socket and probes multicast. `max_payload` is the port MTU.
  static Result<std::shared_ptr<UdpWire>> open(uint16_t port_base, uint32_t max_payload);
  ~UdpWire() override;
  UdpWire(const UdpWire&) = delete;
  UdpWire& operator=(const UdpWire&) = delete;

  // Starts serving the socket on the device's progress thread (which outlives the wire's use:
  // the device owns both and stops its thread first).
  Status start(soft::Progress& progress);

  uint16_t port() const { return port_; }
  int family() const { return family_; }
  // ok when this host receives its own multicast; otherwise what is missing.
  const Status& multicast_status() const { return multicast_status_; }
  UdpWireCounters counters() const;

  // The host's membership of `group` (an IPv4 multicast address and port), counted: the
  // socket lives until the last leave.
  Status join_group(const SocketAddress& group) override;
  Status leave_group(const SocketAddress& group) override;

  // ---- soft::DatagramWire ----
  uint32_t max_payload() const override { return max_payload_; }
  Status resolve(const AddressVector& address, soft::WireAddress& out) const override;
  soft::SendResult send(const soft::WireAddress& to, const soft::DatagramHeader& header,
                        std::span<const soft::Segment> payload, int& error) override;
  void wait_writable(uint32_t qp_number) override;
  Status attach(uint32_t qp_number, soft::DatagramReceiver* receiver) override;
  void detach(uint32_t qp_number) override;
  Status attach_multicast(const Gid& group, uint32_t qp_number) override;
  Status detach_multicast(const Gid& group, uint32_t qp_number) override;

  // Progress thread: `fd` is readable (or writable); `group` is set for a group socket.
  void on_events(int fd, uint32_t events, const Gid* group);

  // For a wire that carries datagrams beside this one (the shm provider's rings), so that one
  // registry and one set of counters serve both. Progress thread only.
  // A checked datagram for the attached QP it names, or for `group`'s members.
  void deliver(const soft::DatagramHeader& header, std::span<const std::byte> payload,
               const Gid* group);
  // Calls resume_sends() of each attached QP among `qp_numbers`.
  void resume_sends(std::span<const uint32_t> qp_numbers);

 private:
  explicit UdpWire(uint32_t max_payload);
  Status open_socket(uint16_t port_base);
  void receive(int fd, const Gid* group);
  void deliver_unicast(const soft::DatagramHeader& header, std::span<const std::byte> payload);
  void deliver_multicast(const Gid& group, const soft::DatagramHeader& header,
                         std::span<const std::byte> payload);
  void count(soft::DeliverResult result);

  struct Membership {
    Gid group;
    uint32_t qp_number = 0;
    uint32_t count = 0;
  };
  struct GroupSocket {
    SocketAddress address;
    int fd = -1;
    uint32_t users = 0;
  };

  const uint32_t max_payload_;
  int fd_ = -1;
  int family_ = AF_UNSPEC;
  uint16_t port_ = 0;
  Status multicast_status_;
  soft::Progress* progress_ = nullptr;
  std::vector<std::byte> staging_;  // progress thread only

  // Who receives what. Delivery holds it shared, so detach (exclusive) waits for it.
  std::shared_mutex registry_mutex_;
  std::unordered_map<uint32_t, soft::DatagramReceiver*> receivers_;
  std::vector<Membership> memberships_;

  std::mutex groups_mutex_;
  std::vector<GroupSocket> groups_;

  std::mutex writable_mutex_;
  std::vector<uint32_t> writable_waiters_;
  std::vector<uint32_t> resuming_;  // progress thread only; swapped with the waiters
  bool watching_writable_ = false;

  struct Counters {
    std::atomic<uint64_t> received{0};
    std::atomic<uint64_t> delivered{0};
    std::atomic<uint64_t> malformed{0};
    std::atomic<uint64_t> oversize{0};
    std::atomic<uint64_t> unknown_destination{0};
    std::atomic<uint64_t> qkey_mismatch{0};
    std::atomic<uint64_t> no_receive{0};
    std::atomic<uint64_t> not_ready{0};
    std::atomic<uint64_t> lost_sends{0};
  };
  Counters counters_;
};

// The GID of an IP address: IPv4 as IPv4-mapped IPv6, IPv6 as is.
Gid gid_of_address(const SocketAddress& address);

}  // namespace wv::verbs::tcp
