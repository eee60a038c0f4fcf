// One side of a connection in a provider unit test: a provider's device with a PD, one CQ and
// a connected-QP-to-be, plus bounded waits on them.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <span>
#include <thread>

#include "wv/verbs.h"

namespace wv::verbs::test {

inline constexpr std::chrono::seconds kBound{10};

struct Side {
  std::shared_ptr<Provider> provider;
  std::shared_ptr<Device> device;
  std::shared_ptr<ProtectionDomain> pd;
  std::shared_ptr<CompletionQueue> cq;
  std::shared_ptr<ConnectQueuePair> qp;
};

inline void open_side(const char* provider_name, Side& side) {
  auto provider = Provider::open(provider_name);
  ASSERT_TRUE(provider.is_ok()) << provider.status().to_string();
  side.provider = provider.value();
  auto device = side.provider->open_device("");
  ASSERT_TRUE(device.is_ok()) << device.status().to_string();
  side.device = device.value();
  side.pd = side.device->allocate_protection_domain().value();
  side.cq = side.device->create_completion_queue(64).value();
  QueuePairOptions options;
  options.send_cq = side.cq;
  options.receive_cq = side.cq;
  auto qp = side.pd->create_connect_queue_pair(options);
  ASSERT_TRUE(qp.is_ok()) << qp.status().to_string();
  side.qp = qp.value();
}

// One completion within kBound.
inline bool poll_one(CompletionQueue& cq, Completion& out) {
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cq.poll(std::span(&out, 1)) == 1) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return false;
}

inline bool wait_state(const QueuePair& qp, QpState state) {
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (std::chrono::steady_clock::now() < deadline) {
    if (qp.query().state == state) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace wv::verbs::test
