// The shm provider against what the conformance suite cannot do through the API:
// - a hostile peer that completes the handshake by hand and then writes garbage into the shared
//   ring must give an error completion and a QP error (with a kQpFatal event), never a crash;
// - a peer killed with SIGKILL leaves nothing behind: no /dev/shm entry, no mapping or
//   descriptor of the connection's segment once the surviving side let go of its objects;
// - the device says whether RDMA read/write are a single copy (what wv_info prints).
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "child_test_process.h"
#include "shm_cma.h"
#include "shm_protocol.h"
#include "shm_ring.h"
#include "soft_side.h"
#include "wv/verbs.h"

namespace wv::verbs::shm {
namespace {

using namespace std::chrono_literals;
using test::kBound;
using test::poll_one;
using test::Side;
using test::wait_state;

void open_side(Side& side) {
  test::open_side("shm", side);
}

// A client that speaks the handshake by hand and then owns the ring it sends on.
class RawClient {
 public:
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
    if (doorbell_ >= 0) ::close(doorbell_);
    if (peer_doorbell_ >= 0) ::close(peer_doorbell_);
  }
  void connect(uint16_t port) {
    auto segment = Segment::create(kMinRingBytes);
    ASSERT_TRUE(segment.is_ok());
    segment_ = std::move(segment).value();
    doorbell_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sockaddr_storage name;
    const socklen_t length =
        unix_address(socket_name(kShmNames, SocketAddress::ipv4_loopback(port)), name);
    ASSERT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&name), length), 0)
        << std::strerror(errno);
    Handshake request;
    request.qp_number = 0x123;
    request.inbound_read_depth = 4;
    request.outbound_read_depth = 4;
    request.source = SocketAddress::ipv4_loopback(40000);
    request.destination = SocketAddress::ipv4_loopback(port);
    std::vector<std::byte> bytes;
    ASSERT_TRUE(encode_handshake(request, bytes).is_ok());
    const int fds[] = {segment_->fd(), doorbell_};
    ASSERT_TRUE(send_message(fd_, bytes, fds).is_ok());
  }
  void await_accept() {
    std::array<std::byte, 1024> buffer;
    std::vector<int> fds;
    size_t got = 0;
    // The socket blocks (with a timeout), so one call waits for the reply.
    pollfd entry{fd_, POLLIN, 0};
    ASSERT_EQ(::poll(&entry, 1, 5000), 1);
    ASSERT_TRUE(receive_message(fd_, buffer, &got, fds, 2).is_ok());
    ASSERT_GT(got, 0u);
    auto reply = decode_handshake({buffer.data(), got});
    ASSERT_TRUE(reply.is_ok());
    ASSERT_EQ(reply->type, HandshakeType::kAccept);
    // The doorbell, and the key mirror where CMA is on (this client reads nothing).
    ASSERT_EQ(fds.size(), reply->key_mirror ? 2u : 1u);
    peer_doorbell_ = fds[0];
    if (fds.size() == 2) ::close(fds[1]);
  }
  // Writes `bytes` at the ring's start, stamps them as the entry at position 0 (so the peer
  // takes them for a published entry), then rings the doorbell.
  void write_raw(std::span<const std::byte> bytes) {
    std::memcpy(segment_->ring_data(0), bytes.data(), bytes.size());
    const uint64_t stamp = segment_->header().rings[0].salt;
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(segment_->ring_data(0)))
        .store(stamp, std::memory_order_seq_cst);
    const uint64_t one = 1;
    ASSERT_EQ(::write(peer_doorbell_, &one, sizeof(one)), 8);
  }

 private:
  std::unique_ptr<Segment> segment_;
  int fd_ = -1;
  int doorbell_ = -1;
  int peer_doorbell_ = -1;
};

struct HostileCase {
  const char* name;
  std::vector<std::byte> bytes;
};

std::vector<std::byte> hostile_entry(uint32_t size, uint8_t type, uint8_t flags, uint32_t length,
                                     uint64_t address = 0) {
  EntryHeader header{};
  header.size = size;
  header.type = type;
  header.flags = flags;
  header.length = length;
  header.address = address;
  // The header only: what follows it in the ring is whatever was there.
  std::vector<std::byte> bytes(sizeof(header));
  std::memcpy(bytes.data(), &header, sizeof(header));
  return bytes;
}

