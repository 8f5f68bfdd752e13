#!/bin/sh
# --share HOST_DIR:GUEST_PATH[:ro]: a host directory served over virtio-fs by cove itself and
# mounted by cove-agent. The guest reads what the host put there and writes what the host then
# sees; a read-only share refuses writes with EROFS; a symlink planted in the share pointing
# outside it cannot be followed to the host's file; hard links, renames and directories work.
. "${0%/*}/../lib.sh"

share=$WORK/share
mkdir -p "$share/sub" "$WORK/outside"
echo "from-the-host" > "$share/hello.txt"
head -c 3145728 /dev/urandom > "$share/sub/blob"
want=$(md5sum < "$share/sub/blob" | awk '{ print $1 }')
echo "host-secret-$$" > "$WORK/outside/secret"
ln -s "$WORK/outside/secret" "$share/escape-abs"
ln -s ../outside/secret "$share/escape-rel"

exec_run rw --share "$share:/job" --workdir /job -- sh -c '
    cat hello.txt
    echo "sum=$(md5sum < sub/blob | cut -d" " -f1)"
    echo "from-the-guest" > made-in-guest.txt
    mkdir -p newdir/deeper && echo deep > newdir/deeper/f
    ln made-in-guest.txt hardlink && mv hardlink renamed
    cat escape-abs 2>/dev/null && echo "ESCAPED-ABS"
    cat escape-rel 2>/dev/null && echo "ESCAPED-REL"
    ls -l escape-abs | grep -q "^l" && echo "symlink-visible"
    echo "read-ahead=$(cat /sys/class/bdi/$(awk "\$5 == \"/job\" { print \$3 }" /proc/self/mountinfo)/read_ahead_kb)"
    sync; echo done'
if expect_status rw 0; then
    has_line "$WORK/rw.out" "from-the-host" || { fail "rw: the guest did not read hello.txt"; show "$WORK/rw.out"; }
    has_line "$WORK/rw.out" "sum=$want" || { fail "rw: the 3 MiB file read back differently"; show "$WORK/rw.out"; }
    has_line "$WORK/rw.out" "symlink-visible" || { fail "rw: the planted symlink is not listed as one"; show "$WORK/rw.out"; }
    has_line "$WORK/rw.out" "read-ahead=1024" || { fail "rw: cove-agent did not set the share's read-ahead to 1 MiB"; show "$WORK/rw.out"; }
    has "$WORK/rw.out" "ESCAPED" && fail "rw: a symlink led out of the share"
    has "$WORK/rw.out" "host-secret-" && fail "rw: the guest read a host file outside the share"
    [ "$(cat "$share/made-in-guest.txt" 2>/dev/null)" = from-the-guest ] ||
        fail "rw: the guest's new file is not on the host"
    [ "$(cat "$share/newdir/deeper/f" 2>/dev/null)" = deep ] || fail "rw: nested directories not on the host"
    [ "$(cat "$share/renamed" 2>/dev/null)" = from-the-guest ] || fail "rw: link + rename not on the host"
    [ "$(stat -c %h "$share/made-in-guest.txt" 2>/dev/null)" = 2 ] || fail "rw: the hard link count is not 2"
fi

# The guest mounts a read-only share read-only; remounted read-write by a guest that wants to
# write anyway, the share itself (cove's FUSE server) still refuses.
exec_run ro --share "$share:/data:ro" -- sh -c '
    cat /data/hello.txt
    sh -c "echo x > /data/new.txt" 2>/tmp/err || echo "write-refused: $(cat /tmp/err)"
    mount -o remount,rw /data && echo remounted-rw
    sh -c "echo x > /data/new.txt" 2>/tmp/err || echo "device-refused: $(cat /tmp/err)"
    rm /data/hello.txt 2>/dev/null || echo "rm-refused"
    mkdir /data/d 2>/dev/null || echo "mkdir-refused"'
if expect_status ro 0; then
    has_line "$WORK/ro.out" "from-the-host" || { fail "ro: the guest did not read hello.txt"; show "$WORK/ro.out"; }
    tr -d '\r' < "$WORK/ro.out" | grep '^write-refused: ' | grep -q "Read-only file system" ||
        { fail "ro: the write was not refused with EROFS"; show "$WORK/ro.out"; }
    has_line "$WORK/ro.out" "remounted-rw" || { fail "ro: the guest could not remount"; show "$WORK/ro.out"; }
    tr -d '\r' < "$WORK/ro.out" | grep '^device-refused: ' | grep -q "Read-only file system" ||
        { fail "ro: after a remount the share itself did not refuse with EROFS"; show "$WORK/ro.out"; }
    has_line "$WORK/ro.out" "rm-refused" || fail "ro: rm was not refused"
    has_line "$WORK/ro.out" "mkdir-refused" || fail "ro: mkdir was not refused"
    [ ! -e "$share/new.txt" ] && [ ! -e "$share/d" ] && [ -f "$share/hello.txt" ] ||
        fail "ro: the host directory changed"
fi

run_cove badshare run --kernel "$KERNEL" --initrd "$INITRD" --share "$WORK/no-such-dir:/x" -- true
if expect_status badshare 125; then
    has_line "$WORK/badshare.err" "cove: share 'share0': directory '$WORK/no-such-dir': No such file or directory" ||
        { fail "badshare: no one-line reason"; show "$WORK/badshare.err"; }
fi
run_cove badpath run --kernel "$KERNEL" --initrd "$INITRD" --share "$share:relative" -- true
expect_status badpath 125

finish
