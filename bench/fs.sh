#!/bin/bash
# Cove directory-sharing benchmark: cove's virtio-fs (--share, its own FUSE server) against
# QEMU's virtio-9p on the same folder, and the same work done natively.
#
#   bench/fs.sh [-n ITERATIONS] [--runs LIST] [--mib N] [--files N] [--tree DIR]
#               [--baseline REV] [--log PATH]
#
# One session of the nested QEMU "test host" (see docs/benchmarks.md), in which these take
# turns (a Williams design, bench/testhost-common.sh; iteration 0 is a smaller warm-up, not
# counted) on one folder of the test host's tmpfs:
#
#   cove           cove run --share DIR:/mnt/share           virtio-fs over virtio-pci
#   cove-never     cove run --share DIR:/mnt/share:cache=never (direct I/O, nothing cached)
#   cove-base      cove built from --baseline REV, as cove (e.g. the tree before a change)
#   cove-base-never  the same with cache=never
#   cove-raN       the default share with its read-ahead set to N KiB by the guest
#                  (cove-agent sets 1024; Linux's FUSE default is 128)
#   qemu-9p-loose  qemu-system-x86_64 -M microvm,rtc=on,pcie=on -accel kvm
#                  -fsdev local,path=DIR,security_model=passthrough
#                  -device virtio-9p-pci; mounted msize=512000,cache=loose
#   qemu-9p-none   the same, mounted msize=512000,cache=none (9p's default)
#   native         the same work by the test host itself on DIR (the 2x reference)
#
# Every VM boots the same kernel and initramfs (cove-agent as /init, plus bench/fs-guest.sh,
# bench/fsbench.c and the tarball), 1 vCPU, 512 MiB, and runs bench/fs-guest.sh: dd write and
# read of a MIB file, create and stat of FILES small files, tar x of a source tree, with the
# guest's caches dropped before each job, each timed in the guest (fsbench, CLOCK_MONOTONIC).
#
#   -n N         measured iterations (default 4: with 4 runs, each follows each other once)
#   --runs LIST  which of the above (default "cove qemu-9p-loose qemu-9p-none native")
#   --mib N      size of the sequential file (default 256)
#   --files N    small files (default 10000)
#   --tree DIR   the source tree for tar x (default: include/linux of
#                /usr/src/linux-source-6.1.tar.xz, about 2,600 files, 24 MB)
#   --baseline REV  build cove from git revision REV too (in a temporary directory), for the
#                cove-base runs; only its cove binary is used (cove-agent is this tree's)
#   --log PATH   where to keep the test host's serial log (default: a new file in /tmp)
#
# Needs: qemu-system-x86 (built with virtfs, as Debian's is), a built tree (meson setup
# build). Absolute figures inside the doubly emulated test host mean little; ratios measured
# in one session do.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
th_name=fs.sh
# shellcheck source=bench/testhost-lib.sh
. "$here/testhost-lib.sh"

iterations=4
runs="cove qemu-9p-loose qemu-9p-none native"
mib=256
files=10000
tree=
baseline=
log=
command_line="bench/fs.sh${*:+ $*}"
while [ $# -gt 0 ]; do
    case $1 in
        -n|--iterations) iterations=${2:?-n needs a number}; shift 2 ;;
        --runs) runs=${2:?--runs needs a list}; shift 2 ;;
        --mib) mib=${2:?--mib needs a number}; shift 2 ;;
        --files) files=${2:?--files needs a number}; shift 2 ;;
        --tree) tree=${2:?--tree needs a directory}; shift 2 ;;
        --baseline) baseline=${2:?--baseline needs a git revision}; shift 2 ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) echo "fs.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$iterations" "$mib" "$files"; do
    case $n in ''|*[!0-9]*|0) echo "fs.sh: -n, --mib and --files take positive numbers" >&2; exit 2 ;; esac
done
for r in $runs; do
    case $r in cove|cove-never|cove-ra[0-9]*|qemu-9p-loose|qemu-9p-none|native) ;;
        cove-base|cove-base-never)
            [ -n "$baseline" ] || { echo "fs.sh: run '$r' needs --baseline REV" >&2; exit 2; } ;;
        *) echo "fs.sh: unknown run '$r' (cove, cove-never, cove-base, cove-base-never, cove-raN, qemu-9p-loose, qemu-9p-none, native)" >&2; exit 2 ;; esac
done
[ -z "$tree" ] || [ -d "$tree" ] || { echo "fs.sh: --tree '$tree' is not a directory" >&2; exit 2; }

command -v qemu-system-x86_64 > /dev/null || th_die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
qemu-system-x86_64 -device help 2>&1 | grep -q '"virtio-9p-pci"' ||
    th_die "this qemu-system-x86_64 has no virtio-9p-pci (built without virtfs)"
[ -n "$tree" ] || [ -f /usr/src/linux-source-6.1.tar.xz ] ||
    th_die "no --tree and no /usr/src/linux-source-6.1.tar.xz: apt-get install linux-source-6.1, or pass --tree DIR"

