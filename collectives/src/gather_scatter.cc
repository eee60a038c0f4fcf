#include <algorithm>
#include <cstring>

#include "algorithms.h"
#include "scratch.h"
#include "wv/copy.h"

namespace wv::coll::detail {

// Binomial gather: each subtree's blocks are collected contiguously in relative-rank order,
// so a rank sends its whole subtree in one message; log2(n) steps at the root.
Status gather_binomial(Channel& c, const void* send, void* recv, size_t block, int root) {
  const int n = c.size();
  const int vr = (c.rank() - root + n) % n;
  const size_t nb = static_cast<size_t>(n);
  Scratch scratch(nb * block);
  if (block > 0) copy_bytes(scratch.data(), send, block);
  int mask = 1;
  for (; mask < n; mask <<= 1) {
    if (vr & mask) {
      const size_t blocks = static_cast<size_t>(std::min(mask, n - vr));
      return c.send((vr - mask + root) % n, 0, scratch.data(), blocks * block);
    }
    if (vr + mask < n) {
      const size_t blocks = static_cast<size_t>(std::min(mask, n - vr - mask));
      if (Status s = c.recv((vr + mask + root) % n, 0,
                            scratch.data() + static_cast<size_t>(mask) * block, blocks * block);
          !s.is_ok()) {
        return s;
      }
    }
  }
  auto* out = static_cast<std::byte*>(recv);
  for (int j = 0; j < n; ++j) {
    copy_bytes(out + static_cast<size_t>((j + root) % n) * block,
               scratch.data() + static_cast<size_t>(j) * block, block);
  }
  return Status::ok();
}

Status scatter_binomial(Channel& c, const void* send, void* recv, size_t block, int root) {
  const int n = c.size();
  const int vr = (c.rank() - root + n) % n;
  const size_t nb = static_cast<size_t>(n);
  Scratch scratch(nb * block);
  int mask = 1;
  if (vr == 0) {
    const auto* in = static_cast<const std::byte*>(send);
    for (int j = 0; j < n; ++j) {
      copy_bytes(scratch.data() + static_cast<size_t>(j) * block,
                 in + static_cast<size_t>((j + root) % n) * block, block);
    }
    while (mask < n) mask <<= 1;
  } else {
    for (; mask < n; mask <<= 1) {
      if (vr & mask) {
        const size_t blocks = static_cast<size_t>(std::min(mask, n - vr));
        if (Status s = c.recv((vr - mask + root) % n, 0, scratch.data(), blocks * block);
            !s.is_ok()) {
          return s;
        }
        break;
      }
    }
  }
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (vr + mask < n) {
      const size_t blocks = static_cast<size_t>(std::min(mask, n - vr - mask));
      if (Status s =
              c.post_send((vr + mask + root) % n, 0,
                          scratch.data() + static_cast<size_t>(mask) * block, blocks * block);
          !s.is_ok()) {
        return s;
      }
    }
  }
  if (Status s = c.wait(); !s.is_ok()) return s;
  if (recv != kInPlace && block > 0) copy_bytes(recv, scratch.data(), block);
  return Status::ok();
}

Status gatherv_linear(Channel& c, const void* send, size_t send_bytes, void* recv,
                      std::span<const size_t> bytes, std::span<const size_t> offsets, int root) {
  if (c.rank() != root) return c.send(root, 0, send, send_bytes);
  auto* out = static_cast<std::byte*>(recv);
  for (int r = 0; r < c.size(); ++r) {
    if (r == root) continue;
    const size_t i = static_cast<size_t>(r);
    if (Status s = c.post_recv(r, 0, out + offsets[i], bytes[i]); !s.is_ok()) return s;
  }
  const size_t me = static_cast<size_t>(root);
  if (send != kInPlace && bytes[me] > 0) std::memmove(out + offsets[me], send, bytes[me]);
  return c.wait();
}

Status scatterv_linear(Channel& c, const void* send, std::span<const size_t> bytes,
                       std::span<const size_t> offsets, void* recv, size_t recv_bytes, int root) {
  if (c.rank() != root) return c.recv(root, 0, recv, recv_bytes);
  const auto* in = static_cast<const std::byte*>(send);
  for (int r = 0; r < c.size(); ++r) {
    if (r == root) continue;
    const size_t i = static_cast<size_t>(r);
    if (Status s = c.post_send(r, 0, in + offsets[i], bytes[i]); !s.is_ok()) return s;
  }
  const size_t me = static_cast<size_t>(root);
  if (recv != kInPlace && bytes[me] > 0) std::memmove(recv, in + offsets[me], bytes[me]);
  return c.wait();
}

}  // namespace wv::coll::detail
