#include "eager_limit.h"

namespace wv::transport {
namespace {

// A round trip through the kernel's TCP/IP stack, which iWARP and the emulated devices pay.
constexpr double kKernelStackRoundTripUs = 15;

double round_trip_us(verbs::Transport transport, bool kernel_emulated) {
  if (kernel_emulated) return kKernelStackRoundTripUs;
  switch (transport) {
    case verbs::Transport::kInfiniband:
    case verbs::Transport::kRoce:
      return 3;
    case verbs::Transport::kIwarp:
      return kKernelStackRoundTripUs;
    case verbs::Transport::kSoftware:
      // The shm provider: two cache-line transfers and the software path, 0.4-0.5 us measured.
      // At 2 us the model chose 32 KiB, where a rendezvous read was faster from 16 KiB
      // (wv_perf pt2pt shm, session 12: 16 KiB 3.2 against 3.7-4.7 us eager).
      return 0.5;
  }
  return 10;
}

}  // namespace

EagerChoice choose_eager_limit(double copy_gbps, verbs::Transport transport, bool kernel_emulated) {
  EagerChoice choice;
  choice.round_trip_us = round_trip_us(transport, kernel_emulated);
  choice.break_even = choice.round_trip_us * 1e-6 * copy_gbps * 1e9 / 2;
  choice.limit = kMinEagerChoice;
  while (choice.limit * 2 <= choice.break_even && choice.limit * 2 <= kMaxEagerChoice) {
    choice.limit *= 2;
  }
  return choice;
}

}  // namespace wv::transport
