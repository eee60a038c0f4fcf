// wv_transport_micro: single-process costs of the messaging engine's hot paths (Google
// Benchmark):
//   - tag matching: MatchQueue::find_accepting over 1, 100 and 10,000 posted receives, exact
//     (concrete source and tag: hashed) and wildcard (any source: the one list a message walks),
//   - registration-cache lookup hits with 1 and 1000 cached regions,
//   - the eager (and inline) send path per message between two Workers in this process, on the
//     tcp and shm providers: isend + irecv + progress of both until both complete,
//   - one 8-byte message there and back between those Workers (the software in a pt2pt
//     ping-pong's round trip, without the cache-line transfers), and one progress() of a worker
//     whose peer is idle (the pass a waiting receive spins in).
// wv_perf pt2pt measures between processes; these isolate the per-message overhead inside it.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "match_queue.h"
#include "registration_cache.h"
#include "wv/transport/worker.h"
#include "wv/verbs.h"

namespace {

using wv::transport::kAnyPeer;
using wv::transport::kTagMaskAll;
using wv::transport::MatchQueue;

constexpr wv::transport::PeerId kSource = 3;

// A benchmark that cannot run is an error of the whole run (Google Benchmark alone would still
// exit 0), so that the ctest smoke test fails instead of passing silently.
bool g_failed = false;
void fail(benchmark::State& state, const std::string& why) {
  g_failed = true;
  state.SkipWithError(why.c_str());
}

// `posted` receives; the message matches the newest one, so a wildcard query walks them all
// (the worst case MPI's ordering allows) while an exact one hashes straight to it.
void BM_MatchExact(benchmark::State& state) {
  const auto posted = static_cast<uint32_t>(state.range(0));
  MatchQueue queue(/*ordered=*/false);
  for (uint32_t id = 0; id < posted; ++id) queue.push(id, kSource, id, kTagMaskAll);
  const uint64_t tag = posted - 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(queue.find_accepting(kSource, tag));
  }
  if (queue.find_accepting(kSource, tag) != posted - 1) fail(state, "wrong match");
}
BENCHMARK(BM_MatchExact)->Arg(1)->Arg(100)->Arg(10000);

void BM_MatchWildcardSource(benchmark::State& state) {
  const auto posted = static_cast<uint32_t>(state.range(0));
  MatchQueue queue(/*ordered=*/false);
  for (uint32_t id = 0; id < posted; ++id) queue.push(id, kAnyPeer, id, kTagMaskAll);
  const uint64_t tag = posted - 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(queue.find_accepting(kSource, tag));
  }
  if (queue.find_accepting(kSource, tag) != posted - 1) fail(state, "wrong match");
}
BENCHMARK(BM_MatchWildcardSource)->Arg(1)->Arg(100)->Arg(10000);

// The common MPI_ANY_SOURCE + MPI_ANY_TAG receive at the head of the queue: the first look hits.
void BM_MatchWildcardAnyHead(benchmark::State& state) {
  const auto posted = static_cast<uint32_t>(state.range(0));
  MatchQueue queue(/*ordered=*/false);
  for (uint32_t id = 0; id < posted; ++id) queue.push(id, kAnyPeer, 0, 0);
  for (auto _ : state) {
    benchmark::DoNotOptimize(queue.find_accepting(kSource, 12345));
  }
}
BENCHMARK(BM_MatchWildcardAnyHead)->Arg(1)->Arg(100)->Arg(10000);

// ---- Registration cache ----

struct Domain {
  std::string error;
  std::shared_ptr<wv::verbs::Provider> provider;
  std::shared_ptr<wv::verbs::Device> device;
  std::shared_ptr<wv::verbs::ProtectionDomain> pd;
};

Domain& domain() {
  static Domain d = [] {
    Domain out;
    auto provider = wv::verbs::Provider::open("tcp");
    if (!provider) {
      out.error = "provider tcp: " + provider.status().to_string();
      return out;
    }
    out.provider = provider.value();
    auto device = out.provider->open_device("");
    if (!device) {
      out.error = "device: " + device.status().to_string();
      return out;
    }
    out.device = device.value();
    auto pd = out.device->allocate_protection_domain();
    if (!pd) {
      out.error = "protection domain: " + pd.status().to_string();
      return out;
    }
    out.pd = pd.value();
    return out;
  }();
  return d;
}

