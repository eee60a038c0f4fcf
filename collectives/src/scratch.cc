#include "scratch.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace wv::coll::detail {

namespace {

// A few buffers per thread (an algorithm holds up to three at once, nested ones a few more);
// larger ones are not kept, their allocation is cheap beside what they carry.
constexpr size_t kPooledBuffers = 8;
constexpr size_t kLargestPooled = size_t{16} << 20;

struct Buffer {
  size_t capacity;
  std::unique_ptr<std::byte[]> data;
};
thread_local std::vector<Buffer> free_buffers;

}  // namespace

Scratch::Scratch(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  auto best = free_buffers.end();
  for (auto it = free_buffers.begin(); it != free_buffers.end(); ++it) {
    if (it->capacity >= bytes && (best == free_buffers.end() || it->capacity < best->capacity)) {
      best = it;
    }
  }
  if (best != free_buffers.end()) {
    capacity_ = best->capacity;
    data_ = std::move(best->data);
    free_buffers.erase(best);
    return;
  }
  data_ = std::make_unique_for_overwrite<std::byte[]>(bytes);
  capacity_ = bytes;
}

Scratch::~Scratch() {
  if (!data_ || capacity_ > kLargestPooled) return;
  if (free_buffers.size() == kPooledBuffers) {
    auto smallest =
        std::min_element(free_buffers.begin(), free_buffers.end(),
                         [](const Buffer& a, const Buffer& b) { return a.capacity < b.capacity; });
    if (smallest->capacity >= capacity_) return;
    free_buffers.erase(smallest);
  }
  free_buffers.push_back(Buffer{capacity_, std::move(data_)});
}

}  // namespace wv::coll::detail
