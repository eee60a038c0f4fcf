// wv_info gathers everything into one JSON document first and prints text from that document,
// so that the text and --json outputs cannot drift apart.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>

#include "wv/config/config.h"

namespace wv::info {

// Ordered, so that the JSON keeps the reading order of the text output.
using Json = nlohmann::ordered_json;

// Every provider built into the library: whether it opens on this machine (and why not), and
// for each one that does, its devices (attributes, ports, GID and P_Key tables) and addresses.
Json collect_providers(const config::Config& config);

// The parameters at `max_level` and below, in definition order, each with its value, type,
// level, origin and description.
Json collect_parameters(const config::Config& config, config::Level max_level);

// The text rendering of a document made of the parts above.
void print_text(const Json& document, std::FILE* out);

}  // namespace wv::info
