#include "mpi_coll_link.h"

#include <mpi.h>

#include <string>

namespace wv::perf {

namespace {
Status check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return Status::ok();
  return Status(Errc::kIoError, std::string(call) + " failed (" + std::to_string(rc) + ")");
}
}  // namespace

MpiCollLink::MpiCollLink() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

Status MpiCollLink::run(CollKind kind, const CollShape& shape, float* send, float* recv) {
  const MPI_Comm w = MPI_COMM_WORLD;
  const int total = static_cast<int>(shape.total);
  const int per_rank = static_cast<int>(shape.per_rank);
  switch (kind) {
    case CollKind::kAllreduce:
      return check(MPI_Allreduce(send, recv, total, MPI_FLOAT, MPI_SUM, w), "MPI_Allreduce");
    case CollKind::kBcast:
      return check(MPI_Bcast(send, total, MPI_FLOAT, 0, w), "MPI_Bcast");
    case CollKind::kReduce:
      return check(MPI_Reduce(send, recv, total, MPI_FLOAT, MPI_SUM, 0, w), "MPI_Reduce");
    case CollKind::kAllgather:
      return check(MPI_Allgather(send, per_rank, MPI_FLOAT, recv, per_rank, MPI_FLOAT, w),
                   "MPI_Allgather");
    case CollKind::kReduceScatter:
      return check(MPI_Reduce_scatter_block(send, recv, per_rank, MPI_FLOAT, MPI_SUM, w),
                   "MPI_Reduce_scatter_block");
    case CollKind::kAlltoall:
      return check(MPI_Alltoall(send, per_rank, MPI_FLOAT, recv, per_rank, MPI_FLOAT, w),
                   "MPI_Alltoall");
    case CollKind::kGather:
      return check(MPI_Gather(send, per_rank, MPI_FLOAT, recv, per_rank, MPI_FLOAT, 0, w),
                   "MPI_Gather");
    case CollKind::kScatter:
      return check(MPI_Scatter(send, per_rank, MPI_FLOAT, recv, per_rank, MPI_FLOAT, 0, w),
                   "MPI_Scatter");
    case CollKind::kBarrier:
      return check(MPI_Barrier(w), "MPI_Barrier");
  }
  return Status::ok();
}

Status MpiCollLink::barrier() {
  return check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

Result<double> MpiCollLink::max(double value) {
  double out = 0;
  if (Status s = check(MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
                       "MPI_Allreduce");
      !s.is_ok()) {
    return s;
  }
  return out;
}

}  // namespace wv::perf
