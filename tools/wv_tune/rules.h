// wv_tune's rule building: timings in, a decision table (decision_table.h) out. Pure, so the
// tests can feed it made-up numbers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "wv/collectives/collective.h"
#include "wv/collectives/decision_table.h"
#include "wv/result.h"

namespace wv::tune {

struct AlgorithmTime {
  std::string algorithm;
  double seconds = 0;
};

// One message size (as decision_table.h counts bytes); times in algorithm_names() order.
struct SizeTiming {
  uint64_t bytes = 0;
  std::vector<AlgorithmTime> times;
};

struct CollectiveTiming {
  coll::Collective collective = coll::Collective::kBarrier;
  std::vector<SizeTiming> sizes;  // ascending
};

// The job the timings were taken on: the rules apply to exactly this process and host count.
struct JobShape {
  int procs = 1;
  int hosts = 1;
};

// The previous size's winner stays when it is within this fraction of the fastest: closer
// than that is noise on a shared machine, and switching there only adds rules.
inline constexpr double kKeepWithin = 0.03;

// The algorithm chosen at each size of `timing` (same order as timing.sizes).
std::vector<std::string> choose_winners(const CollectiveTiming& timing);

// Consecutive sizes with the same winner form one rule; a rule ends halfway between the last
// size it won and the next measured size; the first starts at 0 bytes and the last has no
// upper bound. Every rule is bounded to exactly `shape`.
std::vector<coll::Rule> build_rules(const CollectiveTiming& timing, JobShape shape);

// The table for `timings`: per measured collective its new rules, then (with `previous`) the
// previous table's rules that can still match another shape, in their order, so a catch-all
// stays last; collectives not measured keep their previous rules. The result went through
// DecisionTable::parse, so it is what the library will load.
Result<coll::DecisionTable> build_table(std::span<const CollectiveTiming> timings, JobShape shape,
                                        const coll::DecisionTable* previous);

}  // namespace wv::tune
