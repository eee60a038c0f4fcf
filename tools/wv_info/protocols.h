// wv_info --protocols: the messaging engine's protocol choice per provider and message size.
#pragma once

#include <cstdio>
#include <string>

#include "collect.h"

namespace wv::info {

// For `provider` (or every provider that opens, when empty): the thresholds a worker chose,
// the measured inputs and reasons, and the path (inline, eager, rendezvous) per message size.
Json collect_protocols(const std::string& provider);
void print_protocols(const Json& protocols, std::FILE* out);

}  // namespace wv::info
