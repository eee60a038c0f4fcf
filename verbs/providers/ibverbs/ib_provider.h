// The `ibverbs` provider: RDMA hardware and the kernel's software devices (rxe, siw) through
// libibverbs and librdmacm. One event-loop thread serves every device and endpoint it opens.
#pragma once

#include <infiniband/verbs.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ib_device.h"
#include "ib_event_loop.h"
#include "wv/verbs/provider.h"

namespace wv::verbs::ib {

class IbProvider final : public Provider, public std::enable_shared_from_this<IbProvider> {
 public:
  IbProvider(ibv_device** list, int count, std::shared_ptr<EventLoop> loop, std::string device);
  ~IbProvider() override;

  std::string_view name() const override { return "ibverbs"; }
  // Nearest first (ib_locality.h): the first is the default device.
  Result<std::vector<DeviceInfo>> devices() override;
  Result<std::vector<AddressInfo>> addresses() override;
  Result<std::shared_ptr<Device>> open_device(std::string_view name) override;
  Result<std::shared_ptr<ConnectEndpoint>> create_connect_endpoint() override;
  Result<std::shared_ptr<DatagramEndpoint>> create_datagram_endpoint() override;

  const std::shared_ptr<EventLoop>& loop() const { return loop_; }
  // The transport of the default device (for limits asked before an endpoint has a device).
  Transport default_transport() const;

 private:
  ibv_device* find(std::string_view name) const;

  ibv_device** list_;
  int count_;
  std::vector<size_t> nearest_;  // indexes into list_, nearest first
  std::shared_ptr<EventLoop> loop_;
  std::string configured_device_;
  std::mutex mutex_;
  std::map<std::string, std::weak_ptr<IbDevice>, std::less<>> opened_;
};

}  // namespace wv::verbs::ib
