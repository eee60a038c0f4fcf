#!/usr/bin/env bash
# Installs what the real-RDMA VM tier (tests/vm/run.sh) needs on a Debian 12 host: QEMU, Debian's
# kernel with its modules and headers (the guest boots it; siw is built against the headers from
# linux-source), a static busybox for the initramfs, and perftest as the raw-verbs baseline.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/../../scripts/install-deps.sh"
packages=(
  qemu-system-x86 qemu-utils linux-image-amd64 linux-headers-amd64 linux-source-6.1
  busybox-static xz-utils cpio kmod make gcc bc flex bison libelf-dev
  rdma-core ibverbs-utils rdmacm-utils perftest iproute2
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi
