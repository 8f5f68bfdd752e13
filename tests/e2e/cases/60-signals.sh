#!/bin/sh
# SIGTERM and SIGINT stop a running VM: cove exits 143 / 130 and leaves no process behind.
. "${0%/*}/../lib.sh"

# stop_with SIGNAL STATUS: boots a guest that prints a marker and sleeps, sends SIGNAL to cove
# once the marker is out, and checks cove's exit status.
stop_with() {
    name=sig$1
    out=$WORK/$name.out
    pidfile=$WORK/$name.pid
    watchlog=$WORK/$name.watch

    # The watcher: signals cove once the guest is up; SIGKILLs it if it does not stop.
    (
        if ! wait_for "$out" "READY-42" 90; then
            echo "the guest never printed its marker"
            kill -KILL "$(cat "$pidfile")"
            exit
        fi
        pid=$(cat "$pidfile")
        kill -"$1" "$pid"
        n=150
        while kill -0 "$pid" 2>/dev/null; do
            n=$((n - 1))
            if [ "$n" -eq 0 ]; then
                echo "cove still ran 30 s after SIG$1"
                kill -KILL "$pid"
                exit
            fi
            sleep 0.2
        done
    ) > "$watchlog" 2>&1 &
    watcher=$!

    # cove runs in the foreground, not as `cove &`: a non-interactive shell starts background
    # jobs with SIGINT ignored, unlike a terminal. `exec` keeps the pid written to $pidfile.
    sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$pidfile" \
        "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
        --cmdline "$GUEST_CMDLINE -- echo READY-\$((40+2)); sleep 600" \
        > "$out" 2> "$WORK/$name.err" < /dev/null
    rc=$?
    wait "$watcher"

    if [ -s "$watchlog" ]; then
        fail "SIG$1: $(cat "$watchlog")"
    fi
    expect_status "$name" "$2"
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        fail "SIG$1: cove process $(cat "$pidfile") is still alive"
    fi
    left=$(cove_processes)
    [ -z "$left" ] || fail "SIG$1: cove processes remain: $left"
}

stop_with TERM 143
stop_with INT 130

finish
