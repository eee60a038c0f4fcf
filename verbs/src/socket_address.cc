#include "wv/verbs/socket_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>

#include <charconv>
#include <cstring>
#include <string>

namespace wv::verbs {

SocketAddress::SocketAddress(const sockaddr* address, socklen_t length) {
  if (address != nullptr && length <= sizeof(storage_)) std::memcpy(&storage_, address, length);
}

SocketAddress SocketAddress::ipv4_any(uint16_t port) {
  SocketAddress result;
  auto* in = reinterpret_cast<sockaddr_in*>(&result.storage_);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_ANY);
  in->sin_port = htons(port);
  return result;
}

SocketAddress SocketAddress::ipv4_loopback(uint16_t port) {
  SocketAddress result = ipv4_any(port);
  reinterpret_cast<sockaddr_in*>(&result.storage_)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return result;
}

std::vector<SocketAddress> SocketAddress::interfaces() {
  std::vector<SocketAddress> result;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return result;
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || (it->ifa_flags & IFF_UP) == 0) continue;
    const int family = it->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    result.emplace_back(it->ifa_addr,
                        family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
  }
  ::freeifaddrs(list);
  return result;
}

Result<SocketAddress> SocketAddress::parse(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return Status(Errc::kInvalidArgument,
                  "address '" + std::string(text) + "' has no port (expected host:port)");
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    return Status(Errc::kInvalidArgument, "address '" + std::string(text) + "' has a bad port");
  }
  if (host.empty() || host == "*") return ipv4_any(static_cast<uint16_t>(port));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string host_string(host);
  const int rc = ::getaddrinfo(host_string.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    return Status(Errc::kUnreachable,
                  "cannot resolve '" + host_string + "': " + ::gai_strerror(rc));
  }
  SocketAddress result(found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  result.set_port(static_cast<uint16_t>(port));
  return result;
}

socklen_t SocketAddress::length() const {
  switch (storage_.ss_family) {
    case AF_INET:
      return sizeof(sockaddr_in);
    case AF_INET6:
      return sizeof(sockaddr_in6);
    default:
      return 0;
  }
}

uint16_t SocketAddress::port() const {
  switch (storage_.ss_family) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    default:
      return 0;
  }
}

void SocketAddress::set_port(uint16_t port) {
  if (storage_.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  } else if (storage_.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
  }
}

bool SocketAddress::is_wildcard() const {
  if (storage_.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (storage_.ss_family == AF_INET6) {
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
  }
  return false;
}

std::string SocketAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (storage_.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
                sizeof(text));
    return std::string(text) + ":" + std::to_string(port());
  }
  if (storage_.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text,
                sizeof(text));
    return "[" + std::string(text) + "]:" + std::to_string(port());
  }
  return "(none)";
}

bool operator==(const SocketAddress& a, const SocketAddress& b) {
  return a.length() == b.length() && std::memcmp(a.get(), b.get(), a.length()) == 0;
}

}  // namespace wv::verbs
