#!/bin/sh
# Cove boot benchmark: time to the guest's /init and VMM memory overhead, cove against QEMU.
#
#   bench/boot.sh [-n ITERATIONS] [--interval US] [--log PATH]
#
# Inside one QEMU TCG "test host" session (a guest whose kernel has a working /dev/kvm: TCG
# emulates AMD SVM+NPT with -cpu max), it boots the same kernel (bzImage) and initramfs (the
# default guest, /init = cove-agent) with 1 vCPU and 256 MiB again and again:
#
#   cove   cove run --serial none --boot-timer
#   qemu   qemu-system-x86_64 -M microvm -accel kvm -serial null, guest RAM in a memfd, and
#          isa-debug-exit on the boot-timer port so that QEMU exits when /init starts
#
# The guest kernel must have CONFIG_X86_IOPL_IOPERM=y: cove-agent signals the boot with
# ioperm() + outb. When the kernel of guest/build-kernel.sh lacks it, a variant with that one
# option added is built (and cached) for the benchmark guest; the test host keeps the normal one.
#
# Each run is wrapped by bootbench (bench/bootbench.c), which takes the time from fork and
# samples the VMM's non-guest resident memory from /proc/PID/smaps. Iteration 0 is a warm-up;
# the VMMs take turns within every iteration, in rotating order. The summary gives medians,
# the ratios cove/QEMU and whether the targets are met (boot ratio <= 0.7; overhead <= 5 MiB
# and <= 1/4 of QEMU's). See docs/benchmarks.md.
#
# The test host is emulated: absolute times are inflated many times over; only the ratios
# measured within one session mean something.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

iterations=10
interval=2000
log=
command_line="bench/boot.sh${*:+ $*}"
while [ $# -gt 0 ]; do
    case $1 in
        -n|--iterations) iterations=${2:?-n needs a number}; shift 2 ;;
        --interval) interval=${2:?--interval needs microseconds}; shift 2 ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "boot.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $iterations in ''|*[!0-9]*|0) echo "boot.sh: -n must be a positive number" >&2; exit 2 ;; esac

die() {
    echo "boot.sh: $*" >&2
    exit 1
}

qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
firmware=/usr/share/qemu/bios-microvm.bin
[ -e "$firmware" ] || die "$firmware (qboot) missing: apt-get install qemu-system-data"
command -v cc > /dev/null || die "no C compiler (cc)"

echo "boot.sh: command: $command_line"
echo "boot.sh: building cove, cove-agent and the guest initramfs"
ninja -C "$root/build" > /dev/null || die "ninja -C build failed (run meson setup build first?)"
cove=$root/build/src/cli/cove
initrd=$root/build/guest/initramfs.cpio.gz
# Wait for a kernel build already under way rather than starting a second one.
waited=0
while pgrep -f 'build-kernel\.sh' > /dev/null 2>&1; do
    [ "$waited" -eq 0 ] && echo "boot.sh: waiting for a running build-kernel.sh"
    waited=$((waited + 10))
    [ "$waited" -lt 3600 ] || die "build-kernel.sh still running after an hour"
    sleep 10
done
kernel_dir=$("$root/guest/build-kernel.sh") || die "guest/build-kernel.sh failed"
kernel=$kernel_dir/bzImage
[ -f "$kernel" ] || die "no bzImage in $kernel_dir"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

guest_kernel=$kernel
if ! grep -qx 'CONFIG_X86_IOPL_IOPERM=y' "$kernel_dir/.config"; then
    echo "boot.sh: the guest kernel lacks CONFIG_X86_IOPL_IOPERM=y, so cove-agent's ioperm() fails"
    echo "boot.sh: and it never writes the boot-timer port; building (or reusing) a variant with it"
    mkdir -p "$tmp/kernel"
    cp "$root/guest/build-kernel.sh" "$tmp/kernel/"
    { cat "$root/guest/kernel.config"
      echo '# bench/boot.sh: cove-agent needs ioperm() to write the boot-timer port.'
      echo 'CONFIG_X86_IOPL_IOPERM=y'
    } > "$tmp/kernel/kernel.config"
    variant_dir=$("$tmp/kernel/build-kernel.sh") || die "building the kernel variant failed"
    guest_kernel=$variant_dir/bzImage
    echo "boot.sh: benchmark guest kernel: $guest_kernel"
