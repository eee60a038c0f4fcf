#include "ib_locality.h"

#include <algorithm>
#include <fstream>
#include <string>

#include "wv/cpus.h"

namespace wv::verbs::ib {

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

}  // namespace wv::verbs::ib
