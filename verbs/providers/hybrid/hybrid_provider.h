// The `hybrid` provider, what `auto` opens on a machine without RDMA devices: the tcp device,
// whose connections to peers on this host go over shared-memory rings instead of TCP.
//
// Both wires serve the same software device, so one protection domain, one key space, one CQ
// and one SRQ cover every peer, and a transport above (the Worker, btl/wv) needs no notion of
// rails: it connects to an ip:port as usual and gets the fastest wire that reaches it. Only
// connection setup differs (hybrid_endpoint.h). Datagrams are the tcp provider's UDP, except
// that those to devices of this host take shm's rings (shm_datagram_wire.h, GroupMode::kUdp).
#pragma once

#include <memory>

#include "shm_provider.h"
#include "tcp_provider.h"
#include "wv/verbs/provider.h"

namespace wv::verbs::hybrid {

class HybridProvider final : public Provider {
 public:
  HybridProvider(std::shared_ptr<tcp::TcpProvider> tcp, std::shared_ptr<shm::ShmProvider> shm)
      : tcp_(std::move(tcp)), shm_(std::move(shm)) {}

  std::string_view name() const override { return "hybrid"; }
  Result<std::vector<DeviceInfo>> devices() override { return tcp_->devices(); }
  Result<std::vector<AddressInfo>> addresses() override { return tcp_->addresses(); }
  Result<std::shared_ptr<Device>> open_device(std::string_view name) override {
    return tcp_->open_device(name);
  }
  Result<std::shared_ptr<ConnectEndpoint>> create_connect_endpoint() override;
  Result<std::shared_ptr<DatagramEndpoint>> create_datagram_endpoint() override {
    return tcp_->create_datagram_endpoint();
  }

 private:
  std::shared_ptr<tcp::TcpProvider> tcp_;
  std::shared_ptr<shm::ShmProvider> shm_;
};

}  // namespace wv::verbs::hybrid
