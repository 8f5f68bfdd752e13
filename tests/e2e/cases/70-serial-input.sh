#!/bin/sh
# Serial input: without a command the agent starts an interactive shell on the console, and
# cove feeds it stdin (a pipe here, so no raw mode). The input is typed ahead of the boot.
. "${0%/*}/../lib.sh"

printf 'echo in-$((6*7))\npoweroff -f\n' |
    timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" \
        --memory 256M --cmdline "$GUEST_CMDLINE" > "$WORK/input.out" 2> "$WORK/input.err"
rc=$?

if expect_status input 0; then
    # "in-42" only exists once the guest shell evaluated the line (its echo shows the
    # unevaluated text).
    expect_has input out 'in-42'
fi
# The agent makes the console the shell's controlling tty; busybox sh complains otherwise.
if has "$WORK/input.out" 'job control turned off'; then
    fail "input: the shell has no controlling tty"
    show "$WORK/input.out"
fi

finish
