// Overlapped (asynchronous) operations: the one rule for every call that may take time.
//
// Such a call (resolve, connect, accept, disconnect, CQ and SRQ notifications, device events)
// returns an Operation<T> at once. Either it is already done, or it completes later; either way
// the caller can poll it, wait for it with a bound, cancel it, or put its file descriptor into
// epoll/poll (the fd becomes readable when the operation is done and stays readable) — the Linux
// stand-in for an I/O completion port. The data path (post, poll) never returns an Operation.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "wv/result.h"

namespace wv::verbs {

namespace detail {

// The eventfd behind Operation::fd(); created only when somebody asks for it.
class OperationSignal {
 public:
  OperationSignal() = default;
  OperationSignal(const OperationSignal&) = delete;
  OperationSignal& operator=(const OperationSignal&) = delete;
  ~OperationSignal();
  // Returns the eventfd (creating it, already readable when `done`), or -1 if none can be made.
  int get(bool done);
  void raise();

 private:
  int fd_ = -1;
};

template <typename T>
struct OperationState {
  std::mutex mutex;
  std::condition_variable done_cv;
  std::optional<Result<T>> result;
  std::function<void()> on_cancel;  // set by the provider while the operation is pending
  OperationSignal signal;
};

}  // namespace detail

template <typename T>
class Operation;

// The provider's half: completes the operation exactly once.
template <typename T>
class Completer {
 public:
  Completer() = default;
  explicit Completer(std::shared_ptr<detail::OperationState<T>> state) : state_(std::move(state)) {}

  // Returns false when the operation was already complete (e.g. cancelled); the result is dropped.
  bool complete(Result<T> result) {
    if (!state_) return false;
    std::unique_lock lock(state_->mutex);
    if (state_->result) return false;
    state_->result.emplace(std::move(result));
    state_->on_cancel = nullptr;
    state_->signal.raise();
    state_->done_cv.notify_all();
    return true;
  }
  // Called while pending if the user cancels; runs under no lock, at most once.
  void set_cancel_handler(std::function<void()> handler) {
    std::lock_guard lock(state_->mutex);
    if (!state_->result) state_->on_cancel = std::move(handler);
  }
  bool pending() const {
    if (!state_) return false;
    std::lock_guard lock(state_->mutex);
    return !state_->result.has_value();
  }
  explicit operator bool() const { return state_ != nullptr; }

 private:
  std::shared_ptr<detail::OperationState<T>> state_;
};

template <typename T>
class [[nodiscard]] Operation {
 public:
  // An operation and the Completer the provider keeps to finish it.
  static std::pair<Operation, Completer<T>> make() {
    auto state = std::make_shared<detail::OperationState<T>>();
    return {Operation(state), Completer<T>(state)};
  }
  // An operation that is already done (success or failure).
  static Operation done(Result<T> result) {
    auto [op, completer] = make();
    completer.complete(std::move(result));
    return std::move(op);
  }

  bool ready() const {
    std::lock_guard lock(state_->mutex);
    return state_->result.has_value();
  }

  // Waits at most `timeout`. Still pending then: kTimedOut, and the operation stays pending.
  Result<T> wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(state_->mutex);
    if (!state_->done_cv.wait_for(lock, timeout, [&] { return state_->result.has_value(); })) {
      return Status(Errc::kTimedOut,
                    "operation still pending after " + std::to_string(timeout.count()) + " ms");
    }
    return *state_->result;
  }

  // The result if done, else kInvalidState.
  Result<T> result() const {
    std::lock_guard lock(state_->mutex);
    if (!state_->result) return Status(Errc::kInvalidState, "operation still pending");
    return *state_->result;
  }

  // Completes a pending operation with kCancelled. Returns false if it had already completed.
  bool cancel() {
    std::function<void()> handler;
    {
      std::lock_guard lock(state_->mutex);
      if (state_->result) return false;
      state_->result.emplace(Status(Errc::kCancelled, "operation cancelled"));
      handler = std::move(state_->on_cancel);
      state_->signal.raise();
      state_->done_cv.notify_all();
    }
    if (handler) handler();
    return true;
  }

  // An eventfd that becomes readable once the operation is done; owned by the operation.
  int fd() {
    std::lock_guard lock(state_->mutex);
    return state_->signal.get(state_->result.has_value());
  }

 private:
  explicit Operation(std::shared_ptr<detail::OperationState<T>> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::OperationState<T>> state_;
};

}  // namespace wv::verbs
