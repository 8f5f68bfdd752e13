#!/bin/sh
# /init of the boot benchmark's test host (see bench/boot.sh, which carries everything in
# under /bench and reads the lines this prints on the serial console):
#
#   BENCH-HOST <facts about the test host>
#   BENCH-RUN vmm=NAME iter=I after=VMM init_us=N wall_us=N rss_kib=N anon_kib=N guest_kib=N cpu_us=N
#             maxrss_kib=N samples=N status=N [boot_timer_us=N exec_us=N]   (one line)
#   BENCH-ERR <text>
#   BENCH-MAPS vmm=NAME <KiB> KiB <mapping>   (the overhead of the last run, by mapping)
#   BENCH-PROFILE, BENCH-DMESG, BENCH-IRQ, BENCH-TIMELINE, BENCH-KVM, BENCH-STRACE
#                                             (with --profile; see the end)
#   BENCH-DONE
#
# Iteration 0 is a warm-up (boot.sh ignores it). The VMMs take turns, in an order that changes
# from one iteration to the next (see williams_order), so that slow drift of the emulated
# machine and what one boot leaves to the next hit all alike.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Only /tmp gets a tmpfs: what boot.sh carried in (/bench, /usr, /lib...) is in the rootfs.
mount -t tmpfs -o mode=1777 tmpfs /tmp

. /bench/params
B=/bench/bin/bootbench
K=/bench/guest/$KERNEL_FILE
I=/bench/guest/initramfs.cpio.gz
W=/tmp/bench
mkdir -p "$W"

echo "BENCH-HOST kernel $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { print $2 }' /proc/meminfo) kB," \
    "kvm: $(if [ -c /dev/kvm ]; then echo present; else echo MISSING; fi)," \
    "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"

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

field() {
    echo "$2" | sed -n "s/.*$1=\([0-9]*\).*/\1/p"
}

# One measured boot: $1 iteration, $2 VMM. Prints its BENCH-RUN line; init_us is the time
# from fork to the guest's /init.
run_one() {
    out=$W/$2.$1.out
    rm -f "$out"
    case $2 in cove*) cove=1 ;; *) cove=0 ;; esac
    if [ "$cove" = 1 ]; then
        # The delay from fork to cove's main() (exec, dynamic linking), which the boot timer
        # does not see: bounded from above by the whole life of `cove --version`.
        exec_us=$(field wall_us "$("$B" "$W/version.out" -- /bench/bin/cove --version 2>/dev/null)")
    fi
    line=$(vmm "$2" "$CMDLINE" none 1 "$B" -i "$INTERVAL_US" -d "$DUTY" -t 120 -b "$out" -- 2> "$W/$2.maps")
    fields=$(echo "$line" | sed 's/peak_rss_kib/rss_kib/; s/peak_anon_kib/anon_kib/; s/guest_rss_kib/guest_kib/')
    if [ "$cove" = 1 ]; then
        timer=$(sed -n 's/^cove: boot-timer: \([0-9]*\) us.*/\1/p' "$out")
        if [ -z "$timer" ] || [ -z "$exec_us" ] || [ "$(field status "$line")" != 0 ]; then
            echo "BENCH-ERR $2 iteration $1: no boot-timer line or a failure (bootbench: $line)"
            sed 's/^/BENCH-ERR   | /' "$out" | tail -n 20
            return
        fi
        echo "BENCH-RUN vmm=$2 iter=$1 after=$PREV init_us=$((timer + exec_us)) $fields boot_timer_us=$timer exec_us=$exec_us"
    else
        if [ "$(field status "$line")" != 247 ]; then
            echo "BENCH-ERR $2 iteration $1: QEMU did not exit through the boot port (bootbench: $line)"
            sed 's/^/BENCH-ERR   | /' "$out" | tail -n 20
            return
        fi
        echo "BENCH-RUN vmm=$2 iter=$1 after=$PREV init_us=$(field wall_us "$line") $fields"
    fi
}

# The order of the VMMs within an iteration follows a Williams design: over n iterations (2n
# for an odd number n of VMMs) every VMM runs right after every other one equally often, and
# holds every position equally often. That matters here: a boot right after a cove run comes
# out slower whoever it is (cove's guest runs on to power-off, QEMU's stops at /init, and the
# emulated machine carries some of that over; see docs/benchmarks.md).
set -- $VMMS
nvmm=$#
# Row 0 is 0, 1, n-1, 2, n-2, ...; row k adds k (mod n); for odd n, rows n..2n-1 are rows
# 0..n-1 reversed.
williams_order() {
    _row=$1 _rev=0
    if [ $((nvmm % 2)) = 1 ]; then
        _row=$(($1 % (2 * nvmm)))
        [ "$_row" -ge "$nvmm" ] && _rev=1 && _row=$((_row - nvmm))
    else
        _row=$(($1 % nvmm))
    fi
    _seq= _lo=1 _hi=$((nvmm - 1)) _j=0
    while [ "$_j" -lt "$nvmm" ]; do
        if [ "$_j" = 0 ]; then _x=0
        elif [ $((_j % 2)) = 1 ]; then _x=$_lo; _lo=$((_lo + 1))
        else _x=$_hi; _hi=$((_hi - 1)); fi
        _x=$(((_x + _row) % nvmm))
        set -- $VMMS
        shift "$_x"
        if [ "$_rev" = 1 ]; then _seq="$1 $_seq"; else _seq="$_seq $1"; fi
        _j=$((_j + 1))
    done
    echo $_seq
}

