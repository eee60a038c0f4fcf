// Tests for the iWARP wire codec of the tcp provider (verbs/providers/tcp): CRC32c, MPA frames and
// negotiation, DDP/RDMAP headers and bodies, the stream parser.
//
// The golden byte vectors below were written by hand from the RFC layouts (RFC 5040 §4, RFC 5041
// §4, RFC 5044 §4 and §7.1, RFC 6581), and their CRCs computed with a separate bitwise CRC32c, so
// a bug shared by an encoder and its decoder cannot make them pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crc32c.h"
#include "ddp_rdmap.h"
#include "mpa.h"
#include "stream_parser.h"

namespace wv::verbs::tcp {
namespace {

using Bytes = std::vector<std::byte>;

Bytes hex_bytes(std::string_view hex) {
  Bytes out;
  int high = -1;
  for (char c : hex) {
    int value = -1;
    if (c >= '0' && c <= '9') value = c - '0';
    if (c >= 'a' && c <= 'f') value = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') value = c - 'A' + 10;
    if (value < 0) continue;  // spaces and separators
    if (high < 0) {
      high = value;
    } else {
      out.push_back(static_cast<std::byte>(high << 4 | value));
      high = -1;
    }
  }
  EXPECT_EQ(high, -1) << "odd number of hex digits in " << hex;
  return out;
}

Bytes text_bytes(std::string_view text) {
  Bytes out;
  for (char c : text) out.push_back(static_cast<std::byte>(c));
  return out;
}

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::byte b : bytes) {
    const auto v = std::to_integer<unsigned>(b);
    out += kDigits[v >> 4];
    out += kDigits[v & 0xF];
  }
  return out;
}

Bytes concat(std::initializer_list<std::span<const std::byte>> parts) {
  Bytes out;
  for (auto part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

// Independent reference: one bit at a time, straight from the reflected polynomial.
uint32_t crc32c_bitwise(std::span<const std::byte> data) {
  uint32_t crc = 0xFFFFFFFF;
  for (std::byte b : data) {
    crc ^= std::to_integer<uint32_t>(b);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) != 0 ? 0x82F63B78 : 0);
  }
  return ~crc;
}

void append_bytes(Bytes& out, std::span<const std::byte> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

Bytes filled(size_t size, uint8_t value) {
  return Bytes(size, static_cast<std::byte>(value));
}

// =============================================================================================
// CRC32c

using CrcFn = uint32_t (*)(uint32_t, std::span<const std::byte>);

struct CrcImpl {
  const char* name;
  CrcFn fn;
};

const std::array<CrcImpl, 3> kCrcImpls = {{{"table", &crc32c_update_table},
                                           {"sse42", &crc32c_update_sse42},
                                           {"dispatch", &crc32c_update}}};

TEST(Crc32c, Rfc3720KnownAnswers) {
  Bytes ascending(32), descending(32);
  for (size_t i = 0; i < 32; ++i) {
    ascending[i] = static_cast<std::byte>(i);
    descending[i] = static_cast<std::byte>(31 - i);
  }
  for (const CrcImpl& impl : kCrcImpls) {
    SCOPED_TRACE(impl.name);
    EXPECT_EQ(impl.fn(0, filled(32, 0x00)), 0x8A9136AAu);  // RFC 3720 B.4
    EXPECT_EQ(impl.fn(0, filled(32, 0xFF)), 0x62A8AB43u);
    EXPECT_EQ(impl.fn(0, ascending), 0x46DD794Eu);
    EXPECT_EQ(impl.fn(0, descending), 0x113FDB5Cu);
    EXPECT_EQ(impl.fn(0, text_bytes("123456789")), 0xE3069283u);  // the usual check value
    EXPECT_EQ(impl.fn(0, {}), 0u);
  }
  if (!crc32c_sse42_available()) {
    GTEST_LOG_(INFO) << "this CPU lacks SSE4.2: the sse42 case exercised the table fallback";
  }
}

TEST(Crc32c, AllLengthsAlignmentsAndChainingMatchBitwiseReference) {
  std::mt19937 rng(7);
  Bytes buffer(600);
  for (auto& b : buffer) b = static_cast<std::byte>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t length = 0; length + offset <= 300; ++length) {
      const std::span<const std::byte> data(buffer.data() + offset, length);
      const uint32_t expected = crc32c_bitwise(data);
      for (const CrcImpl& impl : kCrcImpls) {
        ASSERT_EQ(impl.fn(0, data), expected)
            << impl.name << " offset " << offset << " length " << length;
      }
    }
  }
  const std::span<const std::byte> data(buffer.data(), 257);
  const uint32_t expected = crc32c_bitwise(data);
  for (size_t split = 0; split <= data.size(); ++split) {
    for (const CrcImpl& impl : kCrcImpls) {
      ASSERT_EQ(impl.fn(impl.fn(0, data.first(split)), data.subspan(split)), expected)
          << impl.name << " split " << split;
    }
  }
}

// =============================================================================================
// Golden FPDUs

TEST(GoldenFpdu, SendWithCrc) {
  // Send, L=1, QN 0, MSN 1, MO 0, payload "abcd": ULPDU = 18 + 4 = 22, no pad.
  const Bytes expected = hex_bytes(
      "0016"        // ULPDU_LENGTH
      "41"          // DDP: T=0 L=1 DV=1
      "43"          // RDMAP: RV=1 opcode 3 (Send)
      "00000000"    // RsvdULP2
      "00000000"    // QN 0
      "00000001"    // MSN 1
      "00000000"    // MO 0
      "61626364"    // "abcd"
      "71644d92");  // CRC32c 0x924D6471, least significant byte first
  EXPECT_EQ(crc32c_bitwise(std::span(expected).first(24)), 0x924D6471u);

  Bytes wire(kMaxFpduHeaderBytes);
  ASSERT_EQ(encode_untagged_header(wire, RdmapOpcode::kSend, true, kQueueSend, 1, 0, 0, 4), 20u);
  const Bytes payload = text_bytes("abcd");
  wire.insert(wire.end(), payload.begin(), payload.end());
  const FpduTrailer trailer = fpdu_trailer(22, true, crc32c(wire));
  append_bytes(wire, trailer.view());
  EXPECT_EQ(to_hex(wire), to_hex(expected));

  auto header = decode_segment_header(expected);
  ASSERT_TRUE(header) << header.status().to_string();
  EXPECT_EQ(header->ulpdu_length, 22);
  EXPECT_EQ(header->header_length, 18);
  EXPECT_EQ(header->payload_length, 4);
  EXPECT_FALSE(header->tagged);
  EXPECT_TRUE(header->last);
  EXPECT_EQ(header->opcode, RdmapOpcode::kSend);
  EXPECT_EQ(header->queue, 0u);
  EXPECT_EQ(header->msn, 1u);
  EXPECT_EQ(header->message_offset, 0u);
  EXPECT_EQ(header->pad_length(), 0u);
  EXPECT_EQ(header->fpdu_length(), expected.size());
  EXPECT_TRUE(check_fpdu_trailer(22, std::span(expected).subspan(24), true,
                                 crc32c(std::span(expected).first(24))));
}

TEST(GoldenFpdu, RdmaWriteWithPadAndCrc) {
  // Write, L=1, STag 0x11223344, TO 0x0102030405060708, payload "xyz": ULPDU 17, 1 pad byte.
  const Bytes expected = hex_bytes(
      "0011"              // ULPDU_LENGTH 17
      "c1"                // DDP: T=1 L=1 DV=1
      "40"                // RDMAP: RV=1 opcode 0 (Write)
      "11223344"          // STag
      "0102030405060708"  // TO
      "78797a"            // "xyz"
      "00"                // pad
      "db005937");        // CRC32c 0x375900DB
  EXPECT_EQ(crc32c_bitwise(std::span(expected).first(20)), 0x375900DBu);

  Bytes wire(kMinFpduHeaderBytes);
  ASSERT_EQ(
      encode_tagged_header(wire, RdmapOpcode::kWrite, true, 0x11223344, 0x0102030405060708, 3),
      16u);
  const Bytes payload = text_bytes("xyz");
  wire.insert(wire.end(), payload.begin(), payload.end());
  const FpduTrailer trailer = fpdu_trailer(17, true, crc32c(wire));
  EXPECT_EQ(trailer.size, 5);
  append_bytes(wire, trailer.view());
  EXPECT_EQ(to_hex(wire), to_hex(expected));

  auto header = decode_segment_header(expected);
  ASSERT_TRUE(header) << header.status().to_string();
  EXPECT_TRUE(header->tagged);
  EXPECT_EQ(header->opcode, RdmapOpcode::kWrite);
  EXPECT_EQ(header->stag, 0x11223344u);
  EXPECT_EQ(header->tagged_offset, 0x0102030405060708u);
  EXPECT_EQ(header->header_length, 14);
  EXPECT_EQ(header->payload_length, 3);
  EXPECT_EQ(header->pad_length(), 1u);
  EXPECT_EQ(header->fpdu_length(), expected.size());
}

TEST(GoldenFpdu, ReadRequestWithCrc) {
  const Bytes expected = hex_bytes(
      "002e"              // ULPDU_LENGTH 46 = 18 + 28
      "41"                // DDP: untagged, L=1, DV=1
      "41"                // RDMAP: RV=1 opcode 1 (Read Request)
      "00000000"          // RsvdULP2
      "00000001"          // QN 1
      "00000005"          // MSN 5
      "00000000"          // MO 0
      "aabbccdd"          // Data Sink STag
      "0000000000001000"  // Data Sink TO
      "00002000"          // RDMA Read Message Size
      "01020304"          // Data Source STag
      "ffeeddccbbaa9988"  // Data Source TO
      "fa656a3a");        // CRC32c 0x3A6A65FA
  EXPECT_EQ(crc32c_bitwise(std::span(expected).first(48)), 0x3A6A65FAu);

  const ReadRequestBody body{.sink_stag = 0xAABBCCDD,
                             .sink_offset = 0x1000,
                             .read_size = 0x2000,
                             .source_stag = 0x01020304,
                             .source_offset = 0xFFEEDDCCBBAA9988};
  Bytes wire(kMaxFpduHeaderBytes + kReadRequestBodyBytes);
  ASSERT_EQ(encode_untagged_header(wire, RdmapOpcode::kReadRequest, true, kQueueReadRequest, 5, 0,
                                   0, kReadRequestBodyBytes),
            20u);
  ASSERT_EQ(encode_read_request(std::span(wire).subspan(20), body), 28u);
  const FpduTrailer trailer = fpdu_trailer(46, true, crc32c(wire));
  append_bytes(wire, trailer.view());
  EXPECT_EQ(to_hex(wire), to_hex(expected));

  auto header = decode_segment_header(expected);
  ASSERT_TRUE(header) << header.status().to_string();
  EXPECT_EQ(header->opcode, RdmapOpcode::kReadRequest);
  EXPECT_EQ(header->queue, 1u);
  EXPECT_EQ(header->msn, 5u);
  auto decoded = decode_read_request(std::span(expected).subspan(20, 28));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(*decoded, body);
}

