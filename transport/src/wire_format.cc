#include "wire_format.h"

#include <string>

namespace wv::transport::wire {

std::string check(const Header& header, size_t received_bytes, size_t eager_limit) {
  if (received_bytes < sizeof(Header)) {
    return "message of " + std::to_string(received_bytes) + " bytes is shorter than a header";
  }
  const size_t body = received_bytes - sizeof(Header);
  auto body_is = [&](size_t expected) -> std::string {
    if (body != expected || header.payload_length != 0) {
      return "message type " + std::to_string(static_cast<int>(header.type)) + " carries " +
             std::to_string(body) + " bytes, expected " + std::to_string(expected);
    }
    return {};
  };
  switch (header.type) {
    case Type::kEager:
      if (header.payload_length != body || body > eager_limit) {
        return "eager payload length " + std::to_string(header.payload_length) +
               " does not match the " + std::to_string(body) + " bytes received";
      }
      return {};
    case Type::kActive:
      if (header.payload_length != body || header.am_header_length > body) {
        return "active message lengths (header " + std::to_string(header.am_header_length) +
               ", payload " + std::to_string(header.payload_length) + ") do not match the " +
               std::to_string(body) + " bytes received";
      }
      return {};
    case Type::kRendezvous:
      return body_is(sizeof(RendezvousBody));
    case Type::kReadyToReceive:
      return body_is(sizeof(ReadyBody));
    case Type::kCredit:
    case Type::kSyncAck:
    case Type::kFinish:
      return body_is(0);
  }
  return "unknown message type " + std::to_string(static_cast<int>(header.type));
}

}  // namespace wv::transport::wire
