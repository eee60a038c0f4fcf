// DDP (RFC 5041) and RDMAP (RFC 5040, extended by RFC 7306) segment headers inside MPA FPDUs
// (RFC 5044): byte layouts in and out, no sockets, no allocation on the success paths.
//
// One FPDU on the TCP stream, as this codec sees it (all integers big-endian):
//
//   offset 0   ULPDU_LENGTH (2 bytes)  = DDP header + DDP payload, excludes pad and CRC
//   offset 2   DDP control  (1 byte)   T(0x80) L(0x40) reserved(0x3C) DDP version(0x03) = 1
//   offset 3   RDMAP control (1 byte)  RDMAP version(0xC0) = 1, reserved(0x30), opcode(0x0F)
//   tagged:    STag (4), Tagged Offset (8)                               -> 16 bytes so far
//   untagged:  RsvdULP2 = Invalidate STag (4), QN (4), MSN (4), MO (4)   -> 20 bytes so far
//   then       DDP payload (ULPDU_LENGTH - 14 or - 18 bytes)
//   then       PAD: 0..3 bytes so that the FPDU up to here is a multiple of 4
//   then       MPA CRC (4 bytes): CRC32c over length + ULPDU + pad, zero when CRC is off
//
// The fixed RDMAP bodies (RDMA Read Request, Terminate, Atomic Request/Response, Immediate Data)
// travel as the DDP payload of their untagged message; decode_segment_header checks their
// lengths and the decode_* functions below parse them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "wv/byte_order.h"  // load_be*/store_be*, found from this namespace
#include "wv/result.h"

