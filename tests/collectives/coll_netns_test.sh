#!/usr/bin/env bash
# Hierarchical collectives across real "hosts" on one machine: two network namespaces joined by
# a veth pair, each with its own host name (UTS namespace) and two ranks. wvrun runs in the first
# namespace, binds its store to that namespace's address and starts every rank through
# netns_agent.sh. coll_job must see 2 hosts, map a host segment on each, and pass every case
# (the hierarchical algorithms with several leaders per host, ranks on one host over shm, across
# hosts over TCP).
# Needs root (ip netns, unshare); exits 77 (ctest: skipped) with the reason otherwise.
# usage: coll_netns_test.sh WVRUN COLL_JOB
set -uo pipefail
wvrun=${1:?usage: coll_netns_test.sh WVRUN COLL_JOB}
prog=${2:?usage: coll_netns_test.sh WVRUN COLL_JOB}
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root to create network namespaces"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
unshare --uts true 2>/dev/null || skip "cannot create UTS namespaces here"

. "$here/../integration/netns_pair.sh"
a=wvcA$$ b=wvcB$$
out=$(mktemp)
NETNS_PAIR_CLEANUP='rm -f "$out"'
netns_pair "$a" "$b" 10.232.0 || skip "cannot create network namespaces here"

# More ranks than cores: blocking waits.
WV_TRANSPORT_PROGRESS=block timeout -k 5 300 ip netns exec "$a" "$wvrun" -n 4 -H "$a:2,$b:2" \
  --store-address 10.232.0.1 --launch-agent "$here/netns_agent.sh" --timeout 280 "$prog" \
  >"$out" 2>&1
rc=$?
ok=$(grep -c "coll ok" "$out")
if [ $rc -ne 0 ] || [ "$ok" -ne 4 ]; then
  echo "FAIL: coll_job across two network namespaces: exit $rc, $ok of 4 ranks ok"
  head -60 "$out"
  exit 1
fi
if ! grep -q "coll_job: 4 ranks, 2 hosts" "$out"; then
  echo "FAIL: the topology did not see two hosts"
  head -20 "$out"
  exit 1
fi
if ! grep -q "host segment: mapped" "$out"; then
  echo "FAIL: no host segment"
  grep "host segment" "$out"
  exit 1
fi
echo "OK: $(grep -m1 'coll ok' "$out" | sed 's/.*: //') per rank on 2 namespace hosts x 2 ranks"
