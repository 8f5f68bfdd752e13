#!/bin/sh
# A hostile guest must not take the VMM down. Inside the guest, virtio_garbage
# (tests/e2e/guest/virtio_garbage.c, carried on a read-only ext4 disk) takes a virtio function
# away from its Linux driver and drives the virtio-pci transport by hand: it breaks register,
# feature, queue, ring, descriptor, request, MSI-X and configuration-window rules one attempt
# at a time, resetting the device after each, and checks that the device refuses each breach
# the way the spec and cove's design say (NEEDS_RESET for a broken ring, IOERR/UNSUPP for a bad
# request). A valid request through the same raw driver before and after proves the garbage
# really reached the device. Then it gives the function back to Linux (--rebind) and uses it:
# every sector of the disk is read back and one written, /dev/hwrng is read. First the
# virtio-blk disk (vdb), then virtio-rng, in one boot; virtio-console in a second boot where
# it is the console. On hardware KVM both boots have two vCPUs, so the races the program runs
# (a descriptor rewritten while the device reads it, a second vCPU resetting and kicking) hit
# two cove vCPU threads at once. In the QEMU test host they run on one vCPU (the racing
# threads then interleave by preemption only): there a second vCPU under this load now and then
# crashes the test host's own kernel (a stack overflow of page faults on IRET in the thread
# running cove's second vCPU, then an RCU stall in the guest; a few boots in a hundred),
# which is the emulated machine's fault, not cove's.
#
# Asserted: cove exits 0 (the guest powered off) both times, the guest's marker and the
# program's "ok" verdicts appear, cove printed nothing about a crash, the disk image holds
# exactly the original sectors plus the one the rebound driver wrote, and the console's raw
# transmits and a kernel message through the rebound console reached cove's stdout.
. "${0%/*}/../lib.sh"
need_virtio_garbage

mkdir "$WORK/carrier"
cp "$VIRTIO_GARBAGE" "$WORK/carrier/vg"
make_ext4 "$WORK/carrier.img" 8M "$WORK/carrier" || finish
# The victim: 2048 sectors, each naming itself; the tool checks them through its own driver
# and, once rebound, through Linux.
pattern_image "$WORK/victim.img" 2048
cp "$WORK/victim.img" "$WORK/expected.img"
printf '%-511s\n' REBOUND-WRITE-7 | dd of="$WORK/expected.img" bs=512 seek=7 conv=notrunc 2> /dev/null

cpus=2
[ "${E2E_MODE:-}" = testhost ] && cpus=1
note "$cpus vCPU(s)"

guest hostile \
    'mount -o ro /dev/vda /mnt&&cp /mnt/vg /tmp/vg&&umount /mnt&&/tmp/vg blk vdb --rebind&&/tmp/vg rng --rebind&&echo HOSTILE-GUEST-DONE' \
    --disk "$WORK/carrier.img,ro" --disk "$WORK/victim.img,serial=victim" --cpus "$cpus"

# no_crash NAME: cove's stderr for run NAME has nothing about a crash of its own (a fault, an
# abort, a KVM failure) nor a guest failure. When the run did not end by itself, says whether
# the host's kernel log shows an oops (the test host's, see above) to tell that apart.
no_crash() {
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 143 ]; then
        dmesg 2> /dev/null | grep -A4 -E 'BUG:|Oops|stack guard page' | tail -n 12 | sed 's/^/  | host kernel: /'
    fi
    for _what in 'Segmentation' 'Aborted' 'core dumped' 'internal error' 'Assertion' 'sanitizer' \
        'guest failed' 'panic' 'triple fault'; do
        if tr -d '\r' < "$WORK/$1.err" | grep -qi -- "$_what"; then
            fail "$1: cove's stderr mentions '$_what'"
            show "$WORK/$1.err"
            return
        fi
    done
}

# verdicts NAME FILE COUNT: FILE has COUNT "VG-RESULT=ok" lines and no failed one.
verdicts() {
    if [ "$(tr -d '\r' < "$2" | grep -c '^VG-RESULT=ok$')" -ne "$3" ]; then
        fail "$1: the guest program did not report VG-RESULT=ok $3 time(s)"
        tr -d '\r' < "$2" | grep -E 'UNEXPECTED|FATAL|VG-RESULT' | sed 's/^/  | /'
        show "$2"
    fi
}

