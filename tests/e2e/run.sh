#!/bin/sh
# Cove end-to-end tests: boots real guests with the cove CLI and checks what they do.
#
#   run.sh [--cove PATH] [--vm-api PATH] [--exec-api PATH] [--virtio-garbage PATH]
#          [--mmap-cat PATH] [--tapctl PATH] [--dns-responder PATH] [--initrd PATH]
#          [--filter PATTERN] [--log PATH] [--mode direct|testhost]
#
# --vm-api is the libcove API test program (tests/e2e/vm_api.c), run by the cases as $VM_API;
# --exec-api the exec API's (tests/e2e/exec_api.c), as $EXEC_API.
# --virtio-garbage is the static hostile virtio driver (tests/e2e/guest/virtio_garbage.c) the
# cases carry into guests on a disk image, as $VIRTIO_GARBAGE; --mmap-cat the static guest
# program that reads a file through mmap (tests/e2e/guest/mmap_cat.c), as $MMAP_CAT.
# --tapctl (TAP devices: tests/e2e/tapctl.c) and --dns-responder (a one-name DNS server:
# tests/e2e/dns_responder.c) are static programs the network cases run on the host, as $TAPCTL
# and $DNS_RESPONDER.
#
# The disk cases make ext4 images with e2fsprogs (mke2fs -d, debugfs, e2fsck): in direct mode
# the host's; in testhost mode this script carries the host's into the test host.
#
# Cases are tests/e2e/cases/NN-name.sh (see lib.sh for their environment). --filter keeps the
# cases whose name contains PATTERN (a shell glob, e.g. 'signals' or '[0-4]?-*').
#
# Modes:
#   direct    this host has hardware virtualization (vmx/svm), /dev/kvm is not PVM (a
#             software KVM that cannot boot a plain Linux guest) and is read-writable:
#             the cases run here.
#   testhost  otherwise, if QEMU exists: the cases run inside a QEMU TCG guest with
#             -cpu max, whose kernel (the guest kernel, built with KVM_AMD) gets SVM+NPT and
#             hence a real /dev/kvm. Slower (~2-3 s per inner boot) but works anywhere.
# With neither, the suite fails: it never skips.
#
# Output ends with one line per case and then exactly "N passed, N failed". The exit status
# is non-zero when a case failed, when no case ran, or when the test host did not finish.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

cove=$root/build/src/cli/cove
vm_api=$root/build/tests/e2e/vm_api
exec_api=$root/build/tests/e2e/exec_api
virtio_garbage=$root/build/tests/e2e/virtio_garbage
mmap_cat=$root/build/tests/e2e/mmap_cat
tapctl=$root/build/tests/e2e/tapctl
dns_responder=$root/build/tests/e2e/dns_responder
initrd=$root/build/guest/initramfs.cpio.gz
filter=
log=
mode=
while [ $# -gt 0 ]; do
    case $1 in
        --cove) cove=${2:?--cove needs a path}; shift 2 ;;
        --vm-api) vm_api=${2:?--vm-api needs a path}; shift 2 ;;
        --exec-api) exec_api=${2:?--exec-api needs a path}; shift 2 ;;
        --virtio-garbage) virtio_garbage=${2:?--virtio-garbage needs a path}; shift 2 ;;
        --mmap-cat) mmap_cat=${2:?--mmap-cat needs a path}; shift 2 ;;
        --tapctl) tapctl=${2:?--tapctl needs a path}; shift 2 ;;
        --dns-responder) dns_responder=${2:?--dns-responder needs a path}; shift 2 ;;
        --initrd) initrd=${2:?--initrd needs a path}; shift 2 ;;
        --filter) filter=${2:?--filter needs a pattern}; shift 2 ;;
        --log) log=${2:?--log needs a path}; shift 2 ;;
        --mode) mode=${2:?--mode needs direct or testhost}; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "e2e: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

# The whole suite fails (never skips) when it cannot run; the summary line still ends it.
suite_fail() {
    echo "e2e: $*"
    echo "0 passed, 1 failed"
    exit 1
}

abspath() {
    case $1 in
        /*) echo "$1" ;;
        *) echo "$PWD/$1" ;;
    esac
}

[ -x "$cove" ] || suite_fail "cove binary '$cove' not found (build it, or pass --cove)"
[ -x "$vm_api" ] || suite_fail "API test program '$vm_api' not found (build it, or pass --vm-api)"
[ -x "$exec_api" ] ||
    suite_fail "exec API test program '$exec_api' not found (build it, or pass --exec-api)"
[ -x "$virtio_garbage" ] ||
    suite_fail "guest test program '$virtio_garbage' not found (build it, or pass --virtio-garbage)"
[ -x "$mmap_cat" ] || suite_fail "guest test program '$mmap_cat' not found (build it, or pass --mmap-cat)"
[ -x "$tapctl" ] || suite_fail "test program '$tapctl' not found (build it, or pass --tapctl)"
[ -x "$dns_responder" ] ||
    suite_fail "test program '$dns_responder' not found (build it, or pass --dns-responder)"
[ -f "$initrd" ] || suite_fail "guest initramfs '$initrd' not found (build it, or pass --initrd)"
cove=$(abspath "$cove")
vm_api=$(abspath "$vm_api")
exec_api=$(abspath "$exec_api")
virtio_garbage=$(abspath "$virtio_garbage")
mmap_cat=$(abspath "$mmap_cat")
tapctl=$(abspath "$tapctl")
dns_responder=$(abspath "$dns_responder")
initrd=$(abspath "$initrd")

# ---- Cases ----
cases=
count=0
for file in "$here"/cases/*.sh; do
    [ -f "$file" ] || continue
    name=${file##*/}
    name=${name%.sh}
    if [ -n "$filter" ]; then
        # shellcheck disable=SC2254
        case $name in
            *$filter*) ;;
            *) continue ;;
        esac
    fi
    cases="$cases $name"
    count=$((count + 1))
