#!/bin/sh
# A host that cannot run VMs: cove exits 3 with one line naming /dev/kvm and the fix, and
# is never confused with a configuration error (2) or a guest failure (1). /dev/kvm is hidden
# in a private mount namespace, so the host itself is untouched; this needs root (the test
# host is root; on a direct host the case says so and fails rather than skipping).
. "${0%/*}/../lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v unshare > /dev/null 2>&1; then
    fail "needs root and unshare(1) to hide /dev/kvm in a private mount namespace"
    finish
fi

# The config is valid, so only the missing /dev/kvm can fail the run.
timeout "$COVE_RUN_TIMEOUT" unshare -m sh -c '
    mount -t tmpfs none /dev && exec "$@"' sh \
    "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --serial none \
    > "$WORK/nokvm.out" 2> "$WORK/nokvm.err" < /dev/null
rc=$?
expect_status nokvm 3
expect_has nokvm err "cove: /dev/kvm: No such file or directory"
lines=$(wc -l < "$WORK/nokvm.err")
[ "$lines" -eq 1 ] || { fail "expected one line on stderr, got $lines"; show "$WORK/nokvm.err"; }
finish
