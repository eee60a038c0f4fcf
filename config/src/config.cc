#include "wv/config/config.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <optional>
#include <system_error>
#include <utility>

#include "value.h"

namespace wv::config {
namespace {

constexpr std::string_view kPrefix = "WV_";
constexpr std::string_view kConfigVariable = "WV_CONFIG";
constexpr std::string_view kReserved[] = {
    kConfigVariable, "WV_RANK",      "WV_SIZE",      "WV_LOCAL_RANK",
    "WV_LOCAL_SIZE", "WV_JOB_STORE", "WV_JOB_TOKEN", "WV_JOB_ID",
};

// A value read from the file or the environment, applied once the whole source is known
// to contain only parameters.
struct Setting {
  const Definition* definition;
  std::string value;
  Origin origin;
  std::string origin_detail;
};

char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower_case(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

// Levenshtein distance, ignoring case: WV_Provider should suggest WV_PROVIDER.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = diagonal + (to_lower(a[i - 1]) == to_lower(b[j - 1]) ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

// "; did you mean X?" for the closest candidate within two edits, else "".
std::string suggestion(std::string_view word, const std::vector<std::string>& candidates,
                       bool quote) {
  constexpr size_t kMaxDistance = 2;
  const std::string* best = nullptr;
  size_t best_distance = kMaxDistance + 1;
  for (const std::string& candidate : candidates) {
    size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best = &candidate;
      best_distance = distance;
    }
  }
  if (best == nullptr) return "";
  return quote ? fmt::format("; did you mean '{}'?", *best)
               : fmt::format("; did you mean {}?", *best);
}

std::vector<std::string> parameter_names() {
  std::vector<std::string> names;
  for (const Definition& definition : definitions()) names.emplace_back(definition.name);
  return names;
}

std::string describe_source(Origin origin, std::string_view detail) {
  switch (origin) {
    case Origin::kDefault:
      return "the built-in default";
    case Origin::kEnvironment:
      return fmt::format("environment variable {}", detail);
    case Origin::kFile:
    case Origin::kOverride:
      break;
  }
  return detail.empty() ? std::string("a programmatic override") : std::string(detail);
}

Status unknown_parameter(std::string_view name, std::string_view source) {
  return {Errc::kNotFound, fmt::format("unknown parameter '{}' from {}{}", name, source,
                                       suggestion(name, parameter_names(), /*quote=*/true))};
}

// Like getenv(): the first NAME=value wins.
std::optional<std::string_view> find_variable(const std::vector<std::string>& environment,
                                              std::string_view name) {
  for (std::string_view entry : environment) {
    if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return std::nullopt;
}

struct ConfigFile {
  std::string path;
  bool required;  // named by WV_CONFIG rather than found at a default location
};

std::optional<ConfigFile> locate_config_file(const std::vector<std::string>& environment) {
  if (auto path = find_variable(environment, kConfigVariable)) {
    if (path->empty()) return std::nullopt;
    return ConfigFile{std::string(*path), true};
  }
  if (auto xdg = find_variable(environment, "XDG_CONFIG_HOME"); xdg && !xdg->empty()) {
    return ConfigFile{fmt::format("{}/wv/wv.toml", *xdg), false};
  }
  if (auto home = find_variable(environment, "HOME"); home && !home->empty()) {
    return ConfigFile{fmt::format("{}/.config/wv/wv.toml", *home), false};
  }
  return std::nullopt;
}

Status read_error(const ConfigFile& file, int error) {
  bool missing = error == ENOENT || error == ENOTDIR;
  return {missing ? Errc::kNotFound : Errc::kIoError,
          fmt::format("cannot read config file {}{}: {}", file.path,
                      file.required ? fmt::format(" (named by {})", kConfigVariable) : "",
                      std::generic_category().message(error))};
}

// The file's text, or nullopt if a default-location file does not exist.
Result<std::optional<std::string>> read_text(const ConfigFile& file) {
  int fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    if (!file.required && (error == ENOENT || error == ENOTDIR)) {
      return std::optional<std::string>();
    }
    return read_error(file, error);
  }
  std::string text;
  struct stat info {};
  int error = 0;
  if (::fstat(fd, &info) != 0) {
    error = errno;
  } else if (S_ISDIR(info.st_mode)) {
    error = EISDIR;
  } else {
    char buffer[4096];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n > 0) {
        text.append(buffer, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else if (errno != EINTR) {
        error = errno;
        break;
      }
    }
  }
  ::close(fd);
  if (error != 0) return read_error(file, error);
  return std::optional<std::string>(std::move(text));
}

std::string_view node_kind(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::floating_point:
      return "floating-point number";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "date/time";
    default:
      return "value";
  }
}

Status parse_file(const std::string& path, std::string_view text, std::vector<Setting>& out) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& error) {
    return {Errc::kInvalidArgument,
            fmt::format("config file {}:{}:{}: {}", path, error.source().begin.line,
                        error.source().begin.column, error.description())};
  }
  for (auto&& [key, node] : root) {
    std::string detail = fmt::format("{}: {}", path, key.str());
    if (node.is_table()) {
      return {Errc::kInvalidArgument,
              fmt::format("{}: '{}' is a table, but the config file holds only top-level "
                          "parameters (name = value)",
                          path, key.str())};
    }
    const Definition* definition = find_definition(key.str());
    if (definition == nullptr) return unknown_parameter(key.str(), detail);
    // Native TOML scalars are spelled as in any other source and then checked like them.
    std::string value;
    if (const auto* string = node.as_string()) {
      value = string->get();
    } else if (const auto* boolean = node.as_boolean()) {
      value = boolean->get() ? "true" : "false";
    } else if (const auto* integer = node.as_integer()) {
      value = std::to_string(integer->get());
    } else {
      return {Errc::kInvalidArgument,
              fmt::format("invalid value for parameter '{}' from {}: a TOML {} is not a {}",
                          definition->name, detail, node_kind(node), to_string(definition->type))};
    }
    out.push_back({definition, std::move(value), Origin::kFile, std::move(detail)});
  }
  return Status::ok();
}