# fault_reports NAME TYPE SUFFIX: cove told of the device's stops on stderr, naming the device
# ("TYPE at PCI 00:SS.0SUFFIX", SUFFIX " (disk '...')" or empty) and the queue, in no more lines
# than its cap (8, then one saying that further ones are not reported).
fault_reports() {
    tr -d '\r' < "$WORK/$1.err" | grep -F "cove: warning: $2 at PCI " > "$WORK/$1.$2.faults"
    _n=$(wc -l < "$WORK/$1.$2.faults")
    if ! grep -qF ".0$3: the guest's driver broke queue " "$WORK/$1.$2.faults"; then
        fail "$1: no warning on cove's stderr that the guest broke a queue of $2$3"
        show "$WORK/$1.err"
    elif [ "$_n" -gt 9 ]; then
        fail "$1: $_n warnings about $2: more than the cap of 8 and one more"
    elif [ "$_n" -eq 9 ] && ! tail -n 1 "$WORK/$1.$2.faults" | grep -qF 'further faults are not reported'; then
        fail "$1: the last of 9 warnings about $2 does not say that further ones are not reported"
    fi
}

if expect_status hostile 0; then
    has_line "$WORK/hostile.out" HOSTILE-GUEST-DONE || fail "hostile: no HOSTILE-GUEST-DONE from the guest"
    verdicts hostile "$WORK/hostile.out" 2
fi
no_crash hostile
fault_reports hostile virtio-blk " (disk '$WORK/victim.img')"
fault_reports hostile virtio-rng ''
if ! cmp -s "$WORK/victim.img" "$WORK/expected.img"; then
    fail "hostile: the disk image is not the original plus sector 7 from the rebound driver"
    cmp "$WORK/victim.img" "$WORK/expected.img" | sed 's/^/  | /'
fi
note "$(tr -d '\r' < "$WORK/hostile.out" | grep -c '^vg: .*: -- ') attempts on virtio-blk and virtio-rng"

# Boot 2: virtio-console, as the guest's console (--console hvc). Unbinding it hangs up hvc0,
# so the shell ignores SIGHUP and the program's report goes to a file on the (now writable)
# carrier disk, read out with debugfs afterwards. What the raw driver transmits shows on cove's
# stdout; for its receive checks cove's stdin is fed once it asks (VG-CONSOLE-FEED-ME).
# The feeder ends on its own when cove exits (EPIPE: SIGPIPE is ignored).
mkfifo "$WORK/feed.fifo"
(
    trap '' PIPE
    wait_for "$WORK/console.out" VG-CONSOLE-FEED-ME 120 || exit
    while printf 'RX-0123456789abcdef RX-0123456789abcdef\n'; do :; done
) > "$WORK/feed.fifo" 2> /dev/null &
feeder=$!
# Its own timeout, above the usual: this boot runs the longest program of the case, whose
# pace follows the load on the test host's machine (43 s in a quiet CI run; 120 s was hit once).
timeout "$((COVE_RUN_TIMEOUT * 3))" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --cpus "$cpus" \
    --console hvc --disk "$WORK/carrier.img" \
    --cmdline "console=hvc0 quiet panic=-1 -- trap '' HUP;mount /dev/vda /mnt&&/mnt/vg console --rebind >/mnt/console.log 2>&1;umount /mnt" \
    < "$WORK/feed.fifo" > "$WORK/console.out" 2> "$WORK/console.err"
rc=$?
{ kill "$feeder"; wait "$feeder"; } 2> /dev/null
if expect_status console 0; then
    for line in VG-CONSOLE-TX-OK VG-CONSOLE-TX-AFTER VG-CONSOLE-REBOUND; do
        has "$WORK/console.out" "$line" || fail "console: '$line' did not reach cove's stdout"
    done
    if "$DEBUGFS" -R 'cat /console.log' "$WORK/carrier.img" > "$WORK/console.log" 2> "$WORK/debugfs.err"; then
        verdicts console "$WORK/console.log" 1
        note "$(grep -c '^vg: .*: -- ' "$WORK/console.log") attempts on virtio-console"
    else
        fail "console: debugfs could not read /console.log"
        show "$WORK/debugfs.err"
    fi
elif "$DEBUGFS" -R 'cat /console.log' "$WORK/carrier.img" > "$WORK/console.log" 2> /dev/null; then
    show "$WORK/console.log" # how far the program got (what the guest wrote back before the end)
fi
no_crash console
fault_reports console virtio-console ' (console)'

finish
