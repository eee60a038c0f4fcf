#include "placement.h"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <climits>
#include <map>

namespace wv::wvrun {

Result<std::vector<HostSlots>> parse_host_list(std::string_view text) {
  using R = Result<std::vector<HostSlots>>;
  std::vector<HostSlots> hosts;
  while (!text.empty()) {
    auto comma = text.find(',');
    std::string_view entry = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    HostSlots h;
    auto colon = entry.rfind(':');
    h.host = std::string(entry.substr(0, colon));
    if (colon != std::string_view::npos) {
      std::string_view slots = entry.substr(colon + 1);
      auto [end, ec] = std::from_chars(slots.data(), slots.data() + slots.size(), h.slots);
      if (ec != std::errc() || end != slots.data() + slots.size() || h.slots < 1) {
        return R(Errc::kInvalidArgument,
                 fmt::format("host list entry '{}': slots must be a positive integer", entry));
      }
    }
    if (h.host.empty()) {
      return R(Errc::kInvalidArgument, fmt::format("host list entry '{}' names no host", entry));
    }
    hosts.push_back(std::move(h));
  }
  if (hosts.empty()) return R(Errc::kInvalidArgument, "the host list is empty");
  return hosts;
}

Result<std::vector<Placement>> place_ranks(int n, const std::vector<HostSlots>& hosts) {
  using R = Result<std::vector<Placement>>;
  if (n < 1) return R(Errc::kInvalidArgument, fmt::format("-n must be at least 1, not {}", n));
  std::vector<Placement> out;
  if (hosts.empty()) {
    for (int r = 0; r < n; ++r) out.push_back({r, "", true, r, n});
    return out;
  }
  long total = 0;
  for (const auto& h : hosts) total += h.slots;
  if (total < n) {
    return R(Errc::kInvalidArgument,
             fmt::format("-n {} needs more slots than the host list offers ({})", n, total));
  }
  // The same host may be listed twice; its local ranks count across both entries.
  std::map<std::string, int> per_host;
  for (const auto& h : hosts) {
    for (int s = 0; s < h.slots && static_cast<int>(out.size()) < n; ++s) {
      int rank = static_cast<int>(out.size());
      out.push_back({rank, h.host, is_this_host(h.host), per_host[h.host]++, 0});
    }
  }
  for (auto& p : out) p.local_size = per_host[p.host];
  return out;
}

bool is_this_host(std::string_view host) {
  if (host == "localhost" || host == "127.0.0.1" || host == "::1" || host.starts_with("127.")) {
    return true;
  }
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return false;
  std::string_view self(name);
  if (host == self) return true;
  // "node1" and "node1.cluster" name the same machine.
  auto dot = self.find('.');
  return dot != std::string_view::npos && host == self.substr(0, dot);
}

}  // namespace wv::wvrun
