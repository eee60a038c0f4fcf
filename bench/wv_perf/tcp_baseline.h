// The floor: plain TCP between the same two processes, measured in the same run as wv, so
// that wv's numbers can be read as ratios on a noisy machine. Blocking sockets with
// TCP_NODELAY, exactly `size` bytes each way; waits are bounded by SO_RCVTIMEO / SO_SNDTIMEO,
// which cost no extra system call per message (a poll() per message would slow the floor).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "process.h"
#include "wv/result.h"
#include "wv/verbs/socket_address.h"

namespace wv::perf {

class TcpSocket {
 public:
  static Result<TcpSocket> connect(const verbs::SocketAddress& peer,
                                   std::chrono::milliseconds timeout);

  Status send_all(const void* data, size_t length);
  Status recv_all(void* data, size_t length);
  // Spins on non-blocking receives instead of sleeping: the floor for a provider whose
  // application threads poll (sleeping in recv adds the kernel's wake-up to every message).
  Status recv_all_polling(void* data, size_t length);
  // Up to `length` bytes, at least one.
  Result<size_t> recv_some(void* data, size_t length);

 private:
  friend class TcpListener;
  explicit TcpSocket(Fd fd) : fd_(std::move(fd)) {}
  Status configure(std::chrono::milliseconds timeout);

  Fd fd_;
  std::chrono::milliseconds timeout_{0};
};

class TcpListener {
 public:
  // Port 0 picks an ephemeral port; port() tells which.
  static Result<TcpListener> listen(const verbs::SocketAddress& address);
  uint16_t port() const { return port_; }
  Result<TcpSocket> accept(std::chrono::milliseconds timeout);

 private:
  TcpListener(Fd fd, uint16_t port) : fd_(std::move(fd)), port_(port) {}
  Fd fd_;
  uint16_t port_ = 0;
};

// Ping-pong of `size` bytes each way (at least 1: TCP cannot carry an empty message);
// `warmup` untimed round trips, then one round trip per element of `samples_ns`.
Status tcp_ping(TcpSocket& socket, std::byte* buffer, size_t size, uint64_t warmup,
                std::span<int64_t> samples_ns);
// The other side: answers `count` messages.
Status tcp_pong(TcpSocket& socket, std::byte* buffer, size_t size, uint64_t count);

// Streams `count` sends of `size` bytes; returns the seconds until the receiver acknowledges
// the last byte.
Result<double> tcp_stream(TcpSocket& socket, const std::byte* buffer, size_t size, uint64_t count);
// The other side: receives size * count bytes in as few calls as `buffer` allows, then
// acknowledges with one byte.
Status tcp_sink(TcpSocket& socket, std::span<std::byte> buffer, size_t size, uint64_t count);

}  // namespace wv::perf
