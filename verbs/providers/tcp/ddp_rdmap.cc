#include "ddp_rdmap.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <string>

#include "crc32c.h"

namespace wv::verbs::tcp {
namespace {

constexpr std::byte kDdpTaggedFlag{0x80};
constexpr std::byte kDdpLastFlag{0x40};
constexpr uint8_t kDdpVersionMask = 0x03;
constexpr uint8_t kRdmapOpcodeMask = 0x0F;
constexpr uint8_t kTerminateFlagM = 0x80;  // in byte 2 of the Terminate control word
constexpr uint8_t kTerminateFlagD = 0x40;
constexpr uint8_t kTerminateFlagR = 0x20;

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) out.append(part);
  return out;
}

std::string num(uint64_t value) {
  return std::to_string(value);
}

std::string hex(uint64_t value) {
  char buffer[24];
  std::snprintf(buffer, sizeof(buffer), "0x%llx", static_cast<unsigned long long>(value));
  return buffer;
}

Status protocol_error(TerminateCode* terminate_code, TerminateCode code, std::string message) {
  if (terminate_code != nullptr) *terminate_code = code;
  return Status(Errc::kProtocolError, std::move(message));
}

uint8_t to_u8(std::byte b) {
  return std::to_integer<uint8_t>(b);
}

// MPA carries the CRC least significant byte first (see crc32c.h).
void store_le32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
uint32_t load_le32(const std::byte* p) {
  return std::to_integer<uint32_t>(p[0]) | std::to_integer<uint32_t>(p[1]) << 8 |
         std::to_integer<uint32_t>(p[2]) << 16 | std::to_integer<uint32_t>(p[3]) << 24;
}

// Messages that RFC 5040 §4.4, §4.8 and RFC 7306 define as one fixed-size DDP segment; 0 for the
// others, whose payload may be any length and span segments.
struct BodyRule {
  size_t min = 0;
  size_t max = 0;
  bool single_segment = false;
  std::string_view reference;
};

BodyRule body_rule(RdmapOpcode opcode) {
  switch (opcode) {
    case RdmapOpcode::kReadRequest:
      return {kReadRequestBodyBytes, kReadRequestBodyBytes, true, "RFC 5040 §4.4"};
    case RdmapOpcode::kTerminate:
      return {kTerminateMinBodyBytes, kTerminateMaxBodyBytes, true, "RFC 5040 §4.8"};
    case RdmapOpcode::kAtomicRequest:
      return {kAtomicRequestBodyBytes, kAtomicRequestBodyBytes, true, "RFC 7306"};
    case RdmapOpcode::kAtomicResponse:
      return {kAtomicResponseBodyBytes, kAtomicResponseBodyBytes, true, "RFC 7306"};
    case RdmapOpcode::kImmediateData:
    case RdmapOpcode::kImmediateDataSolicited:
      return {kImmediateDataBodyBytes, kImmediateDataBodyBytes, true, "RFC 7306"};
    default:
      return {0, is_tagged(opcode) ? kMaxTaggedPayload : kMaxUntaggedPayload, false, {}};
  }
}

// True when `length` bytes starting at `offset` would run past the end of an `Int` space.
template <typename Int>
bool wraps(Int offset, size_t length) {
  return length > 0 && offset > std::numeric_limits<Int>::max() - static_cast<Int>(length - 1);
}

bool valid_opcode_value(RdmapOpcode opcode) {
  return static_cast<uint8_t>(opcode) <= kMaxRdmapOpcode;
}

}  // namespace

std::string_view to_string(RdmapOpcode opcode) {
  switch (opcode) {
    case RdmapOpcode::kWrite:
      return "RDMA Write";
    case RdmapOpcode::kReadRequest:
      return "RDMA Read Request";
    case RdmapOpcode::kReadResponse:
      return "RDMA Read Response";
    case RdmapOpcode::kSend:
      return "Send";
    case RdmapOpcode::kSendInvalidate:
      return "Send with Invalidate";
    case RdmapOpcode::kSendSolicited:
      return "Send with Solicited Event";
    case RdmapOpcode::kSendSolicitedInvalidate:
      return "Send with Solicited Event and Invalidate";
    case RdmapOpcode::kTerminate:
      return "Terminate";
    case RdmapOpcode::kImmediateData:
      return "Immediate Data";
    case RdmapOpcode::kImmediateDataSolicited:
      return "Immediate Data with Solicited Event";
    case RdmapOpcode::kAtomicRequest:
      return "Atomic Request";
    case RdmapOpcode::kAtomicResponse:
      return "Atomic Response";
  }
  return "reserved opcode";
}

