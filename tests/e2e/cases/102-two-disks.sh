#!/bin/sh
# Two disks at once, each with its own image and serial: the first --disk is vda, the second
# vdb; /sys/block/vdX/serial and the sizes match; each reads back its own image (MD5 of the
# whole device); and a sector the guest writes to each lands in that image only, at that place
# (the rest of both images unchanged).
. "${0%/*}/../lib.sh"

a=$WORK/a.img
b=$WORK/b.img
dd if=/dev/urandom of="$a" bs=4096 count=256 2> /dev/null # 1 MiB: 2048 sectors
dd if=/dev/urandom of="$b" bs=4096 count=512 2> /dev/null # 2 MiB: 4096 sectors
sum_a=$(md5sum < "$a" | cut -d' ' -f1)
sum_b=$(md5sum < "$b" | cut -d' ' -f1)
# What the images must be afterwards: the guest writes one line, zero-padded to a sector.
cp "$a" "$WORK/a.expected"
cp "$b" "$WORK/b.expected"
echo disk-a-was-here | dd of="$WORK/a.expected" bs=512 seek=100 conv=sync,notrunc 2> /dev/null
echo disk-b-was-here | dd of="$WORK/b.expected" bs=512 seek=200 conv=sync,notrunc 2> /dev/null

guest two 'echo S0=$(cat /sys/block/vda/serial) S1=$(cat /sys/block/vdb/serial) Z0=$(cat /sys/block/vda/size) Z1=$(cat /sys/block/vdb/size);echo A=$(md5sum</dev/vda) B=$(md5sum</dev/vdb);echo disk-a-was-here|dd of=/dev/vda bs=512 seek=100 conv=sync,fsync;echo disk-b-was-here|dd of=/dev/vdb bs=512 seek=200 conv=sync,fsync' \
    --disk "$a,serial=cove-disk-a" --disk "$b,serial=cove-disk-b"

if expect_status two 0; then
    out=$WORK/two.out
    [ "$(value "$out" S0)" = cove-disk-a ] || fail "two: vda's serial is '$(value "$out" S0)', not cove-disk-a"
    [ "$(value "$out" S1)" = cove-disk-b ] || fail "two: vdb's serial is '$(value "$out" S1)', not cove-disk-b"
    [ "$(value "$out" Z0)" = 2048 ] || fail "two: vda has $(value "$out" Z0) sectors, not 2048"
    [ "$(value "$out" Z1)" = 4096 ] || fail "two: vdb has $(value "$out" Z1) sectors, not 4096"
    [ "$(value "$out" A)" = "$sum_a" ] || fail "two: vda does not read back as a.img"
    [ "$(value "$out" B)" = "$sum_b" ] || fail "two: vdb does not read back as b.img"
    any_failed && show "$out"
fi
cmp -s "$a" "$WORK/a.expected" ||
    fail "a.img is not its original plus the guest's sector 100: $(cmp "$a" "$WORK/a.expected" 2>&1)"
cmp -s "$b" "$WORK/b.expected" ||
    fail "b.img is not its original plus the guest's sector 200: $(cmp "$b" "$WORK/b.expected" 2>&1)"

finish
