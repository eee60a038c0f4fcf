// The text rendering of wv_info's document, in the spirit of ucx_info / ompi_info: one
// "key: value" per line, indented by nesting, so that grep finds any attribute.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <string_view>

#include "collect.h"

namespace wv::info {
namespace {

constexpr int kKeyWidth = 30;

bool shown_in_hex(std::string_view key) {
  return key == "vendor_id" || key == "device_id" || key == "hardware_version" ||
         key == "page_size_mask";
}

std::string value_text(std::string_view key, const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "-";
  if (value.is_number_unsigned() && shown_in_hex(key)) {
    return fmt::format("0x{:x}", value.get<uint64_t>());
  }
  if (value.is_array()) {
    std::string text;
    for (const Json& item : value) {
      if (!text.empty()) text += ' ';
      text += value_text(key, item);
    }
    return text.empty() ? "none" : text;
  }
  return value.dump();
}

void line(std::FILE* out, int indent, std::string_view key, const std::string& value) {
  fmt::print(out, "{:{}}{:<{}} {}\n", "", indent, fmt::format("{}:", key), kKeyWidth - indent,
             value);
}

void print_port(std::FILE* out, const Json& port) {
  fmt::print(out, "    Port {}\n", port["port"].get<int>());
  for (const auto& [key, value] : port.items()) {
    if (key == "port" || key == "gids" || key == "pkeys") continue;
    line(out, 6, key, value_text(key, value));
    // The shown entries follow their table's length, where a reader looks for them.
    if (key == "gid_table_length" && port.contains("gids")) {
      const Json& gids = port["gids"];
      for (size_t i = 0; i < gids.size(); ++i) {
        line(out, 6, fmt::format("gid[{}]", i), gids[i].get<std::string>());
      }
    }
    if (key == "pkey_table_length" && port.contains("pkeys")) {
      line(out, 6, "pkeys", value_text(key, port["pkeys"]));
    }
  }
}

void print_device(std::FILE* out, const Json& device) {
  fmt::print(out, "  Device {}{}\n", device["name"].get<std::string>(),
             device.value("selected", false) ? " (selected)" : "");
  line(out, 4, "transport", device["transport"].get<std::string>());
  line(out, 4, "guid", device["guid"].get<std::string>());
  if (device.contains("error")) {
    line(out, 4, "error", device["error"].get<std::string>());
    return;
  }
  for (const auto& [key, value] : device["attributes"].items()) {
    line(out, 4, key, value_text(key, value));
  }
  line(out, 4, "capabilities", value_text("capabilities", device["capabilities"]));
  line(out, 4, "limitations", value_text("limitations", device["limitations"]));
  for (const Json& port : device["ports"]) print_port(out, port);
}

void print_providers(std::FILE* out, const Json& providers) {
  const std::string configured = providers["configured"].get<std::string>();
  if (providers["selected"].is_null()) {
    fmt::print(out, "Providers (provider = {}: {})\n", configured,
               providers["selection_error"].get<std::string>());
  } else if (configured == providers["selected"].get<std::string>()) {
    fmt::print(out, "Providers (provider = {})\n", configured);
  } else {
    fmt::print(out, "Providers (provider = {} -> {})\n", configured,
               providers["selected"].get<std::string>());
  }
  size_t width = 0;
  for (const Json& p : providers["list"])
    width = std::max(width, p["name"].get_ref<const std::string&>().size());
  for (const Json& p : providers["list"]) {
    const std::string& name = p["name"].get_ref<const std::string&>();
    if (p["available"].get<bool>()) {
      fmt::print(out, "  {:<{}}  available{}\n", name, width,
                 p.value("selected", false) ? " (selected)" : "");
    } else {
      fmt::print(out, "  {:<{}}  not available: {}\n", name, width, p["error"].get<std::string>());
    }
  }
  for (const Json& p : providers["list"]) {
    if (!p["available"].get<bool>()) continue;
    fmt::print(out, "\nProvider {}\n", p["name"].get<std::string>());
    if (p.contains("devices_error")) line(out, 2, "devices", p["devices_error"].get<std::string>());
    for (const Json& device : p["devices"]) print_device(out, device);
    fmt::print(out, "  Addresses\n");
    if (p.contains("addresses_error")) {
      line(out, 4, "error", p["addresses_error"].get<std::string>());
    } else if (p["addresses"].empty()) {
      fmt::print(out, "    none\n");
    }
    for (const Json& a : p["addresses"]) {
      fmt::print(out, "    {:<24} device {} port {} pkey {}\n", a["address"].get<std::string>(),
                 a["device"].get<std::string>(), a["port"].get<int>(),
                 a["pkey"].get<std::string>());
    }
  }
}

void print_parameters(std::FILE* out, const Json& document) {
  fmt::print(out, "Parameters (level {} and below; set in a config file, WV_<NAME>, or flags)\n",
             document["parameter_level"].get<std::string>());
  size_t name_width = 0;
  size_t value_width = 0;
  for (const Json& p : document["parameters"]) {
    name_width = std::max(name_width, p["name"].get_ref<const std::string&>().size());
    value_width = std::max(value_width, p["value"].get_ref<const std::string&>().size() + 2);
  }
  for (const Json& p : document["parameters"]) {
    fmt::print(out, "  {:<{}} = {:<{}} [{}, {}, from {}]\n", p["name"].get<std::string>(),
               name_width, fmt::format("\"{}\"", p["value"].get<std::string>()), value_width,
               p["type"].get<std::string>(), p["level"].get<std::string>(),
               p["source"].get<std::string>());
    fmt::print(out, "      {}\n", p["description"].get<std::string>());
    std::string facts = fmt::format("default \"{}\"", p["default"].get<std::string>());
    if (p.contains("choices")) {
      std::string choices;
      for (const Json& choice : p["choices"]) {
        choices += (choices.empty() ? "" : "|") + choice.get<std::string>();
      }
      facts += fmt::format("; choices {}", choices);
    }
    if (p.contains("min") && !p["min"].is_null()) facts += fmt::format("; min {}", p["min"].dump());
    if (p.contains("max") && !p["max"].is_null()) facts += fmt::format("; max {}", p["max"].dump());
    facts += fmt::format("; env {}", p["environment_variable"].get<std::string>());
    fmt::print(out, "      {}\n", facts);
  }
}

}  // namespace

void print_text(const Json& document, std::FILE* out) {
  fmt::print(out, "wv {}\n\n", document["wv_version"].get<std::string>());
  if (document.contains("providers")) {
    print_providers(out, document["providers"]);
    fmt::print(out, "\n");
  }
  print_parameters(out, document);
}

}  // namespace wv::info