std::string_view describe(TerminateCode code) {
  switch (code) {
    case TerminateCode::kRdmapLocalCatastrophic:
      return "RDMAP: local catastrophic error";
    case TerminateCode::kRdmapInvalidStag:
      return "RDMAP remote protection: invalid STag";
    case TerminateCode::kRdmapBaseBoundsViolation:
      return "RDMAP remote protection: base or bounds violation";
    case TerminateCode::kRdmapAccessRightsViolation:
      return "RDMAP remote protection: access rights violation";
    case TerminateCode::kRdmapStagNotAssociated:
      return "RDMAP remote protection: STag not associated with RDMAP stream";
    case TerminateCode::kRdmapToWrap:
      return "RDMAP remote protection: tagged offset wrap";
    case TerminateCode::kRdmapStagCannotBeInvalidated:
      return "RDMAP remote protection: STag cannot be invalidated";
    case TerminateCode::kRdmapProtectionUnspecified:
      return "RDMAP remote protection: unspecified error";
    case TerminateCode::kRdmapInvalidVersion:
      return "RDMAP remote operation: invalid RDMAP version";
    case TerminateCode::kRdmapUnexpectedOpcode:
      return "RDMAP remote operation: unexpected opcode";
    case TerminateCode::kRdmapStreamCatastrophic:
      return "RDMAP remote operation: catastrophic error, localized to RDMAP stream";
    case TerminateCode::kRdmapGlobalCatastrophic:
      return "RDMAP remote operation: catastrophic error, global";
    case TerminateCode::kRdmapOperationStagCannotBeInvalidated:
      return "RDMAP remote operation: STag cannot be invalidated";
    case TerminateCode::kRdmapOperationUnspecified:
      return "RDMAP remote operation: unspecified error";
    case TerminateCode::kDdpLocalCatastrophic:
      return "DDP: local catastrophic error";
    case TerminateCode::kDdpTaggedInvalidStag:
      return "DDP tagged buffer: invalid STag";
    case TerminateCode::kDdpTaggedBaseBoundsViolation:
      return "DDP tagged buffer: base or bounds violation";
    case TerminateCode::kDdpTaggedStagNotAssociated:
      return "DDP tagged buffer: STag not associated with DDP stream";
    case TerminateCode::kDdpTaggedToWrap:
      return "DDP tagged buffer: tagged offset wrap";
    case TerminateCode::kDdpTaggedInvalidVersion:
      return "DDP tagged buffer: invalid DDP version";
    case TerminateCode::kDdpUntaggedInvalidQueue:
      return "DDP untagged buffer: invalid queue number";
    case TerminateCode::kDdpUntaggedNoBuffer:
      return "DDP untagged buffer: invalid MSN - no buffer available";
    case TerminateCode::kDdpUntaggedInvalidMsnRange:
      return "DDP untagged buffer: invalid MSN - MSN range is not valid";
    case TerminateCode::kDdpUntaggedInvalidMo:
      return "DDP untagged buffer: invalid message offset";
    case TerminateCode::kDdpUntaggedMessageTooLong:
      return "DDP untagged buffer: message too long for available buffer";
    case TerminateCode::kDdpUntaggedInvalidVersion:
      return "DDP untagged buffer: invalid DDP version";
    case TerminateCode::kMpaConnectionLost:
      return "MPA: TCP connection closed, terminated or lost";
    case TerminateCode::kMpaCrcError:
      return "MPA: CRC error";
    case TerminateCode::kMpaMarkerMismatch:
      return "MPA: marker and ULPDU length field mismatch";
    case TerminateCode::kMpaInvalidRequestReply:
      return "MPA: invalid request or reply frame";
    case TerminateCode::kMpaLocalCatastrophic:
      return "MPA: local catastrophic error";
    case TerminateCode::kMpaInsufficientIrd:
      return "MPA: insufficient IRD resources";
    case TerminateCode::kMpaNoMatchingRtr:
      return "MPA: no matching RTR option";
  }
  return "unknown terminate code";
}

