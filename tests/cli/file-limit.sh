#!/bin/sh
# cove run with a share under a descriptor limit it cannot raise prints one warning line that
# names the limit and the fix, and none without a share or with a limit high enough. The
# runs fail on purpose (no such kernel or initramfs, status 125) after parsing, so neither KVM
# nor a built guest is needed (the ASan build has none beside its cove).
#
#   sh tests/cli/file-limit.sh PATH/TO/cove
cove=${1:?usage: file-limit.sh COVE}
command -v prlimit > /dev/null || { echo "file-limit: prlimit missing (util-linux)"; exit 1; }
failed=0
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# limited SOFT:HARD ARGS...: cove run ARGS under that limit, unable to raise it (as root:
# without CAP_SYS_RESOURCE, by setpriv), stderr to $err; the exit status is checked.
limited() {
    _lim=$1
    shift
    if [ "$(id -u)" = 0 ]; then
        prlimit --nofile="$_lim" setpriv --bounding-set=-sys_resource \
            "$cove" run --kernel /nonexistent/bzImage --initrd /nonexistent/initrd "$@" -- true 2> "$err"
    else
        prlimit --nofile="$_lim" "$cove" run --kernel /nonexistent/bzImage --initrd /nonexistent/initrd "$@" -- true 2> "$err"
    fi
    _status=$?
    [ "$_status" = 125 ] || { echo "FAIL: status $_status, not 125, with limit $_lim and $*"; failed=1; }
}

warnings() {
    grep -c '^cove: warning: the open-file limit' "$err"
}

limited 1024:1024 --share /tmp:/x
[ "$(warnings)" = 1 ] || { echo "FAIL: with a share and limit 1024, $(warnings) warnings:"; cat "$err"; failed=1; }
grep -q '^cove: warning: the open-file limit is 1024 (hard limit 1024), so a share keeps at most 512 files .*raise the hard limit to 65536 or more' "$err" ||
    { echo "FAIL: the warning does not name the limit, the cap and the fix:"; cat "$err"; failed=1; }
grep -q "^cove: kernel '/nonexistent/bzImage'" "$err" ||
    { echo "FAIL: the run's own error is missing after the warning:"; cat "$err"; failed=1; }

limited 1024:1024
[ "$(warnings)" = 0 ] || { echo "FAIL: a warning without any share:"; cat "$err"; failed=1; }

# At the threshold: where this machine's hard limit lets the test set it (a container may keep
# even root below it), otherwise just under its own hard limit, which still warns.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
    limited 65536:65536 --share /tmp:/x
    [ "$(warnings)" = 0 ] || { echo "FAIL: a warning with limit 65536:"; cat "$err"; failed=1; }
else
    limited "$hard:$hard" --share /tmp:/x
    grep -q "^cove: warning: the open-file limit is $hard (hard limit $hard), so a share keeps at most $((hard / 2)) files" "$err" ||
        { echo "FAIL: no warning with this machine's hard limit $hard:"; cat "$err"; failed=1; }
    echo "file-limit: hard limit $hard here: the no-warning case at 65536 was not run"
fi

# Two shares: still one line.
limited 2048:2048 --share /tmp:/x --share /tmp:/y
[ "$(warnings)" = 1 ] || { echo "FAIL: with two shares, $(warnings) warnings:"; cat "$err"; failed=1; }

[ "$failed" = 0 ] && echo "file-limit: ok"
exit "$failed"
