#!/usr/bin/env bash
# The README's first command: install what wv needs, build it, and run the main job on the
# built-in software provider: wv_info, then a two-rank wvrun job measuring wv's tagged messages
# (wv_perf pt2pt: latency and bandwidth through the messaging engine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
export WV_PROVIDER=${WV_PROVIDER:-tcp}
build/bin/wv_info
build/bin/wv_info --protocols
build/bin/wvrun -n 2 --timeout 300 build/bin/wv_perf pt2pt --ops lat,bw --sizes 8,4096,65536,1048576