Status check_control_bytes(std::byte ddp_control, std::byte rdmap_control,
                           TerminateCode* terminate_code) {
  const bool tagged = (ddp_control & kDdpTaggedFlag) != std::byte{0};
  const uint8_t ddp_version = to_u8(ddp_control) & kDdpVersionMask;
  if (ddp_version != kDdpVersion) {
    return protocol_error(terminate_code,
                          tagged ? TerminateCode::kDdpTaggedInvalidVersion
                                 : TerminateCode::kDdpUntaggedInvalidVersion,
                          cat({"DDP version ", num(ddp_version), ", expected 1 (RFC 5041 §4.1)"}));
  }
  const uint8_t rdmap_version = to_u8(rdmap_control) >> 6;
  if (rdmap_version != kRdmapVersion) {
    return protocol_error(
        terminate_code, TerminateCode::kRdmapInvalidVersion,
        cat({"RDMAP version ", num(rdmap_version), ", expected 1 (RFC 5040 §4.1)"}));
  }
  const uint8_t opcode_value = to_u8(rdmap_control) & kRdmapOpcodeMask;
  if (opcode_value > kMaxRdmapOpcode) {
    return protocol_error(terminate_code, TerminateCode::kRdmapUnexpectedOpcode,
                          cat({"reserved RDMAP opcode ", num(opcode_value)}));
  }
  const auto opcode = static_cast<RdmapOpcode>(opcode_value);
  if (tagged != is_tagged(opcode)) {
    return protocol_error(
        terminate_code, TerminateCode::kRdmapUnexpectedOpcode,
        cat({"RDMAP ", to_string(opcode), tagged ? " in a tagged" : " in an untagged",
             " DDP segment; it must be ", tagged ? "untagged" : "tagged", " (RFC 5040 §4.2)"}));
  }
  return Status::ok();
}

Result<SegmentHeader> decode_segment_header(std::span<const std::byte> bytes,
                                            TerminateCode* terminate_code) {
  if (bytes.size() < 4) {
    return Status(
        Errc::kInvalidArgument,
        cat({"an FPDU header needs at least 4 bytes to be decoded, got ", num(bytes.size())}));
  }
  const std::byte* p = bytes.data();
  if (Status status = check_control_bytes(p[2], p[3], terminate_code); !status) return status;

  const size_t needed = header_bytes_needed(p[2]);
  if (bytes.size() < needed) {
    return Status(Errc::kInvalidArgument, cat({"this FPDU header needs ", num(needed),
                                               " bytes to be decoded, got ", num(bytes.size())}));
  }

  SegmentHeader header;
  header.ulpdu_length = load_be16(p);
  header.tagged = (p[2] & kDdpTaggedFlag) != std::byte{0};
  header.last = (p[2] & kDdpLastFlag) != std::byte{0};
  header.ddp_version = to_u8(p[2]) & kDdpVersionMask;
  header.rdmap_version = to_u8(p[3]) >> 6;
  header.opcode = static_cast<RdmapOpcode>(to_u8(p[3]) & kRdmapOpcodeMask);
  header.header_length =
      static_cast<uint16_t>(header.tagged ? kTaggedHeaderBytes : kUntaggedHeaderBytes);

  if (header.ulpdu_length < header.header_length) {
    return protocol_error(terminate_code, TerminateCode::kDdpLocalCatastrophic,
                          cat({"MPA ULPDU length ", num(header.ulpdu_length),
                               " is shorter than the ", num(header.header_length), "-byte ",
                               header.tagged ? "tagged" : "untagged", " DDP header"}));
  }
  header.payload_length = static_cast<uint16_t>(header.ulpdu_length - header.header_length);

  if (header.tagged) {
    header.stag = load_be32(p + 4);
    header.tagged_offset = load_be64(p + 8);
    if (wraps(header.tagged_offset, header.payload_length)) {
      return protocol_error(terminate_code, TerminateCode::kDdpTaggedToWrap,
                            cat({"tagged offset ", hex(header.tagged_offset), " plus ",
                                 num(header.payload_length), " payload bytes wraps past 2^64"}));
    }
    return header;
  }

  const uint32_t rsvd_ulp2 = load_be32(p + 4);
  header.queue = load_be32(p + 8);
  header.msn = load_be32(p + 12);
  header.message_offset = load_be32(p + 16);
  // RsvdULP2 is reserved (sent as zero, not checked) except in Send with Invalidate, RFC 5040 §4.1.
  header.invalidate_stag = carries_invalidate_stag(header.opcode) ? rsvd_ulp2 : 0;

  const uint32_t expected_queue = queue_for(header.opcode);
  if (header.queue != expected_queue) {
    return protocol_error(terminate_code, TerminateCode::kDdpUntaggedInvalidQueue,
                          cat({"RDMAP ", to_string(header.opcode), " on DDP queue ",
                               num(header.queue), ", expected queue ", num(expected_queue)}));
  }
  if (wraps(header.message_offset, header.payload_length)) {
    return protocol_error(terminate_code, TerminateCode::kDdpUntaggedInvalidMo,
                          cat({"message offset ", num(header.message_offset), " plus ",
                               num(header.payload_length), " payload bytes wraps past 2^32"}));
  }

  const BodyRule rule = body_rule(header.opcode);
  if (!rule.single_segment) return header;
  if (!header.last || header.message_offset != 0) {
    return protocol_error(terminate_code,
                          header.message_offset != 0 ? TerminateCode::kDdpUntaggedInvalidMo
                                                     : TerminateCode::kRdmapOperationUnspecified,
                          cat({"RDMAP ", to_string(header.opcode),
                               " must be a single DDP segment (L flag set, "
                               "message offset 0), got L=",
                               header.last ? "1" : "0", " MO=", num(header.message_offset), " (",
                               rule.reference, ")"}));
  }
  if (header.payload_length < rule.min || header.payload_length > rule.max) {
    const std::string expected = rule.min == rule.max
                                     ? cat({"exactly ", num(rule.min)})
                                     : cat({"between ", num(rule.min), " and ", num(rule.max)});
    return protocol_error(
        terminate_code,
        header.payload_length > rule.max ? TerminateCode::kDdpUntaggedMessageTooLong
                                         : TerminateCode::kRdmapOperationUnspecified,
        cat({"RDMAP ", to_string(header.opcode), " payload is ", num(header.payload_length),
             " bytes, must be ", expected, " (", rule.reference, ")"}));
  }
  return header;
}