namespace wv::verbs::tcp {

// ---------------------------------------------------------------------------------------------
// Sizes.

inline constexpr uint8_t kDdpVersion = 1;    // RFC 5041 §4.1
inline constexpr uint8_t kRdmapVersion = 1;  // RFC 5040 §4.1

inline constexpr size_t kMpaLengthBytes = 2;        // ULPDU_LENGTH, RFC 5044 §4
inline constexpr size_t kMpaCrcBytes = 4;           // always on the wire, zero when CRC is off
inline constexpr size_t kTaggedHeaderBytes = 14;    // RFC 5041 §4.2, inside the ULPDU
inline constexpr size_t kUntaggedHeaderBytes = 18;  // RFC 5041 §4.3, inside the ULPDU
// Every FPDU starts with at least this many bytes, so a receiver may always read 16 bytes first.
inline constexpr size_t kMinFpduHeaderBytes = kMpaLengthBytes + kTaggedHeaderBytes;    // 16
inline constexpr size_t kMaxFpduHeaderBytes = kMpaLengthBytes + kUntaggedHeaderBytes;  // 20
inline constexpr size_t kMaxUlpduLength = 0xFFFF;
inline constexpr size_t kMaxTaggedPayload = kMaxUlpduLength - kTaggedHeaderBytes;
inline constexpr size_t kMaxUntaggedPayload = kMaxUlpduLength - kUntaggedHeaderBytes;
inline constexpr size_t kMaxTrailerBytes = 3 + kMpaCrcBytes;
inline constexpr size_t kMaxFpduBytes = kMpaLengthBytes + kMaxUlpduLength + 3 + kMpaCrcBytes;

// Pad after the ULPDU so that length field + ULPDU + pad is a multiple of 4 (RFC 5044 §4).
constexpr size_t pad_length(size_t ulpdu_length) {
  return (4 - (kMpaLengthBytes + ulpdu_length) % 4) % 4;
}
// All bytes of one FPDU on the wire: length field, ULPDU, pad, CRC.
constexpr size_t fpdu_length(size_t ulpdu_length) {
  return kMpaLengthBytes + ulpdu_length + pad_length(ulpdu_length) + kMpaCrcBytes;
}

// How many bytes from the start of an FPDU (length field included) hold the DDP/RDMAP header:
// 16 when the T flag of the DDP control byte (FPDU byte 2) is set, else 20. Read 4 bytes (or
// kMinFpduHeaderBytes), call this, read up to the answer, then call decode_segment_header.
constexpr size_t header_bytes_needed(std::byte ddp_control) {
  return (ddp_control & std::byte{0x80}) != std::byte{0} ? kMpaLengthBytes + kTaggedHeaderBytes
                                                         : kMpaLengthBytes + kUntaggedHeaderBytes;
}

// ---------------------------------------------------------------------------------------------
// Opcodes and queues.

// RFC 5040 §4.2 (0-7) and RFC 7306 (8-11); 12-15 are reserved and rejected.
enum class RdmapOpcode : uint8_t {
  kWrite = 0,
  kReadRequest = 1,
  kReadResponse = 2,
  kSend = 3,
  kSendInvalidate = 4,
  kSendSolicited = 5,
  kSendSolicitedInvalidate = 6,
  kTerminate = 7,
  kImmediateData = 8,
  kImmediateDataSolicited = 9,
  kAtomicRequest = 10,
  kAtomicResponse = 11,
};
inline constexpr uint8_t kMaxRdmapOpcode = 11;

std::string_view to_string(RdmapOpcode opcode);

// Write and Read Response use the tagged buffer model; every other opcode is untagged.
constexpr bool is_tagged(RdmapOpcode opcode) {
  return opcode == RdmapOpcode::kWrite || opcode == RdmapOpcode::kReadResponse;
}
constexpr bool carries_invalidate_stag(RdmapOpcode opcode) {
  return opcode == RdmapOpcode::kSendInvalidate || opcode == RdmapOpcode::kSendSolicitedInvalidate;
}

// Untagged DDP queue numbers (the opcode tables of RFC 5040 §4.2 and RFC 7306). Atomic Requests
// share queue 1 with RDMA Read Requests, so one IRD/ORD budget bounds both. Atomic Responses get
// their own untagged queue 3: unlike Read Responses they are not tagged, and queue 1 at the
// requester already carries the peer's requests with their own MSN sequence. zrlio/urdma, an
// open RFC 7306 implementation, uses the same numbers.
inline constexpr uint32_t kQueueSend = 0;         // Send variants and Immediate Data
inline constexpr uint32_t kQueueReadRequest = 1;  // RDMA Read Request and Atomic Request
inline constexpr uint32_t kQueueTerminate = 2;
inline constexpr uint32_t kQueueAtomicResponse = 3;

// The queue an untagged opcode must use; meaningless for tagged opcodes.
constexpr uint32_t queue_for(RdmapOpcode opcode) {
  switch (opcode) {
    case RdmapOpcode::kReadRequest:
    case RdmapOpcode::kAtomicRequest:
      return kQueueReadRequest;
    case RdmapOpcode::kTerminate:
      return kQueueTerminate;
    case RdmapOpcode::kAtomicResponse:
      return kQueueAtomicResponse;
    default:
      return kQueueSend;
  }
}

// Fixed RDMAP bodies carried as the DDP payload.
inline constexpr size_t kReadRequestBodyBytes = 28;     // RFC 5040 §4.4
inline constexpr size_t kAtomicRequestBodyBytes = 52;   // RFC 7306 Atomic Request
inline constexpr size_t kAtomicResponseBodyBytes = 12;  // RFC 7306 Atomic Response
inline constexpr size_t kImmediateDataBodyBytes = 8;    // RFC 7306 Immediate Data
inline constexpr size_t kTerminateMinBodyBytes = 4;     // RFC 5040 §4.8: control word only
// Control word + DDP Segment Length + untagged DDP header + Read Request header.
inline constexpr size_t kTerminateMaxBodyBytes =
    4 + 2 + kUntaggedHeaderBytes + kReadRequestBodyBytes;

// ---------------------------------------------------------------------------------------------
// Terminate error codes: RFC 5040 §4.8 (RDMAP), RFC 5041 (DDP), RFC 5044 and RFC 6581 (LLP =
// MPA), as registered by IANA (RFC 6580). The value is the first 16 bits of the Terminate control
// word exactly as on the wire: Layer (4 bits) | Error Type (4 bits) | Error Code (8 bits). Values
// not listed may arrive from a peer; they stay representable and describe() calls them unknown.
enum class TerminateCode : uint16_t {
  // Layer 0: RDMAP.
  kRdmapLocalCatastrophic = 0x0000,
  kRdmapInvalidStag = 0x0100,
  kRdmapBaseBoundsViolation = 0x0101,
  kRdmapAccessRightsViolation = 0x0102,
  kRdmapStagNotAssociated = 0x0103,  // STag not associated with this RDMAP stream
  kRdmapToWrap = 0x0104,
  kRdmapStagCannotBeInvalidated = 0x0109,
  kRdmapProtectionUnspecified = 0x01FF,
  kRdmapInvalidVersion = 0x0205,
  kRdmapUnexpectedOpcode = 0x0206,
  kRdmapStreamCatastrophic = 0x0207,
  kRdmapGlobalCatastrophic = 0x0208,
  kRdmapOperationStagCannotBeInvalidated = 0x0209,
  kRdmapOperationUnspecified = 0x02FF,
  // Layer 1: DDP.
  kDdpLocalCatastrophic = 0x1000,
  kDdpTaggedInvalidStag = 0x1100,
  kDdpTaggedBaseBoundsViolation = 0x1101,
  kDdpTaggedStagNotAssociated = 0x1102,
  kDdpTaggedToWrap = 0x1103,
  kDdpTaggedInvalidVersion = 0x1104,
  kDdpUntaggedInvalidQueue = 0x1201,
  kDdpUntaggedNoBuffer = 0x1202,  // "invalid MSN - no buffer available"
  kDdpUntaggedInvalidMsnRange = 0x1203,
  kDdpUntaggedInvalidMo = 0x1204,  // message offset too large for the buffer
  kDdpUntaggedMessageTooLong = 0x1205,
  kDdpUntaggedInvalidVersion = 0x1206,
  // Layer 2: LLP, error type 0 = MPA.
  kMpaConnectionLost = 0x2001,
  kMpaCrcError = 0x2002,
  kMpaMarkerMismatch = 0x2003,
  kMpaInvalidRequestReply = 0x2004,
  kMpaLocalCatastrophic = 0x2005,  // RFC 6581
  kMpaInsufficientIrd = 0x2006,    // RFC 6581
  kMpaNoMatchingRtr = 0x2007,      // RFC 6581
};

enum class TerminateLayer : uint8_t { kRdmap = 0, kDdp = 1, kLlp = 2 };

constexpr uint8_t terminate_layer(TerminateCode code) {
  return static_cast<uint8_t>(static_cast<uint16_t>(code) >> 12);
}
constexpr uint8_t terminate_error_type(TerminateCode code) {
  return static_cast<uint8_t>((static_cast<uint16_t>(code) >> 8) & 0x0F);
}
constexpr uint8_t terminate_error_code(TerminateCode code) {
  return static_cast<uint8_t>(static_cast<uint16_t>(code) & 0xFF);
}
constexpr TerminateCode make_terminate_code(uint8_t layer, uint8_t error_type, uint8_t error_code) {
  return static_cast<TerminateCode>((layer & 0x0F) << 12 | (error_type & 0x0F) << 8 | error_code);
}

// A short English description, e.g. "DDP untagged: invalid MSN - no buffer available".
std::string_view describe(TerminateCode code);

// ---------------------------------------------------------------------------------------------
// Segment header.

struct SegmentHeader {
  uint16_t ulpdu_length = 0;    // the MPA length field
  uint16_t header_length = 0;   // DDP + RDMAP control header inside the ULPDU: 14 or 18
  uint16_t payload_length = 0;  // ulpdu_length - header_length, fixed RDMAP bodies included
  bool tagged = false;
  bool last = false;  // DDP L flag: last segment of the message
  uint8_t ddp_version = kDdpVersion;
  uint8_t rdmap_version = kRdmapVersion;
  RdmapOpcode opcode = RdmapOpcode::kSend;
  // Tagged buffer model (Write, Read Response): the data sink buffer and offset of this segment.
  uint32_t stag = 0;
  uint64_t tagged_offset = 0;
  // Untagged buffer model.
  uint32_t queue = 0;
  uint32_t msn = 0;              // message sequence number, per queue, starts at 1
  uint32_t message_offset = 0;   // MO of this segment's first payload byte in the message
  uint32_t invalidate_stag = 0;  // RsvdULP2; only Send with Invalidate uses it, else forced to 0

