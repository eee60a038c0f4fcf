#include "wire_format.h"

#include <string>

namespace wv::transport::wire {

namespace {

enum class Problem {
  kNone,
  kShort,
  kShortForm,
  kBodyLength,
  kEagerLength,
  kActiveLengths,
  kUnknownType
};

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

// The one place the rules live; decode() and check() differ only in what they report.
// *offset is where the message's body starts (its header's bytes on the wire).
Problem find_problem(std::span<const std::byte> message, size_t eager_limit, Header* header,
                     size_t* offset) {
  if (message.size() < kShortActiveBytes) return Problem::kShort;
  *header = Header{};
  std::memcpy(static_cast<void*>(header), message.data(), kShortActiveBytes);
  size_t bytes = sizeof(Header);
  if ((header->flags & kShort) != 0) {
    bytes = short_bytes(header->type, header->flags);
    if (bytes == 0) return Problem::kShortForm;
  }
  if (message.size() < bytes) return Problem::kShort;
  std::memcpy(reinterpret_cast<std::byte*>(header) + kShortActiveBytes,
              message.data() + kShortActiveBytes, bytes - kShortActiveBytes);
  const size_t body = message.size() - bytes;
  if (bytes != sizeof(Header)) header->payload_length = static_cast<uint32_t>(body);
  *offset = bytes;
  switch (header->type) {
    case Type::kEager:
      return header->payload_length != body || body > eager_limit ? Problem::kEagerLength
                                                                  : Problem::kNone;
    case Type::kActive:
      return header->payload_length != body || header->am_header_length > body
                 ? Problem::kActiveLengths
                 : Problem::kNone;
    case Type::kRendezvous:
    case Type::kReadyToReceive:
    case Type::kCredit:
    case Type::kSyncAck:
    case Type::kFinish:
      return body != body_of(header->type) || header->payload_length != 0 ? Problem::kBodyLength
                                                                          : Problem::kNone;
  }
  return Problem::kUnknownType;
}

}  // namespace

size_t decode(std::span<const std::byte> message, size_t eager_limit, Header* header) {
  size_t offset = 0;
  return find_problem(message, eager_limit, header, &offset) == Problem::kNone ? offset : 0;
}

std::string check(std::span<const std::byte> message, size_t eager_limit) {
  Header header{};
  size_t offset = 0;
  const Problem problem = find_problem(message, eager_limit, &header, &offset);
  const size_t body = message.size() - offset;
  switch (problem) {
    case Problem::kNone:
      return {};
    case Problem::kShort:
      return "message of " + std::to_string(message.size()) + " bytes is shorter than its header";
    case Problem::kShortForm:
      return "message type " + std::to_string(static_cast<int>(header.type)) + " with flags " +
             std::to_string(header.flags) + " has no short header";
    case Problem::kBodyLength:
      return "message type " + std::to_string(static_cast<int>(header.type)) + " carries " +
             std::to_string(body) + " bytes, expected " + std::to_string(body_of(header.type));
    case Problem::kEagerLength:
      return "eager payload length " + std::to_string(header.payload_length) +
             " does not match the " + std::to_string(body) +
             " bytes received or exceeds the eager limit " + std::to_string(eager_limit);
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
