// Writes the seed corpus of wire_fuzz into the directory given as argv[1]: valid MPA frames and
// FPDU streams covering every opcode, built with the codec itself so they stay valid as it evolves.
// File format: see wire_fuzz.cc (mode byte, chunk seed byte, data).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "crc32c.h"
#include "ddp_rdmap.h"
#include "mpa.h"

namespace {

using namespace wv::verbs::tcp;
using Bytes = std::vector<std::byte>;

void append(Bytes& out, std::span<const std::byte> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void add_fpdu(Bytes& stream, std::span<const std::byte> header, std::span<const std::byte> payload,
              bool crc) {
  const size_t start = stream.size();
  append(stream, header);
  append(stream, payload);
  const auto ulpdu = static_cast<uint16_t>(stream.size() - start - kMpaLengthBytes);
  const uint32_t sum = crc ? crc32c(std::span(stream).subspan(start)) : 0;
  append(stream, fpdu_trailer(ulpdu, crc, sum).view());
}

void add_untagged(Bytes& stream, RdmapOpcode opcode, uint32_t msn,
                  std::span<const std::byte> payload, bool crc) {
  Bytes header(kMaxFpduHeaderBytes);
  header.resize(encode_untagged_header(header, opcode, true, queue_for(opcode), msn, 0, 0x42,
                                       static_cast<uint16_t>(payload.size())));
  add_fpdu(stream, header, payload, crc);
}

void add_tagged(Bytes& stream, RdmapOpcode opcode, std::span<const std::byte> payload, bool crc) {
  Bytes header(kMinFpduHeaderBytes);
  header.resize(encode_tagged_header(header, opcode, true, 0x1000, 0x2000,
                                     static_cast<uint16_t>(payload.size())));
  add_fpdu(stream, header, payload, crc);
}

Bytes sample_stream(bool crc) {
  Bytes stream;
  const Bytes text = {std::byte{'h'}, std::byte{'e'}, std::byte{'l'}, std::byte{'l'},
                      std::byte{'o'}};
  add_untagged(stream, RdmapOpcode::kSend, 1, text, crc);
  add_untagged(stream, RdmapOpcode::kSendInvalidate, 2, {}, crc);
  add_tagged(stream, RdmapOpcode::kWrite, text, crc);
  Bytes body(kAtomicRequestBodyBytes);
  encode_read_request(
      body,
      {.sink_stag = 1, .sink_offset = 2, .read_size = 3, .source_stag = 4, .source_offset = 5});
  add_untagged(stream, RdmapOpcode::kReadRequest, 1, std::span(body).first(kReadRequestBodyBytes),
               crc);
  add_tagged(stream, RdmapOpcode::kReadResponse, std::span(text).first(3), crc);
  encode_atomic_request(body, {.opcode = AtomicOpcode::kCompareSwap, .request_id = 7});
  add_untagged(stream, RdmapOpcode::kAtomicRequest, 2, body, crc);
  encode_atomic_response(body, {.request_id = 7, .original_value = 9});
  add_untagged(stream, RdmapOpcode::kAtomicResponse, 1,
               std::span(body).first(kAtomicResponseBodyBytes), crc);
  encode_immediate_data(body, {.data = 0x1234});
  add_untagged(stream, RdmapOpcode::kImmediateData, 3,
               std::span(body).first(kImmediateDataBodyBytes), crc);
  const TerminateBody terminate =
      make_terminate_body(TerminateCode::kRdmapInvalidStag, std::span(stream).first(20));
  body.resize(kTerminateMaxBodyBytes);
  body.resize(encode_terminate(body, terminate));
  add_untagged(stream, RdmapOpcode::kTerminate, 1, body, crc);
  return stream;
}

bool write_seed(const std::filesystem::path& dir, const std::string& name, uint8_t mode,
                std::span<const std::byte> data) {
  std::ofstream file(dir / name, std::ios::binary | std::ios::trunc);
  const char header[2] = {static_cast<char>(mode), 17};
  file.write(header, 2);
  file.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(file);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <seed directory>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);

  MpaSettings settings;
  const MpaFrame request = make_mpa_request(settings, Bytes(3, std::byte{'p'})).value();
  const MpaFrame reply = negotiate_as_responder(settings, request, {}).reply;
  Bytes request_wire, reply_wire;
  if (!encode_mpa_frame(request, request_wire) || !encode_mpa_frame(reply, reply_wire)) return 1;
  MpaSettings v1 = settings;
  v1.revision = 1;
  Bytes v1_wire;
  if (!encode_mpa_frame(make_mpa_request(v1, {}).value(), v1_wire)) return 1;

  Bytes connection = reply_wire;
  append(connection, sample_stream(reply.crc));

  bool ok = true;
  ok &= write_seed(dir, "stream_plain", 0, sample_stream(false));
  ok &= write_seed(dir, "stream_crc", 1, sample_stream(true));
  ok &= write_seed(dir, "mpa_request_v2", 2, request_wire);
  ok &= write_seed(dir, "mpa_request_v1", 2, v1_wire);
  ok &= write_seed(dir, "mpa_reply_v2", 3, reply_wire);
  ok &= write_seed(dir, "mpa_reply_then_stream", 7, connection);
  if (!ok) {
    std::fprintf(stderr, "could not write the seeds into %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
