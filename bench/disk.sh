#!/bin/bash
# Cove disk benchmark: virtio-blk throughput, IOPS and VMM CPU per GiB, cove against QEMU, and
# cove's block backend alone against fio on the host.
#
#   bench/disk.sh [-n ITERATIONS] [--vmms "cove qemu"] [--warmup] [--runtime SECONDS]
#                 [--cache "host none"] [--image-mib N] [--log PATH] [--no-vm]
#                 [--no-backend] [--backend-runs N] [--backend-file PATH] [--baseline REV]
#
# In the VMs (skipped with --no-vm): one session of the nested QEMU "test host" (see
# docs/benchmarks.md), in which cove and QEMU (-M microvm,rtc=on,pcie=on, virtio-blk-pci,
# aio=io_uring) take turns
# booting the same guest (1 vCPU, 512 MiB, the default initramfs plus bench/disk-guest.sh) with the same two disks: a read-only ext2 "tools" image with fio and its
# libraries, and the image under test. In the guest fio (libaio, O_DIRECT on the raw device)
# runs three jobs: seqread (1 MiB, depth 8), randread (4 KiB, depth 32), seqwrite (1 MiB,
# depth 8). The test host reads the VMM's CPU time (/proc/PID/stat: utime, stime, guest_time
# of all threads) at console markers around each job (bench/disk-testhost-init.sh).
#   cache modes: host   the image is a file on the test host's tmpfs, in the page cache
#                       (cove cache=host, QEMU cache=writeback)
#                none   the image is a raw disk of the test host (virtio-blk from the outer
#                       QEMU, over a file on this machine), opened with O_DIRECT
#                       (cove cache=none, QEMU cache=none)
# Every guest runs a 1 s fio job before the measured ones; --warmup adds an iteration 0 of
# 2 s jobs that is not counted. The VMMs alternate AB, BA.
#
# The backend alone (skipped with --no-backend), on this machine, no VM: fio (io_uring) and
# bench/blkbench.c (cove's src/lib/block/raw.c driven like virtio-blk drives it) on the same
# file with the same jobs, buffered and O_DIRECT, --backend-runs times each (default 3),
# alternating.
#
#   -n N             measured iterations (default 3)
#   --vmms LIST      which VMMs (default "cove qemu"; "cove-base" needs --baseline;
#                    "qemu-nomerge" is QEMU with request-merging=off on the disk under test)
#   --baseline REV   also build cove from git revision REV (in a temporary directory) and add
#                    it as "cove-base" to the VMMs, to compare a change in the same session
#   --warmup         one more iteration first, not counted
#   --runtime S      seconds per fio job in the VMs and on the host (default 5)
#   --cache LIST     cache modes for the VMs (default "host none")
#   --image-mib N    size of the image under test (default 1024)
#   --backend-file   the host-side image (default: a new file of random data in $TMPDIR or
#                    /tmp, removed afterwards). It must be on a file system that accepts
#                    O_DIRECT (not tmpfs); the seqwrite jobs overwrite it
#   --log PATH       where to keep the test host's serial log (default: a new file in /tmp)
#
# Needs: qemu-system-x86 (and qemu-system-data for qboot), fio, e2fsprogs (mke2fs -d), a
# built tree (meson setup build; bench/meson.build builds blkbench and shmshim.so, the System V shared
# memory stand-in fio needs in a guest kernel without CONFIG_SYSVIPC).
# Absolute figures inside the doubly emulated test host mean little; the cove/QEMU ratios
# measured in one session do.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
th_name=disk.sh
# shellcheck source=bench/testhost-lib.sh
. "$here/testhost-lib.sh"

