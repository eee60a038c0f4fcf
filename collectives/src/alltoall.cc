#include <cstring>

#include "algorithms.h"
#include "scratch.h"
#include "wv/copy.h"

namespace wv::coll::detail {

// Bruck: ceil(log2 n) steps; in step k every block whose (rotated) index has bit k set moves
// 2^k ranks on. Blocks are copied (packed) each step, so it pays for small blocks only.
Status alltoall_bruck(Channel& c, const void* send_, void* recv_, size_t block) {
  const auto* send = static_cast<const std::byte*>(send_);
  auto* recv = static_cast<std::byte*>(recv_);
  const int n = c.size();
  const int rank = c.rank();
  const size_t nb = static_cast<size_t>(n);
  // rotated[i] = the block for rank + i.
  Scratch rotated(nb * block);
  for (int i = 0; i < n; ++i) {
    copy_bytes(rotated.data() + static_cast<size_t>(i) * block,
               send + static_cast<size_t>((rank + i) % n) * block, block);
  }
  Scratch packed(nb * block);
  Scratch incoming(nb * block);
  uint32_t step = 0;
  for (int distance = 1; distance < n; distance *= 2, ++step) {
    size_t moved = 0;
    for (int i = 1; i < n; ++i) {
      if (i & distance) {
        copy_bytes(packed.data() + moved * block, rotated.data() + static_cast<size_t>(i) * block,
                   block);
        ++moved;
      }
    }
    if (Status s = c.sendrecv((rank + distance) % n, packed.data(), moved * block,
                              (rank - distance + n) % n, incoming.data(), moved * block, step);
        !s.is_ok()) {
      return s;
    }
    size_t index = 0;
    for (int i = 1; i < n; ++i) {
      if (i & distance) {
        copy_bytes(rotated.data() + static_cast<size_t>(i) * block, incoming.data() + index * block,
                   block);
        ++index;
      }
    }
  }
  // Now rotated[i] came from rank - i.
  for (int i = 0; i < n; ++i) {
    copy_bytes(recv + static_cast<size_t>((rank - i + n) % n) * block,
               rotated.data() + static_cast<size_t>(i) * block, block);
  }
  return Status::ok();
}

// Pairwise exchange: step k sends to rank + k and receives from rank - k, one pair at a
// time so no rank is flooded; n steps, for large blocks.
Status alltoallv_pairwise(Channel& c, const void* send_, std::span<const size_t> send_bytes,
                          std::span<const size_t> send_offsets, void* recv_,
                          std::span<const size_t> recv_bytes,
                          std::span<const size_t> recv_offsets) {
  const auto* send = static_cast<const std::byte*>(send_);
  auto* recv = static_cast<std::byte*>(recv_);
  const int n = c.size();
  const int rank = c.rank();
  const size_t me = static_cast<size_t>(rank);
  if (recv_bytes[me] != send_bytes[me]) {
    return Status(Errc::kInvalidArgument,
                  "alltoallv: this rank sends itself " + std::to_string(send_bytes[me]) +
                      " bytes but expects " + std::to_string(recv_bytes[me]));
  }
  if (send_bytes[me] > 0)
    std::memmove(recv + recv_offsets[me], send + send_offsets[me], send_bytes[me]);
  for (int k = 1; k < n; ++k) {
    const size_t to = static_cast<size_t>((rank + k) % n);
    const size_t from = static_cast<size_t>((rank - k + n) % n);
    if (Status s = c.sendrecv(static_cast<int>(to), send + send_offsets[to], send_bytes[to],
                              static_cast<int>(from), recv + recv_offsets[from], recv_bytes[from],
                              static_cast<uint32_t>(k));
        !s.is_ok()) {
      return s;
    }
  }
  return Status::ok();
}

// Everything posted at once: fewest round trips, most unexpected traffic; for small n.
Status alltoallv_linear(Channel& c, const void* send_, std::span<const size_t> send_bytes,
                        std::span<const size_t> send_offsets, void* recv_,
                        std::span<const size_t> recv_bytes, std::span<const size_t> recv_offsets) {
  const auto* send = static_cast<const std::byte*>(send_);
  auto* recv = static_cast<std::byte*>(recv_);
  const int n = c.size();
  const int rank = c.rank();
  const size_t me = static_cast<size_t>(rank);
  if (recv_bytes[me] != send_bytes[me]) {
    return Status(Errc::kInvalidArgument,
                  "alltoallv: this rank sends itself " + std::to_string(send_bytes[me]) +
                      " bytes but expects " + std::to_string(recv_bytes[me]));
  }
  for (int k = 1; k < n; ++k) {
    const size_t from = static_cast<size_t>((rank - k + n) % n);
    if (Status s =
            c.post_recv(static_cast<int>(from), 0, recv + recv_offsets[from], recv_bytes[from]);
        !s.is_ok()) {
      return s;
    }
  }
  for (int k = 1; k < n; ++k) {
    const size_t to = static_cast<size_t>((rank + k) % n);
    if (Status s = c.post_send(static_cast<int>(to), 0, send + send_offsets[to], send_bytes[to]);
        !s.is_ok()) {
      return s;
    }
  }
  if (send_bytes[me] > 0)
    std::memmove(recv + recv_offsets[me], send + send_offsets[me], send_bytes[me]);
  return c.wait();
}

}  // namespace wv::coll::detail
