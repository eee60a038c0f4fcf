// An IPv4 or IPv6 socket address, the names endpoints bind, listen on and connect to.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "wv/result.h"

namespace wv::verbs {

class SocketAddress {
 public:
  SocketAddress() = default;
  SocketAddress(const sockaddr* address, socklen_t length);

  // "1.2.3.4:5", "[::1]:5", "host:5" (resolved), "*:5" or ":5" (IPv4 wildcard).
  static Result<SocketAddress> parse(std::string_view text);
  static SocketAddress ipv4_any(uint16_t port);
  static SocketAddress ipv4_loopback(uint16_t port);
  // The IPv4 and IPv6 addresses of this host's interfaces that are up (port 0); empty when the
  // interfaces cannot be read.
  static std::vector<SocketAddress> interfaces();

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t length() const;
  int family() const { return storage_.ss_family; }
  bool empty() const { return storage_.ss_family == AF_UNSPEC; }
  uint16_t port() const;
  void set_port(uint16_t port);
  bool is_wildcard() const;
  std::string to_string() const;  // "1.2.3.4:5" / "[::1]:5"

  friend bool operator==(const SocketAddress& a, const SocketAddress& b);

 private:
  sockaddr_storage storage_{};
};

}  // namespace wv::verbs
