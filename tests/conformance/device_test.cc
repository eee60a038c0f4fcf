// Provider and device: what they report (device.h, provider.h, types.h).
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "fixture.h"

namespace wv::verbs::conformance {
namespace {

using DeviceTest = VerbsTest;

TEST_P(DeviceTest, AttributesAreSane) {
  const DeviceAttributes& a = attributes();
  EXPECT_FALSE(a.name.empty());
  EXPECT_GE(a.port_count, 1);
  EXPECT_GT(a.max_mr_size, 0u);
  EXPECT_GT(a.max_qp, 0u);
  EXPECT_GT(a.max_qp_wr, 0u);
  EXPECT_GT(a.max_sge, 0u);
  EXPECT_GT(a.max_read_sge, 0u);
  EXPECT_LE(a.max_read_sge, a.max_sge);
  EXPECT_GT(a.max_cq, 0u);
  EXPECT_GT(a.max_cqe, 0u);
  EXPECT_GT(a.max_mr, 0u);
  EXPECT_GT(a.max_pd, 0u);
  EXPECT_GT(a.max_message_size, 0u);
  // Every reliable connected QP can issue and serve RDMA reads.
  EXPECT_GT(a.max_inbound_read_depth, 0u);
  EXPECT_GT(a.max_outbound_read_depth, 0u);
  // Limits that go with a capability are non-zero when the capability is reported.
  if (has_capability(Capability::kSharedReceiveQueue)) {
    EXPECT_GT(a.max_srq, 0u);
    EXPECT_GT(a.max_srq_wr, 0u);
    EXPECT_GT(a.max_srq_sge, 0u);
  }
  if (has_capability(Capability::kInline)) {
    EXPECT_GT(a.max_inline, 0u);
  }
  if (has_capability(Capability::kMemoryWindowType1) ||
      has_capability(Capability::kMemoryWindowType2)) {
    EXPECT_GT(a.max_mw, 0u);
  }
  if (has_capability(Capability::kAtomics)) {
    EXPECT_NE(a.atomic_scope, AtomicScope::kNone);
  }
  if (has_capability(Capability::kDatagram)) {
    EXPECT_GT(a.max_ah, 0u);
  }
  if (has_capability(Capability::kMulticast)) {
    EXPECT_GT(a.max_multicast_groups, 0u);
  }
}

TEST_P(DeviceTest, CapabilitiesReported) {
  const Capability caps = attributes().capabilities;
  const std::string names = to_string(caps);
  RecordProperty("capabilities", names);
  std::printf("[ capabilities ] %s: %s\n", attributes().name.c_str(), names.c_str());
  // Every bit up to the last capability the API defines.
  constexpr uint32_t kKnown = (static_cast<uint32_t>(Capability::kRemoteMapping) << 1) - 1;
  EXPECT_EQ(static_cast<uint32_t>(caps) & ~kKnown, 0u) << "capability bits the API does not define";
  // Capabilities that only make sense together.
  if (has_capability(Capability::kMulticast)) {
    EXPECT_TRUE(has_capability(Capability::kDatagram)) << "multicast without datagram QPs";
  }
  if (has_capability(Capability::kSrqLimitEvent)) {
    EXPECT_TRUE(has_capability(Capability::kSharedReceiveQueue)) << "SRQ limit without SRQs";
  }
}

TEST_P(DeviceTest, QueryPortReportsActivePortAndTransport) {
  for (uint8_t port = 1; port <= attributes().port_count; ++port) {
    SCOPED_TRACE("port " + std::to_string(port));
    PortAttributes p;
    ASSERT_OK_AND_ASSIGN(p, device_->query_port(port));
    EXPECT_EQ(p.state, PortState::kActive);
    EXPECT_NE(to_string(p.transport), "unknown");
    EXPECT_GT(p.active_mtu, 0u);
    EXPECT_GT(p.max_mtu, 0u);
    EXPECT_LE(p.active_mtu, p.max_mtu);
    EXPECT_GT(p.max_message_size, 0u);
    EXPECT_GE(p.gid_table_length, 1u);
    EXPECT_GE(p.pkey_table_length, 1u);
  }
}

TEST_P(DeviceTest, QueryPortOutOfRangeFails) {
  EXPECT_FALSE(device_->query_port(0).is_ok()) << "ports are numbered from 1";
  const uint8_t past = static_cast<uint8_t>(attributes().port_count + 1);
  EXPECT_FALSE(device_->query_port(past).is_ok());
  EXPECT_FALSE(device_->gid_table(past).is_ok());
  EXPECT_FALSE(device_->pkey_table(past).is_ok());
}

TEST_P(DeviceTest, WholeGidAndPkeyTablesReadable) {
  for (uint8_t port = 1; port <= attributes().port_count; ++port) {
    SCOPED_TRACE("port " + std::to_string(port));
    PortAttributes p;
    ASSERT_OK_AND_ASSIGN(p, device_->query_port(port));
    std::vector<Gid> gids;
    ASSERT_OK_AND_ASSIGN(gids, device_->gid_table(port));
    EXPECT_EQ(gids.size(), p.gid_table_length);
    const bool any_gid =
        std::any_of(gids.begin(), gids.end(), [](const Gid& g) { return g != Gid{}; });
    EXPECT_TRUE(any_gid) << "an active port has at least one GID";
    std::vector<uint16_t> pkeys;
    ASSERT_OK_AND_ASSIGN(pkeys, device_->pkey_table(port));
    EXPECT_EQ(pkeys.size(), p.pkey_table_length);
    const bool any_pkey =
        std::any_of(pkeys.begin(), pkeys.end(), [](uint16_t k) { return (k & 0x7fff) != 0; });
    EXPECT_TRUE(any_pkey) << "an active port has at least one valid P_Key";
  }
}

TEST_P(DeviceTest, ProviderListsDevicesAndAddresses) {
  std::vector<DeviceInfo> devices;
  ASSERT_OK_AND_ASSIGN(devices, provider_->devices());
  ASSERT_FALSE(devices.empty());
  std::set<std::string> names;
  for (const DeviceInfo& d : devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_TRUE(names.insert(d.name).second) << "device " << d.name << " listed twice";
  }
  EXPECT_TRUE(names.count(attributes().name))
      << "open_device(\"\") opened '" << attributes().name << "', which devices() does not list";

  std::vector<AddressInfo> addresses;
  ASSERT_OK_AND_ASSIGN(addresses, provider_->addresses());
  EXPECT_FALSE(addresses.empty()) << "no address reaches any device";
  for (const AddressInfo& a : addresses) {
    SCOPED_TRACE(a.address.to_string());
    EXPECT_FALSE(a.address.empty());
    EXPECT_TRUE(names.count(a.device)) << "address names unknown device '" << a.device << "'";
    EXPECT_GE(a.port, 1);
    if (a.device == attributes().name) {
      EXPECT_LE(a.port, attributes().port_count);
    }
  }
}

TEST_P(DeviceTest, OpenDeviceByNameAndByDefault) {
  std::vector<DeviceInfo> devices;
  ASSERT_OK_AND_ASSIGN(devices, provider_->devices());
  ASSERT_FALSE(devices.empty());
  for (const DeviceInfo& d : devices) {
    std::shared_ptr<Device> opened;
    ASSERT_OK_AND_ASSIGN(opened, provider_->open_device(d.name));
    EXPECT_EQ(opened->attributes().name, d.name);
    EXPECT_EQ(opened->attributes().node_guid, d.guid);
  }
  std::shared_ptr<Device> by_default;
  ASSERT_OK_AND_ASSIGN(by_default, provider_->open_device(""));
  EXPECT_TRUE(std::any_of(devices.begin(), devices.end(), [&](const DeviceInfo& d) {
    return d.name == by_default->attributes().name;
  }));
}

TEST_P(DeviceTest, OpenUnknownDeviceIsNotFound) {
  EXPECT_ERRC(Errc::kNotFound, provider_->open_device("no-such-device-0"));
}

TEST_P(DeviceTest, NoEventsOnAnIdleDevice) {
  auto event = device_->next_event();
  auto result = event.wait(kQuiet);
  EXPECT_ERRC(Errc::kTimedOut, result);
  EXPECT_FALSE(event.ready()) << "an unanswered wait leaves the operation pending";
  EXPECT_TRUE(event.cancel());
  EXPECT_ERRC(Errc::kCancelled, event.result());
}

WV_INSTANTIATE_FOR_PROVIDERS(DeviceTest);

// Not per provider: the registry itself.
TEST(ProviderRegistry, NamesAreListedAndEachOpensOrSaysWhy) {
  const std::vector<std::string> names = provider_names();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (const std::string& name : names) {
    auto provider = Provider::open(name);
    if (provider.is_ok()) {
      EXPECT_EQ(provider.value()->name(), name);
    } else {
      EXPECT_FALSE(provider.status().message().empty()) << name << ": a refusal says why";
    }
  }
}

TEST(ProviderRegistry, UnknownProviderFails) {
  auto provider = Provider::open("no-such-provider");
  EXPECT_FALSE(provider.is_ok());
  EXPECT_FALSE(provider.status().message().empty());
}

TEST(ProviderRegistry, AutoOpensOneOfTheBuiltInProviders) {
  const std::vector<std::string> names = provider_names();
  const bool any_opens = std::any_of(names.begin(), names.end(), [](const std::string& name) {
    return Provider::open(name).is_ok();
  });
  if (!any_opens) GTEST_SKIP() << "no provider can be opened on this machine";
  std::shared_ptr<Provider> provider;
  ASSERT_OK_AND_ASSIGN(provider, Provider::open("auto"));
  EXPECT_NE(std::find(names.begin(), names.end(), std::string(provider->name())), names.end());
}

}  // namespace
}  // namespace wv::verbs::conformance
