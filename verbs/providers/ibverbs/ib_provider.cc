#include "ib_provider.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <rdma/rdma_cma.h>

#include "ib_connect_endpoint.h"
#include "ib_convert.h"
#include "ib_datagram_endpoint.h"
#include "ib_locality.h"
#include "provider_factories.h"
#include "wv/config/config.h"
#include "wv/config/names.h"
#include "wv/cpus.h"

namespace wv::verbs {

Result<std::shared_ptr<Provider>> open_ibverbs_provider() {
  int count = 0;
  ibv_device** list = ibv_get_device_list(&count);
  if (list == nullptr) {
    return ib::verbs_status(-1, "no RDMA devices: ibv_get_device_list failed");
  }
  if (count == 0) {
    ibv_free_device_list(list);
    return Status(Errc::kNotFound,
                  "no RDMA devices: libibverbs finds none on this machine (no RDMA NIC; "
                  "Soft-RoCE/SoftiWARP need `rdma link add`)");
  }
  auto loop = ib::EventLoop::start();
  if (!loop.is_ok()) {
    ibv_free_device_list(list);
    return loop.status();
  }
  std::string device;
  if (const auto& config = config::global(); config.is_ok()) {
    device = config->get_string(config::names::kDevice);
  }
  return std::shared_ptr<Provider>(
      std::make_shared<ib::IbProvider>(list, count, std::move(loop).value(), std::move(device)));
}

namespace ib {

namespace {

Transport transport_of(ibv_device* device) {
  if (device->transport_type == IBV_TRANSPORT_IWARP) return Transport::kIwarp;
  ibv_context* context = ibv_open_device(device);
  if (context == nullptr) return Transport::kInfiniband;
  ibv_port_attr port{};
  Transport out = Transport::kInfiniband;
  if (ibv_query_port(context, 1, &port) == 0 && port.link_layer == IBV_LINK_LAYER_ETHERNET) {
    out = Transport::kRoce;
  }
  ibv_close_device(context);
  return out;
}

}  // namespace

IbProvider::IbProvider(ibv_device** list, int count, std::shared_ptr<EventLoop> loop,
                       std::string device)
    : list_(list), count_(count), loop_(std::move(loop)), configured_device_(std::move(device)) {
  std::vector<std::optional<std::vector<int>>> local;
  for (int i = 0; i < count_; ++i)
    local.push_back(device_local_cpus(ibv_get_device_name(list_[i])));
  nearest_ = nearest_first(local, wv::allowed_cpus());
}

IbProvider::~IbProvider() {
  ibv_free_device_list(list_);
}

ibv_device* IbProvider::find(std::string_view name) const {
  for (size_t i : nearest_) {
    if (name.empty() || name == ibv_get_device_name(list_[i])) return list_[i];
  }
  return nullptr;
}

Transport IbProvider::default_transport() const {
  ibv_device* device = find(configured_device_);
  if (device == nullptr) device = find("");
  return device->transport_type == IBV_TRANSPORT_IWARP ? Transport::kIwarp : Transport::kRoce;
}

Result<std::vector<DeviceInfo>> IbProvider::devices() {
  std::vector<DeviceInfo> out;
  for (size_t i : nearest_) {
    out.push_back({ibv_get_device_name(list_[i]), transport_of(list_[i]),
                   be64toh(ibv_get_device_guid(list_[i]))});
  }
  return out;
}

Result<std::vector<AddressInfo>> IbProvider::addresses() {
  std::vector<AddressInfo> out;
  rdma_event_channel* channel = rdma_create_event_channel();
  if (channel == nullptr) return verbs_status(-1, "rdma_create_event_channel");
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    rdma_destroy_event_channel(channel);
    return errno_status(Errc::kIoError, "getifaddrs");
  }
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || (it->ifa_flags & IFF_UP) == 0) continue;
    const int family = it->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    // An address reaches an RDMA device if rdma_cm binds it to one.
    rdma_cm_id* id = nullptr;
    if (rdma_create_id(channel, &id, nullptr, RDMA_PS_TCP) != 0) continue;
    if (rdma_bind_addr(id, it->ifa_addr) == 0 && id->verbs != nullptr) {
      AddressInfo info;
      info.address = SocketAddress(it->ifa_addr,
                                   family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
      info.device = ibv_get_device_name(id->verbs->device);
      info.port = id->port_num == 0 ? 1 : id->port_num;
      out.push_back(std::move(info));
    }
    rdma_destroy_id(id);
  }
  ::freeifaddrs(list);
  rdma_destroy_event_channel(channel);
  return out;
}

Result<std::shared_ptr<Device>> IbProvider::open_device(std::string_view name) {
  if (name.empty()) name = configured_device_;
  ibv_device* device = find(name);
  if (device == nullptr) {
    std::string known;
    for (int i = 0; i < count_; ++i) known += std::string(" ") + ibv_get_device_name(list_[i]);
    return Status(Errc::kNotFound, "provider ibverbs has no device '" + std::string(name) +
                                       "' (devices:" + known + ")");
  }
  std::lock_guard lock(mutex_);
  const std::string key = ibv_get_device_name(device);
  if (auto it = opened_.find(key); it != opened_.end()) {
    if (auto existing = it->second.lock()) return std::shared_ptr<Device>(existing);
  }
  auto opened = IbDevice::open(device, loop_);
  if (!opened.is_ok()) return opened.status();
  opened_[key] = opened.value();
  return std::shared_ptr<Device>(std::move(opened).value());
}

Result<std::shared_ptr<ConnectEndpoint>> IbProvider::create_connect_endpoint() {
  auto endpoint = IbConnectEndpoint::create(shared_from_this());
  if (!endpoint.is_ok()) return endpoint.status();
  return std::shared_ptr<ConnectEndpoint>(std::move(endpoint).value());
}

Result<std::shared_ptr<DatagramEndpoint>> IbProvider::create_datagram_endpoint() {
  auto endpoint = IbDatagramEndpoint::create(shared_from_this());
  if (!endpoint.is_ok()) return endpoint.status();
  return std::shared_ptr<DatagramEndpoint>(std::move(endpoint).value());
}

}  // namespace ib
}  // namespace wv::verbs
