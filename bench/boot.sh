#!/bin/sh
# Cove boot benchmark: time to the guest's /init and VMM memory overhead, cove against QEMU.
#
#   bench/boot.sh [-n ITERATIONS] [--vmlinux] [--profile] [--interval US] [--duty PERCENT]
#                 [--log PATH]
#
# Inside one QEMU TCG "test host" session (a guest whose kernel has a working /dev/kvm: TCG
# emulates AMD SVM+NPT with -cpu max), it boots the same kernel and initramfs (the default
# guest, /init = cove-agent) with 1 vCPU and 256 MiB, again and again, with:
#
#   cove        cove run --serial none --boot-timer (cove's defaults: with a virtio-rng on PCI)
#   cove-norng  the same with --no-rng (no PCI device, like the QEMU machines here)
#   qemu        qemu-system-x86_64 -M microvm -accel kvm -cpu host -serial null, guest RAM in a
#               memfd, and isa-debug-exit on the boot-timer port so that QEMU exits when the
#               guest's /init writes it
#   qemu-rtc    the same with -M microvm,rtc=on (microvm has no CMOS RTC under KVM, cove has
#               one; the guest kernel's probe for the missing RTC is slow in the test host)
#
# Each run is wrapped by bootbench (bench/bootbench.c), which takes the time from fork and
# samples the VMM's resident memory outside guest RAM from /proc/PID/smaps. Iteration 0 is a
# warm-up; the VMMs take turns within every iteration, in a changing order. The summary gives
# medians, the ratios cove/QEMU and whether the targets are met (boot ratio <= 0.7; overhead
# <= 5 MiB and <= 1/4 of QEMU's). See docs/benchmarks.md.
#
#   -n N        measured iterations (default 12), after one warm-up. The order of the VMMs
#               repeats every 4 iterations for 4 VMMs (every 2n for an odd number n), so a
#               multiple of that keeps it balanced
#   --vmms LIST which of the above, e.g. "cove qemu" (default: all four; cove and qemu needed)
#   --vmlinux   boot the uncompressed ELF vmlinux instead of the bzImage (QEMU: through PVH)
#   --profile   afterwards, not part of the statistics: one more boot of each VMM whose guest
#               prints its kernel log with initcall_debug; five rounds of boots with the
#               serial console time-stamped and KVM's vCPU counters (bench/kvmstats.c); each
#               VMM's system calls up to its first KVM_RUN (strace)
#   --interval  bootbench's smaps sampling interval in microseconds (default 2000)
#   --duty      the most of one CPU bootbench's sampling may take, in percent (default 10)
#   --log       where to keep the test host's serial log (default: a new file in /tmp)
#
# The guest kernel must have CONFIG_X86_IOPL_IOPERM=y (cove-agent signals the boot with
# ioperm() + outb).
#
# The test host is emulated: absolute times are inflated many times over; only the ratios
# measured within one session mean something.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
th_name=boot.sh
. "$here/testhost-lib.sh"

iterations=12
interval=2000
duty=10
kernel_file=bzImage
vmms="cove cove-norng qemu qemu-rtc"
log=
profile=0
command_line="bench/boot.sh${*:+ $*}"
while [ $# -gt 0 ]; do
    case $1 in
        -n|--iterations) iterations=${2:?-n needs a number}; shift 2 ;;
        --vmlinux) kernel_file=vmlinux; shift ;;
        --vmms) vmms=${2:?--vmms needs a list}; shift 2 ;;
        --profile) profile=1; shift ;;
        --interval) interval=${2:?--interval needs microseconds}; shift 2 ;;
        --duty) duty=${2:?--duty needs a percentage}; shift 2 ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "boot.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for v in $vmms; do
    case $v in cove|cove-norng|qemu|qemu-rtc) ;; *) echo "boot.sh: unknown VMM '$v' in --vmms" >&2; exit 2 ;; esac
