// wv's application API: a job of ranks with tagged point-to-point messages and RMA windows.
//
//   auto comm = wv::Comm::init();            // under wvrun, mpirun (PMIx) or alone
//   if (!comm.is_ok()) { print comm.status(); return 1; }
//   wv::Comm& c = **comm;
//   if (c.rank() == 0) c.send(1, /*tag=*/7, data, bytes);
//   else c.recv(0, 7, buffer, bytes);
//
// Ranks are numbered 0..size()-1. Tags are 62-bit: bits 62 and 63 are reserved for wv's own
// traffic (bit 63 for Comm's barrier and windows, bit 62 for the collectives).
// Blocking calls wait at most Options::timeout and fail with kTimedOut after it; a dead peer
// fails them sooner with the reason. The non-blocking calls return transport::Request values
// that wait()/test() complete. Thread safety: as transport::Worker (any thread, any time).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "wv/result.h"
#include "wv/transport/bootstrap.h"
#include "wv/transport/worker.h"

namespace wv {

inline constexpr int kAnySource = -1;
inline constexpr uint64_t kAnyTag = ~uint64_t{0};  // receives and probes: any (user) tag

// What a receive got: the sender's rank, the message's tag and length.
struct MessageStatus {
  int source = kAnySource;
  uint64_t tag = 0;
  size_t length = 0;
  bool cancelled = false;
};

class Window;

class Comm {
 public:
  struct Options {
    transport::WorkerOptions worker;
    std::chrono::milliseconds timeout = std::chrono::minutes(5);  // bound of blocking calls
  };

  // Joins the job: bootstrap from the environment, one worker, every rank's address
  // exchanged. Collective over all ranks.
  static Result<std::unique_ptr<Comm>> init(const Options& options);
  static Result<std::unique_ptr<Comm>> init() { return init(Options{}); }
  ~Comm();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  transport::Worker& worker() { return *worker_; }
  // The worker's PeerId of `rank`, for layers that talk to the worker directly.
  Result<transport::PeerId> peer(int rank) const;
  transport::Bootstrap& bootstrap() { return *bootstrap_; }

  // ---- Point to point ----
  Status send(int destination, uint64_t tag, const void* buffer, size_t length);
  Status ssend(int destination, uint64_t tag, const void* buffer, size_t length);
  Result<MessageStatus> recv(int source, uint64_t tag, void* buffer, size_t length);
  Result<transport::Request> isend(int destination, uint64_t tag, const void* buffer,
                                   size_t length);
  Result<transport::Request> irecv(int source, uint64_t tag, void* buffer, size_t length);
  Status wait(transport::Request request, MessageStatus* status = nullptr);
  Status wait_all(std::span<transport::Request> requests);
  Result<bool> test(transport::Request request, MessageStatus* status = nullptr);
  Result<MessageStatus> probe(int source, uint64_t tag);
  // kNotFound when no matching message has arrived yet.
  Result<MessageStatus> iprobe(int source, uint64_t tag);

  // Returns once every rank has entered it (dissemination over the worker).
  Status barrier();

  // ---- RMA ----
  // Collective: each rank exposes [base, base + length) (lengths may differ, 0 allowed).
  Result<std::unique_ptr<Window>> create_window(void* base, size_t length);
  // Collective: each rank exposes `length` bytes the library allocates (zeroed; Window::base()),
  // as MPI_Win_allocate: on the shm provider puts and gets to them need nothing from the target.
  Result<std::unique_ptr<Window>> allocate_window(size_t length);

 private:
  friend class Window;
  Comm() = default;
  int rank_of(transport::PeerId peer) const;
  MessageStatus to_status(const transport::RequestResult& result) const;
  // A window of `memory` (null when this rank exposes nothing): tells every rank what it
  // exposes here and learns theirs.
  Result<std::unique_ptr<Window>> expose(std::unique_ptr<transport::RegisteredMemory> memory,
                                         uint64_t length);
  Status check_tag(uint64_t tag) const;
  uint64_t next_internal_tag();

  std::unique_ptr<transport::Bootstrap> bootstrap_;
  std::unique_ptr<transport::Worker> worker_;
  std::vector<transport::PeerId> peers_;  // by rank
  std::vector<int> ranks_;                // by PeerId
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  std::chrono::milliseconds timeout_{0};
  uint64_t internal_sequence_ = 0;
};

// Memory every rank exposed; one-sided access by (rank, offset).
class Window {
 public:
  ~Window();
  size_t length(int rank) const;
  // This rank's exposed memory (null when it exposes none).
  void* base() const { return memory_ ? memory_->address() : nullptr; }
  // Done when the data is at the target (put) or here (get); bounds are checked here.
  Result<transport::Request> put(int rank, size_t offset, const void* source, size_t length);
  Result<transport::Request> get(int rank, size_t offset, void* destination, size_t length);
  // 64-bit atomics at an 8-byte aligned offset; the old value in *result.
  Result<transport::Request> fetch_add(int rank, size_t offset, uint64_t add, uint64_t* result);
  Result<transport::Request> compare_swap(int rank, size_t offset, uint64_t compare, uint64_t swap,
                                          uint64_t* result);
  // Every operation this rank issued on the window (to `rank`, or all) is done.
  Status flush(int rank = kAnySource);

 private:
  friend class Comm;
  Window() = default;
  Result<transport::RemoteMemory> target(int rank, size_t offset, size_t length) const;

  Comm* comm_ = nullptr;
  std::unique_ptr<transport::RegisteredMemory> memory_;
  std::vector<transport::RemoteMemory> remotes_;  // by rank
  std::vector<uint64_t> lengths_;                 // by rank
};

}  // namespace wv