Status read_file(const std::vector<std::string>& environment, std::vector<Setting>& out) {
  std::optional<ConfigFile> file = locate_config_file(environment);
  if (!file) return Status::ok();
  Result<std::optional<std::string>> text = read_text(*file);
  if (!text) return text.status();
  if (!text.value()) return Status::ok();
  return parse_file(file->path, **text, out);
}

bool is_reserved(std::string_view variable) {
  return std::find(std::begin(kReserved), std::end(kReserved), variable) != std::end(kReserved);
}

Status read_environment(const std::vector<std::string>& environment, std::vector<Setting>& out) {
  std::vector<std::string_view> seen;
  for (std::string_view entry : environment) {
    size_t equals = entry.find('=');
    if (equals == std::string_view::npos) continue;
    std::string_view variable = entry.substr(0, equals);
    if (!variable.starts_with(kPrefix) || is_reserved(variable)) continue;
    if (std::find(seen.begin(), seen.end(), variable) != seen.end()) continue;
    seen.push_back(variable);

    auto definitions_table = definitions();
    auto it = std::find_if(
        definitions_table.begin(), definitions_table.end(),
        [variable](const Definition& d) { return environment_variable(d.name) == variable; });
    if (it == definitions_table.end()) {
      std::vector<std::string> candidates;
      for (const Definition& d : definitions_table)
        candidates.push_back(environment_variable(d.name));
      candidates.insert(candidates.end(), std::begin(kReserved), std::end(kReserved));
      return {Errc::kNotFound, fmt::format("unknown parameter '{}' from environment variable {}{}",
                                           lower_case(variable.substr(kPrefix.size())), variable,
                                           suggestion(variable, candidates, /*quote=*/false))};
    }
    out.push_back(
        {&*it, std::string(entry.substr(equals + 1)), Origin::kEnvironment, std::string(variable)});
  }
  return Status::ok();
}

}  // namespace

std::string_view to_string(Origin origin) {
  switch (origin) {
    case Origin::kDefault:
      return "default";
    case Origin::kFile:
      return "file";
    case Origin::kEnvironment:
      return "environment";
    case Origin::kOverride:
      return "override";
  }
  return "unknown";
}

