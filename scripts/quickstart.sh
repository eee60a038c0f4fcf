#!/usr/bin/env bash
# The README's first command: install what wv needs, build it, and run the main job on the
# built-in software provider: wv_info, then a two-process verbs ping-pong (wv_perf verbs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
export WV_PROVIDER=${WV_PROVIDER:-tcp}
build/bin/wv_info
build/bin/wv_perf verbs --ops send_lat,write_bw,read_bw --sizes 8,4096,65536,1048576
