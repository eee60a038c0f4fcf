// wv_vm_interop: the tcp provider (iWARP in user space) against kernel SoftiWARP through the
// ibverbs provider, inside the tests/vm guest.
//
//   wv_vm_interop <siw-ip> [siw-device]
//
// Runs two rounds, each with two processes (this binary re-executed as the peer):
//   1. ibverbs on siw listens, tcp connects;
//   2. tcp listens, ibverbs on siw connects.
// In each: private data both ways (the connect and the accept carry each side's buffer address
// and rkey), sends both ways, RDMA writes and RDMA reads both ways, then a clean disconnect that
// the other side sees. Every byte is checked; the exit status is nonzero on any mismatch or
// timeout. Every wait is bounded.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "wv/verbs.h"

extern char** environ;

namespace {

using namespace wv;
using namespace wv::verbs;
using namespace std::chrono_literals;

constexpr auto kBound = 20s;
constexpr size_t kBufferBytes = 64 * 1024;
// Layout of each side's buffer: [0, 16K) receives, [16K, 32K) written by the peer,
// [32K, 48K) read by the peer (filled with this side's pattern), [48K, 64K) local scratch.
constexpr size_t kReceiveAt = 0;
constexpr size_t kWrittenAt = 16 * 1024;
constexpr size_t kReadableAt = 32 * 1024;
constexpr size_t kScratchAt = 48 * 1024;
constexpr uint32_t kChunk = 12 * 1024 + 7;  // not a multiple of anything, spans several FPDUs
constexpr char kMagic[8] = {'w', 'v', '-', 'i', 'o', 'p', '0', '1'};

struct Offer {
  char magic[8];
  uint64_t address;
  uint32_t rkey;
  uint32_t role;  // 1 = ibverbs side, 2 = tcp side
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "wv_vm_interop[%d]: FAILED: %s\n", static_cast<int>(::getpid()),
               what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

template <typename T>
T take(Result<T> result, const std::string& what) {
  if (!result.is_ok()) die(what + ": " + result.status().to_string());
  return std::move(result).value();
}

void check(const Status& status, const std::string& what) {
  if (!status.is_ok()) die(what + ": " + status.to_string());
}
void check(const Result<void>& result, const std::string& what) {
  if (!result.is_ok()) die(what + ": " + result.status().to_string());
}

void fill(std::byte* at, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t x = seed * 0x9E3779B9u + static_cast<uint32_t>(i) * 0x85EBCA6Bu;
    x ^= x >> 15;
    at[i] = static_cast<std::byte>(x * 0x2C1B3C6Du >> 24);
  }
}

void expect_pattern(const std::byte* at, size_t n, uint32_t seed, const std::string& what) {
  std::vector<std::byte> want(n);
  fill(want.data(), n, seed);
  for (size_t i = 0; i < n; ++i) {
    if (at[i] != want[i]) {
      die(what + ": byte " + std::to_string(i) + " of " + std::to_string(n) + " is " +
          std::to_string(static_cast<unsigned>(at[i])) + ", expected " +
          std::to_string(static_cast<unsigned>(want[i])));
    }
  }
}

Completion poll(CompletionQueue& cq, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  Completion c;
  for (;;) {
    const int n = cq.poll(std::span(&c, 1));
    if (n == 1) {
      if (c.status != CompletionStatus::kSuccess) {
        die(what + ": completion " + std::string(to_string(c.status)) + " (wr " +
            std::to_string(c.wr_id) + ", vendor error " + std::to_string(c.vendor_error) + ")");
      }
      return c;
    }
    if (n < 0) die(what + ": CQ overrun: " + cq.status().to_string());
    if (std::chrono::steady_clock::now() > deadline) die(what + ": no completion in time");
    std::this_thread::sleep_for(50us);
  }
}

// One side: a provider, its device, a QP and a 64 KiB buffer with every access.
struct Side {
  std::string provider_name;
  uint32_t role = 0;
  std::shared_ptr<Provider> provider;
  std::shared_ptr<Device> device;
  std::shared_ptr<ProtectionDomain> pd;
  std::shared_ptr<CompletionQueue> send_cq;
  std::shared_ptr<CompletionQueue> receive_cq;
  std::shared_ptr<ConnectQueuePair> qp;
  std::shared_ptr<MemoryRegion> region;
  std::vector<std::byte> storage = std::vector<std::byte>(kBufferBytes + 4096);
  std::byte* buffer = nullptr;
  std::shared_ptr<ConnectEndpoint> endpoint;
  Offer peer{};

