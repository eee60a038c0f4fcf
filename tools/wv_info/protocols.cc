#include "protocols.h"

#include <fmt/format.h>

#include <string_view>

#include "wv/transport/worker.h"
#include "wv/verbs/provider.h"

namespace wv::info {

namespace {

constexpr size_t kSizes[] = {0,     8,     64,     256,     1024,     4096,
                             16384, 65536, 262144, 1 << 20, 16 << 20, 64 << 20};

std::string size_text(size_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} B", bytes);
}

Json one_provider(std::string_view name) {
  Json entry;
  entry["provider"] = name;
  transport::WorkerOptions options;
  options.provider = std::string(name);
  options.listen_address = "127.0.0.1:0";
  auto worker = transport::Worker::create(options);
  if (!worker.is_ok()) {
    entry["error"] = worker.status().to_string();
    return entry;
  }
  const transport::ProtocolThresholds& t = (*worker)->thresholds();
  entry["inline_limit"] = t.inline_limit;
  entry["eager_limit"] = t.eager_limit;
  entry["rendezvous_scheme"] = transport::to_string(t.scheme);
  entry["fragment_size"] = t.fragment_size;
  entry["copy_bandwidth_gbps"] = t.copy_bandwidth_gbps;
  entry["registration_cost_us"] = t.registration_cost_us;
  Json reasons = Json::array();
  size_t start = 0;
  while (start < t.rationale.size()) {
    size_t end = t.rationale.find('\n', start);
    if (end == std::string::npos) end = t.rationale.size();
    if (end > start) reasons.push_back(t.rationale.substr(start, end - start));
    start = end + 1;
  }
  entry["rationale"] = reasons;
  Json paths = Json::array();
  for (size_t size : kSizes) {
    Json row;
    row["size"] = size;
    row["path"] = transport::to_string(t.path_for(size));
    if (t.path_for(size) == transport::Path::kRendezvous) {
      row["scheme"] = transport::to_string(t.scheme);
      row["fragments"] = (size + t.fragment_size - 1) / t.fragment_size;
    }
    paths.push_back(row);
  }
  entry["paths"] = paths;
  return entry;
}

}  // namespace

Json collect_protocols(const std::string& provider) {
  Json all = Json::array();
  if (!provider.empty() && provider != "auto") {
    all.push_back(one_provider(provider));
    return all;
  }
  for (std::string_view name : verbs::Provider::names()) all.push_back(one_provider(name));
  return all;
}

void print_protocols(const Json& protocols, std::FILE* out) {
  fmt::print(out, "Protocols (what a worker chooses per message size)\n");
  for (const Json& entry : protocols) {
    fmt::print(out, "  {}:", entry["provider"].get<std::string>());
    if (entry.contains("error")) {
      fmt::print(out, " cannot open: {}\n", entry["error"].get<std::string>());
      continue;
    }
    fmt::print(out, " inline <= {}, eager <= {}, rendezvous by {} in {} fragments\n",
               size_text(entry["inline_limit"].get<size_t>()),
               size_text(entry["eager_limit"].get<size_t>()),
               entry["rendezvous_scheme"].get<std::string>(),
               size_text(entry["fragment_size"].get<size_t>()));
    fmt::print(out, "    measured: memcpy {:.1f} GB/s, registration {:.1f} us\n",
               entry["copy_bandwidth_gbps"].get<double>(),
               entry["registration_cost_us"].get<double>());
    for (const Json& reason : entry["rationale"]) {
      fmt::print(out, "    {}\n", reason.get<std::string>());
    }
    for (const Json& row : entry["paths"]) {
      std::string path = row["path"].get<std::string>();
      if (row.contains("scheme")) {
        path += fmt::format(" ({}, {} fragment{})", row["scheme"].get<std::string>(),
                            row["fragments"].get<size_t>(),
                            row["fragments"].get<size_t>() == 1 ? "" : "s");
      }
      fmt::print(out, "    {:>8}  {}\n", size_text(row["size"].get<size_t>()), path);
    }
  }
}

}  // namespace wv::info
