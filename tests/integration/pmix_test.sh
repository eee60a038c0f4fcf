#!/usr/bin/env bash
# The PMIx path of Bootstrap: the same exchange program started by Open MPI's mpirun, which
# serves PMIx to its processes. Skips (exit 77) with the reason when mpirun or PMIx support is
# missing, so a machine without them never reports a silent pass.
# usage: pmix_test.sh BOOTSTRAP_EXCHANGE HAVE_PMIX
set -uo pipefail
prog=${1:?usage: pmix_test.sh BOOTSTRAP_EXCHANGE HAVE_PMIX}
have_pmix=${2:-}
case "$have_pmix" in
  1|ON|TRUE|YES|on|true|yes) ;;
  *) echo "SKIP: wv was built without PMIx (libpmix-dev not found by pkg-config)"; exit 77 ;;
esac
mpirun=$(command -v mpirun) || { echo "SKIP: mpirun (openmpi-bin) is not installed"; exit 77; }
args=(-n 2 --oversubscribe)
if [ "$(id -u)" -eq 0 ]; then
  args+=(--allow-run-as-root)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Under ASan, libpmix's own start-up leaks must not fail the job (see pmix_lsan.supp).
# libpmix has no frame pointers, so the fast unwinder would cut its stacks before the frames the
# suppressions name.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/pmix_lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
out=$(timeout -k 5 120 "$mpirun" "${args[@]}" "$prog" --expect-kind pmix 2>&1)
rc=$?
echo "$out"
ok=$(grep -c "exchange ok" <<<"$out")
if [ $rc -ne 0 ] || [ "$ok" -ne 2 ]; then
  echo "FAIL: mpirun exited $rc, $ok of 2 ranks ok"
  exit 1
fi
echo "OK"
