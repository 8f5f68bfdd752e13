# Helpers sourced by the e2e cases (tests/e2e/cases/*.sh). POSIX sh, busybox-compatible: the
# cases also run inside the busybox-only test host.
#
# Environment given by the runner: COVE, VM_API (the libcove API test program), EXEC_API (the
# exec API's, tests/e2e/exec_api.c), KERNEL,
# VMLINUX, INITRD, WORK (empty scratch dir), VIRTIO_GARBAGE (the static hostile virtio driver
# the cases carry into guests, tests/e2e/guest/virtio_garbage.c), MMAP_CAT (the static guest
# program that reads a file through mmap, tests/e2e/guest/mmap_cat.c), TAPCTL and DNS_RESPONDER
# (host-side programs of the network cases, tests/e2e/tapctl.c, dns_responder.c), E2E_MODE (direct or
# testhost, see run.sh; only for working around the test host's own limits).
#
# A case records failed checks with `fail` (it keeps going, so one run shows every broken
# check) and ends with `finish`, which exits 1 if any check failed.

: "${COVE:?}" "${VM_API:?}" "${KERNEL:?}" "${VMLINUX:?}" "${INITRD:?}" "${WORK:?}"

# e2fsprogs live in sbin, which a non-root PATH may lack (the test host puts its copies first).
PATH=$PATH:/usr/sbin:/sbin
export PATH

# e2fsprogs by full path: busybox sh (the test host's shell) runs its own mke2fs applet, which
# knows neither -t ext4 nor -d, whatever PATH says. Prints the first of NAME in /usr/local/sbin,
# /usr/sbin, /sbin that is not busybox, or NAME itself (then the case fails on the missing tool).
e2fsprogs_tool() {
    for _dir in /usr/local/sbin /usr/sbin /sbin; do
        [ -x "$_dir/$1" ] || continue
        case $(readlink -f "$_dir/$1") in
            *busybox) continue ;;
        esac
        echo "$_dir/$1"
        return
    done
    echo "$1"
}
MKE2FS=$(e2fsprogs_tool mke2fs)
DEBUGFS=$(e2fsprogs_tool debugfs)
E2FSCK=$(e2fsprogs_tool e2fsck)

# Most runs of cove are bounded by this (seconds), so a hung VM fails one check quickly
# instead of eating the whole case timeout.
COVE_RUN_TIMEOUT=${COVE_RUN_TIMEOUT:-120}

# The guest kernel command line of the default guest, without the command.
GUEST_CMDLINE='console=ttyS0 quiet panic=-1'

e2e_failed=0

fail() {
    echo "FAIL: $*"
    e2e_failed=1
}

note() {
    echo "  $*"
}

# any_failed: whether a check of this case has failed so far.
any_failed() {
    [ "$e2e_failed" -ne 0 ]
}

finish() {
    if [ "$e2e_failed" -ne 0 ]; then
        exit 1
    fi
    echo "ok"
    exit 0
}

# Shows a captured file, indented, for the reader of a failure.
show() {
    echo "  --- $1:"
    if [ -s "$1" ]; then
        tr -d '\r' < "$1" | sed 's/^/  | /' | tail -n "${SHOW_LINES:-40}"
    else
        echo "  | (empty)"
    fi
}

# run_cove NAME ARGS...: runs `cove ARGS...` with stdin from /dev/null; stdout goes to
# $WORK/NAME.out, stderr to $WORK/NAME.err, the exit status to $rc.
run_cove() {
    _name=$1
    shift
    _started=$(date +%s)
    timeout "$COVE_RUN_TIMEOUT" "$COVE" "$@" > "$WORK/$_name.out" 2> "$WORK/$_name.err" < /dev/null
    rc=$?
    note "$_name: status $rc after $(( $(date +%s) - _started )) s"
}

# guest NAME COMMAND [COVE OPTIONS...]: boots the default guest with 256 MiB (do not pass
# --memory again) running COMMAND under cove-agent. Results as for run_cove.
# Keep COMMAND under ~30 words: the kernel hands init at most 32 arguments.
guest() {
    _gname=$1
    _gcmd=$2
    shift 2
    run_cove "$_gname" run --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE -- $_gcmd" --memory 256M "$@"
}

