#!/bin/sh
# The main job: the default guest runs a command under cove-agent and powers off.
. "${0%/*}/../lib.sh"

# uname -a also shows the hostname cove-agent set; --boot-timer reports when init signalled.
guest uname 'uname -a' --boot-timer
if expect_status uname 0; then
    expect_has uname out 'Linux cove '
    if ! has_line_prefix "$WORK/uname.err" 'cove: boot-timer: '; then
        fail "uname: no 'cove: boot-timer: N us' line on stderr"
        show "$WORK/uname.err"
    elif ! tr -d '\r' < "$WORK/uname.err" | grep -qE '^cove: boot-timer: [0-9]+ us$'; then
        fail "uname: malformed boot-timer line"
        show "$WORK/uname.err"
    fi
fi

# A failing command still ends in a clean power-off; the agent reports the status.
guest status 'echo before-$((1+2)); exit 3'
if expect_status status 0; then
    expect_has status out 'before-3'
    expect_has status out 'cove-agent: command exited with status 3'
fi

finish
