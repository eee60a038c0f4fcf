// An opened RDMA device: attributes, ports, and the factory of CQs and protection domains.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "wv/result.h"
#include "wv/verbs/operation.h"
#include "wv/verbs/types.h"

namespace wv::verbs {

class CompletionQueue;
class ProtectionDomain;

class Device {
 public:
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  virtual ~Device() = default;

  virtual const DeviceAttributes& attributes() const = 0;
  virtual Result<PortAttributes> query_port(uint8_t port) const = 0;
  // The whole tables, not one entry at a time (the 2008 review).
  virtual Result<std::vector<Gid>> gid_table(uint8_t port) const = 0;
  virtual Result<std::vector<uint16_t>> pkey_table(uint8_t port) const = 0;
  virtual Result<std::shared_ptr<CompletionQueue>> create_completion_queue(uint32_t entries) = 0;
  virtual Result<std::shared_ptr<ProtectionDomain>> allocate_protection_domain() = 0;
  // The next asynchronous event; events are queued until asked for.
  virtual Operation<DeviceEvent> next_event() = 0;

 protected:
  Device() = default;
};

}  // namespace wv::verbs
