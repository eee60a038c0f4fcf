// wv_micro: what single data-path calls cost in one process, on the configured provider
// (WV_PROVIDER): an inline 8-byte send plus polling its completion on a loopback connected pair,
// an 8-byte datagram between two datagram QPs of the device, polling an empty CQ, and
// registering 4 KiB. wv_perf measures between processes; this isolates
// the per-call overhead that those numbers contain.
#include <benchmark/benchmark.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "wv/verbs.h"

namespace {

using namespace wv::verbs;  // NOLINT(google-build-using-namespace): a benchmark of this API
using wv::Result;
using wv::Status;

constexpr std::chrono::milliseconds kSetupTimeout{10000};
constexpr uint32_t kReceiveDepth = 256;
// Sends outstanding at the receiver before the loop stops to let it catch up, so that the
// sender never meets an empty receive queue.
constexpr uint32_t kReceiverSlack = 128;
constexpr uint64_t kSpinLimit = uint64_t{1} << 32;

// One provider, device and domain for the whole run, and a connected QP pair on loopback.
struct Fixture {
  std::string error;  // why the benchmarks cannot run, if they cannot
  std::shared_ptr<Provider> provider;
  std::shared_ptr<Device> device;
  std::shared_ptr<ProtectionDomain> pd;
  std::shared_ptr<CompletionQueue> sender_cq;
  std::shared_ptr<CompletionQueue> receiver_cq;
  std::shared_ptr<ConnectQueuePair> sender;
  std::shared_ptr<ConnectQueuePair> receiver;
  std::shared_ptr<ConnectEndpoint> listener;
  std::shared_ptr<ConnectEndpoint> active;
  std::shared_ptr<ConnectEndpoint> passive;
  alignas(64) std::array<std::byte, 4096> buffer{};
  std::shared_ptr<MemoryRegion> region;
  // Datagram QPs, set up by the first datagram benchmark (empty error: they work).
  std::string datagram_error = "not set up";
  std::shared_ptr<CompletionQueue> datagram_cq;
  std::shared_ptr<DatagramQueuePair> datagram_sender;
  std::shared_ptr<DatagramQueuePair> datagram_receiver;
  std::shared_ptr<DatagramEndpoint> datagram_listener;
  DatagramPeer datagram_peer;
  std::shared_ptr<AddressHandle> datagram_handle;
};

std::unique_ptr<Fixture>& fixture_slot() {
  static std::unique_ptr<Fixture> fixture;
  return fixture;
}

template <typename T>
bool take(Result<T> result, T& out, std::string& error, const char* what) {
  if (!result) {
    error = std::string(what) + ": " + result.status().to_string();
    return false;
  }
  out = std::move(result).value();
  return true;
}

bool connect_pair(Fixture& f) {
  QueuePairOptions options;
  options.send_cq = f.sender_cq;
  options.receive_cq = f.sender_cq;
  if (!take(f.pd->create_connect_queue_pair(options), f.sender, f.error, "sender QP")) return false;
  options.send_cq = f.receiver_cq;
  options.receive_cq = f.receiver_cq;
  options.receive_depth = kReceiveDepth;
  if (!take(f.pd->create_connect_queue_pair(options), f.receiver, f.error, "receiver QP")) {
    return false;
  }
  if (f.receiver->query().state == QpState::kReset) (void)f.receiver->modify(QpState::kInit);
  const Sge sge = f.region->sge(f.buffer.data(), 64);
  for (uint32_t i = 0; i < kReceiveDepth; ++i) {
    if (Status s = f.receiver->post_receive(0, {&sge, 1}); !s) {
      f.error = "post_receive: " + s.to_string();
      return false;
    }
  }
  if (!take(f.provider->create_connect_endpoint(), f.listener, f.error, "listener")) return false;
  if (Status s = f.listener->bind(SocketAddress::ipv4_loopback(0)); !s) {
    f.error = "bind: " + s.to_string();
    return false;
  }
  if (Status s = f.listener->listen(1); !s) {
    f.error = "listen: " + s.to_string();
    return false;
  }
  const SocketAddress address = f.listener->query().local;
  if (!take(f.provider->create_connect_endpoint(), f.active, f.error, "endpoint")) return false;
  if (auto r = f.active->resolve_address(address, kSetupTimeout).wait(kSetupTimeout); !r) {
    f.error = "resolve_address: " + r.status().to_string();
    return false;
  }
  if (auto r = f.active->resolve_route(kSetupTimeout).wait(kSetupTimeout); !r) {
    f.error = "resolve_route: " + r.status().to_string();
    return false;
  }
  auto connecting = f.active->connect(f.sender, {});
  auto requested = f.listener->get_request();
  if (!take(requested.wait(kSetupTimeout), f.passive, f.error, "get_request")) return false;
  auto accepting = f.passive->accept(f.receiver, {});
  if (auto r = accepting.wait(kSetupTimeout); !r) {
    f.error = "accept: " + r.status().to_string();
    return false;
  }
  if (auto r = connecting.wait(kSetupTimeout); !r) {
    f.error = "connect: " + r.status().to_string();
    return false;
  }
  return true;
}

Fixture& fixture() {
  std::unique_ptr<Fixture>& slot = fixture_slot();
  if (slot) return *slot;
  slot = std::make_unique<Fixture>();
  Fixture& f = *slot;
  if (take(Provider::open_configured(), f.provider, f.error, "provider") &&
      take(f.provider->open_device(""), f.device, f.error, "device") &&
      take(f.device->allocate_protection_domain(), f.pd, f.error, "protection domain") &&
      take(f.device->create_completion_queue(512), f.sender_cq, f.error, "CQ") &&
      take(f.device->create_completion_queue(512), f.receiver_cq, f.error, "CQ") &&
      take(f.pd->register_memory(f.buffer.data(), f.buffer.size(), Access::kLocalWrite), f.region,
           f.error, "register_memory")) {
    connect_pair(f);
  }
  return f;
}

void post_send_poll_inline_8b(benchmark::State& state) {
  Fixture& f = fixture();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  const bool inline_ok = f.sender->query().max_inline >= 8;
  const SendFlags flags = inline_ok ? SendFlags::kInline : SendFlags::kNone;
  state.SetLabel(std::string(f.provider->name()) +
                 (inline_ok ? ", inline" : ", not inline: max_inline < 8"));
  const Sge send_sge = f.region->sge(f.buffer.data() + 2048, 8);
  const Sge receive_sge = f.region->sge(f.buffer.data(), 64);
  std::array<Completion, 16> completions;
  uint64_t at_receiver = 0;  // sent, not yet seen completing at the receiver
  // Returns false when the receiver stopped making progress.
  auto drain_receiver = [&](uint64_t down_to) {
    for (uint64_t spins = 0; at_receiver > down_to; ++spins) {
      const int n = f.receiver_cq->poll(completions);
      for (int i = 0; i < n; ++i) (void)f.receiver->post_receive(0, {&receive_sge, 1});
      if (n > 0) at_receiver -= static_cast<uint64_t>(n);
      if (spins > kSpinLimit) return false;
    }
    return true;
  };
  for (auto _ : state) {
    if (Status s = f.sender->send(0, {&send_sge, 1}, flags); !s) {
      state.SkipWithError(s.to_string().c_str());
      break;
    }
    uint64_t spins = 0;
    int n = 0;
    while ((n = f.sender_cq->poll({completions.data(), 1})) == 0 && ++spins < kSpinLimit) {
    }
    if (n != 1 || completions[0].status != CompletionStatus::kSuccess) {
      state.SkipWithError("send did not complete successfully");
      break;
    }
    ++at_receiver;
    if (at_receiver >= kReceiverSlack && !drain_receiver(0)) {
      state.SkipWithError("the receiver stopped completing");
      break;
    }
  }
  (void)drain_receiver(0);
}
BENCHMARK(post_send_poll_inline_8b);

// One message's whole data path in one thread with warm caches: the send, the receiver's poll
// that moves it (the provider's progress) and takes its completion, the receive reposted, the
// send's completion. wv_perf's send_lat adds the cross-core cache-line transfers to this.
void send_receive_8b(benchmark::State& state) {
  Fixture& f = fixture();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  const bool inline_ok = f.sender->query().max_inline >= 8;
  const SendFlags flags =
      SendFlags::kSignaled | (inline_ok ? SendFlags::kInline : SendFlags::kNone);
  state.SetLabel(std::string(f.provider->name()));
  const Sge send_sge = f.region->sge(f.buffer.data() + 2048, 8);
  const Sge receive_sge = f.region->sge(f.buffer.data(), 64);
  std::array<Completion, 1> completion;
  const auto wait_one = [&](CompletionQueue& cq) {
    for (uint64_t spins = 0; spins < kSpinLimit; ++spins) {
      const int n = cq.poll(completion);
      if (n != 0) return n == 1 && completion[0].status == CompletionStatus::kSuccess;
    }
    return false;
  };
  for (auto _ : state) {
    if (Status s = f.sender->send(0, {&send_sge, 1}, flags); !s) {
      state.SkipWithError(s.to_string().c_str());
      break;
    }
    if (!wait_one(*f.receiver_cq) || !f.receiver->post_receive(0, {&receive_sge, 1}) ||
        !wait_one(*f.sender_cq)) {
      state.SkipWithError("the message or its completion did not arrive");
      break;
    }
  }
}
BENCHMARK(send_receive_8b);

// A poll of a CQ fed by an idle connection: the loop a waiting receiver spins in.
void poll_idle_connection_cq(benchmark::State& state) {
  Fixture& f = fixture();
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  std::array<Completion, 16> completions;
  for (auto _ : state) benchmark::DoNotOptimize(f.receiver_cq->poll(completions));
}
BENCHMARK(poll_idle_connection_cq);

// Two datagram QPs of the device, the receiver found by a lookup on loopback as an application
// would find it (so the address is whatever the provider's wire uses: UDP, or shm's rings).
bool set_up_datagrams(Fixture& f) {
  if (f.datagram_error != "not set up") return f.datagram_error.empty();
  std::string& error = f.datagram_error;
  constexpr uint32_t kQkey = 0x11;
  QueuePairOptions options;
  if (!take(f.device->create_completion_queue(512), f.datagram_cq, error, "CQ")) return false;
  options.send_cq = f.datagram_cq;
  options.receive_cq = f.datagram_cq;
  options.receive_depth = kReceiveDepth;
  if (!take(f.pd->create_datagram_queue_pair(options, kQkey), f.datagram_sender, error, "QP") ||
      !take(f.pd->create_datagram_queue_pair(options, kQkey), f.datagram_receiver, error, "QP")) {
    return false;
  }
  const Sge sge = f.region->sge(f.buffer.data(), 64);
  for (uint32_t i = 0; i < kReceiveDepth; ++i) {
    if (Status s = f.datagram_receiver->post_receive(1, {&sge, 1}); !s) {
      error = "post_receive: " + s.to_string();
      return false;
    }
  }
  std::shared_ptr<DatagramEndpoint> asker;
  if (!take(f.provider->create_datagram_endpoint(), f.datagram_listener, error, "endpoint") ||
      !take(f.provider->create_datagram_endpoint(), asker, error, "endpoint")) {
    return false;
  }
  if (Status s = f.datagram_listener->bind(SocketAddress::ipv4_loopback(0)); !s) {
    error = "bind: " + s.to_string();
    return false;
  }
  if (Status s = f.datagram_listener->listen(1); !s) {
    error = "listen: " + s.to_string();
    return false;
  }
  auto looking = asker->lookup(f.datagram_listener->local_address(), {}, kSetupTimeout);
  std::shared_ptr<DatagramEndpoint> request;
  if (!take(f.datagram_listener->get_request().wait(kSetupTimeout), request, error, "request")) {
    return false;
  }
  if (auto r = request->accept(f.datagram_receiver, {}).wait(kSetupTimeout); !r) {
    error = "accept: " + r.status().to_string();
    return false;
  }
  if (!take(looking.wait(kSetupTimeout), f.datagram_peer, error, "lookup") ||
      !take(f.pd->create_address_handle(f.datagram_peer.address), f.datagram_handle, error,
            "address handle")) {
    return false;
  }
  error.clear();
  return true;
}

// An 8-byte datagram to the other QP, its arrival polled, the receive reposted, and the send's
// completion: the round of a datagram ping-pong's one direction, in one thread.
void datagram_send_receive_8b(benchmark::State& state) {
  Fixture& f = fixture();
  if (!f.error.empty() || !set_up_datagrams(f)) {
    state.SkipWithError(f.error.empty() ? f.datagram_error.c_str() : f.error.c_str());
    return;
  }
  state.SetLabel(std::string(f.provider->name()));
  const Sge send_sge = f.region->sge(f.buffer.data() + 2048, 8);
  const Sge receive_sge = f.region->sge(f.buffer.data(), 64);
  std::array<Completion, 2> completions;
  for (auto _ : state) {
    if (Status s = f.datagram_sender->send(0, {&send_sge, 1}, *f.datagram_handle,
                                           f.datagram_peer.qp_number, f.datagram_peer.qkey,
                                           SendFlags::kSignaled);
        !s) {
      state.SkipWithError(s.to_string().c_str());
      break;
    }
    int seen = 0;
    for (uint64_t spins = 0; seen < 2 && spins < kSpinLimit; ++spins) {
      const int n = f.datagram_cq->poll(completions);
      for (int i = 0; i < n; ++i) {
        if (completions[i].status != CompletionStatus::kSuccess) seen = -100;
        if (completions[i].wr_id == 1) {
          (void)f.datagram_receiver->post_receive(1, {&receive_sge, 1});
        }
      }
      seen += n;
    }
    if (seen != 2) {
      state.SkipWithError("the datagram or its send completion did not arrive");
      break;
    }
  }
}
BENCHMARK(datagram_send_receive_8b);

void poll_empty_cq(benchmark::State& state) {
  Fixture& f = fixture();
  if (f.device == nullptr) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  auto cq = f.device->create_completion_queue(16);
  if (!cq) {
    state.SkipWithError(cq.status().to_string().c_str());
    return;
  }
  std::array<Completion, 16> completions;
  for (auto _ : state) benchmark::DoNotOptimize(cq.value()->poll(completions));
}
BENCHMARK(poll_empty_cq);

void register_memory_4k(benchmark::State& state) {
  Fixture& f = fixture();
  if (f.pd == nullptr) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  state.SetLabel("register + deregister");
  for (auto _ : state) {
    auto region = f.pd->register_memory(f.buffer.data(), f.buffer.size(),
                                        Access::kLocalWrite | Access::kRemoteWrite);
    if (!region) {
      state.SkipWithError(region.status().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(region.value().get());
  }
}
BENCHMARK(register_memory_4k);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  // Providers run threads; tear them down here rather than in static destruction.
  fixture_slot().reset();
  benchmark::Shutdown();
  return 0;
}
