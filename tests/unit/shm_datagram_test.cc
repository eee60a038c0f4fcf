// The datagram rings (shm_datagram_wire.h) of the shm and hybrid providers: traffic moves from
// UDP to a ring once the channel is up, a stopped receiver holds sends back without losing any,
// multicast outlives its holder, and a hostile sender's garbage closes its own channel only.
// Every wait is bounded.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "child_test_process.h"
#include "shm_datagram_wire.h"
#include "shm_group_directory.h"
#include "shm_protocol.h"
#include "soft_device.h"
#include "wv/verbs.h"

namespace wv::verbs::shm {
namespace {

using namespace std::chrono_literals;
constexpr auto kBound = 10s;
constexpr uint32_t kQkey = 0x51e55;
constexpr uint32_t kSlot = 1024;
constexpr const char* kRoleVariable = "SHM_DATAGRAM_TEST_ROLE";
constexpr const char* kPipeVariable = "SHM_DATAGRAM_TEST_PIPE";

std::byte pattern(uint32_t seed, size_t i) {
  return static_cast<std::byte>((size_t{seed} * 131 + i * 7) & 0xff);
}

// One process's device, a datagram QP on it, and a registered buffer of `slots` slots.
struct Node {
  std::shared_ptr<Provider> provider;
  std::shared_ptr<ShmDatagramWire> wire;
  std::shared_ptr<Device> device;
  std::shared_ptr<ProtectionDomain> pd;
  std::shared_ptr<CompletionQueue> send_cq;
  std::shared_ptr<CompletionQueue> receive_cq;
  std::shared_ptr<DatagramQueuePair> qp;
  std::vector<std::byte> buffer;
  std::shared_ptr<MemoryRegion> region;

