#!/bin/sh
# The guest ends the VM itself: power-off and reset both make cove exit 0, once.
. "${0%/*}/../lib.sh"

# The marker must appear exactly once: a reset that restarted the guest would run it again.
count() {
    tr -d '\r' < "$WORK/$1.out" | grep -c "^$2\$"
}

guest poweroff 'echo MARK-$((40+2)); poweroff -f'
if expect_status poweroff 0; then
    [ "$(count poweroff MARK-42)" = 1 ] || { fail "poweroff: marker not seen exactly once"; show "$WORK/poweroff.out"; }
fi

guest reboot 'echo MARK-$((40+2)); reboot -f; sleep 30'
if expect_status reboot 0; then
    [ "$(count reboot MARK-42)" = 1 ] || { fail "reboot: marker not seen exactly once"; show "$WORK/reboot.out"; }
    # The reset must end the VM, not the agent's power-off after the command.
    if has "$WORK/reboot.out" 'cove-agent: command'; then
        fail "reboot: the command outlived reboot -f"
        show "$WORK/reboot.out"
    fi
fi

finish
