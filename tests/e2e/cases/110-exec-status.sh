#!/bin/sh
# `cove run -- CMD` runs CMD through cove-agent over vsock and exits with CMD's status: 0, 1,
# 42, 128+N for a signal death, 127 for a missing command, 126 for one that cannot run; cove's
# own messages never mix into CMD's output.
. "${0%/*}/../lib.sh"

exec_run true -- true
expect_status true 0 && [ ! -s "$WORK/true.out" ] && [ ! -s "$WORK/true.err" ] ||
    { fail "true: printed something"; show "$WORK/true.out"; show "$WORK/true.err"; }

exec_run false -- false
expect_status false 1

exec_run exit42 -- sh -c 'exit 42'
expect_status exit42 42

exec_run killed -- sh -c 'kill -KILL $$'
expect_status killed 137

exec_run missing -- no-such-command --flag
if expect_status missing 127; then
    has_line "$WORK/missing.err" "cove: no-such-command: command not found in the guest" ||
        { fail "missing: no one-line reason"; show "$WORK/missing.err"; }
fi

exec_run directory -- /tmp
if expect_status directory 126; then
    has_line_prefix "$WORK/directory.err" "cove: /tmp: cannot run it in the guest: " ||
        { fail "directory: no one-line reason"; show "$WORK/directory.err"; }
fi

# stdout and stderr stay apart, each in order.
exec_run streams -- sh -c 'echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2'
if expect_status streams 0; then
    [ "$(cat "$WORK/streams.out")" = "$(printf 'out-1\nout-2')" ] ||
        { fail "streams: stdout is not exactly out-1 out-2"; show "$WORK/streams.out"; }
    [ "$(cat "$WORK/streams.err")" = "$(printf 'err-1\nerr-2')" ] ||
        { fail "streams: stderr is not exactly err-1 err-2"; show "$WORK/streams.err"; }
fi

# Arguments arrive as given: spaces, quotes, an empty one.
exec_run argv -- sh -c 'for a in "$@"; do echo "[$a]"; done' sh 'two words' "it's" ''
if expect_status argv 0; then
    [ "$(cat "$WORK/argv.out")" = "$(printf "[two words]\n[it's]\n[]")" ] ||
        { fail "argv: arguments changed on the way"; show "$WORK/argv.out"; }
fi

# The bundled guest without --kernel/--initrd (found beside the cove binary).
run_cove default run -- uname -a
if expect_status default 0; then
    expect_has default out 'Linux cove '
fi

# Which bundled kernel: an installation of its own (cove copied, since it finds share/cove/
# from its own path) whose bzImage is garbage still boots, so the vmlinux was taken; with only
# a bzImage it falls back to that; with neither, one line names both and the fix.
layout() { # NAME: $WORK/NAME/bin/cove and an empty $WORK/NAME/share/cove/
    mkdir -p "$WORK/$1/bin" "$WORK/$1/share/cove"
    cp "$COVE" "$WORK/$1/bin/cove"
    ln -s "$INITRD" "$WORK/$1/share/cove/initramfs.cpio.gz"
}
layout prefer
ln -s "$VMLINUX" "$WORK/prefer/share/cove/vmlinux"
head -c 4096 /dev/zero > "$WORK/prefer/share/cove/bzImage"
layout fallback
ln -s "$KERNEL" "$WORK/fallback/share/cove/bzImage"
layout nokernel
unset COVE_KERNEL COVE_INITRD # they would override what is being tested
real_cove=$COVE
for inst in prefer fallback; do
    COVE=$WORK/$inst/bin/cove
    run_cove "$inst" run -- echo "booted-$inst"
    expect_status "$inst" 0 && expect_has "$inst" out "booted-$inst"
done
COVE=$WORK/nokernel/bin/cove
run_cove nokernel run -- echo booted-nokernel
COVE=$real_cove
if expect_status nokernel 125; then
    has_line "$WORK/nokernel.err" "cove: no bundled guest kernel (vmlinux or bzImage) found (looked in share/cove/ and the build's guest/ beside the cove binary); run scripts/setup.sh, set \$COVE_KERNEL, or pass --kernel" ||
        { fail "nokernel: no one-line reason"; show "$WORK/nokernel.err"; }
fi

# A usage error of cove is 125 with a command, never a status CMD could have given.
run_cove badopt run --memory 12Q -- true
if expect_status badopt 125; then
    has_line "$WORK/badopt.err" "cove: --memory '12Q': not a size (use e.g. 512M or 2G)" ||
        { fail "badopt: no one-line reason"; show "$WORK/badopt.err"; }
fi

finish
