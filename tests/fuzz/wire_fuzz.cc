// libFuzzer target for the iWARP wire codec of the tcp provider: MPA frames, the FPDU stream
// parser, and the fixed-body decoders. Besides "no crash, no UB, no out-of-bounds read", it checks
// invariants: what decodes re-encodes to something that decodes the same, and how the stream is
// chunked never changes what the parser delivers or which error it reports.
//
// Input: byte 0 selects the mode, byte 1 seeds the chunk sizes, the rest is the data.
//   mode & 3 == 0: FPDU stream, CRC off          == 1: FPDU stream, CRC on
//   mode & 3 == 2: MPA Request (+ stream if 4)   == 3: MPA Reply (+ stream if 4)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddp_rdmap.h"
#include "mpa.h"
#include "stream_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using wv::Errc;
using wv::Status;
using namespace wv::verbs::tcp;

// An invariant broke: crash so that libFuzzer records the input.
void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Delivered {
  SegmentHeader header;
  size_t payload_size;
  bool operator==(const Delivered&) const = default;
};

void check_segment(const StreamParser::Segment& segment) {
  const SegmentHeader& h = segment.header;
  check(segment.payload.size() == h.payload_length);
  check(h.ulpdu_length == h.header_length + h.payload_length);
  std::vector<std::byte> again(kMaxFpduHeaderBytes);
  const size_t written =
      h.tagged
          ? encode_tagged_header(again, h.opcode, h.last, h.stag, h.tagged_offset, h.payload_length)
          : encode_untagged_header(again, h.opcode, h.last, h.queue, h.msn, h.message_offset,
                                   h.invalidate_stag, h.payload_length);
  check(written == h.payload_offset());
  auto redecoded = decode_segment_header(again);
  check(redecoded.is_ok() && *redecoded == h);

  switch (h.opcode) {
    case RdmapOpcode::kReadRequest: {
      auto body = decode_read_request(segment.payload);
      check(body.is_ok());
      std::vector<std::byte> out(kReadRequestBodyBytes);
      check(encode_read_request(out, *body) == kReadRequestBodyBytes);
      check(std::equal(out.begin(), out.end(), segment.payload.begin()));
      break;
    }
    case RdmapOpcode::kTerminate: {
      auto body = decode_terminate(segment.payload);
      check(body.is_ok());
      std::vector<std::byte> out(kTerminateMaxBodyBytes);
      const size_t length = encode_terminate(out, *body);
      if (length != 0) {  // 0 only for siw's R-without-RDMAP-header shape, which we never send
        auto again_body = decode_terminate(std::span(out).first(length));
        check(again_body.is_ok() && *again_body == *body);
      } else {
        check(body->rdmap_header_included && body->rdmap_header_length == 0);
      }
      (void)describe(body->code);
      break;
    }
    case RdmapOpcode::kAtomicRequest: {
      auto body = decode_atomic_request(segment.payload);
      check(body.is_ok());
      std::vector<std::byte> out(kAtomicRequestBodyBytes);
      check(encode_atomic_request(out, *body) == kAtomicRequestBodyBytes);
      auto again_body = decode_atomic_request(out);
      check(again_body.is_ok() && *again_body == *body);
      break;
    }
    case RdmapOpcode::kAtomicResponse:
      check(decode_atomic_response(segment.payload).is_ok());
      break;
    case RdmapOpcode::kImmediateData:
    case RdmapOpcode::kImmediateDataSolicited:
      check(decode_immediate_data(segment.payload).is_ok());
      break;
    default:
      break;
  }
}

struct StreamOutcome {
  std::vector<Delivered> delivered;
  std::string error;
  bool operator==(const StreamOutcome&) const = default;
};