echo "fs.sh: command: $command_line"
echo "fs.sh: building cove, cove-agent, fsbench and the guest initramfs"
ninja -C "$root/build" > /dev/null || th_die "ninja -C build failed (run meson setup build first?)"
cove=$root/build/src/cli/cove
agent=$root/build/src/agent/cove-agent
fsbench=$root/build/bench/fsbench
[ -x "$fsbench" ] || th_die "$fsbench was not built (is bench/ in meson.build?)"
echo "fs.sh: tree: $(git -C "$root" describe --always --dirty 2>/dev/null || echo 'not a git checkout')"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-fs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/cove-fs-log.XXXXXX")
: > "$log" || th_die "cannot write the log '$log'"

# The baseline: the tree at REV, built apart.
[ -z "$baseline" ] || th_build_baseline "$baseline" "$tmp/base"

th_kernel
kernel=$th_kernel_dir/bzImage
echo "fs.sh: guest kernel: $kernel"
grep -q '^CONFIG_NET_9P_VIRTIO=y' "$root/guest/kernel.config" ||
    th_die "guest/kernel.config lacks CONFIG_NET_9P_VIRTIO=y (and 9P_FS): QEMU's guest could not mount 9p"

# The tarball: owner 0:0, no compression (the guest would spend its time in gunzip).
if [ -z "$tree" ]; then
    echo "fs.sh: unpacking include/linux from /usr/src/linux-source-6.1.tar.xz"
    tar -C "$tmp" -xJf /usr/src/linux-source-6.1.tar.xz linux-source-6.1/include/linux
    tree=$tmp/linux-source-6.1/include/linux
fi
mkdir -p "$tmp/guest-overlay/bench/bin"
tar -C "$(dirname "$tree")" --owner=0 --group=0 -cf "$tmp/guest-overlay/bench/tree.tar" "$(basename "$tree")"
# find's count of what tar x makes: the top directory ("tree") and everything in it.
tree_entries=$(( $(find "$tree" | wc -l) + 1 ))
echo "fs.sh: tar x of $tree: $(find "$tree" -type f | wc -l) files, $tree_entries entries, $(du -sm "$tmp/guest-overlay/bench/tree.tar" | cut -f1) MB"
rm -rf "$tmp/linux-source-6.1"

# The guest: the default initramfs (cove-agent as /init) plus the workload.
cp "$here/fs-guest.sh" "$tmp/guest-overlay/bench/"
cp "$fsbench" "$tmp/guest-overlay/bench/bin/"
"$root/guest/build-initramfs.sh" --init "$agent" --overlay "$tmp/guest-overlay" \
    --output "$tmp/guest.cpio.gz" || th_die "building the guest initramfs failed"

# The test host: the same files again for the native runs.
overlay=$tmp/overlay
cp -r "$tmp/guest-overlay" "$overlay"
rm -rf "$tmp/guest-overlay"
mkdir -p "$overlay/bench/guest"
cp "$cove" "$overlay/bench/bin/"
th_carry "$overlay" "$cove"
if [ -n "$baseline" ]; then
    cp "$th_baseline_cove" "$overlay/bench/bin/cove-base"
    th_carry "$overlay" "$overlay/bench/bin/cove-base"
fi
th_add_qemu "$overlay"
cp "$kernel" "$overlay/bench/guest/bzImage"
cp "$tmp/guest.cpio.gz" "$overlay/bench/guest/initramfs.cpio.gz"
cp "$here/testhost-common.sh" "$overlay/bench/"
cat > "$overlay/bench/params" <<EOF
ITERATIONS=$iterations
RUNS='$runs'
MIB=$mib
FILES=$files
WARM_MIB=$(( mib < 8 ? mib : 8 ))
WARM_FILES=$(( files < 20 ? files : 20 ))
TREE_ENTRIES=$tree_entries
MEMORY=512M
TIMEOUT=1200
EOF
th_initramfs "$here/fs-testhost-init.sh" "$overlay" "$tmp/testhost.cpio.gz"
rm -rf "$overlay"

th_session_begin
echo "fs.sh: booting the test host ($iterations iterations + a warm-up of: $runs; serial log: $log)"
th_session "$log" "$kernel" "$tmp/testhost.cpio.gz" | awk -v mib="$mib" "$th_stats"'
{ sub(/\r$/, "") }
/^BENCH-HOST / { print "  test host: " substr($0, 12) }
/^BENCH-MOUNT / && field("iter") == 1 { print "  mount: " substr($0, 13) }
/^BENCH-JOB / { printf "  iter %d  %-13s %-6s %10.1f ms\n", field("iter"), field("vmm"), field("job"), field("us") / 1000 }
/^BENCH-VM / { printf "  iter %d  %-13s whole run %.1f s, status %s\n", field("iter"), field("vmm"), field("wall_ms") / 1000, field("status") }
/^BENCH-ERR / { print "  " substr($0, 7) }
{ fflush() }'
th_session_end "$log"

# ---- Summary ----
echo
tr -d '\r' < "$log" | awk -v runs="$runs" -v n="$iterations" -v mib="$mib" -v files="$files" \
    -v cmd="$command_line" -v elapsed="$th_elapsed" -v load="$th_load_before / $th_load_after" "$th_stats"'
