// wv_info: what wv sees on this machine and how it is configured, like ucx_info / ompi_info.
//
// Exit status: 0 when the report was printed (providers that do not open are part of the
// report, not a failure), 2 when the configuration cannot be loaded or a flag's value is not
// acceptable to it, since then every wv program on this machine would fail the same way.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <utility>

#include "collect.h"
#include "collectives.h"
#include "protocols.h"
#include "wv/config/config.h"
#include "wv/config/names.h"

namespace {

constexpr int kConfigError = 2;

}  // namespace

int main(int argc, char** argv) {
  using wv::info::Json;
  namespace config = wv::config;

  CLI::App app{
      "wv_info: the providers, devices, ports and addresses wv can use here, and every "
      "configuration parameter with its value and where that value came from."};
  app.name("wv_info");
  bool json = false;
  bool params_only = false;
  bool protocols = false;
  bool collectives = false;
  std::string provider;
  std::string level = "developer";
  app.add_flag("--json", json, "Print one JSON document with the same content");
  app.add_option(
      "--provider", provider,
      "Set the provider parameter (auto|tcp|shm|hybrid|ibverbs) as a command-line override");
  app.add_flag("--params", params_only, "Print the configuration parameters only");
  app.add_flag("--protocols", protocols,
               "Print the messaging engine's protocol per provider and message size only");
  app.add_flag("--collectives", collectives,
               "Print the collectives' decision table (algorithm by size, processes, hosts) only");
  app.add_option("--level", level,
                 "Show parameters of this level and below: user, tuner or developer (all)")
      ->check(CLI::IsMember({"user", "tuner", "developer"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto loaded = config::Config::load(config::Sources::from_process());
  if (!loaded) {
    fmt::print(stderr, "wv_info: configuration error: {}\n", loaded.status().message());
    return kConfigError;
  }
  config::Config configuration = std::move(loaded).value();
  if (!provider.empty()) {
    if (wv::Status status =
            configuration.set(config::names::kProvider, provider, "command line option --provider");
        !status) {
      fmt::print(stderr, "wv_info: configuration error: {}\n", status.message());
      return kConfigError;
    }
  }
  config::Level max_level = config::Level::kDeveloper;
  if (level == "user") max_level = config::Level::kUser;
  if (level == "tuner") max_level = config::Level::kTuner;

  if (protocols) {
    Json document = wv::info::collect_protocols(provider);
    if (json) {
      fmt::print("{}\n", document.dump(2, ' ', false, Json::error_handler_t::replace));
    } else {
      wv::info::print_protocols(document, stdout);
    }
    return 0;
  }

  if (collectives) {
    Json document = wv::info::collect_collectives();
    if (json) {
      fmt::print("{}\n", document.dump(2, ' ', false, Json::error_handler_t::replace));
    } else {
      wv::info::print_collectives(document, stdout);
    }
    return 0;
  }

  Json document;
  document["wv_version"] = WV_VERSION;
  if (!params_only) document["providers"] = wv::info::collect_providers(configuration);
  document["parameter_level"] = config::to_string(max_level);
  document["parameters"] = wv::info::collect_parameters(configuration, max_level);

  if (json) {
    // Text from providers is not guaranteed UTF-8; replace rather than throw.
    fmt::print("{}\n", document.dump(2, ' ', false, Json::error_handler_t::replace));
  } else {
    wv::info::print_text(document, stdout);
  }
  return 0;
}
