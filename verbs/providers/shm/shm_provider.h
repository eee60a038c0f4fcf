// The `shm` provider: verbs between processes of one host over shared-memory rings, on the
// software RDMA engine the tcp provider uses too (only the wire differs).
//
// Connected QPs: shm_connection.h (rings, doorbells, cross-memory attach), connection setup:
// shm_endpoint.h. Datagram QPs: shm_datagram_wire.h (rings between the processes, beside the
// UDP wire that keeps lookups, multicast and peers without rings).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "shm_cma.h"
#include "soft_device.h"
#include "wv/verbs/provider.h"

namespace wv::verbs::tcp {
class TcpProvider;
}

namespace wv::verbs::shm {

// What connections need from the configuration, read once at open.
struct ShmSettings {
  std::string cma = "auto";  // auto | off
  uint32_t ring_bytes = 256 * 1024;
  uint32_t read_depth = 16;
  int64_t connect_timeout_ms = 10000;
  int64_t rnr_timeout_ms = 2000;
};

class ShmProvider final : public Provider, public std::enable_shared_from_this<ShmProvider> {
 public:
  ShmProvider(ShmSettings settings, CmaSupport cma, std::shared_ptr<tcp::TcpProvider> datagrams);

  std::string_view name() const override { return "shm"; }
  Result<std::vector<DeviceInfo>> devices() override;
  Result<std::vector<AddressInfo>> addresses() override;
  Result<std::shared_ptr<Device>> open_device(std::string_view name) override;
  Result<std::shared_ptr<ConnectEndpoint>> create_connect_endpoint() override;
  Result<std::shared_ptr<DatagramEndpoint>> create_datagram_endpoint() override;

  const ShmSettings& settings() const { return settings_; }
  const CmaSupport& cma() const { return cma_; }
  Result<std::shared_ptr<soft::SoftDevice>> device();

 private:
  ShmSettings settings_;
  CmaSupport cma_;
  std::shared_ptr<tcp::TcpProvider> datagrams_;  // settings of the UDP datagram endpoints
  std::mutex mutex_;
  std::weak_ptr<soft::SoftDevice> device_;
  Status datagram_status_;
};

inline constexpr std::string_view kDeviceName = "shm0";

}  // namespace wv::verbs::shm
