#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "subcommand.h"
#include "wv/config/definition.h"

namespace wv::perf {

Result<std::vector<uint64_t>> parse_sizes(std::string_view text) {
  std::vector<uint64_t> sizes;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(start, end - start);
    const std::optional<uint64_t> bytes = config::parse_size(item);
    if (!bytes || *bytes > UINT32_MAX) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("bad size '{}' in --sizes (bytes, optionally K, M or G; at most "
                                "4 GiB - 1)",
                                item));
    }
    if (std::find(sizes.begin(), sizes.end(), *bytes) == sizes.end()) sizes.push_back(*bytes);
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