std::span<const std::string_view> reserved_environment() {
  return kReserved;
}

Sources Sources::from_process() {
  Sources sources;
  for (char** variable = ::environ; variable != nullptr && *variable != nullptr; ++variable) {
    sources.environment.emplace_back(*variable);
  }
  return sources;
}

Result<Config> Config::load(const Sources& sources) {
  Config config;
  config.entries_.reserve(definitions().size());
  for (const Definition& definition : definitions()) {
    assert(detail::check_value(definition, definition.default_value, nullptr).is_ok());
    config.entries_.push_back(
        {&definition, std::string(definition.default_value), Origin::kDefault, ""});
  }
  // Both sources are read in full before anything is applied; the environment is applied
  // last because it has the higher priority.
  std::vector<Setting> settings;
  if (Status status = read_file(sources.environment, settings); !status) return status;
  if (Status status = read_environment(sources.environment, settings); !status) return status;
  for (Setting& setting : settings) {
    Status status = config.assign(*setting.definition, setting.value, setting.origin,
                                  std::move(setting.origin_detail));
    if (!status) return status;
  }
  return config;
}

Status Config::set(std::string_view name, std::string_view value, std::string_view origin_detail) {
  const Definition* definition = find_definition(name);
  if (definition == nullptr) {
    return unknown_parameter(name, describe_source(Origin::kOverride, origin_detail));
  }
  return assign(*definition, value, Origin::kOverride, std::string(origin_detail));
}

Status Config::assign(const Definition& definition, std::string_view value, Origin origin,
                      std::string origin_detail) {
  std::string canonical;
  if (Status status = detail::check_value(definition, value, &canonical); !status) {
    return {status.code(),
            fmt::format("invalid value for parameter '{}' from {}: {}", definition.name,
                        describe_source(origin, origin_detail), status.message())};
  }
  Entry& entry = entries_[static_cast<size_t>(&definition - definitions().data())];
  entry.value = std::move(canonical);
  entry.origin = origin;
  entry.origin_detail = std::move(origin_detail);
  return Status::ok();
}

const Entry* Config::find(std::string_view name) const {
  const Definition* definition = find_definition(name);
  assert(definition != nullptr && "unknown parameter name");
  if (definition == nullptr) return nullptr;
  size_t index = static_cast<size_t>(definition - definitions().data());
  // Only a moved-from Config lacks entries.
  return index < entries_.size() ? &entries_[index] : nullptr;
}

bool Config::get_bool(std::string_view name) const {
  const Entry* entry = find(name);
  bool typed = entry != nullptr && entry->definition->type == Type::kBool;
  assert(typed && "get_bool on a parameter that is not a bool");
  return typed && detail::parse_bool(entry->value).value_or(false);
}

int64_t Config::get_int(std::string_view name) const {
  const Entry* entry = find(name);
  bool typed = entry != nullptr && entry->definition->type == Type::kInteger;
  assert(typed && "get_int on a parameter that is not an integer");
  return typed ? detail::parse_int(entry->value).value_or(0) : 0;
}

uint64_t Config::get_size(std::string_view name) const {
  const Entry* entry = find(name);
  bool typed = entry != nullptr && entry->definition->type == Type::kSize;
  assert(typed && "get_size on a parameter that is not a size");
  return typed ? parse_size(entry->value).value_or(0) : 0;
}

const std::string& Config::get_string(std::string_view name) const {
  static const std::string kEmpty;
  const Entry* entry = find(name);
  bool typed = entry != nullptr && (entry->definition->type == Type::kString ||
                                    entry->definition->type == Type::kChoice);
  assert(typed && "get_string on a parameter that is not a string or choice");
  return typed ? entry->value : kEmpty;
}

const Entry& Config::entry(std::string_view name) const {
  static const Entry kNone{nullptr, "", Origin::kDefault, ""};
  const Entry* entry = find(name);
  return entry != nullptr ? *entry : kNone;
}

const Result<Config>& global() {
  static const Result<Config> kConfig = Config::load(Sources::from_process());
  return kConfig;
}

}  // namespace wv::config
