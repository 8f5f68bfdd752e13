#!/bin/sh
# /init of the boot benchmark's test host (see bench/boot.sh, which carries everything in
# under /bench and reads the lines this prints on the serial console):
#
#   BENCH-HOST <facts about the test host>
#   BENCH-RUN vmm=NAME iter=I init_us=N wall_us=N rss_kib=N anon_kib=N guest_kib=N cpu_us=N
#             maxrss_kib=N samples=N status=N [boot_timer_us=N exec_us=N]   (one line)
#   BENCH-MAPS vmm=NAME <KiB> <mapping>     (the overhead of the last run, by mapping)
#   BENCH-ERR <text>
#   BENCH-DONE
#
# Iteration 0 is a warm-up (boot.sh ignores it). The VMMs take turns, and the order rotates
# from one iteration to the next so that slow drift of the emulated machine hits all alike.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Only /tmp gets a tmpfs: what boot.sh carried in (/bench, /usr, /lib...) is in the rootfs.
mount -t tmpfs -o mode=1777 tmpfs /tmp

. /bench/params
B=/bench/bin/bootbench
K=/bench/guest/bzImage
I=/bench/guest/initramfs.cpio.gz
W=/tmp/bench
mkdir -p "$W"

echo "BENCH-HOST kernel $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { print $2 }' /proc/meminfo) kB," \
    "kvm: $(if [ -c /dev/kvm ]; then echo present; else echo MISSING; fi)," \
    "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"

# Prints the BENCH-RUN line: $1 vmm, $2 iteration, $3 bootbench's line, $4 init_us (time
# from fork to the guest's /init), $5 extra fields.
report() {
    echo "BENCH-RUN vmm=$1 iter=$2 init_us=$4 $(echo "$3" |
        sed 's/peak_rss_kib/rss_kib/; s/peak_anon_kib/anon_kib/; s/guest_rss_kib/guest_kib/')$5"
}

run_cove() {
    out=$W/cove.$1.out
    rm -f "$out"
    # The delay from fork to cove's main() (exec, dynamic linking), which the boot timer does
    # not see: bounded from above by the whole life of `cove --version`.
    exec_line=$("$B" "$W/version.out" -- /bench/bin/cove --version 2>/dev/null)
    exec_us=$(echo "$exec_line" | sed -n 's/.*wall_us=\([0-9]*\).*/\1/p')
    line=$("$B" -i "$INTERVAL_US" -t 120 -b "$out" -- /bench/bin/cove run --kernel "$K" \
        --initrd "$I" --cmdline "$CMDLINE" --cpus "$CPUS" --memory "$MEMORY" --serial none \
        --boot-timer 2> "$W/cove.maps")
    timer=$(sed -n 's/^cove: boot-timer: \([0-9]*\) us.*/\1/p' "$out")
    if [ -z "$timer" ] || [ -z "$exec_us" ]; then
        echo "BENCH-ERR cove iteration $1: no boot-timer line (bootbench: $line)"
        sed 's/^/BENCH-ERR   | /' "$out" | tail -n 20
        return
    fi
    report cove "$1" "$line" $((timer + exec_us)) " boot_timer_us=$timer exec_us=$exec_us"
}

# $1 iteration, $2 name, $3 binary
run_qemu() {
    out=$W/$2.$1.out
    rm -f "$out"
    line=$("$B" -i "$INTERVAL_US" -t 120 -b "$out" -- "$3" -M microvm,memory-backend=mem \
        -accel kvm -cpu host -smp "$CPUS" -m "$MEMORY" \
        -object "memory-backend-memfd,id=mem,size=$MEMORY" \
        -nodefaults -no-user-config -display none -serial null -no-reboot \
        -kernel "$K" -initrd "$I" -append "$CMDLINE" \
        -device isa-debug-exit,iobase=0x440,iosize=1 2> "$W/$2.maps")
    # isa-debug-exit makes QEMU exit with (value << 1) | 1: 0x7b gives 247.
    case $line in
        *status=247*) ;;
        *)
            echo "BENCH-ERR $2 iteration $1: QEMU did not exit through the boot port (bootbench: $line)"
            sed 's/^/BENCH-ERR   | /' "$out" | tail -n 20
            return ;;
    esac
    wall=$(echo "$line" | sed -n 's/.*wall_us=\([0-9]*\).*/\1/p')
    report "$2" "$1" "$line" "$wall" ""
}

run_one() {
    case $2 in
        cove) run_cove "$1" ;;
        qemu) run_qemu "$1" qemu /usr/bin/qemu-system-x86_64 ;;
    esac
}

i=0
while [ "$i" -le "$ITERATIONS" ]; do
    # Rotate the order: iteration i starts with VMM number i mod count.
    set -- $VMMS
    shift $((i % $#))
    first=$*
    set -- $VMMS
    rest=
    for v in "$@"; do
        case " $first " in *" $v "*) ;; *) rest="$rest $v" ;; esac
    done
    for vmm in $first $rest; do
        run_one "$i" "$vmm"
    done
    i=$((i + 1))
done

for vmm in $VMMS; do
    [ -f "$W/$vmm.maps" ] && sed "s/^ */BENCH-MAPS vmm=$vmm /" "$W/$vmm.maps"
done
echo "BENCH-DONE"
sync
poweroff -f