done
[ "$count" -gt 0 ] || suite_fail "no case matches '${filter:-*}' in $here/cases"

# ---- Kernel ----
# Wait for a kernel build already under way rather than starting a second one.
waited=0
while pgrep -f 'build-kernel\.sh' > /dev/null 2>&1; do
    [ "$waited" -eq 0 ] && echo "e2e: waiting for a running guest/build-kernel.sh"
    waited=$((waited + 10))
    [ "$waited" -lt 3600 ] || suite_fail "guest/build-kernel.sh still running after an hour"
    sleep 10
done
kernel_dir=$("$root/guest/build-kernel.sh") || suite_fail "guest/build-kernel.sh failed"
kernel=$kernel_dir/bzImage
vmlinux=$kernel_dir/vmlinux
[ -f "$kernel" ] && [ -f "$vmlinux" ] || suite_fail "no bzImage/vmlinux in '$kernel_dir'"

# ---- Mode ----
if grep -qwE 'vmx|svm' /proc/cpuinfo; then
    why_not_direct=
else
    why_not_direct="no vmx/svm in /proc/cpuinfo"
fi
if [ -e /sys/module/kvm_pvm ]; then
    why_not_direct="${why_not_direct:+$why_not_direct; }/dev/kvm is PVM (kvm_pvm loaded)"
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    why_not_direct="${why_not_direct:+$why_not_direct; }/dev/kvm is not read-writable"
fi
have_qemu=false
command -v qemu-system-x86_64 > /dev/null 2>&1 && have_qemu=true

case $mode in
    '')
        if [ -z "$why_not_direct" ]; then
            mode=direct reason="hardware KVM on this host"
        elif $have_qemu; then
            mode=testhost reason="$why_not_direct; using a QEMU TCG test host with nested SVM"
        else
            suite_fail "cannot run: $why_not_direct, and qemu-system-x86_64 is not installed" \
                "(apt-get install qemu-system-x86)"
        fi ;;
    direct)
        [ -z "$why_not_direct" ] || suite_fail "--mode direct: $why_not_direct"
        reason="forced by --mode" ;;
    testhost)
        $have_qemu || suite_fail "--mode testhost: qemu-system-x86_64 is not installed"
        reason="forced by --mode" ;;
    *) suite_fail "--mode must be direct or testhost, not '$mode'" ;;
esac
echo "e2e: mode=$mode ($reason)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cove-e2e.XXXXXX") || suite_fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/cove-e2e-log.XXXXXX")
log=$(abspath "$log")
: > "$log" || suite_fail "cannot write the log '$log'"

# Echoes its input without carriage returns (the serial console ends lines with CR LF),
# line by line so progress shows as it happens.
cr=$(printf '\r')
stream() {
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "${line%"$cr"}"
    done
}

case_files() {
    for name in $cases; do
        echo "$1/$name.sh"
    done
}

started=$(date +%s)
if [ "$mode" = direct ]; then
    # shellcheck disable=SC2046
    E2E_MODE=direct COVE=$cove VM_API=$vm_api EXEC_API=$exec_api VIRTIO_GARBAGE=$virtio_garbage \
        MMAP_CAT=$mmap_cat TAPCTL=$tapctl DNS_RESPONDER=$dns_responder KERNEL=$kernel \
        VMLINUX=$vmlinux INITRD=$initrd E2E_SCRATCH=$tmp/work \
        "$here/run-cases.sh" $(case_files "$here/cases") 2>&1 | tee "$log" | stream
