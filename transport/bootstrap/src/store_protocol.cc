#include "wv/bootstrap/store_protocol.h"

#include <fmt/format.h>

#include <cstring>

namespace wv::bootstrap::store {

std::string_view to_string(MsgType type) {
  switch (type) {
    case MsgType::kHello:
      return "hello";
    case MsgType::kPut:
      return "put";
    case MsgType::kGet:
      return "get";
    case MsgType::kFence:
      return "fence";
    case MsgType::kBarrier:
      return "barrier";
    case MsgType::kOk:
      return "ok";
    case MsgType::kError:
      return "error";
  }
  return "unknown";
}

Writer& Writer::u8(std::uint8_t v) {
  out_.push_back(static_cast<std::byte>(v));
  return *this;
}

Writer& Writer::u16(std::uint16_t v) {
  u8(static_cast<std::uint8_t>(v >> 8));
  return u8(static_cast<std::uint8_t>(v));
}

Writer& Writer::u32(std::uint32_t v) {
  u16(static_cast<std::uint16_t>(v >> 16));
  return u16(static_cast<std::uint16_t>(v));
}

Writer& Writer::bytes(std::span<const std::byte> data) {
  out_.insert(out_.end(), data.begin(), data.end());
  return *this;
}

Writer& Writer::bytes(std::string_view data) {
  return bytes(std::as_bytes(std::span<const char>(data.data(), data.size())));
}

std::optional<std::uint8_t> Reader::u8() {
  if (remaining() < 1) return std::nullopt;
  return static_cast<std::uint8_t>(in_[pos_++]);
}

std::optional<std::uint16_t> Reader::u16() {
  if (remaining() < 2) return std::nullopt;
  auto hi = *u8();
  auto lo = *u8();
  return static_cast<std::uint16_t>(hi << 8 | lo);
}

std::optional<std::uint32_t> Reader::u32() {
  if (remaining() < 4) return std::nullopt;
  std::uint32_t hi = *u16();
  std::uint32_t lo = *u16();
  return hi << 16 | lo;
}

std::optional<std::span<const std::byte>> Reader::bytes(std::size_t n) {
  if (remaining() < n) return std::nullopt;
  auto out = in_.subspan(pos_, n);
  pos_ += n;
  return out;
}

std::span<const std::byte> Reader::rest() {
  auto out = in_.subspan(pos_);
  pos_ = in_.size();
  return out;
}

std::vector<std::byte> encode_frame(MsgType type, std::uint32_t seq,
                                    std::span<const std::byte> payload) {
  Writer w;
  w.u32(static_cast<std::uint32_t>(kBodyHeaderBytes + payload.size()))
      .u8(static_cast<std::uint8_t>(type))
      .u32(seq)
      .bytes(payload);
  return std::move(w.data());
}

std::vector<std::byte> encode_error(std::uint32_t seq, const Status& status) {
  Writer w;
  std::string_view message = status.message();
  // Keep answers under the frame limit whatever the message.
  if (message.size() > 512) message = message.substr(0, 512);
  w.u8(static_cast<std::uint8_t>(status.code())).bytes(message);
  return encode_frame(MsgType::kError, seq, w.data());
}

Result<std::size_t> decode_length(std::span<const std::byte, kLengthBytes> prefix) {
  Reader r(prefix);
  std::size_t length = *r.u32();
  if (length < kBodyHeaderBytes) {
    return Result<std::size_t>(
        Errc::kProtocolError,
        fmt::format("frame body of {} bytes is shorter than its {}-byte header", length,
                    kBodyHeaderBytes));
  }
  if (length > kMaxBodyBytes) {
    return Result<std::size_t>(
        Errc::kProtocolError,
        fmt::format("frame body of {} bytes exceeds the {}-byte limit (values are at most {} "
                    "bytes, keys at most {})",
                    length, kMaxBodyBytes, kMaxValueBytes, kMaxKeyBytes));
  }
  return length;
}

Result<Frame> decode_body(std::span<const std::byte> body) {
  Reader r(body);
  auto type = r.u8();
  auto seq = r.u32();
  if (!type || !seq) return Result<Frame>(Errc::kProtocolError, "truncated frame header");
  switch (static_cast<MsgType>(*type)) {
    case MsgType::kHello:
    case MsgType::kPut:
    case MsgType::kGet:
    case MsgType::kFence:
    case MsgType::kBarrier:
    case MsgType::kOk:
    case MsgType::kError:
      break;
    default:
      return Result<Frame>(Errc::kProtocolError,
                           fmt::format("unknown message type {:#04x}", *type));
  }
  auto rest = r.rest();
  return Frame{static_cast<MsgType>(*type), *seq, {rest.begin(), rest.end()}};
}

Status decode_error(std::span<const std::byte> payload) {
  Reader r(payload);
  auto code = r.u8();
  if (!code || *code == 0 || *code > static_cast<std::uint8_t>(Errc::kIoError)) {
    return Status(Errc::kProtocolError, "malformed error answer from the store");
  }
  auto text = r.rest();
  return Status(static_cast<Errc>(*code),
                std::string(reinterpret_cast<const char*>(text.data()), text.size()));
}

}  // namespace wv::bootstrap::store