class ShmHostilePeer : public testing::TestWithParam<int> {};

TEST_P(ShmHostilePeer, GarbageInTheRingFailsTheQpNotTheProcess) {
  const std::vector<HostileCase> cases = {
      {"entry size not whole cache lines", hostile_entry(72, 2, 3, 0)},
      {"entry longer than the ring", hostile_entry(1 << 20, 2, 3, 0)},
      {"pad across the ring's end", hostile_entry(1 << 20, kPadType, 0, 0)},
      {"payload longer than its entry", hostile_entry(64, 2, 3, 100)},
      {"unknown entry type", hostile_entry(64, 99, 0, 0)},
      {"send fragment that starts mid-message", hostile_entry(64, 2, 2, 8, 1000)},
      {"response nobody asked for", hostile_entry(64, 9, 0, 0)},
      {"pulled write with bad iovecs", hostile_entry(64, 4, 0, 8)},
  };
  const HostileCase& hostile = cases[static_cast<size_t>(GetParam())];
  SCOPED_TRACE(hostile.name);
  Side server;
  ASSERT_NO_FATAL_FAILURE(open_side(server));
  auto listener = server.provider->create_connect_endpoint().value();
  ASSERT_TRUE(listener->bind(SocketAddress::ipv4_loopback(0)).is_ok());
  ASSERT_TRUE(listener->listen(4).is_ok());
  const uint16_t port = listener->query().local.port();

  RawClient client;
  ASSERT_NO_FATAL_FAILURE(client.connect(port));
  auto request = listener->get_request().wait(kBound);
  ASSERT_TRUE(request.is_ok()) << request.status().to_string();
  std::vector<std::byte> memory(4096);
  auto region = server.pd->register_memory(memory.data(), memory.size(), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok());
  const Sge receive = region.value()->sge(memory.data(), 64);
  ASSERT_TRUE(server.qp->post_receive(7, std::span(&receive, 1)).is_ok());
  ASSERT_TRUE(request.value()->accept(server.qp, {}).wait(kBound).is_ok());
  ASSERT_NO_FATAL_FAILURE(client.await_accept());

  client.write_raw(hostile.bytes);
  Completion c;
  ASSERT_TRUE(poll_one(*server.cq, c)) << "the posted receive completes";
  EXPECT_EQ(c.wr_id, 7u);
  EXPECT_NE(c.status, CompletionStatus::kSuccess);
  EXPECT_TRUE(wait_state(*server.qp, QpState::kError));
  auto event = server.device->next_event().wait(kBound);
  ASSERT_TRUE(event.is_ok()) << event.status().to_string();
  EXPECT_EQ(event->type, EventType::kQpFatal);
  EXPECT_NE(event->detail.find("malformed"), std::string::npos) << event->detail;
}

INSTANTIATE_TEST_SUITE_P(Cases, ShmHostilePeer, testing::Range(0, 8));

// ---- Cleanup after SIGKILL ----------------------------------------------------------------

constexpr const char* kRoleVariable = "SHM_PROVIDER_TEST_ROLE";
constexpr const char* kPipeVariable = "SHM_PROVIDER_TEST_PIPE";

std::set<std::string> dev_shm() {
  std::set<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", error)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

// Mappings and descriptors of memfds named `name` in this process: shm segments
// ("wv-shm-connection"), or regions a peer allocated and this process mapped ("wv-region").
int memfds_in_this_process(const std::string& name = "wv-shm-connection") {
  int count = 0;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find(name) != std::string::npos) ++count;
  }
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
    std::error_code ignored;
    const auto target = std::filesystem::read_symlink(entry.path(), ignored).string();
    if (target.find(name) != std::string::npos) ++count;
  }
  return count;
}

struct VictimInfo {
  uint16_t port;
  RemoteAddress remote;     // 1 MiB of registered memory, 0x5a
  RemoteAddress allocated;  // 1 MiB from allocate_memory, 0x3c
};