else
    # The test host's initramfs: busybox (added by build-initramfs.sh), cove with the shared
    # libraries it needs at their usual paths, e2fsprogs in /usr/local/sbin (first on the test
    # host's PATH: busybox has an mke2fs of its own in /sbin, without -t ext4 or -d), kernel +
    # vmlinux + default initrd, the guest test program, the cases and the runner. Its /init
    # is testhost-init.sh.
    overlay=$tmp/overlay
    mkdir -p "$overlay/e2e/bin" "$overlay/e2e/guest" "$overlay/e2e/cases" "$overlay/usr/local/sbin"
    cp "$cove" "$overlay/e2e/bin/cove"
    cp "$vm_api" "$overlay/e2e/bin/vm_api"
    cp "$exec_api" "$overlay/e2e/bin/exec_api"
    cp "$virtio_garbage" "$overlay/e2e/bin/virtio_garbage"
    cp "$mmap_cat" "$overlay/e2e/bin/mmap_cat"
    cp "$tapctl" "$overlay/e2e/bin/tapctl"
    cp "$dns_responder" "$overlay/e2e/bin/dns_responder"
    e2fsprogs=
    for tool in mke2fs debugfs e2fsck; do
        found=
        for dir in /usr/sbin /sbin /usr/bin /bin; do
            [ -x "$dir/$tool" ] && { found=$dir/$tool; break; }
        done
        if [ -n "$found" ]; then
            cp -L "$found" "$overlay/usr/local/sbin/$tool"
            e2fsprogs="$e2fsprogs $found"
        else
            echo "e2e: $tool not found on this host (apt-get install e2fsprogs): the disk cases will fail"
        fi
    done
    [ -f /etc/mke2fs.conf ] && mkdir -p "$overlay/etc" && cp /etc/mke2fs.conf "$overlay/etc/"
    # shellcheck disable=SC2086
    # (ldd names each file on a line of its own, "PATH:", when given several.)
    for lib in $(ldd "$cove" "$vm_api" "$exec_api" $e2fsprogs 2>/dev/null | grep -v ':$' | grep -o '/[^ ]*'); do
        mkdir -p "$overlay${lib%/*}"
        cp -L "$lib" "$overlay$lib"
    done
    cp "$kernel" "$vmlinux" "$overlay/e2e/guest/"
    cp "$initrd" "$overlay/e2e/guest/initramfs.cpio.gz"
    # The bundled guest as an installation has it: bin/../share/cove/ beside cove.
    mkdir -p "$overlay/e2e/share/cove"
    ln -s ../../guest/vmlinux "$overlay/e2e/share/cove/vmlinux"
    ln -s ../../guest/bzImage "$overlay/e2e/share/cove/bzImage"
    ln -s ../../guest/initramfs.cpio.gz "$overlay/e2e/share/cove/initramfs.cpio.gz"
    cp "$here/lib.sh" "$here/run-cases.sh" "$overlay/e2e/"
    chmod 0755 "$overlay/e2e/run-cases.sh"
    for file in $(case_files "$here/cases"); do
        cp "$file" "$overlay/e2e/cases/"
    done
    [ -z "${E2E_CASE_TIMEOUT:-}" ] || echo "$E2E_CASE_TIMEOUT" > "$overlay/e2e/case-timeout"
    "$root/guest/build-initramfs.sh" --init "$here/testhost-init.sh" --overlay "$overlay" \
        --output "$tmp/testhost.cpio.gz" || suite_fail "building the test host initramfs failed"
    rm -rf "$overlay"

    # Overall bound for the test host; a hang shows up as a missing COVE-E2E-DONE.
    overall=${E2E_TIMEOUT:-2700}
    echo "e2e: booting the test host (timeout $overall s), serial log: $log"
    { timeout "$overall" qemu-system-x86_64 -M q35 -accel tcg,thread=multi -cpu max \
        -smp 2 -m 3072 -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$kernel" -initrd "$tmp/testhost.cpio.gz" \
        -append "console=ttyS0 panic=-1 quiet" < /dev/null 2>&1
      echo "$?" > "$tmp/qemu.status"
    } | tee "$log" | stream
    qemu_status=$(cat "$tmp/qemu.status" 2>/dev/null)
    [ "${qemu_status:-0}" -eq 0 ] || echo "e2e: QEMU exited with status $qemu_status"
fi
elapsed=$(( $(date +%s) - started ))

# ---- Results ----
passed=0
failed=0
results=$tmp/results
tr -d '\r' < "$log" | grep '^COVE-E2E ' > "$results"
# Each failed case's own lines again, next to the results: a CI report that keeps only the
# start and the end of a long log still says why. The test host's kernel messages are left out.
tr -d '\r' < "$log" | awk '
/^COVE-E2E / {
    if ($3 == "FAIL") {
        printf "\ne2e: why %s failed (its last lines):\n", $2
        from = n > 30 ? n - 30 : 0
        for (i = from; i < n; i++) print block[i]
    }
    n = 0
    next
}
/^    / && !/^    kvm \[/ { block[n++] = $0 }'
echo
echo "e2e: results ($mode mode, $elapsed s, log: $log)"
for name in $cases; do
    verdict=$(awk -v n="$name" '$2 == n { v = $3 } END { print v }' "$results")
    retried=
    grep -q "^COVE-E2E $name .*, retried)" "$results" && retried=" (retried after a test-host CPU fault)"
    case $verdict in
        PASS) passed=$((passed + 1)); echo "  PASS  $name$retried" ;;
        FAIL) failed=$((failed + 1)); echo "  FAIL  $name$retried" ;;
        *) failed=$((failed + 1)); echo "  FAIL  $name (no result: the run ended before it)" ;;
    esac
done
if ! tr -d '\r' < "$log" | grep -qx 'COVE-E2E-DONE'; then
    failed=$((failed + 1))
    echo "  FAIL  (suite) the runner did not finish: QEMU crashed, hung or timed out; see $log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
