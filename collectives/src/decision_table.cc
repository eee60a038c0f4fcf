#include "wv/collectives/decision_table.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "wv/config/config.h"
#include "wv/config/names.h"

namespace wv::coll {

namespace {

// bcast and allreduce crossovers from `wv_perf coll --algorithm X` sweeps with 2 and 4 ranks on
// the shm provider of a 2-core VM (bench/README.md); allgather and alltoall across hosts from 4
// ranks as 2 virtual hosts x 2. Allgather: hierarchical for blocks of 64 KiB to 1 MiB (below,
// bruck and hierarchical trade places from round to round; above, ring and hierarchical are
// within the noise). Alltoall: linear for small blocks below 8 ranks (at 8 B blocks on 4, with
// every size timed for 0.1 s, 12.7-21 us against bruck's 18-30, linear ahead in 4 of 5 rounds);
// bruck stays from 8 ranks, where its log2(n) rounds are the usual choice, unmeasured here (8
// ranks on 2 cores measure the scheduler). Across hosts, hierarchical (the host's blocks through
// its segment while the transport moves the others) took 6.4-9.0 us at 4 KiB blocks' S against
// linear's 6.8-8.0, and led linear and pairwise from 64 KiB to 16 MiB in most of 3 rounds
// (256 KiB: 95-129 against 119-150 and 129-182). The other collectives' rules are the usual
// latency-bound-below / bandwidth-bound-above split, not yet measured here.
constexpr std::string_view kBuiltIn = R"({
  "barrier": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"min_hosts": 2, "min_procs": 3, "algorithm": "hierarchical"},
    {"algorithm": "dissemination"}],
  "bcast": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"min_hosts": 2, "min_procs": 3, "algorithm": "hierarchical"},
    {"max_bytes": 4194304, "algorithm": "binomial"},
    {"max_procs": 2, "algorithm": "chain"},
    {"algorithm": "scatter_allgather"}],
  "reduce": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"algorithm": "binomial"}],
  "allreduce": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"min_hosts": 2, "min_procs": 3, "algorithm": "hierarchical"},
    {"max_bytes": 1048576, "algorithm": "recursive_doubling"},
    {"max_bytes": 4194304, "algorithm": "rabenseifner"},
    {"algorithm": "ring"}],
  "allgather": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"min_hosts": 2, "min_procs": 3, "min_bytes": 65536, "max_bytes": 1048576,
     "algorithm": "hierarchical"},
    {"max_bytes": 4096, "algorithm": "bruck"},
    {"algorithm": "ring"}],
  "reduce_scatter": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"max_bytes": 65536, "algorithm": "recursive_halving"},
    {"algorithm": "ring"}],
  "alltoall": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"max_bytes": 256, "min_procs": 8, "algorithm": "bruck"},
    {"min_hosts": 2, "min_procs": 3, "algorithm": "hierarchical"},
    {"max_bytes": 8192, "algorithm": "linear"},
    {"algorithm": "pairwise"}],
  "gather": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"max_bytes": 65536, "algorithm": "binomial"},
    {"algorithm": "linear"}],
  "scatter": [
    {"max_hosts": 1, "algorithm": "shared_memory"},
    {"max_bytes": 65536, "algorithm": "binomial"},
    {"algorithm": "linear"}]
})";

Result<Rule> parse_rule(Collective collective, const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) return Status(Errc::kInvalidArgument, where + ": a rule must be an object");
  Rule rule;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "algorithm") {
      if (!it->is_string())
        return Status(Errc::kInvalidArgument, where + ": algorithm must be a string");
      rule.algorithm = it->get<std::string>();
      if (Status s = check_algorithm(collective, rule.algorithm); !s.is_ok()) {
        return Status(s.code(), where + ": " + s.message());
      }
      continue;
    }
    if (!it->is_number_unsigned()) {
      return Status(Errc::kInvalidArgument, where + ": " + key + " must be a non-negative integer");
    }
    const uint64_t value = it->get<uint64_t>();
    const int small = value > INT32_MAX ? INT32_MAX : static_cast<int>(value);
    if (key == "min_bytes")
      rule.min_bytes = value;
    else if (key == "max_bytes")
      rule.max_bytes = value;
    else if (key == "min_procs")
      rule.min_procs = small;
    else if (key == "max_procs")
      rule.max_procs = small;
    else if (key == "min_hosts")
      rule.min_hosts = small;
    else if (key == "max_hosts")
      rule.max_hosts = small;
    else
      return Status(Errc::kInvalidArgument, where + ": unknown key '" + key + "'");
  }
  if (rule.algorithm.empty())
    return Status(Errc::kInvalidArgument, where + ": rule without an algorithm");
  return rule;
}

std::string bound(uint64_t lo, uint64_t hi, uint64_t none, const char* what) {
  if (lo == 0 && hi == none) return "";
  std::string s = std::string(what) + " ";
  if (lo == hi) return s + std::to_string(lo) + " ";
  if (lo > 0) s += ">=" + std::to_string(lo) + " ";
  if (hi != none) s += "<=" + std::to_string(hi) + " ";
  return s;
}

}  // namespace

