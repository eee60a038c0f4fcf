#!/usr/bin/env bash
# wv_info as a user meets it: valid JSON, and a clear error (exit 2, naming the variable) for
# an unknown WV_ parameter instead of silently ignoring it.
set -uo pipefail
info=${1:?usage: wv_info_test.sh PATH_TO_WV_INFO}
"$info" --json | python3 -m json.tool > /dev/null || { echo "FAIL: --json is not valid JSON"; exit 1; }
out=$(env WV_NO_SUCH_PARAMETER=1 "$info" 2>&1)
rc=$?
[ $rc -eq 2 ] || { echo "FAIL: unknown parameter exited $rc, expected 2: $out"; exit 1; }
grep -q WV_NO_SUCH_PARAMETER <<<"$out" || { echo "FAIL: error does not name the variable: $out"; exit 1; }
out=$(env WV_TCP_READ_DEPTH=lots "$info" 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q tcp_read_depth <<<"$out" || { echo "FAIL: bad value not reported: $out"; exit 1; }
echo "OK"
