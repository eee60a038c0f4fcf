#include "buffer_pool.h"

#include <sys/mman.h>

#include <string>

namespace wv::transport {

Result<std::unique_ptr<BufferPool>> BufferPool::create(verbs::ProtectionDomain& domain,
                                                       uint32_t count, size_t buffer_size,
                                                       verbs::Access access) {
  // Cache-line multiples so neighbouring buffers never share a line.
  buffer_size = (buffer_size + 63) & ~size_t{63};
  const size_t bytes = buffer_size * count;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    return errno_status(Errc::kNoMemory,
                        "cannot map " + std::to_string(bytes) + " bytes of message buffers");
  }
  std::unique_ptr<BufferPool> pool(
      new BufferPool(static_cast<std::byte*>(memory), bytes, count, buffer_size));
  auto region = domain.register_memory(memory, bytes, access);
  if (!region.is_ok()) return region.status();
  pool->region_ = std::move(region).value();
  pool->free_.reserve(count);
  for (uint32_t i = count; i > 0; --i) pool->free_.push_back(i - 1);
  return pool;
}

BufferPool::~BufferPool() {
  region_.reset();
  munmap(memory_, bytes_);
}

uint32_t BufferPool::take() {
  if (free_.empty()) return kNone;
  uint32_t index = free_.back();
  free_.pop_back();
  return index;
}

}  // namespace wv::transport