  void open(const std::string& name, const std::string& device_name) {
    provider_name = name;
    role = name == "ibverbs" ? 1 : 2;
    provider = take(Provider::open(name), "open provider " + name);
    device = take(provider->open_device(device_name), "open device '" + device_name + "'");
    pd = take(device->allocate_protection_domain(), "protection domain");
    send_cq = take(device->create_completion_queue(64), "send CQ");
    receive_cq = take(device->create_completion_queue(64), "receive CQ");
    QueuePairOptions options;
    options.send_cq = send_cq;
    options.receive_cq = receive_cq;
    options.send_depth = 32;
    options.receive_depth = 32;
    options.send_sge = 1;
    options.receive_sge = 1;
    qp = take(pd->create_connect_queue_pair(options), "QP");
    auto base = reinterpret_cast<uintptr_t>(storage.data());
    buffer = reinterpret_cast<std::byte*>((base + 4095) & ~uintptr_t{4095});
    std::memset(buffer, 0, kBufferBytes);
    fill(buffer + kReadableAt, kChunk, 100 + role);
    // iWARP read sinks need remote write access: every access for the whole buffer.
    region =
        take(pd->register_memory(buffer, kBufferBytes,
                                 Access::kLocalWrite | Access::kRemoteRead | Access::kRemoteWrite),
             "register 64 KiB");
    // Receives before the connection: the first message may arrive at once.
    for (uint64_t i = 0; i < 4; ++i) {
      const Sge sge = region->sge(buffer + kReceiveAt + i * 4096, 4096);
      check(qp->post_receive(i, std::span(&sge, 1)), "post receive");
    }
  }

  std::vector<std::byte> offer_bytes(const char* note) const {
    Offer offer{};
    std::memcpy(offer.magic, kMagic, sizeof(kMagic));
    offer.address = reinterpret_cast<uint64_t>(buffer);
    offer.rkey = region->remote_key();
    offer.role = role;
    std::vector<std::byte> bytes(sizeof(offer));
    std::memcpy(bytes.data(), &offer, sizeof(offer));
    const size_t n = std::strlen(note);
    const auto* text = reinterpret_cast<const std::byte*>(note);
    bytes.insert(bytes.end(), text, text + n);
    return bytes;
  }

  void take_offer(const std::vector<std::byte>& bytes, const char* note, const std::string& what) {
    const size_t n = std::strlen(note);
    if (bytes.size() != sizeof(Offer) + n) {
      die(what + ": private data of " + std::to_string(bytes.size()) + " bytes, expected " +
          std::to_string(sizeof(Offer) + n));
    }
    std::memcpy(&peer, bytes.data(), sizeof(Offer));
    if (std::memcmp(peer.magic, kMagic, sizeof(kMagic)) != 0) die(what + ": bad magic");
    if (peer.role == role || (peer.role != 1 && peer.role != 2)) die(what + ": bad role");
    if (std::memcmp(bytes.data() + sizeof(Offer), note, n) != 0) die(what + ": note differs");
  }

  RemoteAddress remote(size_t offset) const { return {peer.address + offset, peer.rkey}; }

  void send_message(uint64_t wr_id, uint32_t seed, uint32_t length) {
    fill(buffer + kScratchAt, length, seed);
    const Sge sge = region->sge(buffer + kScratchAt, length);
    check(qp->send(wr_id, std::span(&sge, 1), SendFlags::kSignaled), "send");
    const Completion c = poll(*send_cq, provider_name + " send " + std::to_string(wr_id));
    if (c.wr_id != wr_id) die("send completion for wr " + std::to_string(c.wr_id));
  }

