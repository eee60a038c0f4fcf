// The eager limit's cost model. An eager message is copied twice (into a send buffer, out of a
// receive buffer); a rendezvous pays one more message round trip instead (and a registration
// on a cache miss). The limit is the largest power of two at which the copies still cost less
// than that round trip.
#pragma once

#include <cstddef>

#include "wv/verbs/types.h"

namespace wv::transport {

inline constexpr size_t kMinEagerChoice = 1024;
// The model's ceiling. Above 32 KiB an eager message no longer fits the software providers'
// 64 KiB frames with room to spare and costs twice the rendezvous read on tcp (64 KiB: 70-110
// us eager against 45 us read, measured with wv_perf pt2pt).
inline constexpr size_t kMaxEagerChoice = 32 * 1024;

struct EagerChoice {
  size_t limit = 0;
  double round_trip_us = 0;  // the estimate the choice rests on
  double break_even = 0;     // bytes at which two copies cost one round trip
};

// The round trip is estimated from the transport (no peer exists yet to measure against): a
// NIC's for InfiniBand and RoCE, a kernel TCP stack's for iWARP and for any device the kernel
// emulates (Soft-RoCE, SoftiWARP), whatever it speaks on the wire.
EagerChoice choose_eager_limit(double copy_gbps, verbs::Transport transport, bool kernel_emulated);

}  // namespace wv::transport
