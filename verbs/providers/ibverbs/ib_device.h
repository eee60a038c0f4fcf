// An opened libibverbs device: attributes and capabilities read from the device (never assumed),
// ports, whole GID/P_Key tables, and the device's asynchronous events (port state, QP fatal,
// CQ overrun, SRQ limit) delivered through next_event().
#pragma once

#include <infiniband/verbs.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "ib_event_loop.h"
#include "wv/verbs/device.h"

namespace wv::verbs::ib {

struct QpShared;

class IbDevice final : public Device, public std::enable_shared_from_this<IbDevice> {
 public:
  // Opens `device` and reads its attributes; starts delivering its async events on `loop`.
  static Result<std::shared_ptr<IbDevice>> open(ibv_device* device,
                                                std::shared_ptr<EventLoop> loop);
  ~IbDevice() override;

  const DeviceAttributes& attributes() const override { return attributes_; }
  Result<PortAttributes> query_port(uint8_t port) const override;
  Result<std::vector<Gid>> gid_table(uint8_t port) const override;
  Result<std::vector<uint16_t>> pkey_table(uint8_t port) const override;
  Result<std::shared_ptr<CompletionQueue>> create_completion_queue(uint32_t entries) override;
  Result<std::shared_ptr<ProtectionDomain>> allocate_protection_domain() override;
  Operation<DeviceEvent> next_event() override;

  ibv_context* context() const { return context_; }
  const std::shared_ptr<EventLoop>& loop() const { return loop_; }
  Transport transport() const { return transport_; }
  uint32_t active_mtu(uint8_t port) const;
  // The source GID index for a global route to `destination` (RoCE needs one of the port's
  // RoCE v2 GIDs of the same IP family; InfiniBand uses index 0).
  uint8_t source_gid_index(uint8_t port, const Gid& destination) const;
  // Queues an event for next_event() (also used by objects that see an error themselves).
  void deliver(DeviceEvent event);
  // Whether ibv_query_qp reports the QP's state (siw answers RESET whatever the state is).
  bool reports_qp_state() const { return reports_qp_state_; }
  // Whether ibv_modify_srq can grow an SRQ (siw cannot: its SRQs get headroom instead).
  bool resizes_srq() const { return resizes_srq_; }
  // QPs by number, so that an async event moves the QP's tracked state to kError.
  void register_qp(uint32_t number, std::weak_ptr<QpShared> shared);
  void unregister_qp(uint32_t number);
  // Raises kQpFatal for a QP that went to the error state without an event from the device
  // (an emulated CQ overrun; an iWARP connection the peer closed).
  void qp_failed(uint32_t number, void* context, std::string detail);

 private:
  IbDevice(ibv_context* context, std::shared_ptr<EventLoop> loop)
      : context_(context), loop_(std::move(loop)) {}
  Status read_attributes();
  void probe_capabilities(const ibv_device_attr& device);
  void on_async_event();

  ibv_context* context_;
  std::shared_ptr<EventLoop> loop_;
  DeviceAttributes attributes_;
  Transport transport_ = Transport::kInfiniband;
  std::mutex mutex_;
  std::deque<DeviceEvent> events_;
  std::deque<Completer<DeviceEvent>> waiters_;
  bool reports_qp_state_ = true;
  bool resizes_srq_ = true;
  std::mutex qps_mutex_;
  std::unordered_map<uint32_t, std::weak_ptr<QpShared>> qps_;
};

}  // namespace wv::verbs::ib
