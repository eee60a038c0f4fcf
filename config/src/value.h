// Value syntax shared by check_value() and the Config getters (internal to wv_config).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "wv/config/definition.h"
#include "wv/result.h"

namespace wv::config::detail {

std::optional<bool> parse_bool(std::string_view text);
std::optional<int64_t> parse_int(std::string_view text);

// check_value(), and on success the spelling to store in *canonical: choices are matched
// case-insensitively but stored as defined, so callers can compare with ==.
Status check_value(const Definition& definition, std::string_view value, std::string* canonical);

}  // namespace wv::config::detail
