#include "request_queue.h"

#include <algorithm>

namespace wv::verbs::soft {

void RequestQueue::allow(size_t backlog) {
  std::lock_guard lock(mutex_);
  backlog_ = std::max(backlog_, backlog);
}

bool RequestQueue::push(Request request) {
  for (;;) {
    Completer<Request> waiter;
    {
      std::lock_guard lock(mutex_);
      if (waiters_.empty()) {
        if (requests_.size() >= backlog_) return false;
        requests_.push_back(std::move(request));
        return true;
      }
      waiter = std::move(waiters_.front());
      waiters_.pop_front();
    }
    // Completed outside the lock; a waiter cancelled meanwhile passes the request on.
    if (waiter.complete(request)) return true;
  }
}

Operation<RequestQueue::Request> RequestQueue::pop() {
  std::lock_guard lock(mutex_);
  if (!requests_.empty()) {
    Request request = std::move(requests_.front());
    requests_.pop_front();
    return Operation<Request>::done(std::move(request));
  }
  auto [operation, completer] = Operation<Request>::make();
  waiters_.push_back(std::move(completer));
  return std::move(operation);
}

}  // namespace wv::verbs::soft
