#include "tcp_baseline.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace wv::perf {
namespace {

Status system_error(std::string_view what) {
  return Status(Errc::kIoError, fmt::format("tcp baseline: {}: {}", what, std::strerror(errno)));
}

timeval to_timeval(std::chrono::milliseconds timeout) {
  return {.tv_sec = static_cast<time_t>(timeout.count() / 1000),
          .tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
}

}  // namespace

Status TcpSocket::configure(std::chrono::milliseconds timeout) {
  timeout_ = timeout;
  const int one = 1;
  if (setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return system_error("TCP_NODELAY");
  }
  const timeval tv = to_timeval(timeout);
  if (setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
      setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return system_error("socket timeouts");
  }
  return Status::ok();
}

Result<TcpSocket> TcpSocket::connect(const verbs::SocketAddress& peer,
                                     std::chrono::milliseconds timeout) {
  Fd fd(::socket(peer.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return system_error("socket");
  TcpSocket socket(std::move(fd));
  // SO_SNDTIMEO also bounds connect() on Linux.
  if (Status status = socket.configure(timeout); !status) return status;
  while (::connect(socket.fd_.get(), peer.get(), peer.length()) != 0) {
    if (errno == EINTR) continue;
    return system_error(fmt::format("connect to {}", peer.to_string()));
  }
  return socket;
}

Status TcpSocket::send_all(const void* data, size_t length) {
  const auto* bytes = static_cast<const std::byte*>(data);
  while (length > 0) {
    const ssize_t n = ::send(fd_.get(), bytes, length, MSG_NOSIGNAL);
    if (n > 0) {
      bytes += n;
      length -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return stalled("the TCP baseline peer to receive", timeout_);
    }
    return system_error("send");
  }
  return Status::ok();
}

Result<size_t> TcpSocket::recv_some(void* data, size_t length) {
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), data, length, 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) return Status(Errc::kDisconnected, "tcp baseline: the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return stalled("the TCP baseline peer to send", timeout_);
    }
    return system_error("recv");
  }
}

Status TcpSocket::recv_all(void* data, size_t length) {
  auto* bytes = static_cast<std::byte*>(data);
  while (length > 0) {
    Result<size_t> n = recv_some(bytes, length);
    if (!n) return n.status();
    bytes += n.value();
    length -= n.value();
  }
  return Status::ok();
}

Status TcpSocket::recv_all_polling(void* data, size_t length) {
  auto* bytes = static_cast<std::byte*>(data);
  const Clock::time_point deadline = Clock::now() + timeout_;
  while (length > 0) {
    const ssize_t n = ::recv(fd_.get(), bytes, length, MSG_DONTWAIT);
    if (n > 0) {
      bytes += n;
      length -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return Status(Errc::kDisconnected, "tcp baseline: the peer closed the connection");
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return system_error("recv");
    if (Clock::now() > deadline) return stalled("the TCP baseline peer to send", timeout_);
  }
  return Status::ok();
}

Result<TcpListener> TcpListener::listen(const verbs::SocketAddress& address) {
  Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return system_error("socket");
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  verbs::SocketAddress bound = address;
  if (::bind(fd.get(), bound.get(), bound.length()) != 0) {
    return system_error(fmt::format("bind {}", address.to_string()));
  }
  if (::listen(fd.get(), 1) != 0) return system_error("listen");
  socklen_t length = sizeof(sockaddr_storage);
  if (::getsockname(fd.get(), bound.get(), &length) != 0) return system_error("getsockname");
  return TcpListener(std::move(fd), bound.port());
}

Result<TcpSocket> TcpListener::accept(std::chrono::milliseconds timeout) {
  pollfd p{.fd = fd_.get(), .events = POLLIN, .revents = 0};
  int ready = 0;
  do {
    ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) return system_error("poll");
  if (ready == 0) return stalled("the TCP baseline connection", timeout);
  Fd fd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (fd.get() < 0) return system_error("accept");
  TcpSocket socket(std::move(fd));
  if (Status status = socket.configure(timeout); !status) return status;
  return socket;
}

Status tcp_ping(TcpSocket& socket, std::byte* buffer, size_t size, uint64_t warmup,
                std::span<int64_t> samples_ns) {
  size = std::max<size_t>(size, 1);
  const uint64_t total = warmup + samples_ns.size();
  for (uint64_t i = 0; i < total; ++i) {
    const Clock::time_point start = Clock::now();
    if (Status status = socket.send_all(buffer, size); !status) return status;
    if (Status status = socket.recv_all_polling(buffer, size); !status) return status;
    const Clock::time_point end = Clock::now();
    if (i >= warmup) samples_ns[i - warmup] = (end - start).count();
  }
  return Status::ok();
}

Status tcp_pong(TcpSocket& socket, std::byte* buffer, size_t size, uint64_t count) {
  size = std::max<size_t>(size, 1);
  for (uint64_t i = 0; i < count; ++i) {
    if (Status status = socket.recv_all_polling(buffer, size); !status) return status;
    if (Status status = socket.send_all(buffer, size); !status) return status;
  }
  return Status::ok();
}

Result<double> tcp_stream(TcpSocket& socket, const std::byte* buffer, size_t size, uint64_t count) {
  const Clock::time_point start = Clock::now();
  for (uint64_t i = 0; i < count; ++i) {
    if (Status status = socket.send_all(buffer, size); !status) return status;
  }
  std::byte ack{};
  if (Status status = socket.recv_all(&ack, 1); !status) return status;
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Status tcp_sink(TcpSocket& socket, std::span<std::byte> buffer, size_t size, uint64_t count) {
  uint64_t left = static_cast<uint64_t>(size) * count;
  while (left > 0) {
    Result<size_t> n = socket.recv_some(buffer.data(), std::min<uint64_t>(left, buffer.size()));
    if (!n) return n.status();
    left -= n.value();
  }
  const std::byte ack{1};
  return socket.send_all(&ack, 1);
}

}  // namespace wv::perf
