#!/bin/sh
# The libcove API as an embedding program uses it (tests/e2e/vm_api.c): two VMs in one
# process, state callbacks in order, the pollable state descriptor, a forced stop, a
# requested stop through the ACPI power button, and validation errors returned to the caller.
. "${0%/*}/../lib.sh"

timeout "$COVE_RUN_TIMEOUT" "$VM_API" "$KERNEL" "$INITRD" > "$WORK/api.out" 2>&1 < /dev/null
rc=$?
grep -q '^vm_api: ok:' "$WORK/api.out" || fail "vm_api reported no check at all"
if [ "$rc" -ne 0 ] || grep -q '^vm_api: FAIL' "$WORK/api.out"; then
    fail "vm_api exited with status $rc"
    show "$WORK/api.out"
fi
finish
