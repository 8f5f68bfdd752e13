#!/bin/sh
# --disk IMG,cache=none. What this proves, and what not:
#  - Where a file system refuses O_DIRECT (the test host's /tmp is a Linux 6.1 tmpfs, which
#    does), cove says so in one line and exits 2 before any VM exists. In direct mode this
#    part runs only if $WORK or /dev/shm refuses O_DIRECT (a tmpfs before Linux 6.6).
#  - On a file system that accepts O_DIRECT ($WORK if it does, otherwise an ext4 image
#    loop-mounted under $WORK: root and a loop device are needed then, which the test host
#    has) a cache=none disk and a cache=host disk are attached side by side. While the guest
#    runs, cove's descriptor for the cache=none image has O_DIRECT in /proc/PID/fdinfo and the
#    cache=host one does not: the mode really reaches open(). The guest reads both whole
#    (checksums compared with the host's) and copies 256 KiB inside each; afterwards both
#    images are exactly as expected. It does not measure that the host page cache is bypassed
#    (only that the descriptor asks for it), nor does it cover the bounce buffer for guest
#    buffers that are not 512-byte aligned (the guest kernel's page cache I/O is aligned).
. "${0%/*}/../lib.sh"

# direct_io_ok DIR: whether a file in DIR can be written with O_DIRECT.
direct_io_ok() {
    dd if=/dev/zero of="$1/.direct-probe" bs=4096 count=1 oflag=direct 2> /dev/null
    _ok=$?
    rm -f "$1/.direct-probe"
    return $_ok
}

mounted=
shm_dir=
cleanup() {
    [ -z "$mounted" ] || umount "$mounted" 2> /dev/null
    [ -z "$shm_dir" ] || rm -rf "$shm_dir"
}
trap cleanup EXIT

# ---- The refusal ----
refusing=
if ! direct_io_ok "$WORK"; then
    refusing=$WORK
elif [ -d /dev/shm ] && shm_dir=$(mktemp -d /dev/shm/cove-e2e.XXXXXX 2> /dev/null); then
    if direct_io_ok "$shm_dir"; then
        rm -rf "$shm_dir"
        shm_dir=
    fi
    refusing=$shm_dir
fi
if [ -n "$refusing" ]; then
    dd if=/dev/zero of="$refusing/tmpfs.img" bs=4096 count=16 2> /dev/null
    run_cove refused run --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE" \
        --memory 256M --disk "$refusing/tmpfs.img,cache=none"
    want="cove: disk '$refusing/tmpfs.img': cache=none (O_DIRECT) is not supported by its file system (use cache=host)"
    if expect_status refused 2; then
        tr -d '\r' < "$WORK/refused.err" > "$WORK/refused.lines"
        if [ "$(cat "$WORK/refused.lines")" != "$want" ]; then
            fail "refused: stderr is not exactly: $want"
            show "$WORK/refused.err"
        fi
    fi
    note "O_DIRECT refusal checked on $refusing"
else
    note "no file system here refuses O_DIRECT: the refusal is not checked in this run"
fi

# ---- A file system that accepts O_DIRECT ----
if direct_io_ok "$WORK"; then
    dir=$WORK
else
    mkdir "$WORK/mnt"
    "$MKE2FS" -q -t ext4 "$WORK/fs.img" 16M > "$WORK/mkfs.out" 2>&1 ||
        { fail "mke2fs of the loop file system failed"; show "$WORK/mkfs.out"; finish; }
    if ! mount -o loop "$WORK/fs.img" "$WORK/mnt" > "$WORK/mount.out" 2>&1; then
        fail "$WORK refuses O_DIRECT, and an ext4 loop mount for cache=none failed (root and a loop device are needed)"
        show "$WORK/mount.out"
        finish
    fi
    mounted=$WORK/mnt
    dir=$WORK/mnt
    direct_io_ok "$dir" || { fail "the loop-mounted ext4 refuses O_DIRECT too"; finish; }
fi
note "cache=none images on $dir"

