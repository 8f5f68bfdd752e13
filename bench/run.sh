#!/bin/bash
# Cove main-job benchmark: the end-to-end wall time of `cove run -- true` against QEMU booting
# the same kernel and initramfs and running `true` from the guest's init; the exec round trip
# in a VM that is already up; the VMMs' memory overhead beyond guest RAM.
#
#   bench/run.sh [-n ITERATIONS] [--vmms LIST] [--kernel vmlinux|bzImage] [--execs N]
#                [--concurrent N] [--log PATH]
#
# Inside one QEMU TCG "test host" session (a guest whose kernel has a working /dev/kvm), with
# 1 vCPU and 256 MiB for every VM, the default guest (the vmlinux that `cove run` boots by
# default, or the bzImage; the initramfs with cove-agent as /init), the same file for every VMM
# (QEMU boots a vmlinux through PVH):
#
#   cove      cove run --kernel K --initrd I --cpus 1 --memory 256M -- true, with the boot
#             cache (the default) in a directory of the session: the warm-up iteration boots
#             and saves, the measured ones restore the booted guest
#   cove-cold the same with --no-boot-cache: each run boots the kernel
#   cove-share the cove run with --share DIR:/job, DIR a new directory in every iteration:
#             the boot cache serves shares on any directory (not in the default list)
#   qemu-rtc  qemu-system-x86_64 -M microvm,rtc=on -accel kvm ... -append "... -- true": the
#             guest's init runs `true` and powers off; boot + run + poweroff
#   qemu      the same on plain -M microvm
#
# each timed by bootbench (bench/bootbench.c) from fork to exit, with the peak resident memory
# outside guest RAM. Iteration 0 is a warm-up; within every iteration the VMMs take turns in a
# changing order (a Williams design). Then execbench (bench/execbench.c, the libcove API) boots
# one VM and runs `true` in it N times in a row and in rounds of concurrent ones. The summary
# gives medians and the ratios against the targets (cove <= 0.7 x QEMU; cove's overhead
# < 5 MiB). See docs/benchmarks.md.
#
#   -n N            measured iterations (default 12), after one warm-up; the order of four
#                   VMMs repeats every 4 iterations, of three every 6, of two every 2
#   --vmms LIST     which of the above (default "cove cove-cold qemu-rtc qemu"; cove and one
#                   QEMU needed)
#   --kernel FILE   vmlinux (default) or bzImage, of the cached guest kernel build
#   --execs N       execbench's sequential execs (default 50; 0: no execbench)
#   --concurrent N  execbench's execs at once in each of its 5 rounds (default 8; 0: none)
#   --log PATH      where to keep the test host's serial log (default: a new file in /tmp)
#
# The test host is emulated twice over: absolute times are inflated many times and mean
# nothing; only ratios measured within one session do.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
th_name=run.sh
. "$here/testhost-lib.sh"

iterations=12
vmms="cove cove-cold qemu-rtc qemu"
kernel_file=vmlinux
execs=50
concurrent=8
log=
command_line="bench/run.sh${*:+ $*}"
while [ $# -gt 0 ]; do
    case $1 in
        -n|--iterations) iterations=${2:?-n needs a number}; shift 2 ;;
        --vmms) vmms=${2:?--vmms needs a list}; shift 2 ;;
        --kernel) kernel_file=${2:?--kernel needs vmlinux or bzImage}; shift 2 ;;
        --execs) execs=${2:?--execs needs a number}; shift 2 ;;
        --concurrent) concurrent=${2:?--concurrent needs a number}; shift 2 ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in $vmms; do
    case $v in cove|cove-cold|cove-share|qemu|qemu-rtc) ;; *) echo "run.sh: unknown VMM '$v' in --vmms" >&2; exit 2 ;; esac
done
case " $vmms " in *" cove "*) ;; *) echo "run.sh: --vmms needs cove" >&2; exit 2 ;; esac
case " $vmms " in *" qemu"*) ;; *) echo "run.sh: --vmms needs qemu or qemu-rtc" >&2; exit 2 ;; esac
case $kernel_file in vmlinux|bzImage) ;; *) echo "run.sh: --kernel must be vmlinux or bzImage" >&2; exit 2 ;; esac
case $iterations in ''|*[!0-9]*|0) echo "run.sh: -n must be a positive number" >&2; exit 2 ;; esac
case $execs in ''|*[!0-9]*) echo "run.sh: --execs must be a number" >&2; exit 2 ;; esac
case $concurrent in ''|*[!0-9]*) echo "run.sh: --concurrent must be a number" >&2; exit 2 ;; esac

