#!/bin/bash
# Cove network benchmark: virtio-net with NAT (libslirp) against QEMU's user networking (the
# same libslirp), TCP throughput and connect round trips, both directions.
#
#   bench/net.sh [-n ITERATIONS] [--vmms "cove qemu"] [--runtime SECONDS] [--lat-count N]
#                [--baseline COMMIT] [--log PATH]
#
# One session of the nested QEMU "test host" (see docs/benchmarks.md), in which the VMMs take
# turns booting the same guest (1 vCPU, 512 MiB, the default initramfs plus iperf3 with its
# libraries, bench/netlat and bench/net-guest.sh) on their NAT:
#   g2h      guest -> host: iperf3 -c 10.0.2.2 (one TCP stream, RUNTIME s) in the guest
#   h2g      host -> guest: iperf3 -c 127.0.0.1:15201 in the test host, forwarded to the guest
#   g2h-lat  netlat in the guest: LAT_N times connect + HTTP/1.0 request + 64-byte answer
#            to the test host, each on a new connection (median, p10, p90)
#   h2g-lat  the same from the test host to the guest through the forward
# and the test host reads the VMM's CPU time around each job (bench/net-testhost-init.sh).
#   cove       cove run --net nat --publish 127.0.0.1:15201:5201 --publish ...:18080:8080
#   cove-base  the same, cove built from --baseline COMMIT (e.g. the tree before a change)
#   qemu       -M microvm,rtc=on,pcie=on -accel kvm, -netdev user,hostfwd=... (the same two),
#              -device virtio-net-pci
# Iteration 0 is a warm-up, not counted; the VMMs take turns in a Williams order.
#
#   -n N             measured iterations (default 3)
#   --vmms LIST      which VMMs (default "cove qemu"; "cove-base" needs --baseline)
#   --runtime S      seconds per iperf3 run (default 5)
#   --lat-count N    connections per latency job (default 200)
#   --baseline REV   also build cove from git revision REV (in a temporary directory) and
#                    add it as "cove-base" to the VMMs
#   --log PATH       where to keep the test host's serial log (default: a new file in /tmp)
#
# Needs: qemu-system-x86 (and qemu-system-data for qboot), iperf3, a C compiler with a static
# libc (netlat), a built tree (meson setup build). Absolute figures inside the doubly emulated
# test host mean little; the cove/QEMU ratios measured in one session do.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
th_name=net.sh
# shellcheck source=bench/testhost-lib.sh
. "$here/testhost-lib.sh"

iterations=3
runtime=5
lat_n=200
vmms="cove qemu"
baseline=
log=
command_line="bench/net.sh${*:+ $*}"
while [ $# -gt 0 ]; do
    case $1 in
        -n|--iterations) iterations=${2:?-n needs a number}; shift 2 ;;
        --runtime) runtime=${2:?--runtime needs seconds}; shift 2 ;;
        --lat-count) lat_n=${2:?--lat-count needs a number}; shift 2 ;;
        --vmms) vmms=${2:?--vmms needs a list}; shift 2 ;;
        --baseline) baseline=${2:?--baseline needs a git revision}; shift 2 ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) echo "net.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$iterations" "$runtime" "$lat_n"; do
    case $n in ''|*[!0-9]*|0) echo "net.sh: -n, --runtime and --lat-count take positive numbers" >&2; exit 2 ;; esac
done
[ -n "$baseline" ] && case " $vmms " in *" cove-base "*) ;; *) vmms="$vmms cove-base" ;; esac
for v in $vmms; do
    case $v in
        cove|qemu) ;;
        cove-base) [ -n "$baseline" ] || { echo "net.sh: cove-base needs --baseline REV" >&2; exit 2; } ;;
        *) echo "net.sh: unknown VMM '$v' (cove, cove-base, qemu)" >&2; exit 2 ;;
    esac
done

die() {
    th_die "$@"
}

command -v iperf3 > /dev/null || die "iperf3 missing: apt-get install iperf3"
command -v qemu-system-x86_64 > /dev/null || die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
command -v cc > /dev/null || die "no C compiler (cc)"

