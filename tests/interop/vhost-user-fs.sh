#!/bin/sh
# cove virtiofsd as another VMM's virtio-fs back-end: QEMU (-device vhost-user-fs-pci) boots
# the project's guest kernel and initramfs, its guest mounts the share through cove's server
# and works on it, and the host checks the results: reads, a 32 MiB copy and 4 MiB direct
# writes on a 1024-entry queue compared by checksum, rename, symlink, a 1,000-entry folder, a
# read-only share refusing writes. Then what a user can get wrong (no such directory, a
# socket path in use, missing options), a stop by SIGTERM, and a front-end that sends
# garbage: each one line, its exit status, and no socket file left behind.
#
# QEMU runs with TCG: the front-end's accelerator is nothing to the back-end, which sees the
# same messages and rings either way, and TCG runs this guest on any host (it boots in a few
# seconds), including this project's PVM development machines. The machine is q35: under TCG
# a microvm guest hangs now and then after failing to calibrate its TSC (no HPET or PM timer
# to check it against; seen in 5 of 20 plain boots, with no vhost-user device at all).
#
#   sh tests/interop/vhost-user-fs.sh COVE BZIMAGE INITRD
cove=${1:?usage: vhost-user-fs.sh COVE BZIMAGE INITRD}
kernel=${2:?}
initrd=${3:?}
for f in "$kernel" "$initrd"; do
    [ -f "$f" ] || { echo "vhost-user-fs: '$f' missing (run scripts/setup.sh)"; echo "0 passed, 1 failed"; exit 1; }
done
command -v qemu-system-x86_64 > /dev/null ||
    { echo "vhost-user-fs: qemu-system-x86_64 missing (apt-get install qemu-system-x86)"; echo "0 passed, 1 failed"; exit 1; }
work=$(mktemp -d /tmp/cove-vufs-XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    shift
    for f in "$@"; do [ -s "$f" ] && sed 's/^/  | /' "$f" | tail -n 30; done
}

# serve NAME ARGS...: cove virtiofsd on $work/NAME.sock in the background ($serve_pid), once
# its socket exists.
serve() {
    _name=$1
    shift
    "$cove" virtiofsd --socket-path "$work/$_name.sock" "$@" > "$work/$_name.serve.out" \
        2> "$work/$_name.serve.err" &
    serve_pid=$!
    _i=0
    while [ ! -S "$work/$_name.sock" ] && [ $_i -lt 100 ] && kill -0 "$serve_pid" 2> /dev/null; do
        sleep 0.05
        _i=$((_i + 1))
    done
}

# guest NAME [QUEUE_SIZE]: QEMU boots the guest with the share of NAME.sock as tag "share"
# (queue-size QUEUE_SIZE, QEMU's default 128 without); the guest mounts it and runs the
# share's guest.sh; its console goes to NAME.console. Then waits for the server, whose status
# is $serve_status.
guest() {
    timeout 300 qemu-system-x86_64 -M q35,memory-backend=mem -accel tcg \
        -cpu max -m 256M -object memory-backend-memfd,id=mem,size=256M,share=on \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 quiet panic=-1 -- sh -c 'mount -t virtiofs share /mnt && cd /mnt && sh ./guest.sh'" \
        -chardev socket,id=vufs,path="$work/$1.sock" \
        -device vhost-user-fs-pci,chardev=vufs,tag=share${2:+,queue-size=$2} \
        < /dev/null > "$work/$1.console" 2>&1
    qemu_status=$?
    wait "$serve_pid"
    serve_status=$?
}

has_line() { tr -d '\r' < "$1" | grep -qxF -- "$2"; }

# ---- A read-write share ----
share=$work/share
mkdir -p "$share/many"
echo hello-from-host > "$share/hello"
head -c 33554432 /dev/urandom > "$share/big"
big_sum=$(md5sum < "$share/big" | cut -d' ' -f1)
(cd "$share/many" && seq 1 1000 | sed 's/^/entry-/' | xargs touch)
cat > "$share/guest.sh" << 'EOF'
echo "hello=$(cat hello)"
echo "big=$(md5sum < big | cut -d' ' -f1)"
cp big big.copy && echo copied
dd if=big of=big.dd bs=4M 2> /dev/null && echo dd-done
mkdir dir && echo moved > dir/first && mv dir/first dir/second && echo renamed
ln -s hello the-link && echo "link=$(cat the-link)"
echo "many=$(ls many | wc -l)"
echo GUEST-DONE
EOF
# queue-size=1024, as virtiofsd's documentation has it: Linux would size requests at 1020
# pages, more buffers than cove's queues take, but for the server's cap in INIT.
serve rw --shared-dir "$share"
guest rw 1024
out=$work/rw.console
if [ "$qemu_status" = 0 ] && has_line "$out" GUEST-DONE; then
    pass "rw: the guest ran its script on the share"
else
    fail "rw: QEMU status $qemu_status, no GUEST-DONE" "$out" "$work/rw.serve.err"
