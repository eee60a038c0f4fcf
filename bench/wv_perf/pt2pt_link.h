// What the pt2pt driver (pt2pt_driver.h) needs from a messaging library between exactly two
// ranks: blocking send/receive and a set of posted non-blocking operations completed together.
// wv's tagged API (pt2pt_wv_link.h) and MPI (bench/wv_mpi_perf) implement it, so both run the
// very same loops and differ only in the calls underneath.
#pragma once

#include <cstddef>

#include "wv/result.h"

namespace wv::perf {

class Pt2ptLink {
 public:
  virtual ~Pt2ptLink() = default;

  // 0 or 1; the peer is the other one.
  virtual int rank() const = 0;
  // Blocking, standard mode: done when `buffer` may be reused. Bounded by the link's timeout.
  virtual Status send(const void* buffer, size_t length, int tag) = 0;
  // Blocking; the message must fit `length`.
  virtual Status recv(void* buffer, size_t length, int tag) = 0;
  // Non-blocking; the operation joins the posted set that wait_posted() completes.
  virtual Status post_send(const void* buffer, size_t length, int tag) = 0;
  virtual Status post_recv(void* buffer, size_t length, int tag) = 0;
  // Completes every posted operation (bounded by the link's timeout) and empties the set.
  virtual Status wait_posted() = 0;
};

}  // namespace wv::perf
