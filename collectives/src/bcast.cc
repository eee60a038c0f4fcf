#include <algorithm>

#include "algorithms.h"

namespace wv::coll::detail {

namespace {
int real_rank(int relative, int root, int n) {
  return (relative + root) % n;
}
}  // namespace

// Binomial tree in ranks relative to the root: log2(n) rounds, the whole message each hop;
// best for small messages.
Status bcast_binomial(Channel& c, void* buffer, size_t bytes, int root) {
  const int n = c.size();
  const int vr = (c.rank() - root + n) % n;
  int mask = 1;
  while (mask < n) {
    if (vr & mask) {
      if (Status s = c.recv(real_rank(vr - mask, root, n), 0, buffer, bytes); !s.is_ok()) return s;
      break;
    }
    mask <<= 1;
  }
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (vr + mask < n) {
      if (Status s = c.post_send(real_rank(vr + mask, root, n), 0, buffer, bytes); !s.is_ok()) {
        return s;
      }
    }
  }
  return c.wait();
}

// van de Geijn: binomial scatter of n blocks (a subtree's blocks are contiguous in relative
// order, so they move straight into place), then a ring allgather. ~2x the message in total
// per rank regardless of n: for large messages.
Status bcast_scatter_allgather(Channel& c, void* buffer, size_t bytes, int root) {
  const int n = c.size();
  const int vr = (c.rank() - root + n) % n;
  const std::vector<size_t> counts = split(bytes, n);
  const std::vector<size_t> offsets = prefix(counts);
  auto* base = static_cast<std::byte*>(buffer);
  auto range = [&](int first, int blocks) {  // bytes of relative blocks [first, first+blocks)
    const int last = std::min(n, first + blocks);
    return offsets[static_cast<size_t>(last)] - offsets[static_cast<size_t>(first)];
  };
  int mask = 1;
  while (mask < n) {
    if (vr & mask) {
      if (Status s = c.recv(real_rank(vr - mask, root, n), 0,
                            base + offsets[static_cast<size_t>(vr)], range(vr, mask));
          !s.is_ok()) {
        return s;
      }
      break;
    }
    mask <<= 1;
  }
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (vr + mask < n) {
      if (Status s =
              c.post_send(real_rank(vr + mask, root, n), 0,
                          base + offsets[static_cast<size_t>(vr + mask)], range(vr + mask, mask));
          !s.is_ok()) {
        return s;
      }
    }
  }
  if (Status s = c.wait(); !s.is_ok()) return s;
  // Ring allgather in relative order: step k passes block (vr - k) to the right.
  const int right = real_rank((vr + 1) % n, root, n);
  const int left = real_rank((vr - 1 + n) % n, root, n);
  for (int k = 0; k < n - 1; ++k) {
    const size_t out = static_cast<size_t>((vr - k + n) % n);
    const size_t in = static_cast<size_t>((vr - k - 1 + 2 * n) % n);
    if (Status s = c.sendrecv(right, base + offsets[out], counts[out], left, base + offsets[in],
                              counts[in], static_cast<uint32_t>(k + 1));
        !s.is_ok()) {
      return s;
    }
  }
  return Status::ok();
}

// Pipelined chain root -> root+1 -> ...: each rank forwards chunk i while receiving chunk
// i+1, so time ~ (n - 1 + chunks) * chunk time: for large messages on few ranks.
Status bcast_chain(Channel& c, void* buffer, size_t bytes, int root, size_t chunk) {
  const int n = c.size();
  const int vr = (c.rank() - root + n) % n;
  auto* base = static_cast<std::byte*>(buffer);
  const size_t chunks = bytes == 0 ? 1 : (bytes + chunk - 1) / chunk;
  const bool has_next = vr + 1 < n;
  const int next = real_rank(vr + 1, root, n);
  const int previous = real_rank(vr - 1 + n, root, n);
  // Receives of the next few chunks are pre-posted so data never waits as unexpected.
  constexpr size_t kWindow = 4;
  auto piece = [&](size_t i) { return std::min(chunk, bytes - i * chunk); };
  if (vr == 0) {
    for (size_t i = 0; i < chunks; ++i) {
      if (Status s = c.post_send(next, static_cast<uint32_t>(i), base + i * chunk,
                                 bytes == 0 ? 0 : piece(i));
          !s.is_ok()) {
        return s;
      }
      if ((i + 1) % kWindow == 0) {
        if (Status s = c.wait(); !s.is_ok()) return s;
      }
    }
    return c.wait();
  }
  for (size_t i = 0; i < chunks; ++i) {
    if (Status s =
            c.recv(previous, static_cast<uint32_t>(i), base + i * chunk, bytes == 0 ? 0 : piece(i));
        !s.is_ok()) {
      return s;
    }
    if (has_next) {
      if (Status s = c.post_send(next, static_cast<uint32_t>(i), base + i * chunk,
                                 bytes == 0 ? 0 : piece(i));
          !s.is_ok()) {
        return s;
      }
    }
  }
  return c.wait();
}

}  // namespace wv::coll::detail
