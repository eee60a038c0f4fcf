// The point-to-point layer under every algorithm: a group of ranks (the whole job, one host,
// or the host leaders) and a Channel = one collective call on one group, with its own tags.
//
// Tag layout (64 bits; wv::Comm reserves bit 63, so user tags must keep bits 62-63 clear):
//   63: 0 | 62: 1 (collectives) | 61-56: communicator context | 55-24: call sequence |
//   23-20: phase (steps of hierarchical algorithms) | 19-0: step within the phase.
// Every rank makes the same sequence of collective calls on a communicator, so the sequence
// numbers agree without any exchange.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "wv/result.h"
#include "wv/transport/worker.h"

namespace wv::coll::detail {

inline constexpr uint64_t kCollectiveBit = uint64_t{1} << 62;

struct Group {
  transport::Worker* worker = nullptr;
  std::vector<transport::PeerId> peers;  // by rank in this group
  std::vector<int> world;                // the job rank of each member
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{300000};
  // How waits spend idle time: the worker's own rule.
  transport::WaitPolicy wait;
};

uint64_t make_tag(uint32_t context, uint64_t sequence, uint32_t phase);

class Channel {
 public:
  Channel(const Group& group, uint64_t tag, const std::atomic<bool>* cancel)
      : group_(group), tag_(tag), cancel_(cancel) {}
  Channel(const Channel&) = delete;
  ~Channel();

  int rank() const { return group_.rank; }
  int size() const { return group_.size; }
  const Group& group() const { return group_; }
  bool cancelled() const { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); }
  // The same call on another group (or another phase), sharing the cancel flag.
  Channel derive(const Group& group, uint32_t phase) const;

  // Post; wait() completes everything posted. A receive must get exactly `length` bytes
  // (a different length means the ranks passed mismatched counts: a clear error).
  Status post_send(int to, uint32_t step, const void* buffer, size_t length);
  Status post_recv(int from, uint32_t step, void* buffer, size_t length);
  Status wait();

  Status send(int to, uint32_t step, const void* buffer, size_t length);
  Status recv(int from, uint32_t step, void* buffer, size_t length);
  Status sendrecv(int to, const void* send_buffer, size_t send_length, int from, void* recv_buffer,
                  size_t recv_length, uint32_t step);

 private:
  struct Pending {
    transport::Request request;
    size_t expected;  // receives; SIZE_MAX for sends
    int peer;
  };
  void abandon();

  const Group& group_;
  uint64_t tag_;
  const std::atomic<bool>* cancel_;
  std::vector<Pending> pending_;
};

}  // namespace wv::coll::detail
