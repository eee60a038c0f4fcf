#include "rules.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

namespace wv::tune {

namespace {

const AlgorithmTime* find_time(const SizeTiming& size, const std::string& algorithm) {
  for (const AlgorithmTime& t : size.times) {
    if (t.algorithm == algorithm) return &t;
  }
  return nullptr;
}

// Only the bounds that differ from the defaults, as decision_table.h's to_json() writes them.
nlohmann::ordered_json to_json(const coll::Rule& r) {
  nlohmann::ordered_json rule = nlohmann::ordered_json::object();
  if (r.min_bytes != 0) rule["min_bytes"] = r.min_bytes;
  if (r.max_bytes != UINT64_MAX) rule["max_bytes"] = r.max_bytes;
  if (r.min_procs != 0) rule["min_procs"] = r.min_procs;
  if (r.max_procs != INT32_MAX) rule["max_procs"] = r.max_procs;
  if (r.min_hosts != 0) rule["min_hosts"] = r.min_hosts;
  if (r.max_hosts != INT32_MAX) rule["max_hosts"] = r.max_hosts;
  rule["algorithm"] = r.algorithm;
  return rule;
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
  nlohmann::ordered_json doc = nlohmann::ordered_json::object();
  for (coll::Collective c : coll::kAllCollectives) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    const auto measured =
        std::find_if(timings.begin(), timings.end(),
                     [c](const CollectiveTiming& t) { return t.collective == c; });
    if (measured != timings.end()) {
      for (const coll::Rule& rule : build_rules(*measured, shape)) list.push_back(to_json(rule));
    }
    const bool replaced = !list.empty();
    if (previous != nullptr) {
      for (const coll::Rule& rule : previous->rules(c)) {
        if (!replaced || !only_for(rule, shape)) list.push_back(to_json(rule));
      }
    }
    if (!list.empty()) doc[std::string(coll::to_string(c))] = std::move(list);
  }
  auto table = coll::DecisionTable::parse(doc.dump(2), "wv_tune");
  if (!table.is_ok()) {
    return Status(table.status().code(), "the table built from the measurements does not load: " +
                                             table.status().message());
  }
  return table;
}

}  // namespace wv::tune
