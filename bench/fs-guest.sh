#!/bin/sh
# The workload of the directory-sharing benchmark (bench/fs.sh), run by cove-agent in the
# inner guest, and by the test host itself for the native reference:
#
#   sh /bench/fs-guest.sh KIND DIR MIB FILES TARBALL
#
# KIND is how DIR is reached:
#   virtiofs      cove's share, already mounted on DIR by cove-agent (--share HOST:DIR),
#                 which sets its read-ahead to 1 MiB
#   virtiofs-raN  the same with the read-ahead set to N KiB (128: Linux's default for a
#                 FUSE mount, what cove-agent left before)
#   9p-CACHE      QEMU's virtio-9p, tag "share", mounted here with
#                 -o trans=virtio,version=9p2000.L,msize=512000,cache=CACHE
#                 (512000 is the most this kernel's virtio transport takes: 125 pages)
#   native        DIR is the test host's own tmpfs folder: no VM at all
#
# In a VM, 200 MiB of guest RAM is touched once first (see below). Then, in a fresh
# directory under DIR, with every cache of this kernel dropped before each
# job (sync; echo 3 > /proc/sys/vm/drop_caches), so that no job reads what the previous one
# left in the guest's page cache or dentry cache:
#
#   write   dd if=/dev/zero of=big bs=1M count=MIB conv=fsync
#   read    dd if=big of=/dev/null bs=1M
#   create  FILES files of 1 KiB (fsbench create: open O_CREAT|O_EXCL, write, close)
#   stat    lstat of each of them (fsbench stat)
#   untar   busybox tar xf TARBALL (uncompressed, from the initramfs) into the directory
#           (not with TARBALL "-": the warm-up)
#
# each timed by fsbench (CLOCK_MONOTONIC, fork to reap) and reported on the console as
#
#   BENCH-MOUNT <DIR's line of /proc/mounts> ra_kb=N   (N: its read-ahead, if it has a bdi)
#   BENCH-MARK begin JOB                               (right before each job: the test host
#                                                       reads the VMM's CPU time here and at
#                                                       the job's BENCH-FS line)
#   BENCH-FS job=JOB us=N status=S
#   BENCH-GUEST-ERR <text>
#
# The test host checks the result of the work on its side (the file's size, the files'
# count) and removes it.
kind=$1 dir=$2 mib=$3 files=$4 tarball=$5
T=/bench/bin/fsbench

err() {
    echo "BENCH-GUEST-ERR $*"
}

case $kind in
    9p-*)
        mkdir -p "$dir"
        mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,cache=${kind#9p-}" share "$dir" ||
            { err "mount -t 9p failed"; exit 1; } ;;
    virtiofs|native) ;;
    virtiofs-ra*)
        majmin=$(awk -v d="$dir" '$5 == d { print $3 }' /proc/self/mountinfo)
        echo "${kind#virtiofs-ra}" > "/sys/class/bdi/$majmin/read_ahead_kb" ||
            { err "cannot set the read-ahead"; exit 1; } ;;
    *) err "unknown kind '$kind'"; exit 1 ;;
esac
mounted=$(awk -v d="$dir" '$2 == d' /proc/mounts)
[ "$kind" = native ] && mounted=$(awk '$2 == "/tmp"' /proc/mounts)
ra=
majmin=$(awk -v d="$dir" '$5 == d { print $3 }' /proc/self/mountinfo)
[ -n "$majmin" ] && [ -r "/sys/class/bdi/$majmin/read_ahead_kb" ] &&
    ra=$(cat "/sys/class/bdi/$majmin/read_ahead_kb")
echo "BENCH-MOUNT $mounted ra_kb=${ra:-none}"

# Every VM first touches 200 MiB of its RAM once (a tmpfs file written and removed), so the
# jobs' page cache lands on used pages under every server alike. The first touch of guest
# RAM never used since boot costs some 90 us a page in the test host (docs/benchmarks.md,
# fifth share session) and would otherwise fall on whichever job first uses the page cache,
# which differs by server: 9p loose's write job, cove's read job.
if [ "$kind" != native ]; then
    dd if=/dev/zero of=/tmp/touch bs=1M count=200 2> /dev/null || err "could not touch guest RAM"
    rm -f /tmp/touch
fi

work=$dir/run
rm -rf "$work"
mkdir -p "$work/files" "$work/tree" || { err "mkdir $work failed"; exit 1; }

drop() {
    sync
    echo 3 > /proc/sys/vm/drop_caches
}

job() {
    _name=$1
    shift
    drop
    echo "BENCH-MARK begin $_name"
    echo "BENCH-FS job=$_name $($T time "$@")"
}

job write dd if=/dev/zero of="$work/big" bs=1M count="$mib" conv=fsync
job read dd if="$work/big" of=/dev/null bs=1M
job create $T create "$work/files" "$files" 1024
job stat $T stat "$work/files" "$files"
[ "$tarball" = - ] || job untar tar xf "$tarball" -C "$work/tree"
sync
case $kind in 9p-*) umount "$dir" ;; esac