TEST(GoldenFpdu, CrcOffTrailerIsZero) {
  const FpduTrailer trailer = fpdu_trailer(17, false, 0x12345678);
  EXPECT_EQ(to_hex(trailer.view()), "0000000000");
  EXPECT_EQ(fpdu_trailer(22, false, 0).size, 4);
  EXPECT_EQ(fpdu_trailer(20, false, 0).size, 6);  // 2 + 20 = 22: two pad bytes
  EXPECT_EQ(fpdu_trailer(19, false, 0).size, 7);
}

TEST(GoldenFpdu, TerminateForInvalidQueue) {
  // A Send that arrived on queue 1, answered with DDP untagged error "invalid QN".
  const Bytes offending = hex_bytes("0016 41 43 00000000 00000001 00000001 00000000 61626364");
  auto header = decode_segment_header(offending);
  ASSERT_FALSE(header);

  const TerminateBody body =
      make_terminate_body(TerminateCode::kDdpUntaggedInvalidQueue, offending);
  Bytes out(kTerminateMaxBodyBytes);
  const size_t length = encode_terminate(out, body);
  out.resize(length);
  EXPECT_EQ(to_hex(out),
            to_hex(hex_bytes("12 01"  // layer 1 (DDP), etype 2 (untagged), ecode 1 (invalid QN)
                             "c0 00"  // M=1 D=1 R=0
                             "0016"   // DDP Segment Length: the offending ULPDU length
                             "41 43 00000000 00000001 00000001 00000000")));  // its DDP header

  Bytes wire(kMaxFpduHeaderBytes);
  ASSERT_EQ(encode_untagged_header(wire, RdmapOpcode::kTerminate, true, kQueueTerminate, 1, 0, 0,
                                   static_cast<uint16_t>(length)),
            20u);
  EXPECT_EQ(to_hex(wire), to_hex(hex_bytes("002a 41 47 00000000 00000002 00000001 00000000")));
}

// =============================================================================================
// Segment headers

TEST(SegmentHeader, HeaderBytesNeededFromDdpControl) {
  EXPECT_EQ(header_bytes_needed(std::byte{0xC1}), 16u);
  EXPECT_EQ(header_bytes_needed(std::byte{0x81}), 16u);
  EXPECT_EQ(header_bytes_needed(std::byte{0x41}), 20u);
  EXPECT_EQ(header_bytes_needed(std::byte{0x01}), 20u);
  EXPECT_EQ(pad_length(14), 0u);
  EXPECT_EQ(pad_length(15), 3u);
  EXPECT_EQ(pad_length(16), 2u);
  EXPECT_EQ(pad_length(17), 1u);
  EXPECT_EQ(fpdu_length(18), 24u);
  EXPECT_EQ(fpdu_length(65535), kMaxFpduBytes);
}

TEST(SegmentHeader, TaggedRoundTrip) {
  for (RdmapOpcode opcode : {RdmapOpcode::kWrite, RdmapOpcode::kReadResponse}) {
    for (bool last : {false, true}) {
      for (uint16_t payload :
           {uint16_t{0}, uint16_t{1}, uint16_t{4096}, static_cast<uint16_t>(kMaxTaggedPayload)}) {
        Bytes out(kMinFpduHeaderBytes);
        ASSERT_EQ(encode_tagged_header(out, opcode, last, 0xDEADBEEF, 0xFFFFFFFFFFFF0000, payload),
                  16u);
        auto header = decode_segment_header(out);
        ASSERT_TRUE(header) << header.status().to_string();
        SegmentHeader expected;
        expected.ulpdu_length = static_cast<uint16_t>(14 + payload);
        expected.header_length = 14;
        expected.payload_length = payload;
        expected.tagged = true;
        expected.last = last;
        expected.opcode = opcode;
        expected.stag = 0xDEADBEEF;
        expected.tagged_offset = 0xFFFFFFFFFFFF0000;
        EXPECT_EQ(*header, expected);
      }
    }
  }
}

struct UntaggedCase {
  RdmapOpcode opcode;
  uint16_t payload;
  bool last;
  uint32_t mo;
};

TEST(SegmentHeader, UntaggedRoundTripForEveryOpcode) {
  const std::vector<UntaggedCase> cases = {
      {RdmapOpcode::kSend, 0, true, 0},
      {RdmapOpcode::kSend, 1000, false, 4096},
      {RdmapOpcode::kSendInvalidate, 7, true, 12},
      {RdmapOpcode::kSendSolicited, 65517, false, 0},
      {RdmapOpcode::kSendSolicitedInvalidate, 3, true, 0},
      {RdmapOpcode::kReadRequest, 28, true, 0},
      {RdmapOpcode::kTerminate, 4, true, 0},
      {RdmapOpcode::kTerminate, 52, true, 0},
      {RdmapOpcode::kImmediateData, 8, true, 0},
      {RdmapOpcode::kImmediateDataSolicited, 8, true, 0},
      {RdmapOpcode::kAtomicRequest, 52, true, 0},
      {RdmapOpcode::kAtomicResponse, 12, true, 0},
  };
  for (const UntaggedCase& c : cases) {
    SCOPED_TRACE(std::string(to_string(c.opcode)));
    Bytes out(kMaxFpduHeaderBytes);
    const uint32_t queue = queue_for(c.opcode);
    ASSERT_EQ(encode_untagged_header(out, c.opcode, c.last, queue, 0x01020304, c.mo, 0xCAFEF00D,
                                     c.payload),
              20u);
    auto header = decode_segment_header(out);
    ASSERT_TRUE(header) << header.status().to_string();
    SegmentHeader expected;
    expected.ulpdu_length = static_cast<uint16_t>(18 + c.payload);
    expected.header_length = 18;
    expected.payload_length = c.payload;
    expected.last = c.last;
    expected.opcode = c.opcode;
    expected.queue = queue;
    expected.msn = 0x01020304;
    expected.message_offset = c.mo;
    expected.invalidate_stag = carries_invalidate_stag(c.opcode) ? 0xCAFEF00D : 0;
    EXPECT_EQ(*header, expected);
    // RsvdULP2 goes out as zero unless it carries an STag to invalidate.
    EXPECT_EQ(to_hex(std::span(out).subspan(4, 4)),
              carries_invalidate_stag(c.opcode) ? "cafef00d" : "00000000");
  }
}

TEST(SegmentHeader, QueueNumbers) {
  EXPECT_EQ(queue_for(RdmapOpcode::kSend), 0u);
  EXPECT_EQ(queue_for(RdmapOpcode::kSendSolicitedInvalidate), 0u);
  EXPECT_EQ(queue_for(RdmapOpcode::kImmediateData), 0u);
  EXPECT_EQ(queue_for(RdmapOpcode::kReadRequest), 1u);
  EXPECT_EQ(queue_for(RdmapOpcode::kAtomicRequest), 1u);
  EXPECT_EQ(queue_for(RdmapOpcode::kTerminate), 2u);
  EXPECT_EQ(queue_for(RdmapOpcode::kAtomicResponse), 3u);
}

TEST(SegmentHeader, EncodersRefuseInvalidArguments) {
  Bytes out(kMaxFpduHeaderBytes);
  Bytes small(15);
  EXPECT_EQ(encode_tagged_header(out, RdmapOpcode::kSend, true, 1, 0, 0), 0u);
  EXPECT_EQ(encode_tagged_header(small, RdmapOpcode::kWrite, true, 1, 0, 0), 0u);
  EXPECT_EQ(encode_tagged_header(out, RdmapOpcode::kWrite, true, 1, 0,
                                 static_cast<uint16_t>(kMaxTaggedPayload + 1)),
            0u);
  EXPECT_EQ(encode_tagged_header(out, RdmapOpcode::kWrite, true, 1, ~uint64_t{0}, 2), 0u);
  EXPECT_EQ(encode_tagged_header(out, static_cast<RdmapOpcode>(12), true, 1, 0, 0), 0u);
  EXPECT_EQ(encode_untagged_header(out, RdmapOpcode::kWrite, true, 0, 1, 0, 0, 0), 0u);
  EXPECT_EQ(encode_untagged_header(out, RdmapOpcode::kSend, true, 1, 1, 0, 0, 0), 0u);
  EXPECT_EQ(
      encode_untagged_header(std::span(out).first(19), RdmapOpcode::kSend, true, 0, 1, 0, 0, 0),
      0u);
  EXPECT_EQ(encode_untagged_header(out, RdmapOpcode::kSend, true, 0, 1, 0xFFFFFFFF, 0, 2), 0u);
  EXPECT_EQ(encode_untagged_header(out, RdmapOpcode::kReadRequest, true, 1, 1, 0, 0, 27), 0u);
  EXPECT_EQ(encode_untagged_header(out, RdmapOpcode::kReadRequest, false, 1, 1, 0, 0, 28), 0u);
  EXPECT_EQ(encode_untagged_header(out, RdmapOpcode::kAtomicResponse, true, 1, 1, 0, 0, 12), 0u);
  EXPECT_EQ(encode_untagged_header(out, RdmapOpcode::kSend, true, 0, 1, 0, 0,
                                   static_cast<uint16_t>(kMaxUntaggedPayload + 1)),
            0u);
}

// ---- Rejections ----------------------------------------------------------------------------

struct Rejection {
  std::string name;
  Bytes bytes;
  std::string message_part;
  TerminateCode code;
};

Bytes untagged(uint8_t ddp, uint8_t rdmap, uint16_t ulpdu, uint32_t qn, uint32_t msn, uint32_t mo) {
  Bytes out(kMaxFpduHeaderBytes);
  store_be16(out.data(), ulpdu);
  out[2] = static_cast<std::byte>(ddp);
  out[3] = static_cast<std::byte>(rdmap);
  store_be32(out.data() + 8, qn);
  store_be32(out.data() + 12, msn);
  store_be32(out.data() + 16, mo);
  return out;
}

