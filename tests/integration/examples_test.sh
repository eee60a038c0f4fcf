#!/usr/bin/env bash
# A newcomer's path: install wv into a prefix, build examples/ping_pong against the installed
# package with CMake (find_package(wv)) and with pkg-config, and run both under wvrun.
# usage: examples_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=${1:?usage: examples_test.sh BUILD_DIR SOURCE_DIR}
source=${2:?usage: examples_test.sh BUILD_DIR SOURCE_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/lib/cmake/wv/wvConfig.cmake" || { echo "FAIL: no wvConfig.cmake installed"; exit 1; }
test -f "$prefix/lib/pkgconfig/wv.pc" || { echo "FAIL: no wv.pc installed"; exit 1; }

# CMake package.
cmake -S "$source/examples/ping_pong" -B "$work/cmake-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
# pkg-config.
PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
g++ -O2 -o "$work/ping_pong_pc" "$source/examples/ping_pong/ping_pong.cc" $(pkg-config --cflags --libs wv)

for program in "$work/cmake-build/ping_pong" "$work/ping_pong_pc"; do
  out=$(timeout -k 5 120 "$prefix/bin/wvrun" -n 3 --timeout 100 "$program" 2>&1) || {
    echo "FAIL: $program under wvrun -n 3:"; echo "$out"; exit 1; }
  echo "$out"
  grep -q "counter 6 (expected 6)" <<<"$out" || { echo "FAIL: $program: wrong counter"; exit 1; }
  grep -q "rank 2 answered 400" <<<"$out" || { echo "FAIL: $program: no answer from rank 2"; exit 1; }
done
echo "examples ok"
