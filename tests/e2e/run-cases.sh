#!/bin/sh
# Runs e2e cases and reports in the line format tests/e2e/run.sh parses:
#
#       <the case's output, indented>
#   COVE-E2E <name> PASS|FAIL (<seconds> s[, retried])
#   ...
#   COVE-E2E-DONE
#
#   run-cases.sh CASE.sh...
#
# Environment: COVE, VM_API, KERNEL, VMLINUX, INITRD (passed on to the cases, as are
# VIRTIO_GARBAGE, MMAP_CAT, TAPCTL, DNS_RESPONDER and E2E_MODE for the cases that use them); E2E_SCRATCH, a directory for the cases' WORK dirs
# (default: a new temporary one); E2E_CASE_TIMEOUT, seconds per case (default 600). POSIX sh
# and busybox-compatible: it is the core of the test host's /init as well as of direct mode.
set -u

: "${COVE:?}" "${VM_API:?}" "${KERNEL:?}" "${VMLINUX:?}" "${INITRD:?}"
export COVE VM_API KERNEL VMLINUX INITRD
[ -z "${EXEC_API:-}" ] || export EXEC_API
case_timeout=${E2E_CASE_TIMEOUT:-600}
scratch=${E2E_SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/cove-e2e-work.XXXXXX")}
mkdir -p "$scratch"

# run_case FILE LOG: runs one case; sets status and elapsed.
run_case() {
    start=$(date +%s)
    # Each case runs in its own session (sh writes its pid, then becomes setsid, which keeps
    # that pid as the session and group id), so whatever it leaves running can be killed
    # afterwards. It runs in the foreground: background jobs would start with SIGINT ignored.
    sh -c 'echo $$ > "$1"; shift; exec setsid "$@"' sh "$sidfile" \
        timeout "$case_timeout" sh "$1" > "$2" 2>&1 < /dev/null
    status=$?
    elapsed=$(( $(date +%s) - start ))
    sid=$(cat "$sidfile" 2>/dev/null)
    [ -n "$sid" ] && kill -KILL -- "-$sid" 2>/dev/null

    if [ "$elapsed" -ge "$case_timeout" ]; then
        echo "case timed out after $case_timeout s" >> "$2"
        status=124
    elif [ "$status" -ne 0 ]; then
        echo "case exited with status $status" >> "$2"
    fi
}

# The nested test host's emulated CPU now and then faults an inner guest's kernel at random
# (a #PF on iret recursing into a double fault, or a triple fault; see docs/testing.md,
# "Guest CPU faults in the test host"). A case that failed only that way there runs once more,
# and says so; on real hardware (direct mode) nothing is retried.
CPU_FAULT='guest triple fault|double fault|stack recursion on stack type|KVM internal error'
retry_for_cpu_fault() {
    [ "${E2E_MODE:-}" = testhost ] && [ "$status" -ne 0 ] && grep -qE "$CPU_FAULT" "$1"
}

for case_file in "$@"; do
    name=${case_file##*/}
    name=${name%.sh}
    WORK=$scratch/$name
    rm -rf "$WORK"
    mkdir -p "$WORK"
    export WORK
    log=$scratch/$name.log
    sidfile=$scratch/$name.sid

    retried=
    run_case "$case_file" "$log"
    if retry_for_cpu_fault "$log"; then
        retried=", retried"
        first=$scratch/$name.first.log
        mv "$log" "$first"
        rm -rf "$WORK"
        mkdir -p "$WORK"
        run_case "$case_file" "$log"
        {
            echo "note: retried once: the first attempt failed with a guest CPU fault of the test host:"
            grep -E "$CPU_FAULT|FAIL" "$first" | head -n 5 | sed 's/^/  | /'
        } >> "$log"
    fi
    sed 's/^/    /' "$log"
    if [ "$status" -eq 0 ]; then
        echo "COVE-E2E $name PASS ($elapsed s$retried)"
    else
        echo "COVE-E2E $name FAIL ($elapsed s$retried)"
    fi
done
echo "COVE-E2E-DONE"