command -v qemu-system-x86_64 > /dev/null || th_die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
[ -e /usr/share/qemu/bios-microvm.bin ] || th_die "/usr/share/qemu/bios-microvm.bin (qboot) missing: apt-get install qemu-system-data"
command -v cc > /dev/null || th_die "no C compiler (cc)"

echo "run.sh: command: $command_line"
echo "run.sh: building cove, cove-agent, execbench and the guest initramfs"
ninja -C "$root/build" > /dev/null || th_die "ninja -C build failed (run meson setup build first?)"
cove=$root/build/src/cli/cove
execbench=$root/build/bench/execbench
initrd=$root/build/guest/initramfs.cpio.gz
for f in "$cove" "$execbench" "$initrd"; do
    [ -e "$f" ] || th_die "$f missing after the build"
done
th_kernel
kernel=$th_kernel_dir/bzImage
guest_kernel=$th_kernel_dir/$kernel_file
echo "run.sh: the VMs boot: $guest_kernel (the test host: $kernel)"
echo "run.sh: tree: $(git -C "$root" describe --always --dirty 2>/dev/null || echo 'not a git checkout')"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-runbench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/cove-runbench-log.XXXXXX")
: > "$log" || th_die "cannot write the log '$log'"

cc -O2 -static -Wall -Wextra -o "$tmp/bootbench" "$here/bootbench.c" || th_die "building bootbench failed"

# ---- The test host's initramfs ----
overlay=$tmp/overlay
mkdir -p "$overlay/bench/bin" "$overlay/bench/guest"
cp "$cove" "$execbench" "$tmp/bootbench" "$overlay/bench/bin/"
cp "$guest_kernel" "$overlay/bench/guest/$kernel_file"
cp "$initrd" "$overlay/bench/guest/initramfs.cpio.gz"
cp "$here/testhost-common.sh" "$overlay/bench/"
th_carry "$overlay" "$cove"
th_carry "$overlay" "$execbench"
th_add_qemu "$overlay"
cat > "$overlay/bench/params" <<EOF
ITERATIONS=$iterations
INTERVAL_US=2000
DUTY=10
CPUS=1
MEMORY=256M
VMMS='$vmms'
KERNEL_FILE=$kernel_file
EXECS=$execs
CONCURRENT=$concurrent
EOF
th_initramfs "$here/run-testhost-init.sh" "$overlay" "$tmp/testhost.cpio.gz"
rm -rf "$overlay"

# ---- One test host session ----
th_session_begin
echo "run.sh: booting the test host ($iterations iterations + 1 warm-up of: $vmms; then $execs execs; serial log: $log)"
th_session "$log" "$kernel" "$tmp/testhost.cpio.gz" | awk "$th_stats"'
{ sub(/\r$/, "") }
/^BENCH-HOST / { print "  test host: " substr($0, 12) }
/^BENCH-CHECK / { print "  " substr($0, 7) }
/^BENCH-RUN / {
    printf "  iter %2d  %-9s  wall %8.1f ms   overhead %6.2f MiB   cpu %8.1f ms   after %s\n", field("iter"),
        field("vmm"), field("wall_us") / 1000, field("rss_kib") / 1024, field("cpu_us") / 1000, field("after")
}
/^BENCH-EXEC / {
    printf "  execbench: first exec %.1f ms (boot signal %.1f ms); %d x true: median %.2f ms, p90 %.2f ms; %d at once: %.1f ms\n",
        field("first_us") / 1000, field("boot_us") / 1000, field("n"), field("median_us") / 1000,
        field("p90_us") / 1000, field("conc"), field("conc_median_us") / 1000
}
/^BENCH-ERR / { print "  " substr($0, 7) }
{ fflush() }'

th_session_end "$log"

# ---- Summary ----
echo
tr -d '\r' < "$log" | awk -v vmms="$vmms" -v n="$iterations" -v elapsed="$th_elapsed" \
    -v cmd="$command_line" -v load="$th_load_before / $th_load_after" -v cpus="$(nproc)" "$th_stats"'