void BM_RegistrationCacheHit(benchmark::State& state) {
  Domain& d = domain();
  if (!d.error.empty()) {
    fail(state, d.error);
    return;
  }
  const auto entries = static_cast<size_t>(state.range(0));
  constexpr size_t kPage = 4096;
  constexpr size_t kBufferBytes = 4 * kPage;
  // One allocation, cut into buffers a page apart so that no two cached ranges touch.
  const size_t stride = kBufferBytes + kPage;
  auto* memory = static_cast<std::byte*>(std::aligned_alloc(kPage, stride * entries));
  const auto access = wv::verbs::Access::kLocalWrite | wv::verbs::Access::kRemoteRead;
  {
    wv::transport::RegistrationCache cache(d.pd, entries + 16);
    for (size_t i = 0; i < entries; ++i) {
      if (!cache.get(memory + i * stride, kBufferBytes, access)) {
        fail(state, "registration failed");
        break;
      }
    }
    size_t i = 0;
    for (auto _ : state) {
      // Not the most recent entry, so the lookup also moves it to the front of the LRU.
      auto region = cache.get(memory + (i * 7919 % entries) * stride, kBufferBytes, access);
      benchmark::DoNotOptimize(region);
      ++i;
    }
    if (cache.counters().misses != entries) fail(state, "lookups missed the cache");
  }
  std::free(memory);
}
BENCHMARK(BM_RegistrationCacheHit)->Arg(1)->Arg(1000);

// ---- Eager send path between two workers ----

struct WorkerPair {
  std::string error;
  std::unique_ptr<wv::transport::Worker> sender;
  std::unique_ptr<wv::transport::Worker> receiver;
  wv::transport::PeerId to_receiver = 0;
  wv::transport::PeerId to_sender = 0;
};

WorkerPair make_pair(const std::string& provider) {
  WorkerPair pair;
  wv::transport::WorkerOptions options;
  options.provider = provider;
  auto sender = wv::transport::Worker::create(options);
  auto receiver = wv::transport::Worker::create(options);
  if (!sender || !receiver) {
    pair.error = provider + ": " + (!sender ? sender : receiver).status().to_string();
    return pair;
  }
  pair.sender = std::move(sender).value();
  pair.receiver = std::move(receiver).value();
  auto to_receiver = pair.sender->add_peer(pair.receiver->address());
  auto to_sender = pair.receiver->add_peer(pair.sender->address());
  if (!to_receiver || !to_sender) {
    pair.error = provider + ": add_peer: " +
                 (!to_receiver ? to_receiver.status() : to_sender.status()).to_string();
    return pair;
  }
  pair.to_receiver = to_receiver.value();
  pair.to_sender = to_sender.value();
  return pair;
}