none=$dir/none.img
host=$dir/host.img
dd if=/dev/urandom of="$none" bs=4096 count=256 2> /dev/null
dd if=/dev/urandom of="$host" bs=4096 count=256 2> /dev/null
sum_none=$(md5sum < "$none" | cut -d' ' -f1)
sum_host=$(md5sum < "$host" | cut -d' ' -f1)
# The guest copies the first 256 KiB of each disk to 512 KiB in.
for img in "$none" "$host"; do
    cp "$img" "$img.expected"
    dd if="$img" of="$img.expected" bs=4096 count=64 seek=128 conv=notrunc 2> /dev/null
done

# The guest waits for a line on its console once done, so cove's descriptors can be looked at
# while the VM runs. Input is written only after the guest asked for it (see 70-serial-input).
mkfifo "$WORK/in.fifo"
exec 3<> "$WORK/in.fifo"
cmd='echo N=$(md5sum</dev/vda) H=$(md5sum</dev/vdb);dd if=/dev/vda of=/dev/vda bs=4k count=64 seek=128 conv=notrunc,fsync&&echo COPY_N=ok;dd if=/dev/vdb of=/dev/vdb bs=4k count=64 seek=128 conv=notrunc,fsync&&echo COPY_H=ok;echo PAUSE=1;read x;echo GOT=$x'
timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
    --cmdline "$GUEST_CMDLINE -- $cmd" --disk "$none,cache=none" --disk "$host,cache=host" \
    < "$WORK/in.fifo" > "$WORK/rt.out" 2> "$WORK/rt.err" &
runner=$!

# fd_flags PID PATH: the octal open flags of PID's descriptor for PATH (empty if none).
fd_flags() {
    for _fd in /proc/"$1"/fd/*; do
        [ "$(readlink "$_fd")" = "$2" ] || continue
        awk '/^flags:/ { print $2 }' "/proc/$1/fdinfo/${_fd##*/}"
        return
    done
}

if wait_for "$WORK/rt.out" 'PAUSE=1' 90; then
    pid=$(cove_processes)
    # shellcheck disable=SC2086
    set -- $pid
    if [ $# -ne 1 ]; then
        fail "rt: expected one cove process, found '$pid'"
    else
        flags_none=$(fd_flags "$1" "$none")
        flags_host=$(fd_flags "$1" "$host")
        note "open flags: cache=none $flags_none, cache=host $flags_host"
        # O_DIRECT is 040000 (octal) on x86.
        if [ -z "$flags_none" ] || [ $((0$flags_none & 040000)) -eq 0 ]; then
            fail "rt: cove's descriptor for the cache=none image lacks O_DIRECT (flags '$flags_none')"
        fi
        if [ -z "$flags_host" ] || [ $((0$flags_host & 040000)) -ne 0 ]; then
            fail "rt: cove's descriptor for the cache=host image has O_DIRECT or is missing (flags '$flags_host')"
        fi
    fi
else
    fail "rt: the guest did not get to its pause"
fi
echo go >&3
wait "$runner"
rc=$?
exec 3>&-

if expect_status rt 0; then
    out=$WORK/rt.out
    [ "$(value "$out" N)" = "$sum_none" ] || fail "rt: the cache=none disk does not read back as its image"
    [ "$(value "$out" H)" = "$sum_host" ] || fail "rt: the cache=host disk does not read back as its image"
    [ "$(value "$out" COPY_N)" = ok ] || fail "rt: the copy within the cache=none disk failed"
    [ "$(value "$out" COPY_H)" = ok ] || fail "rt: the copy within the cache=host disk failed"
    [ "$(value "$out" GOT)" = go ] || fail "rt: the guest did not get the input line"
    any_failed && show "$out"
fi
cmp -s "$none" "$none.expected" || fail "the cache=none image is not as the guest left it: $(cmp "$none" "$none.expected" 2>&1)"
cmp -s "$host" "$host.expected" || fail "the cache=host image is not as the guest left it: $(cmp "$host" "$host.expected" 2>&1)"

finish
