#!/bin/sh
# SIGTERM and SIGINT stop a running VM: cove exits 143 / 130 and leaves no process behind, also
# when whoever reads its console (16550A or virtio-console) has stopped reading.
. "${0%/*}/../lib.sh"

# gone_within PID SECONDS: whether process PID ends within SECONDS.
gone_within() {
    _n=$(($2 * 5))
    while kill -0 "$1" 2> /dev/null; do
        [ "$_n" -gt 0 ] || return 1
        sleep 0.2
        _n=$((_n - 1))
    done
}

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
        if ! gone_within "$pid" 30; then
            echo "cove still ran 30 s after SIG$1"
            kill -KILL "$pid"
        fi
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

# A console reader that stops reading: the guest floods its console, cove's stdout is a pipe
# whose reader took the first line and sleeps, so a thread of cove blocks writing to it (with
# the 16550A a vCPU, with virtio-console the console's writer thread). SIGTERM must still stop
# the VM (what is in flight is dropped), not leave cove hanging in write().
# stalled NAME CMDLINE [COVE_OPTION...]
stalled() {
    name=$1 cmdline=$2
    shift 2
    mkfifo "$WORK/$name.fifo"
    # The reader keeps the pipe open without reading past the marker's line.
    sh -c 'while read -r line; do case $line in *READY-42*) echo "$line" > "$1"; exec sleep 600;; esac; done' \
        sh "$WORK/$name.first" < "$WORK/$name.fifo" &
    reader=$!
    sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$WORK/$name.pid" \
        "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M "$@" \
        --cmdline "$cmdline -- echo READY-\$((40+2)); while :; do echo flood-flood-flood-flood; done" \
        > "$WORK/$name.fifo" 2> "$WORK/$name.err" < /dev/null &
    runner=$!
    if ! wait_for "$WORK/$name.first" READY-42 90; then
        fail "$name: the guest's marker never reached the reader"
        kill -KILL "$(cat "$WORK/$name.pid")" "$reader" 2> /dev/null
        return
    fi
    # Until the guest has filled the pipe (64 KiB: 10-20 s in the test host, at an exit per
    # byte on the 16550A) and a thread of cove waits in write() (system call 1 in
    # /proc/PID/task/*/syscall).
    pid=$(cat "$WORK/$name.pid")
    n=450
    until grep -qs '^1 ' /proc/"$pid"/task/*/syscall || [ "$n" -eq 0 ]; do
        sleep 0.2
        n=$((n - 1))
    done
    [ "$n" -gt 0 ] || fail "$name: no thread of cove was seen blocked in write() after 90 s"
    kill -TERM "$pid"
    if ! gone_within "$pid" 30; then
        fail "$name: cove still ran 30 s after SIGTERM with its console reader stalled"
        kill -KILL "$pid"
    fi
    wait "$runner"
    rc=$?
    kill "$reader" 2> /dev/null
    wait "$reader" 2> /dev/null
    expect_status "$name" 143
    left=$(cove_processes)
    [ -z "$left" ] || fail "$name: cove processes remain: $left"
}
stalled stalled "$GUEST_CMDLINE"
stalled stalled-hvc 'console=hvc0 quiet panic=-1' --console hvc

finish
