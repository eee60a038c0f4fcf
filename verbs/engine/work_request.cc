#include "work_request.h"

#include <algorithm>
#include <cstring>

#include "wv/copy.h"

namespace wv::verbs::soft {

bool scatter_across(const Segment* segments, uint32_t count, uint64_t offset, const std::byte* data,
                    uint64_t length) {
  for (uint32_t i = 0; i < count && length > 0; ++i) {
    if (offset >= segments[i].length) {
      offset -= segments[i].length;
      continue;
    }
    const uint64_t chunk = std::min<uint64_t>(length, segments[i].length - offset);
    copy_bytes(segments[i].address + offset, data, chunk);
    data += chunk;
    length -= chunk;
    offset = 0;
  }
  return length == 0;
}

Opcode opcode_of(WorkKind kind) {
  switch (kind) {
    case WorkKind::kSend:
    case WorkKind::kSendWithImmediate:
    case WorkKind::kSendWithInvalidate:
      return Opcode::kSend;
    case WorkKind::kWrite:
    case WorkKind::kWriteWithImmediate:
      return Opcode::kRdmaWrite;
    case WorkKind::kRead:
      return Opcode::kRdmaRead;
    case WorkKind::kCompareAndSwap:
      return Opcode::kCompareAndSwap;
    case WorkKind::kFetchAndAdd:
      return Opcode::kFetchAndAdd;
    case WorkKind::kBindWindow:
      return Opcode::kBindMemoryWindow;
    case WorkKind::kLocalInvalidate:
      return Opcode::kLocalInvalidate;
  }
  return Opcode::kSend;
}

}  // namespace wv::verbs::soft
