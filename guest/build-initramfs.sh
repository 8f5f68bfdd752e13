#!/bin/sh
# Builds a Cove guest initramfs (gzip-compressed newc cpio).
#
#   build-initramfs.sh --init PATH --output FILE [--overlay DIR] [--busybox PATH]
#
# The archive holds /init (PATH, normally cove-agent), a static busybox at /bin/busybox with a
# symlink for every applet at its usual place (bin/sh, sbin/poweroff, usr/bin/env, ...), the
# directories /proc /sys /dev /tmp /run /etc /root /mnt /var, and a /dev/console character
# device so the kernel can give init its stdio before anything mounts devtmpfs (with an
# initramfs the kernel does not mount devtmpfs itself: CONFIG_DEVTMPFS_MOUNT only applies to
# a real root file system). --overlay copies a directory tree on top (the e2e test host uses
# it to carry cove, kernels and test cases).
#
# It needs no root and no fakeroot: the tree is archived with owner 0:0 and the device node
# is appended as a second, hand-written cpio archive (the kernel unpacks concatenated
# archives). The output is reproducible: sorted names, mtime 0, renumbered inodes, gzip -n.
set -eu

usage() {
    echo "usage: $0 --init PATH --output FILE [--overlay DIR] [--busybox PATH]" >&2
    exit 2
}

init=
output=
overlay=
busybox=${BUSYBOX:-/bin/busybox}
while [ $# -gt 0 ]; do
    case $1 in
        --init) init=${2:?}; shift 2 ;;
        --output) output=${2:?}; shift 2 ;;
        --overlay) overlay=${2:?}; shift 2 ;;
        --busybox) busybox=${2:?}; shift 2 ;;
        *) usage ;;
    esac
done
[ -n "$init" ] && [ -n "$output" ] || usage

die() {
    echo "build-initramfs: $*" >&2
    exit 1
}

[ -f "$init" ] || die "init '$init' does not exist"
[ -x "$busybox" ] || die "busybox '$busybox' missing: apt-get install busybox-static"
# A dynamically linked busybox would need its libraries in the guest too.
if ldd "$busybox" >/dev/null 2>&1; then
    die "busybox '$busybox' is dynamically linked; use the static one (busybox-static)"
fi
[ -z "$overlay" ] || [ -d "$overlay" ] || die "overlay '$overlay' is not a directory"

stage=$(mktemp -d "${TMPDIR:-/tmp}/cove-initramfs.XXXXXX")
trap 'rm -rf "$stage" "${tmp_output:-}"' EXIT INT TERM

for dir in bin sbin usr/bin usr/sbin proc sys dev tmp run etc root mnt var; do
    mkdir -p "$stage/$dir"
done
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"

cp "$busybox" "$stage/bin/busybox"
chmod 0755 "$stage/bin/busybox"
# --list-full prints each applet with its directory ("bin/sh", "sbin/poweroff"); links are
# absolute so they resolve from any directory inside the guest.
"$busybox" --list-full | while IFS= read -r applet; do
    case $applet in
        ''|bin/busybox|linuxrc) continue ;;
    esac
    mkdir -p "$stage/${applet%/*}"
    [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
done

cp "$init" "$stage/init"
chmod 0755 "$stage/init"

if [ -n "$overlay" ]; then
    cp -a "$overlay/." "$stage/"
fi

# Fixed metadata for reproducibility (-h: set the links themselves, not their targets).
find "$stage" -exec touch -h -d @0 {} +

# One newc header; all fields are 8 hex digits. $1 name, $2 mode, $3 rdevmajor, $4 rdevminor,
# $5 inode. Files have no data here, so only the name needs padding to a 4-byte boundary.
newc_entry() {
    namesize=$(( ${#1} + 1 ))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$5" "$2" 0 0 1 0 0 0 0 "$3" "$4" "$namesize" 0
    printf '%s\0' "$1"
    pad=$(( (4 - (110 + namesize) % 4) % 4 ))
    while [ "$pad" -gt 0 ]; do
        printf '\0'
        pad=$((pad - 1))
    done
}

mkdir -p "$(dirname "$output")"
tmp_output="$output.tmp.$$"
{
    (cd "$stage" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
        cpio --quiet -o -H newc -R 0:0 --reproducible)
    # /dev/console: character device 5:1, mode 0600 (octal 020600 = 0x2180).
    newc_entry dev/console $((0x2180)) 5 1 999999
    newc_entry 'TRAILER!!!' 0 0 0 0
} | gzip -n -9 > "$tmp_output"
mv "$tmp_output" "$output"
