#include "tcp_provider.h"

#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>

#include "provider_factories.h"
#include "tcp_endpoint.h"
#include "udp_endpoint.h"
#include "udp_wire.h"
#include "work_request.h"
#include "wv/config/config.h"
#include "wv/config/names.h"

namespace wv::verbs {

Result<std::shared_ptr<Provider>> open_tcp_provider() {
  const auto& config = config::global();
  if (!config.is_ok()) return config.status();
  namespace names = config::names;
  tcp::TcpSettings settings;
  settings.crc = config->get_string(names::kTcpCrc);
  settings.segment_size = static_cast<uint32_t>(config->get_size(names::kTcpSegmentSize));
  settings.read_depth = static_cast<uint32_t>(config->get_int(names::kTcpReadDepth));
  settings.connect_timeout_ms = config->get_int(names::kConnectTimeoutMs);
  settings.rnr_timeout_ms = config->get_int(names::kRnrTimeoutMs);
  settings.port_base = static_cast<uint16_t>(config->get_int(names::kTcpPortBase));
  return std::shared_ptr<Provider>(std::make_shared<tcp::TcpProvider>(std::move(settings)));
}

namespace tcp {
namespace {

uint64_t host_guid() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return std::hash<std::string>{}(host) | 1;
}

DeviceAttributes tcp_device_attributes(const TcpSettings& settings, uint8_t ports) {
  DeviceAttributes attributes;
  attributes.name = std::string(kDeviceName);
  attributes.firmware_version = "wv-tcp 1 (iWARP: MPA v2, DDP, RDMAP, RFC 7306 atomics)";
  attributes.vendor_id = 0;
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
  // Atomics run on the target CPU with atomic instructions, so they are atomic against the
  // target's own processors too.
  attributes.atomic_scope = AtomicScope::kGlobal;
  attributes.port_count = ports;
  attributes.capabilities = Capability::kAtomics | Capability::kImmediateData |
                            Capability::kMemoryWindowType1 | Capability::kMemoryWindowType2 |
                            Capability::kSendWithInvalidate | Capability::kSharedReceiveQueue |
                            Capability::kSrqLimitEvent | Capability::kBatchNotify |
                            Capability::kResizeCompletionQueue | Capability::kInline;
  return attributes;
}

}  // namespace

Result<std::vector<DeviceInfo>> TcpProvider::devices() {
  return std::vector<DeviceInfo>{{std::string(kDeviceName), Transport::kIwarp, host_guid()}};
}

Result<std::vector<AddressInfo>> TcpProvider::addresses() {
  std::vector<AddressInfo> result;
  for (const SocketAddress& address : SocketAddress::interfaces()) {
    result.push_back({address, std::string(kDeviceName), 1, 0xffff});
  }
  return result;
}

Result<std::shared_ptr<soft::SoftDevice>> TcpProvider::device() {
  std::lock_guard lock(mutex_);
  if (auto existing = device_.lock()) return existing;
  std::vector<Gid> gids;
  for (const SocketAddress& address : SocketAddress::interfaces()) {
    gids.push_back(gid_of_address(address));
  }
  if (gids.empty()) gids.emplace_back();
  PortAttributes port;
  port.state = PortState::kActive;
  port.transport = Transport::kIwarp;
  port.max_mtu = 4096;
  port.active_mtu = 4096;
  port.max_message_size = 1u << 31;
  port.gid_table_length = static_cast<uint32_t>(gids.size());
  port.pkey_table_length = 1;
  DeviceAttributes attributes = tcp_device_attributes(settings_, 1);
  attributes.limitations = attributes.limitations | extra_limitations_;
  attributes.capabilities = attributes.capabilities | extra_capabilities_;
  // Datagram QPs ride one UDP socket per device. Without it the device still serves connected
  // QPs; the reason is kept for create_datagram_endpoint.
  auto wire = UdpWire::open(settings_.port_base, port.active_mtu);
  if (wire.is_ok()) {
    datagram_status_ = Status::ok();
    attributes.capabilities = attributes.capabilities | Capability::kDatagram;
    if (wire.value()->multicast_status().is_ok()) {
      attributes.capabilities = attributes.capabilities | Capability::kMulticast;
      attributes.max_multicast_groups = kMaxMulticastGroups;
    }
  } else {
    datagram_status_ = wire.status();
  }
  const std::vector<Gid> host_gids = gids;
  auto device = std::make_shared<soft::SoftDevice>(std::move(attributes), port, std::move(gids));
  if (Status status = device->start(); !status) return status;
  if (wire.is_ok()) {
    if (Status status = wire.value()->start(device->progress()); !status) return status;
    std::shared_ptr<soft::DatagramWire> datagrams = wire.value();
    if (wrap_datagrams_) {
      auto wrapped = wrap_datagrams_(wire.value(), host_gids, device->progress());
      if (!wrapped.is_ok()) return wrapped.status();
      datagrams = std::move(wrapped).value();
    }
    device->set_datagram_wire(std::move(datagrams));
    udp_wire_ = wire.value();
  }
  device_ = device;
  return device;
}

Result<std::shared_ptr<Device>> TcpProvider::open_device(std::string_view name) {
  if (name.empty()) {
    const auto& config = config::global();
    if (config.is_ok()) name = config->get_string(config::names::kDevice);
  }
  if (!name.empty() && name != kDeviceName) {
    return Status(Errc::kNotFound, "provider tcp has no device '" + std::string(name) +
                                       "' (its device is " + std::string(kDeviceName) + ")");
  }
  auto found = device();
  if (!found.is_ok()) return found.status();
  return std::shared_ptr<Device>(std::move(found).value());
}

Result<std::shared_ptr<ConnectEndpoint>> TcpProvider::create_connect_endpoint() {
  auto found = device();
  if (!found.is_ok()) return found.status();
  return std::shared_ptr<ConnectEndpoint>(
      std::make_shared<TcpConnectEndpoint>(shared_from_this(), std::move(found).value()));
}

Result<std::shared_ptr<DatagramEndpoint>> TcpProvider::create_datagram_endpoint() {
  auto found = device();
  if (!found.is_ok()) return found.status();
  std::shared_ptr<soft::SoftDevice> device = std::move(found).value();
  if (!device->datagram_wire()) {
    std::lock_guard lock(mutex_);
    return Status(Errc::kNotSupported,
                  "provider tcp has no datagram socket: " + datagram_status_.to_string());
  }
  // Lookups and group joins are the UDP wire's, whatever carries the datagrams.
  std::shared_ptr<UdpWire> wire;
  {
    std::lock_guard lock(mutex_);
    wire = udp_wire_.lock();
  }
  if (wire == nullptr) return Status(Errc::kInvalidState, "the tcp device has closed");
  return std::shared_ptr<DatagramEndpoint>(std::make_shared<UdpDatagramEndpoint>(
      shared_from_this(), std::move(device), std::move(wire)));
}

}  // namespace tcp
}  // namespace wv::verbs
