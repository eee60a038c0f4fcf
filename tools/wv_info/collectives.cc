#include "collectives.h"

#include <fmt/format.h>

#include "wv/collectives/decision_table.h"

namespace wv::info {

Json collect_collectives() {
  Json document;
  auto table = coll::DecisionTable::configured();
  if (!table.is_ok()) {
    document["error"] = table.status().message();
    table = coll::DecisionTable::built_in();
  }
  document["origin"] = table->origin();
  document["table"] = Json::parse(table->to_json());
  document["text"] = table->describe();
  Json algorithms = Json::object();
  for (coll::Collective c : coll::kAllCollectives) {
    Json names = Json::array();
    for (std::string_view name : coll::algorithm_names(c)) names.push_back(std::string(name));
    algorithms[std::string(coll::to_string(c))] = names;
  }
  document["algorithms"] = algorithms;
  return document;
}

void print_collectives(const Json& collectives, std::FILE* out) {
  if (collectives.contains("error")) {
    fmt::print(out, "collectives_table does not load ({}); showing the built-in table\n",
               collectives["error"].get<std::string>());
  }
  fmt::print(out, "{}", collectives["text"].get<std::string>());
  fmt::print(out, "algorithms (name one to override the table):\n");
  for (const auto& [collective, names] : collectives["algorithms"].items()) {
    std::string list;
    for (const auto& name : names) list += (list.empty() ? "" : ", ") + name.get<std::string>();
    fmt::print(out, "  {:<16}{}\n", collective, list);
  }
}

}  // namespace wv::info
