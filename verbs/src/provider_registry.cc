// The table of providers built into the library, and the choice of one by name or config.
#include <string>

#include "provider_factories.h"
#include "wv/config/config.h"
#include "wv/config/names.h"
#include "wv/verbs/provider.h"

namespace wv::verbs {

namespace {

struct ProviderEntry {
  std::string_view name;
  Result<std::shared_ptr<Provider>> (*open)();
};

// In the order `auto` tries them: the fastest transport that works on this machine first.
constexpr ProviderEntry kProviders[] = {
#if WV_HAVE_IBVERBS
    // First: real RDMA where the machine has a device. Without one it fails to open ("no RDMA
    // devices") and `auto` goes on to tcp.
    {"ibverbs", open_ibverbs_provider},
#endif
    // Without RDMA devices: tcp between hosts, shared memory to the peers on this host.
    {"hybrid", open_hybrid_provider},
    {"tcp", open_tcp_provider},
    // Last: shm reaches only this host.
    {"shm", open_shm_provider},
};

constexpr std::string_view kNames[] = {"tcp", "shm", "hybrid",
#if WV_HAVE_IBVERBS
                                       "ibverbs"
#endif
};

}  // namespace

std::span<const std::string_view> Provider::names() {
  return kNames;
}

Result<std::shared_ptr<Provider>> Provider::open(std::string_view name) {
  std::string failures;
  for (const ProviderEntry& entry : kProviders) {
    if (name != "auto" && name != entry.name) continue;
    auto provider = entry.open();
    if (provider.is_ok() || name != "auto") return provider;
    failures += "; " + std::string(entry.name) + ": " + provider.status().message();
  }
  if (name == "auto") {
    return Status(Errc::kNotFound, "no provider can run on this machine" + failures);
  }
  std::string known;
  for (std::string_view known_name : kNames) known += " " + std::string(known_name);
  return Status(Errc::kNotFound,
                "unknown provider '" + std::string(name) + "' (built in:" + known + ")");
}

Result<std::shared_ptr<Provider>> Provider::open_configured() {
  const auto& config = config::global();
  if (!config.is_ok()) return config.status();
  return open(config->get_string(config::names::kProvider));
}

}  // namespace wv::verbs
