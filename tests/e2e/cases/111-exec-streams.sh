#!/bin/sh
# Streams of `cove run -- CMD`: 100 MiB of binary output arrive byte-exact, stdin is piped
# with -i (and is empty without it), a closed stdout ends CMD with SIGPIPE, and -t runs CMD on
# a pseudo-terminal.
. "${0%/*}/../lib.sh"

# 100 MiB of random bytes: the guest prints their checksum on stderr, then the bytes.
run_cove big run --kernel "$KERNEL" --initrd "$INITRD" --memory 512M -- \
    sh -c 'head -c 104857600 /dev/urandom > /tmp/blob && sha256sum < /tmp/blob >&2 && cat /tmp/blob'
if expect_status big 0; then
    size=$(wc -c < "$WORK/big.out")
    [ "$size" -eq 104857600 ] || fail "big: got $size bytes of 104857600"
    want=$(tr -d '\r' < "$WORK/big.err" | awk '{ print $1; exit }')
    got=$(sha256sum < "$WORK/big.out" | awk '{ print $1 }')
    [ -n "$want" ] && [ "$want" = "$got" ] ||
        { fail "big: checksum $got on the host, '$want' in the guest"; show "$WORK/big.err"; }
fi
rm -f "$WORK/big.out"

# stdin with -i: 5 MiB through sha256sum in the guest, and a line through cat.
head -c 5242880 /dev/urandom > "$WORK/input"
want=$(sha256sum < "$WORK/input" | awk '{ print $1 }')
timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
    -i -- sha256sum < "$WORK/input" > "$WORK/stdin.out" 2> "$WORK/stdin.err"
rc=$?
if expect_status stdin 0; then
    got=$(awk '{ print $1; exit }' "$WORK/stdin.out")
    [ "$got" = "$want" ] || fail "stdin: the guest saw checksum '$got', the host sent $want"
fi
echo hello-through-cat | timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" \
    --initrd "$INITRD" --memory 256M -i -- cat > "$WORK/cat.out" 2> "$WORK/cat.err"
rc=$?
if expect_status cat 0; then
    [ "$(cat "$WORK/cat.out")" = hello-through-cat ] || { fail "cat: wrong echo"; show "$WORK/cat.out"; }
fi

# Without -i the command's stdin is empty, whatever cove's stdin holds.
echo not-for-the-guest | timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" \
    --initrd "$INITRD" --memory 256M -- wc -c > "$WORK/noin.out" 2> "$WORK/noin.err"
rc=$?
if expect_status noin 0; then
    [ "$(tr -d ' ' < "$WORK/noin.out")" = 0 ] || { fail "noin: stdin was not empty"; show "$WORK/noin.out"; }
fi

# A reader that goes away ends the command as on one host: `yes | head -1` finishes, and the
# command's death by SIGPIPE is cove's status (141).
{ timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
      -- yes 2> "$WORK/yes.err" < /dev/null; echo "$?" > "$WORK/yes.rc"; } | head -n 1 > "$WORK/yes.out"
rc=$(cat "$WORK/yes.rc")
if expect_status yes 141; then
    [ "$(cat "$WORK/yes.out")" = y ] || { fail "yes: first line is not y"; show "$WORK/yes.out"; }
fi

# -t: a pseudo-terminal of the default size; stdout and stderr both arrive on stdout.
exec_run tty -t -- sh -c 'tty; stty size; echo to-stderr >&2'
if expect_status tty 0; then
    has_line_prefix "$WORK/tty.out" "/dev/pts/" || { fail "tty: not on a pty"; show "$WORK/tty.out"; }
    has_line "$WORK/tty.out" "24 80" || { fail "tty: size is not 24 80"; show "$WORK/tty.out"; }
    has_line "$WORK/tty.out" "to-stderr" || { fail "tty: stderr not on the terminal"; show "$WORK/tty.out"; }
fi
# Without -t there is no terminal.
exec_run notty -- tty
[ "$rc" -ne 0 ] && has "$WORK/notty.out" "not a tty" ||
    { fail "notty: tty says there is a terminal"; show "$WORK/notty.out"; }

finish
