// The schema of wv's one parameter registry: every tunable of every layer, declared once.
//
// All parameters live in a single table (config/src/definitions.cc) rather than one per
// layer, so that a misspelled name in a file, the environment or on a command line is
// always detected, and every tool can list the complete set.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "wv/result.h"

namespace wv::config {

enum class Type {
  kBool,     // true/false, yes/no, on/off, 1/0, case-insensitive
  kInteger,  // optional sign, decimal
  kSize,     // bytes with an optional binary suffix: 4096, 64K, 1MiB (K = KiB = 1024); parse_size
  kString,
  kChoice,  // one of Definition::choices, case-insensitive
};

// A byte count in the kSize syntax (also "B"; suffixes case-insensitive), for any program
// that takes sizes the way the configuration does; nullopt when malformed or too large.
std::optional<uint64_t> parse_size(std::string_view text);

// Who is expected to set a parameter, like Open MPI's info levels; tools can hide the
// developer knobs from users.
enum class Level {
  kUser,       // what to run on and how long to wait
  kTuner,      // performance trade-offs
  kDeveloper,  // debugging and test set-ups
};

struct Definition {
  std::string_view name;  // lower_snake_case; the environment variable is WV_<NAME>
  Type type;
  std::string_view default_value;  // in the same syntax as values from any other source
  std::string_view description;
  Level level;
  std::span<const std::string_view> choices = {};  // kChoice only
  int64_t min = INT64_MIN;                         // kInteger and kSize
  int64_t max = INT64_MAX;
};

std::span<const Definition> definitions();
// nullptr if there is no such parameter.
const Definition* find_definition(std::string_view name);
// "WV_" + the upper-cased name.
std::string environment_variable(std::string_view name);

// Whether `value` is acceptable for `definition` (syntax, choices, range). The message says
// what is wrong with the value; callers add the parameter and where the value came from.
Status check_value(const Definition& definition, std::string_view value);

std::string_view to_string(Type type);
std::string_view to_string(Level level);

}  // namespace wv::config