Bytes tagged(uint8_t ddp, uint8_t rdmap, uint16_t ulpdu, uint32_t stag, uint64_t to) {
  Bytes out(kMinFpduHeaderBytes);
  store_be16(out.data(), ulpdu);
  out[2] = static_cast<std::byte>(ddp);
  out[3] = static_cast<std::byte>(rdmap);
  store_be32(out.data() + 4, stag);
  store_be64(out.data() + 8, to);
  return out;
}

TEST(SegmentHeader, RejectsMalformedHeadersWithClearMessages) {
  using TC = TerminateCode;
  const std::vector<Rejection> cases = {
      {"DDP version 0", untagged(0x40, 0x43, 22, 0, 1, 0), "DDP version 0",
       TC::kDdpUntaggedInvalidVersion},
      {"DDP version 2", untagged(0x42, 0x43, 22, 0, 1, 0), "DDP version 2",
       TC::kDdpUntaggedInvalidVersion},
      {"tagged DDP version 3", tagged(0xC3, 0x40, 14, 1, 0), "DDP version 3",
       TC::kDdpTaggedInvalidVersion},
      {"RDMAP version 0", untagged(0x41, 0x03, 22, 0, 1, 0), "RDMAP version 0",
       TC::kRdmapInvalidVersion},
      {"RDMAP version 2", untagged(0x41, 0x83, 22, 0, 1, 0), "RDMAP version 2",
       TC::kRdmapInvalidVersion},
      {"reserved opcode 12", untagged(0x41, 0x4C, 22, 0, 1, 0), "reserved RDMAP opcode 12",
       TC::kRdmapUnexpectedOpcode},
      {"reserved opcode 15", tagged(0xC1, 0x4F, 14, 0, 0), "reserved RDMAP opcode 15",
       TC::kRdmapUnexpectedOpcode},
      {"tagged Send", tagged(0xC1, 0x43, 14, 0, 0), "Send in a tagged DDP segment",
       TC::kRdmapUnexpectedOpcode},
      {"untagged Write", untagged(0x41, 0x40, 18, 0, 1, 0), "Write in an untagged DDP segment",
       TC::kRdmapUnexpectedOpcode},
      {"untagged Read Response", untagged(0x41, 0x42, 18, 0, 1, 0), "Read Response in an untagged",
       TC::kRdmapUnexpectedOpcode},
      {"tagged Read Request", tagged(0xC1, 0x41, 42, 0, 0), "Read Request in a tagged",
       TC::kRdmapUnexpectedOpcode},
      {"ULPDU below untagged header", untagged(0x41, 0x43, 17, 0, 1, 0),
       "ULPDU length 17 is shorter than the 18-byte untagged", TC::kDdpLocalCatastrophic},
      {"ULPDU below tagged header", tagged(0xC1, 0x40, 0, 1, 0),
       "ULPDU length 0 is shorter than the 14-byte tagged", TC::kDdpLocalCatastrophic},
      {"Send on queue 1", untagged(0x41, 0x43, 22, 1, 1, 0),
       "Send on DDP queue 1, expected queue 0", TC::kDdpUntaggedInvalidQueue},
      {"Read Request on queue 0", untagged(0x41, 0x41, 46, 0, 1, 0),
       "on DDP queue 0, expected queue 1", TC::kDdpUntaggedInvalidQueue},
      {"Terminate on queue 0", untagged(0x41, 0x47, 22, 0, 1, 0), "expected queue 2",
       TC::kDdpUntaggedInvalidQueue},
      {"Atomic Response on queue 1", untagged(0x41, 0x4B, 30, 1, 1, 0), "expected queue 3",
       TC::kDdpUntaggedInvalidQueue},
      {"queue 7", untagged(0x41, 0x43, 22, 7, 1, 0), "queue 7", TC::kDdpUntaggedInvalidQueue},
      {"Read Request too short", untagged(0x41, 0x41, 45, 1, 1, 0),
       "Read Request payload is 27 bytes, must be exactly 28", TC::kRdmapOperationUnspecified},
      {"Read Request too long", untagged(0x41, 0x41, 47, 1, 1, 0),
       "Read Request payload is 29 bytes, must be exactly 28", TC::kDdpUntaggedMessageTooLong},
      {"Read Request not last", untagged(0x01, 0x41, 46, 1, 1, 0), "single DDP segment",
       TC::kRdmapOperationUnspecified},
      {"Read Request with MO", untagged(0x41, 0x41, 46, 1, 1, 28), "MO=28",
       TC::kDdpUntaggedInvalidMo},
      {"Atomic Request too short", untagged(0x41, 0x4A, 69, 1, 1, 0),
       "Atomic Request payload is 51 bytes, must be exactly 52", TC::kRdmapOperationUnspecified},
      {"Atomic Response too long", untagged(0x41, 0x4B, 31, 3, 1, 0),
       "Atomic Response payload is 13 bytes", TC::kDdpUntaggedMessageTooLong},
      {"Immediate Data too short", untagged(0x41, 0x48, 25, 0, 1, 0),
       "Immediate Data payload is 7 bytes", TC::kRdmapOperationUnspecified},
      {"Immediate Data too long", untagged(0x41, 0x49, 27, 0, 1, 0),
       "Immediate Data with Solicited Event payload is 9 bytes", TC::kDdpUntaggedMessageTooLong},
      {"Terminate too short", untagged(0x41, 0x47, 21, 2, 1, 0),
       "Terminate payload is 3 bytes, must be between 4 and 52", TC::kRdmapOperationUnspecified},
      {"Terminate too long", untagged(0x41, 0x47, 71, 2, 1, 0), "Terminate payload is 53 bytes",
       TC::kDdpUntaggedMessageTooLong},
      {"MO wraps", untagged(0x01, 0x43, 28, 0, 1, 0xFFFFFFF8), "message offset 4294967288 plus 10",
       TC::kDdpUntaggedInvalidMo},
      {"TO wraps", tagged(0x81, 0x40, 30, 1, 0xFFFFFFFFFFFFFFF8), "wraps past 2^64",
       TC::kDdpTaggedToWrap},
  };
  for (const Rejection& c : cases) {
    SCOPED_TRACE(c.name);
    TerminateCode code = TerminateCode::kMpaConnectionLost;
    auto header = decode_segment_header(c.bytes, &code);
    ASSERT_FALSE(header);
    EXPECT_EQ(header.status().code(), Errc::kProtocolError);
    EXPECT_NE(header.status().message().find(c.message_part), std::string::npos)
        << header.status().message();
    EXPECT_EQ(code, c.code) << describe(code);
  }
}

TEST(SegmentHeader, BoundaryValuesAreAccepted) {
  // The last byte of the 2^32 message offset space, and of the 2^64 tagged space.
  auto mo_edge = decode_segment_header(untagged(0x01, 0x43, 20, 0, 1, 0xFFFFFFFE));
  EXPECT_TRUE(mo_edge) << mo_edge.status().to_string();
  auto to_edge = decode_segment_header(tagged(0x81, 0x40, 16, 1, 0xFFFFFFFFFFFFFFFE));
  EXPECT_TRUE(to_edge) << to_edge.status().to_string();
  auto zero_at_max = decode_segment_header(tagged(0x81, 0x40, 14, 1, ~uint64_t{0}));
  EXPECT_TRUE(zero_at_max) << zero_at_max.status().to_string();
  // Reserved bits are ignored on receipt (RFC 5041 §4.1, RFC 5040 §4.1).
  auto reserved = decode_segment_header(untagged(0x41 | 0x3C, 0x43 | 0x30, 22, 0, 1, 0));
  ASSERT_TRUE(reserved) << reserved.status().to_string();
  EXPECT_EQ(reserved->opcode, RdmapOpcode::kSend);
}

TEST(SegmentHeader, ShortInputIsAnInvalidArgument) {
  const Bytes full = untagged(0x41, 0x43, 22, 0, 1, 0);
  for (size_t size = 0; size < full.size(); ++size) {
    auto header = decode_segment_header(std::span(full).first(size));
    ASSERT_FALSE(header);
    EXPECT_EQ(header.status().code(), Errc::kInvalidArgument) << size;
  }
  const Bytes tagged_full = tagged(0xC1, 0x40, 14, 0, 0);
  EXPECT_FALSE(decode_segment_header(std::span(tagged_full).first(15)));
  EXPECT_TRUE(decode_segment_header(tagged_full));
}

// =============================================================================================
// Fixed bodies

TEST(Bodies, AtomicRequestLayoutAndRoundTrip) {
  const AtomicRequestBody body{.opcode = AtomicOpcode::kCompareSwap,
                               .request_id = 0x01020304,
                               .remote_stag = 0x05060708,
                               .remote_offset = 0x1112131415161718,
                               .add_or_swap_data = 0x2122232425262728,
                               .add_or_swap_mask = 0x3132333435363738,
                               .compare_data = 0x4142434445464748,
                               .compare_mask = 0x5152535455565758};
  Bytes out(kAtomicRequestBodyBytes);
  ASSERT_EQ(encode_atomic_request(out, body), 52u);
  EXPECT_EQ(to_hex(out), to_hex(hex_bytes("00000002 01020304 05060708 1112131415161718"
                                          "2122232425262728 3132333435363738 4142434445464748"
                                          "5152535455565758")));
  auto decoded = decode_atomic_request(out);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(*decoded, body);
  // The 28 reserved bits are not checked on receipt.
  out[0] = std::byte{0xFF};
  EXPECT_TRUE(decode_atomic_request(out));
  for (uint8_t reserved_opcode : {1, 3, 15}) {
    out[3] = static_cast<std::byte>(reserved_opcode);
    auto rejected = decode_atomic_request(out);
    ASSERT_FALSE(rejected);
    EXPECT_NE(rejected.status().message().find("atomic opcode"), std::string::npos);
  }
  AtomicRequestBody bad = body;
  bad.opcode = static_cast<AtomicOpcode>(1);
  EXPECT_EQ(encode_atomic_request(out, bad), 0u);
}

