#include "stream_parser.h"

#include <algorithm>
#include <cassert>
#include <string>

#include "crc32c.h"

namespace wv::verbs::tcp {

Status StreamParser::fail(Status status, TerminateCode code) {
  status_ = std::move(status);
  terminate_code_ = code;
  buffer_.clear();
  needed_ = 0;
  return status_;
}

// One FPDU at the start of `data`, in the order a receiver reading from a socket learns things:
// 4 bytes give the control fields, 16 or 20 the whole header, the header gives the FPDU length.
// Each check only looks at bytes it has been given, so how the stream was chunked never changes
// which error is reported.
Result<StreamParser::Step> StreamParser::parse_step(std::span<const std::byte> data,
                                                    Callback callback, void* context) {
  constexpr size_t kControlBytes = kMpaLengthBytes + 2;
  if (data.size() < kControlBytes) return Step{0, kControlBytes};
  TerminateCode code = TerminateCode::kRdmapLocalCatastrophic;
  if (Status status = check_control_bytes(data[2], data[3], &code); !status) {
    return fail(std::move(status), code);
  }
  const size_t header_bytes = header_bytes_needed(data[2]);
  if (data.size() < header_bytes) return Step{0, header_bytes};
  auto header = decode_segment_header(data.first(header_bytes), &code);
  if (!header) return fail(header.status(), code);
  const size_t total = header->fpdu_length();
  if (data.size() < total) return Step{0, total};

  const size_t crc_covered = kMpaLengthBytes + header->ulpdu_length;
  const uint32_t crc = crc_enabled_ ? crc32c(data.first(crc_covered)) : 0;
  if (Status status = check_fpdu_trailer(
          header->ulpdu_length, data.subspan(crc_covered, total - crc_covered), crc_enabled_, crc);
      !status) {
    return fail(std::move(status), TerminateCode::kMpaCrcError);
  }

  const std::span<const std::byte> payload =
      data.subspan(header->payload_offset(), header->payload_length);
  // decode_segment_header checked the body lengths; these bodies also have inner structure.
  if (header->opcode == RdmapOpcode::kTerminate) {
    if (auto body = decode_terminate(payload); !body) {
      return fail(body.status(), TerminateCode::kRdmapOperationUnspecified);
    }
  } else if (header->opcode == RdmapOpcode::kAtomicRequest) {
    if (auto body = decode_atomic_request(payload); !body) {
      return fail(body.status(), TerminateCode::kRdmapOperationUnspecified);
    }
  }

  if (Status status = callback(context, Segment{*header, payload}); !status) {
    return fail(std::move(status), TerminateCode::kRdmapOperationUnspecified);
  }
  ++segments_;
  consumed_ += total;
  return Step{total, 0};
}

Status StreamParser::feed_impl(std::span<const std::byte> chunk, Callback callback, void* context) {
  if (failed()) return status_;
  while (!chunk.empty()) {
    if (buffer_.empty()) {
      // Fast path: parse in place, copying nothing while whole FPDUs are at hand.
      auto step = parse_step(chunk, callback, context);
      if (!step) return status_;
      if (step->consumed > 0) {
        chunk = chunk.subspan(step->consumed);
        continue;
      }
      needed_ = step->needed;
      buffer_.reserve(needed_);
      buffer_.assign(chunk.begin(), chunk.end());
      break;
    }
    // Top the partial FPDU up to exactly what the next step needs, never beyond its end.
    const size_t take = std::min(needed_ - buffer_.size(), chunk.size());
    buffer_.insert(buffer_.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(take));
    chunk = chunk.subspan(take);
    if (buffer_.size() < needed_) break;
    auto step = parse_step(buffer_, callback, context);
    if (!step) return status_;
    if (step->consumed > 0) {
      assert(step->consumed == buffer_.size());
      buffer_.clear();
      needed_ = 0;
    } else {
      needed_ = step->needed;
      buffer_.reserve(needed_);
    }
  }
  return status_;
}

Status StreamParser::feed(std::span<const std::byte> chunk, std::vector<OwnedSegment>& out) {
  return feed(chunk, [&out](const Segment& segment) {
    out.push_back(OwnedSegment{segment.header, {segment.payload.begin(), segment.payload.end()}});
  });
}

Status StreamParser::finish() const {
  if (failed()) return status_;
  if (!buffer_.empty()) {
    return Status(Errc::kProtocolError,
                  "the stream ended inside an FPDU: " + std::to_string(buffer_.size()) +
                      " bytes of it arrived, at least " + std::to_string(needed_) + " were needed");
  }
  return Status::ok();
}

}  // namespace wv::verbs::tcp
