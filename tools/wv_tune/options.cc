#include "options.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <optional>

#include "wv/config/definition.h"

namespace wv::tune {

namespace {

// 1 GiB per rank's block: alltoall already needs 2 * procs of these per rank.
constexpr uint64_t kMaxSize = uint64_t{1} << 30;
constexpr uint64_t kDefaultLargest = uint64_t{16} << 20;

std::vector<std::string_view> split(std::string_view text) {
  std::vector<std::string_view> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    items.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

}  // namespace

std::vector<uint64_t> default_sizes() {
  std::vector<uint64_t> sizes{8};
  for (uint64_t size = 16; size <= kDefaultLargest; size *= 4) sizes.push_back(size);
  return sizes;
}

Result<std::vector<uint64_t>> parse_sizes(std::string_view text) {
  std::vector<uint64_t> sizes;
  for (std::string_view item : split(text)) {
    const std::optional<uint64_t> bytes = config::parse_size(item);
    if (!bytes || *bytes == 0 || *bytes > kMaxSize) {
      return Status(Errc::kInvalidArgument,
                    fmt::format("bad size '{}' in --sizes (bytes from 1 to 1G, optionally with K, "
                                "M or G; the barrier is always measured, at 0 bytes)",
                                item));
    }
    sizes.push_back(*bytes);
  }
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

Result<std::vector<coll::Collective>> parse_collectives(std::string_view text) {
  std::vector<coll::Collective> collectives;
  for (std::string_view item : split(text)) {
    auto collective = coll::parse_collective(item);
    if (!collective.is_ok()) {
      std::string choices;
      for (coll::Collective c : coll::kAllCollectives) {
        choices += (choices.empty() ? "" : ", ") + std::string(coll::to_string(c));
      }
      return Status(
          Errc::kInvalidArgument,
          fmt::format("unknown collective '{}' in --collectives (choices: {})", item, choices));
    }
    if (std::find(collectives.begin(), collectives.end(), *collective) == collectives.end()) {
      collectives.push_back(*collective);
    }
  }
  return collectives;
}

std::optional<int> parse_command_line(int argc, char** argv, Options& options) {
  CLI::App app{
      "wv_tune: times every algorithm of every collective at each message size on this job "
      "(run it under wvrun -n N) and writes the fastest per size as a decision table for "
      "collectives_table (WV_COLLECTIVES_TABLE)."};
  app.name("wv_tune");
  std::string sizes;
  std::string collectives;
  app.add_option("--out", options.out, "The table to write (replaced atomically)")->required();
  app.add_option("--sizes", sizes,
                 "Comma-separated message sizes in bytes, K/M/G allowed (default: 8 and the "
                 "powers of 4 from 16 to 16M)");
  app.add_option("--iterations", options.iterations,
                 "Timed calls per algorithm and size (the median counts); large sizes use fewer")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--collectives", collectives, "Comma-separated collectives (default: all)");
  app.add_option("--merge", options.merge,
                 "Keep this table's rules for other process and host counts after the new ones");
  app.add_option("--time-limit", options.time_limit,
                 "Stop measuring after this many seconds and write what was measured (0: none)")
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  auto parsed_sizes =
      sizes.empty() ? Result<std::vector<uint64_t>>(default_sizes()) : parse_sizes(sizes);
  if (!parsed_sizes.is_ok()) {
    fmt::print(stderr, "wv_tune: {}\n", parsed_sizes.status().message());
    return kExitUsage;
  }
  options.sizes = std::move(parsed_sizes).value();
  if (collectives.empty()) {
    options.collectives.assign(std::begin(coll::kAllCollectives), std::end(coll::kAllCollectives));
  } else {
    auto parsed = parse_collectives(collectives);
    if (!parsed.is_ok()) {
      fmt::print(stderr, "wv_tune: {}\n", parsed.status().message());
      return kExitUsage;
    }
    options.collectives = std::move(parsed).value();
  }
  return std::nullopt;
}

}  // namespace wv::tune