TEST(Bodies, AtomicResponseImmediateAndReadRequestRoundTrip) {
  Bytes out(64);
  const AtomicResponseBody response{.request_id = 0xA1A2A3A4, .original_value = 0xB1B2B3B4B5B6B7B8};
  ASSERT_EQ(encode_atomic_response(out, response), 12u);
  EXPECT_EQ(to_hex(std::span(out).first(12)), "a1a2a3a4b1b2b3b4b5b6b7b8");
  EXPECT_EQ(decode_atomic_response(std::span(out).first(12)).value(), response);

  const ImmediateDataBody immediate{.data = 0x0102030405060708};
  ASSERT_EQ(encode_immediate_data(out, immediate), 8u);
  EXPECT_EQ(to_hex(std::span(out).first(8)), "0102030405060708");
  EXPECT_EQ(decode_immediate_data(std::span(out).first(8)).value(), immediate);

  const ReadRequestBody read{
      .sink_stag = 1, .sink_offset = 2, .read_size = 3, .source_stag = 4, .source_offset = 5};
  ASSERT_EQ(encode_read_request(out, read), 28u);
  EXPECT_EQ(decode_read_request(std::span(out).first(28)).value(), read);
}

TEST(Bodies, DecodersRejectWrongLengths) {
  const Bytes buffer(80);
  for (size_t size = 0; size < buffer.size(); ++size) {
    const std::span<const std::byte> bytes(buffer.data(), size);
    EXPECT_EQ(static_cast<bool>(decode_read_request(bytes)), size == 28) << size;
    EXPECT_EQ(static_cast<bool>(decode_atomic_request(bytes)), size == 52) << size;
    EXPECT_EQ(static_cast<bool>(decode_atomic_response(bytes)), size == 12) << size;
    EXPECT_EQ(static_cast<bool>(decode_immediate_data(bytes)), size == 8) << size;
  }
  auto wrong = decode_read_request(std::span(buffer).first(27));
  EXPECT_EQ(wrong.status().code(), Errc::kProtocolError);
  EXPECT_NE(wrong.status().message().find("must be 28 bytes, got 27"), std::string::npos);
  Bytes small(27);
  EXPECT_EQ(encode_read_request(small, {}), 0u);
  EXPECT_EQ(encode_atomic_request(std::span(small).first(27), {}), 0u);
  EXPECT_EQ(encode_atomic_response(std::span(small).first(11), {}), 0u);
  EXPECT_EQ(encode_immediate_data(std::span(small).first(7), {}), 0u);
}

TEST(Terminate, RoundTripsEveryShape) {
  const Bytes send_fpdu = hex_bytes("0016 41 43 00000000 00000000 00000001 00000000 61626364");
  const Bytes write_fpdu = hex_bytes("0011 c1 40 11223344 0102030405060708 78797a");
  const Bytes read_fpdu = hex_bytes(
      "002e 41 41 00000000 00000001 00000005 00000000 aabbccdd 0000000000001000 00002000 "
      "01020304 ffeeddccbbaa9988");
  struct Case {
    TerminateCode code;
    const Bytes* offending;
    size_t expected_length;
    bool d;
    bool r;
  };
  const std::vector<Case> cases = {
      {TerminateCode::kRdmapLocalCatastrophic, &send_fpdu, 4, false, false},
      {TerminateCode::kMpaCrcError, &send_fpdu, 4, false, false},
      {TerminateCode::kRdmapUnexpectedOpcode, &send_fpdu, 4, false, false},
      {TerminateCode::kDdpUntaggedInvalidVersion, &send_fpdu, 4, false, false},
      {TerminateCode::kDdpUntaggedNoBuffer, &send_fpdu, 4 + 2 + 18, true, false},
      {TerminateCode::kDdpTaggedBaseBoundsViolation, &write_fpdu, 4 + 2 + 14, true, false},
      {TerminateCode::kRdmapAccessRightsViolation, &write_fpdu, 4 + 2 + 14, true, false},
      {TerminateCode::kRdmapInvalidStag, &read_fpdu, 4 + 2 + 18 + 28, true, true},
      {TerminateCode::kDdpUntaggedInvalidMsnRange, &read_fpdu, 4 + 2 + 18, true, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(describe(c.code)));
    const TerminateBody body = make_terminate_body(c.code, *c.offending);
    EXPECT_EQ(body.ddp_header_included, c.d);
    EXPECT_EQ(body.segment_length_valid, c.d);
    EXPECT_EQ(body.rdmap_header_included, c.r);
    EXPECT_EQ(body.encoded_length(), c.expected_length);
    Bytes out(kTerminateMaxBodyBytes);
    const size_t length = encode_terminate(out, body);
    ASSERT_EQ(length, c.expected_length);
    out.resize(length);
    auto decoded = decode_terminate(out);
    ASSERT_TRUE(decoded) << decoded.status().to_string();
    EXPECT_EQ(*decoded, body);
    EXPECT_EQ(load_be16(out.data()), static_cast<uint16_t>(c.code));
    if (c.d) {
      EXPECT_EQ(to_hex(std::span(decoded->ddp_header).first(decoded->ddp_header_length)),
                to_hex(std::span(*c.offending).subspan(2, decoded->ddp_header_length)));
      EXPECT_EQ(decoded->ddp_segment_length, load_be16(c.offending->data()));
    }
  }
}

TEST(Terminate, DecodeAcceptsSiwSendErrorWithRFlagButNoRdmapHeader) {
  // siw, RDMAP remote protection error on a Send: M, D and R set, only the DDP header follows.
  const Bytes body = hex_bytes("0100 e000 0016 41 43 00000000 00000000 00000001 00000000");
  auto decoded = decode_terminate(body);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(decoded->code, TerminateCode::kRdmapInvalidStag);
  EXPECT_TRUE(decoded->rdmap_header_included);
  EXPECT_EQ(decoded->rdmap_header_length, 0);
  EXPECT_EQ(decoded->ddp_header_length, 18);
}

