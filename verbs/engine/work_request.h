// Work requests as the software engine keeps them: fixed-size slots in per-QP rings, filled at
// post time, so that processing them never allocates.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "wv/copy.h"
#include "wv/verbs/types.h"

namespace wv::verbs {
class MemoryWindow;
}

namespace wv::verbs::soft {

inline constexpr uint32_t kMaxSge = 8;
inline constexpr uint32_t kMaxInline = 256;

enum class WorkKind : uint8_t {
  kSend,
  kSendWithImmediate,
  kSendWithInvalidate,
  kWrite,
  kWriteWithImmediate,
  kRead,
  kCompareAndSwap,
  kFetchAndAdd,
  kBindWindow,
  kLocalInvalidate,
};

// A local scatter/gather element after validation: plain memory, no region needed any more.
struct Segment {
  std::byte* address = nullptr;
  uint32_t length = 0;
};

struct SendWorkRequest {
  uint64_t wr_id = 0;
  WorkKind kind = WorkKind::kSend;
  bool signaled = false;
  bool fence = false;
  bool solicited = false;
  uint32_t segment_count = 0;
  uint64_t length = 0;  // total payload bytes
  std::array<Segment, kMaxSge> segments{};
  RemoteAddress remote;
  uint32_t immediate = 0;  // also the key to invalidate
  uint64_t compare = 0;
  uint64_t operand = 0;  // swap value or addend
  // Memory window bind: applied when the request reaches the head of the send queue.
  MemoryWindow* window = nullptr;
  uint32_t window_key = 0;
  Access window_access = Access::kNone;
  uint64_t window_address = 0;
  // Progress, owned by the wire under the QP lock.
  uint32_t wire_tag = 0;  // the wire's name for a read or atomic, to match its response
  uint64_t transmitted_bytes = 0;
  bool transmitted = false;
  bool done = false;
  CompletionStatus status = CompletionStatus::kSuccess;
  std::array<std::byte, kMaxInline> inline_data{};

  bool is_read_like() const {
    return kind == WorkKind::kRead || kind == WorkKind::kCompareAndSwap ||
           kind == WorkKind::kFetchAndAdd;
  }
};

struct ReceiveWorkRequest {
  uint64_t wr_id = 0;
  uint32_t segment_count = 0;
  uint64_t capacity = 0;
  std::array<Segment, kMaxSge> segments{};
};

bool scatter_across(const Segment* segments, uint32_t count, uint64_t offset, const std::byte* data,
                    uint64_t length);

// Copies `length` bytes at `offset` of the scattered buffer from/to `data` (receive placement).
// Returns false if the range lies outside the buffer. Inline for the common case of a range
// within the first segment: a small message's whole placement.
inline bool scatter(const Segment* segments, uint32_t count, uint64_t offset, const std::byte* data,
                    uint64_t length) {
  if (count > 0 && offset + length <= segments[0].length) {
    copy_bytes(segments[0].address + offset, data, length);
    return true;
  }
  return scatter_across(segments, count, offset, data, length);
}

Opcode opcode_of(WorkKind kind);

}  // namespace wv::verbs::soft
