#!/bin/sh
# The inner guest's session for the disk benchmark (bench/disk.sh): cove-agent runs it as
#
#   sh /bench/disk-guest.sh RUNTIME_SECONDS
#
# The guest has two virtio-blk disks, told apart by their serial numbers: "tools", a read-only
# ext2 image holding fio with its shared libraries (too large for the initramfs), and "bench",
# the raw image under test. fio runs with libaio and O_DIRECT on the raw device (the guest's
# page cache is never involved), one job after the other:
#
#   seqread   --rw=read      --bs=1M --iodepth=8
#   randread  --rw=randread  --bs=4k --iodepth=32 --norandommap
#   seqwrite  --rw=write     --bs=1M --iodepth=8
#
# each for RUNTIME_SECONDS (--time_based). Around each job it prints marker lines on the
# console, on which the test host reads the VMM's CPU counters (bench/disk-testhost-init.sh):
#
#   BENCH-MARK begin JOB
#   BENCH-MARK end JOB rsect=N wsect=N rios=N wios=N   (sectors moved and requests completed
#                                          in between, /sys/block/DEV/stat)
#   BENCH-FIO job=JOB read_kib=N read_kib_s=N read_iops=N write_kib=N write_kib_s=N
#             write_iops=N runtime_ms=N    (from fio's terse output; one line)
#   BENCH-GUEST-ERR <text>
runtime=${1:-5}

err() {
    echo "BENCH-GUEST-ERR $*"
}

tools= disk=
for dev in /sys/block/vd*; do
    case $(cat "$dev/serial" 2>/dev/null) in
        tools) tools=/dev/${dev##*/} ;;
        bench) disk=/dev/${dev##*/} ;;
    esac
done
[ -n "$tools" ] && [ -n "$disk" ] || { err "no disks with serial tools and bench"; exit 1; }
mkdir -p /mnt/tools
mount -t ext4 -o ro "$tools" /mnt/tools || { err "cannot mount $tools"; exit 1; }
# fio through the loader, with the libraries of the tools image; the guest kernel has no
# System V IPC, so shmshim.so stands in for fio's shmget() segment.
fio() {
    /mnt/tools/ld.so --preload /mnt/tools/shmshim.so --library-path /mnt/tools/lib \
        /mnt/tools/fio "$@"
}
fio --version > /dev/null || { err "fio does not run"; exit 1; }
stat=/sys/block/${disk##*/}/stat
common="--filename=$disk --ioengine=libaio --direct=1 --minimal"

# Not measured: what fio maps comes in from the tools disk, the guest's buffers and the
# host's paths warm up.
fio $common --name=warmup --rw=randread --bs=4k --iodepth=32 --norandommap --runtime=1 \
    --time_based > /dev/null || { err "the warm-up job failed"; exit 1; }

for job in seqread randread seqwrite; do
    case $job in
        seqread) args="--rw=read --bs=1M --iodepth=8" ;;
        randread) args="--rw=randread --bs=4k --iodepth=32 --norandommap" ;;
        seqwrite) args="--rw=write --bs=1M --iodepth=8" ;;
    esac
    read -r rio0 _ r0 _ wio0 _ w0 _ < "$stat"
    echo "BENCH-MARK begin $job"
    # shellcheck disable=SC2086
    fio $common --name=$job $args --runtime="$runtime" --time_based > /tmp/$job.terse 2> /tmp/$job.err
    rc=$?
    read -r rio1 _ r1 _ wio1 _ w1 _ < "$stat"
    echo "BENCH-MARK end $job rsect=$((r1 - r0)) wsect=$((w1 - w0)) rios=$((rio1 - rio0)) wios=$((wio1 - wio0))"
    if [ "$rc" != 0 ]; then
        err "fio $job failed ($rc): $(head -c 300 /tmp/$job.err)"
        continue
    fi
    # Terse format 3: 6 read KiB, 7 read KiB/s, 8 read IOPS, 9 read ms; 47-50 the same for
    # writes.
    awk -F';' -v job="$job" '{
        ms = $9 > $50 ? $9 : $50
        printf "BENCH-FIO job=%s read_kib=%s read_kib_s=%s read_iops=%s write_kib=%s write_kib_s=%s write_iops=%s runtime_ms=%s\n",
            job, $6, $7, $8, $47, $48, $49, ms }' /tmp/$job.terse
done
umount /mnt/tools
