// Where work requests report their end. Polling is the data path (no locks beyond the queue's
// own, no allocation, no system call); notifications are overlapped operations for sleeping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "wv/verbs/operation.h"
#include "wv/verbs/types.h"

namespace wv::verbs {

enum class NotifyOn : uint8_t {
  kNextCompletion,  // any completion added after the call
  kSolicited,       // a receive of a solicited message, or any error completion
};

class CompletionQueue {
 public:
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;
  virtual ~CompletionQueue() = default;

  // Moves up to out.size() completions into `out`, oldest first; returns how many.
  // Returns -1 once the queue has overrun (more completions than entries): the QPs using it
  // are in error and status() says why; completions already queued are still returned first.
  virtual int poll(std::span<Completion> out) = 0;
  // How many completions poll() would return now.
  virtual size_t peek() const = 0;
  // Done at the next completion of the given kind (not one already queued).
  virtual Operation<void> notify(NotifyOn kind) = 0;
  // Done once at least `count` completions are queued (kBatchNotify).
  virtual Operation<void> batch_notify(size_t count) = 0;
  // An eventfd that is signalled (stays readable until read) by every notification that fires,
  // for a CQ that lives in an epoll set; arm it with notify() after each wakeup.
  virtual int notification_fd() = 0;
  // Changes the number of entries; fails with kInvalidArgument if fewer than are queued.
  virtual Status resize(uint32_t entries) = 0;
  virtual uint32_t capacity() const = 0;
  virtual Status status() const = 0;

 protected:
  CompletionQueue() = default;
};

}  // namespace wv::verbs
