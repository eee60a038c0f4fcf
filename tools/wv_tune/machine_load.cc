#include "machine_load.h"

#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace wv::tune {

namespace {

struct CpuTimes {
  unsigned long long idle = 0;
  unsigned long long total = 0;
};

std::optional<CpuTimes> read_cpu_times() {
  std::ifstream in("/proc/stat");
  std::string label;
  if (!(in >> label) || label != "cpu") return std::nullopt;
  // user nice system idle iowait irq softirq steal (guest time is counted in user already).
  std::vector<unsigned long long> fields(8);
  for (auto& f : fields) {
    if (!(in >> f)) return std::nullopt;
  }
  return CpuTimes{fields[3] + fields[4], std::accumulate(fields.begin(), fields.end(), 0ULL)};
}

}  // namespace

std::optional<double> busy_cores(std::chrono::milliseconds window) {
  const unsigned cores = std::thread::hardware_concurrency();
  const auto before = read_cpu_times();
  std::this_thread::sleep_for(window);
  const auto after = read_cpu_times();
  if (!before || !after || cores == 0 || after->total <= before->total) return std::nullopt;
  const double idle = static_cast<double>(after->idle - before->idle) /
                      static_cast<double>(after->total - before->total);
  return (1 - idle) * cores;
}

}  // namespace wv::tune
