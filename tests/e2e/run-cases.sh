#!/bin/sh
# Runs e2e cases and reports in the line format tests/e2e/run.sh parses:
#
#       <the case's output, indented>
#   COVE-E2E <name> PASS|FAIL (<seconds> s)
#   ...
#   COVE-E2E-DONE
#
#   run-cases.sh CASE.sh...
#
# Environment: COVE, VM_API, KERNEL, VMLINUX, INITRD (passed on to the cases, as are
# VIRTIO_GARBAGE and E2E_MODE for the cases that use them); E2E_SCRATCH, a directory for the cases' WORK dirs
# (default: a new temporary one); E2E_CASE_TIMEOUT, seconds per case (default 600). POSIX sh
# and busybox-compatible: it is the core of the test host's /init as well as of direct mode.
set -u

: "${COVE:?}" "${VM_API:?}" "${KERNEL:?}" "${VMLINUX:?}" "${INITRD:?}"
export COVE VM_API KERNEL VMLINUX INITRD
[ -z "${EXEC_API:-}" ] || export EXEC_API
case_timeout=${E2E_CASE_TIMEOUT:-600}
scratch=${E2E_SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/cove-e2e-work.XXXXXX")}
mkdir -p "$scratch"

for case_file in "$@"; do
    name=${case_file##*/}
    name=${name%.sh}
    WORK=$scratch/$name
    rm -rf "$WORK"
    mkdir -p "$WORK"
    export WORK
    log=$scratch/$name.log
    sidfile=$scratch/$name.sid

    start=$(date +%s)
    # Each case runs in its own session (sh writes its pid, then becomes setsid, which keeps
    # that pid as the session and group id), so whatever it leaves running can be killed
    # afterwards. It runs in the foreground: background jobs would start with SIGINT ignored.
    sh -c 'echo $$ > "$1"; shift; exec setsid "$@"' sh "$sidfile" \
        timeout "$case_timeout" sh "$case_file" > "$log" 2>&1 < /dev/null
    status=$?
    elapsed=$(( $(date +%s) - start ))
    sid=$(cat "$sidfile" 2>/dev/null)
    [ -n "$sid" ] && kill -KILL -- "-$sid" 2>/dev/null

    if [ "$elapsed" -ge "$case_timeout" ]; then
        echo "case timed out after $case_timeout s" >> "$log"
        status=124
    elif [ "$status" -ne 0 ]; then
        echo "case exited with status $status" >> "$log"
    fi
    sed 's/^/    /' "$log"
    if [ "$status" -eq 0 ]; then
        echo "COVE-E2E $name PASS ($elapsed s)"
    else
        echo "COVE-E2E $name FAIL ($elapsed s)"
    fi
done
echo "COVE-E2E-DONE"
