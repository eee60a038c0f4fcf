// Names of the verbs API's flag sets, as wv_info prints them: every flag has its own name.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "wv/verbs/types.h"

namespace wv::verbs {
namespace {

TEST(VerbsNames, EveryLimitationHasItsOwnName) {
  constexpr auto kHighest = static_cast<uint32_t>(Limitation::kMulticastGidIpv4Mapped);
  std::set<std::string> names;
  for (uint32_t bit = 1; bit != 0 && bit <= kHighest; bit <<= 1) {
    const std::string name = to_string(static_cast<Limitation>(bit));
    EXPECT_NE(name, "none") << "limitation bit " << bit << " has no name";
    EXPECT_EQ(name.find(' '), std::string::npos) << name;
    EXPECT_TRUE(names.insert(name).second) << name << " names two limitations";
  }
  EXPECT_EQ(to_string(Limitation::kNone), "none");
  EXPECT_EQ(to_string(Limitation::kNoSendQueueDrain | Limitation::kSendsOvertakeReads),
            "no_send_queue_drain sends_overtake_reads");
}

}  // namespace
}  // namespace wv::verbs
