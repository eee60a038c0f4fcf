#include "report.h"

#include <fmt/format.h>

#include <utility>

namespace wv::perf {
namespace {

std::string detail_text(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

// Latencies span ns to ms; three significant decimals below 10 us keep small ones readable.
std::string number_text(double value) {
  if (value < 0.01) return fmt::format("{:.5f}", value);  // message rates of large messages
  if (value < 10) return fmt::format("{:.3f}", value);
  if (value < 10000) return fmt::format("{:.2f}", value);
  return fmt::format("{:.0f}", value);
}

Json optional_number(const std::optional<double>& value) {
  return value ? Json(*value) : Json(nullptr);
}

}  // namespace

Reporter::Reporter(std::string benchmark, Format format, std::FILE* out)
    : benchmark_(std::move(benchmark)), format_(format), out_(out) {}

void Reporter::print_json(const Json& record) {
  // Text from providers is not guaranteed UTF-8; replace rather than throw.
  fmt::print(out_, "{}\n", record.dump(-1, ' ', false, Json::error_handler_t::replace));
  std::fflush(out_);
}

void Reporter::header(const RunHeader& header) {
  provider_ = header.provider;
  if (format_ == Format::kJson) {
    Json record;
    record["benchmark"] = benchmark_;
    record["record"] = "header";
    record["provider"] = header.provider;
    record["device"] = header.device;
    Json processes = Json::array();
    for (const ProcessInfo& p : header.processes) {
      processes.push_back({{"role", p.role}, {"host", p.host}, {"pid", p.pid}, {"cpus", p.cpus}});
    }
    record["processes"] = processes;
    for (const auto& [key, value] : header.details.items()) record[key] = value;
    print_json(record);
    return;
  }
  fmt::print(out_, "# wv_perf {}: provider {}, device {}\n", benchmark_, header.provider,
             header.device);
  for (const ProcessInfo& p : header.processes) {
    fmt::print(out_, "# {:<7} host {} pid {} cpus {}\n", p.role, p.host, p.pid, p.cpus);
  }
  for (const auto& [key, value] : header.details.items()) {
    fmt::print(out_, "# {}: {}\n", key, detail_text(value));
  }
  std::fflush(out_);
}

void Reporter::begin_section(const Section& section, std::string_view label_name) {
  section_ = section;
  label_name_ = label_name;
  if (format_ == Format::kJson) return;
  fmt::print(out_, "\n## {}: {}\n", section.op, section.description);
  if (section.metric == Metric::kLatency) {
    fmt::print(out_, "{:>9} {:>9} {:>10} {:>10} {:>10}", "bytes", "iters", "min_us", "median_us",
               "p99_us");
  } else {
    fmt::print(out_, "{:>9} {:>9} {:>11} {:>9}", "bytes", "iters", "MB/s", "Mops/s");
  }
  if (section.has_ratio) fmt::print(out_, " {:>7}", "ratio");
  if (!label_name_.empty()) fmt::print(out_, "  {}", label_name_);
  fmt::print(out_, "\n");
  std::fflush(out_);
}

void Reporter::add(const Measurement& m) {
  if (format_ == Format::kJson) {
    Json record;
    record["benchmark"] = benchmark_;
    record["record"] = "result";
    record["op"] = section_.op;
    record["provider"] = provider_;
    record["size"] = m.size;
    record["iterations"] = m.iterations;
    if (m.latency) {
      record["latency_us"] = {
          {"min", m.latency->min_us}, {"median", m.latency->median_us}, {"p99", m.latency->p99_us}};
    } else {
      record["latency_us"] = nullptr;
    }
    record["bandwidth_mbps"] = optional_number(m.bandwidth_mbps);
    record["msg_rate_mops"] = optional_number(m.msg_rate_mops);
    if (section_.has_ratio) record["ratio"] = optional_number(m.ratio);
    if (!label_name_.empty()) record[label_name_] = m.label;
    print_json(record);
    return;
  }
  auto cell = [](const std::optional<double>& v) { return v ? number_text(*v) : std::string("-"); };
  fmt::print(out_, "{:>9} {:>9}", m.size, m.iterations);
  if (section_.metric == Metric::kLatency) {
    if (m.latency) {
      fmt::print(out_, " {:>10} {:>10} {:>10}", number_text(m.latency->min_us),
                 number_text(m.latency->median_us), number_text(m.latency->p99_us));
    } else {
      fmt::print(out_, " {:>10} {:>10} {:>10}", "-", "-", "-");
    }
  } else {
    fmt::print(out_, " {:>11} {:>9}", cell(m.bandwidth_mbps), cell(m.msg_rate_mops));
  }
  if (section_.has_ratio)
    fmt::print(out_, " {:>7}", m.ratio ? fmt::format("{:.2f}", *m.ratio) : "-");
  if (!label_name_.empty()) fmt::print(out_, "  {}", m.label);
  fmt::print(out_, "\n");
  std::fflush(out_);
}

void Reporter::end_section() {
  section_ = Section{};
  label_name_.clear();
}

void Reporter::note(std::string_view text) {
  if (format_ == Format::kJson) {
    print_json({{"benchmark", benchmark_}, {"record", "note"}, {"text", text}});
    return;
  }
  fmt::print(out_, "# note: {}\n", text);
  std::fflush(out_);
}

}  // namespace wv::perf
