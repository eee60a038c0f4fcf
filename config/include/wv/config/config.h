// The loaded configuration: one value per parameter, each with where it came from.
//
// Sources, lowest priority first: built-in default < config file (TOML) < environment
// variable WV_<NAME> < programmatic override (a tool's command-line flags). An unknown name
// or an unparsable value from any source is an error naming the parameter and the source;
// nothing is silently ignored, because a typo that falls back to a default is a silent
// misconfiguration of a whole job.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wv/config/definition.h"
#include "wv/result.h"

namespace wv::config {

enum class Origin { kDefault, kFile, kEnvironment, kOverride };
std::string_view to_string(Origin origin);

// WV_* variables that are not parameters but are still legal in the environment: the config
// file location and what the launcher hands to each process.
std::span<const std::string_view> reserved_environment();

// Where load() reads from. Tests fill it explicitly, so they never see the caller's setup.
struct Sources {
  std::vector<std::string> environment;  // "NAME=value", like environ; the first NAME wins

  // The config file is WV_CONFIG if set (an error if it cannot be read; empty means no file),
  // else $XDG_CONFIG_HOME/wv/wv.toml, else $HOME/.config/wv/wv.toml; a missing default
  // file is not an error. All three variables are looked up in `environment`.
  static Sources from_process();  // copies ::environ
};

struct Entry {
  const Definition* definition;
  std::string value;  // as given, except that a choice is spelled as in its definition
  Origin origin;
  // "" for a default, "<path>: <key>" for the file, the variable name for the environment,
  // whatever the caller of set() passed for an override.
  std::string origin_detail;
};

class Config {
 public:
  static Result<Config> load(const Sources& sources);

  // Overrides every other source; used by tools for their command-line flags. On error the
  // value is unchanged and the message names the parameter and `origin_detail`.
  Status set(std::string_view name, std::string_view value, std::string_view origin_detail);

  // An unknown name or a getter of the wrong type is a programming error: it asserts, and
  // in release builds returns false, zero or an empty string.
  bool get_bool(std::string_view name) const;
  int64_t get_int(std::string_view name) const;
  uint64_t get_size(std::string_view name) const;
  const std::string& get_string(std::string_view name) const;  // kString and kChoice

  const Entry& entry(std::string_view name) const;
  std::span<const Entry> entries() const { return entries_; }  // in definition order

 private:
  Config() = default;
  Status assign(const Definition& definition, std::string_view value, Origin origin,
                std::string origin_detail);
  const Entry* find(std::string_view name) const;

  std::vector<Entry> entries_;
};

// The process-wide configuration, loaded once (thread-safe) from Sources::from_process().
// If loading failed it holds the error, for every user (e.g. Provider::open) to report.
const Result<Config>& global();

}  // namespace wv::config
