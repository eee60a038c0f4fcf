// A non-blocking collective: the blocking algorithm on a helper thread of its own.
//
// Why a thread and not a schedule progressed by test(): the algorithms stay one code path,
// and the collective progresses while the application computes without it calling test().
// The cost is a thread start (~20 us) per call; fine for the overlap use, not for tiny ones.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "wv/result.h"

namespace wv::coll::detail {

struct NonBlocking {
  static std::shared_ptr<NonBlocking> start(std::function<Status(const std::atomic<bool>*)> body);
  ~NonBlocking();

  std::atomic<bool> cancel{false};
  std::mutex mutex;
  std::condition_variable finished;
  bool done = false;
  Status result;
  std::thread thread;
};

}  // namespace wv::coll::detail
