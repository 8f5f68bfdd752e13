#!/bin/sh
# The host side works at all: /dev/kvm is usable and the cove binary (with its libraries)
# starts. Everything else depends on this, so it runs first and names the cause plainly.
. "${0%/*}/../lib.sh"

if [ ! -c /dev/kvm ]; then
    fail "/dev/kvm is not a character device"
elif ! : <> /dev/kvm; then
    fail "/dev/kvm cannot be opened read-write"
fi

for file in "$KERNEL" "$VMLINUX" "$INITRD"; do
    [ -s "$file" ] || fail "$file is missing or empty"
done

# 126/127: the binary or one of its shared libraries could not be loaded. Any other status
# is cove's own answer to --help, which this case does not judge.
run_cove help --help
if [ "$rc" -eq 126 ] || [ "$rc" -eq 127 ]; then
    fail "$COVE does not start (exit status $rc)"
    show "$WORK/help.err"
fi

finish