size_t encode_tagged_header(std::span<std::byte> out, RdmapOpcode opcode, bool last, uint32_t stag,
                            uint64_t tagged_offset, uint16_t payload_length) {
  if (!valid_opcode_value(opcode) || !is_tagged(opcode) ||
      out.size() < kMpaLengthBytes + kTaggedHeaderBytes || payload_length > kMaxTaggedPayload ||
      wraps(tagged_offset, payload_length)) {
    return 0;
  }
  std::byte* p = out.data();
  store_be16(p, static_cast<uint16_t>(kTaggedHeaderBytes + payload_length));
  p[2] = kDdpTaggedFlag | (last ? kDdpLastFlag : std::byte{0}) | std::byte{kDdpVersion};
  p[3] = static_cast<std::byte>(kRdmapVersion << 6 | static_cast<uint8_t>(opcode));
  store_be32(p + 4, stag);
  store_be64(p + 8, tagged_offset);
  return kMpaLengthBytes + kTaggedHeaderBytes;
}

size_t encode_untagged_header(std::span<std::byte> out, RdmapOpcode opcode, bool last,
                              uint32_t queue, uint32_t msn, uint32_t message_offset,
                              uint32_t invalidate_stag, uint16_t payload_length) {
  if (!valid_opcode_value(opcode) || is_tagged(opcode) || queue != queue_for(opcode) ||
      out.size() < kMpaLengthBytes + kUntaggedHeaderBytes || payload_length > kMaxUntaggedPayload ||
      wraps(message_offset, payload_length)) {
    return 0;
  }
  const BodyRule rule = body_rule(opcode);
  if (rule.single_segment &&
      (!last || message_offset != 0 || payload_length < rule.min || payload_length > rule.max)) {
    return 0;
  }
  std::byte* p = out.data();
  store_be16(p, static_cast<uint16_t>(kUntaggedHeaderBytes + payload_length));
  p[2] = (last ? kDdpLastFlag : std::byte{0}) | std::byte{kDdpVersion};
  p[3] = static_cast<std::byte>(kRdmapVersion << 6 | static_cast<uint8_t>(opcode));
  store_be32(p + 4, carries_invalidate_stag(opcode) ? invalidate_stag : 0);
  store_be32(p + 8, queue);
  store_be32(p + 12, msn);
  store_be32(p + 16, message_offset);
  return kMpaLengthBytes + kUntaggedHeaderBytes;
}

