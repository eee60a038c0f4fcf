#!/bin/bash
# Runs inside the tests/vm/run.sh guest when WV_VM_BENCH=1 (guest.sh calls it after the suites):
# wv_perf verbs (ibverbs provider) beside perftest on rxe0 and siw0, side by side in one guest
# run, and prints a table with the ratio wv / perftest per size. Numbers under TCG emulation are
# noisy and only comparable within one run (/work/shared/notes/rdma-vm.md).
#
# Usage: bench.sh <build-dir> <out-file> <dev:ip>...   (VM_BENCH_REPEAT rounds, default 5;
# VM_BENCH_SIZES, default 8,4096,65536; not WV_*, which wv_perf would take for its own
# configuration)
# Each cell shows both sides' best round (lowest latency, highest bandwidth) and their median
# round: a guest whose vCPUs the host time-slices (a busy host) turns single runs into a lottery
# of scheduler-length stalls, which the best hides and the median shows. Every round's numbers and the tools' logs stay in <out-dir>/bench-raw.
# Pairs: wv send_lat / ib_send_lat (median half round trip, us; ratio < 1 is wv faster),
#        wv write_bw / ib_write_bw, wv read_bw / ib_read_bw (MB/s = 10^6 B/s; from perftest's
#        message rate x size, which keeps its precision at 8 B; ratio > 1 is wv faster). perftest runs over rdma_cm (-R; siw needs it),
#        one server/client pair per size; wv_perf runs one --server/--client pair per device
#        (its default mode connects on loopback, where rdma_cm cannot route).
build="$1"
out="$2"
shift 2
IFS=, read -r -a sizes <<<"${VM_BENCH_SIZES:-8,4096,65536}"
lat_iters=1000
bw_iters=500
repeat="${VM_BENCH_REPEAT:-5}"
work="$(dirname "$out")/bench-raw"
rm -rf "$work" && mkdir -p "$work"
port=18600

# perftest <tool> <dev> <ip> <size> <iters> -> prints the client's result line
perftest() {
  local tool="$1" dev="$2" ip="$3" size="$4" iters="$5"
  port=$((port + 1))
  local log="$work/$tool.$dev.$size.$round"
  timeout 60 "$tool" -d "$dev" -R -F -s "$size" -n "$iters" -p "$port" > "$log.server" 2>&1 &
  local server=$!
  local line="" attempt
  # The server needs a moment to listen (process start is slow under emulation): retry.
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    sleep 0.5
    timeout 60 "$tool" -d "$dev" -R -F -s "$size" -n "$iters" -p "$port" "$ip" \
      > "$log.client" 2>&1
    line="$(awk -v s="$size" '$1 == s && NF >= 4 {print; exit}' "$log.client")"
    [ -n "$line" ] && break
    kill -0 "$server" 2>/dev/null || break
  done
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null
  if [ -z "$line" ]; then
    echo "bench: $tool on $dev at $size bytes gave no result:" >&2
    tail -5 "$log.client" >&2
  fi
  echo "$line"
}

# wvperf <dev> <ip> -> JSON result records in $work/wv.<dev>.<round>.json
wvperf() {
  local dev="$1" ip="$2"
  port=$((port + 1))
  timeout 300 "$build/bin/wv_perf" verbs --provider ibverbs --device "$dev" --server \
    --bind "$ip:$port" > "$work/wv-server.$dev.$round.log" 2>&1 &
  local server=$! attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    sleep 0.5
    grep -q "listening on" "$work/wv-server.$dev.$round.log" && break
  done
  timeout 300 "$build/bin/wv_perf" verbs --provider ibverbs --device "$dev" --client "$ip:$port" \
    --ops send_lat,write_bw,read_bw --sizes "$(IFS=,; echo "${sizes[*]}")" \
    --iterations "$lat_iters" --timeout 30 --json > "$work/wv.$dev.$round.json" 2> "$work/wv-client.$dev.$round.log"
  local rc=$?
  wait "$server" 2>/dev/null
  if [ $rc -ne 0 ]; then
    echo "bench: wv_perf on $dev failed (exit $rc):" >&2
    cat "$work/wv-client.$dev.$round.log" "$work/wv-server.$dev.$round.log" >&2
  fi
}

