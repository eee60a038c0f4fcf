#!/bin/bash
# Runs inside the tests/vm/run.sh guest as its first process: sets up rxe0 and siw0 on dummy
# interfaces (rdma_cm cannot route over lo), runs the conformance suite against the ibverbs
# provider on each, leaves counts and the exit status in <cache>/run, and powers the guest off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
repo="$(cd "$(dirname "$0")/../.." && pwd)"

# Plain shell variables, never exported: WV_* in the environment is the configuration's.
# run.sh names its run directory on the kernel command line (wvrun=).
for arg in $(cat /proc/cmdline); do case "$arg" in wvrun=*) run="${arg#wvrun=}" ;; esac; done
. "${run:-$repo/build-vm/run}/env"

run="$WV_VM_CACHE/run"
finish() {
  echo "$1" > "$run/status"
  sync
  echo 1 > /proc/sys/kernel/sysrq
  echo b > /proc/sysrq-trigger  # -no-reboot turns the reboot into QEMU's exit
  sleep 10
}
hostname wv-vm 2>/dev/null
ip link set lo up
modprobe -a rdma_rxe ib_uverbs rdma_ucm dummy libcrc32c ib_core || { echo "modprobe failed"; finish 1; }
insmod "$WV_VM_CACHE/siw-$WV_VM_KVER.ko" || { echo "insmod siw failed"; finish 1; }
ip link add dummy0 type dummy && ip addr add 10.77.0.1/24 dev dummy0 && ip link set dummy0 up
ip link add dummy1 type dummy && ip addr add 10.78.0.1/24 dev dummy1 && ip link set dummy1 up
rdma link add rxe0 type rxe netdev dummy0 || { echo "rxe0 failed"; finish 1; }
rdma link add siw0 type siw netdev dummy1 || { echo "siw0 failed"; finish 1; }
ulimit -l unlimited
cd /tmp
if [ -n "$WV_VM_SCRIPT" ]; then  # debugging: a script of one's own instead of the suites
  bash "$WV_VM_SCRIPT" 2>&1 | tee "$run/script.log"
  finish "${PIPESTATUS[0]}"
fi
status=0
for pair in rxe0:10.77.0.1 siw0:10.78.0.1; do
  dev="${pair%%:*}"
  ip="${pair#*:}"
  echo "=== verbs conformance: ibverbs on $dev ($ip) ==="
  out="$run/conformance.$dev.log"
  WV_PROVIDER=ibverbs WV_DEVICE=$dev VERBS_CONFORMANCE_ADDRESS=$ip \
    timeout 900 "$WV_VM_BUILD/bin/verbs_conformance" \
    --gtest_filter="$WV_VM_FILTER" --gtest_color=no > "$out" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  grep -E '^\[ +(OK|FAILED|SKIPPED) +\]|Skipped|skipped|Failure|failed' "$out" | grep -v '^\[ +OK' | head -300
  ok=$(grep -cE '^\[ +OK +\]' "$out")
  failed=$(grep -cE '^\[ +FAILED +\] .* \([0-9]+ ms\)$' "$out")
  skipped=$(grep -cE '^\[ +SKIPPED +\] .* \([0-9]+ ms\)$' "$out")
  echo "$ok" > "$run/passed.$dev"
  echo "$failed" > "$run/failed.$dev"
  echo "$skipped" > "$run/skipped.$dev"
  echo "=== $dev: $ok passed, $failed failed, $skipped skipped (exit $rc) ==="
done
if [ -x "$WV_VM_BUILD/bin/wv_vm_interop" ]; then
  echo "=== interop: tcp provider <-> ibverbs on siw0 ==="
  timeout 120 "$WV_VM_BUILD/bin/wv_vm_interop" 10.78.0.1 > "$run/interop.log" 2>&1
  rc=$?
  cat "$run/interop.log"
  echo "=== interop exit $rc ==="
  # Counted as one test in the tier's summary.
  if [ $rc -eq 0 ]; then echo 1 > "$run/passed.interop"; echo 0 > "$run/failed.interop"
  else echo 0 > "$run/passed.interop"; echo 1 > "$run/failed.interop"; status=1; fi
fi
if [ -x "$WV_VM_BUILD/bin/wv_perf" ]; then
  # The out-of-band connection end to end in a tool: QP addresses over TCP on loopback, where
  # rdma_cm cannot route (counted as one test).
  echo "=== wv_perf verbs --out-of-band on rxe0 ==="
  timeout 120 "$WV_VM_BUILD/bin/wv_perf" verbs --provider ibverbs --device rxe0 --out-of-band \
    --ops send_lat,write_bw,read_bw --sizes 8,4096 --iterations 200 --timeout 20 \
    > "$run/oob_perf.log" 2>&1
  rc=$?
  grep -E "^# connection|^##|^ +[0-9]|wv_perf:" "$run/oob_perf.log"
  echo "=== wv_perf out of band exit $rc ==="
  if [ $rc -eq 0 ]; then echo 1 > "$run/passed.oob_perf"; echo 0 > "$run/failed.oob_perf"
  else echo 0 > "$run/passed.oob_perf"; echo 1 > "$run/failed.oob_perf"; status=1; fi
else
  echo "=== wv_perf out of band: skipped: $WV_VM_BUILD/bin/wv_perf is not built ==="
fi
if [ "${WV_VM_BENCH:-0}" = 1 ]; then
  # Measurements, not tests: the tier's status does not depend on them.
  echo "=== bench: wv_perf verbs vs perftest ==="
  VM_BENCH_REPEAT=$VM_BENCH_REPEAT VM_BENCH_SIZES=$VM_BENCH_SIZES \
    timeout 900 bash "$repo/tests/vm/bench.sh" "$WV_VM_BUILD" "$run/bench.txt" \
    rxe0:10.77.0.1 siw0:10.78.0.1 2>&1 | tee "$run/bench.log"
  echo "=== bench exit ${PIPESTATUS[0]} ==="
fi
if [ "${WV_VM_MPI_BENCH:-0}" = 1 ]; then
  echo "=== mpi bench: btl/wv on rxe0 and siw0 vs pml/ucx and btl/tcp ==="
  VM_MPI_ROUNDS=$VM_MPI_ROUNDS timeout 1800 bash "$repo/tests/vm/mpi_bench.sh" "$WV_VM_BUILD" \
    "$run/mpi_bench.txt" 2>&1 | tee "$run/mpi_bench.log"
  echo "=== mpi bench exit ${PIPESTATUS[0]} ==="
fi
finish $status
