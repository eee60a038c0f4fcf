#!/usr/bin/env bash
# Collectives under wvrun: coll_job with 1-8 ranks on shm (a few on tcp), and as virtual hosts
# (WV_TOPOLOGY_FAKE_HOSTS) so the hierarchical algorithms have more than one host. Runs with
# more ranks than cores use blocking progress. Every rank must print "coll ok".
# usage: coll_jobs_test.sh WVRUN COLL_JOB
set -uo pipefail
wvrun=${1:?usage: coll_jobs_test.sh WVRUN COLL_JOB}
prog=${2:?usage: coll_jobs_test.sh WVRUN COLL_JOB}
cores=$(nproc)
failures=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Virtual hosts: 4/2 and 8/2 are hosts of one size (the hierarchical allgather's and
# allreduce's rank-i-of-every-host steps), 5/2 and 7/3 are not (one leader per host), 3/3 has
# one rank per host.
# provider ranks fake_hosts [segment]: the host segment (collectives_shared_memory) is on
# unless the fourth word says off; then shared_memory and hierarchical go through the transport.
# "pull": large allgather/alltoall blocks read straight from the peers (collectives_pull=true).
# "cyclic": ranks dealt round-robin to the virtual hosts (topology_fake_layout=cyclic), so no
# host's ranks are adjacent in rank order (blocks placed by world rank, leaders not rank 0..).
# "niclast": each host's network device declared near its highest rank (topology_fake_nic=last),
# so every host's leader is its highest rank and the host groups are not in rank order; on one
# host ("shm 3 0 niclast") the job must keep rank order, which the whole-job segment relies on.
# "stream": a 256 KiB cache assumed (collectives_stream_cache), so the large tests' outputs are
# written with non-temporal stores.
configs=(
  "shm 1 0" "shm 2 0" "shm 3 0" "shm 4 0" "shm 5 0" "shm 6 0" "shm 7 0" "shm 8 0"
  "shm 4 2" "shm 5 2" "shm 7 3" "shm 8 2" "shm 3 3"
  "shm 3 0 off" "shm 4 2 off" "shm 5 2 off" "shm 4 0 pull" "shm 3 0 pull"
  "shm 4 2 cyclic" "shm 5 2 cyclic" "shm 7 3 cyclic" "shm 4 2 niclast" "shm 7 3 niclast"
  "shm 3 0 niclast"
  "shm 2 0 stream" "shm 4 2 stream"
  "tcp 2 0" "tcp 3 2"
)
for config in "${configs[@]}"; do
  read -r provider n hosts segment <<<"$config"
  shared_memory=true pull=false layout=block nic=none stream_cache=0
  [ "${segment:-on}" = off ] && shared_memory=false
  [ "${segment:-on}" = pull ] && pull=true
  [ "${segment:-on}" = cyclic ] && layout=cyclic
  [ "${segment:-on}" = niclast ] && nic=last
  [ "${segment:-on}" = stream ] && stream_cache=256K
  progress=hybrid
  [ "$n" -gt "$cores" ] && progress=block
  start=$(date +%s)
  WV_TRANSPORT_PROGRESS=$progress WV_TOPOLOGY_FAKE_HOSTS=$hosts WV_TOPOLOGY_FAKE_LAYOUT=$layout \
    WV_TOPOLOGY_FAKE_NIC=$nic WV_COLLECTIVES_SHARED_MEMORY=$shared_memory WV_COLLECTIVES_PULL=$pull \
    WV_COLLECTIVES_STREAM_CACHE=$stream_cache \
    timeout -k 5 300 "$wvrun" -n "$n" --provider "$provider" --timeout 280 "$prog" >"$out" 2>&1
  rc=$?
  ok=$(grep -c "coll ok" "$out")
  label="$provider -n $n fake_hosts=$hosts $layout nic=$nic ($progress, host segment $shared_memory, pull $pull, stream cache $stream_cache)"
  if [ $rc -ne 0 ] || [ "$ok" -ne "$n" ]; then
    echo "FAIL: $label: exit $rc, $ok of $n ranks ok"
    head -60 "$out"
    failures=$((failures + 1))
  else
    echo "ok: $label: $(grep -m1 'coll ok' "$out" | sed 's/.*: //') per rank, $(($(date +%s) - start)) s"
  fi
done
# A rank whose process ends while its host's other rank waits on the host segment: the wait
# ends with kDisconnected at once (coll_job prints "vanished ok"), not at the step timeout.
WV_TRANSPORT_PROGRESS=hybrid timeout -k 5 60 "$wvrun" -n 2 --provider shm --timeout 50 "$prog" \
  vanished >"$out" 2>&1
rc=$?
if [ $rc -ne 0 ] || ! grep -q "vanished ok" "$out"; then
  echo "FAIL: vanished peer: exit $rc"
  head -20 "$out"
  failures=$((failures + 1))
else
  echo "ok: vanished peer: $(grep -m1 'vanished ok' "$out" | sed 's/.*: //')"
fi
# No segment to be had (/dev/shm read-only in a private mount namespace; a bind remount, which
# leaves the host's tmpfs alone): every rank goes on without it, says why, and every collective
# still passes through the transport.
if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then
  WV_TRANSPORT_PROGRESS=block timeout -k 5 300 unshare -m sh -c \
    'mount --make-rprivate / && mount -o remount,bind,ro /dev/shm && exec "$@"' sh \
    "$wvrun" -n 3 --provider shm --timeout 280 "$prog" >"$out" 2>&1
  rc=$?
  ok=$(grep -c "coll ok" "$out")
  if [ $rc -ne 0 ] || [ "$ok" -ne 3 ] || ! grep -q "host segment: shm_open" "$out"; then
    echo "FAIL: read-only /dev/shm: exit $rc, $ok of 3 ranks ok"
    head -30 "$out"
    failures=$((failures + 1))
  else
    echo "ok: read-only /dev/shm: $(grep -m1 'host segment:' "$out")"
  fi
else
  echo "SKIP: read-only /dev/shm case: needs root and unshare -m"
fi
[ $failures -eq 0 ]
