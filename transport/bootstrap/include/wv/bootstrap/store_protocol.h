// The wire format between the wvrun store (StoreServer) and its clients.
//
// Every message is a frame: a 4-byte big-endian body length, then the body:
//   u8 type | u32 sequence number | payload
// All integers are big-endian. A client sends one request at a time and the server answers it
// with kOk or kError carrying the request's sequence number, so a client that gave up waiting
// (timed out) can recognise and drop the late answer.
//
// Requests and their payloads:
//   kHello   u32 magic | 16-byte job token | u32 rank | u32 size      (must be the first frame)
//   kPut     u16 key length | key | value (the rest)
//   kGet     u32 rank | u16 key length | key
//   kFence   (empty)   every rank's puts before it become visible to all
//   kBarrier (empty)
// Answers:
//   kOk      the value for kGet, empty otherwise
//   kError   u8 Errc | UTF-8 message (the rest)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wv/result.h"

namespace wv::bootstrap::store {

inline constexpr std::uint32_t kMagic = 0x57565331;  // "WVS1"
inline constexpr std::size_t kTokenBytes = 16;       // 128 random bits
inline constexpr std::size_t kMaxKeyBytes = 1024;
inline constexpr std::size_t kMaxValueBytes = 64 * 1024;  // the Bootstrap::put contract
inline constexpr std::size_t kLengthBytes = 4;
inline constexpr std::size_t kBodyHeaderBytes = 1 + 4;  // type + sequence number
// The largest body any valid request or answer needs; anything longer is refused unread.
inline constexpr std::size_t kMaxBodyBytes =
    kBodyHeaderBytes + 4 + 2 + kMaxKeyBytes + kMaxValueBytes + 1024;

enum class MsgType : std::uint8_t {
  kHello = 1,
  kPut = 2,
  kGet = 3,
  kFence = 4,
  kBarrier = 5,
  kOk = 0x80,
  kError = 0x81,
};

std::string_view to_string(MsgType type);

struct Frame {
  MsgType type{};
  std::uint32_t seq = 0;
  std::vector<std::byte> payload;
};

// Appends integers and bytes in wire order.
class Writer {
 public:
  Writer& u8(std::uint8_t v);
  Writer& u16(std::uint16_t v);
  Writer& u32(std::uint32_t v);
  Writer& bytes(std::span<const std::byte> data);
  Writer& bytes(std::string_view data);
  std::vector<std::byte>& data() { return out_; }

 private:
  std::vector<std::byte> out_;
};

// Reads integers and bytes in wire order; every read reports running off the end instead of
// reading past it, so hostile payloads cannot make the reader overrun.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  std::optional<std::uint8_t> u8();
  std::optional<std::uint16_t> u16();
  std::optional<std::uint32_t> u32();
  std::optional<std::span<const std::byte>> bytes(std::size_t n);
  std::span<const std::byte> rest();
  std::size_t remaining() const { return in_.size() - pos_; }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

// A whole frame (length prefix included), ready to write.
std::vector<std::byte> encode_frame(MsgType type, std::uint32_t seq,
                                    std::span<const std::byte> payload);
// The error answer for `status` (which must be an error).
std::vector<std::byte> encode_error(std::uint32_t seq, const Status& status);

// The body length announced by a length prefix, or kProtocolError when it is out of range.
Result<std::size_t> decode_length(std::span<const std::byte, kLengthBytes> prefix);
// Splits a body (without its length prefix) into a Frame; kProtocolError when malformed.
Result<Frame> decode_body(std::span<const std::byte> body);
// The Status an error answer carries; kProtocolError when its payload is malformed.
Status decode_error(std::span<const std::byte> payload);

}  // namespace wv::bootstrap::store
