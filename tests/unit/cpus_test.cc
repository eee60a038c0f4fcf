// The CPU sets of wv/cpus.h: the process's own, and the kernel's list format.
#include "wv/cpus.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <optional>
#include <vector>

namespace wv {
namespace {

using Cpus = std::vector<int>;

TEST(CpusTest, ParsesTheKernelsCpuLists) {
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11\n"), (Cpus{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5"), (Cpus{5}));
  EXPECT_EQ(parse_cpu_list(""), std::nullopt);
  EXPECT_EQ(parse_cpu_list("3-1"), std::nullopt);
  EXPECT_EQ(parse_cpu_list("0-x"), std::nullopt);
  EXPECT_EQ(parse_cpu_list("1,,2"), std::nullopt);
}

TEST(CpusTest, AllowedCpusAreTheAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const Cpus cpus = allowed_cpus();
  EXPECT_EQ(cpus.size(), static_cast<size_t>(CPU_COUNT(&set)));
  for (int cpu : cpus) EXPECT_TRUE(CPU_ISSET(cpu, &set)) << cpu;
}

}  // namespace
}  // namespace wv
