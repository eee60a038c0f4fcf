// wv_tune's rule building (tools/wv_tune/rules.h): made-up timings in, a decision table out.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "rules.h"

namespace wv::tune {
namespace {

using coll::Collective;

SizeTiming at(uint64_t bytes, std::vector<AlgorithmTime> times) {
  return SizeTiming{bytes, std::move(times)};
}

// allreduce: recursive_doubling wins 8 and 64, ring wins 4096 and 1M.
CollectiveTiming allreduce_timing() {
  return CollectiveTiming{Collective::kAllreduce,
                          {at(8, {{"recursive_doubling", 1e-6}, {"ring", 5e-6}}),
                           at(64, {{"recursive_doubling", 2e-6}, {"ring", 6e-6}}),
                           at(4096, {{"recursive_doubling", 9e-6}, {"ring", 7e-6}}),
                           at(1 << 20, {{"recursive_doubling", 9e-4}, {"ring", 5e-4}})}};
}

nlohmann::json as_json(const coll::DecisionTable& table) {
  return nlohmann::json::parse(table.to_json());
}

TEST(wv_tune_rules, EqualWinnersMergeAndBoundariesAreMidpoints) {
  const auto rules = build_rules(allreduce_timing(), JobShape{2, 1});
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].algorithm, "recursive_doubling");
  EXPECT_EQ(rules[0].min_bytes, 0u);
  EXPECT_EQ(rules[0].max_bytes, 64u + (4096u - 64u) / 2);
  EXPECT_EQ(rules[1].algorithm, "ring");
  EXPECT_EQ(rules[1].min_bytes, rules[0].max_bytes + 1);
  EXPECT_EQ(rules[1].max_bytes, UINT64_MAX);
  for (const auto& r : rules) {
    EXPECT_EQ(r.min_procs, 2);
    EXPECT_EQ(r.max_procs, 2);
    EXPECT_EQ(r.min_hosts, 1);
    EXPECT_EQ(r.max_hosts, 1);
  }
}

TEST(wv_tune_rules, AlternatingWinnersGiveOneRuleEach) {
  CollectiveTiming t{
      Collective::kBcast,
      {at(8, {{"binomial", 1}, {"chain", 2}}), at(16, {{"binomial", 2}, {"chain", 1}}),
       at(32, {{"binomial", 1}, {"chain", 2}})}};
  const auto rules = build_rules(t, JobShape{4, 2});
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].max_bytes, 12u);
  EXPECT_EQ(rules[1].min_bytes, 13u);
  EXPECT_EQ(rules[1].max_bytes, 24u);
  EXPECT_EQ(rules[2].min_bytes, 25u);
  EXPECT_EQ(rules[2].algorithm, "binomial");
  EXPECT_EQ(rules[2].min_hosts, 2);
}

TEST(wv_tune_rules, NearTieKeepsThePreviousWinner) {
  // ring is faster at 64 by less than kKeepWithin: no extra rule for noise.
  CollectiveTiming t{Collective::kAllreduce,
                     {at(8, {{"recursive_doubling", 1.0}, {"ring", 2.0}}),
                      at(64, {{"recursive_doubling", 1.0 + kKeepWithin / 2}, {"ring", 1.0}})}};
  EXPECT_EQ(choose_winners(t),
            (std::vector<std::string>{"recursive_doubling", "recursive_doubling"}));
  EXPECT_EQ(build_rules(t, JobShape{2, 1}).size(), 1u);
}

TEST(wv_tune_rules, BarrierIsOneRuleForEverySize) {
  CollectiveTiming t{Collective::kBarrier,
                     {at(0, {{"dissemination", 3e-6}, {"shared_memory", 1e-6}})}};
  const auto rules = build_rules(t, JobShape{2, 1});
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].min_bytes, 0u);
  EXPECT_EQ(rules[0].max_bytes, UINT64_MAX);
  EXPECT_EQ(rules[0].algorithm, "shared_memory");
}

