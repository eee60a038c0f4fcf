// The hot path allocates nothing: after warm-up, eager and inline ping-pongs between two
// workers make no call to operator new (counted by replacing it in this test binary).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "wv/transport/worker.h"
#include "wv/verbs/provider.h"

namespace {
std::atomic<uint64_t> allocations{0};
}  // namespace

// The replacements pair malloc with free, which GCC cannot see through operator new/delete.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  return operator new(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace wv::transport {
namespace {

using namespace std::chrono_literals;

class AllocationTest : public testing::TestWithParam<std::string> {};

TEST_P(AllocationTest, PingPongAllocatesNothingOnceWarm) {
  if (!verbs::Provider::open(GetParam()).is_ok()) {
    GTEST_SKIP() << "provider " << GetParam() << " cannot run here";
  }
  WorkerOptions options;
  options.provider = GetParam();
  options.listen_address = "127.0.0.1:0";
  // Poll: a blocking wait arms a CQ notification, an allocation by design (it sleeps anyway).
  options.settings = {{"transport_progress", "poll"}};
  auto a = Worker::create(options);
  auto b = Worker::create(options);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  const PeerId to_b = (*a)->add_peer((*b)->address()).value();
  const PeerId to_a = (*b)->add_peer((*a)->address()).value();
  std::vector<std::byte> ping(2000), pong(2000);
  auto round = [&](size_t size) {
    auto recv = (*b)->irecv(to_a, 1, kTagMaskAll, pong.data(), size);
    auto send = (*a)->isend(to_b, 1, ping.data(), size);
    ASSERT_TRUE(recv.is_ok() && send.is_ok());
    bool sent = false, received = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!(sent && received) && std::chrono::steady_clock::now() < deadline) {
      (*a)->progress();
      (*b)->progress();
      if (!sent) {
        auto done = (*a)->test(*send);
        ASSERT_TRUE(done.is_ok());
        sent = *done;
      }
      if (!received) {
        auto done = (*b)->test(*recv);
        ASSERT_TRUE(done.is_ok());
        received = *done;
      }
    }
    ASSERT_TRUE(sent && received);
  };
  for (int i = 0; i < 300; ++i) round(i % 2 ? 8 : 2000);  // connect, fill pools and queues
  const uint64_t before = allocations.load();
  for (int i = 0; i < 1000; ++i) round(i % 2 ? 8 : 2000);
  EXPECT_EQ(allocations.load() - before, 0u)
      << "operator new calls during 1000 warm inline/eager round trips";
}

std::vector<std::string> providers() {
  std::vector<std::string> names;
  for (std::string_view name : verbs::Provider::names()) names.emplace_back(name);
  return names;
}

std::string provider_name(const testing::TestParamInfo<std::string>& param) {
  return param.param;
}

INSTANTIATE_TEST_SUITE_P(Providers, AllocationTest, testing::ValuesIn(providers()), provider_name);

}  // namespace
}  // namespace wv::transport
