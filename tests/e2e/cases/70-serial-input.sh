#!/bin/sh
# Serial input: without a command the agent starts an interactive shell on the console, and
# cove feeds it stdin (a FIFO here, so no raw mode); stdin then reaches EOF while the guest
# still runs, which must not stop it.
. "${0%/*}/../lib.sh"

# The input is written once the shell has started. Typed ahead of the boot, it would race
# with the guest's 8250 driver, which empties the UART FIFO when the console is first opened
# (plain QEMU loses the first bytes the same way).
mkfifo "$WORK/input.fifo"
(
    wait_for "$WORK/input.out" 'built-in shell' 90 || exit
    printf 'echo in-$((6*7))\npoweroff -f\n'
) > "$WORK/input.fifo" &
feeder=$!

timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" \
    --memory 256M --cmdline "$GUEST_CMDLINE" \
    < "$WORK/input.fifo" > "$WORK/input.out" 2> "$WORK/input.err"
rc=$?
kill "$feeder" 2>/dev/null
wait "$feeder"

if expect_status input 0; then
    # "in-42" only exists once the guest shell evaluated the line (the tty's echo of the
    # input shows the unevaluated text).
    expect_has input out 'in-42'
fi
# The agent makes the console the shell's controlling tty; busybox sh complains otherwise.
if has "$WORK/input.out" 'job control turned off'; then
    fail "input: the shell has no controlling tty"
    show "$WORK/input.out"
fi

finish