FpduTrailer fpdu_trailer(uint16_t ulpdu_length, bool crc_enabled, uint32_t crc_so_far) {
  FpduTrailer trailer;
  const size_t pad = pad_length(ulpdu_length);
  trailer.size = static_cast<uint8_t>(pad + kMpaCrcBytes);
  if (crc_enabled) {
    const uint32_t crc = crc32c_update(crc_so_far, {trailer.bytes.data(), pad});
    store_le32(trailer.bytes.data() + pad, crc);
  }
  return trailer;
}

Status check_fpdu_trailer(uint16_t ulpdu_length, std::span<const std::byte> trailer,
                          bool crc_enabled, uint32_t crc_so_far) {
  const size_t pad = pad_length(ulpdu_length);
  if (trailer.size() != pad + kMpaCrcBytes) {
    return Status(
        Errc::kInvalidArgument,
        cat({"a ULPDU of ", num(ulpdu_length), " bytes is followed by ", num(pad + kMpaCrcBytes),
             " bytes of pad and CRC, got ", num(trailer.size())}));
  }
  if (!crc_enabled) return Status::ok();
  const uint32_t computed = crc32c_update(crc_so_far, trailer.first(pad));
  const uint32_t received = load_le32(trailer.data() + pad);
  if (computed != received) {
    return Status(Errc::kProtocolError, cat({"MPA CRC mismatch: the FPDU carries ", hex(received),
                                             ", its bytes give ", hex(computed)}));
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Fixed bodies.

namespace {

Status wrong_length(std::string_view what, size_t expected, size_t got) {
  return Status(Errc::kProtocolError,
                cat({what, " must be ", num(expected), " bytes, got ", num(got)}));
}

}  // namespace

size_t encode_read_request(std::span<std::byte> out, const ReadRequestBody& body) {
  if (out.size() < kReadRequestBodyBytes) return 0;
  std::byte* p = out.data();
  store_be32(p, body.sink_stag);
  store_be64(p + 4, body.sink_offset);
  store_be32(p + 12, body.read_size);
  store_be32(p + 16, body.source_stag);
  store_be64(p + 20, body.source_offset);
  return kReadRequestBodyBytes;
}

Result<ReadRequestBody> decode_read_request(std::span<const std::byte> bytes) {
  if (bytes.size() != kReadRequestBodyBytes) {
    return wrong_length("an RDMA Read Request body", kReadRequestBodyBytes, bytes.size());
  }
  const std::byte* p = bytes.data();
  ReadRequestBody body;
  body.sink_stag = load_be32(p);
  body.sink_offset = load_be64(p + 4);
  body.read_size = load_be32(p + 12);
  body.source_stag = load_be32(p + 16);
  body.source_offset = load_be64(p + 20);
  return body;
}

size_t encode_atomic_request(std::span<std::byte> out, const AtomicRequestBody& body) {
  if (out.size() < kAtomicRequestBodyBytes) return 0;
  if (body.opcode != AtomicOpcode::kFetchAdd && body.opcode != AtomicOpcode::kCompareSwap) return 0;
  std::byte* p = out.data();
  store_be32(p, static_cast<uint8_t>(body.opcode));  // the 28 reserved bits go out as zero
  store_be32(p + 4, body.request_id);
  store_be32(p + 8, body.remote_stag);
  store_be64(p + 12, body.remote_offset);
  store_be64(p + 20, body.add_or_swap_data);
  store_be64(p + 28, body.add_or_swap_mask);
  store_be64(p + 36, body.compare_data);
  store_be64(p + 44, body.compare_mask);
  return kAtomicRequestBodyBytes;
}

Result<AtomicRequestBody> decode_atomic_request(std::span<const std::byte> bytes) {
  if (bytes.size() != kAtomicRequestBodyBytes) {
    return wrong_length("an Atomic Request body", kAtomicRequestBodyBytes, bytes.size());
  }
  const std::byte* p = bytes.data();
  const auto opcode = static_cast<uint8_t>(load_be32(p) & 0x0F);
  if (opcode != static_cast<uint8_t>(AtomicOpcode::kFetchAdd) &&
      opcode != static_cast<uint8_t>(AtomicOpcode::kCompareSwap)) {
    return Status(
        Errc::kProtocolError,
        cat({"atomic opcode ", num(opcode), " is reserved (RFC 7306: 0 = FetchAdd, 2 = CmpSwap)"}));
  }
  AtomicRequestBody body;
  body.opcode = static_cast<AtomicOpcode>(opcode);
  body.request_id = load_be32(p + 4);
  body.remote_stag = load_be32(p + 8);
  body.remote_offset = load_be64(p + 12);
  body.add_or_swap_data = load_be64(p + 20);
  body.add_or_swap_mask = load_be64(p + 28);
  body.compare_data = load_be64(p + 36);
  body.compare_mask = load_be64(p + 44);
  return body;
}

size_t encode_atomic_response(std::span<std::byte> out, const AtomicResponseBody& body) {
  if (out.size() < kAtomicResponseBodyBytes) return 0;
  store_be32(out.data(), body.request_id);
  store_be64(out.data() + 4, body.original_value);
  return kAtomicResponseBodyBytes;
}

Result<AtomicResponseBody> decode_atomic_response(std::span<const std::byte> bytes) {
  if (bytes.size() != kAtomicResponseBodyBytes) {
    return wrong_length("an Atomic Response body", kAtomicResponseBodyBytes, bytes.size());
  }
  return AtomicResponseBody{load_be32(bytes.data()), load_be64(bytes.data() + 4)};
}

size_t encode_immediate_data(std::span<std::byte> out, const ImmediateDataBody& body) {
  if (out.size() < kImmediateDataBodyBytes) return 0;
  store_be64(out.data(), body.data);
  return kImmediateDataBodyBytes;
}

Result<ImmediateDataBody> decode_immediate_data(std::span<const std::byte> bytes) {
  if (bytes.size() != kImmediateDataBodyBytes) {
    return wrong_length("an Immediate Data body", kImmediateDataBodyBytes, bytes.size());
  }
  return ImmediateDataBody{load_be64(bytes.data())};
}

size_t TerminateBody::encoded_length() const {
  return kTerminateMinBodyBytes + (ddp_header_included ? 2 + size_t{ddp_header_length} : 0) +
         (rdmap_header_included ? size_t{rdmap_header_length} : 0);
}

size_t encode_terminate(std::span<std::byte> out, const TerminateBody& body) {
  if (body.ddp_header_included) {
    const bool tagged = (body.ddp_header[0] & kDdpTaggedFlag) != std::byte{0};
    if (body.ddp_header_length != (tagged ? kTaggedHeaderBytes : kUntaggedHeaderBytes)) return 0;
  } else if (body.ddp_header_length != 0) {
    return 0;
  }
  if (body.rdmap_header_included != (body.rdmap_header_length == kReadRequestBodyBytes)) return 0;
  if (body.rdmap_header_length != 0 && body.rdmap_header_length != kReadRequestBodyBytes) return 0;
  const size_t length = body.encoded_length();
  if (out.size() < length) return 0;

  std::byte* p = out.data();
  store_be16(p, static_cast<uint16_t>(body.code));
  p[2] = static_cast<std::byte>((body.segment_length_valid ? kTerminateFlagM : 0) |
                                (body.ddp_header_included ? kTerminateFlagD : 0) |
                                (body.rdmap_header_included ? kTerminateFlagR : 0));
  p[3] = std::byte{0};
  size_t offset = kTerminateMinBodyBytes;
  if (body.ddp_header_included) {
    store_be16(p + offset, body.ddp_segment_length);
    std::copy_n(body.ddp_header.begin(), body.ddp_header_length, p + offset + 2);
    offset += 2 + body.ddp_header_length;
  }
  if (body.rdmap_header_included) {
    std::copy_n(body.rdmap_header.begin(), body.rdmap_header_length, p + offset);
    offset += body.rdmap_header_length;
  }
  return offset;
}

Result<TerminateBody> decode_terminate(std::span<const std::byte> bytes) {
  if (bytes.size() < kTerminateMinBodyBytes || bytes.size() > kTerminateMaxBodyBytes) {
    return Status(Errc::kProtocolError,
                  cat({"a Terminate body is ", num(kTerminateMinBodyBytes), " to ",
                       num(kTerminateMaxBodyBytes), " bytes, got ", num(bytes.size())}));
  }
  const std::byte* p = bytes.data();
  TerminateBody body;
  body.code = static_cast<TerminateCode>(load_be16(p));
  const uint8_t flags = to_u8(p[2]);
  body.segment_length_valid = (flags & kTerminateFlagM) != 0;
  body.ddp_header_included = (flags & kTerminateFlagD) != 0;
  body.rdmap_header_included = (flags & kTerminateFlagR) != 0;

  size_t offset = kTerminateMinBodyBytes;
  if (body.ddp_header_included) {
    if (bytes.size() < offset + 3) {
      return Status(Errc::kProtocolError,
                    "Terminate has the D flag set but no room for the DDP Segment Length and "
                    "the terminated DDP header");
    }
    body.ddp_segment_length = load_be16(p + offset);
    const bool tagged = (p[offset + 2] & kDdpTaggedFlag) != std::byte{0};
    const size_t header_length = tagged ? kTaggedHeaderBytes : kUntaggedHeaderBytes;
    if (bytes.size() < offset + 2 + header_length) {
      return Status(
          Errc::kProtocolError,
          cat({"Terminate carries ", num(bytes.size() - offset - 2), " bytes of the terminated ",
               tagged ? "tagged" : "untagged", " DDP header, which has ", num(header_length)}));
    }
    body.ddp_header_length = static_cast<uint8_t>(header_length);
    std::copy_n(p + offset + 2, header_length, body.ddp_header.begin());
    offset += 2 + header_length;
  }
  if (body.rdmap_header_included) {
    const size_t remaining = bytes.size() - offset;
    if (remaining >= kReadRequestBodyBytes) {
      body.rdmap_header_length = kReadRequestBodyBytes;
      std::copy_n(p + offset, kReadRequestBodyBytes, body.rdmap_header.begin());
      offset += kReadRequestBodyBytes;
    } else if (remaining != 0) {
      return Status(Errc::kProtocolError,
                    cat({"Terminate has the R flag set but only ", num(remaining),
                         " of the 28 bytes of the terminated RDMAP header"}));
    }
  }
  if (offset != bytes.size()) {
    return Status(Errc::kProtocolError, cat({"Terminate body has ", num(bytes.size() - offset),
                                             " unexpected bytes after its last field"}));
  }
  return body;
}

TerminateBody make_terminate_body(TerminateCode code, std::span<const std::byte> offending) {
  TerminateBody body;
  body.code = code;
  const uint8_t layer = terminate_layer(code);
  const uint8_t error_type = terminate_error_type(code);
  // The headers only help the peer when it can parse them: not for LLP errors, catastrophic
  // errors (error type 0), or version / opcode errors where the layout itself is in doubt.
  bool include = false;
  if (layer == static_cast<uint8_t>(TerminateLayer::kDdp)) {
    include = error_type != 0 && code != TerminateCode::kDdpTaggedInvalidVersion &&
              code != TerminateCode::kDdpUntaggedInvalidVersion;
  } else if (layer == static_cast<uint8_t>(TerminateLayer::kRdmap)) {
    include = error_type != 0 && code != TerminateCode::kRdmapInvalidVersion &&
              code != TerminateCode::kRdmapUnexpectedOpcode;
  }
  if (!include || offending.size() < kMpaLengthBytes + 2) return body;

  const size_t header_length = header_bytes_needed(offending[2]) - kMpaLengthBytes;
  if (offending.size() < kMpaLengthBytes + header_length) return body;
  body.segment_length_valid = true;
  body.ddp_header_included = true;
  body.ddp_segment_length = load_be16(offending.data());
  body.ddp_header_length = static_cast<uint8_t>(header_length);
  std::copy_n(offending.data() + kMpaLengthBytes, header_length, body.ddp_header.begin());

  const bool is_read_request =
      (to_u8(offending[3]) & kRdmapOpcodeMask) == static_cast<uint8_t>(RdmapOpcode::kReadRequest) &&
      header_length == kUntaggedHeaderBytes;
  const size_t body_offset = kMpaLengthBytes + header_length;
  if (layer == static_cast<uint8_t>(TerminateLayer::kRdmap) && is_read_request &&
      offending.size() >= body_offset + kReadRequestBodyBytes) {
    body.rdmap_header_included = true;
    body.rdmap_header_length = kReadRequestBodyBytes;
    std::copy_n(offending.data() + body_offset, kReadRequestBodyBytes, body.rdmap_header.begin());
  }
  return body;
}

}  // namespace wv::verbs::tcp