// The victim: listens, reports its port and a registered buffer, serves until killed.
[[noreturn]] void run_victim(int pipe_fd) {
  ::alarm(60);
  Side side;
  open_side(side);
  if (testing::Test::HasFailure()) ::_exit(1);
  auto listener = side.provider->create_connect_endpoint().value();
  if (!listener->bind(SocketAddress::ipv4_loopback(0)).is_ok()) ::_exit(2);
  if (!listener->listen(4).is_ok()) ::_exit(3);
  static std::vector<std::byte> memory(1 << 20, std::byte{0x5a});
  auto region =
      side.pd->register_memory(memory.data(), memory.size(),
                               Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite);
  if (!region.is_ok()) ::_exit(4);
  auto allocated = side.pd->allocate_memory(
      1 << 20, Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite);
  if (!allocated.is_ok()) ::_exit(4);
  std::memset(allocated.value()->address(), 0x3c, 1 << 20);
  const VictimInfo info{listener->query().local.port(), region.value()->remote(memory.data()),
                        allocated.value()->remote(allocated.value()->address())};
  if (::write(pipe_fd, &info, sizeof(info)) != sizeof(info)) ::_exit(5);
  auto request = listener->get_request().wait(kBound);
  if (!request.is_ok()) ::_exit(6);
  if (!request.value()->accept(side.qp, {}).wait(kBound).is_ok()) ::_exit(7);
  for (;;) ::pause();
}

// Starts this test's binary as the victim (run_victim) and reads what it reports.
void start_victim(const std::string& test, pid_t* pid, VictimInfo* info) {
  int report = -1;
  ASSERT_NO_FATAL_FAILURE(
      test::start_child_test(test, kRoleVariable, "victim", kPipeVariable, pid, &report));
  pollfd entry{report, POLLIN, 0};
  ASSERT_EQ(::poll(&entry, 1, 10000), 1) << "the victim did not report";
  ASSERT_EQ(::read(report, info, sizeof(*info)), static_cast<ssize_t>(sizeof(*info)));
  ::close(report);
}

// Connects `side`'s QP to the victim listening on `port`.
void connect_to_victim(Side& side, uint16_t port, std::shared_ptr<ConnectEndpoint>& endpoint) {
  endpoint = side.provider->create_connect_endpoint().value();
  ASSERT_TRUE(
      endpoint->resolve_address(SocketAddress::ipv4_loopback(port), kBound).wait(kBound).is_ok());
  ASSERT_TRUE(endpoint->resolve_route(kBound).wait(kBound).is_ok());
  ASSERT_TRUE(endpoint->connect(side.qp, {}).wait(kBound).is_ok());
}