# wv_value <dev> <op> <size> -> median latency (us) or bandwidth (MB/s) of this round
wv_value() {
  jq -r --arg op "$2" --argjson size "$3" \
    'select(.record == "result" and .op == $op and .size == $size)
     | if .latency_us then .latency_us.median else .bandwidth_mbps end' \
    "$work/wv.$1.$round.json" 2>/dev/null | head -1
}

# Every round's value per cell: "<dev> <op> <size> <side> <value>" lines in $work/values.
for round in $(seq 1 "$repeat"); do
  for pair in "$@"; do
    dev="${pair%%:*}"
    ip="${pair#*:}"
    wvperf "$dev" "$ip"
    for spec in send_lat:ib_send_lat write_bw:ib_write_bw read_bw:ib_read_bw; do
      op="${spec%%:*}"
      tool="${spec#*:}"
      for size in "${sizes[@]}"; do
        if [ "$op" = send_lat ]; then
          # columns: bytes iterations t_min t_max t_typical ...
          pt="$(perftest "$tool" "$dev" "$ip" "$size" "$lat_iters" | awk '{print $5}')"
        else
          # columns: bytes iterations BW_peak BW_average (MiB/s, two decimals: 0.03 at 8 B)
          # MsgRate (Mpps, six decimals): the rate times the size is the bandwidth in MB/s
          pt="$(perftest "$tool" "$dev" "$ip" "$size" "$bw_iters" | awk -v s="$size" '{print $5 * s}')"
        fi
        echo "$dev $op $size wv $(wv_value "$dev" "$op" "$size")" >> "$work/values"
        echo "$dev $op $size pt $pt" >> "$work/values"
      done
    done
  done
done

{
  echo "wv_perf verbs (ibverbs provider) vs perftest, one guest run ($(uname -r), $(nproc) CPUs)"
  echo "$repeat rounds per cell, each side's best and its median round; latency: median half round"
  echo "trip in us (perftest t_typical), wv/pt < 1 = wv faster; bandwidth: MB/s = 10^6 B/s (perftest:"
  echo "message rate x size), wv/pt > 1 = wv faster; rounds: every round's value, wv | perftest"
  printf '%-6s %-9s %6s %9s %9s %6s %9s %9s %6s   %s\n' device test bytes wv-best pt-best ratio \
    wv-median pt-median ratio rounds
  for pair in "$@"; do
    dev="${pair%%:*}"
    for op in send_lat write_bw read_bw; do
      for size in "${sizes[@]}"; do
        awk -v d="$dev" -v o="$op" -v s="$size" '
          function num(x) { return x ~ /^[0-9.]+(e[-+]?[0-9]+)?$/ && x + 0 > 0 }
          function best(side,   i, b) {
            b = ""
            for (i = 1; i <= n[side]; i++) {
              if (!num(v[side, i])) continue
              if (b == "" || (o ~ /lat/ ? v[side, i] + 0 < b + 0 : v[side, i] + 0 > b + 0)) b = v[side, i]
            }
            return b
          }
          function median(side,   i, m, x, j, t) {
            m = 0
            for (i = 1; i <= n[side]; i++) if (num(v[side, i])) x[++m] = v[side, i] + 0
            for (i = 2; i <= m; i++) for (j = i; j > 1 && x[j - 1] > x[j]; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t }
            if (m == 0) return ""
            return m % 2 ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
          }
          function ratio(a, b) { return (a == "" || b == "") ? "-" : sprintf("%.2f", a / b) }
          function fmt(x) { return x == "" ? "-" : sprintf("%.4g", x) }
          function all(side,   i, t) {
            t = ""
            for (i = 1; i <= n[side]; i++) t = t (i > 1 ? " " : "") (num(v[side, i]) ? sprintf("%.4g", v[side, i]) : "-")
            return t
          }
          $1 == d && $2 == o && $3 == s { v[$4, ++n[$4]] = $5 }
          END {
            w = best("wv"); p = best("pt"); wm = median("wv"); pm = median("pt")
            printf "%-6s %-9s %6s %9s %9s %6s %9s %9s %6s   %s | %s\n", d, o, s, fmt(w), fmt(p),
              ratio(w, p), fmt(wm), fmt(pm), ratio(wm, pm), all("wv"), all("pt")
          }' "$work/values"
      done
    done
  done
} > "$out"
cat "$out"
