#!/bin/sh
# --disk IMG,ro. First boot: the guest sees a read-only disk (/sys/block/vda/ro is 1), a raw
# write to /dev/vda fails, mounting it read-write falls back to read-only and a new file on it
# is refused. Those refusals come from the guest kernel, which believes cove's
# VIRTIO_BLK_F_RO; so a second boot goes below it: virtio_garbage takes the disk from Linux and
# sends a write request itself, which cove must answer with IOERR and not carry out (a read of
# the sector afterwards still has the old data). After both, the image on the host is bit for
# bit what it was.
. "${0%/*}/../lib.sh"
need_virtio_garbage

mkdir "$WORK/src"
printf 'read-only content\n' > "$WORK/src/hello.txt"
cp "$VIRTIO_GARBAGE" "$WORK/src/vg"
img=$WORK/ro.img
make_ext4 "$img" 8M "$WORK/src" || finish
before=$(md5sum < "$img")

guest ro 'echo RO=$(cat /sys/block/vda/ro); dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync&&echo DD=written||echo DD=refused; mount -o rw /dev/vda /mnt&&cat /mnt/hello.txt; grep -w /mnt /proc/mounts; touch /mnt/new&&echo TOUCH=written||echo TOUCH=refused' \
    --disk "$img,ro"
if expect_status ro 0; then
    [ "$(value "$WORK/ro.out" RO)" = 1 ] || fail "ro: /sys/block/vda/ro is '$(value "$WORK/ro.out" RO)', not 1"
    [ "$(value "$WORK/ro.out" DD)" = refused ] || fail "ro: dd to /dev/vda: '$(value "$WORK/ro.out" DD)', not refused"
    has_line "$WORK/ro.out" 'read-only content' || fail "ro: the file system on the disk was not readable"
    has_line_prefix "$WORK/ro.out" '/dev/vda /mnt ext4 ro,' ||
        fail "ro: /dev/vda is not mounted read-only on /mnt"
    [ "$(value "$WORK/ro.out" TOUCH)" = refused ] ||
        fail "ro: touch on the mounted disk: '$(value "$WORK/ro.out" TOUCH)', not refused"
    any_failed && show "$WORK/ro.out"
fi

# Below the guest kernel: a raw VIRTIO_BLK_T_OUT of sector 0.
guest raw 'mount -o ro /dev/vda /mnt&&cp /mnt/vg /tmp/vg&&umount /mnt&&/tmp/vg write-probe vda' \
    --disk "$img,ro"
if expect_status raw 0; then
    # VIRTIO_BLK_S_IOERR is 1.
    status=$(value "$WORK/raw.out" VG-WRITE-STATUS)
    [ "$status" = 1 ] || fail "raw: the write request got status '$status', not 1 (IOERR)"
    readback=$(value "$WORK/raw.out" VG-READBACK)
    [ "$readback" = unchanged ] || fail "raw: reading sector 0 back after the write: '$readback'"
    any_failed && show "$WORK/raw.out"
fi

[ "$(md5sum < "$img")" = "$before" ] || fail "the read-only image changed on the host"

finish
