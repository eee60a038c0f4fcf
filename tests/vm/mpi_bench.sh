#!/bin/bash
# Runs inside the tests/vm/run.sh guest when WV_VM_MPI_BENCH=1 (guest.sh calls it after the
# suites): wv_mpi_perf pt2pt between two ranks of the guest, over
#   wv-rxe   ob1 + btl/wv on the ibverbs provider, Soft-RoCE (rxe0)
#   ucx-rxe  pml/ucx on rxe0: Open MPI's verbs path here (btl/openib cannot use rxe; UCX needs
#            ud_verbs for wire-up and UCX_UD_ETH_DGID_CHECK=n on rxe: ../shared/notes/rdma-vm.md)
#   wv-siw   ob1 + btl/wv on SoftiWARP (siw0), where neither openib nor UCX runs
#   tcp      ob1 + btl/tcp over siw0's interface: the kernel TCP path siw itself rides on
# and prints the table with the ratios wv-rxe/ucx-rxe and wv-siw/tcp. Numbers under TCG are only
# comparable within one run; each configuration runs VM_MPI_ROUNDS times (default 3), in turn,
# and the table shows each cell's median round.
#
# Usage: mpi_bench.sh <build-dir> <out-file>
build="$1"
out="$2"
work="$(dirname "$out")/mpi-bench-raw"
rm -rf "$work" && mkdir -p "$work"
rounds="${VM_MPI_ROUNDS:-3}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
components="$(ls -d /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3):$build/lib/openmpi"
[ -f "$build/lib/openmpi/mca_btl_wv.so" ] || { echo "mpi_bench: $build has no mca_btl_wv.so"; exit 2; }

declare -A config=(
  [wv-rxe]="--mca pml ob1 --mca btl self,wv -x WV_PROVIDER=ibverbs -x WV_DEVICE=rxe0 -x WV_TRANSPORT_ADDRESS=10.77.0.1"
  [ucx-rxe]="--mca pml ucx --mca osc ucx -x UCX_NET_DEVICES=rxe0:1 -x UCX_TLS=rc_verbs,ud_verbs,self -x UCX_UD_ETH_DGID_CHECK=n"
  [wv-siw]="--mca pml ob1 --mca btl self,wv -x WV_PROVIDER=ibverbs -x WV_DEVICE=siw0 -x WV_TRANSPORT_ADDRESS=10.78.0.1"
  [tcp]="--mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include dummy1"
)
order=(wv-rxe ucx-rxe wv-siw tcp)

# mpi <name> <round> <wv_mpi_perf arguments...> -> JSON lines appended to $work/<name>.<round>.json
mpi() {
  local name="$1" round="$2"
  shift 2
  # shellcheck disable=SC2086  # the configuration is a list of words
  timeout 600 mpirun -n 2 --bind-to none --mca mca_base_component_path "$components" \
    --mca oob_tcp_if_include lo ${config[$name]} \
    "$build/bin/wv_mpi_perf" pt2pt --json --timeout 60 "$@" \
    >> "$work/$name.$round.json" 2>> "$work/$name.$round.log"
  local rc=$?
  [ $rc -eq 0 ] || { echo "mpi_bench: $name round $round ($*) exit $rc:"; tail -5 "$work/$name.$round.log"; }
}

for round in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    # Iterations per size so that a round stays within a few minutes under emulation (rxe moves
    # about 30 MB/s here); bandwidth runs size themselves, and a window of 8 keeps one round of
    # 16 MiB messages to 128 MiB.
    mpi "$name" "$round" --ops lat --sizes 8,4K --iterations 500 --warmup 50
    mpi "$name" "$round" --ops lat --sizes 64K --iterations 100 --warmup 10
    mpi "$name" "$round" --ops lat --sizes 1M --iterations 10 --warmup 2
    mpi "$name" "$round" --ops bw --sizes 64K,1M,16M --window 8
  done
done

# The median round per cell, as one JSON file per configuration for compare_pt2pt.py.
for name in "${order[@]}"; do
  cat "$work/$name".*.json 2>/dev/null | python3 -c '
import json, statistics, sys
cells = {}
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    if r.get("record") != "result":
        continue
    value = r["latency_us"]["median"] if r["op"] == "lat" else r["bandwidth_mbps"]
    cells.setdefault((r["op"], r["size"]), []).append(value)
for (op, size), values in cells.items():
    m = statistics.median(values)
    rec = {"record": "result", "op": op, "size": size}
    rec.update({"latency_us": {"median": m}} if op == "lat" else {"bandwidth_mbps": m})
    print(json.dumps(rec))
' > "$work/$name.median.json"
done
{
  echo "wv_mpi_perf pt2pt, 2 ranks in one guest ($(uname -r), $(nproc) CPUs, TCG), median of $rounds rounds"
  echo "latency: median one-way us (lower is better); bandwidth: MB/s; ratios A/B"
  for dev in rxe0 siw0; do
    echo "wv on $dev:"
    WV_DEVICE=$dev "$build/bin/wv_info" --protocols 2>&1 | sed -n '/^  ibverbs:/,/eager:/p'
  done
  python3 "$repo/bench/compare_pt2pt.py" \
    $(for name in "${order[@]}"; do echo "$name=$work/$name.median.json"; done) \
    --pair wv-rxe:ucx-rxe --pair wv-siw:tcp
} > "$out"
cat "$out"
