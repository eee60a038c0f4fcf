#!/usr/bin/env bash
# The real-RDMA test tier: boots a throw-away QEMU guest with Debian's kernel, creates Soft-RoCE
# (rxe0) and SoftiWARP (siw0) devices, runs the verbs conformance suite against the ibverbs
# provider on each, and passes the exit status back. Facts behind every choice here:
# /work/shared/notes/rdma-vm.md (TCG, PVH boot of the extracted vmlinux, 9p root, siw out of tree).
#
# Usage: tests/vm/run.sh [build-dir]   (default: build-ib, else build; must hold verbs_conformance)
# Environment: WV_VM_CACHE (default <repo>/build-vm) keeps vmlinux, the initramfs and siw.ko
# between runs; WV_VM_PREPARE_ONLY=1 only fills that cache; WV_VM_TIMEOUT bounds the guest (seconds, default 1500); WV_VM_FILTER narrows the
# gtest filter (default: every ibverbs test); WV_VM_BENCH=1 also runs tests/vm/bench.sh after the
# suites (wv_perf verbs beside perftest on both devices; table in the log and <cache>/run/bench.txt;
# needs bin/wv_perf; not part of the tier's pass/fail); WV_VM_MPI_BENCH=1 runs tests/vm/mpi_bench.sh
# (btl/wv on rxe0 and siw0 beside pml/ucx and btl/tcp, VM_MPI_ROUNDS rounds; <cache>/run/mpi_bench.txt;
# needs lib/openmpi/mca_btl_wv.so and bin/wv_mpi_perf).
set -euo pipefail
start=$(date +%s)
repo="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-}"
if [ -z "$build" ]; then
  if [ -x "$repo/build-ib/bin/verbs_conformance" ]; then build="$repo/build-ib"; else build="$repo/build"; fi
fi
build="$(cd "$build" && pwd)"
cache="${WV_VM_CACHE:-$repo/build-vm}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
[ -n "${WV_VM_PREPARE_ONLY:-}" ] || [ -x "$build/bin/verbs_conformance" ] || [ -n "${WV_VM_ALLOW_MISSING:-}" ] || {
  echo "run.sh: $build/bin/verbs_conformance is missing (build it first)" >&2; exit 2; }

"$repo/tests/vm/install-deps.sh" >/dev/null

kernel_image="$(ls -1 /boot/vmlinuz-* | sort -V | tail -1)"
kver="${kernel_image#/boot/vmlinuz-}"

# 1. The uncompressed kernel (PVH boot with qboot is about twice as fast as bzImage + SeaBIOS).
if [ ! -s "$cache/vmlinux-$kver" ]; then
  offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kernel_image" | head -1 | cut -d: -f1)
  tail -c +$((offset + 1)) "$kernel_image" | xz -dc --single-stream > "$cache/vmlinux-$kver.tmp" 2>/dev/null || true
  mv "$cache/vmlinux-$kver.tmp" "$cache/vmlinux-$kver"
fi

# 2. siw.ko, which Debian's kernel does not ship (CONFIG_RDMA_SIW unset): built out of tree.
if [ ! -s "$cache/siw-$kver.ko" ]; then
  src="$(ls -1 /usr/src/linux-source-*.tar.xz | sort -V | tail -1)"
  rm -rf "$cache/siw-src" && mkdir -p "$cache/siw-src"
  tar -xJf "$src" -C "$cache/siw-src" --wildcards '*/drivers/infiniband/sw/siw/*'
  dir="$(dirname "$(find "$cache/siw-src" -name siw_main.c | head -1)")"
  make -s -C "/lib/modules/$kver/build" M="$dir" CONFIG_RDMA_SIW=m modules >/dev/null
  cp "$dir/siw.ko" "$cache/siw-$kver.ko"
  rm -rf "$cache/siw-src"
fi

# 3. A busybox initramfs that mounts the host's / read-only and the repository read-write over
#    virtio-9p and switch_roots into the host's userland.
initrd="$cache/initramfs-$kver.cpio.gz"
if [ ! -s "$initrd" ] || [ "$repo/tests/vm/run.sh" -nt "$initrd" ]; then
  root="$cache/initramfs-root"
  rm -rf "$root" && mkdir -p "$root/bin" "$root/modules" "$root/proc" "$root/sys" "$root/dev" "$root/newroot"
  cp /bin/busybox "$root/bin/busybox"
  : > "$root/modules/order"
  for module in virtio_pci 9pnet_virtio 9p; do
    modprobe -S "$kver" --show-depends "$module" | awk '$1 == "insmod" {print $2}' | while read -r ko; do
      base="$(basename "$ko")"
      grep -qx "$base" "$root/modules/order" && continue
      case "$ko" in
        *.xz) xz -dc "$ko" > "$root/modules/${base%.xz}"; base="${base%.xz}" ;;
        *.zst) zstd -qdc "$ko" > "$root/modules/${base%.zst}"; base="${base%.zst}" ;;
        *) cp "$ko" "$root/modules/$base" ;;
      esac
      echo "$base" >> "$root/modules/order"
    done
  done
  cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m 2>/dev/null; done