  void receive_message(uint32_t seed, uint32_t length, uint64_t& next_receive) {
    const Completion c = poll(*receive_cq, provider_name + " receive");
    if (c.length != length) {
      die(provider_name + " received " + std::to_string(c.length) + " bytes, expected " +
          std::to_string(length));
    }
    const size_t slot = c.wr_id % 4;
    expect_pattern(buffer + kReceiveAt + slot * 4096, length, seed,
                   provider_name + " received message " + std::to_string(seed));
    const Sge sge = region->sge(buffer + kReceiveAt + slot * 4096, 4096);
    check(qp->post_receive(next_receive++, std::span(&sge, 1)), "repost receive");
  }
};

// The exchange after the connection, the same on both sides except who goes first: the active
// side (`first`) always sends before it waits, as iWARP wants the initiator to speak first.
void exchange(Side& side, bool first) {
  uint64_t next_receive = 4;
  const uint32_t me = side.role;
  const uint32_t other = me == 1 ? 2 : 1;
  auto step = [&](int round, auto&& mine) {
    if (first) {
      mine();
      side.send_message(1000 + round, 10 * round + me, 64 + round);
      side.receive_message(10 * round + other, 64 + round, next_receive);
    } else {
      side.receive_message(10 * round + other, 64 + round, next_receive);
      mine();
      side.send_message(1000 + round, 10 * round + me, 64 + round);
    }
  };
  // 1. Sends with data both ways (step's own messages), a 3000-byte one first.
  step(1, [&] {});
  // 2. RDMA write into the peer's buffer, then a send announcing it; the peer checks.
  step(2, [&] {
    fill(side.buffer + kScratchAt, kChunk, 200 + me);
    const Sge sge = side.region->sge(side.buffer + kScratchAt, kChunk);
    check(side.qp->rdma_write(2000, std::span(&sge, 1), side.remote(kWrittenAt),
                              SendFlags::kSignaled),
          "rdma write");
    poll(*side.send_cq, side.provider_name + " rdma write");
  });
  expect_pattern(side.buffer + kWrittenAt, kChunk, 200 + other,
                 side.provider_name + ": the peer's RDMA write");
  // 3. RDMA read of the peer's readable part into local scratch.
  step(3, [&] {
    std::memset(side.buffer + kScratchAt, 0, kChunk);
    const Sge sge = side.region->sge(side.buffer + kScratchAt, kChunk);
    check(side.qp->rdma_read(3000, std::span(&sge, 1), side.remote(kReadableAt),
                             SendFlags::kSignaled),
          "rdma read");
    const Completion c = poll(*side.send_cq, side.provider_name + " rdma read");
    if (c.length != kChunk) die("rdma read completed " + std::to_string(c.length) + " bytes");
    expect_pattern(side.buffer + kScratchAt, kChunk, 100 + other,
                   side.provider_name + ": RDMA read of the peer's buffer");
  });
  std::printf("  %s: sends, RDMA write and RDMA read both ways checked\n",
              side.provider_name.c_str());
}

int run_listener(const std::string& provider, const std::string& device, const std::string& ip,
                 const std::string& peer_provider, const std::string& peer_device) {
  Side side;
  side.open(provider, provider == "ibverbs" ? device : "");
  auto listener = take(side.provider->create_connect_endpoint(), "listener");
  check(listener->bind(take(SocketAddress::parse(ip + ":0"), "address")), "bind");
  check(listener->listen(4), "listen");
  const uint16_t port = listener->query().local.port();
  std::printf("round: %s listens on %s:%u, %s connects\n", provider.c_str(), ip.c_str(), port,
              peer_provider.c_str());
  std::fflush(stdout);

  std::string self = "/proc/self/exe";
  std::vector<std::string> args = {"wv_vm_interop", "--connect", peer_provider,
                                   peer_device,     ip,          std::to_string(port)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = -1;
  if (posix_spawn(&child, self.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
    die("posix_spawn");
  }

  auto request = listener->get_request();
  side.endpoint = take(request.wait(kBound), "incoming request");
  side.take_offer(side.endpoint->query().peer_parameters.private_data, "hello from the client",
                  provider + " request's private data");
  ConnectParameters accept;
  accept.private_data = side.offer_bytes("welcome, says the server");
  check(side.endpoint->accept(side.qp, accept).wait(kBound), "accept");
  auto ended = side.endpoint->notify_disconnect();
  exchange(side, false);
  check(ended.wait(kBound), "the client's disconnect");
  std::printf("  %s: the peer's disconnect arrived\n", provider.c_str());
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(child, SIGKILL);
      die("the connecting process did not exit");
    }
    std::this_thread::sleep_for(10ms);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("the connecting process failed");
  return 0;
}

int run_connector(const std::string& provider, const std::string& device, const std::string& ip,
                  uint16_t port) {
  Side side;
  side.open(provider, provider == "ibverbs" ? device : "");
  side.endpoint = take(side.provider->create_connect_endpoint(), "endpoint");
  const SocketAddress where = take(SocketAddress::parse(ip + ":" + std::to_string(port)), "addr");
  check(side.endpoint->resolve_address(where, kBound).wait(kBound), "resolve address");
  check(side.endpoint->resolve_route(kBound).wait(kBound), "resolve route");
  ConnectParameters parameters;
  parameters.private_data = side.offer_bytes("hello from the client");
  const ConnectParameters accepted =
      take(side.endpoint->connect(side.qp, parameters).wait(kBound), "connect");
  side.take_offer(accepted.private_data, "welcome, says the server",
                  provider + " accept's private data");
  exchange(side, true);
  check(side.endpoint->disconnect().wait(kBound), "disconnect");
  std::printf("  %s: disconnected\n", provider.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc == 6 && std::string(argv[1]) == "--connect") {
    return run_connector(argv[2], argv[3], argv[4], static_cast<uint16_t>(std::atoi(argv[5])));
  }
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: wv_vm_interop <siw-ip> [siw-device]\n");
    return 2;
  }
  const std::string ip = argv[1];
  const std::string device = argc == 3 ? argv[2] : "siw0";
  run_listener("ibverbs", device, ip, "tcp", "-");
  run_listener("tcp", "-", ip, "ibverbs", device);
  std::printf("interop: tcp provider <-> ibverbs on %s: all checks passed\n", device.c_str());
  return 0;
}
