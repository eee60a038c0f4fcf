// The protocol choices of a worker: which path a message of a given size takes.
//
// Chosen at start-up from the device's attributes (inline size, read depth, capabilities) and
// a small measured cost model (memory copy bandwidth and registration cost on this machine);
// every value can be overridden through the configuration (transport_* parameters).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wv::transport {

// How a message above the eager limit moves.
enum class RendezvousScheme : uint8_t {
  kRead,   // the receiver RDMA-reads the sender's buffer, then sends a completion notice
  kWrite,  // the receiver answers with its buffer's key; the sender RDMA-writes into it
};
std::string_view to_string(RendezvousScheme scheme);

enum class Path : uint8_t { kInline, kEager, kRendezvous };
std::string_view to_string(Path path);

struct ProtocolThresholds {
  size_t inline_limit = 0;  // payloads up to this go inline (copied by the device at post)
  size_t eager_limit = 0;   // payloads up to this are copied through pre-registered buffers
  RendezvousScheme scheme = RendezvousScheme::kRead;
  size_t fragment_size = 0;  // rendezvous transfers are cut into RDMA operations of this size
  // Active-message payloads from this size up may go zero-copy (am_send_zcopy); 0: never.
  size_t zero_copy_min = 0;
  // Measured at start-up; the inputs of the choice, printed by wv_info --protocols.
  double copy_bandwidth_gbps = 0;   // single-core memcpy, GB/s
  double registration_cost_us = 0;  // register + deregister of one eager-limit buffer
  std::string rationale;            // one line per decision: what decided it

  Path path_for(size_t payload) const {
    if (payload <= inline_limit) return Path::kInline;
    if (payload <= eager_limit) return Path::kEager;
    return Path::kRendezvous;
  }
};

}  // namespace wv::transport