// Kills and reaps the victim when the test ends, however it ends.
struct Reaper {
  pid_t pid = -1;
  ~Reaper() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

TEST(ShmCleanup, PeerKilledLeavesNoSharedMemoryBehind) {
  if (const char* role = std::getenv(kRoleVariable); role != nullptr) {
    run_victim(std::atoi(std::getenv(kPipeVariable)));
  }
  const std::set<std::string> before = dev_shm();
  pid_t pid = -1;
  VictimInfo info{};
  ASSERT_NO_FATAL_FAILURE(
      start_victim("ShmCleanup.PeerKilledLeavesNoSharedMemoryBehind", &pid, &info));
  {
    Side side;
    ASSERT_NO_FATAL_FAILURE(open_side(side));
    std::shared_ptr<ConnectEndpoint> endpoint;
    ASSERT_NO_FATAL_FAILURE(connect_to_victim(side, info.port, endpoint));
    EXPECT_GT(memfds_in_this_process(), 0) << "the connection's segment is mapped";
    std::vector<std::byte> local(1 << 20);
    auto region = side.pd->register_memory(local.data(), local.size(), Access::kLocalWrite);
    ASSERT_TRUE(region.is_ok());
    const Sge sge = region.value()->sge(local.data(), 1 << 20);
    ASSERT_TRUE(
        side.qp->rdma_read(1, std::span(&sge, 1), info.remote, SendFlags::kSignaled).is_ok());
    Completion c;
    ASSERT_TRUE(poll_one(*side.cq, c));
    EXPECT_EQ(c.status, CompletionStatus::kSuccess);
    EXPECT_EQ(local[12345], std::byte{0x5a});
    // The victim's allocated region, which this side maps and reads itself.
    ASSERT_TRUE(
        side.qp->rdma_read(2, std::span(&sge, 1), info.allocated, SendFlags::kSignaled).is_ok());
    ASSERT_TRUE(poll_one(*side.cq, c));
    EXPECT_EQ(c.status, CompletionStatus::kSuccess);
    EXPECT_EQ(local[12345], std::byte{0x3c});
    const bool cma =
        has(side.device->attributes().limitations, Limitation::kReadsServedWithoutTarget);
    EXPECT_EQ(memfds_in_this_process("wv-region") > 0, cma) << "mapped where CMA works";

    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status));
    EXPECT_TRUE(wait_state(*side.qp, QpState::kError)) << "the peer's death fails the QP";
    EXPECT_TRUE(endpoint->notify_disconnect().wait(kBound).is_ok());
  }
  // The provider's objects are gone: nothing of the connection (nor of the victim's memory) is
  // left in this process, and
  // nothing was ever created in /dev/shm (the kernel freed the victim's side with it).
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (memfds_in_this_process() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(memfds_in_this_process(), 0);
  EXPECT_EQ(memfds_in_this_process("wv-region"), 0) << "a mapping of the dead peer's region";
  EXPECT_EQ(dev_shm(), before) << "an entry appeared in (or vanished from) /dev/shm";
}

// Stops `pid` and waits until every thread of it is stopped (kill() returns before they are).
bool stop_process(pid_t pid) {
  if (::kill(pid, SIGSTOP) != 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    std::error_code error;
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const size_t end = line.rfind(')');
      if (end == std::string::npos || end + 2 >= line.size() || line[end + 2] != 'T') all = false;
    }
    if (all && !error) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

// A victim connected to `side`, for tests that stop it (the child runs the same test as the
// victim). Skipped where CMA is off: then every read needs the target.
class ShmOneSidedReads : public testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv(kRoleVariable) != nullptr) run_victim(std::atoi(std::getenv(kPipeVariable)));
    ASSERT_NO_FATAL_FAILURE(open_side(side));
    if (!has(side.device->attributes().limitations, Limitation::kReadsServedWithoutTarget)) {
      GTEST_SKIP() << "CMA is off here (shm_cma=off or ptrace restricted): reads need the target";
    }
    const testing::TestInfo* test = testing::UnitTest::GetInstance()->current_test_info();
    ASSERT_NO_FATAL_FAILURE(start_victim(std::string(test->test_suite_name()) + "." + test->name(),
                                         &reaper.pid, &info));
    ASSERT_NO_FATAL_FAILURE(connect_to_victim(side, info.port, endpoint));
  }

  Side side;
  VictimInfo info{};
  Reaper reaper;
  std::shared_ptr<ConnectEndpoint> endpoint;
};

// One-sided reads (shm_connection.h): with CMA, a read the target's published keys grant is
// copied by the reader, so it completes while the target process is stopped; what the keys do
// not grant, and a read behind a write, wait for the target, which decides.
TEST_F(ShmOneSidedReads, ServedWhileTheTargetIsStoppedOnlyWhenTheKeysGrantThem) {
  std::vector<std::byte> local(1 << 20);
  auto region = side.pd->register_memory(local.data(), local.size(), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok());
  const Sge whole = region.value()->sge(local.data(), 1 << 20);
  const Sge first = region.value()->sge(local.data(), 64 * 1024);
  const auto none_within = [&](std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    Completion c;
    while (std::chrono::steady_clock::now() < deadline) {
      if (side.cq->poll(std::span(&c, 1)) != 0) return false;
    }
    return true;
  };

  ASSERT_TRUE(stop_process(reaper.pid));
  // Granted: served by this process alone.
  ASSERT_TRUE(
      side.qp->rdma_read(1, std::span(&whole, 1), info.remote, SendFlags::kSignaled).is_ok());
  Completion c;
  ASSERT_TRUE(poll_one(*side.cq, c)) << "a granted read needs no target";
  EXPECT_EQ(c.status, CompletionStatus::kSuccess);
  EXPECT_EQ(local[0], std::byte{0x5a});
  EXPECT_EQ(local[(1 << 20) - 1], std::byte{0x5a});
  // Beyond the region: not granted, so it goes to the target, which is stopped.
  const RemoteAddress past{info.remote.address + (1 << 20) - 1024, info.remote.rkey};
  ASSERT_TRUE(side.qp->rdma_read(2, std::span(&first, 1), past, SendFlags::kSignaled).is_ok());
  EXPECT_TRUE(none_within(std::chrono::milliseconds(200)))
      << "a read beyond the key's bounds completed without the target";
  ASSERT_EQ(::kill(reaper.pid, SIGCONT), 0);
  ASSERT_TRUE(poll_one(*side.cq, c));
  EXPECT_EQ(c.wr_id, 2u);
  EXPECT_NE(c.status, CompletionStatus::kSuccess) << "the target refuses it";
}

