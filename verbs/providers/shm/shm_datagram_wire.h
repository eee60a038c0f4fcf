// The shm provider's datagram wire: UD datagrams between processes of one host through shared
// memory, with the UDP wire (tcp/udp_wire.h) beside it for everything shared memory cannot reach.
//
// Each device listens on the abstract unix socket "\0wv-shm-dg/<port>", <port> being its UDP
// wire's port: the port that address vectors and lookups already carry, and its owner's alone
// on the host while the device lives. The first datagram to a port of this host goes by UDP
// while the progress thread connects to that name in the background; the connection brings a
// channel, a memfd segment (shm_ring.h) whose ring 0 carries this device's datagrams to that
// peer, with a doorbell each way. Later datagrams go through the ring: one copy in, one copy
// out, and no system call unless the receiver's progress thread sleeps. Every sender has its
// own ring at the receiver, so each ring keeps a single producer, and a sender that dies with
// an entry half written stalls nobody else.
//
// Kept on UDP: destinations on other hosts, and peers without a channel (a tcp-provider device,
// or while the channel is being set up; a failed setup is retried after kChannelRetry). UD
// promises no order, and datagrams sent across the switch from UDP to the ring may arrive out
// of order.
//
// Multicast (GroupMode::kRings, the shm provider) needs no IP multicast on the host: the members of
// a group are the shm devices with a QP attached to it, listed in the group's directory
// (shm_group_directory.h), and a datagram to the group is one ring entry per member, the sender's
// own device included when it is one. A send waits (kWouldBlock) while the directory is being found
// and while new members' channels are being set up, so that the first datagrams reach everyone; a
// member whose ring is full misses that datagram, as a NIC's multicast would drop it. UDP devices
// (the tcp provider) on the host are not members of shm groups. With GroupMode::kUdp (the hybrid
// provider, whose groups span hosts) multicast stays IP multicast on the UDP wire, and only unicast
// to peers of this host takes the rings.
//
// A full ring is back-pressure rather than loss: send() returns kWouldBlock and the QP resumes
// once the receiver has freed half the ring. A receiver that goes away (its socket hangs up)
// takes its channel along, and later datagrams to its port go by UDP again. An entry that does
// not check out closes the channel it came on.
//
// The receiving side runs on the device's progress thread: the rings' shared doorbell wakes it,
// and it delivers through the UDP wire's registry, so attachments, Q_Key checks and counters
// stay in one place.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "datagram_wire.h"
#include "poller_presence.h"
#include "progress.h"
#include "shm_group_directory.h"
#include "shm_ring.h"
#include "soft_completion_queue.h"
#include "udp_wire.h"
#include "wv/spin_lock.h"

