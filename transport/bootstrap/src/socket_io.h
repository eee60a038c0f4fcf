// Deadline-bounded TCP helpers the store client uses: every call returns kTimedOut at its
// deadline instead of blocking, which is what makes Bootstrap's bounds hold.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "wv/result.h"

namespace wv::bootstrap {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// Owns a file descriptor; closes it once.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// "host:port" or "[v6-address]:port"; kInvalidArgument naming `what` when malformed.
Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view text,
                                                              std::string_view what);

// A connected, non-blocking TCP socket, or why not (refused, unreachable, timed out).
Result<UniqueFd> connect_tcp(const std::string& host, std::uint16_t port, Deadline deadline);

Status send_all(int fd, std::span<const std::byte> data, Deadline deadline);
// kDisconnected when the peer closes before `out` is full.
Status recv_exact(int fd, std::span<std::byte> out, Deadline deadline);

}  // namespace wv::bootstrap