function figure(job, us) {
    # MiB/s for the sequential jobs, files per second for create and stat, seconds for untar.
    if (job == "write" || job == "read") return mib / (us / 1e6)
    if (job == "create" || job == "stat") return files / (us / 1e6)
    return us / 1e6
}
function unit(job) { return job == "untar" ? "s" : (job == "write" || job == "read") ? "MiB/s" : "files/s" }
function better(job, a, b) { return job == "untar" ? a < b : a > b }
/^BENCH-HOST / { host = substr($0, 12) }
/^BENCH-ERR / { errors++; if (match($0, /iteration [0-9]+/)) bad[$2, substr($0, RSTART + 10, RLENGTH - 10) + 0] = 1 }
/^BENCH-JOB / {
    it = field("iter") + 0
    if (it == 0 || field("status") != "0") next
    k = field("vmm") SUBSEP field("job")
    val[k, it] = figure(field("job"), field("us"))
    if (index($0, " utime=")) {
        # ms of the VMM per MiB moved (write, read): in all, and outside guest mode.
        ticks = field("utime") + field("stime")
        cpu[k, it] = ticks * 10 / mib
        host_cpu[k, it] = (ticks - field("gtime")) * 10 / mib
        wall[k, it] = field("us") / 1000 / mib
    }
}
END {
    print "fs.sh: " cmd
    print "fs.sh: test host: " host
    printf "fs.sh: session %d s; load average on this machine before / after: %s\n", elapsed, load
    printf "fs.sh: every run (iterations 1..%d; warm-up excluded) and medians; %s\n", n,
        errors ? errors " BENCH-ERR lines (see the log); runs with an error are left out" : "no errors"
    nr = split(runs, rs, " ")
    nj = split("write read create stat untar", jobs, " ")
    for (j = 1; j <= nj; j++) {
        job = jobs[j]
        printf "  %s (%s)\n", job, unit(job)
        for (r = 1; r <= nr; r++) {
            v = rs[r]; list = ""; line = ""
            for (it = 1; it <= n; it++) {
                if (((v SUBSEP job, it) in val) && !((v, it) in bad)) {
                    x = val[v SUBSEP job, it]; list = list " " x; line = line sprintf(" %9.1f", x)
                } else line = line sprintf(" %9s", "-")
            }
            med[v, job] = median(list)
            printf "    %-16s %s   median %s\n", v, line, med[v, job] == "" ? "-" : sprintf("%.1f", med[v, job])
        }
    }
    print ""
    print "  cove against the best 9p (ratio > 1: cove better; target > 1) and against native (target >= 0.5 for write/read):"
    for (j = 1; j <= nj; j++) {
        job = jobs[j]; c = med["cove", job]; best = ""; bname = ""
        for (r = 1; r <= nr; r++) {
            v = rs[r]
            if (v !~ /^qemu-9p/ || med[v, job] == "") continue
            if (best == "" || better(job, med[v, job], best)) { best = med[v, job]; bname = v }
        }
        s = sprintf("    %-6s", job)
        if (c != "" && best != "") {
            ratio = job == "untar" ? best / c : c / best
            s = s sprintf("  vs %-13s %.2f (%s)", bname, ratio, ratio > 1 ? "met" : "MISSED")
        }
        nat = med["native", job]
        if (c != "" && nat != "") {
            ratio = job == "untar" ? nat / c : c / nat
            s = s sprintf("   vs native %.3f", ratio)
            if (job == "write" || job == "read") s = s sprintf(" (%s)", ratio >= 0.5 ? "within 2x: met" : "within 2x: MISSED")
        }
        print s
    }
    print ""
    print "  ms per MiB for write and read: the job in the guest, the VMM process in all, and outside guest mode (medians):"
    for (j = 1; j <= 2; j++) {
        job = jobs[j]
        for (r = 1; r <= nr; r++) {
            v = rs[r]; lw = lc = lh = ""
            for (it = 1; it <= n; it++) {
                if (!((v SUBSEP job, it) in cpu) || ((v, it) in bad)) continue
                lw = lw " " wall[v SUBSEP job, it]; lc = lc " " cpu[v SUBSEP job, it]; lh = lh " " host_cpu[v SUBSEP job, it]
            }
            if (lw != "")
                printf "    %-6s %-16s job %7.2f   VMM %7.2f   outside guest %7.2f\n", job, v, median(lw), median(lc), median(lh)
        }
    }
    split("cove cove-never", news, " "); split("cove-base cove-base-never", olds, " ")
    for (p = 1; p <= 2; p++) {
        if (index(" " runs " ", " " olds[p] " ") == 0 || index(" " runs " ", " " news[p] " ") == 0) continue
        s = sprintf("  %s against %s (> 1: this tree better):", news[p], olds[p])
        for (j = 1; j <= nj; j++) {
            job = jobs[j]; a = med[news[p], job]; b = med[olds[p], job]
            if (a == "" || b == "") continue
            s = s sprintf("  %s %.2f", job, job == "untar" ? b / a : a / b)
        }
        print s
    }
}'