TEST_F(ShmOneSidedReads, AReadBehindAWriteWaitsForTheTargetAndSeesTheWrite) {
  std::vector<std::byte> local(128 * 1024, std::byte{0x11});
  auto region = side.pd->register_memory(local.data(), local.size(), Access::kLocalWrite);
  ASSERT_TRUE(region.is_ok());
  const Sge source = region.value()->sge(local.data(), 4096);  // through the ring
  const Sge sink = region.value()->sge(local.data() + 64 * 1024, 64 * 1024);

  ASSERT_TRUE(stop_process(reaper.pid));
  ASSERT_TRUE(
      side.qp->rdma_write(1, std::span(&source, 1), info.remote, SendFlags::kSignaled).is_ok());
  ASSERT_TRUE(
      side.qp->rdma_read(2, std::span(&sink, 1), info.remote, SendFlags::kSignaled).is_ok());
  Completion c;
  ASSERT_TRUE(poll_one(*side.cq, c)) << "a write completes once in the ring";
  EXPECT_EQ(c.wr_id, 1u);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  bool completed = false;
  while (std::chrono::steady_clock::now() < deadline && !completed) {
    completed = side.cq->poll(std::span(&c, 1)) != 0;
  }
  EXPECT_FALSE(completed) << "the read overtook the write the stopped target has not taken";
  ASSERT_EQ(::kill(reaper.pid, SIGCONT), 0);
  if (!completed) {
    ASSERT_TRUE(poll_one(*side.cq, c));
  }
  EXPECT_EQ(c.wr_id, 2u);
  EXPECT_EQ(c.status, CompletionStatus::kSuccess);
  EXPECT_EQ(local[64 * 1024], std::byte{0x11}) << "the read sees the write";
  EXPECT_EQ(local[64 * 1024 + 4095], std::byte{0x11});
  EXPECT_EQ(local[64 * 1024 + 4096], std::byte{0x5a});
}

