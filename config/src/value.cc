#include "value.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <utility>

namespace wv::config {
namespace detail {
namespace {

char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (to_lower(a[i]) != to_lower(b[i])) return false;
  }
  return true;
}

std::string join(std::span<const std::string_view> words) {
  std::string out;
  for (std::string_view word : words) {
    if (!out.empty()) out += ", ";
    out += word;
  }
  return out;
}

// The allowed range in words; INT64_MIN/INT64_MAX mean "no bound".
std::string describe_range(const Definition& definition) {
  bool has_min = definition.min != INT64_MIN;
  bool has_max = definition.max != INT64_MAX;
  if (has_min && has_max) return fmt::format("between {} and {}", definition.min, definition.max);
  if (has_min) return fmt::format("at least {}", definition.min);
  return fmt::format("at most {}", definition.max);
}

Status out_of_range(const Definition& definition, std::string_view value, std::string_view parsed) {
  // Sizes show the byte count too, since the bounds are in bytes and the value may have a suffix.
  return {Errc::kInvalidArgument, fmt::format("'{}'{} is out of range: must be {}", value,
                                              parsed == value ? "" : fmt::format(" ({})", parsed),
                                              describe_range(definition))};
}

}  // namespace

std::optional<bool> parse_bool(std::string_view text) {
  for (std::string_view yes : {"true", "1", "yes", "on"}) {
    if (equals_ignoring_case(text, yes)) return true;
  }
  for (std::string_view no : {"false", "0", "no", "off"}) {
    if (equals_ignoring_case(text, no)) return false;
  }
  return std::nullopt;
}

std::optional<int64_t> parse_int(std::string_view text) {
  // from_chars takes '-' but not '+'; accept "+5" without accepting "+-5".
  if (text.starts_with('+')) {
    text.remove_prefix(1);
    if (text.starts_with('-')) return std::nullopt;
  }
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || stop != end) return std::nullopt;
  return value;
}

Status check_value(const Definition& definition, std::string_view value, std::string* canonical) {
  std::string spelling(value);
  switch (definition.type) {
    case Type::kBool:
      if (!parse_bool(value)) {
        return {Errc::kInvalidArgument,
                fmt::format("'{}' is not a boolean (true/false, yes/no, on/off or 1/0)", value)};
      }
      break;
    case Type::kInteger: {
      std::optional<int64_t> number = parse_int(value);
      if (!number) {
        return {Errc::kInvalidArgument,
                fmt::format("'{}' is not a decimal integer in the 64-bit range", value)};
      }
      if (*number < definition.min || *number > definition.max) {
        return out_of_range(definition, value, std::to_string(*number));
      }
      break;
    }
    case Type::kSize: {
      std::optional<uint64_t> bytes = parse_size(value);
      if (!bytes) {
        return {Errc::kInvalidArgument,
                fmt::format("'{}' is not a size below 2^64 bytes (a byte count with an optional "
                            "K, M, G, KiB, MiB or GiB suffix)",
                            value)};
      }
      bool below = definition.min > 0 && *bytes < static_cast<uint64_t>(definition.min);
      bool above = definition.max < 0 || *bytes > static_cast<uint64_t>(definition.max);
      if (below || above) return out_of_range(definition, value, std::to_string(*bytes));
      break;
    }
    case Type::kString:
      break;
    case Type::kChoice: {
      const std::string_view* match = nullptr;
      for (const std::string_view& choice : definition.choices) {
        if (equals_ignoring_case(value, choice)) match = &choice;
      }
      if (match == nullptr) {
        return {Errc::kInvalidArgument,
                fmt::format("'{}' is not one of: {}", value, join(definition.choices))};
      }
      spelling = *match;
      break;
    }
  }
  if (canonical != nullptr) *canonical = std::move(spelling);
  return Status::ok();
}

}  // namespace detail

std::optional<uint64_t> parse_size(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, uint64_t>, 8> kSuffixes = {{
      {"", 1},
      {"B", 1},
      {"K", uint64_t{1} << 10},
      {"KiB", uint64_t{1} << 10},
      {"M", uint64_t{1} << 20},
      {"MiB", uint64_t{1} << 20},
      {"G", uint64_t{1} << 30},
      {"GiB", uint64_t{1} << 30},
  }};
  uint64_t count = 0;
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, count);  // unsigned: no sign accepted
  if (error != std::errc() || stop == text.data()) return std::nullopt;
  std::string_view suffix(stop, static_cast<size_t>(end - stop));
  for (const auto& [name, multiplier] : kSuffixes) {
    if (!detail::equals_ignoring_case(suffix, name)) continue;
    if (count > UINT64_MAX / multiplier) return std::nullopt;
    return count * multiplier;
  }
  return std::nullopt;
}

Status check_value(const Definition& definition, std::string_view value) {
  return detail::check_value(definition, value, nullptr);
}

}  // namespace wv::config