TEST(Terminate, DecodeRejectsMalformedBodies) {
  struct Case {
    const char* name;
    Bytes bytes;
    const char* message_part;
  };
  const std::vector<Case> cases = {
      {"too short", hex_bytes("0100 00"), "4 to 52 bytes, got 3"},
      {"too long", Bytes(53), "got 53"},
      {"D without room", hex_bytes("1201 4000 00"), "no room"},
      {"D with a cut header", hex_bytes("1201 4000 0016 41 43 000000"), "terminated untagged"},
      {"R with a cut header", hex_bytes("0100 2000 00112233"), "only 4 of the 28"},
      {"trailing bytes", hex_bytes("0100 0000 00"), "1 unexpected bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto decoded = decode_terminate(c.bytes);
    ASSERT_FALSE(decoded);
    EXPECT_EQ(decoded.status().code(), Errc::kProtocolError);
    EXPECT_NE(decoded.status().message().find(c.message_part), std::string::npos)
        << decoded.status().message();
  }
}

TEST(Terminate, EncodeRefusesInconsistentBodies) {
  Bytes out(kTerminateMaxBodyBytes);
  TerminateBody body;
  body.ddp_header_included = true;
  body.ddp_header_length = 14;  // but ddp_header[0] has no T flag: an untagged header is 18
  EXPECT_EQ(encode_terminate(out, body), 0u);
  body.ddp_header_length = 18;
  EXPECT_EQ(encode_terminate(out, body), 24u);
  body.rdmap_header_included = true;  // without the 28 bytes
  EXPECT_EQ(encode_terminate(out, body), 0u);
  body.rdmap_header_length = 28;
  EXPECT_EQ(encode_terminate(out, body), 52u);
  EXPECT_EQ(encode_terminate(std::span(out).first(51), body), 0u);
}

TEST(Terminate, CodesDescribeThemselves) {
  EXPECT_EQ(describe(TerminateCode::kDdpUntaggedNoBuffer),
            "DDP untagged buffer: invalid MSN - no buffer available");
  EXPECT_EQ(describe(TerminateCode::kMpaCrcError), "MPA: CRC error");
  EXPECT_EQ(describe(static_cast<TerminateCode>(0x0333)), "unknown terminate code");
  EXPECT_EQ(terminate_layer(TerminateCode::kDdpTaggedToWrap), 1);
  EXPECT_EQ(terminate_error_type(TerminateCode::kDdpTaggedToWrap), 1);
  EXPECT_EQ(terminate_error_code(TerminateCode::kDdpTaggedToWrap), 3);
  EXPECT_EQ(make_terminate_code(2, 0, 7), TerminateCode::kMpaNoMatchingRtr);
  for (uint32_t value = 0; value <= 0x2FFF; ++value) {
    EXPECT_FALSE(describe(static_cast<TerminateCode>(value)).empty());
  }
}

// =============================================================================================
// MPA frames

TEST(MpaFrame, GoldenV2Request) {
  const Bytes expected = hex_bytes(
      "4d504120494420526571204672616d65"  // "MPA ID Req Frame"
      "5002"                              // C=1, Enhanced=1, revision 2
      "0007"                              // PD_Length: 4 (IRD/ORD) + 3
      "8010"                              // P2P, IRD 16
      "c008"                              // Write RTR, Read RTR, ORD 8
      "686921");                          // "hi!"
  MpaSettings settings;
  settings.crc = CrcPolicy::kRequest;
  settings.ird = 16;
  settings.ord = 8;
  auto request = make_mpa_request(settings, text_bytes("hi!"));
  ASSERT_TRUE(request) << request.status().to_string();
  Bytes wire;
  ASSERT_TRUE(encode_mpa_frame(*request, wire));
  EXPECT_EQ(to_hex(wire), to_hex(expected));

  auto header = decode_mpa_header(std::span(expected).first<kMpaFrameHeaderBytes>(), false);
  ASSERT_TRUE(header) << header.status().to_string();
  EXPECT_EQ(*header, (MpaFrameHeader{.is_reply = false,
                                     .revision = 2,
                                     .markers = false,
                                     .crc = true,
                                     .reject = false,
                                     .enhanced = true,
                                     .private_data_length = 7}));
  MpaFrame frame;
  ASSERT_TRUE(decode_mpa_private_data(*header, std::span(expected).subspan(20), frame));
  EXPECT_EQ(frame, *request);
  EXPECT_EQ(frame.ird, 16);
  EXPECT_EQ(frame.ord, 8);
  EXPECT_TRUE(frame.peer_to_peer);
  EXPECT_EQ(
      frame.rtr,
      (RtrFlags{.zero_length_send = false, .zero_length_write = true, .zero_length_read = true}));
  EXPECT_EQ(frame.private_data, text_bytes("hi!"));
}

TEST(MpaFrame, GoldenV1RejectReply) {
  MpaFrame reply;
  reply.is_reply = true;
  reply.revision = 1;
  reply.reject = true;
  reply.private_data = text_bytes("no");
  Bytes wire;
  ASSERT_TRUE(encode_mpa_frame(reply, wire));
  EXPECT_EQ(to_hex(wire), to_hex(hex_bytes("4d504120494420526570204672616d65"  // "MPA ID Rep Frame"
                                           "2001"                              // R=1, revision 1
                                           "0002"
                                           "6e6f")));
  auto decoded = decode_mpa_frame(wire, true);
  ASSERT_TRUE(decoded) << decoded.status().to_string();
  EXPECT_EQ(*decoded, reply);
}

TEST(MpaFrame, RoundTripsV1AndV2) {
  std::vector<MpaFrame> frames;
  MpaFrame v1;
  v1.revision = 1;
  v1.crc = true;
  v1.private_data = Bytes(512, std::byte{0x5A});
  frames.push_back(v1);
  MpaFrame v2;
  v2.is_reply = true;
  v2.revision = 2;
  v2.enhanced = true;
  v2.ird = kMpaMaxIrdOrd;
  v2.ord = 0;
  v2.peer_to_peer = true;
  v2.rtr.zero_length_send = true;
  v2.private_data = Bytes(508, std::byte{0xA5});
  frames.push_back(v2);
  MpaFrame v2_plain;  // revision 2 without the Enhanced flag: no IRD/ORD word
  v2_plain.revision = 2;
  frames.push_back(v2_plain);
  for (const MpaFrame& frame : frames) {
    Bytes wire;
    ASSERT_TRUE(encode_mpa_frame(frame, wire));
    EXPECT_EQ(wire.size(), kMpaFrameHeaderBytes + frame.private_data_length());
    auto decoded = decode_mpa_frame(wire, frame.is_reply);
    ASSERT_TRUE(decoded) << decoded.status().to_string();
    EXPECT_EQ(*decoded, frame);
  }
}

TEST(MpaFrame, EncodeRefusesWhatCannotBeSent) {
  Bytes wire;
  MpaFrame frame;
  frame.private_data = Bytes(513);
  EXPECT_EQ(encode_mpa_frame(frame, wire).code(), Errc::kInvalidArgument);
  frame.private_data = Bytes(509);
  frame.enhanced = true;
  EXPECT_EQ(encode_mpa_frame(frame, wire).code(), Errc::kInvalidArgument);  // 509 + 4 > 512
  frame.private_data = Bytes(508);
  EXPECT_TRUE(encode_mpa_frame(frame, wire));
  frame.private_data.clear();
  frame.ird = 0x4000;
  EXPECT_EQ(encode_mpa_frame(frame, wire).code(), Errc::kInvalidArgument);
  frame.ird = 1;
  frame.revision = 1;
  EXPECT_EQ(encode_mpa_frame(frame, wire).code(), Errc::kInvalidArgument);  // enhanced needs rev 2
  frame.enhanced = false;
  frame.revision = 3;
  EXPECT_EQ(encode_mpa_frame(frame, wire).code(), Errc::kInvalidArgument);
  frame.revision = 1;
  frame.reject = true;  // in a request
  EXPECT_EQ(encode_mpa_frame(frame, wire).code(), Errc::kInvalidArgument);
}

TEST(MpaFrame, HeaderRejections) {
  auto header_of = [](std::string_view key, uint16_t flags, uint16_t pd_length) {
    Bytes out = text_bytes(key);
    out.resize(20);
    store_be16(out.data() + 16, flags);
    store_be16(out.data() + 18, pd_length);
    return out;
  };
  struct Case {
    const char* name;
    Bytes bytes;
    bool expect_reply;
    const char* message_part;
  };
  const std::vector<Case> cases = {
      {"reply key for a request", header_of(kMpaKeyReply, 0x0002, 4), false,
       "got an MPA Reply where a Request was expected"},
      {"request key for a reply", header_of(kMpaKeyRequest, 0x0002, 4), true,
       "got an MPA Request where a Reply was expected"},
      {"garbage key", header_of("GET / HTTP/1.1\r\n", 0x0001, 0), false, "not an MPA frame"},
      {"lower-case key", header_of("mpa id req frame", 0x0001, 0), false, "not an MPA frame"},
      {"revision 0", header_of(kMpaKeyRequest, 0x0000, 0), false, "MPA revision 0"},
      {"revision 3", header_of(kMpaKeyRequest, 0x0003, 0), false, "MPA revision 3"},
      {"private data 513", header_of(kMpaKeyRequest, 0x0001, 513), false,
       "private data length 513 exceeds the 512-byte limit"},
      {"private data 65535", header_of(kMpaKeyReply, 0x0002, 0xFFFF), true, "exceeds"},
      {"enhanced without IRD/ORD", header_of(kMpaKeyRequest, 0x1002, 3), false,
       "the IRD/ORD word alone needs 4"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto header = decode_mpa_header(std::span(c.bytes).first<20>(), c.expect_reply);
    ASSERT_FALSE(header);
    EXPECT_EQ(header.status().code(), Errc::kProtocolError);
    EXPECT_NE(header.status().message().find(c.message_part), std::string::npos)
        << header.status().message();
  }
  // Accepted oddities: the Enhanced bit in revision 1 and R in a request are reserved, ignored.
  const Bytes v1_bytes = header_of(kMpaKeyRequest, 0x3001, 0);
  auto v1 = decode_mpa_header(std::span(v1_bytes).first<20>(), false);
  ASSERT_TRUE(v1);
  EXPECT_FALSE(v1->enhanced);
  EXPECT_FALSE(v1->reject);
  const Bytes full_bytes = header_of(kMpaKeyReply, 0xF802, 512);
  auto full = decode_mpa_header(std::span(full_bytes).first<20>(), true);
  ASSERT_TRUE(full);
  EXPECT_TRUE(full->markers && full->crc && full->reject && full->enhanced);
}

TEST(MpaFrame, PrivateDataStepChecksLength) {
  const MpaFrameHeader header{
      .is_reply = false, .revision = 2, .enhanced = true, .private_data_length = 6};
  MpaFrame frame;
  EXPECT_EQ(decode_mpa_private_data(header, Bytes(5), frame).code(), Errc::kInvalidArgument);
  EXPECT_TRUE(decode_mpa_private_data(header, Bytes(6), frame));
  EXPECT_EQ(frame.private_data.size(), 2u);
  const MpaFrameHeader impossible{.revision = 2, .enhanced = true, .private_data_length = 2};
  EXPECT_EQ(decode_mpa_private_data(impossible, Bytes(2), frame).code(), Errc::kProtocolError);
  EXPECT_EQ(decode_mpa_frame(Bytes(19), false).status().code(), Errc::kProtocolError);
  Bytes wire;
  ASSERT_TRUE(encode_mpa_frame(MpaFrame{}, wire));
  wire.push_back(std::byte{0});
  EXPECT_EQ(decode_mpa_frame(wire, false).status().code(), Errc::kProtocolError);
}

// =============================================================================================
// MPA negotiation

struct Exchange {
  Result<MpaFrame> request;
  ResponderDecision decision;
  Result<MpaNegotiation> initiator;
  TerminateCode initiator_terminate = TerminateCode::kRdmapLocalCatastrophic;
};

// Runs both sides through their wire encodings, as two connected engines would.
Exchange run_exchange(const MpaSettings& initiator, const MpaSettings& responder) {
  Exchange out{make_mpa_request(initiator, text_bytes("req")), {}, Status(Errc::kCancelled, "-")};
  if (!out.request) return out;
  Bytes request_wire;
  EXPECT_TRUE(encode_mpa_frame(*out.request, request_wire));
  auto request_seen = decode_mpa_frame(request_wire, false);
  EXPECT_TRUE(request_seen) << request_seen.status().to_string();
  out.decision = negotiate_as_responder(responder, *request_seen, text_bytes("rep"));
  Bytes reply_wire;
  EXPECT_TRUE(encode_mpa_frame(out.decision.reply, reply_wire));
  auto reply_seen = decode_mpa_frame(reply_wire, true);
  EXPECT_TRUE(reply_seen) << reply_seen.status().to_string();
  out.initiator =
      negotiate_as_initiator(initiator, *out.request, *reply_seen, &out.initiator_terminate);
  return out;
}

TEST(MpaNegotiation, CrcMatrix) {
  for (CrcPolicy ours : {CrcPolicy::kOff, CrcPolicy::kRequest, CrcPolicy::kRequire}) {
    for (CrcPolicy theirs : {CrcPolicy::kOff, CrcPolicy::kRequest, CrcPolicy::kRequire}) {
      for (uint8_t revision : {1, 2}) {
        SCOPED_TRACE(testing::Message()
                     << "initiator " << static_cast<int>(ours) << " responder "
                     << static_cast<int>(theirs) << " revision " << static_cast<int>(revision));
        MpaSettings initiator;
        initiator.crc = ours;
        initiator.revision = revision;
        MpaSettings responder;
        responder.crc = theirs;
        const Exchange ex = run_exchange(initiator, responder);
        ASSERT_TRUE(ex.decision.status) << ex.decision.status.to_string();
        ASSERT_TRUE(ex.initiator) << ex.initiator.status().to_string();
        // RFC 5044: CRC is on when either side asks for it, and both sides agree.
        const bool expected = ours != CrcPolicy::kOff || theirs != CrcPolicy::kOff;
        EXPECT_EQ(ex.decision.negotiated.crc, expected);
        EXPECT_EQ(ex.initiator->crc, expected);
        EXPECT_EQ(ex.decision.reply.crc, expected);
        EXPECT_EQ(ex.request->crc, ours != CrcPolicy::kOff);
      }
    }
  }
}

TEST(MpaNegotiation, ReplyThatDeclinesRequestedCrc) {
  MpaSettings ours;
  ours.crc = CrcPolicy::kRequest;
  auto request = make_mpa_request(ours, {});
  ASSERT_TRUE(request);
  MpaSettings sloppy_peer;
  sloppy_peer.crc = CrcPolicy::kOff;
  ResponderDecision decision = negotiate_as_responder(sloppy_peer, *request, {});
  decision.reply.crc = false;  // a non-conforming responder
  auto relaxed = negotiate_as_initiator(ours, *request, decision.reply);
  ASSERT_TRUE(relaxed) << relaxed.status().to_string();
  EXPECT_FALSE(relaxed->crc);
  ours.crc = CrcPolicy::kRequire;
  auto strict = negotiate_as_initiator(ours, *request, decision.reply);
  ASSERT_FALSE(strict);
  EXPECT_EQ(strict.status().code(), Errc::kNotSupported);
  EXPECT_NE(strict.status().message().find("declines CRC"), std::string::npos);
}

TEST(MpaNegotiation, MarkersAreRefused) {
  MpaFrame request = make_mpa_request(MpaSettings{}, {}).value();
  request.markers = true;
  const ResponderDecision decision = negotiate_as_responder(MpaSettings{}, request, {});
  EXPECT_EQ(decision.status.code(), Errc::kNotSupported);
  EXPECT_NE(decision.status.message().find("markers"), std::string::npos);
  EXPECT_TRUE(decision.reply.reject);
  EXPECT_FALSE(decision.reply.markers);
  Bytes wire;
  EXPECT_TRUE(encode_mpa_frame(decision.reply, wire));

  const MpaFrame good_request = make_mpa_request(MpaSettings{}, {}).value();
  MpaFrame reply = negotiate_as_responder(MpaSettings{}, good_request, {}).reply;
  reply.markers = true;
  TerminateCode code{};
  auto result = negotiate_as_initiator(MpaSettings{}, good_request, reply, &code);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.status().code(), Errc::kNotSupported);
  EXPECT_NE(result.status().message().find("markers"), std::string::npos);
}

TEST(MpaNegotiation, IrdOrdFollowRfc6581) {
  MpaSettings initiator;
  initiator.ird = 8;
  initiator.ord = 4;
  MpaSettings responder;
  responder.ird = 2;
  responder.ord = 16;
  const Exchange ex = run_exchange(initiator, responder);
  ASSERT_TRUE(ex.decision.status) << ex.decision.status.to_string();
  ASSERT_TRUE(ex.initiator) << ex.initiator.status().to_string();
  EXPECT_EQ(ex.decision.reply.ird, 2);  // min(responder IRD 2, initiator ORD 4)
  EXPECT_EQ(ex.decision.reply.ord, 8);  // min(responder ORD 16, initiator IRD 8)
  EXPECT_EQ(ex.decision.negotiated.ird, 2);
  EXPECT_EQ(ex.decision.negotiated.ord, 8);
  EXPECT_EQ(ex.initiator->ird, 8);  // the responder may issue 8 Reads
  EXPECT_EQ(ex.initiator->ord, 2);  // lowered to the responder's IRD
  EXPECT_TRUE(ex.initiator->enhanced);
  EXPECT_TRUE(ex.decision.negotiated.enhanced);

  // Whatever the settings, neither side may issue more Reads than the other provisions.
  for (uint16_t i_ird : {0, 1, 3, 16}) {
    for (uint16_t i_ord : {0, 1, 5, 16}) {
      for (uint16_t r_ird : {0, 1, 4, 16}) {
        for (uint16_t r_ord : {0, 2, 16, 20000}) {
          MpaSettings a;
          a.ird = i_ird;
          a.ord = i_ord;
          MpaSettings b;
          b.ird = r_ird;
          b.ord = r_ord;
          const Exchange e = run_exchange(a, b);
          ASSERT_TRUE(e.request);
          ASSERT_TRUE(e.decision.status) << e.decision.status.to_string();
          ASSERT_TRUE(e.initiator) << e.initiator.status().to_string();
          EXPECT_LE(e.initiator->ord, e.decision.negotiated.ird);
          EXPECT_LE(e.decision.negotiated.ord, e.initiator->ird);
          EXPECT_LE(e.initiator->ird, i_ird);
          EXPECT_LE(e.decision.negotiated.ird, r_ird);
          EXPECT_LE(e.initiator->ord, i_ord);
        }
      }
    }
  }
}

TEST(MpaNegotiation, InsufficientIrdAtTheInitiator) {
  MpaSettings ours;
  ours.ird = 2;
  const MpaFrame request = make_mpa_request(ours, {}).value();
  MpaFrame reply = negotiate_as_responder(MpaSettings{}, request, {}).reply;
  reply.ord = 3;  // a responder that ignores our IRD
  TerminateCode code{};
  auto result = negotiate_as_initiator(ours, request, reply, &code);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.status().code(), Errc::kProtocolError);
  EXPECT_NE(result.status().message().find("insufficient IRD"), std::string::npos);
  EXPECT_EQ(code, TerminateCode::kMpaInsufficientIrd);
}

