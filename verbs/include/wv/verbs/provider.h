// Entry point of the verbs layer. A provider is one implementation of the API (tcp, shm,
// hybrid = tcp + shm to the peers on this host, ibverbs); it lists devices and the addresses that
// reach them, opens devices, and creates the endpoints that connect QPs. Providers are chosen by
// name or by the `provider` parameter.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wv/result.h"
#include "wv/verbs/socket_address.h"
#include "wv/verbs/types.h"

namespace wv::verbs {

class ConnectEndpoint;
class DatagramEndpoint;
class Device;

struct DeviceInfo {
  std::string name;
  Transport transport = Transport::kSoftware;
  uint64_t guid = 0;
};

struct AddressInfo {
  SocketAddress address;
  std::string device;
  uint8_t port = 1;
  uint16_t pkey = 0xffff;
};

class Provider {
 public:
  // "tcp", "shm", "hybrid", "ibverbs", or "auto" (the best one this machine has: ibverbs
  // where there is an RDMA device, else hybrid).
  static Result<std::shared_ptr<Provider>> open(std::string_view name);
  // The provider named by the `provider` parameter of the global configuration.
  static Result<std::shared_ptr<Provider>> open_configured();
  // Every provider built into this library, whether or not this machine can run it.
  static std::span<const std::string_view> names();

  Provider(const Provider&) = delete;
  Provider& operator=(const Provider&) = delete;
  virtual ~Provider() = default;

  virtual std::string_view name() const = 0;
  virtual Result<std::vector<DeviceInfo>> devices() = 0;
  virtual Result<std::vector<AddressInfo>> addresses() = 0;
  // "" opens the `device` parameter's device, or the first one.
  virtual Result<std::shared_ptr<Device>> open_device(std::string_view name) = 0;
  virtual Result<std::shared_ptr<ConnectEndpoint>> create_connect_endpoint() = 0;
  virtual Result<std::shared_ptr<DatagramEndpoint>> create_datagram_endpoint() = 0;

 protected:
  Provider() = default;
};

}  // namespace wv::verbs