iterations=3
runtime=5
vmms="cove qemu"
warmup=0
caches="host none"
image_mib=1024
log=
vm=1
backend=1
backend_runs=3
backend_file=
baseline=
command_line="bench/disk.sh${*:+ $*}"
while [ $# -gt 0 ]; do
    case $1 in
        -n|--iterations) iterations=${2:?-n needs a number}; shift 2 ;;
        --runtime) runtime=${2:?--runtime needs seconds}; shift 2 ;;
        --cache) caches=${2:?--cache needs a list}; shift 2 ;;
        --vmms) vmms=${2:?--vmms needs a list}; shift 2 ;;
        --warmup) warmup=1; shift ;;
        --image-mib) image_mib=${2:?--image-mib needs a number}; shift 2 ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        --no-vm) vm=0; shift ;;
        --no-backend) backend=0; shift ;;
        --backend-runs) backend_runs=${2:?--backend-runs needs a number}; shift 2 ;;
        --backend-file) backend_file=${2:?--backend-file needs a path}; shift 2 ;;
        --baseline) baseline=${2:?--baseline needs a git revision}; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        *) echo "disk.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$iterations" "$runtime" "$image_mib" "$backend_runs"; do
    case $n in ''|*[!0-9]*|0) echo "disk.sh: -n, --runtime, --image-mib and --backend-runs take positive numbers" >&2; exit 2 ;; esac
done
for c in $caches; do
    case $c in host|none) ;; *) echo "disk.sh: unknown cache mode '$c' (host, none)" >&2; exit 2 ;; esac
done
[ -n "$caches" ] || { echo "disk.sh: --cache needs at least one mode" >&2; exit 2; }
[ -n "$baseline" ] && case " $vmms " in *" cove-base "*) ;; *) vmms="$vmms cove-base" ;; esac
for v in $vmms; do
    case $v in
        cove|qemu|qemu-nomerge) ;;
        cove-base) [ -n "$baseline" ] || { echo "disk.sh: cove-base needs --baseline REV" >&2; exit 2; } ;;
        *) echo "disk.sh: unknown VMM '$v' (cove, cove-base, qemu, qemu-nomerge)" >&2; exit 2 ;;
    esac
done

die() {
    th_die "$@"
}

