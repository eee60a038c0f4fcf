#include <string>

#include "wv/verbs/queue_pair.h"

namespace wv::verbs {
namespace {

// Layout (network order): 'W', version, port, 0, QP number, PSN, GID (16), LID, 0 (2), MTU,
// inbound read depth.
constexpr std::byte kMagic{'W'};
constexpr std::byte kVersion{1};

void put32(std::byte* out, uint32_t value) {
  for (int i = 3; i >= 0; --i, value >>= 8) out[i] = static_cast<std::byte>(value & 0xff);
}
uint32_t get32(const std::byte* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = (value << 8) | std::to_integer<uint32_t>(in[i]);
  return value;
}

}  // namespace

std::vector<std::byte> OutOfBandAddress::encode() const {
  std::vector<std::byte> out(kOutOfBandAddressBytes);
  out[0] = kMagic;
  out[1] = kVersion;
  out[2] = static_cast<std::byte>(port);
  put32(&out[4], qp_number);
  put32(&out[8], psn);
  for (size_t i = 0; i < gid.raw.size(); ++i) out[12 + i] = static_cast<std::byte>(gid.raw[i]);
  out[28] = static_cast<std::byte>(lid >> 8);
  out[29] = static_cast<std::byte>(lid & 0xff);
  put32(&out[32], mtu);
  put32(&out[36], inbound_read_depth);
  return out;
}

Result<OutOfBandAddress> OutOfBandAddress::decode(std::span<const std::byte> bytes) {
  if (bytes.size() != kOutOfBandAddressBytes) {
    return Status(Errc::kInvalidArgument, "an out-of-band address has " +
                                              std::to_string(kOutOfBandAddressBytes) +
                                              " bytes, not " + std::to_string(bytes.size()));
  }
  if (bytes[0] != kMagic || bytes[1] != kVersion) {
    return Status(Errc::kProtocolError, "not an out-of-band address of this version");
  }
  OutOfBandAddress address;
  address.port = std::to_integer<uint8_t>(bytes[2]);
  address.qp_number = get32(&bytes[4]);
  address.psn = get32(&bytes[8]);
  for (size_t i = 0; i < address.gid.raw.size(); ++i) {
    address.gid.raw[i] = std::to_integer<uint8_t>(bytes[12 + i]);
  }
  address.lid = static_cast<uint16_t>((std::to_integer<uint16_t>(bytes[28]) << 8) |
                                      std::to_integer<uint16_t>(bytes[29]));
  address.mtu = get32(&bytes[32]);
  address.inbound_read_depth = get32(&bytes[36]);
  if (Status status = address.check(); !status) return status;
  return address;
}

Status OutOfBandAddress::check() const {
  const bool mtu_ok = mtu >= 256 && mtu <= 4096 && (mtu & (mtu - 1)) == 0;
  if (port == 0 || qp_number == 0 || qp_number > 0xffffff || psn > 0xffffff || !mtu_ok) {
    return Status(Errc::kInvalidArgument, "out-of-band address out of range: port " +
                                              std::to_string(port) + ", QP " +
                                              std::to_string(qp_number) + ", PSN " +
                                              std::to_string(psn) + ", MTU " + std::to_string(mtu));
  }
  return Status::ok();
}

}  // namespace wv::verbs
