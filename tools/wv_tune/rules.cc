#include "rules.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace wv::tune {

namespace {

const AlgorithmTime* find_time(const SizeTiming& size, const std::string& algorithm) {
  for (const AlgorithmTime& t : size.times) {
    if (t.algorithm == algorithm) return &t;
  }
  return nullptr;
}

// A rule that only `shape` can match is hidden behind the new rules, which cover every size
// of that shape; keeping it would only make the file longer.
bool only_for(const coll::Rule& rule, JobShape shape) {
  return rule.min_procs >= shape.procs && rule.max_procs <= shape.procs &&
         rule.min_hosts >= shape.hosts && rule.max_hosts <= shape.hosts;
}

}  // namespace

std::vector<std::string> choose_winners(const CollectiveTiming& timing) {
  std::vector<std::string> winners;
  for (const SizeTiming& size : timing.sizes) {
    if (size.times.empty()) {
      winners.emplace_back();
      continue;
    }
    const AlgorithmTime& best = *std::min_element(
        size.times.begin(), size.times.end(),
        [](const AlgorithmTime& a, const AlgorithmTime& b) { return a.seconds < b.seconds; });
    std::string winner = best.algorithm;
    if (!winners.empty() && !winners.back().empty()) {
      const AlgorithmTime* previous = find_time(size, winners.back());
      if (previous != nullptr && previous->seconds <= best.seconds * (1 + kKeepWithin)) {
        winner = previous->algorithm;
      }
    }
    winners.push_back(std::move(winner));
  }
  return winners;
}

std::vector<coll::Rule> build_rules(const CollectiveTiming& timing, JobShape shape) {
  const std::vector<std::string> winners = choose_winners(timing);
  std::vector<coll::Rule> rules;
  uint64_t before = 0;  // the last size with a winner
  for (size_t i = 0; i < timing.sizes.size(); ++i) {
    if (winners[i].empty()) continue;
    const uint64_t bytes = timing.sizes[i].bytes;
    const uint64_t last = std::exchange(before, bytes);
    if (!rules.empty() && rules.back().algorithm == winners[i]) continue;
    if (!rules.empty()) rules.back().max_bytes = last + (bytes - last) / 2;
    coll::Rule rule;
    rule.min_bytes = rules.empty() ? 0 : rules.back().max_bytes + 1;
    rule.min_procs = rule.max_procs = shape.procs;
    rule.min_hosts = rule.max_hosts = shape.hosts;
    rule.algorithm = winners[i];
    rules.push_back(std::move(rule));
  }
  return rules;
}

Result<coll::DecisionTable> build_table(std::span<const CollectiveTiming> timings, JobShape shape,
                                        const coll::DecisionTable* previous) {
  std::vector<std::vector<coll::Rule>> rules(std::size(coll::kAllCollectives));
  for (coll::Collective c : coll::kAllCollectives) {
    std::vector<coll::Rule>& list = rules[static_cast<size_t>(c)];
    const auto measured =
        std::find_if(timings.begin(), timings.end(),
                     [c](const CollectiveTiming& t) { return t.collective == c; });
    if (measured != timings.end()) list = build_rules(*measured, shape);
    const bool replaced = !list.empty();
    if (previous != nullptr) {
      for (const coll::Rule& rule : previous->rules(c)) {
        if (!replaced || !only_for(rule, shape)) list.push_back(rule);
      }
    }
  }
  auto table = coll::DecisionTable::from_rules(std::move(rules), "wv_tune");
  if (!table.is_ok()) {
    return Status(table.status().code(), "the table built from the measurements does not load: " +
                                             table.status().message());
  }
  return table;
}

}  // namespace wv::tune
