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
# from one iteration to the next (williams_order in bench/testhost-common.sh), so that slow
# drift of the emulated machine and what one boot leaves to the next hit all alike.
. /bench/testhost-common.sh
testhost_setup
. /bench/params
B=/bench/bin/bootbench
K=/bench/guest/$KERNEL_FILE
I=/bench/guest/initramfs.cpio.gz

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

# The VMMs take turns in the order of a Williams design (williams_order): a boot right after
# a cove run comes out slower whoever it is (cove's guest runs on to power-off, QEMU's stops
# at /init, and the emulated machine carries some of that over).
run_iterations "$ITERATIONS" $VMMS

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