StreamOutcome parse(std::span<const std::byte> data, bool crc, uint32_t chunk_seed) {
  StreamOutcome outcome;
  StreamParser parser(crc);
  auto on_segment = [&outcome](const StreamParser::Segment& segment) {
    check_segment(segment);
    outcome.delivered.push_back({segment.header, segment.payload.size()});
  };
  uint32_t state = chunk_seed;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t chunk = data.size() - pos;  // chunk_seed 0: the whole buffer at once
    if (chunk_seed != 0) {
      state = state * 1103515245u + 12345u;
      chunk = std::min<size_t>(chunk, 1 + (state >> 16) % 300);
    }
    const Status status = parser.feed(data.subspan(pos, chunk), on_segment);
    if (!status) {
      check(status.code() == Errc::kProtocolError && !status.message().empty());
      check(parser.failed());
      outcome.error = status.message();
      return outcome;
    }
    pos += chunk;
  }
  const Status end = parser.finish();
  check(end.is_ok() == (parser.buffered_bytes() == 0));
  if (!end) outcome.error = "incomplete";
  return outcome;
}

void fuzz_stream(std::span<const std::byte> data, bool crc, uint8_t chunk_seed) {
  const StreamOutcome whole = parse(data, crc, 0);
  const StreamOutcome chunked = parse(data, crc, 1u + chunk_seed);
  check(whole == chunked);
}

// Returns how many bytes the frame took, 0 if it did not decode.
size_t fuzz_mpa(std::span<const std::byte> data, bool expect_reply, MpaFrame& frame) {
  if (data.size() < kMpaFrameHeaderBytes) {
    check(!decode_mpa_frame(data, expect_reply).is_ok());
    return 0;
  }
  auto header = decode_mpa_header(data.first<kMpaFrameHeaderBytes>(), expect_reply);
  if (!header) {
    check(header.status().code() == Errc::kProtocolError);
    return 0;
  }
  const auto rest = data.subspan(kMpaFrameHeaderBytes);
  if (rest.size() < header->private_data_length) {
    check(!decode_mpa_private_data(*header, rest, frame).is_ok());
    return 0;
  }
  check(decode_mpa_private_data(*header, rest.first(header->private_data_length), frame).is_ok());

  // Everything decodable is encodable, and decodes back to the same frame.
  std::vector<std::byte> wire;
  check(encode_mpa_frame(frame, wire).is_ok());
  auto again = decode_mpa_frame(wire, expect_reply);
  check(again.is_ok() && *again == frame);

  // Negotiation in both roles never crashes, and a responder's reply can always be sent.
  MpaSettings settings;
  settings.crc = static_cast<CrcPolicy>(std::to_integer<uint8_t>(data[0]) % 3);
  settings.ird = static_cast<uint16_t>(data.size() % 5);
  if (!expect_reply) {
    const ResponderDecision decision = negotiate_as_responder(settings, frame, {});
    std::vector<std::byte> reply;
    check(encode_mpa_frame(decision.reply, reply).is_ok());
    check(decision.status.is_ok() != decision.reply.reject);
  } else if (auto request = make_mpa_request(settings, {})) {
    wv::verbs::tcp::TerminateCode code{};
    (void)negotiate_as_initiator(settings, *request, frame, &code);
  }
  return kMpaFrameHeaderBytes + header->private_data_length;
}

void fuzz_decoders(std::span<const std::byte> data) {
  TerminateCode code{};
  if (auto header = decode_segment_header(data, &code)) {
    check(data.size() >= header_bytes_needed(data[2]));
  }
  (void)decode_terminate(data);
  (void)decode_atomic_request(data);
  (void)decode_read_request(data);
  const TerminateBody body = make_terminate_body(code, data);
  std::vector<std::byte> out(kTerminateMaxBodyBytes);
  check(encode_terminate(out, body) == body.encoded_length());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const uint8_t chunk_seed = data[1];
  const std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data) + 2, size - 2);
  switch (mode & 3) {
    case 0:
    case 1:
      fuzz_stream(rest, (mode & 1) != 0, chunk_seed);
      break;
    default: {
      MpaFrame frame;
      const size_t used = fuzz_mpa(rest, (mode & 3) == 3, frame);
      if ((mode & 4) != 0 && used != 0) fuzz_stream(rest.subspan(used), frame.crc, chunk_seed);
      break;
    }
  }
  fuzz_decoders(rest);
  return 0;
}
