#!/bin/sh
# --console hvc: the console is virtio-console port 0 (guest console=hvc0), both ways.
# Output: a command's output arrives on cove's stdout, /proc/consoles names hvc0, and what
# the guest writes to the 16550A (ttyS0, present but disconnected in this mode) does not show:
# the output really came through virtio-console. Input: as in 70-serial-input, an interactive
# shell on hvc0 gets cove's stdin (a FIFO, written once the shell is up) and evaluates it.
. "${0%/*}/../lib.sh"

hvc_cmdline='console=hvc0 quiet panic=-1'

run_cove out run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --console hvc \
    --cmdline "$hvc_cmdline -- echo out-\$((6*7)); cat /proc/consoles; echo uart-\$((7*7)) > /dev/ttyS0; echo after-uart"
if expect_status out 0; then
    expect_has out out 'out-42'
    has_line_prefix "$WORK/out.out" 'hvc0 ' || { fail "out: /proc/consoles does not list hvc0"; show "$WORK/out.out"; }
    expect_has out out 'after-uart'
    if has "$WORK/out.out" 'uart-49'; then
        fail "out: what the guest wrote to ttyS0 reached stdout: the output is not (only) virtio-console"
        show "$WORK/out.out"
    fi
fi

mkfifo "$WORK/input.fifo"
(
    wait_for "$WORK/input.out" 'built-in shell' 90 || exit
    printf 'echo in-$((6*7))\npoweroff -f\n'
) > "$WORK/input.fifo" &
feeder=$!
timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
    --console hvc --cmdline "$hvc_cmdline" \
    < "$WORK/input.fifo" > "$WORK/input.out" 2> "$WORK/input.err"
rc=$?
kill "$feeder" 2> /dev/null
wait "$feeder"
if expect_status input 0; then
    # "in-42" only exists once the guest shell evaluated the line (an echo of the typed line
    # shows the unevaluated text).
    expect_has input out 'in-42'
fi
if has "$WORK/input.out" 'job control turned off'; then
    fail "input: the shell has no controlling tty on hvc0"
    show "$WORK/input.out"
fi

finish
