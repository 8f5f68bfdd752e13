#!/bin/sh
# --timeout stops the VM and exits 124, leaving no process or file behind; SIGINT and SIGTERM
# reach CMD (its trap runs and its status is cove's); a second one stops the VM.
. "${0%/*}/../lib.sh"

mkdir -p "$WORK/tmp"
TMPDIR=$WORK/tmp exec_run timeout --timeout 3s -- sleep 600
if expect_status timeout 124; then
    has_line "$WORK/timeout.err" "cove: sleep: timed out after 3 s; the VM was stopped" ||
        { fail "timeout: no one-line reason"; show "$WORK/timeout.err"; }
fi
left=$(cove_processes)
[ -z "$left" ] || fail "timeout: cove processes remain: $left"
[ -z "$(ls -A "$WORK/tmp")" ] || fail "timeout: files left in TMPDIR: $(ls -A "$WORK/tmp")"

# signal_run NAME SIGNAL COUNT STATUS GUEST-COMMAND: runs GUEST-COMMAND, sends SIGNAL COUNT
# times once it printed READY, and checks cove's status.
signal_run() {
    name=$1
    pidfile=$WORK/$name.pid
    (
        if ! wait_for "$WORK/$name.out" READY 90; then
            echo "the command never printed READY"
            kill -KILL "$(cat "$pidfile")"
            exit
        fi
        for _ in $(seq "$3"); do
            kill -"$2" "$(cat "$pidfile")"
            sleep 1
        done
    ) > "$WORK/$name.watch" 2>&1 &
    watcher=$!
    # In the foreground: a background job would start with SIGINT ignored.
    sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$pidfile" timeout "$COVE_RUN_TIMEOUT" \
        "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M -- sh -c "$5" \
        > "$WORK/$name.out" 2> "$WORK/$name.err" < /dev/null
    rc=$?
    wait "$watcher"
    [ ! -s "$WORK/$name.watch" ] || fail "$name: $(cat "$WORK/$name.watch")"
    expect_status "$name" "$4"
}

signal_run int INT 1 7 'trap "echo got-INT; exit 7" INT; echo READY; while :; do sleep 1; done'
has_line "$WORK/int.out" got-INT || { fail "int: the trap did not run"; show "$WORK/int.out"; }
signal_run term TERM 1 143 'echo READY; exec sleep 600'
signal_run insist INT 2 130 'trap "echo ignoring" INT; echo READY; while :; do sleep 1; done'
left=$(cove_processes)
[ -z "$left" ] || fail "signals: cove processes remain: $left"

finish
