#!/bin/sh
# A guest kernel panic (reported through pvpanic) is a guest failure: exit 1, said on stderr.
. "${0%/*}/../lib.sh"

# panic=-1 makes the kernel reboot at once after the panic; cove must still call it a panic.
guest panic 'echo c > /proc/sysrq-trigger'
if expect_status panic 1; then
    if ! tr -d '\r' < "$WORK/panic.err" | grep -q '^cove: .*panic'; then
        fail "panic: no 'cove: ... panic' line on stderr"
        show "$WORK/panic.err"
    fi
fi

finish
