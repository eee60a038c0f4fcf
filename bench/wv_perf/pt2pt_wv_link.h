// Pt2ptLink over wv::Comm's tagged API (rank 0 <-> rank 1). Every call is bounded by the
// Comm's timeout (Comm::Options::timeout), so a dead peer ends the run with an error.
#pragma once

#include <vector>

#include "pt2pt_link.h"
#include "wv/comm.h"

namespace wv::perf {

class WvLink final : public Pt2ptLink {
 public:
  explicit WvLink(Comm& comm) : comm_(comm), peer_(1 - comm.rank()) { posted_.reserve(4096); }

  int rank() const override { return comm_.rank(); }
  Status send(const void* buffer, size_t length, int tag) override;
  Status recv(void* buffer, size_t length, int tag) override;
  Status post_send(const void* buffer, size_t length, int tag) override;
  Status post_recv(void* buffer, size_t length, int tag) override;
  Status wait_posted() override;

 private:
  Comm& comm_;
  int peer_;
  std::vector<transport::Request> posted_;
};

}  // namespace wv::perf
