#include <cstring>

#include "algorithms.h"
#include "scratch.h"
#include "wv/copy.h"

namespace wv::coll::detail {

// Binomial tree towards the root (relative ranks): each rank combines its children's partial
// results, then passes its own up. Children combine in a fixed order, so the result is the
// same on every run.
Status reduce_binomial(Channel& c, const void* input, void* output, size_t count,
                       const Reduction& r, int root) {
  const int n = c.size();
  const int vr = (c.rank() - root + n) % n;
  const size_t bytes = count * r.element();
  Scratch scratch(c.rank() == root ? bytes : 2 * bytes);
  std::byte* accumulator =
      c.rank() == root ? static_cast<std::byte*>(output) : scratch.data() + bytes;
  std::byte* incoming = scratch.data();
  if (accumulator != input && bytes > 0) copy_bytes(accumulator, input, bytes);
  for (int mask = 1; mask < n; mask <<= 1) {
    if (vr & mask) {
      return c.send((vr - mask + root) % n, 0, accumulator, bytes);
    }
    if (vr + mask < n) {
      if (Status s = c.recv((vr + mask + root) % n, 0, incoming, bytes); !s.is_ok()) return s;
      r.apply(incoming, accumulator, count);
    }
  }
  return Status::ok();
}

}  // namespace wv::coll::detail
