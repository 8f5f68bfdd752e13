#!/bin/sh
# The uncompressed ELF vmlinux boots as well as the bzImage.
. "${0%/*}/../lib.sh"

run_cove elf run --kernel "$VMLINUX" --initrd "$INITRD" --memory 256M \
    --cmdline "$GUEST_CMDLINE -- echo ELF-BOOT=\$(uname -s)"
if expect_status elf 0; then
    [ "$(value "$WORK/elf.out" ELF-BOOT)" = Linux ] || { fail "elf: the command did not run"; show "$WORK/elf.out"; }
fi

finish
