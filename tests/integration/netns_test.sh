#!/usr/bin/env bash
# Two "hosts" on one machine: network namespaces joined by a veth pair. The tcp provider must
# connect, move data and report sane numbers across them, as it would across machines.
# Needs root (ip netns); exits 77 (ctest: skipped) with the reason otherwise.
set -euo pipefail
perf=${1:?usage: netns_test.sh PATH_TO_WV_PERF}
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"

. "$(dirname "$0")/netns_pair.sh"
a=wvA$$ b=wvB$$
netns_pair "$a" "$b" 10.231.0 || skip "cannot create network namespaces here"

export WV_PROVIDER=tcp
out=$(mktemp)
ip netns exec "$a" timeout 120 "$perf" verbs --server --bind 10.231.0.1:18515 --timeout 30 &
server=$!
sleep 0.5
status=0
ip netns exec "$b" timeout 120 "$perf" verbs --client 10.231.0.1:18515 --sizes 8,65536 \
  --ops send_lat,write_bw,read_bw --iterations 200 --timeout 30 --json > "$out" || status=$?
wait "$server" || status=$?
if [ $status -ne 0 ]; then
  echo "FAIL: wv_perf across namespaces exited with $status"
  cat "$out"
  exit 1
fi
# Every operation and size must have produced a record with a positive result.
python3 - "$out" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
ops = {(r.get("op"), r.get("size")) for r in records if r.get("op") in ("send_lat", "write_bw", "read_bw")}
want = {(op, size) for op in ("send_lat", "write_bw", "read_bw") for size in (8, 65536)}
missing = want - ops
if missing:
    sys.exit(f"FAIL: missing results {sorted(missing)}")
for r in records:
    if r.get("op") == "send_lat" and not r["latency_us"]["median"] > 0:
        sys.exit(f"FAIL: bad latency {r}")
    if r.get("op") in ("write_bw", "read_bw") and not r["bandwidth_mbps"] > 0:
        sys.exit(f"FAIL: bad bandwidth {r}")
print(f"OK: {len(records)} records across network namespaces")
PY
