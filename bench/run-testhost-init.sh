#!/bin/sh
# /init of the main-job benchmark's test host (see bench/run.sh, which carries everything in
# under /bench and reads the lines this prints on the serial console):
#
#   BENCH-HOST <facts about the test host>
#   BENCH-CHECK vmm=NAME ok             QEMU ran a command through the guest's init and exited
#   BENCH-RUN vmm=NAME iter=I after=VMM wall_us=N rss_kib=N anon_kib=N guest_kib=N cpu_us=N
#             maxrss_kib=N samples=N status=N   (one line; bootbench's figures)
#   BENCH-EXEC <execbench's line> wall_us=N rss_kib=N ... (bootbench's figures for execbench)
#   BENCH-ERR <text>
#   BENCH-MAPS vmm=NAME <KiB> KiB <mapping>   (the overhead of the last run, by mapping)
#   BENCH-DONE
#
# Each run is the whole main job: from fork until the VMM process has exited.
#   cove      cove run --kernel K --initrd I --cpus 1 --memory 256M -- true (cove's defaults
#             otherwise: the console to a temporary log, vsock, virtio-rng, NAT, the boot
#             cache, here in a directory of this session: the warm-up saves the booted guest,
#             the measured runs restore it), which runs `true` through cove-agent over vsock,
#             stops the VM and exits with 0
#   cove-cold the same with --no-boot-cache: every run boots the kernel
#   cove-share cove with --share DIR:/job, DIR new in every iteration: the boot cache serves
#             a share on any directory, so the measured runs restore too
#   qemu-rtc  qemu-system-x86_64 -M microvm,rtc=on ... -append "... -- true": cove-agent as
#             /init runs `true` on the console and powers the guest off, and QEMU exits
#   qemu      the same on plain -M microvm (no CMOS RTC: see docs/benchmarks.md, "The RTC")
# Iteration 0 is a warm-up (run.sh ignores it); the VMMs take turns in the order of
# williams_order (bench/testhost-common.sh). Then execbench boots one VM and times `true`
# run again and again in it.
. /bench/testhost-common.sh
testhost_setup
. /bench/params
B=/bench/bin/bootbench
K=/bench/guest/$KERNEL_FILE
I=/bench/guest/initramfs.cpio.gz

# The kernel command line QEMU boots with; cove run builds the same one from its default
# (console=ttyS0 quiet panic=-1) and the command.
QEMU_CMDLINE='console=ttyS0 quiet panic=-1 -- true'

# bootbench with this session's sampling settings; the VMM's output goes to $1. Guest RAM is
# a memfd, or for a cove restored from the boot cache, the snapshot file it maps.
measure() {
    _out=$1
    shift
    rm -f "$_out"
    "$B" -i "$INTERVAL_US" -d "$DUTY" -t 600 -m /memfd: -m "$W/boot-cache/" -b "$_out" -- "$@"
}

# run_one ITERATION VMM: one main job, its BENCH-RUN line.
run_one() {
    out=$W/$2.$1.out
    case $2 in
        cove) line=$(measure "$out" /bench/bin/cove run --kernel "$K" --initrd "$I" \
                         --cpus "$CPUS" --memory "$MEMORY" --boot-cache "$W/boot-cache" \
                         -- true 2> "$W/$2.maps") ;;
        cove-cold) line=$(measure "$out" /bench/bin/cove run --kernel "$K" --initrd "$I" \
                         --cpus "$CPUS" --memory "$MEMORY" --no-boot-cache \
                         -- true 2> "$W/$2.maps") ;;
        cove-share) mkdir -p "$W/share.$1"
                    line=$(measure "$out" /bench/bin/cove run --kernel "$K" --initrd "$I" \
                         --cpus "$CPUS" --memory "$MEMORY" --boot-cache "$W/boot-cache" \
                         --share "$W/share.$1:/job" -- true 2> "$W/$2.maps") ;;
        *) line=$(vmm "$2" "$QEMU_CMDLINE" none 0 measure "$out" 2> "$W/$2.maps") ;;
    esac
    if [ "$(field status "$line")" != 0 ]; then
        echo "BENCH-ERR $2 iteration $1: status not 0 (bootbench: $line)"
        sed 's/^/BENCH-ERR   | /' "$out" | tail -n 20
        return
    fi
    fields=$(echo "$line" | sed 's/peak_rss_kib/rss_kib/; s/peak_anon_kib/anon_kib/; s/guest_rss_kib/guest_kib/')
    echo "BENCH-RUN vmm=$2 iter=$1 after=$PREV $fields"
}

# QEMU's guest runs the command on its console: once, with the console kept, to see that the
# command did run and QEMU did exit afterwards (the measured runs discard the console).
for v in $VMMS; do
    case $v in cove*) continue ;; esac
    line=$(vmm "$v" 'console=ttyS0 quiet panic=-1 -- echo BENCH-GUEST-RAN' stdio 0 measure "$W/check.out" 2> /dev/null)
    if tr -d '\r' < "$W/check.out" | grep -qx BENCH-GUEST-RAN && [ "$(field status "$line")" = 0 ]; then
        echo "BENCH-CHECK vmm=$v ok"
    else
        echo "BENCH-ERR $v check: no command output or a failure (bootbench: $line)"
        sed 's/^/BENCH-ERR   | /' "$W/check.out" | tail -n 20
    fi
done

run_iterations "$ITERATIONS" $VMMS

# The exec round trip in one VM that stays up.
if [ "$EXECS" -gt 0 ]; then
    sleep 1
    line=$(measure "$W/exec.out" /bench/bin/execbench -n "$EXECS" -c "$CONCURRENT" \
               -m "${MEMORY%M}" "$K" "$I" 2> "$W/execbench.maps")
    result=$(grep '^boot_us=' "$W/exec.out")
    if [ -n "$result" ] && [ "$(field status "$line")" = 0 ]; then
        echo "BENCH-EXEC $result $(echo "$line" | sed 's/peak_rss_kib/rss_kib/; s/peak_anon_kib/anon_kib/')"
    else
        echo "BENCH-ERR execbench failed (bootbench: $line)"
        sed 's/^/BENCH-ERR   | /' "$W/exec.out" | tail -n 20
    fi
fi

for v in $VMMS execbench; do
    [ -f "$W/$v.maps" ] && sed "s/^ */BENCH-MAPS vmm=$v /" "$W/$v.maps"
done

echo "BENCH-DONE"
sync
poweroff -f