command -v fio > /dev/null || die "fio missing: apt-get install fio"
mke2fs=$(PATH=$PATH:/sbin:/usr/sbin command -v mke2fs) || die "mke2fs missing: apt-get install e2fsprogs"
[ "$vm" = 1 ] && { command -v qemu-system-x86_64 > /dev/null ||
    die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"; }

echo "disk.sh: command: $command_line"
echo "disk.sh: building cove, cove-agent, blkbench and the guest initramfs"
ninja -C "$root/build" > /dev/null || die "ninja -C build failed (run meson setup build first?)"
cove=$root/build/src/cli/cove
agent=$root/build/src/agent/cove-agent
blkbench=$root/build/bench/blkbench
[ -x "$blkbench" ] || die "$blkbench was not built (is bench/ in meson.build?)"
echo "disk.sh: tree: $(git -C "$root" describe --always --dirty 2>/dev/null || echo 'not a git checkout')"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-disk.XXXXXX")
cleanup() {
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- In the VMs ----
run_vms() {
    th_kernel
    local kernel=$th_kernel_dir/bzImage
    echo "disk.sh: guest kernel: $kernel"
    [ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/cove-disk-log.XXXXXX")
    : > "$log" || die "cannot write the log '$log'"

    # The tools disk: fio, the loader and every library ldd lists, flat.
    local tools=$tmp/tools lib
    mkdir -p "$tools/lib"
    cp -L "$(command -v fio)" "$tools/fio"
    for lib in $(ldd "$(command -v fio)" | grep -o '/[^ ]*'); do
        cp -L "$lib" "$tools/lib/"
    done
    cp -L /lib64/ld-linux-x86-64.so.2 "$tools/ld.so"
    cp "$root/build/bench/shmshim.so" "$tools/"
    local mib=$(( $(du -sm "$tools" | cut -f1) + 16 ))
    truncate -s "${mib}M" "$tmp/tools.img"
    "$mke2fs" -q -F -t ext2 -L tools -d "$tools" "$tmp/tools.img" "${mib}M" ||
        die "mke2fs -d failed on the tools image"
    rm -rf "$tools"

    # The guest: the default initramfs (cove-agent as /init) plus the session script.
    mkdir -p "$tmp/guest-overlay/bench"
    cp "$here/disk-guest.sh" "$tmp/guest-overlay/bench/"
    "$root/guest/build-initramfs.sh" --init "$agent" --overlay "$tmp/guest-overlay" \
        --output "$tmp/guest.cpio.gz" || die "building the guest initramfs failed"

    # The test host.
    local overlay=$tmp/overlay
    mkdir -p "$overlay/bench/bin" "$overlay/bench/guest"
    cp "$cove" "$overlay/bench/bin/"
    th_carry "$overlay" "$cove"
    if [ -n "$baseline" ]; then
        th_build_baseline "$baseline" "$tmp/base"
        cp "$th_baseline_cove" "$overlay/bench/bin/cove-base"
        th_carry "$overlay" "$overlay/bench/bin/cove-base"
    fi
    th_add_qemu "$overlay"
    cp "$kernel" "$overlay/bench/guest/bzImage"
    cp "$tmp/guest.cpio.gz" "$overlay/bench/guest/initramfs.cpio.gz"
    cp "$here/testhost-common.sh" "$overlay/bench/"
    cat > "$overlay/bench/params" <<EOF
ITERATIONS=$iterations
VMMS='$vmms'
WARMUP=$warmup
RUNTIME=$runtime
WARMUP_RUNTIME=2
CACHES='$caches'
IMAGE_MIB=$image_mib
MEMORY=512M
TIMEOUT=$(( 3 * runtime * 4 + 300 ))
CMDLINE_BASE='console=ttyS0 quiet panic=-1'
EOF
    th_initramfs "$here/disk-testhost-init.sh" "$overlay" "$tmp/testhost.cpio.gz"
    rm -rf "$overlay"

    local disks=(-drive "file=$tmp/tools.img,format=raw,if=none,id=tools,readonly=on"
                 -device virtio-blk-pci,drive=tools,serial=tools)
    case " $caches " in
        *" none "*)
            # Written out, so that the outer QEMU reads no holes.
            dd if=/dev/zero of="$tmp/scratch.img" bs=1M count="$image_mib" status=none ||
                die "cannot write the $image_mib MiB scratch image in $tmp"
            disks+=(-drive "file=$tmp/scratch.img,format=raw,if=none,id=scratch,cache=writeback,aio=io_uring"
                    -device virtio-blk-pci,drive=scratch,serial=scratch) ;;
    esac

    th_session_begin
    echo "disk.sh: booting the test host ($iterations iterations of $vmms, warm-up $warmup, cache modes: $caches; serial log: $log)"
    th_session "$log" "$kernel" "$tmp/testhost.cpio.gz" "${disks[@]}" | awk "$th_stats"'
    { sub(/\r$/, "") }
    /^BENCH-HOST / { print "  test host: " substr($0, 12) }
    /^BENCH-JOB / {
        gib = (field("rsect") + field("wsect")) * 512 / 2^30
        cpu = (field("utime") + field("stime")) * 10
        ios = field("rios") + field("wios")
        printf "  iter %d  %-9s cache=%-4s %-8s %8.1f MiB/s %7.0f IOPS   VMM cpu %6d ms (guest %6d)  %.3f GiB  %s KiB/request\n",
            field("iter"), field("vmm"), field("cache"), field("job"),
            (field("read_kib_s") + field("write_kib_s")) / 1024, field("read_iops") + field("write_iops"),
            cpu, field("gtime") * 10, gib, (ios > 0 ? sprintf("%.0f", gib * 2^20 / ios) : "-")
    }
    /^BENCH-VM / { printf "  iter %d  %-9s cache=%-4s whole run %.1f s, status %s\n", field("iter"), field("vmm"), field("cache"), field("wall_ms") / 1000, field("status") }
    /^BENCH-ERR / { print "  " substr($0, 7) }
    { fflush() }'
    th_session_end "$log"
    vm_note="test host session $th_elapsed s; load average on this machine before / after: $th_load_before / $th_load_after"
}

vm_summary() {
    tr -d '\r' < "$log" | awk -v caches="$caches" -v vmms="$vmms" -v n="$iterations" -v note="$vm_note" "$th_stats"'
    /^BENCH-HOST / { host = substr($0, 12) }
    /^BENCH-ERR .* iteration / { errors++ }
    /^BENCH-JOB / {
        if (field("iter") + 0 == 0) next
        k = field("vmm") SUBSEP field("cache") SUBSEP field("job")
        count[k]++
        gib = (field("rsect") + field("wsect")) * 512 / 2^30
        mbs[k] = mbs[k] " " (field("read_kib_s") + field("write_kib_s")) / 1024
        iops[k] = iops[k] " " (field("read_iops") + field("write_iops"))
        # Clock ticks of 10 ms (USER_HZ on x86).
        tot = (field("utime") + field("stime")) * 10
        out = tot - field("gtime") * 10
        cpu[k] = cpu[k] " " (gib > 0 ? tot / gib : 0)
        vmmcpu[k] = vmmcpu[k] " " (gib > 0 ? out / gib : 0)
    }
    END {
        print "disk.sh: test host: " host
        print "disk.sh: " note
        printf "disk.sh: medians over %d iterations (warm-up excluded); CPU = the VMM process, ms per GiB moved\n", n
        printf "  %-5s %-9s %-8s %4s %10s %9s %14s %18s\n", "cache", "vmm", "job", "runs", "MiB/s", "IOPS", "CPU ms/GiB", "outside guest"
        nc = split(caches, cs, " ")
        split("seqread randread seqwrite", jobs, " ")
        nv = split(vmms, vs, " ")
        for (c = 1; c <= nc; c++) for (j = 1; j <= 3; j++) for (v = 1; v <= nv; v++) {
            vmm = vs[v]
            k = vmm SUBSEP cs[c] SUBSEP jobs[j]
            if (!count[k]) { printf "  %-5s %-9s %-8s %4d   (no valid runs)\n", cs[c], vmm, jobs[j], 0; continue }
            m_mbs[k] = median(mbs[k]); m_iops[k] = median(iops[k]); m_cpu[k] = median(cpu[k]); m_out[k] = median(vmmcpu[k])
            printf "  %-5s %-9s %-8s %4d %10.1f %9.0f %14.0f %18.0f\n", cs[c], vmm, jobs[j], count[k], m_mbs[k], m_iops[k], m_cpu[k], m_out[k]
        }
        print ""
        # cove against qemu, cove-base against qemu, cove against cove-base: whichever ran.
        split("cove cove-base cove cove qemu-nomerge", first, " "); split("qemu qemu cove-base qemu-nomerge qemu", second, " ")
        for (p = 1; p <= 5; p++) {
            if (index(" " vmms " ", " " first[p] " ") == 0 || index(" " vmms " ", " " second[p] " ") == 0) continue
            printf "  ratios %s/%s (throughput: higher is better for %s; CPU: lower is better):\n", first[p], second[p], first[p]
            printf "  %-5s %-8s %12s %12s %16s\n", "cache", "job", "throughput", "CPU/GiB", "outside guest"
            for (c = 1; c <= nc; c++) for (j = 1; j <= 3; j++) {
                a = first[p] SUBSEP cs[c] SUBSEP jobs[j]; b = second[p] SUBSEP cs[c] SUBSEP jobs[j]
                if (!count[a] || !count[b]) continue
                t = jobs[j] == "randread" ? m_iops[a] / m_iops[b] : m_mbs[a] / m_mbs[b]
                printf "  %-5s %-8s %12.3f %12.3f %16.3f\n", cs[c], jobs[j], t,
                    (m_cpu[b] > 0 ? m_cpu[a] / m_cpu[b] : 0), (m_out[b] > 0 ? m_out[a] / m_out[b] : 0)
            }
        }
        if (errors) printf "\ndisk.sh: %d runs failed (BENCH-ERR in the log) and are not counted\n", errors
    }'
}

# ---- The backend alone, on this machine ----
run_backend() {
    local file=$backend_file made=0
    if [ -z "$file" ]; then
        file=$tmp/backend.img
        made=1
    fi
    if [ ! -f "$file" ] || [ "$made" = 1 ]; then
        # Real data, written out: no holes.
        head -c "$((image_mib * 1024 * 1024))" /dev/urandom > "$file" || die "cannot write $file"
        sync "$file"
    fi
    local fstype
    fstype=$(stat -f -c %T "$file")
    echo "disk.sh: backend alone: $file (${image_mib} MiB on $fstype), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    local results=$tmp/backend.results r direct job mode bs depth
    : > "$results"
    for r in $(seq 1 "$backend_runs"); do
        for direct in 1 0; do
            for job in seqread randread seqwrite; do
                case $job in
                    seqread) mode=read bs=1048576 depth=8 ;;
                    randread) mode=randread bs=4096 depth=32 ;;
                    seqwrite) mode=write bs=1048576 depth=8 ;;
                esac
                # fio and blkbench alternate which goes first.
                local order="fio blkbench"
                [ $(( (r + direct) % 2 )) = 0 ] && order="blkbench fio"
                for tool in $order; do
                    if [ "$tool" = fio ]; then
                        local args=(--name="$job" --filename="$file" --ioengine=io_uring
                                    --direct="$direct" --rw="$mode" --bs="$bs" --iodepth="$depth"
                                    --runtime="$runtime" --time_based --minimal --invalidate=0)
                        [ "$job" = randread ] && args+=(--norandommap)
                        # Terse 3: 6/7/8/9 read KiB, KiB/s, IOPS, ms; 47-50 the same for
                        # writes; 88/89 user/system CPU in % of the run (fio's getrusage of the
                        # job process, io_uring workers included).
                        fio "${args[@]}" | awk -F';' -v r="$r" -v d="$direct" -v job="$job" '{
                            ms = $9 > $50 ? $9 : $50
                            sub(/%/, "", $88); sub(/%/, "", $89)
                            printf "fio %s %s %s %.1f %.0f %.0f %.0f\n", r, d, job, ($7 + $48) / 1024, $8 + $49,
                                $6 + $47, ($88 + $89) / 100 * ms }' >> "$results"
                    else
                        local flags=(-q "$depth" -b "$bs" -t "$runtime")
                        [ "$direct" = 1 ] && flags+=(-d)
                        "$blkbench" "${flags[@]}" "$mode" "$file" | awk -v r="$r" -v d="$direct" -v job="$job" '
                            function f(name,    i, kv) { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] } }
                            { printf "blkbench %s %s %s %s %s %.0f %.0f\n", r, d, job, f("mib_s"), f("iops"),
                                f("bytes") / 1024, f("cpu_user_ms") + f("cpu_sys_ms") }' >> "$results"
                    fi
                done
            done
        done
    done
    awk -v runs="$backend_runs" "$th_stats"'
    {
        k = $1 SUBSEP $3 SUBSEP $4
        printf "  run %s %-8s direct=%s %-8s %9.1f MiB/s %8.0f IOPS  cpu %6.0f ms\n", $2, $1, $3, $4, $5, $6, $8
        mbs[k] = mbs[k] " " $5; iops[k] = iops[k] " " $6
        # CPU over the timed part, per GiB.
        cpu[k] = cpu[k] " " ($7 > 0 ? $8 / ($7 / 2^20) : 0)
    }
    END {
        printf "\ndisk.sh: backend alone, medians of %d runs (fio: io_uring; blkbench: cove'"'"'s block backend):\n", runs
        printf "  %-7s %-8s %12s %12s %9s %10s %14s %14s\n", "direct", "job", "fio MiB/s", "cove MiB/s", "fio IOPS", "cove IOPS", "cove/fio", "CPU ms/GiB f/c"
        split("seqread randread seqwrite", jobs, " ")
        for (d = 1; d >= 0; d--) for (j = 1; j <= 3; j++) {
            a = "blkbench" SUBSEP d SUBSEP jobs[j]; b = "fio" SUBSEP d SUBSEP jobs[j]
            fm = median(mbs[b]); cm = median(mbs[a]); fi = median(iops[b]); ci = median(iops[a])
            printf "  %-7s %-8s %12.1f %12.1f %9.0f %10.0f %14.3f %7.0f/%.0f\n", (d ? "O_DIRECT" : "buffered"), jobs[j], fm, cm, fi, ci,
                (fi > 0 ? ci / fi : 0), median(cpu[b]), median(cpu[a])
        }
    }' "$results"
    [ "$made" = 1 ] && rm -f "$file"
    return 0
}

if [ "$vm" = 1 ]; then
    run_vms
    echo
    vm_summary
fi
if [ "$backend" = 1 ]; then
    echo
    run_backend
fi
