#!/usr/bin/env bash
# wvrun as a user meets it: jobs of 1, 2 and 4 ranks exchange through the store; a rank that
# fails (exit status, SIGKILL) ends the job with its status and is named; SIGINT and --timeout
# end a hanging job and leave no rank behind; a remote launch through a stand-in for ssh.
# usage: wvrun_test.sh WVRUN BOOTSTRAP_EXCHANGE
set -uo pipefail
wvrun=${1:?usage: wvrun_test.sh WVRUN BOOTSTRAP_EXCHANGE}
prog=$(realpath "${2:?usage: wvrun_test.sh WVRUN BOOTSTRAP_EXCHANGE}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
failures=0
# A private name for the program, so that "is any rank still running" looks at this test's
# processes only.
marked="$work/bx-$$-$RANDOM"
ln -s "$prog" "$marked"

cleanup() {
  local pids
  pids=$(pgrep -f "$marked")  # only this test's ranks (unique path), should any be left
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
leftovers() { pgrep -f "$marked" >/dev/null; }
# Runs wvrun bounded by coreutils timeout so a broken wvrun fails the test instead of hanging it.
run() { timeout -k 5 120 "$wvrun" "$@" >"$work/out" 2>"$work/err"; }

for n in 1 2 4; do
  run -n "$n" "$marked" --expect-kind wvrun
  rc=$?
  ok=$(grep -c "exchange ok" "$work/out")
  [ $rc -eq 0 ] && [ "$ok" -eq "$n" ] || fail "-n $n: exit $rc, $ok of $n ranks ok: $(cat "$work/err")"
done

run -n 2 --tag-output "$marked"
grep -q '^\[0\] rank 0 of 2' "$work/out" && grep -q '^\[1\] rank 1 of 2' "$work/out" ||
  fail "--tag-output did not prefix lines: $(cat "$work/out")"

# Rank 1 exits 3 while the others hang: the job ends with 3, rank 1 is named, nobody is left.
run -n 3 --grace 2 "$marked" --exit-rank 1 --exit-code 3 --hang
rc=$?
[ $rc -eq 3 ] || fail "a rank exiting 3: wvrun exited $rc, expected 3"
grep -Eq 'rank 1 \(pid [0-9]+\) exited with status 3' "$work/err" ||
  fail "the failed rank is not named: $(cat "$work/err")"
leftovers && fail "ranks left running after a rank failed"

run -n 2 --grace 2 "$marked" --kill-rank 1 --hang
rc=$?
[ $rc -eq 137 ] || fail "a rank killed by SIGKILL: wvrun exited $rc, expected 137"
grep -Eq 'rank 1 \(pid [0-9]+\) killed by signal 9' "$work/err" ||
  fail "the killed rank is not reported: $(cat "$work/err")"
leftovers && fail "ranks left running after a rank was killed"

# Ctrl-C: SIGINT to wvrun alone (as the terminal would, since the ranks have their own group).
"$wvrun" -n 2 --grace 2 "$marked" --hang >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 300); do
  [ "$(grep -c '^ready' "$work/out")" -eq 2 ] && break
  sleep 0.1
done
[ "$(grep -c '^ready' "$work/out")" -eq 2 ] || fail "the hanging job did not start: $(cat "$work/err")"
kill -INT $pid
for _ in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
  fail "wvrun still running 30 s after SIGINT"
  kill -KILL $pid
fi
wait $pid
rc=$?
[ $rc -eq 130 ] || fail "SIGINT: wvrun exited $rc, expected 130"
sleep 0.2
leftovers && fail "ranks left running after SIGINT to wvrun"

run -n 2 --timeout 2 --grace 2 "$marked" --hang
rc=$?
[ $rc -eq 124 ] || fail "--timeout: wvrun exited $rc, expected 124"
grep -q 'timeout' "$work/err" || fail "--timeout not reported: $(cat "$work/err")"
leftovers && fail "ranks left running after --timeout"

run -n 1 "$work/no-such-program"
[ $? -eq 127 ] || fail "a missing program should exit 127"
run -n 2 -H "localhost:0" "$marked"
[ $? -eq 2 ] || fail "a host with 0 slots should be a usage error (2)"

# Ranks on "another host" go through the launch agent with their environment on its command line.
run -n 3 -H "otherhost-$$:2,localhost:1" --store-address 127.0.0.1 \
  --launch-agent "$here/fake_ssh.sh" "$marked" --expect-kind wvrun
rc=$?
ok=$(grep -c "exchange ok" "$work/out")
[ $rc -eq 0 ] && [ "$ok" -eq 3 ] || fail "remote launch: exit $rc, $ok of 3 ranks ok: $(cat "$work/err")"
grep -q 'rank 1 of 3 (wvrun, local 1 of 2)' "$work/out" || fail "remote local ranks wrong: $(cat "$work/out")"

if [ $failures -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "OK"