TEST(wv_tune_rules, TableSelectsTheWinnersForItsShapeOnly) {
  const CollectiveTiming timings[] = {allreduce_timing()};
  auto table = build_table(timings, JobShape{2, 1}, nullptr);
  ASSERT_TRUE(table.is_ok()) << table.status().to_string();
  EXPECT_EQ(table->select(Collective::kAllreduce, 8, 2, 1), "recursive_doubling");
  EXPECT_EQ(table->select(Collective::kAllreduce, 2000, 2, 1), "recursive_doubling");
  EXPECT_EQ(table->select(Collective::kAllreduce, 2100, 2, 1), "ring");
  EXPECT_EQ(table->select(Collective::kAllreduce, uint64_t{1} << 30, 2, 1), "ring");
  const nlohmann::json doc = as_json(*table);
  ASSERT_TRUE(doc.contains("allreduce"));
  EXPECT_EQ(doc["allreduce"].size(), 2u);
  EXPECT_EQ(doc["allreduce"][0]["min_procs"], 2);
  EXPECT_FALSE(doc.contains("bcast"));  // not measured: the built-in rules apply
  // Another process count falls through to the built-in table.
  EXPECT_EQ(table->select(Collective::kAllreduce, 8, 4, 1),
            coll::DecisionTable::built_in().select(Collective::kAllreduce, 8, 4, 1));
}

TEST(wv_tune_rules, MergeKeepsOtherShapesAfterTheNewRulesAndTheCatchAllLast) {
  auto previous = coll::DecisionTable::parse(R"({
    "allreduce": [
      {"min_procs": 2, "max_procs": 2, "min_hosts": 1, "max_hosts": 1, "algorithm": "ring"},
      {"min_procs": 4, "max_procs": 4, "max_bytes": 100, "algorithm": "rabenseifner"},
      {"min_procs": 4, "max_procs": 4, "min_bytes": 101, "algorithm": "ring"},
      {"algorithm": "recursive_doubling"}],
    "gather": [{"algorithm": "linear"}]})",
                                             "old");
  ASSERT_TRUE(previous.is_ok()) << previous.status().to_string();
  const CollectiveTiming timings[] = {allreduce_timing()};
  auto table = build_table(timings, JobShape{2, 1}, &*previous);
  ASSERT_TRUE(table.is_ok()) << table.status().to_string();
  const nlohmann::json rules = as_json(*table)["allreduce"];
  // 2 new rules; the old 2-rank rule is replaced; the 4-rank rules and the catch-all follow.
  ASSERT_EQ(rules.size(), 5u) << rules.dump();
  EXPECT_EQ(rules[0]["algorithm"], "recursive_doubling");
  EXPECT_EQ(rules[0]["min_procs"], 2);
  EXPECT_EQ(rules[1]["algorithm"], "ring");
  EXPECT_EQ(rules[1]["min_procs"], 2);
  EXPECT_EQ(rules[2]["algorithm"], "rabenseifner");
  EXPECT_EQ(rules[2]["min_procs"], 4);
  EXPECT_EQ(rules[3]["min_procs"], 4);
  EXPECT_EQ(rules[4], nlohmann::json({{"algorithm", "recursive_doubling"}}));
  EXPECT_EQ(table->select(Collective::kAllreduce, 8, 2, 1), "recursive_doubling");
  EXPECT_EQ(table->select(Collective::kAllreduce, 50, 4, 1), "rabenseifner");
  EXPECT_EQ(table->select(Collective::kAllreduce, 8, 8, 1), "recursive_doubling");
  // A collective not measured now keeps its previous rules.
  EXPECT_EQ(as_json(*table)["gather"], nlohmann::json::parse(R"([{"algorithm": "linear"}])"));
}

TEST(wv_tune_rules, NoTimingsKeepThePreviousRules) {
  auto previous = coll::DecisionTable::parse(
      R"({"bcast": [{"min_procs": 2, "max_procs": 2, "min_hosts": 1, "max_hosts": 1,
                     "algorithm": "chain"}]})",
      "old");
  ASSERT_TRUE(previous.is_ok());
  const CollectiveTiming timings[] = {CollectiveTiming{Collective::kBcast, {}}};
  auto table = build_table(timings, JobShape{2, 1}, &*previous);
  ASSERT_TRUE(table.is_ok());
  EXPECT_EQ(table->select(Collective::kBcast, 8, 2, 1), "chain");
}

TEST(wv_tune_rules, AnUnknownAlgorithmIsRefusedByTheLibrarysParser) {
  const CollectiveTiming timings[] = {
      CollectiveTiming{Collective::kBcast, {at(8, {{"no_such_algorithm", 1}})}}};
  auto table = build_table(timings, JobShape{2, 1}, nullptr);
  ASSERT_FALSE(table.is_ok());
  EXPECT_NE(table.status().message().find("no_such_algorithm"), std::string::npos);
}

}  // namespace
}  // namespace wv::tune
