// CollLink over MPI collectives on MPI_COMM_WORLD (float, MPI_SUM, root 0), so Open MPI's
// coll/tuned and coll/han print the same table beside `wv_perf coll`.
#pragma once

#include "coll_link.h"

namespace wv::perf {

class MpiCollLink final : public CollLink {
 public:
  MpiCollLink();
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status run(CollKind kind, const CollShape& shape, float* send, float* recv) override;
  Status barrier() override;
  Result<double> max(double value) override;
  std::string algorithm(CollKind, const CollShape&) const override { return ""; }

 private:
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace wv::perf