  size_t pad_length() const { return tcp::pad_length(ulpdu_length); }
  // Whole FPDU on the wire, from the length field through the CRC.
  size_t fpdu_length() const { return tcp::fpdu_length(ulpdu_length); }
  // Offset of the payload from the start of the FPDU.
  size_t payload_offset() const { return kMpaLengthBytes + header_length; }

  bool operator==(const SegmentHeader&) const = default;
};

// Checks the two control bytes (FPDU bytes 2 and 3) alone: versions, reserved opcodes, tagged
// flag against the opcode. decode_segment_header repeats this; a receiver may call it after its
// first 4-byte read to fail early. On error, *terminate_code (if given) is set to the code the
// receiver should send in its Terminate message.
Status check_control_bytes(std::byte ddp_control, std::byte rdmap_control,
                           TerminateCode* terminate_code = nullptr);

// Decodes the header of one FPDU. `bytes` starts at the MPA length field and holds at least
// header_bytes_needed(bytes[2]) bytes (more is fine; payload bytes are not looked at). Errors are
// kProtocolError naming what was wrong (kInvalidArgument when `bytes` is too short); it rejects
// DDP/RDMAP versions other than 1, reserved opcodes, a tagged flag that does not match the
// opcode, a wrong queue for the opcode, a ULPDU shorter than its header, Read Request / Atomic /
// Immediate Data / Terminate payloads of the wrong size or spread over several segments, and
// message or tagged offsets that would wrap.
Result<SegmentHeader> decode_segment_header(std::span<const std::byte> bytes,
                                            TerminateCode* terminate_code = nullptr);

// Encoders write the MPA length field followed by the DDP/RDMAP header into `out` and return the
// bytes written (16 tagged, 20 untagged), or 0 when `out` is too small or the arguments cannot
// form a valid header (an untagged opcode given to the tagged encoder, a queue that does not match
// the opcode, a payload that does not fit the 16-bit ULPDU length). The caller then sends the
// payload, then fpdu_trailer().
size_t encode_tagged_header(std::span<std::byte> out, RdmapOpcode opcode, bool last, uint32_t stag,
                            uint64_t tagged_offset, uint16_t payload_length);
size_t encode_untagged_header(std::span<std::byte> out, RdmapOpcode opcode, bool last,
                              uint32_t queue, uint32_t msn, uint32_t message_offset,
                              uint32_t invalidate_stag, uint16_t payload_length);

// Pad plus CRC that close an FPDU whose ULPDU has `ulpdu_length` bytes. With CRC on,
// `crc_so_far` must be crc32c over the length field, header and payload (chain crc32c_update over
// the iovecs); the pad is folded in here. With CRC off the CRC field is zero (RFC 5044 §4).
struct FpduTrailer {
  std::array<std::byte, kMaxTrailerBytes> bytes{};
  uint8_t size = 0;  // pad_length(ulpdu_length) + 4