echo "net.sh: command: $command_line"
echo "net.sh: building cove, cove-agent and netlat"
ninja -C "$root/build" > /dev/null || die "ninja -C build failed (run meson setup build first?)"
cove=$root/build/src/cli/cove
agent=$root/build/src/agent/cove-agent
echo "net.sh: tree: $(git -C "$root" describe --always --dirty 2>/dev/null || echo 'not a git checkout')"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-net.XXXXXX")
cleanup() {
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cc -O2 -static -Wall -Wextra -o "$tmp/netlat" "$here/netlat.c" || die "building netlat failed"

# The baseline: the tree at REV, built apart (only the cove binary is used).
[ -z "$baseline" ] || th_build_baseline "$baseline" "$tmp/base"

th_kernel
kernel=$th_kernel_dir/bzImage
echo "net.sh: guest kernel: $kernel"
[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/cove-net-log.XXXXXX")
: > "$log" || die "cannot write the log '$log'"

# The guest: the default initramfs (cove-agent as /init), iperf3 with its libraries at their
# own paths, netlat and the session script. Both VMMs boot this same image.
gov=$tmp/guest-overlay
mkdir -p "$gov/bench" "$gov/usr/bin"
cp "$here/net-guest.sh" "$tmp/netlat" "$gov/bench/"
cp -L "$(command -v iperf3)" "$gov/usr/bin/iperf3"
th_carry "$gov" "$(command -v iperf3)"
"$root/guest/build-initramfs.sh" --init "$agent" --overlay "$gov" \
    --output "$tmp/guest.cpio.gz" || die "building the guest initramfs failed"

# The test host.
overlay=$tmp/overlay
mkdir -p "$overlay/bench/bin" "$overlay/bench/guest" "$overlay/usr/bin"
cp "$cove" "$tmp/netlat" "$overlay/bench/bin/"
th_carry "$overlay" "$cove"
if [ -n "$baseline" ]; then
    cp "$th_baseline_cove" "$overlay/bench/bin/cove-base"
    th_carry "$overlay" "$overlay/bench/bin/cove-base"
fi
cp -L "$(command -v iperf3)" "$overlay/usr/bin/iperf3"
th_carry "$overlay" "$(command -v iperf3)"
th_add_qemu "$overlay"
cp "$kernel" "$overlay/bench/guest/bzImage"
cp "$tmp/guest.cpio.gz" "$overlay/bench/guest/initramfs.cpio.gz"
cp "$here/testhost-common.sh" "$overlay/bench/"
cat > "$overlay/bench/params" <<EOF
ITERATIONS=$iterations
VMMS='$vmms'
RUNTIME=$runtime
LAT_N=$lat_n
MEMORY=512M
TIMEOUT=$(( 2 * runtime + lat_n + 300 ))
EOF
th_initramfs "$here/net-testhost-init.sh" "$overlay" "$tmp/testhost.cpio.gz"
rm -rf "$overlay"

th_session_begin
echo "net.sh: booting the test host ($iterations iterations of $vmms after a warm-up; serial log: $log)"
th_session "$log" "$kernel" "$tmp/testhost.cpio.gz" | awk "$th_stats"'
{ sub(/\r$/, "") }
/^BENCH-HOST / { print "  test host: " substr($0, 12) }
/^BENCH-JOB / {
    cpu = (field("utime") + field("stime")) * 10
    if (field("job") ~ /lat/)
        printf "  iter %d  %-9s %-8s median %6d us  p10 %6d  p90 %6d  (%d/%d)  VMM cpu %5d ms  mtu %s\n",
            field("iter"), field("vmm"), field("job"), field("median_us"), field("p10_us"), field("p90_us"),
            field("ok"), field("n"), cpu, field("mtu")
    else
        printf "  iter %d  %-9s %-8s %9.1f Mbit/s                        VMM cpu %5d ms  mtu %s\n",
            field("iter"), field("vmm"), field("job"), field("mbit_s"), cpu, field("mtu")
}
/^BENCH-VM / { printf "  iter %d  %-9s whole run %.1f s, %d jobs\n", field("iter"), field("vmm"), field("wall_ms") / 1000, field("jobs") }
/^BENCH-ERR / { print "  " substr($0, 7) }
{ fflush() }'
th_session_end "$log"

echo
tr -d '\r' < "$log" | awk -v vmms="$vmms" -v n="$iterations" "$th_stats"'
/^BENCH-HOST / { host = substr($0, 12) }
/^BENCH-ERR .* iteration / { errors++ }
/^BENCH-JOB / {
    if (field("iter") + 0 == 0) next
    k = field("vmm") SUBSEP field("job")
    count[k]++
    v = field("job") ~ /lat/ ? field("median_us") : field("mbit_s")
    val[k] = val[k] " " v
    # CPU ms of the VMM per GiB moved (throughput) or per connection (latency).
    ms = (field("utime") + field("stime")) * 10
    if (field("job") ~ /lat/) per = field("ok") > 0 ? ms / field("ok") : 0
    else per = field("mbit_s") > 0 ? ms / (field("mbit_s") * field("wall_ms") / 1000 / 8 / 1024) : 0
    cpu[k] = cpu[k] " " per
    mtu[field("vmm")] = field("mtu")
}
END {
    print "net.sh: test host: " host
    printf "net.sh: medians over %d iterations (warm-up excluded); throughput Mbit/s (iperf3 receiver), latency median us per connect+request+answer; CPU = the VMM process, ms per GiB (throughput) or per connection (latency)\n", n
    nv = split(vmms, vs, " ")
    split("g2h h2g g2h-lat h2g-lat", jobs, " ")
    printf "  %-9s %-8s %4s %12s %12s  %s\n", "vmm", "job", "runs", "median", "CPU", "all runs"
    for (j = 1; j <= 4; j++) for (v = 1; v <= nv; v++) {
        k = vs[v] SUBSEP jobs[j]
        if (!count[k]) { printf "  %-9s %-8s %4d   (no valid runs)\n", vs[v], jobs[j], 0; continue }
        m[k] = median(val[k]); c[k] = median(cpu[k])
        printf "  %-9s %-8s %4d %12.1f %12.2f  %s  (mtu %s)\n", vs[v], jobs[j], count[k], m[k], c[k], val[k], mtu[vs[v]]
    }
    print ""
    print "  ratios against qemu (throughput: higher is better; latency and CPU: lower is better):"
    for (v = 1; v <= nv; v++) {
        if (vs[v] == "qemu") continue
        for (j = 1; j <= 4; j++) {
            a = vs[v] SUBSEP jobs[j]; b = "qemu" SUBSEP jobs[j]
            if (!count[a] || !count[b] || m[b] == 0) continue
            printf "  %-9s/qemu %-8s %8.3f   CPU %8.3f\n", vs[v], jobs[j], m[a] / m[b], (c[b] > 0 ? c[a] / c[b] : 0)
        }
    }
    if (errors) printf "\nnet.sh: %d runs had failures (BENCH-ERR in the log); their missing jobs are not counted\n", errors
}'
echo "net.sh: test host session $th_elapsed s; load average on this machine before / after: $th_load_before / $th_load_after"
