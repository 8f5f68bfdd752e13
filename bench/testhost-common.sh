# Shared by the /init scripts of the benchmarks' test hosts (bench/boot.sh, bench/run.sh,
# bench/disk.sh, bench/net.sh, bench/fs.sh; they carry it in as /bench/testhost-common.sh): the
# set-up, the VMMs' command lines, the order in which the VMMs take turns, the clocks, and
# reading bootbench's output. POSIX sh (busybox). vmm needs CPUS and MEMORY (/bench/params) and K and I
# (the guest kernel and initramfs).

# testhost_setup: the environment and the file systems /init needs (only /tmp gets a tmpfs:
# what the driver carried in, /bench, /usr, /lib..., is in the rootfs), the work directory
# W=/tmp/bench, and the BENCH-HOST line.
testhost_setup() {
    export PATH=/bin:/sbin:/usr/bin:/usr/sbin
    export HOME=/root
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    W=/tmp/bench
    mkdir -p "$W"
    echo "BENCH-HOST kernel $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { print $2 }' /proc/meminfo) kB," \
        "kvm: $(if [ -c /dev/kvm ]; then echo present; else echo MISSING; fi)," \
        "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
}

# vmm NAME CMDLINE CONSOLE STOP RUNNER...: runs RUNNER... followed by the command line of VMM
# NAME booting the guest with kernel command line CMDLINE. CONSOLE: none (discarded) or
# stdio. STOP=1: QEMU gets isa-debug-exit on the boot-timer port, so it exits when the
# guest's /init starts (with status (0x7b << 1) | 1 = 247); cove always runs to power-off.
#
#   cove        cove run, 1 vCPU, 256 MiB (guest RAM is a memfd), otherwise cove's defaults
#               (which include a virtio-rng device on PCI)
#   cove-norng  the same with --no-rng: no PCI device at all, like QEMU microvm here
#   qemu        qemu-system-x86_64 -M microvm with KVM, the same CPUs and memory, guest RAM in a
#               memfd (memory-backend-memfd), microvm's defaults otherwise
#   qemu-rtc    the same with rtc=on: microvm has no CMOS RTC under KVM by default (cove has
#               one), and the guest kernel's probe of the missing one is slow here
vmm() {
    _name=$1 _cmdline=$2 _console=$3 _stop=$4
    shift 4
    case $_name in
        cove|cove-norng)
            _serial=none
            [ "$_console" = stdio ] && _serial=stdio
            _rng=
            [ "$_name" = cove-norng ] && _rng=--no-rng
            "$@" /bench/bin/cove run --kernel "$K" --initrd "$I" --cmdline "$_cmdline" \
                --cpus "$CPUS" --memory "$MEMORY" --serial "$_serial" --boot-timer $_rng ;;
        qemu|qemu-rtc)
            _serial=null
            [ "$_console" = stdio ] && _serial=stdio
            _machine=microvm,memory-backend=mem
            [ "$_name" = qemu-rtc ] && _machine=microvm,rtc=on,memory-backend=mem
            _exit=
            [ "$_stop" = 1 ] && _exit=isa-debug-exit,iobase=0x440,iosize=1
            "$@" /usr/bin/qemu-system-x86_64 -M "$_machine" -accel kvm -cpu host \
                -smp "$CPUS" -m "$MEMORY" -object "memory-backend-memfd,id=mem,size=$MEMORY" \
                -nodefaults -no-user-config -display none -serial "$_serial" -no-reboot \
                -kernel "$K" -initrd "$I" -append "$_cmdline" ${_exit:+-device} ${_exit:+"$_exit"} ;;
        *)
            echo "BENCH-ERR unknown VMM '$_name'" ;;
    esac
}

# now_ms: the test host's uptime in milliseconds (busybox date has no %N).
now_ms() {
    read -r _up _ < /proc/uptime
    echo "${_up%.*}${_up#*.}0"
}

# cpu_of PID: "UTIME STIME GUEST_TIME" of process PID, all threads, in clock ticks (10 ms);
# guest time is the part of utime that a KVM vCPU spent running the guest.
cpu_of() {
    read -r _stat < "/proc/$1/stat" || { echo "0 0 0"; return; }
    set -- ${_stat##*) }
    echo "${12} ${13} ${41}"
}

# field NAME LINE: the number after NAME= in LINE (a bootbench result line).
field() {
    echo "$2" | sed -n "s/.*$1=\([0-9]*\).*/\1/p"
}

# williams_order ROW NAME...: prints the NAMEs in the order of iteration ROW.
#
# A Williams design: over n iterations (2n for an odd number n of names) every name runs right
# after every other one equally often, and holds every position equally often. That matters
# in the test host: a run right after a cove run comes out slower whoever it is (what one VM
# leaves to the emulated machine carries over; see docs/benchmarks.md).
#
# Row 0 is 0, 1, n-1, 2, n-2, ...; row k adds k (mod n); for odd n, rows n..2n-1 are rows
# 0..n-1 reversed.
williams_order() {
    _row=$1
    shift
    _n=$# _rev=0
    if [ $((_n % 2)) = 1 ]; then
        _row=$((_row % (2 * _n)))
        [ "$_row" -ge "$_n" ] && _rev=1 && _row=$((_row - _n))
    else
        _row=$((_row % _n))
    fi
    _seq= _lo=1 _hi=$((_n - 1)) _j=0
    while [ "$_j" -lt "$_n" ]; do
        if [ "$_j" = 0 ]; then _x=0
        elif [ $((_j % 2)) = 1 ]; then _x=$_lo; _lo=$((_lo + 1))
        else _x=$_hi; _hi=$((_hi - 1)); fi
        _x=$(((_x + _row) % _n))
        # The name at index _x.
        _k=0
        for _name in "$@"; do
            [ "$_k" = "$_x" ] && break
            _k=$((_k + 1))
        done
        if [ "$_rev" = 1 ]; then _seq="$_name $_seq"; else _seq="$_seq $_name"; fi
        _j=$((_j + 1))
    done
    echo $_seq
}

# run_iterations N NAME...: iterations 0 (the warm-up) to N, in each of which every NAME runs
# once, in the order of williams_order, through the caller's run_one ITERATION NAME (with PREV
# set to the NAME that ran before it, or none).
run_iterations() {
    _last=$1
    shift
    _i=0 _prev=none
    while [ "$_i" -le "$_last" ]; do
        for _v in $(williams_order "$_i" "$@"); do
            # A moment for whatever the previous VM left to the host kernel (freeing its memory).
            sleep 1
            PREV=$_prev run_one "$_i" "$_v"
            _prev=$_v
        done
        _i=$((_i + 1))
    done
}
