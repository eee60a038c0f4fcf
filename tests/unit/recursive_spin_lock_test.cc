// RecursiveSpinLock: its holder may take it again, and it stays held until the last unlock; other
// threads are kept out meanwhile and see everything the holder wrote.
#include "wv/recursive_spin_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace wv {
namespace {

TEST(RecursiveSpinLock, HeldUntilTheLastUnlock) {
  RecursiveSpinLock lock;
  lock.lock();
  lock.lock();  // the same thread again: no deadlock
  std::atomic<bool> acquired{false};
  std::thread other([&] {
    std::lock_guard guard(lock);
    acquired.store(true);
  });
  lock.unlock();  // one of two: still held
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(acquired.load()) << "another thread took the lock while its holder still held it";
  lock.unlock();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!acquired.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(acquired.load()) << "the lock was not free after the last unlock";
  other.join();
}

TEST(RecursiveSpinLock, NestedSectionsExcludeOtherThreads) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 20000;
  RecursiveSpinLock lock;
  uint64_t counter = 0;  // plain: only the lock orders the threads' updates
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        std::lock_guard outer(lock);
        const uint64_t before = counter;
        std::lock_guard inner(lock);
        counter = before + 1;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter, uint64_t{kThreads} * kRounds);
}

}  // namespace
}  // namespace wv