for arg in $(cat /proc/cmdline); do
  case "$arg" in wvrepo=*) repo="${arg#wvrepo=}" ;; wvscript=*) script="${arg#wvscript=}" ;; esac
done
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $opts,cache=loose,ro hostroot /newroot || { echo "wv-vm: cannot mount the host root"; poweroff -f; }
for d in tmp run var/tmp root dev/shm; do mount -t tmpfs tmpfs /newroot/$d; done
# A repository under one of those tmpfs (a clone in /tmp) needs its mount point made there.
mkdir -p /newroot$repo 2>/dev/null
mount -t 9p -o $opts,cache=mmap repo /newroot$repo || echo "wv-vm: cannot mount $repo"
mount -o move /dev /newroot/dev
mkdir -p /newroot/dev/shm 2>/dev/null; mount -t tmpfs tmpfs /newroot/dev/shm
mount -o move /sys /newroot/sys
mount -o move /proc /newroot/proc
exec switch_root /newroot /bin/bash "$script"
INIT
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd"
  rm -rf "$root"
fi

[ -n "${WV_VM_PREPARE_ONLY:-}" ] && { echo "prepared in $cache"; exit 0; }

# 4. Boot. KVM only where the CPU really has vmx/svm (a nested paravirtual KVM cannot boot it).
accel=(-accel tcg,thread=multi -cpu max,-la57)
# Under TCG the guest kernel distrusts the emulated TSC and reads the HPET instead, which costs
# about 6 us per clock_gettime (an emulated MMIO read each time): the TSC is what hardware gives.
clock="tsc=reliable clocksource=tsc"
if [ -w /dev/kvm ] && grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; then accel=(-accel kvm -cpu host); clock=""; fi
run="$cache/run"
rm -rf "$run" && mkdir -p "$run"
cat > "$run/env" <<ENV
WV_VM_BUILD=$build
WV_VM_CACHE=$cache
WV_VM_KVER=$kver
WV_VM_FILTER=${WV_VM_FILTER:-*/ibverbs}
WV_VM_PERF=${WV_VM_PERF:-0}
WV_VM_BENCH=${WV_VM_BENCH:-0}
VM_BENCH_REPEAT=${VM_BENCH_REPEAT:-5}
VM_BENCH_SIZES=${VM_BENCH_SIZES:-8,4096,65536}
WV_VM_MPI_BENCH=${WV_VM_MPI_BENCH:-0}
VM_MPI_ROUNDS=${VM_MPI_ROUNDS:-3}
WV_VM_SCRIPT=${WV_VM_SCRIPT:-}
ENV
set +e
timeout "${WV_VM_TIMEOUT:-1500}" qemu-system-x86_64 "${accel[@]}" -smp "$(nproc)" -m 2048 \
  -nodefaults -display none -serial stdio -no-reboot -nic none \
  -bios /usr/share/qemu/qboot.rom -kernel "$cache/vmlinux-$kver" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 $clock wvrepo=$repo wvrun=$run wvscript=$repo/tests/vm/guest.sh" \
  -fsdev local,id=hostroot,path=/,readonly=on,multidevs=remap,security_model=none \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -fsdev local,id=repo,path="$repo",multidevs=remap,security_model=none \
  -device virtio-9p-pci,fsdev=repo,mount_tag=repo | tee "$run/console.log"
qemu_status=${PIPESTATUS[0]}
set -e
end=$(date +%s)
status=1
[ -s "$run/status" ] && status="$(cat "$run/status")"
[ "$qemu_status" -eq 124 ] && echo "run.sh: the guest did not finish within ${WV_VM_TIMEOUT:-1500} s" && status=1
passed=$(cat "$run"/passed.* 2>/dev/null | awk '{s+=$1} END {print s+0}')
failed=$(cat "$run"/failed.* 2>/dev/null | awk '{s+=$1} END {print s+0}')
skipped=$(cat "$run"/skipped.* 2>/dev/null | awk '{s+=$1} END {print s+0}')
echo "vm tier: $((end - start)) s (guest $([ "${accel[1]}" = kvm ] && echo KVM || echo TCG), kernel $kver)"
echo "$passed passed, $failed failed ($skipped skipped)"
# The same in ctest's words, for the summary of .ci/run.
total=$((passed + failed))
echo "$(( total > 0 ? passed * 100 / total : 0 ))% tests passed, $failed tests failed out of $total"
exit "$status"
