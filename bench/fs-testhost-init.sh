#!/bin/sh
# /init of the directory-sharing benchmark's test host (see bench/fs.sh, which carries
# everything in under /bench and reads the lines this prints on the serial console):
#
#   BENCH-HOST <facts about the test host>
#   BENCH-MOUNT vmm=NAME iter=I <the guest's mount line> ra_kb=N
#   BENCH-JOB vmm=NAME iter=I job=JOB us=N status=S [utime=T stime=T gtime=T]
#                                  (one line per job of bench/fs-guest.sh; the VMM's CPU time
#                                  over the job in clock ticks, gtime the part in guest mode)
#   BENCH-VM vmm=NAME iter=I wall_ms=N status=N jobs=N  (the whole run, boot included)
#   BENCH-ERR <text>
#   BENCH-DONE
#
# The shared folder is $W/share on the test host's tmpfs. Each run does the work of
# bench/fs-guest.sh in $W/share/run, which is checked here afterwards (the big file's size,
# the small files' count, the tree's entries) and removed before the next run. The runs:
#   cove           cove run --share $W/share:/mnt/share (virtio-fs, cove's FUSE server)
#   cove-never     the share with cache=never
#   cove-base, cove-base-never  the same two with /bench/bin/cove-base (fs.sh --baseline)
#   cove-raN       the default share, the guest sets its read-ahead to N KiB
#   qemu-9p-loose  qemu-system-x86_64 -M microvm,rtc=on,pcie=on with -fsdev local,...,
#                  security_model=passthrough -device virtio-9p-pci (cove's transport); the guest
#                  mounts with cache=loose
#   qemu-9p-none   the same, the guest mounts with cache=none (9p's default)
#   native         the test host runs bench/fs-guest.sh itself on $W/share (no VM)
# All VMs: 1 vCPU, MEMORY, the same kernel and initramfs, the console on stdio. Iteration 0
# is a warm-up with less work (fs.sh ignores it); the runs take turns in the order of
# williams_order (bench/testhost-common.sh).
. /bench/testhost-common.sh
testhost_setup
dmesg -n 1

. /bench/params
K=/bench/guest/bzImage
I=/bench/guest/initramfs.cpio.gz
SHARE=$W/share
mkdir -p "$SHARE"

# vmm NAME CMDLINE: the VMM of run NAME booting the guest with CMDLINE.
vmm() {
    case $1 in
        cove|cove-never|cove-base|cove-base-never|cove-ra*)
            _mode= _bin=cove
            case $1 in *-never) _mode=:cache=never ;; esac
            case $1 in cove-base*) _bin=cove-base ;; esac
            exec "/bench/bin/$_bin" run --kernel "$K" --initrd "$I" --cmdline "$2" \
                --cpus 1 --memory "$MEMORY" --serial stdio --no-rng \
                --share "$SHARE:/mnt/share$_mode" ;;
        qemu-9p-*)
            exec /usr/bin/qemu-system-x86_64 -M microvm,rtc=on,pcie=on,memory-backend=mem \
                -accel kvm -cpu host -smp 1 -m "$MEMORY" \
                -object "memory-backend-memfd,id=mem,size=$MEMORY" \
                -nodefaults -no-user-config -display none -serial stdio -no-reboot \
                -kernel "$K" -initrd "$I" -append "$2" \
                -fsdev "local,id=fs0,path=$SHARE,security_model=passthrough" \
                -device virtio-9p-pci,fsdev=fs0,mount_tag=share ;;
    esac
}

# kind_of NAME: the first argument of fs-guest.sh for run NAME.
kind_of() {
    case $1 in
        cove|cove-never|cove-base|cove-base-never) echo virtiofs ;;
        cove-ra*) echo "virtiofs-${1#cove-}" ;;
        qemu-9p-*) echo "9p-${1#qemu-9p-}" ;;
        native) echo native ;;
    esac
}