function verdict(ok) { return ok ? "met" : "MISSED" }
function range(s,    a, k, j, lo, hi) {
    k = split(s, a, " "); lo = hi = a[1] + 0
    for (j = 2; j <= k; j++) { if (a[j] + 0 < lo) lo = a[j] + 0; if (a[j] + 0 > hi) hi = a[j] + 0 }
    return sprintf("%.0f .. %.0f", lo / 1000, hi / 1000)
}
/^BENCH-HOST / { host = substr($0, 12) }
/^BENCH-ERR / { errors++ }
/^BENCH-RUN / {
    v = field("vmm"); it = field("iter") + 0
    if (it == 0) next
    count[v]++
    wall[v] = wall[v] " " field("wall_us"); byiter[v, it] = field("wall_us")
    rss[v] = rss[v] " " field("rss_kib")
    anon[v] = anon[v] " " field("anon_kib")
    cpu[v] = cpu[v] " " field("cpu_us")
}
/^BENCH-EXEC / { exec_line = $0; for (f = 2; f <= NF; f++) { split($f, kv, "="); ex[kv[1]] = kv[2] } }
/^BENCH-MAPS / {
    v = substr($2, 5); name = $5
    for (j = 6; j <= NF; j++) name = name " " $j
    if (maps[v] < 6) { top[v] = top[v] sprintf("      %6d KiB  %s\n", $3, name); maps[v]++ }
}
END {
    print "run.sh: " cmd
    print "run.sh: test host: " host
    printf "run.sh: this machine: %d CPUs, load average before / after: %s\n", cpus, load
    printf "run.sh: session took %d s; medians over %d iterations (warm-up excluded)%s:\n", elapsed, n,
        errors ? sprintf(", %d ERRORS (see the log)", errors) : ""
    printf "  %-9s %4s %15s %17s %13s %9s %11s\n", "vmm", "runs", "wall ms", "(min .. max)", "overhead MiB", "anon MiB", "VMM cpu ms"
    nv = split(vmms, names, " ")
    for (i = 1; i <= nv; i++) {
        v = names[i]
        if (!count[v]) { printf "  %-9s %4d   (no valid runs)\n", v, 0; continue }
        mw[v] = median(wall[v]); mr[v] = median(rss[v])
        printf "  %-9s %4d %15.1f %17s %13.2f %9.2f %11.1f\n", v, count[v], mw[v] / 1000, "(" range(wall[v]) ")",
            mr[v] / 1024, median(anon[v]) / 1024, median(cpu[v]) / 1000
    }
    if (!count["cove"]) { print "run.sh: no ratios: cove has no valid run"; exit 1 }
    print "  ratios cove/QEMU (of the medians; target: wall time <= 0.7):"
    for (c = 1; c <= nv; c++) {
        cv = names[c]
        if (cv !~ /^cove/ || !count[cv]) continue
        for (i = 1; i <= nv; i++) {
            q = names[i]
            if (q ~ /^cove/ || !count[q]) continue
            won = 0; pairs = 0
            for (it = 1; it <= n; it++) if (((cv SUBSEP it) in byiter) && ((q SUBSEP it) in byiter)) {
                pairs++; if (byiter[cv, it] + 0 < byiter[q, it] + 0) won++
            }
            printf "    %-9s against %-9s wall %.2f (%s), faster in %d of %d iterations; memory overhead %.3f\n",
                cv, q, mw[cv] / mw[q], verdict(mw[cv] <= 0.7 * mw[q]), won, pairs, mr[cv] / mr[q]
        }
    }
    printf "  cove memory overhead %.2f MiB (target < 5 MiB: %s)\n", mr["cove"] / 1024, verdict(mr["cove"] < 5 * 1024)
    if (exec_line != "") {
        printf "  exec round trip (execbench: one VM, %d x true in a row): median %.2f ms, p90 %.2f ms (min %.2f, max %.2f)\n",
            ex["n"], ex["median_us"] / 1000, ex["p90_us"] / 1000, ex["min_us"] / 1000, ex["max_us"] / 1000
        printf "    first exec, boot included: %.1f ms (guest /init signalled at %.1f ms)\n", ex["first_us"] / 1000, ex["boot_us"] / 1000
        if (ex["rounds"] + 0)
            printf "    %d at once: median round %.1f ms (%.2f ms per exec) over %d rounds\n", ex["conc"],
                ex["conc_median_us"] / 1000, ex["conc_per_exec_us"] / 1000, ex["rounds"]
        printf "    execbench process: overhead %.2f MiB (anon %.2f), cpu %.1f ms over %.1f ms\n", ex["rss_kib"] / 1024,
            ex["anon_kib"] / 1024, ex["cpu_us"] / 1000, ex["wall_us"] / 1000
    }
    print "  largest mappings outside guest RAM, last run:"
    for (i = 1; i <= nv; i++) if (top[names[i]] != "") printf "    %s\n%s", names[i], top[names[i]]
}'
