// The `tcp` provider: RDMA semantics in user space over TCP. Connected QPs speak iWARP
// (MPA v2 / DDP / RDMAP) on one TCP stream each; the software engine supplies the verbs.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "datagram_wire.h"
#include "progress.h"
#include "soft_device.h"
#include "wv/verbs/provider.h"

namespace wv::verbs::tcp {

class UdpWire;

// What the provider's connections need from the configuration, read once at open.
struct TcpSettings {
  std::string crc = "off";  // off | request | require
  uint32_t segment_size = 65536;
  uint32_t read_depth = 16;
  int64_t connect_timeout_ms = 10000;
  int64_t rnr_timeout_ms = 2000;
  uint16_t port_base = 0;
};

class TcpProvider final : public Provider, public std::enable_shared_from_this<TcpProvider> {
 public:
  explicit TcpProvider(TcpSettings settings) : settings_(std::move(settings)) {}

  std::string_view name() const override { return "tcp"; }
  Result<std::vector<DeviceInfo>> devices() override;
  Result<std::vector<AddressInfo>> addresses() override;
  Result<std::shared_ptr<Device>> open_device(std::string_view name) override;
  Result<std::shared_ptr<ConnectEndpoint>> create_connect_endpoint() override;
  Result<std::shared_ptr<DatagramEndpoint>> create_datagram_endpoint() override;

  const TcpSettings& settings() const { return settings_; }
  // The one software device of this provider; its progress thread serves every endpoint.
  Result<std::shared_ptr<soft::SoftDevice>> device();

  // Wraps the device's UDP wire before the device takes it (the hybrid provider adds
  // shared-memory rings for peers of this host). Set before the device is first opened.
  using DatagramWrapper = std::function<Result<std::shared_ptr<soft::DatagramWire>>(
      std::shared_ptr<UdpWire> udp, const std::vector<Gid>& host_gids, soft::Progress& progress)>;
  void wrap_datagrams(DatagramWrapper wrapper) { wrap_datagrams_ = std::move(wrapper); }
  // Limitations and capabilities the device reports besides tcp's own (the hybrid provider's shm
  // connections). Set before the device is first opened.
  void add_limitations(Limitation extra) { extra_limitations_ = extra_limitations_ | extra; }
  void add_capabilities(Capability extra) { extra_capabilities_ = extra_capabilities_ | extra; }

 private:
  TcpSettings settings_;
  DatagramWrapper wrap_datagrams_;
  Limitation extra_limitations_ = Limitation::kNone;
  Capability extra_capabilities_ = Capability::kNone;
  std::mutex mutex_;
  std::weak_ptr<soft::SoftDevice> device_;
  std::weak_ptr<UdpWire> udp_wire_;  // the device's, wrapped or not
  Status datagram_status_;           // why the device has no datagram wire, if it has none
};

inline constexpr std::string_view kDeviceName = "tcp0";

}  // namespace wv::verbs::tcp
