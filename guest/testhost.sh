#!/bin/sh
# Runs one command where cove can use a real KVM, and exits with the command's status.
#
#   guest/testhost.sh [--mode auto|direct|testhost] [--timeout SECONDS] -- COMMAND [ARG...]
#
# COMMAND sees cove on its PATH and these variables: COVE_KERNEL (the vmlinux, which cove
# prefers of the bundled guest), COVE_BZIMAGE, COVE_VMLINUX, COVE_INITRD (the default
# initramfs). In direct mode (this host has vmx/svm and a KVM that is not PVM) it simply runs
# here. In testhost mode it runs inside a QEMU TCG guest with
# -cpu max, whose kernel (the guest kernel, built with KVM_AMD) sees AMD SVM with nested paging
# and so has a real /dev/kvm: see docs/testing.md. Needs a built tree (scripts/setup.sh).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mode=auto
limit=600
while [ $# -gt 0 ]; do
    case $1 in
        --mode) mode=${2:?}; shift 2 ;;
        --timeout) limit=${2:?}; shift 2 ;;
        --) shift; break ;;
        *) echo "testhost: usage: $0 [--mode auto|direct|testhost] [--timeout S] -- COMMAND..." >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "testhost: no command given" >&2; exit 2; }

cove=$root/build/src/cli/cove
initrd=$root/build/guest/initramfs.cpio.gz
for f in "$cove" "$initrd"; do
    [ -f "$f" ] || { echo "testhost: '$f' missing: run scripts/setup.sh" >&2; exit 2; }
done
kernel_dir=$("$here/build-kernel.sh") || exit 2

# Why this host cannot run cove directly, or nothing when it can.
direct_blocker() {
    grep -qwE 'vmx|svm' /proc/cpuinfo || { echo "no vmx/svm in /proc/cpuinfo"; return; }
    [ ! -e /sys/module/kvm_pvm ] || { echo "/dev/kvm is PVM (kvm_pvm)"; return; }
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || echo "/dev/kvm is not read-writable"
}

blocker=$(direct_blocker)
if [ "$mode" = auto ]; then
    mode=direct
    [ -z "$blocker" ] || mode=testhost
fi
if [ "$mode" = direct ]; then
    [ -z "$blocker" ] || { echo "testhost: cannot run directly: $blocker" >&2; exit 2; }
    PATH=${cove%/*}:$PATH COVE_KERNEL=$kernel_dir/vmlinux COVE_BZIMAGE=$kernel_dir/bzImage \
        COVE_VMLINUX=$kernel_dir/vmlinux \
        COVE_INITRD=$initrd exec "$@"
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
    { echo "testhost: $blocker, and qemu-system-x86_64 is missing (apt-get install qemu-system-x86)" >&2; exit 2; }
echo "testhost: $blocker; running in a nested QEMU test host" >&2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-testhost.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
overlay=$tmp/overlay
mkdir -p "$overlay/cove/bin" "$overlay/cove/guest"
cp "$cove" "$overlay/cove/bin/"
for lib in $(ldd "$cove" 2>/dev/null | grep -o '/[^ ]*'); do
    mkdir -p "$overlay${lib%/*}"
    cp -L "$lib" "$overlay$lib"
done
cp "$kernel_dir/bzImage" "$kernel_dir/vmlinux" "$overlay/cove/guest/"
cp "$initrd" "$overlay/cove/guest/initramfs.cpio.gz"
# The command, quoted for the test host's shell.
quoted=
for arg in "$@"; do
    quoted="$quoted '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'"
done
cat > "$tmp/init" <<EOF
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
dmesg -n 1
export PATH=/cove/bin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
export COVE_KERNEL=/cove/guest/vmlinux COVE_BZIMAGE=/cove/guest/bzImage COVE_VMLINUX=/cove/guest/vmlinux
export COVE_INITRD=/cove/guest/initramfs.cpio.gz
cd /tmp
$quoted < /dev/null
echo "COVE-TESTHOST-EXIT \$?"
poweroff -f
EOF
"$here/build-initramfs.sh" --init "$tmp/init" --overlay "$overlay" --output "$tmp/host.cpio.gz" || exit 2

cr=$(printf '\r')
# Streams the test host's console, holding back the status line.
timeout "$limit" qemu-system-x86_64 -M q35 -accel tcg,thread=multi -cpu max -smp 2 -m 3072 \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$kernel_dir/bzImage" -initrd "$tmp/host.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet" < /dev/null 2>&1 |
while IFS= read -r line; do
    line=${line%"$cr"}
    case $line in
        COVE-TESTHOST-EXIT*) echo "${line#COVE-TESTHOST-EXIT }" > "$tmp/status" ;;
        *) printf '%s\n' "$line" ;;
    esac
done
if [ ! -s "$tmp/status" ]; then
    echo "testhost: the test host ended before the command finished (crash or timeout after $limit s)" >&2
    exit 125
fi
exit "$(cat "$tmp/status")"
