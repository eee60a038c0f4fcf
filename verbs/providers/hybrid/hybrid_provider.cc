#include "hybrid_provider.h"

#include "hybrid_endpoint.h"
#include "provider_factories.h"
#include "shm_datagram_wire.h"
#include "shm_endpoint.h"
#include "tcp_endpoint.h"

namespace wv::verbs {

Result<std::shared_ptr<Provider>> open_hybrid_provider() {
  auto tcp = open_tcp_provider();
  if (!tcp.is_ok()) return tcp.status();
  auto shm = open_shm_provider();
  if (!shm.is_ok()) return shm.status();
  auto tcp_provider = std::static_pointer_cast<tcp::TcpProvider>(std::move(tcp).value());
  auto shm_provider = std::static_pointer_cast<shm::ShmProvider>(std::move(shm).value());
  // Datagrams to devices of this host take shm's rings; groups stay IP multicast, since
  // their members may be on other hosts.
  tcp_provider->wrap_datagrams(
      [ring_bytes = shm_provider->settings().ring_bytes](
          std::shared_ptr<tcp::UdpWire> udp, const std::vector<Gid>& host_gids,
          soft::Progress& progress) -> Result<std::shared_ptr<soft::DatagramWire>> {
        auto rings =
            shm::ShmDatagramWire::open(std::move(udp), host_gids, ring_bytes, shm::GroupMode::kUdp);
        if (!rings.is_ok()) return rings.status();
        if (Status status = rings.value()->start(progress); !status) return status;
        return std::shared_ptr<soft::DatagramWire>(std::move(rings).value());
      });
  // Its shm connections serve reads one-sided (shm_connection.h) and map peers' memory.
  if (shm_provider->cma().enabled) {
    tcp_provider->add_limitations(Limitation::kReadsServedWithoutTarget);
    tcp_provider->add_capabilities(Capability::kRemoteMapping);
  }
  return std::shared_ptr<Provider>(
      std::make_shared<hybrid::HybridProvider>(std::move(tcp_provider), std::move(shm_provider)));
}

namespace hybrid {

Result<std::shared_ptr<ConnectEndpoint>> HybridProvider::create_connect_endpoint() {
  auto device = tcp_->device();
  if (!device.is_ok()) return device.status();
  auto tcp = std::make_shared<tcp::TcpConnectEndpoint>(tcp_, device.value());
  auto shm = std::make_shared<shm::ShmConnectEndpoint>(shm_, device.value(), shm::kTcpDoorNames);
  return std::shared_ptr<ConnectEndpoint>(
      std::make_shared<HybridEndpoint>(std::move(tcp), std::move(shm)));
}

}  // namespace hybrid
}  // namespace wv::verbs
