#!/usr/bin/env bash
# wv::Comm jobs started by Open MPI's mpirun: the bootstrap goes through PMIx, the traffic
# through wv. Skips (exit 77) with the reason when mpirun or PMIx support is missing.
# usage: comm_mpirun_test.sh COMM_JOB HAVE_PMIX PROVIDER...
set -uo pipefail
prog=${1:?usage: comm_mpirun_test.sh COMM_JOB HAVE_PMIX PROVIDER...}
have_pmix=${2:-}
shift 2
case "$have_pmix" in
  1|ON|TRUE|YES|on|true|yes) ;;
  *) echo "SKIP: wv was built without PMIx (libpmix-dev not found by pkg-config)"; exit 77 ;;
esac
mpirun=$(command -v mpirun) || { echo "SKIP: mpirun (openmpi-bin) is not installed"; exit 77; }
args=(--oversubscribe)
if [ "$(id -u)" -eq 0 ]; then
  args+=(--allow-run-as-root)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/pmix_lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
failures=0
for provider in "$@"; do
  for n in 2 3; do
    out=$(timeout -k 5 150 "$mpirun" "${args[@]}" -n "$n" -x WV_PROVIDER="$provider" "$prog" 2>&1)
    rc=$?
    ok=$(grep -c "comm ok" <<<"$out")
    if [ $rc -ne 0 ] || [ "$ok" -ne "$n" ]; then
      echo "FAIL: mpirun -n $n, provider $provider: exit $rc, $ok of $n ranks ok"
      echo "$out"
      failures=$((failures + 1))
    else
      echo "ok: mpirun -n $n, provider $provider"
    fi
  done
done
[ $failures -eq 0 ]
