#include "wire_format.h"

#include <string>

namespace wv::transport::wire {

namespace {

enum class Problem { kNone, kShort, kBodyLength, kEagerLength, kActiveLengths, kUnknownType };

size_t body_of(Type type) {
  switch (type) {
    case Type::kRendezvous:
      return sizeof(RendezvousBody);
    case Type::kReadyToReceive:
      return sizeof(ReadyBody);
    default:
      return 0;
  }
}

// The one place the rules live; well_formed() and check() differ only in what they report.
Problem find_problem(const Header& header, size_t received_bytes, size_t eager_limit) {
  if (received_bytes < sizeof(Header)) return Problem::kShort;
  const size_t body = received_bytes - sizeof(Header);
  switch (header.type) {
    case Type::kEager:
      return header.payload_length != body || body > eager_limit ? Problem::kEagerLength
                                                                 : Problem::kNone;
    case Type::kActive:
      return header.payload_length != body || header.am_header_length > body
                 ? Problem::kActiveLengths
                 : Problem::kNone;
    case Type::kRendezvous:
    case Type::kReadyToReceive:
    case Type::kCredit:
    case Type::kSyncAck:
    case Type::kFinish:
      return body != body_of(header.type) || header.payload_length != 0 ? Problem::kBodyLength
                                                                        : Problem::kNone;
  }
  return Problem::kUnknownType;
}

}  // namespace

bool well_formed(const Header& header, size_t received_bytes, size_t eager_limit) {
  return find_problem(header, received_bytes, eager_limit) == Problem::kNone;
}

std::string check(const Header& header, size_t received_bytes, size_t eager_limit) {
  const size_t body = received_bytes >= sizeof(Header) ? received_bytes - sizeof(Header) : 0;
  switch (find_problem(header, received_bytes, eager_limit)) {
    case Problem::kNone:
      return {};
    case Problem::kShort:
      return "message of " + std::to_string(received_bytes) + " bytes is shorter than a header";
    case Problem::kBodyLength:
      return "message type " + std::to_string(static_cast<int>(header.type)) + " carries " +
             std::to_string(body) + " bytes, expected " + std::to_string(body_of(header.type));
    case Problem::kEagerLength:
      return "eager payload length " + std::to_string(header.payload_length) +
             " does not match the " + std::to_string(body) + " bytes received";
    case Problem::kActiveLengths:
      return "active message lengths (header " + std::to_string(header.am_header_length) +
             ", payload " + std::to_string(header.payload_length) + ") do not match the " +
             std::to_string(body) + " bytes received";
    case Problem::kUnknownType:
      break;
  }
  return "unknown message type " + std::to_string(static_cast<int>(header.type));
}

}  // namespace wv::transport::wire
