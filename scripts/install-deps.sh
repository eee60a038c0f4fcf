#!/usr/bin/env bash
# Installs the Debian 12 packages wv builds and tests with. Needs root (or sudo).
set -euo pipefail
packages=(
  cmake ninja-build ccache g++ pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libfmt-dev
  clang-14 libclang-rt-14-dev clang-format clang-tidy
  iproute2 procps
  libpmix-dev openmpi-bin libopenmpi-dev libhwloc-dev
  libibverbs-dev librdmacm-dev rdma-core ibverbs-providers
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