  // `provider_name`: shm, or hybrid (whose tcp device takes the rings to devices of this host).
  Status open(uint32_t slots, const char* provider_name = "shm") {
    auto provider_result = Provider::open(provider_name);
    if (!provider_result.is_ok()) return provider_result.status();
    provider = std::move(provider_result).value();
    auto opened = provider->open_device("");
    if (!opened.is_ok()) return opened.status();
    device = std::move(opened).value();
    auto soft = std::static_pointer_cast<soft::SoftDevice>(device);
    wire = std::dynamic_pointer_cast<ShmDatagramWire>(soft->datagram_wire());
    if (wire == nullptr) return Status(Errc::kNotSupported, "the device has no ring wire");
    pd = device->allocate_protection_domain().value();
    send_cq = device->create_completion_queue(slots + 8).value();
    receive_cq = device->create_completion_queue(slots + 8).value();
    QueuePairOptions options;
    options.send_cq = send_cq;
    options.receive_cq = receive_cq;
    options.send_depth = slots;
    options.receive_depth = slots;
    auto made = pd->create_datagram_queue_pair(options, kQkey);
    if (!made.is_ok()) return made.status();
    qp = std::move(made).value();
    buffer.resize(size_t{slots} * kSlot);
    auto registered = pd->register_memory(buffer.data(), buffer.size(), Access::kLocalWrite);
    if (!registered.is_ok()) return registered.status();
    region = std::move(registered).value();
    return Status::ok();
  }
  Status post_receives(uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
      const Sge sge = region->sge(buffer.data() + size_t{i} * kSlot, kSlot);
      if (Status status = qp->post_receive(i, std::span(&sge, 1)); !status) return status;
    }
    return Status::ok();
  }
  // Sends datagram `seed` of `length` pattern bytes from slot `slot` of the buffer.
  Status send(const AddressHandle& to, uint32_t qp_number, uint32_t seed, uint32_t length,
              uint32_t slot = 0) {
    std::byte* at = buffer.data() + size_t{slot} * kSlot;
    for (uint32_t i = 0; i < length; ++i) at[i] = pattern(seed, i);
    const Sge sge = region->sge(at, length);
    return qp->send(seed, std::span(&sge, 1), to, qp_number, kQkey, SendFlags::kNone);
  }
  uint16_t port() const { return wire->udp()->port(); }
};

AddressVector loopback(uint16_t port) {
  AddressVector address;
  address.destination_gid.raw[10] = 0xff;
  address.destination_gid.raw[11] = 0xff;
  address.destination_gid.raw[12] = 127;
  address.destination_gid.raw[15] = 1;
  address.destination_port = port;
  return address;
}

// Polls until `count` completions arrived (all successful) or the bound passed.
testing::AssertionResult complete(CompletionQueue& cq, uint32_t count,
                                  std::vector<Completion>* out = nullptr,
                                  std::chrono::milliseconds bound = kBound) {
  const auto end = std::chrono::steady_clock::now() + bound;
  uint32_t got = 0;
  Completion batch[16];
  while (got < count && std::chrono::steady_clock::now() < end) {
    const int n = cq.poll(batch);
    if (n < 0) return testing::AssertionFailure() << cq.status().to_string();
    for (int i = 0; i < n; ++i) {
      if (batch[i].status != CompletionStatus::kSuccess) {
        return testing::AssertionFailure()
               << "completion " << batch[i].wr_id << ": " << to_string(batch[i].status);
      }
      if (out != nullptr) out->push_back(batch[i]);
    }
    got += static_cast<uint32_t>(n);
    if (n == 0) std::this_thread::sleep_for(50us);
  }
  if (got < count) {
    return testing::AssertionFailure() << got << " of " << count << " completions";
  }
  return testing::AssertionSuccess();
}

template <typename Predicate>
bool eventually(Predicate predicate) {
  const auto end = std::chrono::steady_clock::now() + kBound;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class RingTraffic : public testing::TestWithParam<const char*> {};

TEST_P(RingTraffic, MovesToARingOnceTheChannelIsUp) {
  Node node;
  ASSERT_TRUE(node.open(256, GetParam()).is_ok());
  auto handle = node.pd->create_address_handle(loopback(node.port())).value();
  ASSERT_TRUE(node.post_receives(201).is_ok());
  // The first datagram goes by UDP and asks for the channel (here, to this device itself).
  ASSERT_TRUE(node.send(*handle, node.qp->number(), 1000, 64, 255).is_ok());
  ASSERT_TRUE(complete(*node.send_cq, 1));
  ASSERT_TRUE(complete(*node.receive_cq, 1));
  ASSERT_TRUE(eventually([&] { return node.wire->counters().channels_opened == 1; }))
      << "no channel to the device's own port";
  EXPECT_EQ(node.wire->counters().channels_accepted, 1u);
  const ShmDatagramCounters before = node.wire->counters();
  for (uint32_t i = 0; i < 200; ++i) {
    ASSERT_TRUE(node.send(*handle, node.qp->number(), i, 1 + (i * 37) % 1000, 255).is_ok());
    // Sends copy the payload at post time: the buffer may be rewritten for the next one.
  }
  ASSERT_TRUE(complete(*node.send_cq, 200));
  std::vector<Completion> received;
  ASSERT_TRUE(complete(*node.receive_cq, 200, &received));
  for (uint32_t i = 0; i < 200; ++i) {
    const Completion& c = received[i];
    ASSERT_EQ(c.length, 1 + (i * 37) % 1000) << "datagram " << i << " (a ring keeps order)";
    EXPECT_EQ(c.source_qp_number, node.qp->number());
    const std::byte* at = node.buffer.data() + c.wr_id * kSlot;
    for (uint32_t k = 0; k < c.length; ++k) {
      ASSERT_EQ(at[k], pattern(i, k)) << "datagram " << i << " byte " << k;
    }
  }
  const ShmDatagramCounters after = node.wire->counters();
  EXPECT_EQ(after.ring_sends - before.ring_sends, 200u) << "every datagram took the ring";
  EXPECT_EQ(after.ring_received - before.ring_received, 200u);
  EXPECT_EQ(after.malformed, 0u);
}

INSTANTIATE_TEST_SUITE_P(Providers, RingTraffic, testing::Values("shm", "hybrid"));

// ---- A receiver in another process ----

struct ReceiverInfo {
  uint16_t port = 0;
  uint32_t qp_number = 0;
};
constexpr uint32_t kBurst = 1000;
constexpr uint32_t kBurstBytes = 1000;

// The child: receives 1 + kBurst datagrams, checks them, and reports how many were right.
[[noreturn]] void run_receiver(int pipe_fd) {
  Node node;
  if (Status status = node.open(kBurst + 8); !status) {
    std::fprintf(stderr, "receiver: %s\n", status.to_string().c_str());
    ::_exit(2);
  }
  if (Status status = node.post_receives(kBurst + 1); !status) {
    std::fprintf(stderr, "receiver: %s\n", status.to_string().c_str());
    ::_exit(2);
  }
  const ReceiverInfo info{node.port(), node.qp->number()};
  if (::write(pipe_fd, &info, sizeof(info)) != sizeof(info)) ::_exit(3);
  std::vector<Completion> received;
  if (!complete(*node.receive_cq, kBurst + 1, &received)) ::_exit(4);
  uint32_t right = 0;
  for (uint32_t i = 1; i <= kBurst; ++i) {
    const Completion& c = received[i];
    const std::byte* at = node.buffer.data() + c.wr_id * kSlot;
    bool same = c.length == kBurstBytes;
    for (uint32_t k = 0; same && k < kBurstBytes; ++k) same = at[k] == pattern(i, k);
    right += same ? 1 : 0;
  }
  const uint64_t via_ring = node.wire->counters().ring_received;
  if (::write(pipe_fd, &right, sizeof(right)) != sizeof(right)) ::_exit(5);
  if (::write(pipe_fd, &via_ring, sizeof(via_ring)) != sizeof(via_ring)) ::_exit(6);
  ::_exit(0);
}

template <typename T>
testing::AssertionResult read_from(int fd, T& value) {
  pollfd entry{fd, POLLIN, 0};
  if (::poll(&entry, 1, 10000) != 1) return testing::AssertionFailure() << "the child is silent";
  if (::read(fd, &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) {
    return testing::AssertionFailure() << "short read from the child";
  }
  return testing::AssertionSuccess();
}

// A child process of the test: killed and reaped on the way out unless reaped before.
struct Child {
  pid_t pid = -1;
  int pipe = -1;
  ~Child() {
    if (pipe >= 0) ::close(pipe);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

TEST(ShmDatagrams, AStoppedReceiverHoldsSendsBackAndLosesNone) {
  if (const char* role = std::getenv(kRoleVariable); role != nullptr) {
    run_receiver(std::atoi(std::getenv(kPipeVariable)));
  }
  Child receiver;
  ASSERT_NO_FATAL_FAILURE(test::start_child_test(
      "ShmDatagrams.AStoppedReceiverHoldsSendsBackAndLosesNone", kRoleVariable, "receiver",
      kPipeVariable, &receiver.pid, &receiver.pipe));
  const pid_t pid = receiver.pid;
  ReceiverInfo info;
  ASSERT_TRUE(read_from(receiver.pipe, info));

  Node node;
  ASSERT_TRUE(node.open(kBurst + 8).is_ok());
  auto handle = node.pd->create_address_handle(loopback(info.port)).value();
  ASSERT_TRUE(node.send(*handle, info.qp_number, 0, 8).is_ok());
  ASSERT_TRUE(complete(*node.send_cq, 1));
  ASSERT_TRUE(eventually([&] { return node.wire->counters().channels_opened == 1; }));

  // A stopped receiver drains nothing: a 256 KiB ring takes a few hundred of these, and the
  // rest wait in the send queue instead of being dropped.
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  // kill() only queues the signal: wait until the receiver really is stopped.
  siginfo_t stopped{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &stopped, WSTOPPED | WNOWAIT) < 0 &&
         errno == EINTR) {
  }
  for (uint32_t i = 1; i <= kBurst; ++i) {
    ASSERT_TRUE(node.send(*handle, info.qp_number, i, kBurstBytes, i).is_ok());
  }
  std::vector<Completion> sent;
  EXPECT_FALSE(complete(*node.send_cq, kBurst, &sent, 500ms))
      << "every send completed while the receiver was stopped; through the ring: "
      << node.wire->counters().ring_sends
      << ", closed for bad entries: " << node.wire->counters().malformed;
  EXPECT_GT(sent.size(), 0u);
  EXPECT_LT(sent.size(), kBurst);
  ASSERT_EQ(::kill(pid, SIGCONT), 0);
  ASSERT_TRUE(complete(*node.send_cq, kBurst - static_cast<uint32_t>(sent.size())));

  uint32_t right = 0;
  uint64_t via_ring = 0;
  ASSERT_TRUE(read_from(receiver.pipe, right));
  ASSERT_TRUE(read_from(receiver.pipe, via_ring));
  EXPECT_EQ(right, kBurst) << "datagrams lost or damaged";
  EXPECT_GE(via_ring, kBurst) << "the burst did not go through the ring";
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  receiver.pid = -1;  // reaped
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "receiver status " << status;
}

// ---- Multicast between processes ----

constexpr uint32_t kPhase = 50;

// A member: joins `group`, reports, then reports each phase of kPhase datagrams it received.
[[noreturn]] void run_member(int pipe_fd, const std::string& group) {
  Node node;
  if (!node.open(2 * kPhase + 8).is_ok() || !node.post_receives(2 * kPhase).is_ok()) ::_exit(2);
  auto endpoint = node.provider->create_datagram_endpoint();
  const auto address = SocketAddress::parse(group);
  if (!endpoint.is_ok() || !address.is_ok()) ::_exit(3);
  auto joined = endpoint.value()->join_multicast(node.qp, address.value()).wait(kBound);
  if (!joined.is_ok()) {
    std::fprintf(stderr, "member: %s\n", joined.status().to_string().c_str());
    ::_exit(4);
  }
  const uint32_t ready = 1;
  if (::write(pipe_fd, &ready, sizeof(ready)) != sizeof(ready)) ::_exit(5);
  for (uint32_t phase = 0; phase < 2; ++phase) {
    std::vector<Completion> received;
    if (!complete(*node.receive_cq, kPhase, &received)) ::_exit(6);
    uint32_t right = 0;
    for (uint32_t i = 0; i < kPhase; ++i) {
      const Completion& c = received[i];
      const std::byte* at = node.buffer.data() + c.wr_id * kSlot;
      bool same = c.length == 100;
      for (uint32_t k = 0; same && k < 100; ++k) same = at[k] == pattern(phase * kPhase + i, k);
      right += same ? 1 : 0;
    }
    if (::write(pipe_fd, &right, sizeof(right)) != sizeof(right)) ::_exit(7);
  }
  ::_exit(0);
}

void start_member(const std::string& group, Child& member) {
  ASSERT_NO_FATAL_FAILURE(
      test::start_child_test("ShmDatagrams.MulticastReachesEveryMemberProcessAndOutlivesItsHolder",
                             kRoleVariable, group, kPipeVariable, &member.pid, &member.pipe));
  uint32_t ready = 0;
  ASSERT_TRUE(read_from(member.pipe, ready)) << "the member did not join";
}

bool name_held(const Gid& group) {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_storage address;
  const socklen_t length = unix_address(group_name(group), address);
  const bool held = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), length) == 0;
  ::close(fd);
  return held;
}

TEST(ShmDatagrams, MulticastReachesEveryMemberProcessAndOutlivesItsHolder) {
  if (const char* role = std::getenv(kRoleVariable); role != nullptr) {
    run_member(std::atoi(std::getenv(kPipeVariable)), role);
  }
  // A group of its own per run, so that concurrent runs on the host do not meet.
  const uint32_t salt = static_cast<uint32_t>(::getpid());
  const std::array<uint8_t, 4> group_ip{239, 254, static_cast<uint8_t>(salt >> 8),
                                        static_cast<uint8_t>(salt)};
  const std::string group = std::to_string(group_ip[0]) + "." + std::to_string(group_ip[1]) + "." +
                            std::to_string(group_ip[2]) + "." + std::to_string(group_ip[3]) +
                            ":4791";
  Child holder;
  Child other;
  ASSERT_NO_FATAL_FAILURE(start_member(group, holder));  // the first to join holds the name
  ASSERT_NO_FATAL_FAILURE(start_member(group, other));

  Node node;  // a sender that is no member
  ASSERT_TRUE(node.open(kPhase + 8).is_ok());
  AddressVector to;
  to.destination_gid = soft::ipv4_group_gid(group_ip);
  to.destination_port = 4791;
  auto handle = node.pd->create_address_handle(to).value();
  const auto send_phase = [&](uint32_t phase) {
    for (uint32_t i = 0; i < kPhase; ++i) {
      ASSERT_TRUE(node.send(*handle, kMulticastQpNumber, phase * kPhase + i, 100, i).is_ok());
    }
    ASSERT_TRUE(complete(*node.send_cq, kPhase));
  };
  ASSERT_NO_FATAL_FAILURE(send_phase(0));
  uint32_t right = 0;
  ASSERT_TRUE(read_from(holder.pipe, right));
  EXPECT_EQ(right, kPhase) << "the holder's datagrams";
  ASSERT_TRUE(read_from(other.pipe, right));
  EXPECT_EQ(right, kPhase) << "the other member's datagrams";
  EXPECT_GE(node.wire->counters().ring_sends, 2 * kPhase) << "one ring entry per member";

  // The holder dies; the other member takes the group's name over and keeps receiving.
  ::kill(holder.pid, SIGKILL);
  ::waitpid(holder.pid, nullptr, 0);
  holder.pid = -1;
  ASSERT_TRUE(eventually([&] { return name_held(to.destination_gid); }))
      << "nobody took the group's name over";
  ASSERT_NO_FATAL_FAILURE(send_phase(1));
  ASSERT_TRUE(read_from(other.pipe, right));
  EXPECT_EQ(right, kPhase) << "datagrams after the holder died";
}

// ---- A hostile sender ----

// A channel set up by hand to `port`, so that the test can write what no wire would.
struct HandMadeChannel {
  int socket = -1;
  int doorbell = -1;  // the receiver's
  int writable = -1;  // ours
  std::unique_ptr<Segment> segment;
  RingProducer producer;
  ~HandMadeChannel() {
    for (int fd : {socket, doorbell, writable}) {
      if (fd >= 0) ::close(fd);
    }
  }
};

void open_channel(uint16_t port, HandMadeChannel& channel) {
  channel.socket = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  ASSERT_GE(channel.socket, 0);
  sockaddr_storage address;
  const socklen_t length =
      unix_address(std::string(kDatagramNames) + std::to_string(port), address);
  ASSERT_EQ(::connect(channel.socket, reinterpret_cast<const sockaddr*>(&address), length), 0);
  auto segment = Segment::create(kMinRingBytes);
  ASSERT_TRUE(segment.is_ok());
  channel.segment = std::move(segment).value();
  channel.writable = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  const ChannelHello hello;
  const int fds[] = {channel.segment->fd(), channel.writable};
  ASSERT_TRUE(send_message(channel.socket, std::as_bytes(std::span(&hello, 1)), fds).is_ok());
  pollfd answer{channel.socket, POLLIN, 0};
  ASSERT_EQ(::poll(&answer, 1, 10000), 1) << "no answer to the channel request";
  std::byte buffer[sizeof(ChannelHello)];
  size_t got = 0;
  std::vector<int> received;
  ASSERT_TRUE(receive_message(channel.socket, buffer, &got, received, 1).is_ok());
  ASSERT_EQ(got, sizeof(ChannelHello));
  ASSERT_EQ(received.size(), 1u);
  channel.doorbell = received[0];
  channel.producer = RingProducer(&channel.segment->header().rings[0],
                                  channel.segment->ring_data(0), kMinRingBytes);
}

struct BadEntry {
  const char* what;
  uint8_t type;
  uint8_t flags;
  uint32_t length;
  uint64_t destination;
};

TEST(ShmDatagrams, AnEntryThatDoesNotCheckOutClosesItsChannelOnly) {
  Node node;
  ASSERT_TRUE(node.open(16).is_ok());
  const uint32_t qp_number = node.qp->number();
  const BadEntry cases[] = {
      {"a connection's entry type", static_cast<uint8_t>(EntryType::kSend), 0, 8, qp_number},
      {"a length beyond the MTU", static_cast<uint8_t>(EntryType::kDatagram), 0, 4097, qp_number},
      {"a QP number beyond 24 bits", static_cast<uint8_t>(EntryType::kDatagram), 0, 8,
       uint64_t{1} << 30},
      {"the group flag on a unicast datagram", static_cast<uint8_t>(EntryType::kDatagram),
       entry_flags::kGroup, 24, qp_number},
      {"a group datagram shorter than its GID", static_cast<uint8_t>(EntryType::kDatagram),
       entry_flags::kGroup, 8, kMulticastQpNumber},
      {"an unknown flag", static_cast<uint8_t>(EntryType::kDatagram), entry_flags::kFirst, 8,
       qp_number},
  };
  ASSERT_TRUE(node.post_receives(16).is_ok());
  uint64_t malformed = 0;
  for (const BadEntry& bad : cases) {
    SCOPED_TRACE(bad.what);
    HandMadeChannel channel;
    ASSERT_NO_FATAL_FAILURE(open_channel(node.port(), channel));
    const uint32_t bytes = entry_bytes(bad.length);
    bool impossible = false;
    std::byte* entry = channel.producer.reserve(bytes, &impossible);
    ASSERT_NE(entry, nullptr);
    std::memset(entry + kEntryHeaderBytes, 0x42, bad.length);
    EntryHeader fields;
    fields.size = bytes;
    fields.type = bad.type;
    fields.flags = bad.flags;
    fields.length = bad.length;
    fields.key = kQkey;
    fields.tag = 7;
    fields.address = bad.destination;
    channel.producer.commit(fields);
    const uint64_t one = 1;
    ASSERT_EQ(::write(channel.doorbell, &one, sizeof(one)), 8);
    ASSERT_TRUE(eventually([&] { return node.wire->counters().malformed == malformed + 1; }));
    malformed += 1;
    pollfd closed{channel.socket, POLLIN, 0};
    ASSERT_EQ(::poll(&closed, 1, 10000), 1);
    std::byte byte;
    EXPECT_EQ(::recv(channel.socket, &byte, 1, MSG_DONTWAIT), 0) << "the channel is not closed";
    Completion c;
    EXPECT_EQ(node.receive_cq->poll(std::span(&c, 1)), 0) << "garbage reached the QP";
  }
  // The device still takes datagrams, through its own ring.
  auto handle = node.pd->create_address_handle(loopback(node.port())).value();
  ASSERT_TRUE(node.send(*handle, qp_number, 9, 32, 15).is_ok());
  ASSERT_TRUE(complete(*node.receive_cq, 1));
}

// ---- The group directory ----

TEST(ShmGroupDirectory, ListsMembersOnceAndSkipsHalfClaimedAndDeadEntries) {
  Gid group = soft::ipv4_group_gid({239, 1, 2, 3});
  auto made = GroupDirectory::create(group);
  ASSERT_TRUE(made.is_ok());
  GroupDirectory& directory = *made.value();
  const uint64_t start = directory.generation();
  ASSERT_TRUE(directory.add(5000).is_ok());
  ASSERT_TRUE(directory.add(5000).is_ok());  // once per device
  ASSERT_TRUE(directory.add(5001).is_ok());
  EXPECT_NE(directory.generation(), start);
  std::array<uint16_t, kMaxGroupMembers> ports{};
  ASSERT_EQ(directory.members(ports), 2u);
  EXPECT_EQ(ports[0], 5000);
  EXPECT_EQ(ports[1], 5001);

  // Another process maps the same memfd: a member it sees half-claimed (no port yet) and one
  // of a process that is gone.
  const int copy = ::dup(directory.fd());
  auto mapped = GroupDirectory::attach(copy, group);
  ASSERT_TRUE(mapped.is_ok()) << mapped.status().to_string();
  void* base = ::mmap(nullptr, sizeof(GroupDirectoryHeader), PROT_READ | PROT_WRITE, MAP_SHARED,
                      directory.fd(), 0);
  ASSERT_NE(base, MAP_FAILED);
  auto* header = static_cast<GroupDirectoryHeader*>(base);
  header->members[10].pid.store(::getpid());  // claimed, port not yet written
  const pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  header->members[11].pid.store(gone);
  header->members[11].port.store(6000);
  EXPECT_EQ(mapped.value()->members(ports), 3u) << "the dead member is listed until pruned";
  mapped.value()->prune();
  ASSERT_EQ(mapped.value()->members(ports), 2u);
  mapped.value()->remove(5000);
  ASSERT_EQ(directory.members(ports), 1u);
  EXPECT_EQ(ports[0], 5001);
  ::munmap(base, sizeof(GroupDirectoryHeader));

  // Not this group's directory, or not a directory at all.
  const Gid other = soft::ipv4_group_gid({239, 1, 2, 4});
  EXPECT_EQ(GroupDirectory::attach(::dup(directory.fd()), other).status().code(),
            Errc::kProtocolError);
  const int plain = ::memfd_create("not-a-directory", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(plain, sizeof(GroupDirectoryHeader)), 0);
  EXPECT_EQ(GroupDirectory::attach(plain, group).status().code(), Errc::kProtocolError)
      << "an unsealed memfd could shrink under its readers";
}

}  // namespace
}  // namespace wv::verbs::shm
