#!/bin/sh
# 20 `cove run` in a row leave nothing behind: no cove process, no temporary file or socket.
. "${0%/*}/../lib.sh"

mkdir -p "$WORK/tmp"
i=0
while [ "$i" -lt 20 ]; do
    i=$((i + 1))
    TMPDIR=$WORK/tmp exec_run "run$i" -- sh -c "echo run-$i"
    expect_status "run$i" 0 || break
    has_line "$WORK/run$i.out" "run-$i" || { fail "run$i: wrong output"; show "$WORK/run$i.out"; }
done
left=$(cove_processes)
[ -z "$left" ] || fail "cove processes remain: $left"
[ -z "$(ls -A "$WORK/tmp")" ] || fail "files left in TMPDIR: $(ls -A "$WORK/tmp")"
sockets=$(find /tmp "$WORK" -type s 2>/dev/null)
[ -z "$sockets" ] || fail "sockets left behind: $sockets"

finish
