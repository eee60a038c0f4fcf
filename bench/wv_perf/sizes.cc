#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>

#include "subcommand.h"

namespace wv::perf {

Result<std::vector<uint64_t>> parse_sizes(std::string_view text) {
  std::vector<uint64_t> sizes;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(start, end - start);
    uint64_t value = 0;
    auto [rest, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    std::string suffix(rest, item.data() + item.size());
    std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](char c) {
      return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    });
    uint64_t scale = 0;
    if (suffix.empty() || suffix == "b") scale = 1;
    if (suffix == "k" || suffix == "kib") scale = uint64_t{1} << 10;
    if (suffix == "m" || suffix == "mib") scale = uint64_t{1} << 20;
    if (suffix == "g" || suffix == "gib") scale = uint64_t{1} << 30;
    if (ec != std::errc() || item.empty() || scale == 0 || value > (UINT32_MAX / scale)) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("bad size '{}' in --sizes (bytes, optionally K, M or G; at most "
                                "4 GiB - 1)",
                                item));
    }
    if (std::find(sizes.begin(), sizes.end(), value * scale) == sizes.end()) {
      sizes.push_back(value * scale);
    }
    start = end + 1;
  }
  return sizes;
}

std::vector<uint64_t> power_of_two_sizes(uint64_t max) {
  std::vector<uint64_t> sizes{0};
  for (uint64_t size = 1; size <= max; size *= 2) sizes.push_back(size);
  return sizes;
}

}  // namespace wv::perf
