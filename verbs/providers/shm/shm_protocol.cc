#include "shm_protocol.h"

#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace wv::verbs::shm {
namespace {

// Fixed part of a handshake message.
struct WireHandshake {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t qp_number;
  uint32_t inbound_read_depth;
  uint32_t outbound_read_depth;
  uint32_t can_pull;
  uint64_t probe_address;
  sockaddr_storage source;
  sockaddr_storage destination;
  uint32_t private_data_length;
  uint32_t key_mirror;
  uint64_t domain;
};

socklen_t address_length(const sockaddr_storage& storage) {
  if (storage.ss_family == AF_INET) return sizeof(sockaddr_in);
  if (storage.ss_family == AF_INET6) return sizeof(sockaddr_in6);
  return 0;
}

}  // namespace

Status encode_handshake(const Handshake& message, std::vector<std::byte>& out) {
  if (message.private_data.size() > kMaxPrivateData) {
    return Status(Errc::kInvalidArgument,
                  "private data of " + std::to_string(message.private_data.size()) +
                      " bytes exceeds the " + std::to_string(kMaxPrivateData) +
                      " bytes shm carries");
  }
  WireHandshake wire{};
  wire.magic = kHandshakeMagic;
  wire.version = kHandshakeVersion;
  wire.type = static_cast<uint16_t>(message.type);
  wire.qp_number = message.qp_number;
  wire.inbound_read_depth = message.inbound_read_depth;
  wire.outbound_read_depth = message.outbound_read_depth;
  wire.can_pull = message.can_pull ? 1 : 0;
  wire.probe_address = message.probe_address;
  wire.key_mirror = message.key_mirror ? 1 : 0;
  wire.domain = message.domain;
  if (!message.source.empty()) {
    std::memcpy(&wire.source, message.source.get(), message.source.length());
  }
  if (!message.destination.empty()) {
    std::memcpy(&wire.destination, message.destination.get(), message.destination.length());
  }
  wire.private_data_length = static_cast<uint32_t>(message.private_data.size());
  out.resize(sizeof(wire) + message.private_data.size());
  std::memcpy(out.data(), &wire, sizeof(wire));
  if (!message.private_data.empty()) {
    std::memcpy(out.data() + sizeof(wire), message.private_data.data(),
                message.private_data.size());
  }
  return Status::ok();
}

Result<Handshake> decode_handshake(std::span<const std::byte> bytes) {
  WireHandshake wire{};
  if (bytes.size() < sizeof(wire)) {
    return Status(Errc::kProtocolError, "shm handshake message too short");
  }
  std::memcpy(&wire, bytes.data(), sizeof(wire));
  if (wire.magic != kHandshakeMagic || wire.version != kHandshakeVersion) {
    return Status(Errc::kProtocolError, "shm handshake with a bad magic or version");
  }
  if (wire.type < 1 || wire.type > 3) {
    return Status(Errc::kProtocolError, "shm handshake of unknown type");
  }
  if (wire.private_data_length > kMaxPrivateData ||
      bytes.size() != sizeof(wire) + wire.private_data_length) {
    return Status(Errc::kProtocolError, "shm handshake private data length is inconsistent");
  }
  Handshake message;
  message.type = static_cast<HandshakeType>(wire.type);
  message.qp_number = wire.qp_number & 0xffffff;
  message.inbound_read_depth = wire.inbound_read_depth;
  message.outbound_read_depth = wire.outbound_read_depth;
  message.can_pull = wire.can_pull != 0;
  message.probe_address = wire.probe_address;
  message.key_mirror = wire.key_mirror != 0;
  message.domain = wire.domain;
  if (const socklen_t length = address_length(wire.source); length != 0) {
    message.source = SocketAddress(reinterpret_cast<const sockaddr*>(&wire.source), length);
  }
  if (const socklen_t length = address_length(wire.destination); length != 0) {
    message.destination =
        SocketAddress(reinterpret_cast<const sockaddr*>(&wire.destination), length);
  }
  message.private_data.assign(bytes.begin() + sizeof(wire), bytes.end());
  return message;
}

Status send_message(int socket, std::span<const std::byte> bytes, std::span<const int> fds) {
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)] = {};
  if (fds.size() > 3) return Status(Errc::kInvalidArgument, "more than 3 descriptors");
  if (!fds.empty()) {
    header.msg_control = control;
    header.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* message = CMSG_FIRSTHDR(&header);
    message->cmsg_level = SOL_SOCKET;
    message->cmsg_type = SCM_RIGHTS;
    message->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(message), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    const ssize_t n = ::sendmsg(socket, &header, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(bytes.size())) return Status::ok();
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status(Errc::kDisconnected, "sending the shm handshake");
    return Status(Errc::kIoError, "shm handshake sent short");
  }
}

Status receive_message(int socket, std::span<std::byte> buffer, size_t* got, std::vector<int>& fds,
                       size_t max_fds) {
  *got = 0;
  iovec iov{buffer.data(), buffer.size()};
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  header.msg_control = control;
  header.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket, &header, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::ok();
    return errno_status(Errc::kDisconnected, "receiving the shm handshake");
  }
  for (cmsghdr* message = CMSG_FIRSTHDR(&header); message != nullptr;
       message = CMSG_NXTHDR(&header, message)) {
    if (message->cmsg_level != SOL_SOCKET || message->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (message->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(message) + i * sizeof(int), sizeof(int));
      fds.push_back(fd);
    }
  }
  const auto refuse = [&](const char* why) {
    for (int fd : fds) ::close(fd);
    fds.clear();
    return Status(Errc::kProtocolError, why);
  };
  if ((header.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    return refuse("shm handshake message truncated");
  }
  if (fds.size() > max_fds) return refuse("shm handshake carries too many descriptors");
  if (n == 0) {
    if (!fds.empty()) return refuse("empty shm handshake message");
    return Status(Errc::kDisconnected, "the peer closed during the shm handshake");
  }
  *got = static_cast<size_t>(n);
  return Status::ok();
}

std::string socket_name(std::string_view space, const SocketAddress& address) {
  return std::string(space) + address.to_string();
}

socklen_t unix_address(const std::string& name, sockaddr_storage& out) {
  out = sockaddr_storage{};
  auto* address = reinterpret_cast<sockaddr_un*>(&out);
  address->sun_family = AF_UNIX;
  // Abstract namespace: a leading NUL, no file in the file system, gone with the socket.
  const size_t length = std::min(name.size(), sizeof(address->sun_path) - 1);
  std::memcpy(address->sun_path + 1, name.data(), length);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + length);
}

}  // namespace wv::verbs::shm
