// What rank 0 prints: per collective a row per size with every algorithm's time and the
// winner, as the sizes are measured.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "rules.h"

namespace wv::tune {

// "8", "4K", "16M": the sizes as --sizes accepts them.
std::string format_bytes(uint64_t bytes);

class Report {
 public:
  explicit Report(std::FILE* out) : out_(out) {}
  void size_done(const CollectiveTiming& timing, const SizeTiming& size);

 private:
  std::FILE* out_;
};

}  // namespace wv::tune
