#!/usr/bin/env bash
# wv_info as a user meets it: valid JSON, every device's transport, capabilities and
# limitations, and a clear error (exit 2, naming the variable) for
# an unknown WV_ parameter instead of silently ignoring it.
set -uo pipefail
info=${1:?usage: wv_info_test.sh PATH_TO_WV_INFO}
"$info" --json | python3 -m json.tool > /dev/null || { echo "FAIL: --json is not valid JSON"; exit 1; }
# Every device says its transport, capabilities and limitations; the software providers' devices
# follow the reference semantics, so they list no limitation but shm's one-sided reads (with CMA,
# a stopped target still serves reads: the limitation says when the suite must expect that).
"$info" --json | python3 -c '
import json, sys
providers = json.load(sys.stdin)["providers"]["list"]
devices = [(p["name"], d) for p in providers for d in p.get("devices", [])]
assert devices, "no device listed"
for provider, d in devices:
    for key in ("transport", "capabilities", "limitations"):
        assert key in d, provider + "/" + d["name"] + " has no " + key
    if provider in ("tcp", "shm", "hybrid"):
        allowed = [] if provider == "tcp" else ["reads_served_without_target"]
        assert all(l in allowed for l in d["limitations"]), provider + ": limitations " + str(d["limitations"])
' || { echo "FAIL: device transport/capabilities/limitations"; exit 1; }
out=$(env WV_NO_SUCH_PARAMETER=1 "$info" 2>&1)
rc=$?
[ $rc -eq 2 ] || { echo "FAIL: unknown parameter exited $rc, expected 2: $out"; exit 1; }
grep -q WV_NO_SUCH_PARAMETER <<<"$out" || { echo "FAIL: error does not name the variable: $out"; exit 1; }
out=$(env WV_TCP_READ_DEPTH=lots "$info" 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q tcp_read_depth <<<"$out" || { echo "FAIL: bad value not reported: $out"; exit 1; }
echo "OK"
