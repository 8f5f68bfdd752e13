# Shared by the benchmarks that run inside the nested QEMU "test host" (bench/boot.sh,
# bench/disk.sh): finding the guest kernel, carrying programs with their shared libraries into
# the test host's initramfs, and booting the test host. POSIX sh, to be sourced; the caller
# sets th_name (its name in messages) and root (the source tree). Every failure prints one line,
# "$th_name: ...", and exits 1.
#
#   th_stats                   the text of bench/stats.awk (field(), median()), to put in front
#                              of an awk program: awk "$th_stats"'...'
#
#   th_kernel                  waits for a guest/build-kernel.sh already running, runs it
#                              (it finds its cached result) and sets th_kernel_dir
#   th_build_baseline REV DIR  builds cove from git revision REV of $root in DIR (git archive,
#                              meson, ninja; the log in DIR.log); sets th_baseline_cove to the
#                              binary, and th_baseline_rev to REV's full hash
#   th_carry OVERLAY FILE      copies the shared libraries ldd lists for FILE into OVERLAY at
#                              the same absolute paths (the loader included)
#   th_add_qemu OVERLAY [FILE...]
#                              qemu-system-x86_64 at /usr/bin with its libraries, microvm's
#                              firmware and the option ROMs QEMU loads for a direct kernel
#                              boot, and each FILE (e.g. SeaBIOS for q35) at its own path
#   th_initramfs INIT OVERLAY OUTPUT
#                              guest/build-initramfs.sh: busybox, /init = INIT, OVERLAY on top
#   th_boot KERNEL INITRD [QEMU ARGS...]
#                              boots the test host (q35, TCG with nested SVM, 2 vCPUs,
#                              th_memory MiB, default 3072); its serial console on stdout. It
#                              returns QEMU's status (124 when `timeout` stopped it after
#                              th_timeout seconds, default 3600)
#   th_session_begin           sets th_started, th_load_before and th_timeout (from
#                              $BENCH_TIMEOUT, default 3600 s) for a benchmark session
#   th_session LOG KERNEL INITRD [QEMU ARGS...]
#                              the session: th_boot, its serial console written to LOG and
#                              passed on on stdout, for the caller's filter (th_session ... | awk)
#   th_session_end LOG         sets th_elapsed (seconds) and th_load_after; fails unless the
#                              test host printed BENCH-DONE

th_stats=$(cat "$root/bench/stats.awk")

th_die() {
    echo "$th_name: $*" >&2
    exit 1
}

th_kernel() {
    _waited=0
    while pgrep -f 'build-kernel\.sh' > /dev/null 2>&1; do
        [ "$_waited" -eq 0 ] && echo "$th_name: waiting for a running build-kernel.sh"
        _waited=$((_waited + 10))
        [ "$_waited" -lt 3600 ] || th_die "build-kernel.sh still running after an hour"
        sleep 10
    done
    th_kernel_dir=$("$root/guest/build-kernel.sh") || th_die "guest/build-kernel.sh failed"
    [ -f "$th_kernel_dir/bzImage" ] || th_die "no bzImage in $th_kernel_dir"
}

th_build_baseline() {
    th_baseline_rev=$(git -C "$root" rev-parse --verify "$1^{commit}") ||
        th_die "--baseline '$1' is not a commit"
    echo "$th_name: building the baseline cove at $(echo "$th_baseline_rev" | cut -c1-12)"
    mkdir -p "$2"
    git -C "$root" archive "$th_baseline_rev" | tar -x -C "$2" || th_die "git archive $1 failed"
    { meson setup "$2/build" "$2" && ninja -C "$2/build" src/cli/cove; } > "$2.log" 2>&1 ||
        th_die "building the baseline failed (see $2.log)"
    th_baseline_cove=$2/build/src/cli/cove
}

th_carry() {
    for _lib in $(ldd "$2" 2>/dev/null | grep -o '/[^ ]*'); do
        [ -e "$1$_lib" ] && continue
        mkdir -p "$1${_lib%/*}"
        cp -L "$_lib" "$1$_lib"
    done
}

th_add_qemu() {
    _qemu=$(command -v qemu-system-x86_64) ||
        th_die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
    mkdir -p "$1/usr/bin" "$1/usr/share/qemu"
    cp "$_qemu" "$1/usr/bin/qemu-system-x86_64"
    th_carry "$1" "$_qemu"
    # microvm's firmware (qboot) and the option ROMs QEMU may look for when loading a kernel.
    for _rom in bios-microvm.bin qboot.rom linuxboot_dma.bin linuxboot.bin pvh.bin; do
        [ -e "/usr/share/qemu/$_rom" ] && cp -L "/usr/share/qemu/$_rom" "$1/usr/share/qemu/$_rom"
    done
    _overlay=$1
    shift
    for _file in "$@"; do
        [ -e "$_file" ] || th_die "$_file missing (the QEMU firmware packages: qemu-system-data, seabios)"
        mkdir -p "$_overlay${_file%/*}"
        cp -L "$_file" "$_overlay$_file"
    done
    return 0
}

th_initramfs() {
    "$root/guest/build-initramfs.sh" --init "$1" --overlay "$2" --output "$3" ||
        th_die "building the test host initramfs failed"
}

th_boot() {
    _kernel=$1 _initrd=$2
    shift 2
    timeout "${th_timeout:-3600}" qemu-system-x86_64 -M q35 -accel tcg,thread=multi -cpu max \
        -smp 2 -m "${th_memory:-3072}" -nodefaults -no-user-config -display none \
        -serial stdio -no-reboot -kernel "$_kernel" -initrd "$_initrd" \
        -append "console=ttyS0 panic=-1 quiet" "$@" < /dev/null 2>&1
}

th_session_begin() {
    th_started=$(date +%s)
    th_load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    th_timeout=${BENCH_TIMEOUT:-3600}
}

th_session() {
    _log=$1
    shift
    { _status=0
      th_boot "$@" || _status=$?
      echo "$_status" > "$_log.status"
    } | tee "$_log"
}

th_session_end() {
    th_elapsed=$(( $(date +%s) - th_started ))
    th_load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    _status=$(cat "$1.status" 2>/dev/null || echo '?')
    rm -f "$1.status"
    tr -d '\r' < "$1" | grep -qx 'BENCH-DONE' ||
        th_die "the test host did not finish (QEMU status $_status after $th_elapsed s); see $1"
}