std::string_view DecisionTable::built_in_json() {
  return kBuiltIn;
}

const DecisionTable& DecisionTable::built_in() {
  static const DecisionTable table = [] {
    auto parsed = parse(kBuiltIn, "built-in");
    return parsed.is_ok() ? *parsed : DecisionTable();
  }();
  return table;
}

Result<DecisionTable> DecisionTable::parse(std::string_view text, std::string_view origin) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status(Errc::kInvalidArgument,
                  std::string(origin) + ": not a JSON object of collective -> rules");
  }
  DecisionTable table;
  table.origin_ = std::string(origin);
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    auto collective = parse_collective(it.key());
    if (!collective.is_ok()) {
      return Status(Errc::kInvalidArgument,
                    std::string(origin) + ": " + collective.status().message());
    }
    if (!it->is_array()) {
      return Status(Errc::kInvalidArgument,
                    std::string(origin) + ": " + it.key() + " must be a list of rules");
    }
    auto& rules = table.rules_[static_cast<size_t>(*collective)];
    for (size_t i = 0; i < it->size(); ++i) {
      auto rule = parse_rule(*collective, (*it)[i],
                             std::string(origin) + ": " + it.key() + "[" + std::to_string(i) + "]");
      if (!rule.is_ok()) return rule.status();
      rules.push_back(*rule);
    }
  }
  return table;
}

Result<DecisionTable> DecisionTable::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(Errc::kNotFound, "cannot read decision table " + path);
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

Result<DecisionTable> DecisionTable::from_rules(std::vector<std::vector<Rule>> rules,
                                                std::string_view origin) {
  DecisionTable table;
  if (rules.size() != table.rules_.size()) {
    return Status(Errc::kInvalidArgument, std::string(origin) + ": " +
                                              std::to_string(rules.size()) +
                                              " rule lists, one per collective wanted");
  }
  for (Collective c : kAllCollectives) {
    for (const Rule& rule : rules[static_cast<size_t>(c)]) {
      if (Status s = check_algorithm(c, rule.algorithm); !s.is_ok()) {
        return Status(s.code(), std::string(origin) + ": " + s.message());
      }
    }
  }
  table.rules_ = std::move(rules);
  table.origin_ = std::string(origin);
  return table;
}

Result<DecisionTable> DecisionTable::configured() {
  const auto& config = config::global();
  if (!config.is_ok()) return config.status();
  const std::string& path = config->get_string(config::names::kCollectivesTable);
  if (path.empty()) return built_in();
  return load_file(path);
}

std::string_view DecisionTable::select(Collective collective, uint64_t bytes, int procs,
                                       int hosts) const {
  for (const DecisionTable* table : {this, &built_in()}) {
    for (const Rule& rule : table->rules(collective)) {
      if (bytes >= rule.min_bytes && bytes <= rule.max_bytes && procs >= rule.min_procs &&
          procs <= rule.max_procs && hosts >= rule.min_hosts && hosts <= rule.max_hosts) {
        return rule.algorithm;
      }
    }
  }
  return algorithm_names(collective).front();
}

const std::vector<Rule>& DecisionTable::rules(Collective collective) const {
  return rules_[static_cast<size_t>(collective)];
}

std::string DecisionTable::describe() const {
  std::string out = "decision table: " + origin_ + " (first matching rule wins)\n";
  for (Collective c : kAllCollectives) {
    const auto& list = rules(c).empty() ? built_in().rules(c) : rules(c);
    for (const Rule& r : list) {
      std::string cond = bound(r.min_bytes, r.max_bytes, UINT64_MAX, "bytes") +
                         bound(static_cast<uint64_t>(r.min_procs),
                               static_cast<uint64_t>(r.max_procs), INT32_MAX, "procs") +
                         bound(static_cast<uint64_t>(r.min_hosts),
                               static_cast<uint64_t>(r.max_hosts), INT32_MAX, "hosts");
      if (cond.empty()) cond = "otherwise ";
      out += "  " + std::string(to_string(c)) + std::string(16 - to_string(c).size(), ' ') + cond +
             "-> " + r.algorithm + "\n";
    }
  }
  return out;
}

std::string DecisionTable::to_json() const {
  nlohmann::json doc = nlohmann::json::object();
  for (Collective c : kAllCollectives) {
    nlohmann::json list = nlohmann::json::array();
    for (const Rule& r : rules(c)) {
      nlohmann::json rule;
      if (r.min_bytes != 0) rule["min_bytes"] = r.min_bytes;
      if (r.max_bytes != UINT64_MAX) rule["max_bytes"] = r.max_bytes;
      if (r.min_procs != 0) rule["min_procs"] = r.min_procs;
      if (r.max_procs != INT32_MAX) rule["max_procs"] = r.max_procs;
      if (r.min_hosts != 0) rule["min_hosts"] = r.min_hosts;
      if (r.max_hosts != INT32_MAX) rule["max_hosts"] = r.max_hosts;
      rule["algorithm"] = r.algorithm;
      list.push_back(rule);
    }
    if (!list.empty()) doc[std::string(to_string(c))] = list;
  }
  return doc.dump(2);
}

}  // namespace wv::coll
