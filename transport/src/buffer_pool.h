// A slab of equal-sized buffers inside one memory registration: the eager send buffers and
// the shared receive queue's buffers. take/give are O(1) and never allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "wv/result.h"
#include "wv/verbs/memory_region.h"
#include "wv/verbs/protection_domain.h"

namespace wv::transport {

class BufferPool {
 public:
  static constexpr uint32_t kNone = 0xffffffffu;

  static Result<std::unique_ptr<BufferPool>> create(verbs::ProtectionDomain& domain, uint32_t count,
                                                    size_t buffer_size, verbs::Access access);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  uint32_t count() const { return count_; }
  size_t buffer_size() const { return buffer_size_; }
  std::byte* buffer(uint32_t index) const { return memory_ + index * buffer_size_; }
  verbs::Sge sge(uint32_t index, size_t length) const {
    return {region_.get(), buffer(index), static_cast<uint32_t>(length)};
  }
  uint32_t take();
  void give(uint32_t index) { free_.push_back(index); }  // capacity reserved: no allocation
  size_t available() const { return free_.size(); }

 private:
  BufferPool(std::byte* memory, size_t bytes, uint32_t count, size_t buffer_size)
      : memory_(memory), bytes_(bytes), count_(count), buffer_size_(buffer_size) {}

  std::byte* memory_;
  size_t bytes_;
  uint32_t count_;
  size_t buffer_size_;
  std::shared_ptr<verbs::MemoryRegion> region_;
  std::vector<uint32_t> free_;
};

}  // namespace wv::transport