namespace wv::verbs::shm {

inline constexpr std::string_view kDatagramNames = "wv-shm-dg/";
inline constexpr auto kChannelRetry = std::chrono::seconds(1);
// While a poller drains the rings, how often the progress thread checks it is still there.
inline constexpr auto kPollerRecheck = std::chrono::microseconds(200);
// Senders one device serves at once; more are refused and stay on UDP.
inline constexpr size_t kMaxInboundChannels = 1024;

// The channel handshake (SOCK_SEQPACKET, host byte order):
//   request    sender -> receiver, with SCM_RIGHTS [segment memfd, sender's writable eventfd]
//   accept     receiver -> sender, with SCM_RIGHTS [receiver's doorbell eventfd]
// The socket then lives as long as the channel; its hang-up ends the channel on both sides.
// A group's holder says one thing to whoever connects to the group's name:
//   directory  holder -> member or sender, with SCM_RIGHTS [directory memfd]
inline constexpr uint32_t kChannelMagic = 0x57534447;  // "WSDG"
inline constexpr uint16_t kChannelVersion = 1;
enum class ChannelMessage : uint16_t { kRequest = 1, kAccept = 2, kDirectory = 3 };
struct ChannelHello {
  uint32_t magic = kChannelMagic;
  uint16_t version = kChannelVersion;
  ChannelMessage type = ChannelMessage::kRequest;
};

struct ShmDatagramCounters {
  uint64_t ring_sends = 0;         // datagrams this device sent through a ring
  uint64_t ring_received = 0;      // datagrams taken from the rings of its senders
  uint64_t channels_opened = 0;    // rings this device set up towards receivers
  uint64_t channels_accepted = 0;  // rings its senders set up towards it
  uint64_t malformed = 0;          // channels closed for an entry or handshake that did not check
  uint64_t group_drops = 0;        // group datagrams a member missed (its ring was full)
};

enum class GroupMode : uint8_t { kRings, kUdp };

class ShmDatagramWire final : public soft::DatagramWire,
                              public soft::ProgressSource,
                              public tcp::GroupMembership,
                              public std::enable_shared_from_this<ShmDatagramWire> {
 public:
  // `host_gids`: this host's addresses (a destination among them, or on loopback, is local).
  // `ring_bytes`: the ring of each channel, a power of two from shm_ring.h's range.
  static Result<std::shared_ptr<ShmDatagramWire>> open(std::shared_ptr<tcp::UdpWire> udp,
                                                       std::vector<Gid> host_gids,
                                                       uint32_t ring_bytes,
                                                       GroupMode groups = GroupMode::kRings);
  ~ShmDatagramWire() override;
  ShmDatagramWire(const ShmDatagramWire&) = delete;
  ShmDatagramWire& operator=(const ShmDatagramWire&) = delete;

  // Starts serving on the device's progress thread (the UDP wire is started by its owner).
  Status start(soft::Progress& progress);
  const std::shared_ptr<tcp::UdpWire>& udp() const { return udp_; }
  ShmDatagramCounters counters() const;

  // ---- soft::DatagramWire ----
  uint32_t max_payload() const override { return udp_->max_payload(); }
  Status resolve(const AddressVector& address, soft::WireAddress& out) const override;
  soft::SendResult send(const soft::WireAddress& to, const soft::DatagramHeader& header,
                        std::span<const soft::Segment> payload, int& error) override;
  void wait_writable(uint32_t qp_number) override;
  Status attach(uint32_t qp_number, soft::DatagramReceiver* receiver) override {
    return udp_->attach(qp_number, receiver);
  }
  void detach(uint32_t qp_number) override;
  Status attach_multicast(const Gid& group, uint32_t qp_number) override;
  Status detach_multicast(const Gid& group, uint32_t qp_number) override;

  // ---- tcp::GroupMembership: rings need no host membership, only a valid group ----
  Status join_group(const SocketAddress& group) override {
    return groups_mode_ == GroupMode::kUdp ? udp_->join_group(group)
                                           : tcp::check_group_address(group);
  }
  Status leave_group(const SocketAddress& group) override {
    return groups_mode_ == GroupMode::kUdp ? udp_->leave_group(group)
                                           : tcp::check_group_address(group);
  }

  std::weak_ptr<soft::ProgressSource> progress_source() override { return weak_from_this(); }

  // ---- soft::ProgressSource: a thread polling a CQ of an attached QP drains the rings ----
  void progress_from_poll() override;
  void poller_sleeping() override;

  // Progress thread: events on one of the wire's descriptors, or its deadline.
  void on_events(int fd, uint32_t events);
  void on_deadline(int fd);

 private:
  using Clock = std::chrono::steady_clock;
  enum class ChannelState : uint8_t { kConnecting, kReady, kClosed };
  // This device's ring towards one receiver.
  struct Outbound {
    ChannelState state = ChannelState::kConnecting;  // under outbound_mutex_
    Clock::time_point closed_at;                     // under outbound_mutex_
    int socket = -1;  // owned by outbound_sockets_ (progress thread; read under the mutex)
    std::unique_ptr<Segment> segment;  // set before kReady
    int peer_doorbell = -1;            // set before kReady
    bool retry = false;  // set up again after a failure: group sends do not wait for it
    SpinLock producer_lock;
    RingProducer producer;
    ~Outbound();
  };
  // A multicast group this device sends to or is a member of (under groups_mutex_).
  struct Group {
    Gid gid;
    std::unique_ptr<GroupDirectory> directory;  // null until found
    int socket = -1;  // to the holder, or listening while this device holds the name
    bool holder = false;
    bool finding = false;       // a connection to the holder waits for its answer
    std::vector<int> accepted;  // holder: the others' connections
    std::unordered_map<uint32_t, uint32_t> attachments;  // QP number -> attach count
    uint64_t generation = ~uint64_t{0};                  // of `ports`
    std::array<uint16_t, kMaxGroupMembers> ports{};
    size_t count = 0;
  };
  struct FoundDirectory {
    std::unique_ptr<GroupDirectory> directory;
    int socket = -1;
    bool holder = false;
  };
  // One sender's ring towards this device (progress thread only).
  struct Inbound {
    int socket = -1;
    std::unique_ptr<Segment> segment;  // null until the sender's request arrived
    RingConsumer consumer;
    int peer_doorbell = -1;  // the sender's, rung when it waits for space
    ~Inbound();
  };

  ShmDatagramWire(std::shared_ptr<tcp::UdpWire> udp, std::vector<Gid> host_gids,
                  uint32_t ring_bytes, GroupMode groups);
  bool on_this_host(const Gid& gid) const;
  void request_channel(uint16_t port) const;
  std::shared_ptr<Outbound> ready_channel(uint16_t port);
  // `group`: a group datagram, dropped rather than held back when the ring is full.
  soft::SendResult send_on_ring(Outbound& channel, const soft::DatagramHeader& header,
                                std::span<const soft::Segment> payload, const Gid* group);
  soft::SendResult send_to_group(size_t index, const soft::DatagramHeader& header,
                                 std::span<const soft::Segment> payload);
  void wait_on_ring(uint32_t qp_number);
  void stop_waiting(uint32_t qp_number);
  // Starts looking for the holder of `group` unless it is known or being looked for.
  void find_group_locked(Group& group, size_t index);

  // Multicast membership (application threads, under join_mutex_).
  Result<FoundDirectory> find_or_hold(const Gid& group);
  // The entry of `group`, made if new; null when the device has its limit of groups.
  Group* group_locked(const Gid& group, size_t* index);
  void watch_group_socket_locked(int fd, size_t index);
  void leave_locked(Group& group);
  void close_group_socket_locked(int fd);
  // Progress thread; false when `fd` is none of the groups'.
  bool on_group_socket(int fd, uint32_t events);
  void take_over_locked(Group& group, size_t index);

  // Progress thread.
  void connect_channel(uint16_t port);
  void on_outbound_reply(Outbound& channel);
  void close_outbound(int fd);
  void accept_senders();
  // False when the channel must end.
  bool accept_request_locked(Inbound& channel);
  void close_inbound_locked(int fd);
  // Progress thread: drains, then arms the rings' doorbells, or parks while a poller drains.
  void drain_rings();
  enum class Drained : uint8_t { kEmpty, kMore, kBroken };
  Drained drain_locked(Inbound& channel);
  // True when a ring still holds entries after a batch.
  bool drain_all_locked();
  void resume_ring_waiters();

  const std::shared_ptr<tcp::UdpWire> udp_;
  const std::vector<Gid> host_gids_;
  const uint32_t ring_bytes_;
  const GroupMode groups_mode_;
  soft::Progress* progress_ = nullptr;
  int listen_fd_ = -1;
  int doorbell_fd_ = -1;  // senders ring it for this device's rings
  int writable_fd_ = -1;  // receivers ring it when this device waits for space

  mutable std::mutex outbound_mutex_;
  mutable std::unordered_map<uint16_t, std::shared_ptr<Outbound>> outbound_;
  std::unordered_map<int, uint16_t> outbound_sockets_;  // progress thread; owns the fds

  // The receiving side: the progress thread changes it, pollers drain it (try_lock).
  SpinLock drain_lock_;
  std::unordered_map<int, std::unique_ptr<Inbound>> inbound_;  // by socket, under drain_lock_
  std::atomic<bool> has_inbound_{false};
  soft::PollerPresence presence_;

  std::mutex join_mutex_;  // one attach or detach at a time
  std::mutex groups_mutex_;
  std::vector<std::unique_ptr<Group>> groups_;     // never shrinks: resolved addresses index it
  std::unordered_map<int, size_t> group_sockets_;  // fd -> group; owns the fds

  // QPs whose last send found a ring full; resumed by the writable doorbell.
  std::mutex waiters_mutex_;
  std::vector<uint32_t> ring_waiters_;
  std::vector<uint32_t> resuming_;  // progress thread

  struct Counters {
    std::atomic<uint64_t> ring_sends{0};
    std::atomic<uint64_t> ring_received{0};
    std::atomic<uint64_t> channels_opened{0};
    std::atomic<uint64_t> channels_accepted{0};
    std::atomic<uint64_t> malformed{0};
    std::atomic<uint64_t> group_drops{0};
  };
  Counters counters_;
};

}  // namespace wv::verbs::shm
