#include "soft_device.h"

#include <sys/random.h>

#include <string>

#include "soft_completion_queue.h"
#include "soft_protection_domain.h"

namespace wv::verbs::soft {

namespace {
uint32_t random_qp_base() {
  uint32_t base = 0;
  if (::getrandom(&base, sizeof(base), 0) != sizeof(base)) base = 0x1000;
  // Keep QP numbers 24-bit, non-zero, and far from wrapping during a run.
  return (base & 0x7fffff) | 0x100;
}
}  // namespace

SoftDevice::SoftDevice(DeviceAttributes attributes, PortAttributes port, std::vector<Gid> gids)
    : attributes_(std::move(attributes)),
      port_(port),
      gids_(std::move(gids)),
      next_qp_number_(random_qp_base()) {}

Status SoftDevice::check_port(uint8_t port) const {
  if (port == 0 || port > attributes_.port_count) {
    return Status(Errc::kInvalidArgument, "device " + attributes_.name + " has no port " +
                                              std::to_string(port) + " (ports are 1.." +
                                              std::to_string(attributes_.port_count) + ")");
  }
  return Status::ok();
}

Result<PortAttributes> SoftDevice::query_port(uint8_t port) const {
  if (Status status = check_port(port); !status) return status;
  return port_;
}

Result<std::vector<Gid>> SoftDevice::gid_table(uint8_t port) const {
  if (Status status = check_port(port); !status) return status;
  return gids_;
}

Result<std::vector<uint16_t>> SoftDevice::pkey_table(uint8_t port) const {
  if (Status status = check_port(port); !status) return status;
  // Software transports have no partitions: the table holds the full-membership default key.
  return std::vector<uint16_t>(port_.pkey_table_length, 0xffff);
}

Result<std::shared_ptr<CompletionQueue>> SoftDevice::create_completion_queue(uint32_t entries) {
  if (entries == 0 || entries > attributes_.max_cqe) {
    return Status(Errc::kInvalidArgument, "CQ size " + std::to_string(entries) +
                                              " must be between 1 and " +
                                              std::to_string(attributes_.max_cqe));
  }
  return std::shared_ptr<CompletionQueue>(std::make_shared<SoftCompletionQueue>(entries));
}

Result<std::shared_ptr<ProtectionDomain>> SoftDevice::allocate_protection_domain() {
  return std::shared_ptr<ProtectionDomain>(
      std::make_shared<SoftProtectionDomain>(shared_from_this()));
}

Operation<DeviceEvent> SoftDevice::next_event() {
  auto [operation, completer] = Operation<DeviceEvent>::make();
  std::lock_guard lock(events_mutex_);
  if (!events_.empty()) {
    completer.complete(std::move(events_.front()));
    events_.pop_front();
  } else {
    waiters_.push_back(completer);
  }
  return std::move(operation);
}

void SoftDevice::raise_event(DeviceEvent event) {
  std::lock_guard lock(events_mutex_);
  while (!waiters_.empty()) {
    Completer<DeviceEvent> waiter = std::move(waiters_.front());
    waiters_.pop_front();
    // A cancelled waiter refuses the event; hand it to the next one.
    if (waiter.complete(event)) return;
  }
  events_.push_back(std::move(event));
}

}  // namespace wv::verbs::soft
