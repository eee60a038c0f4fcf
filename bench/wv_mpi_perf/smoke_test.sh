#!/bin/sh
# ctest smoke test of wv_mpi_perf: one short pt2pt run and one short rma run under mpirun on
# shared memory (pml ob1, btl self,vader). Exits 77 (ctest SKIP) with the reason when there is
# no usable mpirun; any failure of the run itself fails the test.
# Usage: smoke_test.sh WV_MPI_PERF [MPIRUN]
set -u
bench=$1
mpirun=${2:-}
if [ -z "$mpirun" ] || [ ! -x "$mpirun" ]; then
  mpirun=$(command -v mpirun || true)
fi
if [ -z "$mpirun" ]; then
  echo "SKIP: no mpirun found (install openmpi-bin, see scripts/install-deps.sh)"
  exit 77
fi
if ! "$mpirun" --version >/dev/null 2>&1; then
  echo "SKIP: $mpirun --version fails; MPI is not usable here"
  exit 77
fi
# Open MPI refuses root without these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
set -ex
timeout 120 "$mpirun" -n 2 --oversubscribe --mca pml ob1 --mca btl self,vader \
  "$bench" pt2pt --sizes 0,8,4K,1M --iterations 20 --warmup 2 --timeout 30
# One-sided gets while the target computes (osc rdma over the same btl).
exec timeout 120 "$mpirun" -n 2 --oversubscribe --mca pml ob1 --mca btl self,vader --mca osc rdma \
  "$bench" rma --sizes 8,64K --iterations 20 --warmup 2 --busy-slice-ms 1 --timeout 30
