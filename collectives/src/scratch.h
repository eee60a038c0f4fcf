// Working memory for one call of an algorithm, uninitialised. Buffers come from a small pool of
// the calling thread's and go back to it at scope exit, so a loop of collectives allocates,
// faults in and zeroes nothing after its first call: a fresh std::vector of 256 KiB cost an
// mmap, 64 page faults and a memset on every call.
#pragma once

#include <cstddef>
#include <memory>

namespace wv::coll::detail {

class Scratch {
 public:
  explicit Scratch(size_t bytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<std::byte[]> data_;
  size_t capacity_ = 0;
  size_t size_;
};

}  // namespace wv::coll::detail
