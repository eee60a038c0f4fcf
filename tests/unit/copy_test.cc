// copy_bytes and stream_bytes at every misalignment of source and target and at lengths around
// their thresholds: every byte lands, none around the target is touched.
#include "wv/copy.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

namespace wv {
namespace {

using CopyFunction = void (*)(void* __restrict, const void* __restrict, size_t);

void check_every_shape(CopyFunction copy) {
  constexpr size_t kGuard = 64;
  for (size_t length : {size_t{0}, size_t{1}, size_t{63}, size_t{255}, size_t{256}, size_t{257},
                        size_t{2047}, size_t{2048}, size_t{4096 + 17}, size_t{70001}}) {
    for (size_t from_offset = 0; from_offset < 64; from_offset += 7) {
      for (size_t to_offset = 0; to_offset < 64; to_offset += 5) {
        std::vector<std::byte> source(length + 64);
        for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<std::byte>(i * 13 + 1);
        std::vector<std::byte> target(length + 64 + 2 * kGuard, std::byte{0xa5});
        copy(target.data() + kGuard + to_offset, source.data() + from_offset, length);
        for (size_t i = 0; i < target.size(); ++i) {
          const size_t start = kGuard + to_offset;
          const std::byte want =
              i >= start && i < start + length ? source[from_offset + i - start] : std::byte{0xa5};
          ASSERT_EQ(target[i], want) << "length " << length << " from +" << from_offset << " to +"
                                     << to_offset << ": byte " << i;
        }
      }
    }
  }
}

TEST(Copy, CopyBytesCopiesExactlyTheRange) {
  check_every_shape(copy_bytes);
}
TEST(Copy, StreamBytesCopiesExactlyTheRange) {
  check_every_shape(stream_bytes);
}

}  // namespace
}  // namespace wv
