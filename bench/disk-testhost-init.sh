#!/bin/sh
# /init of the disk benchmark's test host (see bench/disk.sh, which carries everything in under
# /bench and reads the lines this prints on the serial console):
#
#   BENCH-HOST <facts about the test host>
#   BENCH-JOB vmm=NAME cache=MODE iter=I job=JOB rsect=N wsect=N utime=T stime=T gtime=T
#             wall_ms=N read_kib=N read_kib_s=N read_iops=N write_kib=N write_kib_s=N
#             write_iops=N runtime_ms=N            (one line per fio job; T in clock ticks)
#   BENCH-VM vmm=NAME cache=MODE iter=I wall_ms=N status=N   (the whole run, boot included)
#   BENCH-ERR <text>
#   BENCH-DONE
#
# The test host's disks (from the outer QEMU, by serial): "tools", the read-only ext2 image
# with fio that both VMMs pass to their guest as its first disk, and with --cache none
# "scratch", the raw device used as the image under test with O_DIRECT. With --cache host the
# image is a file on the test host's tmpfs. Both VMMs get the very same image and tools disk.
#
# Every run boots the guest once (1 vCPU), which runs bench/disk-guest.sh: the three fio jobs,
# each between two console markers. This script reads the markers from the VMM's console as
# they come and takes the VMM process's CPU counters from /proc/PID/stat at each (utime,
# stime and guest_time, summed over all its threads, io_uring workers included), so that the
# boot and everything outside the job are left out.
# Only testhost_setup from there: this script has its own vmm below.
. /bench/testhost-common.sh
testhost_setup
dmesg -n 1

. /bench/params
K=/bench/guest/bzImage
I=/bench/guest/initramfs.cpio.gz
by_serial() {
    for _d in /sys/block/vd*; do
        [ "$(cat "$_d/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${_d##*/}"; return; }
    done
}
TOOLS=$(by_serial tools)
[ -n "$TOOLS" ] || { echo "BENCH-ERR no tools disk"; poweroff -f; }

# The image under test, per cache mode.
image_for() {
    case $1 in
        host)
            if [ ! -f "$W/disk.img" ]; then
                # Written out in full, so that no run reads holes or allocates tmpfs pages.
                dd if=/dev/zero of="$W/disk.img" bs=1M count="$IMAGE_MIB" 2> /dev/null ||
                    echo "BENCH-ERR cannot make the $IMAGE_MIB MiB image on tmpfs"
            fi
            echo "$W/disk.img" ;;
        none)
            by_serial scratch ;;
    esac
}

# vmm NAME CACHE IMAGE: the command line of VMM NAME, the guest with the tools disk and IMAGE.
#   cove   cove run, 1 vCPU, --disk IMAGE,cache=host|none (its io_uring backend either way)
#   qemu   qemu-system-x86_64 -M microvm,rtc=on,pcie=on with KVM: the disks are virtio-blk-pci
#          (modern virtio-pci with MSI-X, like cove's), the drive with cache=writeback|none and
#          aio=io_uring like cove's backend.
vmm() {
    case $1 in
        cove|cove-base)
            exec "/bench/bin/$1" run --kernel "$K" --initrd "$I" --cmdline "$CMDLINE" \
                --cpus 1 --memory "$MEMORY" --serial stdio --no-rng \
                --disk "$TOOLS,ro,serial=tools" --disk "$3,cache=$2,serial=bench" ;;
        qemu|qemu-nomerge)
            _merge=
            [ "$1" = qemu-nomerge ] && _merge=,request-merging=off
            _qcache=writeback
            [ "$2" = none ] && _qcache=none
            exec /usr/bin/qemu-system-x86_64 -M microvm,rtc=on,pcie=on,memory-backend=mem \
                -accel kvm -cpu host -smp 1 -m "$MEMORY" \
                -object "memory-backend-memfd,id=mem,size=$MEMORY" \
                -nodefaults -no-user-config -display none -serial stdio -no-reboot \
                -kernel "$K" -initrd "$I" -append "$CMDLINE" \
                -drive "file=$TOOLS,format=raw,if=none,id=tools,readonly=on" \
                -device virtio-blk-pci,drive=tools,serial=tools \
                -drive "file=$3,format=raw,if=none,id=bench,cache=$_qcache,aio=io_uring" \
                -device "virtio-blk-pci,drive=bench,serial=bench$_merge" ;;
    esac
}

