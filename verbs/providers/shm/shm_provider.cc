#include "shm_provider.h"

#include <unistd.h>

#include <functional>
#include <string>

#include "provider_factories.h"
#include "shm_datagram_wire.h"
#include "shm_endpoint.h"
#include "shm_ring.h"
#include "tcp_provider.h"
#include "udp_endpoint.h"
#include "udp_wire.h"
#include "work_request.h"
#include "wv/config/config.h"
#include "wv/config/names.h"

namespace wv::verbs {

Result<std::shared_ptr<Provider>> open_shm_provider() {
  const auto& config = config::global();
  if (!config.is_ok()) return config.status();
  namespace names = config::names;
  shm::ShmSettings settings;
  settings.cma = config->get_string(names::kShmCma);
  // Rings are a power of two: the configured size rounded down to one.
  uint64_t ring = config->get_size(names::kShmRingSize);
  ring = std::clamp<uint64_t>(ring, shm::kMinRingBytes, shm::kMaxRingBytes);
  uint64_t power = shm::kMinRingBytes;
  while (power * 2 <= ring) power *= 2;
  settings.ring_bytes = static_cast<uint32_t>(power);
  settings.read_depth = static_cast<uint32_t>(config->get_int(names::kTcpReadDepth));
  settings.connect_timeout_ms = config->get_int(names::kConnectTimeoutMs);
  settings.rnr_timeout_ms = config->get_int(names::kRnrTimeoutMs);
  // Datagram endpoints are the tcp provider's UDP endpoints on this device; they read their
  // timeouts from its settings.
  tcp::TcpSettings datagram_settings;
  datagram_settings.connect_timeout_ms = settings.connect_timeout_ms;
  datagram_settings.rnr_timeout_ms = settings.rnr_timeout_ms;
  datagram_settings.port_base = static_cast<uint16_t>(config->get_int(names::kTcpPortBase));
  shm::CmaSupport cma = shm::detect_cma(settings.cma);
  return std::shared_ptr<Provider>(std::make_shared<shm::ShmProvider>(
      std::move(settings), std::move(cma),
      std::make_shared<tcp::TcpProvider>(std::move(datagram_settings))));
}

namespace shm {
namespace {

uint64_t host_guid() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  // Another GUID than the tcp device of the same host: they are different devices.
  return (std::hash<std::string>{}(std::string("shm:") + host)) | 1;
}

// The names shm serves: this host's addresses, or loopback where none can be read.
std::vector<SocketAddress> local_addresses() {
  std::vector<SocketAddress> result = SocketAddress::interfaces();
  if (result.empty()) result.push_back(SocketAddress::ipv4_loopback(0));
  return result;
}

DeviceAttributes shm_device_attributes(const ShmSettings& settings, const CmaSupport& cma) {
  DeviceAttributes attributes;
  attributes.name = std::string(kDeviceName);
  // wv_info prints this: it says once whether RDMA read/write are one copy on this host.
  attributes.firmware_version = "wv-shm 1 (rings of " + std::to_string(settings.ring_bytes / 1024) +
                                " KiB; RDMA read/write: " + cma.description + ")";
  attributes.node_guid = host_guid();
  attributes.system_image_guid = attributes.node_guid;
  attributes.max_mr_size = UINT64_MAX;
  attributes.page_size_mask = 0xfffffffffffff000ull;
  attributes.max_qp = 1u << 16;
  attributes.max_qp_wr = 1u << 14;
  attributes.max_sge = soft::kMaxSge;
  attributes.max_read_sge = soft::kMaxSge;
  attributes.max_cq = 1u << 16;
  attributes.max_cqe = 1u << 20;
  attributes.max_mr = 1u << 20;
  attributes.max_pd = 1u << 16;
  attributes.max_inbound_read_depth = std::max<uint32_t>(settings.read_depth, 1);
  attributes.max_outbound_read_depth = std::max<uint32_t>(settings.read_depth, 1);
  attributes.max_mw = 1u << 16;
  attributes.max_srq = 1u << 16;
  attributes.max_srq_wr = 1u << 14;
  attributes.max_srq_sge = soft::kMaxSge;
  attributes.max_ah = 1u << 16;
  attributes.max_multicast_groups = 0;
  attributes.max_inline = soft::kMaxInline;
  attributes.max_message_size = 1u << 31;
  // Atomics run on the target CPU with atomic instructions: atomic against its CPUs too.
  attributes.atomic_scope = AtomicScope::kGlobal;
  attributes.port_count = 1;
  attributes.capabilities = Capability::kAtomics | Capability::kImmediateData |
                            Capability::kMemoryWindowType1 | Capability::kMemoryWindowType2 |
                            Capability::kSendWithInvalidate | Capability::kSharedReceiveQueue |
                            Capability::kSrqLimitEvent | Capability::kBatchNotify |
                            Capability::kResizeCompletionQueue | Capability::kInline;
  // One-sided reads (shm_connection.h) and mapping a peer's memory need CMA (the key mirror).
  if (cma.enabled) {
    attributes.limitations = Limitation::kReadsServedWithoutTarget;
    attributes.capabilities = attributes.capabilities | Capability::kRemoteMapping;
  }
  return attributes;
}

}  // namespace

ShmProvider::ShmProvider(ShmSettings settings, CmaSupport cma,
                         std::shared_ptr<tcp::TcpProvider> datagrams)
    : settings_(std::move(settings)), cma_(std::move(cma)), datagrams_(std::move(datagrams)) {}

Result<std::vector<DeviceInfo>> ShmProvider::devices() {
  return std::vector<DeviceInfo>{{std::string(kDeviceName), Transport::kSoftware, host_guid()}};
}

Result<std::vector<AddressInfo>> ShmProvider::addresses() {
  std::vector<AddressInfo> result;
  for (const SocketAddress& address : local_addresses()) {
    result.push_back({address, std::string(kDeviceName), 1, 0xffff});
  }
  return result;
}

Result<std::shared_ptr<soft::SoftDevice>> ShmProvider::device() {
  std::lock_guard lock(mutex_);
  if (auto existing = device_.lock()) return existing;
  std::vector<Gid> gids;
  for (const SocketAddress& address : local_addresses()) {
    gids.push_back(tcp::gid_of_address(address));
  }
  PortAttributes port;
  port.state = PortState::kActive;
  port.transport = Transport::kSoftware;
  port.max_mtu = 4096;
  port.active_mtu = 4096;
  port.max_message_size = 1u << 31;
  port.gid_table_length = static_cast<uint32_t>(gids.size());
  port.pkey_table_length = 1;
  DeviceAttributes attributes = shm_device_attributes(settings_, cma_);
  auto wire = tcp::UdpWire::open(datagrams_->settings().port_base, port.active_mtu);
  if (wire.is_ok()) {
    datagram_status_ = Status::ok();
    // Multicast goes through the rings too, so it needs no IP multicast route on the host.
    attributes.capabilities =
        attributes.capabilities | Capability::kDatagram | Capability::kMulticast;
    attributes.max_multicast_groups = tcp::kMaxMulticastGroups;
  } else {
    datagram_status_ = wire.status();
  }
  std::vector<Gid> host_gids = gids;
  auto device = std::make_shared<soft::SoftDevice>(std::move(attributes), port, std::move(gids));
  if (Status status = device->start(); !status) return status;
  if (wire.is_ok()) {
    if (Status status = wire.value()->start(device->progress()); !status) return status;
    auto rings = ShmDatagramWire::open(wire.value(), std::move(host_gids), settings_.ring_bytes);
    if (!rings.is_ok()) return rings.status();
    if (Status status = rings.value()->start(device->progress()); !status) return status;
    device->set_datagram_wire(std::move(rings).value());
  }
  device_ = device;
  return device;
}

Result<std::shared_ptr<Device>> ShmProvider::open_device(std::string_view name) {
  if (name.empty()) {
    const auto& config = config::global();
    if (config.is_ok()) name = config->get_string(config::names::kDevice);
    // The `device` parameter may name another provider's device (auto picks per peer).
    if (name != kDeviceName) name = {};
  }
  if (!name.empty() && name != kDeviceName) {
    return Status(Errc::kNotFound, "provider shm has no device '" + std::string(name) +
                                       "' (its device is " + std::string(kDeviceName) + ")");
  }
  auto found = device();
  if (!found.is_ok()) return found.status();
  return std::shared_ptr<Device>(std::move(found).value());
}

Result<std::shared_ptr<ConnectEndpoint>> ShmProvider::create_connect_endpoint() {
  auto found = device();
  if (!found.is_ok()) return found.status();
  return std::shared_ptr<ConnectEndpoint>(
      std::make_shared<ShmConnectEndpoint>(shared_from_this(), std::move(found).value()));
}

Result<std::shared_ptr<DatagramEndpoint>> ShmProvider::create_datagram_endpoint() {
  auto found = device();
  if (!found.is_ok()) return found.status();
  std::shared_ptr<soft::SoftDevice> device = std::move(found).value();
  if (!device->datagram_wire()) {
    std::lock_guard lock(mutex_);
    return Status(Errc::kNotSupported,
                  "provider shm has no datagram socket: " + datagram_status_.to_string());
  }
  // Lookups are the UDP wire's; group membership is the rings' (no IP group to join).
  auto rings = std::static_pointer_cast<ShmDatagramWire>(device->datagram_wire());
  return std::shared_ptr<DatagramEndpoint>(std::make_shared<tcp::UdpDatagramEndpoint>(
      datagrams_, std::move(device), rings->udp(), rings));
}

}  // namespace shm
}  // namespace wv::verbs