  std::span<const std::byte> view() const { return {bytes.data(), size}; }
};
FpduTrailer fpdu_trailer(uint16_t ulpdu_length, bool crc_enabled, uint32_t crc_so_far);

// Receive side: `trailer` is the pad + CRC bytes that followed a ULPDU of `ulpdu_length` bytes,
// `crc_so_far` the crc32c over length field, header and payload. Pad contents are not judged
// (RFC 5044 §4: ignored by the receiver except for the CRC), and with CRC off the CRC field is
// ignored too, as siw does. Fails with kProtocolError on a CRC mismatch.
Status check_fpdu_trailer(uint16_t ulpdu_length, std::span<const std::byte> trailer,
                          bool crc_enabled, uint32_t crc_so_far);

// ---------------------------------------------------------------------------------------------
// Fixed bodies. Each encode_* writes into `out` and returns the bytes written, or 0 when `out` is
// too small or the body is invalid; each decode_* requires exactly the body's bytes.

// RFC 5040 §4.4, the payload of an RDMA Read Request on queue 1.
struct ReadRequestBody {
  uint32_t sink_stag = 0;
  uint64_t sink_offset = 0;
  uint32_t read_size = 0;
  uint32_t source_stag = 0;
  uint64_t source_offset = 0;

  bool operator==(const ReadRequestBody&) const = default;
};
size_t encode_read_request(std::span<std::byte> out, const ReadRequestBody& body);
Result<ReadRequestBody> decode_read_request(std::span<const std::byte> bytes);

// RFC 7306 atomic operation codes (AOpCode, low 4 bits of the first body word): FetchAdd 0000b,
// CmpSwap 0010b, the rest reserved, as Wireshark's iWARP dissector also reads them. zrlio/urdma
// sends CmpSwap as 1; we reject that as reserved.
enum class AtomicOpcode : uint8_t { kFetchAdd = 0, kCompareSwap = 2 };

// RFC 7306 Atomic Request, the payload of an Atomic Request message on queue 1:
//   reserved (28 bits) | AOpCode (4 bits), Request Identifier (4), Remote STag (4),
//   Remote Tagged Offset (8), Add or Swap Data (8), Add or Swap Mask (8), Compare Data (8),
//   Compare Mask (8). FetchAdd ignores the compare fields; all masks are sent even when unused.
struct AtomicRequestBody {
  AtomicOpcode opcode = AtomicOpcode::kFetchAdd;
  uint32_t request_id = 0;
  uint32_t remote_stag = 0;
  uint64_t remote_offset = 0;
  uint64_t add_or_swap_data = 0;
  uint64_t add_or_swap_mask = 0;
  uint64_t compare_data = 0;
  uint64_t compare_mask = 0;

