// The protocol choice: thresholds from the device's attributes and a measured cost model.
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "eager_limit.h"
#include "worker_impl.h"
#include "wv/config/config.h"
#include "wv/config/names.h"
#include "wv/copy.h"

namespace wv::transport {

namespace names = config::names;

std::string_view to_string(RendezvousScheme scheme) {
  return scheme == RendezvousScheme::kRead ? "read" : "write";
}

std::string_view to_string(Path path) {
  switch (path) {
    case Path::kInline:
      return "inline";
    case Path::kEager:
      return "eager";
    case Path::kRendezvous:
      return "rendezvous";
  }
  return "unknown";
}

namespace {

constexpr size_t kDefaultFragmentSize = size_t{1} << 20;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Single-core copy bandwidth over a buffer larger than L2 (GB/s): what an eager message pays
// twice (into the send buffer, out of the receive buffer).
double measure_copy_bandwidth() {
  constexpr size_t kBytes = 4 << 20;
  std::vector<char> from(kBytes, 1), to(kBytes, 0);
  copy_bytes(to.data(), from.data(), kBytes);  // fault the pages in first
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    auto start = Clock::now();
    copy_bytes(to.data(), from.data(), kBytes);
    asm volatile("" : : "r"(to.data()) : "memory");
    best = std::min(best, seconds_since(start));
  }
  return kBytes / best / 1e9;
}

// One registration plus deregistration of `bytes` (what a registration cache miss costs).
double measure_registration_us(verbs::ProtectionDomain& domain, size_t bytes) {
  std::vector<char> buffer(bytes, 0);
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    auto start = Clock::now();
    auto region = domain.register_memory(buffer.data(), bytes,
                                         verbs::Access::kLocalWrite | verbs::Access::kRemoteRead);
    if (!region.is_ok()) return -1;
    region->reset();
    best = std::min(best, seconds_since(start));
  }
  return best * 1e6;
}

}  // namespace

Status WorkerImpl::choose_thresholds() {
  const config::Config& config = *config_;
  const verbs::DeviceAttributes& attributes = device_->attributes();
  auto port = device_->query_port(1);
  const verbs::Transport transport = port.is_ok() ? port->transport : verbs::Transport::kSoftware;
  ProtocolThresholds& t = thresholds_;
  std::string& why = t.rationale;

  t.copy_bandwidth_gbps = measure_copy_bandwidth();
  t.registration_cost_us = measure_registration_us(*domain_, kMaxEagerChoice);

  const int64_t inline_setting = config.get_int(names::kTransportInlineLimit);
  const size_t device_inline =
      has(attributes.capabilities, verbs::Capability::kInline) ? attributes.max_inline : 0;
  const size_t inline_total =
      inline_setting < 0 ? device_inline
                         : std::min<size_t>(static_cast<size_t>(inline_setting), device_inline);
  t.inline_limit = inline_total > sizeof(wire::Header) ? inline_total - sizeof(wire::Header) : 0;
  inline_bytes_ = inline_total >= sizeof(wire::Header) ? inline_total : 0;
  why += "inline: " + std::to_string(t.inline_limit) + " B payload (" +
         (inline_setting < 0 ? "device max_inline " + std::to_string(device_inline) + " B"
                             : "transport_inline_limit") +
         " less the 32 B full header; active messages and standard sends carry 8 or 16 B)\n";

  const uint64_t eager_setting = config.get_size(names::kTransportEagerLimit);
  if (eager_setting != 0) {
    t.eager_limit = eager_setting;
    why += "eager: " + std::to_string(t.eager_limit) + " B (transport_eager_limit)\n";
  } else {
    const EagerChoice choice =
        choose_eager_limit(t.copy_bandwidth_gbps, transport, attributes.kernel_emulated);
    t.eager_limit = choice.limit + kUpperHeaderRoom;
    char line[240];
    std::snprintf(line, sizeof line,
                  "eager: %zu B (two copies at %.1f GB/s cost one %s%s round trip of ~%.0f us "
                  "at %.0f B; power of two in [1 KiB, 64 KiB], plus %zu B for a layered header)\n",
                  t.eager_limit, t.copy_bandwidth_gbps,
                  attributes.kernel_emulated ? "kernel-emulated " : "",
                  std::string(verbs::to_string(transport)).c_str(), choice.round_trip_us,
                  choice.break_even, kUpperHeaderRoom);
    why += line;
  }
  if (attributes.max_message_size && t.eager_limit > attributes.max_message_size) {
    t.eager_limit = attributes.max_message_size - sizeof(wire::Header);
  }
  t.inline_limit = std::min(t.inline_limit, t.eager_limit);
  inline_bytes_ = std::min(inline_bytes_, t.inline_limit + sizeof(wire::Header));

  const std::string& scheme = config.get_string(names::kTransportRendezvous);
  if (scheme == "write") {
    t.scheme = RendezvousScheme::kWrite;
    why += "rendezvous: write (transport_rendezvous)\n";
  } else {
    t.scheme = RendezvousScheme::kRead;
    why += scheme == "read" ? "rendezvous: read (transport_rendezvous)\n"
                            : "rendezvous: read (the receiver pulls once matched: no extra "
                              "round trip; write by transport_rendezvous=write)\n";
  }

  // 1 MiB: on tcp a 1 MiB rendezvous took 123 us in one read against 165-200 us in two of 512
  // KiB (the kernel moves one large write faster than several), 4 MiB 676-700 against 842-975
  // us; shm measured the same either way (wv_perf pt2pt, session 12).
  const uint64_t fragment_setting = config.get_size(names::kTransportFragmentSize);
  size_t fragment = fragment_setting ? fragment_setting : kDefaultFragmentSize;
  if (attributes.max_message_size)
    fragment = std::min<size_t>(fragment, attributes.max_message_size);
  t.fragment_size = fragment;
  why += "fragment: " + std::to_string(fragment) + " B (" +
         (fragment_setting ? "transport_fragment_size" : "1 MiB, within max_message_size") + ")\n";

  // A send from the caller's memory trades the copy into a send buffer for a registration-cache
  // lookup, a signaled send and the caller's wait for its completion. btl/wv over tcp (session
  // 18, fast phases): 32-64 KiB streams moved 3.1-3.8 GB/s in place against 2.9-3.3 copied; at
  // 8 KiB no gain showed.
  t.zero_copy_min = config.get_size(names::kTransportZeroCopyMin);
  why += "zero-copy active messages: from " + std::to_string(t.zero_copy_min) +
         " B (transport_zero_copy_min)\n";
  return Status::ok();
}

}  // namespace wv::transport
