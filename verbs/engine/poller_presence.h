// Whether an application thread is polling a CQ that a connection feeds. While one is, the
// connection's data is moved by that thread (no wakeup, no second CPU), and the progress thread
// parks instead of competing for the connection; once the poller stops or says it sleeps, the
// progress thread serves the connection again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace wv::verbs::soft {

class PollerPresence {
 public:
  // Called on every poll of a CQ the connection feeds: the hot path. Reading the clock costs
  // more than the rest of an empty poll, so only every kPollsPerStamp-th poll (and the first after
  // a sleep) stamps the time; a poller too slow to stamp within kActiveWindow counts as absent,
  // which only means the progress thread serves the connection as it would anyway.
  void note_poll() {
    // Load and store, not an atomic increment: a count lost between two pollers is harmless.
    const uint32_t polls = polls_.load(std::memory_order_relaxed);
    polls_.store(polls + 1, std::memory_order_relaxed);
    if ((polls & (kPollsPerStamp - 1)) == 0 || last_poll_ns_.load(std::memory_order_relaxed) == 0) {
      const int64_t now = now_ns();
      last_poll_ns_.store(now, std::memory_order_relaxed);
      if (published_ != nullptr) published_->store(now, std::memory_order_relaxed);
    }
  }
  // The poller is about to sleep: events from now on are the progress thread's.
  void forget() {
    last_poll_ns_.store(0, std::memory_order_relaxed);
    if (published_ != nullptr) published_->store(0, std::memory_order_relaxed);
  }
  // Also stamps `shared` (the shm provider tells the peer whether anybody polls here). Before
  // the first poll.
  void publish_to(std::atomic<int64_t>* shared) { published_ = shared; }
  // Whether a stamp (from this class, maybe another process's) is at most `window` old.
  static bool recent(int64_t stamp, std::chrono::nanoseconds window = kActiveWindow) {
    return stamp != 0 && now_ns() - stamp < window.count();
  }
  bool active() const { return recent(last_poll_ns_.load(std::memory_order_relaxed)); }

 private:
  static constexpr std::chrono::nanoseconds kActiveWindow{200'000};
  static constexpr uint32_t kPollsPerStamp = 16;

  static int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  std::atomic<uint32_t> polls_{0};
  std::atomic<int64_t> last_poll_ns_{0};
  std::atomic<int64_t>* published_ = nullptr;
};

}  // namespace wv::verbs::soft
