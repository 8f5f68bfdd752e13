#!/bin/sh
# virtio-blk under a real file system, both ways. The host makes an ext4 image from a folder
# (mke2fs -d, no root) with files of known content; the guest mounts it as /dev/vda, prints
# the files' MD5 sums (compared here with the host's), copies the largest file and writes a new
# one, syncs and unmounts. Back on the host the image holds what the guest wrote (debugfs reads
# it out without mounting) and e2fsck finds the file system clean.
. "${0%/*}/../lib.sh"

src=$WORK/src
mkdir -p "$src/sub"
printf 'hello from the host\n' > "$src/small.txt"
# 2 MiB of random data: many requests, many segments per request.
dd if=/dev/urandom of="$src/big.bin" bs=4096 count=512 2> /dev/null
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "line %d of a text file\n", i }' > "$src/sub/deep.txt"
(cd "$src" && md5sum small.txt big.bin sub/deep.txt) > "$WORK/sums"
img=$WORK/disk.img
make_ext4 "$img" 32M "$src" || finish

guest ext4 'mount -t ext4 /dev/vda /mnt&&cd /mnt&&md5sum small.txt big.bin sub/deep.txt&&cp big.bin copy.bin&&echo written-by-the-guest>new.txt&&sync&&cd /&&umount /mnt&&echo UMOUNT=ok; echo SECTORS=$(cat /sys/block/vda/size)' \
    --disk "$img"

if expect_status ext4 0; then
    # 32 MiB is 65536 sectors of 512 bytes.
    [ "$(value "$WORK/ext4.out" SECTORS)" = 65536 ] ||
        fail "ext4: the guest sees $(value "$WORK/ext4.out" SECTORS) sectors, not 65536"
    while IFS= read -r line; do
        has_line "$WORK/ext4.out" "$line" || fail "ext4: the guest did not print '$line'"
    done < "$WORK/sums"
    [ "$(value "$WORK/ext4.out" UMOUNT)" = ok ] || fail "ext4: the guest did not unmount cleanly"
    any_failed && show "$WORK/ext4.out"
fi

# Read back what the guest wrote, without mounting (no root needed).
if ! new=$("$DEBUGFS" -R 'cat /new.txt' "$img" 2> "$WORK/debugfs.err"); then
    fail "debugfs cat /new.txt failed"
    show "$WORK/debugfs.err"
elif [ "$new" != written-by-the-guest ]; then
    fail "/new.txt in the image holds '$new', not 'written-by-the-guest'"
fi
"$DEBUGFS" -R "dump /copy.bin $WORK/copy.bin" "$img" > /dev/null 2> "$WORK/debugfs.err"
if [ ! -f "$WORK/copy.bin" ]; then
    fail "debugfs could not dump /copy.bin"
    show "$WORK/debugfs.err"
elif ! cmp -s "$WORK/copy.bin" "$src/big.bin"; then
    fail "/copy.bin in the image differs from big.bin: $(cmp "$WORK/copy.bin" "$src/big.bin" 2>&1)"
fi
# -f: check even though the file system is marked clean; -n: change nothing.
if ! "$E2FSCK" -fn "$img" > "$WORK/fsck.out" 2>&1; then
    fail "e2fsck -fn reports problems in the image the guest wrote"
    show "$WORK/fsck.out"
fi

finish
