#!/bin/sh
# The exec API of libcove from an embedding program (tests/e2e/exec_api.c): commands, two at
# once, file copy both ways, a host that hangs up mid-stream or sends garbage (the agent kills
# the orphaned command and keeps serving), and a power-off through the agent.
. "${0%/*}/../lib.sh"

if [ ! -x "${EXEC_API:-}" ]; then
    fail "EXEC_API '${EXEC_API:-}' is not an executable (run.sh --exec-api)"
    finish
fi
timeout "$COVE_RUN_TIMEOUT" "$EXEC_API" --kernel "$KERNEL" --initrd "$INITRD" \
    > "$WORK/api.out" 2>&1 < /dev/null
rc=$?
sed 's/^/  /' "$WORK/api.out"
[ "$rc" -eq 0 ] && has_line "$WORK/api.out" "ALL OK" || fail "exec_api exited with status $rc"
grep -q '^ok shutdown-poweroff$' "$WORK/api.out" || fail "exec_api did not get to the end"

finish