TEST(MpaNegotiation, RtrSelection) {
  struct Case {
    const char* name;
    RtrFlags offered;
    RtrFlags accepted;
    uint16_t responder_ird;
    RtrType expected;  // kNone: refused
  };
  const RtrFlags all{.zero_length_send = true, .zero_length_write = true, .zero_length_read = true};
  const RtrFlags write{.zero_length_write = true};
  const RtrFlags read{.zero_length_read = true};
  const RtrFlags send{.zero_length_send = true};
  const std::vector<Case> cases = {
      {"write preferred", all, all, 4, RtrType::kZeroLengthWrite},
      {"read when only read", read, all, 4, RtrType::kZeroLengthRead},
      {"read needs an IRD slot", read, all, 0, RtrType::kNone},
      {"send when offered and accepted", send, all, 4, RtrType::kZeroLengthSend},
      {"send not accepted by default", send, MpaSettings{}.rtr, 4, RtrType::kNone},
      {"no overlap", write, read, 4, RtrType::kNone},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    MpaSettings initiator;
    initiator.rtr = c.offered;
    MpaSettings responder;
    responder.rtr = c.accepted;
    responder.ird = c.responder_ird;
    const Exchange ex = run_exchange(initiator, responder);
    if (c.expected == RtrType::kNone) {
      EXPECT_EQ(ex.decision.status.code(), Errc::kNotSupported);
      EXPECT_NE(ex.decision.status.message().find("no matching RTR"), std::string::npos)
          << ex.decision.status.message();
      EXPECT_TRUE(ex.decision.reply.reject);
      ASSERT_FALSE(ex.initiator);
      EXPECT_EQ(ex.initiator.status().code(), Errc::kRejected);
      continue;
    }
    ASSERT_TRUE(ex.decision.status) << ex.decision.status.to_string();
    ASSERT_TRUE(ex.initiator) << ex.initiator.status().to_string();
    EXPECT_EQ(ex.decision.negotiated.rtr, c.expected);
    EXPECT_EQ(ex.initiator->rtr, c.expected);
    EXPECT_TRUE(ex.decision.reply.peer_to_peer);
  }

  // An initiator that asks for P2P but names no RTR type gets a zero-length Write (as from siw).
  MpaFrame bare = make_mpa_request(MpaSettings{}, {}).value();
  bare.rtr = {};
  const ResponderDecision decision = negotiate_as_responder(MpaSettings{}, bare, {});
  ASSERT_TRUE(decision.status);
  EXPECT_EQ(decision.negotiated.rtr, RtrType::kZeroLengthWrite);

  // Without peer-to-peer mode nobody sends an RTR.
  MpaSettings plain;
  plain.peer_to_peer = false;
  const Exchange ex = run_exchange(plain, MpaSettings{});
  ASSERT_TRUE(ex.initiator);
  EXPECT_EQ(ex.initiator->rtr, RtrType::kNone);
  EXPECT_EQ(ex.decision.negotiated.rtr, RtrType::kNone);
  EXPECT_FALSE(ex.decision.reply.peer_to_peer);

  // An initiator with ORD 0 cannot offer the Read RTR.
  MpaSettings no_reads;
  no_reads.ord = 0;
  no_reads.rtr = read;
  EXPECT_EQ(make_mpa_request(no_reads, {}).status().code(), Errc::kInvalidArgument);
}

TEST(MpaNegotiation, InitiatorRefusesAnRtrItDidNotOffer) {
  MpaSettings ours;
  ours.rtr = RtrFlags{.zero_length_write = true};
  const MpaFrame request = make_mpa_request(ours, {}).value();
  MpaFrame reply = negotiate_as_responder(MpaSettings{}, request, {}).reply;
  reply.rtr = RtrFlags{.zero_length_read = true};
  TerminateCode code{};
  auto result = negotiate_as_initiator(ours, request, reply, &code);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.status().code(), Errc::kProtocolError);
  EXPECT_EQ(code, TerminateCode::kMpaNoMatchingRtr);
}

TEST(MpaNegotiation, RevisionDowngradeAndMismatch) {
  MpaSettings v2;
  MpaSettings v1;
  v1.revision = 1;
  const Exchange down = run_exchange(v2, v1);
  ASSERT_TRUE(down.decision.status);
  ASSERT_TRUE(down.initiator) << down.initiator.status().to_string();
  EXPECT_EQ(down.decision.reply.revision, 1);
  EXPECT_FALSE(down.decision.reply.enhanced);
  EXPECT_FALSE(down.initiator->enhanced);
  EXPECT_EQ(down.initiator->rtr, RtrType::kNone);
  EXPECT_EQ(down.initiator->ird, v2.ird);

  const Exchange old = run_exchange(v1, v2);
  ASSERT_TRUE(old.initiator);
  EXPECT_EQ(old.decision.reply.revision, 1);
  EXPECT_FALSE(old.initiator->enhanced);

  const MpaFrame request = make_mpa_request(v1, {}).value();
  MpaFrame reply = negotiate_as_responder(v1, request, {}).reply;
  reply.revision = 2;
  TerminateCode code{};
  auto higher = negotiate_as_initiator(v1, request, reply, &code);
  ASSERT_FALSE(higher);
  EXPECT_EQ(code, TerminateCode::kMpaInvalidRequestReply);
  reply.enhanced = true;
  EXPECT_FALSE(negotiate_as_initiator(v1, request, reply));
}

TEST(MpaNegotiation, RejectsReachTheInitiator) {
  const MpaFrame request = make_mpa_request(MpaSettings{}, text_bytes("please")).value();
  const MpaFrame reject = make_mpa_reject(request, text_bytes("go away"));
  Bytes wire;
  ASSERT_TRUE(encode_mpa_frame(reject, wire));
  auto seen = decode_mpa_frame(wire, true);
  ASSERT_TRUE(seen);
  EXPECT_TRUE(seen->reject);
  EXPECT_EQ(seen->private_data, text_bytes("go away"));
  auto result = negotiate_as_initiator(MpaSettings{}, request, *seen);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.status().code(), Errc::kRejected);
  // Oversized reject private data is cut to what fits, so the reject can always be sent.
  const MpaFrame big = make_mpa_reject(request, Bytes(600));
  EXPECT_EQ(big.private_data_length(), kMpaMaxPrivateData);
  EXPECT_TRUE(encode_mpa_frame(big, wire));
}