# run_one ITER VMM CACHE: one boot of the guest, with its jobs.
run_one() {
    _iter=$1 _vmm=$2 _cache=$3
    _img=$(image_for "$_cache")
    [ -n "$_img" ] || { echo "BENCH-ERR no image for cache=$_cache"; return; }
    _out=$W/$_vmm.$_cache.$_iter.log
    rm -f "$W/console"
    mkfifo "$W/console"
    ( vmm "$_vmm" "$_cache" "$_img" < /dev/null > "$W/console" 2>&1 ) &
    _pid=$!
    # A VMM that does not finish within the time limit is killed.
    ( sleep "$TIMEOUT"; kill -KILL "$_pid" 2> /dev/null ) &
    _guard=$!
    _cr=$(printf '\r')
    _begin= _t0= _jobs=0 _start=$(now_ms)
    while IFS= read -r _line; do
        _line=${_line%"$_cr"}
        case $_line in
            "BENCH-MARK begin "*)
                _begin=$(cpu_of "$_pid")
                _t0=$(now_ms) ;;
            "BENCH-MARK end "*)
                set -- $_begin $(cpu_of "$_pid")
                _ticks="utime=$(($4 - $1)) stime=$(($5 - $2)) gtime=$(($6 - $3))"
                _rest=${_line#BENCH-MARK end }
                _job=${_rest%% *}
                _end="$_ticks wall_ms=$(($(now_ms) - _t0)) ${_rest#* }" ;;
            "BENCH-FIO "*)
                _fio=${_line#BENCH-FIO }
                echo "BENCH-JOB vmm=$_vmm cache=$_cache iter=$_iter $_fio $_end"
                _jobs=$((_jobs + 1)) ;;
            "BENCH-GUEST-ERR "*)
                echo "BENCH-ERR $_vmm cache=$_cache iteration $_iter: ${_line#BENCH-GUEST-ERR }" ;;
        esac
        echo "$_line" >> "$_out"
    done < "$W/console"
    wait "$_pid"
    _status=$?
    kill "$_guard" 2> /dev/null
    wait "$_guard" 2> /dev/null
    echo "BENCH-VM vmm=$_vmm cache=$_cache iter=$_iter wall_ms=$(($(now_ms) - _start)) status=$_status"
    if [ "$_status" != 0 ] || [ "$_jobs" != 3 ]; then
        echo "BENCH-ERR $_vmm cache=$_cache iteration $_iter: status $_status, $_jobs of 3 jobs; its console:"
        tail -n 15 "$_out" | sed 's/^/BENCH-ERR   | /'
    fi
}

# The VMMs in list order in odd iterations, reversed in even ones (AB, BA for two); each
# cache mode in turn. Iteration 0, a warm-up with short jobs, only with WARMUP=1.
reversed=
for v in $VMMS; do reversed="$v $reversed"; done
i=1
[ "$WARMUP" = 1 ] && i=0
while [ "$i" -le "$ITERATIONS" ]; do
    for cache in $CACHES; do
        if [ $((i % 2)) = 1 ]; then order=$VMMS; else order=$reversed; fi
        for v in $order; do
            sleep 1
            if [ "$i" = 0 ]; then
                CMDLINE="$CMDLINE_BASE -- sh /bench/disk-guest.sh $WARMUP_RUNTIME"
            else
                CMDLINE="$CMDLINE_BASE -- sh /bench/disk-guest.sh $RUNTIME"
            fi
            run_one "$i" "$v" "$cache"
        done
    done
    i=$((i + 1))
done

echo "BENCH-DONE"
sync
poweroff -f
