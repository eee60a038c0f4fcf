// A SpinLock its holder may take again (each lock() matched by an unlock()). The messaging
// engine's worker needs one: a handler it runs with its lock held may call back into it. A
// std::recursive_mutex costs two library calls and a thread-id check in each, about a quarter of
// the pass over an idle worker that a waiting receive spins in; this costs one atomic exchange and
// three plain stores when uncontended.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "wv/spin_lock.h"

namespace wv {

class RecursiveSpinLock {
 public:
  void lock() noexcept {
    const pthread_t self = pthread_self();
    // Only this thread ever stores its own id here, so a relaxed load that finds it is exact.
    if (owner_.load(std::memory_order_relaxed) == self) {
      ++depth_;
      return;
    }
    lock_.lock();
    owner_.store(self, std::memory_order_relaxed);
    depth_ = 1;
  }
  void unlock() noexcept {
    if (--depth_ > 0) return;
    owner_.store(kNoOwner, std::memory_order_relaxed);
    lock_.unlock();
  }

 private:
  // pthread_t is an address (glibc) or a number, never 0 for a live thread.
  static constexpr pthread_t kNoOwner = 0;
  SpinLock lock_;
  std::atomic<pthread_t> owner_{kNoOwner};
  uint32_t depth_ = 0;  // only the holder touches it
};

}  // namespace wv
