#include "socket_io.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace wv::bootstrap {
namespace {

// Milliseconds left until `deadline` for poll(), at least 0, rounded up so we never spin.
int poll_ms(Deadline deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

// Waits for `events` on fd; kTimedOut at the deadline.
Status wait_for(int fd, short events, Deadline deadline, std::string_view what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, poll_ms(deadline));
    if (n > 0) return Status::ok();
    if (n < 0 && errno != EINTR) return errno_status(Errc::kIoError, "poll");
    if (n == 0 && Clock::now() >= deadline) {
      return Status(Errc::kTimedOut, fmt::format("{} did not complete in time", what));
    }
  }
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(std::exchange(other.fd_, -1));
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view text,
                                                              std::string_view what) {
  using R = Result<std::pair<std::string, std::uint16_t>>;
  std::string host;
  std::string_view port_text;
  if (text.starts_with('[')) {
    auto close = text.find("]:");
    if (close == std::string_view::npos) {
      return R(Errc::kInvalidArgument, fmt::format("{} '{}' is not [address]:port", what, text));
    }
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return R(Errc::kInvalidArgument, fmt::format("{} '{}' is not host:port", what, text));
    }
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return R(Errc::kInvalidArgument,
             fmt::format("{} '{}' has no valid port (1-65535)", what, text));
  }
  return std::pair{host, static_cast<std::uint16_t>(port)};
}

Result<UniqueFd> connect_tcp(const std::string& host, std::uint16_t port, Deadline deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0) {
    return Result<UniqueFd>(Errc::kUnreachable,
                            fmt::format("cannot resolve '{}': {}", host, gai_strerror(rc)));
  }
  Status last(Errc::kUnreachable, fmt::format("no address for '{}'", host));
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      last = errno_status(Errc::kIoError, "socket");
      continue;
    }
    int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS) {
      last = errno_status(errno == ECONNREFUSED ? Errc::kConnectionRefused : Errc::kUnreachable,
                          fmt::format("connect to {}:{}", host, port));
      continue;
    }
    if (rc != 0) {
      if (Status s =
              wait_for(fd.get(), POLLOUT, deadline, fmt::format("connecting to {}:{}", host, port));
          !s) {
        last = s;
        if (s.code() == Errc::kTimedOut) break;
        continue;
      }
      int error = 0;
      socklen_t len = sizeof error;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0) {
        errno = error;
        last = errno_status(error == ECONNREFUSED ? Errc::kConnectionRefused : Errc::kUnreachable,
                            fmt::format("connect to {}:{}", host, port));
        continue;
      }
    }
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::freeaddrinfo(list);
    return fd;
  }
  ::freeaddrinfo(list);
  return last;
}

Status send_all(int fd, std::span<const std::byte> data, Deadline deadline) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (Status s = wait_for(fd, POLLOUT, deadline, "sending to the store"); !s) return s;
      continue;
    }
    return errno_status(Errc::kDisconnected, "send to the store");
  }
  return Status::ok();
}

Status recv_exact(int fd, std::span<std::byte> out, Deadline deadline) {
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::recv(fd, out.data() + done, out.size() - done, 0);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return Status(Errc::kDisconnected, "the store closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (Status s = wait_for(fd, POLLIN, deadline, "waiting for the store's answer"); !s) {
        return s;
      }
      continue;
    }
    return errno_status(Errc::kDisconnected, "receive from the store");
  }
  return Status::ok();
}

}  // namespace wv::bootstrap
