#include "ib_locality.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>

namespace wv::verbs::ib {
namespace {

bool parse_int(std::string_view text, int* out) {
  const char* end = text.data() + text.size();
  auto [at, error] = std::from_chars(text.data(), end, *out);
  return error == std::errc() && at == end && *out >= 0;
}

}  // namespace

std::optional<std::vector<int>> parse_cpu_list(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  std::vector<int> cpus;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view range = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const size_t dash = range.find('-');
    int first = 0;
    int last = 0;
    if (!parse_int(range.substr(0, dash), &first)) return std::nullopt;
    last = first;
    if (dash != std::string_view::npos && !parse_int(range.substr(dash + 1), &last)) {
      return std::nullopt;
    }
    if (last < first) return std::nullopt;
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
  }
  return cpus;
}

std::optional<std::vector<int>> device_local_cpus(const std::string& device_name) {
  std::ifstream file("/sys/class/infiniband/" + device_name + "/device/local_cpulist");
  std::string text;
  if (!file || !std::getline(file, text)) return std::nullopt;
  return parse_cpu_list(text);
}

std::vector<size_t> nearest_first(const std::vector<std::optional<std::vector<int>>>& local_cpus,
                                  const std::vector<int>& allowed) {
  auto rank = [&](size_t i) {
    const auto& local = local_cpus[i];
    if (!local) return 2;  // no locality: a software device
    const bool near = !allowed.empty() && std::all_of(allowed.begin(), allowed.end(), [&](int c) {
      return std::find(local->begin(), local->end(), c) != local->end();
    });
    return near ? 0 : 1;
  };
  std::vector<size_t> order(local_cpus.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rank(a) < rank(b); });
  return order;
}

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

}  // namespace wv::verbs::ib
