// Where each rank runs: the -H host list turned into one entry per rank.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "wv/result.h"

namespace wv::wvrun {

struct HostSlots {
  std::string host;
  int slots = 1;
};

struct Placement {
  int rank = 0;
  std::string host;  // as written in -H; empty for this host without -H
  bool local = true;
  int local_rank = 0;
  int local_size = 1;
};

// "a:2,b:4,c" (slots default to 1); kInvalidArgument naming the bad entry.
Result<std::vector<HostSlots>> parse_host_list(std::string_view text);

// Fills each host's slots in order. Without hosts every rank is local.
Result<std::vector<Placement>> place_ranks(int n, const std::vector<HostSlots>& hosts);

// Whether `host` names this machine (localhost, a loopback address, or our hostname).
bool is_this_host(std::string_view host);

}  // namespace wv::wvrun