// A region the target allocated (allocate_memory) is mapped by this side, which writes and reads
// it itself: 8 B to 1 MiB complete while the target is stopped, and a read sees the writes. What
// its key does not grant still waits for the target, which refuses it.
TEST_F(ShmOneSidedReads, WritesAndReadsOfAllocatedMemoryNeedNoTarget) {
  std::shared_ptr<MemoryRegion> local;
  auto allocated = side.pd->allocate_memory(2 << 20, Access::kLocalWrite);
  ASSERT_TRUE(allocated.is_ok());
  local = allocated.value();
  auto* bytes = static_cast<std::byte*>(local->address());
  std::memset(bytes, 0x77, 1 << 20);
  ASSERT_TRUE(stop_process(reaper.pid));
  uint64_t next = 1;
  for (const uint32_t size : {8u, 4096u, 256u * 1024, 1u << 20}) {
    SCOPED_TRACE("bytes " + std::to_string(size));
    bytes[0] = static_cast<std::byte>(size);
    const Sge out = local->sge(bytes, size);
    ASSERT_TRUE(
        side.qp->rdma_write(next++, std::span(&out, 1), info.allocated, SendFlags::kSignaled)
            .is_ok());
    const Sge in = local->sge(bytes + (1 << 20), size);
    ASSERT_TRUE(side.qp->rdma_read(next++, std::span(&in, 1), info.allocated, SendFlags::kSignaled)
                    .is_ok());
    for (int i = 0; i < 2; ++i) {
      Completion c;
      ASSERT_TRUE(poll_one(*side.cq, c)) << "the stopped target's allocated memory needs it";
      EXPECT_EQ(c.status, CompletionStatus::kSuccess);
    }
    EXPECT_EQ(std::memcmp(bytes + (1 << 20), bytes, size), 0) << "the read sees the write";
  }
  // Past the end: the target decides, once it runs.
  const RemoteAddress past{info.allocated.address + (1 << 20) - 8, info.allocated.rkey};
  const Sge out = local->sge(bytes, 64);
  ASSERT_TRUE(side.qp->rdma_write(next, std::span(&out, 1), past, SendFlags::kSignaled).is_ok());
  const Sge note = local->sge(bytes, 8);
  ASSERT_TRUE(
      side.qp->rdma_read(next + 1, std::span(&note, 1), info.allocated, SendFlags::kSignaled)
          .is_ok());
  Completion c;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  bool completed = false;
  while (std::chrono::steady_clock::now() < deadline && !completed) {
    completed = side.cq->poll(std::span(&c, 1)) != 0 && c.wr_id == next + 1;
  }
  EXPECT_FALSE(completed) << "a read overtook a write the stopped target has not refused yet";
  ASSERT_EQ(::kill(reaper.pid, SIGCONT), 0);
  EXPECT_TRUE(wait_state(*side.qp, QpState::kError)) << "the target refuses the write";
}

TEST(ShmDevice, SaysWhetherReadAndWriteAreOneCopy) {
  Side side;
  ASSERT_NO_FATAL_FAILURE(open_side(side));
  const std::string firmware = side.device->attributes().firmware_version;
  std::printf("[ info ] %s\n", firmware.c_str());
  EXPECT_NE(firmware.find("RDMA read/write:"), std::string::npos) << firmware;
  const char* setting = std::getenv("WV_SHM_CMA");
  if (setting != nullptr && std::string(setting) == "off") {
    EXPECT_NE(firmware.find("shm_cma=off"), std::string::npos) << firmware;
  }
  EXPECT_EQ(side.device->query_port(1).value().transport, Transport::kSoftware);
}

// The single copy pays only where the ring's two copies cannot run side by side: between
// processes that have one CPU between them. Elsewhere (shm_cma=auto) the ring is the faster path.
TEST(ShmCma, SingleCopyOnlyForProcessesConfinedToOneCpu) {
  EXPECT_TRUE(share_one_cpu({3}, {3}));
  EXPECT_FALSE(share_one_cpu({3}, {4}));
  EXPECT_FALSE(share_one_cpu({0, 1}, {0}));
  EXPECT_FALSE(share_one_cpu({0, 1}, {0, 1}));
  EXPECT_FALSE(share_one_cpu({}, {0})) << "an unknown CPU set is not a shared one";

  // With the real affinity of this process, its own peer: pinned to one CPU it shares that CPU
  // with itself; free to run on two it does not, unless shm_cma=on.
  CmaSupport support;
  support.enabled = true;
  cpu_set_t original;
  ASSERT_EQ(sched_getaffinity(0, sizeof(original), &original), 0);
  if (CPU_COUNT(&original) < 2) GTEST_SKIP() << "needs two CPUs to tell the cases apart";
  EXPECT_FALSE(use_cma_with(support, ::getpid()));
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &original)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  const bool pinned = use_cma_with(support, ::getpid());
  ASSERT_EQ(sched_setaffinity(0, sizeof(original), &original), 0);
  EXPECT_TRUE(pinned);
  support.every_peer = true;
  EXPECT_TRUE(use_cma_with(support, ::getpid()));
  support.enabled = false;
  EXPECT_FALSE(use_cma_with(support, ::getpid())) << "never where the kernel refuses it";
}

}  // namespace
}  // namespace wv::verbs::shm
