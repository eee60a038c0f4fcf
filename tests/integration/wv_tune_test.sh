#!/usr/bin/env bash
# wv_tune as a user runs it: a short tuning run on 2 ranks writes a table that wv_info loads
# and shows (rules for exactly 2 processes), --merge keeps another shape's rules, and bad
# arguments or an unwritable --out fail on every rank with a message instead of measuring.
# usage: wv_tune_test.sh WVRUN WV_TUNE WV_INFO
set -uo pipefail
wvrun=${1:?usage: wv_tune_test.sh WVRUN WV_TUNE WV_INFO}
tune=${2:?usage: wv_tune_test.sh WVRUN WV_TUNE WV_INFO}
info=${3:?usage: wv_tune_test.sh WVRUN WV_TUNE WV_INFO}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

timeout -k 5 60 "$wvrun" -n 2 --timeout 50 "$tune" --sizes 8,4096 \
  --collectives allreduce,bcast,barrier --iterations 5 --out "$tmp/t.json" >"$tmp/out" 2>&1
rc=$?
[ $rc -eq 0 ] || { cat "$tmp/out"; fail "tuning run exited $rc"; }
grep -q -- "-> " "$tmp/out" || { cat "$tmp/out"; fail "no winners printed"; }
[ -z "$(ls "$tmp" | grep '\.tmp\.')" ] || fail "temporary file left behind: $(ls "$tmp")"
python3 - "$tmp/t.json" <<'PY' || fail "table content: $(cat "$tmp/t.json")"
import json, sys
table = json.load(open(sys.argv[1]))
assert sorted(table) == ["allreduce", "barrier", "bcast"], sorted(table)
for name, rules in table.items():
    assert rules, name
    for r in rules:
        assert r["min_procs"] == 2 and r["max_procs"] == 2, r
        assert r["min_hosts"] == 1 and r["max_hosts"] == 1, r
    assert rules[0].get("min_bytes", 0) == 0, rules
    assert "max_bytes" not in rules[-1], rules
assert len(table["barrier"]) == 1
PY

shown=$(WV_COLLECTIVES_TABLE="$tmp/t.json" "$info" --collectives 2>&1) || fail "wv_info: $shown"
grep -q "decision table: $tmp/t.json" <<<"$shown" || fail "wv_info does not show the file: $shown"
grep -E -q "^  allreduce +.*procs 2 hosts 1 -> " <<<"$shown" || fail "no tuned allreduce rule: $shown"
grep -E -q "^  barrier +procs 2 hosts 1 -> " <<<"$shown" || fail "no tuned barrier rule: $shown"

# --merge: a 4-rank rule of the old table stays, after the new 2-rank rules.
cat >"$tmp/old.json" <<'JSON'
{"allreduce": [{"min_procs": 4, "max_procs": 4, "algorithm": "ring"},
               {"algorithm": "rabenseifner"}]}
JSON
timeout -k 5 60 "$wvrun" -n 2 --timeout 50 "$tune" --sizes 8 --collectives allreduce \
  --iterations 3 --merge "$tmp/old.json" --out "$tmp/merged.json" >"$tmp/out" 2>&1 \
  || { cat "$tmp/out"; fail "merge run failed"; }
python3 - "$tmp/merged.json" <<'PY' || fail "merged table: $(cat "$tmp/merged.json")"
import json, sys
rules = json.load(open(sys.argv[1]))["allreduce"]
assert rules[0]["min_procs"] == 2, rules
assert rules[-2] == {"min_procs": 4, "max_procs": 4, "algorithm": "ring"}, rules
assert rules[-1] == {"algorithm": "rabenseifner"}, rules
PY

# An unwritable --out: every rank exits non-zero before measuring, with a message.
mkdir "$tmp/ro" && chmod 555 "$tmp/ro"
out=$(timeout -k 5 30 "$wvrun" -n 2 --timeout 25 "$tune" --sizes 8 --collectives barrier \
  --out "$tmp/ro/t.json" 2>&1)
rc=$?
if [ -w "$tmp/ro" ]; then
  echo "note: running as root, the read-only directory is writable; using a missing one"
  out=$(timeout -k 5 30 "$wvrun" -n 2 --timeout 25 "$tune" --sizes 8 --collectives barrier \
    --out "$tmp/missing/t.json" 2>&1)
  rc=$?
fi
[ $rc -ne 0 ] || fail "unwritable --out exited 0: $out"
grep -q -- "--out: cannot write" <<<"$out" || fail "no clear message for an unwritable --out: $out"
grep -q "barrier" <<<"$out" && fail "measured despite the unwritable --out: $out"

# Bad arguments: exit 2 with a message.
out=$("$tune" --out "$tmp/x.json" --collectives allreduce,nonsense 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "unknown collective 'nonsense'" <<<"$out" || fail "bad collective: $rc $out"
out=$("$tune" --out "$tmp/x.json" --sizes 8,lots 2>&1)
rc=$?
[ $rc -eq 2 ] && grep -q "bad size 'lots'" <<<"$out" || fail "bad size: $rc $out"
echo "OK"
