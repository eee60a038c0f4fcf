// The incoming connection requests of a listening endpoint, each waiting for get_request().
// One queue may be shared by several listeners (the host-aware endpoint listens on the tcp and
// the shm wire at once), so that one get_request() is served by whichever request comes first.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>

#include "wv/verbs/connect_endpoint.h"
#include "wv/verbs/operation.h"

namespace wv::verbs::soft {

class RequestQueue {
 public:
  using Request = std::shared_ptr<ConnectEndpoint>;

  // The most requests queued at once (the largest backlog any sharing listener asked for).
  void allow(size_t backlog);
  // Hands `request` to the oldest waiting get_request(), or queues it. Returns false when the
  // backlog is full: the caller lets the request go, which refuses the peer.
  bool push(Request request);
  // The oldest queued request, or an operation done when the next one arrives.
  Operation<Request> pop();

 private:
  std::mutex mutex_;
  size_t backlog_ = 0;
  std::deque<Request> requests_;
  std::deque<Completer<Request>> waiters_;
};

}  // namespace wv::verbs::soft
