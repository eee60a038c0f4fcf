// The software RDMA device shared by the software providers: attributes, the key table, QP
// numbers, asynchronous events and the progress thread. A provider supplies the attributes
// and the wire; verbs semantics live here and in the objects this device creates.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "key_table.h"
#include "progress.h"
#include "wv/verbs/device.h"

namespace wv::verbs::soft {

class DatagramWire;

class SoftDevice final : public Device, public std::enable_shared_from_this<SoftDevice> {
 public:
  SoftDevice(DeviceAttributes attributes, PortAttributes port, std::vector<Gid> gids);
  ~SoftDevice() override { progress_->stop(); }

  const DeviceAttributes& attributes() const override { return attributes_; }
  Result<PortAttributes> query_port(uint8_t port) const override;
  Result<std::vector<Gid>> gid_table(uint8_t port) const override;
  Result<std::vector<uint16_t>> pkey_table(uint8_t port) const override;
  Result<std::shared_ptr<CompletionQueue>> create_completion_queue(uint32_t entries) override;
  Result<std::shared_ptr<ProtectionDomain>> allocate_protection_domain() override;
  Operation<DeviceEvent> next_event() override;

  Status start() { return progress_->start(); }
  KeyTable& keys() { return keys_; }
  Progress& progress() { return *progress_; }
  uint32_t allocate_qp_number() { return next_qp_number_.fetch_add(1) & 0xffffff; }
  void raise_event(DeviceEvent event);
  // The provider's datagram wire, or null when datagrams are not supported.
  void set_datagram_wire(std::shared_ptr<DatagramWire> wire) { datagram_wire_ = std::move(wire); }
  const std::shared_ptr<DatagramWire>& datagram_wire() const { return datagram_wire_; }

 private:
  Status check_port(uint8_t port) const;

  DeviceAttributes attributes_;
  PortAttributes port_;
  std::vector<Gid> gids_;
  KeyTable keys_;
  std::atomic<uint32_t> next_qp_number_;
  std::mutex events_mutex_;
  std::deque<DeviceEvent> events_;
  std::deque<Completer<DeviceEvent>> waiters_;
  std::shared_ptr<DatagramWire> datagram_wire_;
  std::shared_ptr<Progress> progress_ = std::make_shared<Progress>();
};

}  // namespace wv::verbs::soft