fi
[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/cove-bench-log.XXXXXX")
: > "$log" || die "cannot write the log '$log'"

cc -O2 -static -Wall -Wextra -o "$tmp/bootbench" "$here/bootbench.c" || die "building bootbench failed"

# ---- The test host's initramfs ----
overlay=$tmp/overlay
mkdir -p "$overlay/bench/bin" "$overlay/bench/guest" "$overlay/usr/bin" "$overlay/usr/share/qemu"
cp "$cove" "$tmp/bootbench" "$overlay/bench/bin/"
cp "$guest_kernel" "$overlay/bench/guest/bzImage"
cp "$initrd" "$overlay/bench/guest/initramfs.cpio.gz"
# Dynamically linked programs travel with the libraries ldd lists, at the same paths.
carry() {
    for lib in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
        [ -e "$overlay$lib" ] && continue
        mkdir -p "$overlay${lib%/*}"
        cp -L "$lib" "$overlay$lib"
    done
}
carry "$cove"
cp "$qemu" "$overlay/usr/bin/qemu-system-x86_64"
carry "$qemu"
vmms="cove qemu"
# microvm's firmware (qboot) and the option ROMs QEMU may look for when loading a kernel.
for rom in bios-microvm.bin qboot.rom linuxboot_dma.bin linuxboot.bin pvh.bin; do
    [ -e "/usr/share/qemu/$rom" ] && cp -L "/usr/share/qemu/$rom" "$overlay/usr/share/qemu/$rom"
done
cat > "$overlay/bench/params" <<EOF
ITERATIONS=$iterations
INTERVAL_US=$interval
CPUS=1
MEMORY=256M
CMDLINE='console=ttyS0 quiet panic=-1 -- poweroff -f'
VMMS='$vmms'
EOF
"$root/guest/build-initramfs.sh" --init "$here/testhost-init.sh" --overlay "$overlay" \
    --output "$tmp/testhost.cpio.gz" || die "building the test host initramfs failed"
rm -rf "$overlay"

# ---- One test host session ----
cr=$(printf '\r')
started=$(date +%s)
overall=${BENCH_TIMEOUT:-3600}
echo "boot.sh: booting the test host ($iterations iterations + 1 warm-up of: $vmms; serial log: $log)"
{ timeout "$overall" qemu-system-x86_64 -M q35 -accel tcg,thread=multi -cpu max \
    -smp 2 -m 3072 -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$kernel" -initrd "$tmp/testhost.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet" < /dev/null 2>&1
  echo "$?" > "$tmp/qemu.status"
} | tee "$log" | while IFS= read -r line || [ -n "$line" ]; do
    line=${line%"$cr"}
    case $line in
        BENCH-RUN*|BENCH-HOST*|BENCH-ERR*) echo "  ${line#BENCH-}" ;;
    esac
done
elapsed=$(( $(date +%s) - started ))
status=$(cat "$tmp/qemu.status" 2>/dev/null || echo '?')
tr -d '\r' < "$log" | grep -qx 'BENCH-DONE' ||
    die "the test host did not finish (QEMU status $status after $elapsed s); see $log"

# ---- Summary ----
echo
tr -d '\r' < "$log" | awk -v vmms="$vmms" -v n="$iterations" -v elapsed="$elapsed" \
    -v cmd="$command_line" '
function field(name,    i, kv) {
    for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == name) return kv[2]
    }
    return ""
}
# Median of the space-separated numbers in s.
function median(s,    a, k, i, j, t) {
    k = split(s, a, " ")
    if (k == 0) return ""
    for (i = 2; i <= k; i++) {
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
function verdict(ok) { return ok ? "met" : "MISSED" }
/^BENCH-HOST / { host = substr($0, 12) }
/^BENCH-RUN / {
    v = field("vmm")
    if (field("iter") + 0 == 0) next
    count[v]++
    init[v] = init[v] " " field("init_us")
    rss[v] = rss[v] " " field("rss_kib")
    anon[v] = anon[v] " " field("anon_kib")
    cpu[v] = cpu[v] " " field("cpu_us")
    maxrss[v] = maxrss[v] " " field("maxrss_kib")
    if (v == "cove") { timer = timer " " field("boot_timer_us"); exec = exec " " field("exec_us") }
}
/^BENCH-MAPS / {
    v = substr($2, 5)
    name = $5
    for (j = 6; j <= NF; j++) name = name " " $j
    if (maps[v] < 8) { top[v] = top[v] sprintf("      %6d KiB  %s\n", $3, name); maps[v]++ }
}
END {
    print "boot.sh: " cmd
    print "boot.sh: test host: " host
    printf "boot.sh: session took %d s; medians over %d iterations (warm-up excluded):\n", elapsed, n
    printf "  %-13s %5s %12s %14s %10s %10s %12s\n", "vmm", "runs", "to /init ms", "overhead MiB", "anon MiB", "cpu ms", "maxRSS MiB"
    nv = split(vmms, names, " ")
    for (i = 1; i <= nv; i++) {
        v = names[i]
        if (!count[v]) { printf "  %-13s %5d   (no valid runs)\n", v, 0; continue }
        mi[v] = median(init[v]); mr[v] = median(rss[v])
        printf "  %-13s %5d %12.1f %14.2f %10.2f %10.1f %12.1f\n", v, count[v], mi[v] / 1000,
            mr[v] / 1024, median(anon[v]) / 1024, median(cpu[v]) / 1000, median(maxrss[v]) / 1024
    }
    if (count["cove"])
        printf "  cove to /init = boot timer (main to boot port) %.1f ms + fork to main (bounded by `cove --version`) %.1f ms\n",
            median(timer) / 1000, median(exec) / 1000
    if (!count["cove"] || !count["qemu"]) { print "boot.sh: no ratios: cove or qemu has no valid run"; exit 1 }
    br = mi["cove"] / mi["qemu"]; mr_ = mr["cove"] / mr["qemu"]; mib = mr["cove"] / 1024
    print ""
    printf "  boot time ratio cove/qemu      %.3f   (target <= 0.70: %s)\n", br, verdict(br <= 0.7)
    printf "  memory overhead ratio cove/qemu %.3f   (target <= 0.25: %s)\n", mr_, verdict(mr_ <= 0.25)
    printf "  cove memory overhead           %.2f MiB (target <= 5 MiB: %s)\n", mib, verdict(mib <= 5)
    print ""
    print "  largest non-guest mappings at the peak of the last run:"
    for (i = 1; i <= nv; i++) if (top[names[i]] != "") printf "    %s\n%s", names[i], top[names[i]]
}'
