// wv_info --collectives: the collectives' decision table in effect (the built-in one, or the
// file named by collectives_table) and the algorithm names each collective accepts.
#pragma once

#include <cstdio>

#include "collect.h"

namespace wv::info {

// {"origin", "error" (if the configured table does not load), "table" (as JSON), "algorithms"}.
Json collect_collectives();
void print_collectives(const Json& collectives, std::FILE* out);

}  // namespace wv::info
