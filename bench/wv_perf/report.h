// Output shared by every wv_perf subcommand: a readable table (default) or JSON lines, one
// header record and then one record per operation and size. Records are printed as they are
// measured, so a long run shows progress and a run that fails late keeps its earlier results.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stats.h"

namespace wv::perf {

using Json = nlohmann::ordered_json;

enum class Format { kTable, kJson };

// One process taking part in the run, for the header: where it ran and on which CPUs.
struct ProcessInfo {
  std::string role;  // "client", "server"
  std::string host;
  int pid = 0;
  std::string cpus;  // sched_getaffinity as a list, "0-3,6"
};

struct RunHeader {
  std::string provider;
  std::string device;
  std::vector<ProcessInfo> processes;
  // Subcommand-specific facts (window, methods, notes), printed as "key: value" in the table
  // and as members of the JSON header record.
  Json details = Json::object();
};

enum class Metric { kLatency, kBandwidth };

// A table section: one operation over all sizes.
struct Section {
  std::string op;           // "send_lat", the JSON "op"
  std::string description;  // how it is measured, for the table's section title
  Metric metric = Metric::kLatency;
  bool has_ratio = false;  // compared against a floor measured in the same run
};

struct Measurement {
  uint64_t size = 0;
  uint64_t iterations = 0;
  std::optional<LatencyStats> latency;
  std::optional<double> bandwidth_mbps;  // 10^6 bytes per second
  std::optional<double> msg_rate_mops;   // 10^6 operations per second
  std::optional<double> ratio;           // wv / floor, when the section has a ratio
  std::string label;                     // the section's label column, if it has one
};

class Reporter {
 public:
  Reporter(std::string benchmark, Format format, std::FILE* out);

  void header(const RunHeader& header);
  // `label_name`, when not empty, adds a text column of that name (e.g. "path": the protocol
  // a size takes), filled from Measurement::label.
  void begin_section(const Section& section, std::string_view label_name = {});
  void add(const Measurement& measurement);
  void end_section();
  // Something the reader should know about the results (skipped sizes, substitutions).
  void note(std::string_view text);

 private:
  void print_json(const Json& record);

  std::string benchmark_;
  Format format_;
  std::FILE* out_;
  std::string provider_;
  Section section_;
  std::string label_name_;
};

}  // namespace wv::perf
