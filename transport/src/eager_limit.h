// The eager limit's cost model. An eager message is copied twice (into a send buffer, out of a
// receive buffer); a rendezvous pays one more message round trip instead (and a registration
// on a cache miss). The limit is the largest power of two at which the copies still cost less
// than that round trip.
#pragma once

#include <cstddef>

#include "wv/verbs/types.h"

namespace wv::transport {

inline constexpr size_t kMinEagerChoice = 1024;
// The model's ceiling. On tcp, since a large message's segments leave in one system call,
// 64 and 128 KiB messages are faster eager than by rendezvous read (wv_perf pt2pt half round
// trip: 28-32 against 39 us at 64 KiB, 39-41 against 47-48 us at 128 KiB), but from 128 KiB a
// window of eager messages moves less than the reads do, and every eager buffer is this large.
inline constexpr size_t kMaxEagerChoice = 64 * 1024;
// Added to the chosen power of two, so that a power-of-two message with a layered protocol's
// header on top (Open MPI ob1's match header is 14 bytes) is still eager.
inline constexpr size_t kUpperHeaderRoom = 64;

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
