// Pt2ptLink over MPI point-to-point (MPI_Send/MPI_Recv, MPI_Isend/MPI_Irecv + MPI_Waitall) on
// MPI_COMM_WORLD between ranks 0 and 1.
//
// MPI's calls cannot time out, so a watchdog thread bounds them instead: every completed call
// bumps a counter, and when it has not moved for the timeout the watchdog prints what the rank
// was doing and _exit()s, which makes mpirun end the job. Bumping a relaxed atomic costs a
// nanosecond; an alarm() per call would cost a system call.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "pt2pt_link.h"

namespace wv::perf {

class MpiLink final : public Pt2ptLink {
 public:
  MpiLink(int rank, std::chrono::milliseconds timeout);
  ~MpiLink() override;
  MpiLink(const MpiLink&) = delete;
  MpiLink& operator=(const MpiLink&) = delete;

  int rank() const override { return rank_; }
  Status send(const void* buffer, size_t length, int tag) override;
  Status recv(void* buffer, size_t length, int tag) override;
  Status post_send(const void* buffer, size_t length, int tag) override;
  Status post_recv(void* buffer, size_t length, int tag) override;
  Status wait_posted() override;

 private:
  Status check(int rc, const char* call);
  void watch();

  int rank_;
  int peer_;
  std::chrono::milliseconds timeout_;
  std::vector<MPI_Request> posted_;
  std::atomic<uint64_t> progress_{0};
  std::mutex mutex_;
  std::condition_variable stop_wanted_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace wv::perf
