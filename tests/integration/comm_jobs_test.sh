#!/usr/bin/env bash
# wv::Comm jobs under wvrun: 1, 2 and 4 ranks on each provider; every rank must report ok.
# usage: comm_jobs_test.sh WVRUN COMM_JOB PROVIDER...
set -uo pipefail
wvrun=${1:?usage: comm_jobs_test.sh WVRUN COMM_JOB PROVIDER...}
prog=${2:?usage: comm_jobs_test.sh WVRUN COMM_JOB PROVIDER...}
shift 2
failures=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for provider in "$@"; do
  for n in 1 2 4; do
    timeout -k 5 180 "$wvrun" -n "$n" --provider "$provider" --timeout 150 "$prog" >"$out" 2>&1
    rc=$?
    ok=$(grep -c "comm ok" "$out")
    if [ $rc -ne 0 ] || [ "$ok" -ne "$n" ]; then
      echo "FAIL: $provider -n $n: exit $rc, $ok of $n ranks ok"
      cat "$out"
      failures=$((failures + 1))
    else
      echo "ok: $provider -n $n"
    fi
  done
done
[ $failures -eq 0 ]