done
case " $vmms " in *" cove "*) ;; *) echo "boot.sh: --vmms needs cove" >&2; exit 2 ;; esac
case " $vmms " in *" qemu "*) ;; *) echo "boot.sh: --vmms needs qemu" >&2; exit 2 ;; esac
case $iterations in ''|*[!0-9]*|0) echo "boot.sh: -n must be a positive number" >&2; exit 2 ;; esac
case $interval in ''|*[!0-9]*|0) echo "boot.sh: --interval must be a positive number" >&2; exit 2 ;; esac
case $duty in ''|*[!0-9]*|0) echo "boot.sh: --duty must be a percentage" >&2; exit 2 ;; esac

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
# Waits for a kernel build already under way rather than starting a second one.
th_kernel
kernel_dir=$th_kernel_dir
kernel=$kernel_dir/bzImage

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Without ioperm() cove-agent cannot write the boot-timer port: cove would report no time and
# QEMU would not exit at /init.
grep -qx 'CONFIG_X86_IOPL_IOPERM=y' "$kernel_dir/.config" ||
    die "the guest kernel ($kernel_dir) lacks CONFIG_X86_IOPL_IOPERM=y (guest/kernel.config)"
guest_kernel=$kernel_dir/$kernel_file
[ -f "$guest_kernel" ] || die "no $guest_kernel"
echo "boot.sh: guest kernel: $guest_kernel"
echo "boot.sh: tree: $(git -C "$root" describe --always --dirty 2>/dev/null || echo 'not a git checkout')"
[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/cove-bench-log.XXXXXX")
: > "$log" || die "cannot write the log '$log'"

cc -O2 -static -Wall -Wextra -o "$tmp/bootbench" "$here/bootbench.c" || die "building bootbench failed"
if [ "$profile" = 1 ]; then
    cc -O2 -shared -fPIC -Wall -Wextra -o "$tmp/kvmstats.so" "$here/kvmstats.c" -ldl ||
        die "building kvmstats.so failed"
fi

# ---- The test host's initramfs ----
overlay=$tmp/overlay
mkdir -p "$overlay/bench/bin" "$overlay/bench/guest" "$overlay/usr/bin" "$overlay/usr/share/qemu"
cp "$cove" "$tmp/bootbench" "$overlay/bench/bin/"
cp "$guest_kernel" "$overlay/bench/guest/$kernel_file"
cp "$initrd" "$overlay/bench/guest/initramfs.cpio.gz"
cp "$here/testhost-common.sh" "$overlay/bench/"
# Dynamically linked programs travel with the libraries ldd lists, at the same paths.
carry() {
    th_carry "$overlay" "$1"
}
carry "$cove"
if [ "$profile" = 1 ]; then
    mkdir -p "$overlay/bench/lib"
    cp "$tmp/kvmstats.so" "$overlay/bench/lib/"
    carry "$tmp/kvmstats.so"
    if command -v strace > /dev/null; then
        cp "$(command -v strace)" "$overlay/usr/bin/strace"
        carry "$(command -v strace)"
    fi
fi
th_add_qemu "$overlay"
cat > "$overlay/bench/params" <<EOF
ITERATIONS=$iterations
INTERVAL_US=$interval
DUTY=$duty
CPUS=1
MEMORY=256M
KERNEL_FILE=$kernel_file
CMDLINE='console=ttyS0 quiet panic=-1 -- poweroff -f'
VMMS='$vmms'
PROFILE=$profile
EOF
th_initramfs "$here/testhost-init.sh" "$overlay" "$tmp/testhost.cpio.gz"
rm -rf "$overlay"

# ---- One test host session ----
th_session_begin
echo "boot.sh: booting the test host ($iterations iterations + 1 warm-up of: $vmms; serial log: $log)"
th_session "$log" "$kernel" "$tmp/testhost.cpio.gz" | awk "$th_stats"'
{ sub(/\r$/, "") }
/^BENCH-HOST / { print "  test host: " substr($0, 12) }
/^BENCH-RUN / {
    extra = field("vmm") ~ /^cove/ ? sprintf("  (boot timer %.1f + exec %.1f ms)", field("boot_timer_us") / 1000, field("exec_us") / 1000) : ""
    printf "  iter %2d  %-11s  to /init %8.1f ms   overhead %6.2f MiB   cpu %8.1f ms   after %-10s%s\n", field("iter"),
        field("vmm"), field("init_us") / 1000, field("rss_kib") / 1024, field("cpu_us") / 1000, field("after"), extra
}
/^BENCH-(ERR|STRACE) / { print "  " substr($0, 7) }
{ fflush() }'

th_session_end "$log"

# ---- Summary ----
echo
tr -d '\r' < "$log" | awk -v vmms="$vmms" -v n="$iterations" -v elapsed="$th_elapsed" \
    -v cmd="$command_line" -v load="$th_load_before / $th_load_after" -v cpus="$(nproc)" "$th_stats"'
function verdict(ok) { return ok ? "met" : "MISSED" }
/^BENCH-HOST / { host = substr($0, 12) }
/^BENCH-ERR .* iteration / { errors++ }
/^BENCH-RUN / {
    v = field("vmm")
    if (field("iter") + 0 == 0) next
    count[v]++
    init[v] = init[v] " " field("init_us")
    rss[v] = rss[v] " " field("rss_kib")
    anon[v] = anon[v] " " field("anon_kib")
    cpu[v] = cpu[v] " " field("cpu_us")
    maxrss[v] = maxrss[v] " " field("maxrss_kib")
    if (v ~ /^cove/) { timer[v] = timer[v] " " field("boot_timer_us"); exec[v] = exec[v] " " field("exec_us") }
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
    printf "boot.sh: this machine: %d CPUs, load average before / after: %s (anything else running slows the emulation)\n", cpus, load
    printf "boot.sh: session took %d s; medians over %d iterations (warm-up excluded):\n", elapsed, n
    printf "  %-11s %4s %13s %21s %13s %9s %11s\n", "vmm", "runs", "to /init ms", "(min .. max)", "overhead MiB", "anon MiB", "VMM cpu ms"
    nv = split(vmms, names, " ")
    for (i = 1; i <= nv; i++) {
        v = names[i]
        if (!count[v]) { printf "  %-11s %4d   (no valid runs)\n", v, 0; continue }
        mi[v] = median(init[v]); mr[v] = median(rss[v])
        k = split(init[v], a, " "); lo = hi = a[1]
        for (j = 2; j <= k; j++) { if (a[j] + 0 < lo + 0) lo = a[j]; if (a[j] + 0 > hi + 0) hi = a[j] }
        printf "  %-11s %4d %13.1f %9s%.0f .. %.0f) %13.2f %9.2f %11.1f\n", v, count[v], mi[v] / 1000, "(",
            lo / 1000, hi / 1000, mr[v] / 1024, median(anon[v]) / 1024, median(cpu[v]) / 1000
    }
    for (i = 1; i <= nv; i++) if (names[i] ~ /^cove/ && count[names[i]])
        printf "  %s: to /init = boot timer (main to boot port) %.1f ms + fork to main (at most `cove --version`) %.1f ms\n",
            names[i], median(timer[names[i]]) / 1000, median(exec[names[i]]) / 1000
    if (!count["cove"] || !count["qemu"]) { print "boot.sh: no ratios: cove or qemu has no valid run"; exit 1 }
    br = mi["cove"] / mi["qemu"]; mr_ = mr["cove"] / mr["qemu"]; mib = mr["cove"] / 1024
    print ""
    print "  targets: cove (its defaults) against qemu (-M microvm as it comes):"
    printf "    boot time ratio cove/qemu        %.3f     (<= 0.70: %s)\n", br, verdict(br <= 0.7)
    printf "    memory overhead ratio cove/qemu  %.3f     (<= 0.25: %s)\n", mr_, verdict(mr_ <= 0.25)
    printf "    cove memory overhead             %.2f MiB  (<= 5 MiB: %s)\n", mib, verdict(mib <= 5)
    print "  all pairs (boot time ratio / memory overhead ratio):"
    for (i = 1; i <= nv; i++) {
        if (names[i] !~ /^cove/ || !count[names[i]]) continue
        line = sprintf("    %-11s", names[i])
        for (j = 1; j <= nv; j++) if (names[j] ~ /^qemu/ && count[names[j]])
            line = line sprintf("   vs %-8s %.3f / %.3f", names[j], mi[names[i]] / mi[names[j]], mr[names[i]] / mr[names[j]])
        print line
    }
    print ""
    print "  largest mappings outside guest RAM at the peak of the last run (Rss):"
    for (i = 1; i <= nv; i++) if (top[names[i]] != "") printf "    %s\n%s", names[i], top[names[i]]
    if (errors) printf "\nboot.sh: %d runs failed (BENCH-ERR in the log) and are not counted\n", errors
}'

# ---- Profile ----
[ "$profile" = 1 ] || exit 0
echo
echo "boot.sh: profile (one extra boot each; the guest ran dmesg with initcall_debug)"
vmlinux=${guest_kernel%/*}/vmlinux
# Addresses of the kernel's functions (the kernel has no kallsyms, so initcall_debug prints
# raw addresses).
if [ -f "$vmlinux" ] && command -v nm > /dev/null; then
    nm "$vmlinux" 2>/dev/null | awk '{ print "SYM", $1, $3 }' > "$tmp/symbols"
else
    : > "$tmp/symbols"
fi
tr -d '\r' < "$log" | cat "$tmp/symbols" - | awk -v vmms="$vmms" "$th_stats"'
$1 == "SYM" { sym["0x" $2] = $3; next }
/^BENCH-PROFILE / { v = substr($2, 5); prof[v] = $0; next }
/^BENCH-IRQ / {
    v = substr($2, 5); key = $3
    if (!(key in irqdesc)) { irqorder[++nirq] = key; d = ""; for (i = 5; i <= NF; i++) d = d " " $i; irqdesc[key] = d }
    irq[v, key] = $4
    next
}
/^BENCH-KVM / {
    v = substr($2, 5)
    for (i = 4; i <= NF; i++) {
        split($i, kv, "=")
        if (!(kv[1] in statseen)) { statseen[kv[1]] = 1; statorder[++nstat] = kv[1] }
        stat[v, kv[1]] = stat[v, kv[1]] " " kv[2]
    }
    next
}
/^BENCH-TIMELINE / {
    v = substr($2, 5)
    for (i = 3; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "kernel_ms" && kv[2] != "") tk[v] = tk[v] " " kv[2]
        if (kv[1] == "init_ms" && kv[2] != "") ti[v] = ti[v] " " kv[2]
    }
    next
}
/^BENCH-DMESG / {
    v = substr($2, 5)
    line = substr($0, index($0, $2) + length($2) + 1)
    if (line ~ /^flags/) { n = split(line, f, " "); for (i = 3; i <= n; i++) flag[v, f[i]] = 1; flags[v] = line; next }
    ts = substr(line, 2) + 0
    if (line ~ /sched offset of/) { match(line, /offset of [0-9]+/); cyc[v] = substr(line, RSTART + 10, RLENGTH - 10) }
    if (line ~ /Run \/init as init process/) init[v] = ts
    if (line ~ /initcall .* returned .* after [0-9]+ usecs/) {
        match(line, /initcall [^ ]+/); fn = substr(line, RSTART + 9, RLENGTH - 9)
        if (fn in sym) fn = sym[fn]
        match(line, /after [0-9]+ usecs/); us = substr(line, RSTART + 6, RLENGTH - 11) + 0
        k = ++ncalls[v]; callname[v, k] = fn; callus[v, k] = us; total[v] += us
    }
    next
}
END {
    nv = split(vmms, names, " ")
    print "  timeline (serial console stamped by bootbench -T; medians of 5 rounds, ms since fork):"
    printf "    %-11s %22s %20s %16s\n", "vmm", "kernel decompressed at", "kernel to /init set", "total"
    for (i = 1; i <= nv; i++) {
        v = names[i]
        if (tk[v] == "" || ti[v] == "") continue
        # The phases are taken per round and then the median of each, so they need not add up.
        split(tk[v], ka, " "); k = split(ti[v], ia, " "); d = ""
        for (j = 1; j <= k; j++) d = d " " (ia[j] - ka[j])
        printf "    %-11s %22.0f %20.0f %16.0f\n", v, median(tk[v]), median(d), median(ti[v])
    }
    print "  (kernel decompressed at = VMM start-up + firmware + loading + decompression; the guest"
    print "   prints its first early console line then. /init set = after cove-agent mounted /proc etc.)"
    if (nstat) {
        print "  KVM counters of vCPU 0 and the VMM process CPU time over those runs (to power-off; medians):"
        line = sprintf("    %-24s", "")
        for (i = 1; i <= nv; i++) line = line sprintf(" %12s", names[i])
        print line
        for (r = 1; r <= nstat; r++) {
            key = statorder[r]
            if (key !~ /^(exits|io_exits|mmio_exits|halt_exits|irq_exits|irq_window_exits|request_irq_exits|signal_exits|irq_injections|insn_emulation|hypercalls|pf_taken|pf_fixed|pf_emulate|pf_guest|tlb_flush|halt_wait_ns|halt_successful_poll|halt_wakeup|nmi_injections|host_state_reload|cpu_.*_ms)$/) continue
            line = sprintf("    %-24s", key)
            for (i = 1; i <= nv; i++) {
                m = median(stat[names[i], key])
                line = line sprintf(" %12s", m == "" ? "-" : (key ~ /_ns$/ ? sprintf("%.0f ms", m / 1e6) : sprintf("%.0f", m)))
            }
            print line
        }
    }
    print ""
    for (i = 1; i <= nv; i++) {
        v = names[i]
        printf "  %s: %s\n", v, substr(prof[v], index(prof[v], "wall_us"))
        # kvmclock counts from KVM_CREATE_VM; the kernel logs its reading at kvmclock_init
        # ("sched offset of N cycles", which are nanoseconds).
        if (cyc[v] != "")
            printf "    KVM_CREATE_VM to guest kernel clock start (firmware, decompression, early boot): %.2f s\n", cyc[v] / 1e9
        printf "    guest kernel clock start to /init: %.2f s, of which initcalls %.2f s; slowest initcalls:\n", init[v], total[v] / 1e6
        # The eight slowest, by selection.
        for (r = 1; r <= 8; r++) {
            best = 0
            for (k = 1; k <= ncalls[v]; k++) if (!taken[v, k] && (best == 0 || callus[v, k] > callus[v, best])) best = k
            if (best == 0) break
            taken[v, best] = 1
            printf "      %8.1f ms  %s\n", callus[v, best] / 1000, callname[v, best]
        }
    }
    print "  interrupts the guest took up to the end of its session (/proc/interrupts, >= 20 anywhere):"
    line = sprintf("    %-6s", "")
    for (i = 1; i <= nv; i++) line = line sprintf(" %11s", names[i])
    print line
    for (r = 1; r <= nirq; r++) {
        key = irqorder[r]; big = 0
        for (i = 1; i <= nv; i++) if (irq[names[i], key] + 0 >= 20) big = 1
        if (!big) continue
        line = sprintf("    %-6s", key)
        for (i = 1; i <= nv; i++) line = line sprintf(" %11s", ((names[i], key) in irq) ? irq[names[i], key] : "-")
        print line "  " irqdesc[key]
    }
    if (flags["cove"] != "" && flags["qemu"] != "") {
        print "  CPU flags (from the guest /proc/cpuinfo):"
        only_q = only_c = ""
        for (key in flag) { split(key, p, SUBSEP); if (p[1] == "qemu" && !((("cove") SUBSEP p[2]) in flag)) only_q = only_q " " p[2]
                            if (p[1] == "cove" && !((("qemu") SUBSEP p[2]) in flag)) only_c = only_c " " p[2] }
        print "    only under QEMU:" (only_q == "" ? " none" : only_q)
        print "    only under cove:" (only_c == "" ? " none" : only_c)
    }
}'
