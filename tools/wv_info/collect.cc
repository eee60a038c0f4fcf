#include "collect.h"

#include <fmt/format.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "wv/config/names.h"
#include "wv/verbs/device.h"
#include "wv/verbs/provider.h"
#include "wv/verbs/types.h"

namespace wv::info {
namespace {

// Enough GIDs to recognise the addressing in use; the length says how many more exist.
constexpr size_t kGidsShown = 4;
constexpr size_t kPkeysShown = 16;

// InfiniBand's customary GUID spelling: four groups of four hex digits.
std::string guid_string(uint64_t guid) {
  return fmt::format("{:04x}:{:04x}:{:04x}:{:04x}", (guid >> 48) & 0xffff, (guid >> 32) & 0xffff,
                     (guid >> 16) & 0xffff, guid & 0xffff);
}

std::string_view atomic_scope_string(verbs::AtomicScope scope) {
  switch (scope) {
    case verbs::AtomicScope::kNone:
      return "none";
    case verbs::AtomicScope::kDevice:
      return "device";
    case verbs::AtomicScope::kGlobal:
      return "global";
  }
  return "unknown";
}

// to_string() of a flag set gives the names separated by spaces ("none" for none); JSON
// readers want a list.
template <typename Flags>
Json flag_list(Flags flags) {
  Json list = Json::array();
  if (flags == Flags::kNone) return list;
  const std::string text = verbs::to_string(flags);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) list.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return list;
}

Json device_attributes(const verbs::DeviceAttributes& a) {
  Json j;
  j["firmware_version"] = a.firmware_version;
  j["vendor_id"] = a.vendor_id;
  j["device_id"] = a.device_id;
  j["hardware_version"] = a.hardware_version;
  j["node_guid"] = guid_string(a.node_guid);
  j["system_image_guid"] = guid_string(a.system_image_guid);
  j["port_count"] = a.port_count;
  j["max_mr_size"] = a.max_mr_size;
  j["page_size_mask"] = a.page_size_mask;
  j["max_qp"] = a.max_qp;
  j["max_qp_wr"] = a.max_qp_wr;
  j["max_sge"] = a.max_sge;
  j["max_read_sge"] = a.max_read_sge;
  j["max_cq"] = a.max_cq;
  j["max_cqe"] = a.max_cqe;
  j["max_mr"] = a.max_mr;
  j["max_pd"] = a.max_pd;
  j["max_inbound_read_depth"] = a.max_inbound_read_depth;
  j["max_outbound_read_depth"] = a.max_outbound_read_depth;
  j["max_mw"] = a.max_mw;
  j["max_srq"] = a.max_srq;
  j["max_srq_wr"] = a.max_srq_wr;
  j["max_srq_sge"] = a.max_srq_sge;
  j["max_ah"] = a.max_ah;
  j["max_multicast_groups"] = a.max_multicast_groups;
  j["max_inline"] = a.max_inline;
  j["max_message_size"] = a.max_message_size;
  j["atomic_scope"] = atomic_scope_string(a.atomic_scope);
  j["kernel_emulated"] = a.kernel_emulated;
  return j;
}

Json port_info(const verbs::Device& device, uint8_t port) {
  Json j;
  j["port"] = port;
  auto attributes = device.query_port(port);
  if (!attributes) {
    j["error"] = attributes.status().to_string();
    return j;
  }
  const verbs::PortAttributes& a = attributes.value();
  j["state"] = verbs::to_string(a.state);
  j["transport"] = verbs::to_string(a.transport);
  j["max_mtu"] = a.max_mtu;
  j["active_mtu"] = a.active_mtu;
  j["max_message_size"] = a.max_message_size;
  j["lid"] = a.lid;
  j["sm_lid"] = a.sm_lid;
  j["lmc"] = a.lmc;
  j["gid_table_length"] = a.gid_table_length;
  if (auto gids = device.gid_table(port)) {
    Json shown = Json::array();
    for (size_t i = 0; i < gids.value().size() && i < kGidsShown; ++i) {
      shown.push_back(verbs::to_string(gids.value()[i]));
    }
    j["gids"] = shown;
  } else {
    j["gids_error"] = gids.status().to_string();
  }
  j["pkey_table_length"] = a.pkey_table_length;
  if (auto pkeys = device.pkey_table(port)) {
    Json shown = Json::array();
    for (size_t i = 0; i < pkeys.value().size() && i < kPkeysShown; ++i) {
      shown.push_back(fmt::format("0x{:04x}", pkeys.value()[i]));
    }
    j["pkeys"] = shown;
  } else {
    j["pkeys_error"] = pkeys.status().to_string();
  }
  return j;
}

Json device_info(verbs::Provider& provider, const verbs::DeviceInfo& info) {
  Json j;
  j["name"] = info.name;
  j["transport"] = verbs::to_string(info.transport);
  j["guid"] = guid_string(info.guid);
  auto opened = provider.open_device(info.name);
  if (!opened) {
    j["error"] = opened.status().to_string();
    return j;
  }
  const verbs::Device& device = *opened.value();
  const verbs::DeviceAttributes& attributes = device.attributes();
  j["attributes"] = device_attributes(attributes);
  j["capabilities"] = flag_list(attributes.capabilities);
  // Where the device differs from the reference semantics (verbs::Limitation).
  j["limitations"] = flag_list(attributes.limitations);
  Json ports = Json::array();
  for (unsigned port = 1; port <= attributes.port_count; ++port) {
    ports.push_back(port_info(device, static_cast<uint8_t>(port)));
  }
  j["ports"] = ports;
  return j;
}

Json provider_info(std::string_view name, const std::string& selected,
                   const std::string& configured_device) {
  Json j;
  j["name"] = name;
  auto opened = verbs::Provider::open(name);
  if (!opened) {
    j["available"] = false;
    j["error"] = opened.status().to_string();
    return j;
  }
  verbs::Provider& provider = *opened.value();
  j["available"] = true;
  j["selected"] = name == selected;
  Json devices = Json::array();
  if (auto listed = provider.devices()) {
    bool first = true;
    for (const verbs::DeviceInfo& info : listed.value()) {
      Json device = device_info(provider, info);
      // Mirrors open_device(""): the `device` parameter's device, else the first one.
      const bool chosen = configured_device.empty() ? first : info.name == configured_device;
      device["selected"] = name == selected && chosen;
      devices.push_back(std::move(device));
      first = false;
    }
  } else {
    j["devices_error"] = listed.status().to_string();
  }
  j["devices"] = devices;
  Json addresses = Json::array();
  if (auto listed = provider.addresses()) {
    for (const verbs::AddressInfo& info : listed.value()) {
      Json address;
      address["address"] = info.address.to_string();
      address["device"] = info.device;
      address["port"] = info.port;
      address["pkey"] = fmt::format("0x{:04x}", info.pkey);
      addresses.push_back(std::move(address));
    }
  } else {
    j["addresses_error"] = listed.status().to_string();
  }
  j["addresses"] = addresses;
  return j;
}

// Where a value came from, in the words a user would look for it.
std::string source_text(const config::Entry& entry) {
  switch (entry.origin) {
    case config::Origin::kDefault:
      return "default";
    case config::Origin::kFile:
      return fmt::format("file {}", entry.origin_detail);
    case config::Origin::kEnvironment:
      return fmt::format("environment {}", entry.origin_detail);
    case config::Origin::kOverride:
      return entry.origin_detail.empty() ? std::string("override") : entry.origin_detail;
  }
  return "unknown";
}

}  // namespace

