// wv_tune's command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wv/collectives/collective.h"
#include "wv/result.h"

namespace wv::tune {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // could not measure or write the table
inline constexpr int kExitUsage = 2;    // bad arguments; every rank finds the same

struct Options {
  std::string out;
  std::vector<uint64_t> sizes;  // ascending, distinct
  int iterations = 20;          // timed calls at small sizes; large sizes take fewer
  std::vector<coll::Collective> collectives;
  std::string merge;      // previous table whose rules for other shapes are kept
  double time_limit = 0;  // seconds; 0: none
};

// 8 B, then the powers of 4 from 16 B to 16 MiB.
std::vector<uint64_t> default_sizes();
// "8,64,4K,1M": bytes with an optional K, M or G (binary); sorted, duplicates dropped.
Result<std::vector<uint64_t>> parse_sizes(std::string_view text);
// "allreduce,bcast": names as collective.h spells them; duplicates dropped.
Result<std::vector<coll::Collective>> parse_collectives(std::string_view text);

// The options, or the exit status when the program should stop here (after --help, or after
// printing what is wrong with the arguments).
std::optional<int> parse_command_line(int argc, char** argv, Options& options);

}  // namespace wv::tune