# exec_run NAME [COVE RUN OPTIONS...] [--] CMD...: `cove run` of CMD through cove-agent in
# the test's guest with 256 MiB (do not pass --memory again). Results as for run_cove.
exec_run() {
    _ename=$1
    shift
    run_cove "$_ename" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M "$@"
}

# expect_status NAME WANT: checks $rc, showing the run's output when it differs.
expect_status() {
    if [ "$rc" -ne "$2" ]; then
        fail "$1: exit status $rc, expected $2"
        show "$WORK/$1.out"
        show "$WORK/$1.err"
        return 1
    fi
    return 0
}

# has FILE TEXT: FILE contains TEXT (a fixed string; carriage returns ignored).
has() {
    tr -d '\r' < "$1" | grep -qF -- "$2"
}

# has_line FILE LINE: FILE has a line exactly LINE.
has_line() {
    tr -d '\r' < "$1" | grep -qxF -- "$2"
}

# has_line_prefix FILE PREFIX: FILE has a line starting with PREFIX.
has_line_prefix() {
    tr -d '\r' < "$1" | awk -v p="$2" 'index($0, p) == 1 { found = 1 } END { exit !found }'
}

# expect_has NAME out|err TEXT: the run's stdout/stderr contains TEXT.
expect_has() {
    if ! has "$WORK/$1.$2" "$3"; then
        fail "$1: std$2 lacks '$3'"
        show "$WORK/$1.$2"
    fi
}

# value FILE KEY: prints VALUE from the first "KEY=VALUE" word in FILE. Guest commands echo
# such markers so that kernel messages on the console cannot be mistaken for results.
value() {
    tr -d '\r' < "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# Prints the pids of processes named "cove" in this case's session (the runner starts each
# case as a session leader, so this finds what the case left behind and nothing else).
cove_processes() {
    _self=$(cat /proc/$$/stat)
    _self=${_self##*) }
    # shellcheck disable=SC2086
    set -- $_self
    _sid=$4
    for _stat in /proc/[0-9]*/stat; do
        _line=$(cat "$_stat" 2>/dev/null) || continue
        _comm=${_line#*(}
        _comm=${_comm%%)*}
        [ "$_comm" = cove ] || continue
        _rest=${_line##*) }
        # shellcheck disable=SC2086
        set -- $_rest
        [ "$4" = "$_sid" ] && echo "${_line%% *}"
    done
}

# wait_for FILE TEXT SECONDS: waits until FILE contains TEXT; returns 1 on timeout.
wait_for() {
    _n=$(( $3 * 5 ))
    while [ "$_n" -gt 0 ]; do
        [ -f "$1" ] && has "$1" "$2" && return 0
        sleep 0.2
        _n=$((_n - 1))
    done
    return 1
}

# make_ext4 IMAGE SIZE DIR: creates IMAGE (SIZE as mke2fs takes it, e.g. 32M), an ext4 file
# system holding a copy of DIR, without root (mke2fs -d; e2fsprogs, not busybox's mke2fs).
# Returns 1 after a failed check when it cannot.
make_ext4() {
    if ! "$MKE2FS" -q -t ext4 -d "$3" "$1" "$2" > "$1.mke2fs" 2>&1; then
        fail "mke2fs -t ext4 -d '$3' '$1' $2 failed (needs e2fsprogs 1.43+: apt-get install e2fsprogs)"
        show "$1.mke2fs"
        return 1
    fi
    rm -f "$1.mke2fs"
}

# need_virtio_garbage: fails the case unless $VIRTIO_GARBAGE is there (the runner passes it).
need_virtio_garbage() {
    if [ ! -x "${VIRTIO_GARBAGE:-}" ]; then
        fail "VIRTIO_GARBAGE '${VIRTIO_GARBAGE:-}' is not an executable (run.sh --virtio-garbage)"
        finish
    fi
}

# pattern_image FILE SECTORS: writes FILE, SECTORS sectors of 512 bytes, each starting with
# "SECTOR-%08d" (its number) and padded with spaces to a newline.
pattern_image() {
    awk -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%-511s\n", sprintf("SECTOR-%08d", i) }' > "$1"
}
