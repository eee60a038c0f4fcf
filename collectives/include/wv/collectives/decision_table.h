// Which algorithm a collective uses when the caller names none: an ordered list of rules per
// collective, loaded as data (JSON) so a user or a tuning run can replace it.
//
//   { "allreduce": [ { "max_bytes": 8192, "algorithm": "recursive_doubling" },
//                    { "min_hosts": 2, "algorithm": "hierarchical" },
//                    { "algorithm": "ring" } ],
//     "bcast": [ ... ], ... }
//
// A rule matches when every bound it states holds (all inclusive): min_bytes/max_bytes on the
// message size, min_procs/max_procs on the process count, min_hosts/max_hosts on the host
// count. The first matching rule wins; a collective without a matching rule (or absent from
// the file) uses the built-in table. The message size is the whole vector for bcast, reduce,
// allreduce and reduce_scatter (the input), and one rank's block for allgather, alltoall,
// gather and scatter. The file is the configuration parameter collectives_table
// (WV_COLLECTIVES_TABLE); `wv_info --collectives` prints the table in effect.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "wv/collectives/collective.h"
#include "wv/result.h"

namespace wv::coll {

struct Rule {
  uint64_t min_bytes = 0;
  uint64_t max_bytes = UINT64_MAX;
  int min_procs = 0;
  int max_procs = INT32_MAX;
  int min_hosts = 0;
  int max_hosts = INT32_MAX;
  std::string algorithm;
};

class DecisionTable {
 public:
  // The defaults, measured on a 2-core VM over the shm provider (see bench/README.md).
  static const DecisionTable& built_in();
  static std::string_view built_in_json();
  // Rules per collective; unknown collectives, keys or algorithm names are errors.
  static Result<DecisionTable> parse(std::string_view json, std::string_view origin);
  static Result<DecisionTable> load_file(const std::string& path);
  // A table of rules[c] for each Collective c (indexed by its value); names are checked as
  // parse() checks them.
  static Result<DecisionTable> from_rules(std::vector<std::vector<Rule>> rules,
                                          std::string_view origin);
  // The configured table: collectives_table if set, else built_in().
  static Result<DecisionTable> configured();

  std::string_view select(Collective collective, uint64_t bytes, int procs, int hosts) const;
  const std::vector<Rule>& rules(Collective collective) const;
  const std::string& origin() const { return origin_; }
  // Human-readable, one line per rule.
  std::string describe() const;
  std::string to_json() const;

 private:
  std::vector<std::vector<Rule>> rules_ = std::vector<std::vector<Rule>>(9);
  std::string origin_;
};

}  // namespace wv::coll
