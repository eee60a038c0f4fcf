#!/usr/bin/env bash
# Two "hosts" on one machine: network namespaces joined by a veth pair. The tcp provider must
# connect, move data and report sane numbers across them, as it would across machines.
# Needs root (ip netns); exits 77 (ctest: skipped) with the reason otherwise.
set -euo pipefail
perf=${1:?usage: netns_test.sh PATH_TO_WV_PERF}
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"

suffix=$$
a=wvA$suffix b=wvB$suffix
cleanup() {
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$a" 2>/dev/null || skip "cannot create network namespaces here"
ip netns add "$b"
ip link add "va$suffix" type veth peer name "vb$suffix"
ip link set "va$suffix" netns "$a"
ip link set "vb$suffix" netns "$b"
ip -n "$a" addr add 10.231.0.1/24 dev "va$suffix"
ip -n "$b" addr add 10.231.0.2/24 dev "vb$suffix"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "va$suffix" up
ip -n "$b" link set "vb$suffix" up

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