// Per iteration: a batch of kBatch messages, receives posted first (the expected path), sends
// issued, then both workers progressed and tested until every request is done. Reported per
// message (items/s and ns/message).
void BM_EagerSendPath(benchmark::State& state, const std::string& provider) {
  constexpr int kBatch = 32;
  constexpr uint64_t kTag = 5;
  const auto size = static_cast<size_t>(state.range(0));
  WorkerPair pair = make_pair(provider);
  if (!pair.error.empty()) {
    fail(state, pair.error);
    return;
  }
  std::vector<std::byte> out(std::max<size_t>(size, 1));
  std::vector<std::byte> in(std::max<size_t>(size, 1) * kBatch);
  std::vector<wv::transport::Request> pending;
  pending.reserve(2 * kBatch);
  uint64_t spins = 0;
  constexpr uint64_t kSpinLimit = uint64_t{1} << 30;  // a stuck engine fails, never hangs
  for (auto _ : state) {
    pending.clear();
    for (int i = 0; i < kBatch; ++i) {
      auto r = pair.receiver->irecv(pair.to_sender, kTag, kTagMaskAll, in.data() + i * size, size);
      if (!r) {
        fail(state, r.status().to_string());
        return;
      }
      pending.push_back(r.value());
    }
    for (int i = 0; i < kBatch; ++i) {
      auto s = pair.sender->isend(pair.to_receiver, kTag, out.data(), size);
      if (!s) {
        fail(state, s.status().to_string());
        return;
      }
      pending.push_back(s.value());
    }
    size_t done = 0;
    std::vector<bool> finished(pending.size(), false);
    while (done < pending.size()) {
      pair.sender->progress();
      pair.receiver->progress();
      for (size_t i = 0; i < pending.size(); ++i) {
        if (finished[i]) continue;
        wv::transport::Worker& worker = i < kBatch ? *pair.receiver : *pair.sender;
        auto t = worker.test(pending[i]);
        if (!t) {
          fail(state, t.status().to_string());
          return;
        }
        if (t.value()) {
          finished[i] = true;
          ++done;
        }
      }
      if (++spins > kSpinLimit) {
        fail(state, "messages did not complete");
        return;
      }
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kBatch);
  state.counters["ns_per_msg"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kBatch,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetLabel(std::string(wv::transport::to_string(pair.sender->thresholds().path_for(size))));
}
// 8 B is inline on providers with an inline size; 1 KiB takes the copy-through-buffers path.
BENCHMARK_CAPTURE(BM_EagerSendPath, tcp, std::string("tcp"))->Arg(8)->Arg(1024);
BENCHMARK_CAPTURE(BM_EagerSendPath, shm, std::string("shm"))->Arg(8)->Arg(1024);

// Waits for `request` on `worker`, progressing both (one thread plays both processes).
bool finish(WorkerPair& pair, wv::transport::Worker& worker, wv::transport::Request request) {
  constexpr uint64_t kSpinLimit = uint64_t{1} << 30;
  for (uint64_t spins = 0; spins < kSpinLimit; ++spins) {
    auto done = worker.test(request);
    if (!done) return false;
    if (*done) return true;
    (&worker == pair.sender.get() ? pair.receiver : pair.sender)->progress();
  }
  return false;
}

void BM_PingPong(benchmark::State& state, const std::string& provider) {
  constexpr uint64_t kTag = 9;
  WorkerPair pair = make_pair(provider);
  if (!pair.error.empty()) {
    fail(state, pair.error);
    return;
  }
  uint64_t out = 0;
  uint64_t in = 0;
  for (auto _ : state) {
    // There: the receive is posted before the send (the expected path), as in a ping-pong.
    auto r = pair.receiver->irecv(pair.to_sender, kTag, kTagMaskAll, &in, sizeof(in));
    auto s = pair.sender->isend(pair.to_receiver, kTag, &out, sizeof(out));
    if (!r || !s || !finish(pair, *pair.receiver, *r) || !finish(pair, *pair.sender, *s)) {
      fail(state, "the message did not arrive");
      return;
    }
    // And back.
    r = pair.sender->irecv(pair.to_receiver, kTag, kTagMaskAll, &in, sizeof(in));
    s = pair.receiver->isend(pair.to_sender, kTag, &out, sizeof(out));
    if (!r || !s || !finish(pair, *pair.sender, *r) || !finish(pair, *pair.receiver, *s)) {
      fail(state, "the reply did not arrive");
      return;
    }
    ++out;
    if (in != out - 1) {
      fail(state, "the reply carried the wrong payload");
      return;
    }
  }
}
BENCHMARK_CAPTURE(BM_PingPong, shm, std::string("shm"));

// The active-message round trip btl/wv makes for every small MPI message: am_send there, the
// handler runs inside the peer's progress(), and back. No requests, no matching.
void BM_AmPingPong(benchmark::State& state, const std::string& provider) {
  constexpr uint8_t kHandler = 3;
  WorkerPair pair = make_pair(provider);
  if (!pair.error.empty()) {
    fail(state, pair.error);
    return;
  }
  uint64_t arrived[2] = {0, 0};
  for (int side = 0; side < 2; ++side) {
    auto& worker = side == 0 ? pair.sender : pair.receiver;
    auto status = worker->set_am_handler(
        kHandler, [&arrived, side](wv::transport::PeerId, std::span<const std::byte> header,
                                   std::span<const std::byte>) {
          uint64_t value = 0;
          std::memcpy(&value, header.data(), std::min(header.size(), sizeof value));
          arrived[side] = value;
        });
    if (!status.is_ok()) {
      fail(state, status.to_string());
      return;
    }
  }
  // Waits until `side`'s handler has seen `value`, progressing that side and, as a peer process
  // would meanwhile, the other.
  const auto await = [&](int side, uint64_t value) {
    auto& worker = side == 0 ? pair.sender : pair.receiver;
    auto& other = side == 0 ? pair.receiver : pair.sender;
    constexpr uint64_t kSpinLimit = uint64_t{1} << 30;
    for (uint64_t spins = 0; spins < kSpinLimit; ++spins) {
      if (arrived[side] == value) return true;
      worker->progress();
      if (arrived[side] == value) return true;
      other->progress();
    }
    return false;
  };
  uint64_t value = 0;
  for (auto _ : state) {
    ++value;
    auto there =
        pair.sender->am_send(pair.to_receiver, kHandler, std::as_bytes(std::span(&value, 1)), {});
    if (!there.is_ok() || !await(1, value)) {
      fail(state, "the active message did not arrive: " + there.to_string());
      return;
    }
    auto back =
        pair.receiver->am_send(pair.to_sender, kHandler, std::as_bytes(std::span(&value, 1)), {});
    if (!back.is_ok() || !await(0, value)) {
      fail(state, "the reply did not arrive: " + back.to_string());
      return;
    }
  }
}
BENCHMARK_CAPTURE(BM_AmPingPong, shm, std::string("shm"));

void BM_ProgressIdle(benchmark::State& state, const std::string& provider) {
  WorkerPair pair = make_pair(provider);
  if (!pair.error.empty()) {
    fail(state, pair.error);
    return;
  }
  // Connected (both ways) before the timing starts.
  uint64_t byte = 0;
  auto r = pair.receiver->irecv(pair.to_sender, 1, kTagMaskAll, &byte, sizeof(byte));
  auto s = pair.sender->isend(pair.to_receiver, 1, &byte, sizeof(byte));
  if (!r || !s || !finish(pair, *pair.receiver, *r) || !finish(pair, *pair.sender, *s)) {
    fail(state, "the first message did not arrive");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(pair.receiver->progress());
}
BENCHMARK_CAPTURE(BM_ProgressIdle, shm, std::string("shm"));

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
}
