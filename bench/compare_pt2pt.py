#!/usr/bin/env python3
"""Side-by-side table of `wv_perf pt2pt --json` and `wv_mpi_perf pt2pt --json` runs.

Usage: compare_pt2pt.py NAME=FILE... [--pair A:B ...] [--lat-sizes 8,4K,...] [--bw-sizes ...]

Prints latency medians (us) and bandwidths (MB/s) per run at the chosen sizes, and for each
--pair A:B the ratio A/B (latency: lower is better, so < 1 means A is faster; bandwidth:
> 1 means A is faster).
"""
import argparse
import json
import sys


def parse_size(text):
    text = text.strip().lower()
    for suffix, scale in (("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30)):
        if text.endswith(suffix):
            return int(text[:-1]) * scale
    return int(text)


def size_text(size):
    for suffix, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{suffix}"
    return str(size)


def load(path):
    results = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("record") != "result":
                continue
            op, size = record["op"], record["size"]
            if op == "lat":
                results[(op, size)] = record["latency_us"]["median"]
            else:
                results[(op, size)] = record["bandwidth_mbps"]
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=FILE with JSON lines")
    parser.add_argument("--pair", action="append", default=[], help="A:B, print A/B")
    parser.add_argument("--lat-sizes", default="8,4K,64K,1M")
    parser.add_argument("--bw-sizes", default="64K,1M,16M")
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        runs[name] = load(path)
    pairs = [tuple(p.split(":", 1)) for p in args.pair]
    for a, b in pairs:
        if a not in runs or b not in runs:
            sys.exit(f"--pair {a}:{b}: unknown run name")

    def table(op, unit, sizes):
        header = [f"{op} ({unit})"] + list(runs) + [f"{a}/{b}" for a, b in pairs]
        rows = []
        for size in sizes:
            row = [size_text(size)]
            for name in runs:
                value = runs[name].get((op, size))
                row.append("-" if value is None else f"{value:.2f}")
            for a, b in pairs:
                va, vb = runs[a].get((op, size)), runs[b].get((op, size))
                row.append("-" if not va or not vb else f"{va / vb:.2f}")
            rows.append(row)
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
        print("-|-".join("-" * w for w in widths))
        for row in rows:
            print(" | ".join(c.rjust(w) for c, w in zip(row, widths)))
        print()

    table("lat", "median us", [parse_size(s) for s in args.lat_sizes.split(",")])
    table("bw", "MB/s", [parse_size(s) for s in args.bw_sizes.split(",")])


if __name__ == "__main__":
    main()