TEST(MpaNegotiation, PrivateDataLimits) {
  MpaSettings v2;
  EXPECT_TRUE(make_mpa_request(v2, Bytes(508)));
  EXPECT_EQ(make_mpa_request(v2, Bytes(509)).status().code(), Errc::kInvalidArgument);
  MpaSettings v1;
  v1.revision = 1;
  EXPECT_TRUE(make_mpa_request(v1, Bytes(512)));
  EXPECT_EQ(make_mpa_request(v1, Bytes(513)).status().code(), Errc::kInvalidArgument);
  MpaSettings bad_ird;
  bad_ird.ird = 0x4000;
  EXPECT_EQ(make_mpa_request(bad_ird, {}).status().code(), Errc::kInvalidArgument);

  const MpaFrame request = make_mpa_request(v2, {}).value();
  const ResponderDecision too_long = negotiate_as_responder(v2, request, Bytes(509));
  EXPECT_EQ(too_long.status.code(), Errc::kInvalidArgument);
  EXPECT_TRUE(too_long.reply.reject);
  const ResponderDecision fits = negotiate_as_responder(v2, request, Bytes(508));
  EXPECT_TRUE(fits.status);
  Bytes wire;
  EXPECT_TRUE(encode_mpa_frame(fits.reply, wire));
  EXPECT_EQ(wire.size(), 20u + 512u);
}

// =============================================================================================
// Stream parser

class StreamBuilder {
 public:
  explicit StreamBuilder(bool crc) : crc_(crc) {}

  void tagged(RdmapOpcode opcode, bool last, uint32_t stag, uint64_t to,
              std::span<const std::byte> payload) {
    Bytes header(kMinFpduHeaderBytes);
    EXPECT_EQ(
        encode_tagged_header(header, opcode, last, stag, to, static_cast<uint16_t>(payload.size())),
        16u);
    SegmentHeader expected;
    expected.ulpdu_length = static_cast<uint16_t>(14 + payload.size());
    expected.header_length = 14;
    expected.payload_length = static_cast<uint16_t>(payload.size());
    expected.tagged = true;
    expected.last = last;
    expected.opcode = opcode;
    expected.stag = stag;
    expected.tagged_offset = to;
    append(header, payload, expected);
  }

  void untagged(RdmapOpcode opcode, bool last, uint32_t msn, uint32_t mo, uint32_t inv,
                std::span<const std::byte> payload) {
    Bytes header(kMaxFpduHeaderBytes);
    EXPECT_EQ(encode_untagged_header(header, opcode, last, queue_for(opcode), msn, mo, inv,
                                     static_cast<uint16_t>(payload.size())),
              20u);
    SegmentHeader expected;
    expected.ulpdu_length = static_cast<uint16_t>(18 + payload.size());
    expected.header_length = 18;
    expected.payload_length = static_cast<uint16_t>(payload.size());
    expected.last = last;
    expected.opcode = opcode;
    expected.queue = queue_for(opcode);
    expected.msn = msn;
    expected.message_offset = mo;
    expected.invalidate_stag = carries_invalidate_stag(opcode) ? inv : 0;
    append(header, payload, expected);
  }

  // Appends raw bytes (to build broken streams).
  void raw(std::span<const std::byte> bytes) {
    wire_.insert(wire_.end(), bytes.begin(), bytes.end());
  }

  const Bytes& wire() const { return wire_; }
  const std::vector<StreamParser::OwnedSegment>& expected() const { return expected_; }

 private:
  void append(const Bytes& header, std::span<const std::byte> payload,
              const SegmentHeader& expected) {
    const Bytes body = concat({header, payload});
    wire_.insert(wire_.end(), body.begin(), body.end());
    const FpduTrailer trailer =
        fpdu_trailer(expected.ulpdu_length, crc_, crc_ ? crc32c_bitwise(body) : 0);
    append_bytes(wire_, trailer.view());
    expected_.push_back({expected, Bytes(payload.begin(), payload.end())});
  }

  bool crc_;
  Bytes wire_;
  std::vector<StreamParser::OwnedSegment> expected_;
};

Bytes pattern(size_t size, uint8_t seed) {
  Bytes out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>(seed + i * 7);
  return out;
}

Bytes encoded_read_request() {
  Bytes out(kReadRequestBodyBytes);
  encode_read_request(out, {.sink_stag = 9,
                            .sink_offset = 0x100,
                            .read_size = 4096,
                            .source_stag = 10,
                            .source_offset = 0x200});
  return out;
}

Bytes encoded_atomic_request() {
  Bytes out(kAtomicRequestBodyBytes);
  encode_atomic_request(out, {.opcode = AtomicOpcode::kFetchAdd,
                              .request_id = 1,
                              .remote_stag = 2,
                              .remote_offset = 8,
                              .add_or_swap_data = 1});
  return out;
}

Bytes encoded_terminate() {
  const Bytes offending = hex_bytes("0016 41 43 00000000 00000000 00000009 00000000 61626364");
  const TerminateBody body = make_terminate_body(TerminateCode::kDdpUntaggedNoBuffer, offending);
  Bytes out(kTerminateMaxBodyBytes);
  out.resize(encode_terminate(out, body));
  return out;
}

// Every opcode, every pad length, zero-length payloads, multi-segment messages.
StreamBuilder sample_stream(bool crc) {
  StreamBuilder b(crc);
  b.untagged(RdmapOpcode::kSend, false, 1, 0, 0, pattern(13, 1));
  b.untagged(RdmapOpcode::kSend, true, 1, 13, 0, pattern(2, 2));
  b.tagged(RdmapOpcode::kWrite, false, 0x1234, 0x1000, pattern(5, 3));
  b.tagged(RdmapOpcode::kWrite, true, 0x1234, 0x1005, {});
  b.untagged(RdmapOpcode::kReadRequest, true, 1, 0, 0, encoded_read_request());
  b.tagged(RdmapOpcode::kReadResponse, true, 9, 0x100, pattern(31, 4));
  b.untagged(RdmapOpcode::kSendInvalidate, true, 2, 0, 0xABCDEF01, pattern(1, 5));
  b.untagged(RdmapOpcode::kSendSolicited, true, 3, 0, 0, {});
  b.untagged(RdmapOpcode::kSendSolicitedInvalidate, true, 4, 0, 0x77, pattern(3, 6));
  b.untagged(RdmapOpcode::kImmediateData, true, 5, 0, 0, pattern(8, 7));
  b.untagged(RdmapOpcode::kImmediateDataSolicited, true, 6, 0, 0, pattern(8, 8));
  b.untagged(RdmapOpcode::kAtomicRequest, true, 2, 0, 0, encoded_atomic_request());
  b.untagged(RdmapOpcode::kAtomicResponse, true, 1, 0, 0, pattern(12, 9));
  b.untagged(RdmapOpcode::kTerminate, true, 1, 0, 0, encoded_terminate());
  return b;
}

void expect_segments_equal(const std::vector<StreamParser::OwnedSegment>& got,
                           const std::vector<StreamParser::OwnedSegment>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].header, expected[i].header) << "segment " << i;
    EXPECT_EQ(got[i].payload, expected[i].payload) << "segment " << i;
  }
}

TEST(StreamParser, ParsesAWholeStream) {
  for (bool crc : {false, true}) {
    const StreamBuilder b = sample_stream(crc);
    StreamParser parser(crc);
    std::vector<StreamParser::OwnedSegment> got;
    ASSERT_TRUE(parser.feed(b.wire(), got)) << parser.status().to_string();
    EXPECT_TRUE(parser.finish());
    expect_segments_equal(got, b.expected());
    EXPECT_EQ(parser.segments_parsed(), b.expected().size());
    EXPECT_EQ(parser.bytes_consumed(), b.wire().size());
  }
}

TEST(StreamParser, SplitAtEveryByteBoundary) {
  for (bool crc : {false, true}) {
    SCOPED_TRACE(crc ? "crc" : "no crc");
    const StreamBuilder b = sample_stream(crc);
    const std::span<const std::byte> wire = b.wire();
    for (size_t split = 0; split <= wire.size(); ++split) {
      StreamParser parser(crc);
      std::vector<StreamParser::OwnedSegment> got;
      ASSERT_TRUE(parser.feed(wire.first(split), got)) << split;
      ASSERT_TRUE(parser.feed(wire.subspan(split), got)) << split;
      ASSERT_TRUE(parser.finish()) << split;
      expect_segments_equal(got, b.expected());
    }
    // Byte by byte, and two cuts at a time for a sample of positions.
    StreamParser parser(crc);
    std::vector<StreamParser::OwnedSegment> got;
    for (size_t i = 0; i < wire.size(); ++i) ASSERT_TRUE(parser.feed(wire.subspan(i, 1), got));
    ASSERT_TRUE(parser.finish());
    expect_segments_equal(got, b.expected());
    for (size_t first = 0; first <= wire.size(); first += 7) {
      for (size_t second = first; second <= wire.size(); second += 5) {
        StreamParser p(crc);
        std::vector<StreamParser::OwnedSegment> g;
        ASSERT_TRUE(p.feed(wire.first(first), g));
        ASSERT_TRUE(p.feed(wire.subspan(first, second - first), g));
        ASSERT_TRUE(p.feed(wire.subspan(second), g));
        ASSERT_TRUE(p.finish());
        ASSERT_EQ(g.size(), b.expected().size());
      }
    }
  }
}

TEST(StreamParser, ErrorsDoNotDependOnChunking) {
  // Two good FPDUs, then a Send on the wrong queue: two segments, then the same error always.
  StreamBuilder b(true);
  b.untagged(RdmapOpcode::kSend, true, 1, 0, 0, pattern(5, 1));
  b.tagged(RdmapOpcode::kWrite, true, 1, 0, pattern(9, 2));
  b.raw(hex_bytes("0016 41 43 00000000 00000001 00000002 00000000 61626364 00000000"));
  const std::span<const std::byte> wire = b.wire();
  for (size_t split = 0; split <= wire.size(); ++split) {
    StreamParser parser(true);
    std::vector<StreamParser::OwnedSegment> got;
    Status first = parser.feed(wire.first(split), got);
    Status second = parser.feed(wire.subspan(split), got);
    ASSERT_TRUE(first || !second);
    ASSERT_FALSE(second) << split;
    EXPECT_EQ(got.size(), 2u) << split;
    EXPECT_EQ(second.code(), Errc::kProtocolError);
    EXPECT_NE(second.message().find("Send on DDP queue 1"), std::string::npos);
    EXPECT_EQ(parser.terminate_code(), TerminateCode::kDdpUntaggedInvalidQueue);
  }
}