  bool operator==(const AtomicRequestBody&) const = default;
};
size_t encode_atomic_request(std::span<std::byte> out, const AtomicRequestBody& body);
Result<AtomicRequestBody> decode_atomic_request(std::span<const std::byte> bytes);

// RFC 7306 Atomic Response, the payload of an Atomic Response message on queue 3.
struct AtomicResponseBody {
  uint32_t request_id = 0;      // Original Request Identifier
  uint64_t original_value = 0;  // Original Remote Data Value
  bool operator==(const AtomicResponseBody&) const = default;
};
size_t encode_atomic_response(std::span<std::byte> out, const AtomicResponseBody& body);
Result<AtomicResponseBody> decode_atomic_response(std::span<const std::byte> bytes);

// RFC 7306 Immediate Data, the payload of an Immediate Data message on queue 0: 8 opaque bytes. We
// carry them as one big-endian 64-bit value; a verbs 32-bit immediate travels in the low half.
struct ImmediateDataBody {
  uint64_t data = 0;
  bool operator==(const ImmediateDataBody&) const = default;
};
size_t encode_immediate_data(std::span<std::byte> out, const ImmediateDataBody& body);
Result<ImmediateDataBody> decode_immediate_data(std::span<const std::byte> bytes);

// RFC 5040 §4.8, the payload of a Terminate on queue 2:
//   Layer|EType|ECode (16 bits), M D R flags (3 bits), reserved (13 bits);
//   when D: DDP Segment Length (2) and the terminated DDP header (14 or 18 bytes, its own T flag
//   tells which); when R: the terminated RDMAP header (the 28-byte Read Request header).
// siw sets R for errors in Send messages without appending an RDMAP header; decode accepts R with
// nothing left (rdmap_header_length 0) for that reason.
struct TerminateBody {
  TerminateCode code = TerminateCode::kRdmapLocalCatastrophic;
  bool segment_length_valid = false;   // M
  bool ddp_header_included = false;    // D
  bool rdmap_header_included = false;  // R
  uint16_t ddp_segment_length = 0;     // present when D, meaningful when M
  uint8_t ddp_header_length = 0;       // 0, 14 or 18
  std::array<std::byte, kUntaggedHeaderBytes> ddp_header{};
  uint8_t rdmap_header_length = 0;  // 0 or 28
  std::array<std::byte, kReadRequestBodyBytes> rdmap_header{};

  size_t encoded_length() const;
  bool operator==(const TerminateBody&) const = default;
};
size_t encode_terminate(std::span<std::byte> out, const TerminateBody& body);
Result<TerminateBody> decode_terminate(std::span<const std::byte> bytes);

// Builds the Terminate body reporting `code` for the FPDU that caused it. `offending` starts at
// that FPDU's length field and holds what the receiver has of it (at least its header to be
// useful; the Read Request body too if it was one). Following RFC 5040 §4.8 and siw, the DDP
// header is copied (D and M set, segment length = its ULPDU length) unless the error is
// catastrophic, a version error, or an LLP error, and the Read Request header is added (R) for a
// faulty Read Request.
TerminateBody make_terminate_body(TerminateCode code, std::span<const std::byte> offending);

}  // namespace wv::verbs::tcp