Json collect_providers(const config::Config& config) {
  const std::string& configured = config.get_string(config::names::kProvider);
  const std::string& configured_device = config.get_string(config::names::kDevice);
  Json j;
  j["configured"] = configured;
  // The registry resolves "auto"; asking it is the only way to show what wv would really use.
  std::string selected;
  if (auto opened = verbs::Provider::open(configured)) {
    selected = std::string(opened.value()->name());
    j["selected"] = selected;
  } else {
    j["selected"] = nullptr;
    j["selection_error"] = opened.status().to_string();
  }
  j["configured_device"] = configured_device;
  Json providers = Json::array();
  for (std::string_view name : verbs::Provider::names()) {
    providers.push_back(provider_info(name, selected, configured_device));
  }
  j["list"] = providers;
  return j;
}

Json collect_parameters(const config::Config& config, config::Level max_level) {
  Json list = Json::array();
  for (const config::Entry& entry : config.entries()) {
    const config::Definition& d = *entry.definition;
    if (d.level > max_level) continue;
    Json j;
    j["name"] = d.name;
    j["value"] = entry.value;
    j["type"] = config::to_string(d.type);
    j["level"] = config::to_string(d.level);
    j["origin"] = config::to_string(entry.origin);
    j["origin_detail"] = entry.origin_detail;
    j["source"] = source_text(entry);
    j["default"] = d.default_value;
    j["environment_variable"] = config::environment_variable(d.name);
    if (d.type == config::Type::kChoice) {
      Json choices = Json::array();
      for (std::string_view choice : d.choices) choices.push_back(choice);
      j["choices"] = choices;
    }
    if (d.type == config::Type::kInteger || d.type == config::Type::kSize) {
      j["min"] = d.min == INT64_MIN ? Json(nullptr) : Json(d.min);
      j["max"] = d.max == INT64_MAX ? Json(nullptr) : Json(d.max);
    }
    j["description"] = d.description;
    list.push_back(std::move(j));
  }
  return list;
}

}  // namespace wv::info