TEST(StreamParser, DetectsCrcErrorsOnlyWhenNegotiated) {
  StreamBuilder b(true);
  b.untagged(RdmapOpcode::kSend, true, 1, 0, 0, pattern(6, 1));  // 2 pad bytes
  for (size_t i = 0; i < b.wire().size(); ++i) {
    Bytes corrupted = b.wire();
    corrupted[i] ^= std::byte{0x10};
    StreamParser parser(true);
    std::vector<StreamParser::OwnedSegment> got;
    const Status status = parser.feed(corrupted, got);
    const bool failed = !status || !parser.finish();
    EXPECT_TRUE(failed) << "flipping byte " << i << " went unnoticed";
    EXPECT_TRUE(got.empty());
    if (i >= 20) {  // payload, pad and CRC bytes: only the CRC can tell
      EXPECT_EQ(parser.terminate_code(), TerminateCode::kMpaCrcError) << i;
      EXPECT_NE(status.message().find("MPA CRC mismatch"), std::string::npos);
    }
  }
  // CRC off: pad and CRC field contents are ignored (RFC 5044, and siw does the same).
  StreamBuilder plain(false);
  plain.untagged(RdmapOpcode::kSend, true, 1, 0, 0, pattern(6, 1));
  Bytes odd = plain.wire();
  for (size_t i = 24; i < odd.size(); ++i) odd[i] = std::byte{0xEE};
  StreamParser parser(false);
  std::vector<StreamParser::OwnedSegment> got;
  EXPECT_TRUE(parser.feed(odd, got));
  EXPECT_EQ(got.size(), 1u);
}

TEST(StreamParser, ErrorsAreStickyAndTruncationIsReported) {
  StreamParser parser(false);
  std::vector<StreamParser::OwnedSegment> got;
  const Bytes bad = hex_bytes("0016 43 43");  // DDP version 3
  EXPECT_FALSE(parser.feed(bad, got));
  EXPECT_TRUE(parser.failed());
  EXPECT_EQ(parser.terminate_code(), TerminateCode::kDdpUntaggedInvalidVersion);
  const StreamBuilder good = sample_stream(false);
  EXPECT_FALSE(parser.feed(good.wire(), got));
  EXPECT_TRUE(got.empty());
  EXPECT_FALSE(parser.finish());

  StreamParser truncated(false);
  EXPECT_TRUE(truncated.feed(std::span(good.wire()).first(good.wire().size() - 1), got));
  EXPECT_GT(truncated.buffered_bytes(), 0u);
  const Status end = truncated.finish();
  EXPECT_EQ(end.code(), Errc::kProtocolError);
  EXPECT_NE(end.message().find("ended inside an FPDU"), std::string::npos);
}

TEST(StreamParser, ValidatesBodiesAndLetsTheConsumerStop) {
  StreamBuilder b(false);
  Bytes atomic = encoded_atomic_request();
  atomic[3] = std::byte{0x07};  // reserved atomic opcode
  b.untagged(RdmapOpcode::kAtomicRequest, true, 1, 0, 0, atomic);
  StreamParser parser(false);
  std::vector<StreamParser::OwnedSegment> got;
  const Status status = parser.feed(b.wire(), got);
  EXPECT_EQ(status.code(), Errc::kProtocolError);
  EXPECT_NE(status.message().find("atomic opcode 7"), std::string::npos);

  StreamBuilder t(false);
  t.untagged(RdmapOpcode::kTerminate, true, 1, 0, 0, hex_bytes("1201 4000 0016"));
  StreamParser terminate_parser(false);
  EXPECT_FALSE(terminate_parser.feed(t.wire(), got));

  const StreamBuilder good = sample_stream(true);
  StreamParser stopping(true);
  int seen = 0;
  const Status stopped = stopping.feed(good.wire(), [&seen](const StreamParser::Segment& s) {
    ++seen;
    if (s.header.opcode == RdmapOpcode::kReadRequest) {
      return Status(Errc::kPermissionDenied, "reads are not allowed here");
    }
    return Status::ok();
  });
  EXPECT_EQ(stopped.code(), Errc::kPermissionDenied);
  EXPECT_EQ(seen, 5);
  EXPECT_TRUE(stopping.failed());
}

// ---- Randomized robustness ------------------------------------------------------------------

void add_random_segment(StreamBuilder& b, std::mt19937_64& rng) {
  auto size = [&rng](size_t max) { return static_cast<size_t>(rng() % (max + 1)); };
  Bytes payload(size(rng() % 8 == 0 ? 700 : 40));
  for (auto& byte : payload) byte = static_cast<std::byte>(rng());
  const auto opcode = static_cast<RdmapOpcode>(rng() % (kMaxRdmapOpcode + 1));
  const bool last = rng() % 2 == 0;
  switch (opcode) {
    case RdmapOpcode::kWrite:
    case RdmapOpcode::kReadResponse:
      b.tagged(opcode, last, static_cast<uint32_t>(rng()), rng() >> 1, payload);
      break;
    case RdmapOpcode::kReadRequest:
      b.untagged(opcode, true, static_cast<uint32_t>(rng()), 0, 0, encoded_read_request());
      break;
    case RdmapOpcode::kTerminate:
      b.untagged(opcode, true, 1, 0, 0, encoded_terminate());
      break;
    case RdmapOpcode::kAtomicRequest:
      b.untagged(opcode, true, static_cast<uint32_t>(rng()), 0, 0, encoded_atomic_request());
      break;
    case RdmapOpcode::kAtomicResponse:
      payload.resize(kAtomicResponseBodyBytes);
      b.untagged(opcode, true, static_cast<uint32_t>(rng()), 0, 0, payload);
      break;
    case RdmapOpcode::kImmediateData:
    case RdmapOpcode::kImmediateDataSolicited:
      payload.resize(kImmediateDataBodyBytes);
      b.untagged(opcode, true, static_cast<uint32_t>(rng()), 0, 0, payload);
      break;
    default:
      b.untagged(opcode, last, static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng() >> 40),
                 static_cast<uint32_t>(rng()), payload);
      break;
  }
}

// Feeds `wire` in random chunks; checks what every delivered segment must satisfy.
Status feed_randomly(StreamParser& parser, std::span<const std::byte> wire, std::mt19937_64& rng,
                     size_t& delivered) {
  size_t pos = 0;
  while (pos < wire.size()) {
    const size_t chunk = std::min<size_t>(wire.size() - pos, 1 + rng() % 97);
    Status status = parser.feed(wire.subspan(pos, chunk), [&](const StreamParser::Segment& s) {
      ++delivered;
      EXPECT_EQ(s.payload.size(), s.header.payload_length);
      EXPECT_EQ(s.header.ulpdu_length, s.header.header_length + s.header.payload_length);
      // Re-encoding the decoded header must give back an equal header.
      Bytes again(kMaxFpduHeaderBytes);
      const size_t written =
          s.header.tagged
              ? encode_tagged_header(again, s.header.opcode, s.header.last, s.header.stag,
                                     s.header.tagged_offset, s.header.payload_length)
              : encode_untagged_header(again, s.header.opcode, s.header.last, s.header.queue,
                                       s.header.msn, s.header.message_offset,
                                       s.header.invalidate_stag, s.header.payload_length);
      EXPECT_EQ(written, s.header.payload_offset());
      auto redecoded = decode_segment_header(again);
      EXPECT_TRUE(redecoded && *redecoded == s.header);
    });
    if (!status) return status;
    pos += chunk;
  }
  return parser.finish();
}

TEST(StreamParser, RandomizedRobustness) {
  std::mt19937_64 rng(0x5EED1234);
  int garbage_errors = 0;
  int mutation_errors = 0;
  int mutations = 0;
  size_t delivered = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    const bool crc = rng() % 2 == 0;
    Bytes wire;
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0) {
      // Pure garbage.
      wire.resize(1 + rng() % 600);
      for (auto& byte : wire) byte = static_cast<std::byte>(rng());
    } else {
      StreamBuilder b(crc);
      const int segments = 1 + static_cast<int>(rng() % 6);
      for (int s = 0; s < segments; ++s) add_random_segment(b, rng);
      wire = b.wire();
      if (kind == 1) {
        // One flipped bit.
        wire[rng() % wire.size()] ^= static_cast<std::byte>(1u << (rng() % 8));
      } else if (kind == 2) {
        // Several random edits: overwrite, insert, delete, truncate.
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits && !wire.empty(); ++e) {
          const size_t at = rng() % wire.size();
          switch (rng() % 4) {
            case 0:
              wire[at] = static_cast<std::byte>(rng());
              break;
            case 1:
              wire.insert(wire.begin() + static_cast<std::ptrdiff_t>(at),
                          static_cast<std::byte>(rng()));
              break;
            case 2:
              wire.erase(wire.begin() + static_cast<std::ptrdiff_t>(at));
              break;
            default:
              wire.resize(at);
              break;
          }
        }
      }
      // kind 3: the valid stream itself.
    }
    StreamParser parser(crc);
    const Status status = feed_randomly(parser, wire, rng, delivered);
    if (kind == 0 && !status) ++garbage_errors;
    if (kind == 0 && crc) {
      // With CRC on, random bytes cannot pass (2^-32 per FPDU, and the seed is fixed).
      EXPECT_FALSE(status) << "iteration " << iteration;
    }
    if (kind == 1) {
      ++mutations;
      if (!status) ++mutation_errors;
      if (crc) {
        EXPECT_FALSE(status) << "a flipped bit went unnoticed, iteration " << iteration;
      }
    }
    if (kind == 3) {
      EXPECT_TRUE(status) << status.to_string() << " iteration " << iteration;
    }
    if (!status) {
      EXPECT_TRUE(status.code() == Errc::kProtocolError) << status.to_string();
      EXPECT_FALSE(status.message().empty());
    }
  }
  EXPECT_GT(garbage_errors, 4000);
  EXPECT_GT(mutation_errors, mutations / 2);
  EXPECT_GT(delivered, 10000u);
}

}  // namespace
}  // namespace wv::verbs::tcp
