#include "algorithms.h"

namespace wv::coll::detail {

// Dissemination: in round k every rank signals rank + 2^k and hears from rank - 2^k; after
// ceil(log2 n) rounds each rank has transitively heard from all (any n, no power-of-two fold).
Status barrier_dissemination(Channel& c) {
  const int n = c.size();
  uint32_t round = 0;
  for (int distance = 1; distance < n; distance *= 2, ++round) {
    if (Status s = c.sendrecv((c.rank() + distance) % n, nullptr, 0, (c.rank() - distance + n) % n,
                              nullptr, 0, round);
        !s.is_ok()) {
      return s;
    }
  }
  return Status::ok();
}

}  // namespace wv::coll::detail