fi
has_line "$out" "hello=hello-from-host" && pass "rw: read a host file" || fail "rw: read a host file" "$out"
has_line "$out" "big=$big_sum" && pass "rw: 32 MiB read, checksum equal" || fail "rw: big file checksum" "$out"
if has_line "$out" copied && [ "$(md5sum < "$share/big.copy" | cut -d' ' -f1)" = "$big_sum" ]; then
    pass "rw: the guest's 32 MiB copy equals the host's file"
else
    fail "rw: the guest's copy differs or is missing" "$out"
fi
# A 4 MiB direct write (write-only opens are direct): with queue-size=1024 Linux would send it
# as chains of 1024 buffers but for the server's 252-page cap.
if has_line "$out" dd-done && [ "$(md5sum < "$share/big.dd" | cut -d' ' -f1)" = "$big_sum" ]; then
    pass "rw: 4 MiB direct writes on a 1024-entry queue arrive whole"
else
    fail "rw: the 4 MiB direct writes (dd bs=4M) failed or differ" "$out" "$work/rw.serve.err"
fi
[ "$(cat "$share/dir/second" 2> /dev/null)" = moved ] && [ ! -e "$share/dir/first" ] &&
    pass "rw: mkdir, write and rename reached the host" || fail "rw: mkdir/rename" "$out"
[ "$(readlink "$share/the-link")" = hello ] && has_line "$out" "link=hello-from-host" &&
    pass "rw: symlink made and followed" || fail "rw: symlink" "$out"
has_line "$out" "many=1000" && pass "rw: a 1,000-entry folder listed whole" || fail "rw: readdir" "$out"
if [ "$serve_status" = 0 ] && [ ! -e "$work/rw.sock" ] && [ ! -s "$work/rw.serve.err" ]; then
    pass "rw: the server ended with the front-end (status 0, socket gone, nothing on stderr)"
else
    fail "rw: server status $serve_status, socket $(ls "$work/rw.sock" 2>&1)" "$work/rw.serve.err"
fi

# ---- A read-only share ----
cat > "$share/guest.sh" << 'EOF'
echo "hello=$(cat hello)"
if (echo no > written) 2> /tmp/err; then echo WRITE-ACCEPTED; else echo "write-refused: $(cat /tmp/err)"; fi
echo GUEST-DONE
EOF
serve ro --shared-dir "$share" --readonly --cache never
guest ro
out=$work/ro.console
if has_line "$out" "hello=hello-from-host" && grep -q 'write-refused:.*Read-only file system' "$out" &&
    [ ! -e "$share/written" ] && [ "$serve_status" = 0 ]; then
    pass "ro: reads work, a write gets EROFS and nothing reaches the host"
else
    fail "ro: read-only share (server status $serve_status)" "$out" "$work/ro.serve.err"
fi

# ---- What a user can get wrong ----
"$cove" virtiofsd --socket-path "$work/nodir.sock" --shared-dir "$work/absent" 2> "$work/nodir.err"
status=$?
if [ "$status" = 2 ] && [ "$(wc -l < "$work/nodir.err")" = 1 ] &&
    grep -qF "directory '$work/absent'" "$work/nodir.err" && [ ! -e "$work/nodir.sock" ]; then
    pass "a missing directory: status 2, one line naming it, no socket"
else
    fail "a missing directory: status $status" "$work/nodir.err"
fi
echo keep > "$work/taken.sock"
"$cove" virtiofsd --socket-path "$work/taken.sock" --shared-dir "$share" 2> "$work/taken.err"
status=$?
if [ "$status" = 2 ] && [ "$(wc -l < "$work/taken.err")" = 1 ] &&
    grep -qF "the path exists" "$work/taken.err" && [ "$(cat "$work/taken.sock")" = keep ]; then
    pass "a socket path in use: status 2, one line, the file left alone"
else
    fail "a socket path in use: status $status" "$work/taken.err"
fi
"$cove" virtiofsd --shared-dir "$share" 2> "$work/noopt.err"
status=$?
[ "$status" = 2 ] && grep -qF -- "--socket-path" "$work/noopt.err" &&
    pass "no --socket-path: status 2, says what is needed" || fail "no --socket-path: status $status" "$work/noopt.err"

# ---- Stopped by a signal while waiting for a front-end ----
serve term --shared-dir "$share"
kill -TERM "$serve_pid"
wait "$serve_pid"
status=$?
[ "$status" = 143 ] && [ ! -e "$work/term.sock" ] &&
    pass "SIGTERM: status 143, socket removed" || fail "SIGTERM: status $status" "$work/term.serve.err"

# ---- A front-end that sends garbage: one line, status 1, nothing left ----
serve garbage --shared-dir "$share"
python3 - "$work/garbage.sock" << 'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(struct.pack("<III", 99, 1, 0))  # request 99: no such request
s.recv(1)
EOF
wait "$serve_pid"
status=$?
if [ "$status" = 1 ] && [ "$(wc -l < "$work/garbage.serve.err")" = 1 ] &&
    grep -qF "request 99 is not supported" "$work/garbage.serve.err" && [ ! -e "$work/garbage.sock" ]; then
    pass "a garbage message: status 1, one line naming it, socket gone"
else
    fail "a garbage message: status $status" "$work/garbage.serve.err"
fi

pgrep -f "$work" > /dev/null && fail "processes left behind: $(pgrep -af "$work")"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
