// StreamParser: cuts the byte stream that follows the MPA exchange into FPDUs and hands back each
// decoded DDP segment. Bytes may arrive in chunks of any size. It validates every header
// (decode_segment_header), the fixed RDMAP bodies, and the CRC when negotiated; the first error
// stops it for good, as an iWARP stream cannot resynchronise after a framing error.
//
// The provider engine reads straight into registered memory instead, but follows the same steps
// (see parse_step in stream_parser.cc); tests and the fuzzer use this class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "ddp_rdmap.h"
#include "wv/result.h"

namespace wv::verbs::tcp {

class StreamParser {
 public:
  struct Segment {
    SegmentHeader header;
    // The DDP payload, fixed RDMAP bodies included. Valid only during the callback.
    std::span<const std::byte> payload;
  };
  struct OwnedSegment {
    SegmentHeader header;
    std::vector<std::byte> payload;
  };

  explicit StreamParser(bool crc_enabled) : crc_enabled_(crc_enabled) {}

  // Feeds the next chunk of the stream. `on_segment` is called once per complete FPDU, in order;
  // it may return void, or a Status to stop the parser with that error (e.g. an MSN the consumer
  // did not expect). It must not call feed() itself. Returns the first error, now or from an
  // earlier call, and keeps returning it.
  template <typename OnSegment>
  Status feed(std::span<const std::byte> chunk, OnSegment&& on_segment) {
    using Fn = std::remove_reference_t<OnSegment>;
    void* context = const_cast<void*>(static_cast<const void*>(std::addressof(on_segment)));
    return feed_impl(chunk, &invoke<Fn>, context);
  }

  // Convenience for tests: copies each segment's payload out.
  Status feed(std::span<const std::byte> chunk, std::vector<OwnedSegment>& out);

  // At the end of the stream: an error if it stopped inside an FPDU (or an error occurred).
  Status finish() const;

  bool failed() const { return !status_.is_ok(); }
  const Status& status() const { return status_; }
  // The code the receiver should put in its Terminate message after an error.
  TerminateCode terminate_code() const { return terminate_code_; }
  bool crc_enabled() const { return crc_enabled_; }
  // Bytes of an incomplete FPDU held back until the rest arrives (at most kMaxFpduBytes).
  size_t buffered_bytes() const { return buffer_.size(); }
  uint64_t segments_parsed() const { return segments_; }
  uint64_t bytes_consumed() const { return consumed_; }

 private:
  using Callback = Status (*)(void* context, const Segment& segment);

  template <typename Fn>
  static Status invoke(void* context, const Segment& segment) {
    Fn& fn = *static_cast<Fn*>(context);
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&, const Segment&>>) {
      fn(segment);
      return Status::ok();
    } else {
      return fn(segment);
    }
  }

  // Outcome of looking at bytes that start at an FPDU boundary.
  struct Step {
    size_t consumed = 0;  // > 0: one FPDU was complete and delivered
    size_t needed = 0;    // when consumed == 0 and no error: bytes required to make progress
  };

  Status feed_impl(std::span<const std::byte> chunk, Callback callback, void* context);
  Result<Step> parse_step(std::span<const std::byte> data, Callback callback, void* context);
  Status fail(Status status, TerminateCode code);

  bool crc_enabled_;
  std::vector<std::byte> buffer_;  // a partial FPDU
  size_t needed_ = 0;              // buffer_ is parsed again once it holds this many bytes
  Status status_;
  TerminateCode terminate_code_ = TerminateCode::kRdmapLocalCatastrophic;
  uint64_t segments_ = 0;
  uint64_t consumed_ = 0;
};

}  // namespace wv::verbs::tcp
