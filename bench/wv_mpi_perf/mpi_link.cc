#include "mpi_link.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <limits>

namespace wv::perf {

MpiLink::MpiLink(int rank, std::chrono::milliseconds timeout)
    : rank_(rank), peer_(1 - rank), timeout_(timeout) {
  posted_.reserve(4096);
  watchdog_ = std::thread([this] { watch(); });
}

MpiLink::~MpiLink() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_wanted_.notify_all();
  watchdog_.join();
}

void MpiLink::watch() {
  constexpr std::chrono::milliseconds kTick{100};
  uint64_t seen = progress_.load(std::memory_order_relaxed);
  auto last = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  while (!stop_wanted_.wait_for(lock, kTick, [this] { return stopping_; })) {
    const uint64_t now_seen = progress_.load(std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    if (now_seen != seen) {
      seen = now_seen;
      last = now;
    } else if (now - last >= timeout_) {
      std::fprintf(stderr,
                   "wv_mpi_perf rank %d: no MPI call completed for %.1f s (peer dead or stalled; "
                   "see --timeout); exiting\n",
                   rank_, std::chrono::duration<double>(timeout_).count());
      std::fflush(stderr);
      _exit(1);
    }
  }
}

Status MpiLink::check(int rc, const char* call) {
  progress_.fetch_add(1, std::memory_order_relaxed);
  if (rc == MPI_SUCCESS) return Status::ok();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  return Status(Errc::kIoError, fmt::format("{}: {}", call, std::string(text, length)));
}

namespace {
int count_of(size_t length) {
  return length > static_cast<size_t>(std::numeric_limits<int>::max())
             ? std::numeric_limits<int>::max()
             : static_cast<int>(length);
}
}  // namespace

Status MpiLink::send(const void* buffer, size_t length, int tag) {
  return check(MPI_Send(buffer, count_of(length), MPI_BYTE, peer_, tag, MPI_COMM_WORLD),
               "MPI_Send");
}

Status MpiLink::recv(void* buffer, size_t length, int tag) {
  return check(
      MPI_Recv(buffer, count_of(length), MPI_BYTE, peer_, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
      "MPI_Recv");
}

Status MpiLink::post_send(const void* buffer, size_t length, int tag) {
  MPI_Request request;
  Status s =
      check(MPI_Isend(buffer, count_of(length), MPI_BYTE, peer_, tag, MPI_COMM_WORLD, &request),
            "MPI_Isend");
  if (s) posted_.push_back(request);
  return s;
}

Status MpiLink::post_recv(void* buffer, size_t length, int tag) {
  MPI_Request request;
  Status s =
      check(MPI_Irecv(buffer, count_of(length), MPI_BYTE, peer_, tag, MPI_COMM_WORLD, &request),
            "MPI_Irecv");
  if (s) posted_.push_back(request);
  return s;
}

Status MpiLink::wait_posted() {
  Status s =
      check(MPI_Waitall(static_cast<int>(posted_.size()), posted_.data(), MPI_STATUSES_IGNORE),
            "MPI_Waitall");
  posted_.clear();
  return s;
}

}  // namespace wv::perf