i=0
prev=none
while [ "$i" -le "$ITERATIONS" ]; do
    for v in $(williams_order "$i"); do
        # A moment for whatever the previous VM left to the host kernel (freeing its memory).
        sleep 1
        PREV=$prev run_one "$i" "$v"
        prev=$v
    done
    i=$((i + 1))
done

for v in $VMMS; do
    [ -f "$W/$v.maps" ] && sed "s/^ */BENCH-MAPS vmm=$v /" "$W/$v.maps"
done

# ---- Profile (boot.sh --profile); not part of the statistics ----
if [ "${PROFILE:-0}" = 1 ]; then
    # One more boot of each VMM whose guest session prints the kernel log (timestamps,
    # initcall_debug; printed after boot, so the console costs nothing during it) and the CPU
    # flags. QEMU runs without isa-debug-exit here so that the guest gets that far.
    pcmd="console=ttyS0 quiet printk.time=1 initcall_debug panic=-1 -- dmesg; grep -m1 ^flags /proc/cpuinfo; cat /proc/interrupts"
    for v in $VMMS; do
        out=$W/$v.profile.out
        rm -f "$out"
        line=$(vmm "$v" "$pcmd" stdio 0 "$B" -i "$INTERVAL_US" -d "$DUTY" -t 120 "$out" --)
        echo "BENCH-PROFILE vmm=$v $line $(sed -n 's/^cove: boot-timer: \([0-9]*\) us.*/boot_timer_us=\1/p' "$out")"
        tr -d '\r' < "$out" | grep -E '^(\[|flags)' | sed "s/^/BENCH-DMESG vmm=$v /"
        tr -d '\r' < "$out" | sed -n '/CPU0/,$p' | grep -E '^ *[A-Za-z0-9]+: +[0-9]' |
            sed "s/^ */BENCH-IRQ vmm=$v /"
    done
    # Timelines: the guest's serial console through bootbench -T, which stamps every line with
    # the time since fork. With earlyprintk and loglevel=1 the kernel prints only its first
    # few lines ("Linux version" marks the decompressed kernel starting), and the session
    # echoes a marker once /init has set up. Five rounds, the VMMs taking turns. The kvmstats.so
    # shim (bench/kvmstats.c) also reports KVM's counters for vCPU 0 over the whole run.
    tcmd="console=ttyS0 earlyprintk=ttyS0 loglevel=1 panic=-1 -- echo BENCH-GUEST-INIT"
    for r in 1 2 3 4 5; do
        for v in $VMMS; do
            out=$W/$v.timeline.$r
            rm -f "$out"
            rm -f "$out.kvm"
            line=$(export KVMSTATS_OUT="$out.kvm" LD_PRELOAD=/bench/lib/kvmstats.so
                   vmm "$v" "$tcmd" stdio 0 "$B" -T -i "$INTERVAL_US" -d "$DUTY" -t 120 "$out" --)
            sed -n "s/^kvm-vcpu0: */BENCH-KVM vmm=$v round=$r /p" "$out.kvm" 2>/dev/null
            stamp() { sed -n "s/^\[+\([0-9.]*\) ms\] $1/\1/p" "$out" | head -n 1; }
            echo "BENCH-TIMELINE vmm=$v round=$r kernel_ms=$(stamp 'Linux version.*') init_ms=$(stamp 'BENCH-GUEST-INIT$')" \
                "$(sed -n 's/^cove: boot-timer: \([0-9]*\) us.*/boot_timer_us=\1/p' "$out")" \
                "$(field wall_us "$line" | sed 's/^/wall_us=/')"
        done
    done
    # Each VMM's own start-up: its system calls up to the first KVM_RUN, under strace (which
    # slows every call down). The VMM is killed once its guest runs.
    if [ -x /usr/bin/strace ]; then
        for v in cove qemu; do
            case " $VMMS " in *" $v "*) ;; *) continue ;; esac
            tr=$W/$v.strace
            rm -f "$tr"
            ( vmm "$v" "$CMDLINE" none 1 exec /usr/bin/strace -f -ttt -o "$tr" > /dev/null 2>&1 < /dev/null ) &
            tracer=$!
            waited=0
            while ! grep -q KVM_RUN "$tr" 2>/dev/null && [ "$waited" -lt 600 ]; do
                sleep 0.1
                waited=$((waited + 1))
            done
            # The VMM is strace's child; once strace is gone it would run on, detached.
            traced=$(ps -o pid,ppid | awk -v t="$tracer" '$2 == t { print $1 }')
            kill -KILL "$tracer" $traced 2>/dev/null
            wait "$tracer" 2>/dev/null
            # The milestones (the rest is mostly the dynamic loader), and the count.
            awk -v vmm="$v" 'NR == 1 { t0 = $2 }
                /execve|KVM_CREATE|KVM_SET_USER_MEMORY|memfd_create|bzImage|vmlinux|initramfs|bios|\/dev\/kvm|clone|KVM_RUN/ {
                    printf "BENCH-STRACE vmm=%s %9.3f ms  %s\n", vmm, ($2 - t0) * 1000, substr($0, index($0, $3)) }
                /KVM_RUN/ { printf "BENCH-STRACE vmm=%s %d system calls up to the first KVM_RUN\n", vmm, NR; exit }' "$tr" |
                cut -c1-160
        done
    fi
fi

echo "BENCH-DONE"
sync
poweroff -f
