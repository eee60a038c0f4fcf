#include <string>

#include "wv/byte_order.h"
#include "wv/verbs/queue_pair.h"

namespace wv::verbs {
namespace {

// Layout (network order): 'W', version, port, 0, QP number, PSN, GID (16), LID, 0 (2), MTU,
// inbound read depth.
constexpr std::byte kMagic{'W'};
constexpr std::byte kVersion{1};

}  // namespace

std::vector<std::byte> OutOfBandAddress::encode() const {
  std::vector<std::byte> out(kOutOfBandAddressBytes);
  out[0] = kMagic;
  out[1] = kVersion;
  out[2] = static_cast<std::byte>(port);
  store_be32(&out[4], qp_number);
  store_be32(&out[8], psn);
  for (size_t i = 0; i < gid.raw.size(); ++i) out[12 + i] = static_cast<std::byte>(gid.raw[i]);
  store_be16(&out[28], lid);
  store_be32(&out[32], mtu);
  store_be32(&out[36], inbound_read_depth);
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
  address.qp_number = load_be32(&bytes[4]);
  address.psn = load_be32(&bytes[8]);
  for (size_t i = 0; i < address.gid.raw.size(); ++i) {
    address.gid.raw[i] = std::to_integer<uint8_t>(bytes[12 + i]);
  }
  address.lid = load_be16(&bytes[28]);
  address.mtu = load_be32(&bytes[32]);
  address.inbound_read_depth = load_be32(&bytes[36]);
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