# check ITER NAME MIB FILES TARBALL: did the run leave the work it reports on the host?
check() {
    _size=$(stat -c %s "$SHARE/run/big" 2> /dev/null)
    [ "$_size" = $(($3 * 1048576)) ] ||
        echo "BENCH-ERR $2 iteration $1: the big file has ${_size:-no} bytes, not $(($3 * 1048576))"
    _n=$(ls "$SHARE/run/files" 2> /dev/null | wc -l)
    [ "$_n" = "$4" ] || echo "BENCH-ERR $2 iteration $1: $_n small files, not $4"
    _t=$(find "$SHARE/run/tree" 2> /dev/null | wc -l)
    [ "$5" = - ] || [ "$_t" = "$TREE_ENTRIES" ] ||
        echo "BENCH-ERR $2 iteration $1: the tree has $_t entries, not $TREE_ENTRIES"
}

# run_one ITER NAME: one run of the workload; its lines, prefixed.
run_one() {
    _iter=$1 _name=$2
    # The warm-up: less of everything, no tar x (9p takes minutes for it here).
    _tar=/bench/tree.tar _want=5
    if [ "$_iter" = 0 ]; then
        _mib=$WARM_MIB _files=$WARM_FILES _tar=- _want=4
    else
        _mib=$MIB _files=$FILES
    fi
    _args="$(kind_of "$_name") /mnt/share $_mib $_files $_tar"
    _out=$W/$_name.$_iter.log
    rm -rf "$SHARE/run"
    rm -f "$W/console"
    mkfifo "$W/console"
    if [ "$_name" = native ]; then
        ( sh /bench/fs-guest.sh native "$SHARE" $_mib $_files $_tar \
              < /dev/null > "$W/console" 2>&1 ) &
    else
        ( vmm "$_name" "console=ttyS0 quiet panic=-1 -- sh /bench/fs-guest.sh $_args" \
              < /dev/null > "$W/console" 2>&1 ) &
    fi
    _pid=$!
    ( sleep "$TIMEOUT"; kill -KILL "$_pid" 2> /dev/null ) &
    _guard=$!
    _cr=$(printf '\r')
    _jobs=0 _start=$(now_ms)
    while IFS= read -r _line; do
        _line=${_line%"$_cr"}
        case $_line in
            "BENCH-MOUNT "*) echo "BENCH-MOUNT vmm=$_name iter=$_iter ${_line#BENCH-MOUNT }" ;;
            "BENCH-MARK begin "*) _c0=$(cpu_of "$_pid") ;;
            "BENCH-FS "*)
                # The VMM's CPU time over the job (not for native: its shell's children are
                # not counted until reaped).
                _cpu=
                if [ "$_name" != native ]; then
                    set -- $_c0 $(cpu_of "$_pid")
                    _cpu=" utime=$(($4 - $1)) stime=$(($5 - $2)) gtime=$(($6 - $3))"
                fi
                echo "BENCH-JOB vmm=$_name iter=$_iter ${_line#BENCH-FS }$_cpu"
                case $_line in *" status=0") _jobs=$((_jobs + 1)) ;; esac ;;
            "BENCH-GUEST-ERR "*)
                echo "BENCH-ERR $_name iteration $_iter: ${_line#BENCH-GUEST-ERR }" ;;
        esac
        echo "$_line" >> "$_out"
    done < "$W/console"
    wait "$_pid"
    _status=$?
    kill "$_guard" 2> /dev/null
    wait "$_guard" 2> /dev/null
    echo "BENCH-VM vmm=$_name iter=$_iter wall_ms=$(($(now_ms) - _start)) status=$_status jobs=$_jobs"
    if [ "$_status" != 0 ] || [ "$_jobs" != "$_want" ]; then
        echo "BENCH-ERR $_name iteration $_iter: status $_status, $_jobs of $_want jobs; its console:"
        tail -n 15 "$_out" | sed 's/^/BENCH-ERR   | /'
    fi
    check "$_iter" "$_name" "$_mib" "$_files" "$_tar"
    rm -rf "$SHARE/run"
}

run_iterations "$ITERATIONS" $RUNS

echo "BENCH-DONE"
sync
poweroff -f
