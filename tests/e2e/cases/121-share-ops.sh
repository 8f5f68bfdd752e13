#!/bin/sh
# What a job does to a share, seen from both sides: a 256 MiB file copied by the guest equals
# the host's by checksum; append, truncate, rename over a file, symlink, rmdir, chmod, chown,
# utimes and fsync reach the host; a folder of 10,000 entries lists whole; mmap of a shared
# file reads the host's bytes; and while the VM runs, a change the host makes is seen by the
# guest and one the guest makes is seen by the host.
. "${0%/*}/../lib.sh"

# The 256 MiB copy takes minutes in the nested test host.
COVE_RUN_TIMEOUT=480
# Room for the stall report below when the run fails.
SHOW_LINES=100
[ -x "${MMAP_CAT:-}" ] || fail "MMAP_CAT '${MMAP_CAT:-}' is not an executable (run.sh --mmap-cat)"
share=$WORK/share
mkdir -p "$share/many" "$share/gone"
head -c 268435456 /dev/urandom > "$share/big"
big_sum=$(md5sum < "$share/big" | awk '{ print $1 }')
head -c 1048576 /dev/urandom > "$share/mapped"
mapped_sum=$(md5sum < "$share/mapped" | awk '{ print $1 }')
cp "$MMAP_CAT" "$share/mmap_cat"
(cd "$share/many" && seq 1 10000 | sed 's/^/entry-/' | xargs touch)
echo old > "$share/over"
echo v1 > "$share/shared.txt"
touch "$share/modes" "$share/owned" "$share/stamp"
want_owner=1234:5678
[ "$(id -u)" = 0 ] || want_owner=refused

# The host's half of the concurrent change: once the guest says it is up, rewrite a file the
# guest has already read, and create one.
(
    waited=0
    while [ ! -e "$share/guest-ready" ] && [ "$waited" -lt 600 ]; do
        sleep 0.2
        waited=$((waited + 1))
    done
    echo v2 > "$share/shared.txt"
    echo from-host > "$share/host-wrote"
) &
watcher=$!

# A copy that stalls (once, in a CI run: see docs/testing.md) says where, on stderr, before the
# bound stops the run: how far it got, where cp sleeps, and the guest kernel's blocked tasks
# (sysrq w).
exec_run ops --memory 512M --share "$share:/job" --workdir /job -- sh -c '
    cp big big.copy & cp_pid=$!
    (
        waited=0
        while kill -0 $cp_pid 2>/dev/null; do
            sleep 1
            waited=$((waited + 1))
            [ $waited = 300 ] || continue
            echo "cp stalled: big.copy has $(stat -c %s big.copy) bytes after 300 s," \
                "cp waits in $(cat /proc/$cp_pid/wchan)" >&2
            echo w > /proc/sysrq-trigger
            dmesg | tail -n 80 >&2
        done
    ) &
    wait $cp_pid && echo copied
    echo "mapped=$(./mmap_cat mapped | md5sum | cut -d" " -f1)"
    echo one > appended && echo two >> appended
    head -c 1000 /dev/zero > truncated && truncate -s 10 truncated
    echo new > renamed && mv renamed over
    ln -s over the-link
    rmdir gone
    echo "many=$(ls many | wc -l)"
    chmod 640 modes
    chown 1234:5678 owned 2>/dev/null || echo chown-refused
    touch -d "2001-02-03 04:05:06" stamp
    echo synced | dd of=fsynced conv=fsync 2>/dev/null
    echo "before=$(cat shared.txt)"
    echo up > guest-ready
    i=0
    while [ ! -e host-wrote ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
    sleep 2
    echo "host-wrote=$(cat host-wrote 2>/dev/null)"
    echo "after=$(cat shared.txt)"'
wait "$watcher"
if expect_status ops 0; then
    out=$WORK/ops.out
    has_line "$out" copied || { fail "ops: cp of the 256 MiB file failed"; show "$out"; }
    [ "$(md5sum < "$share/big.copy" | awk '{ print $1 }')" = "$big_sum" ] ||
        fail "ops: the guest's copy of the 256 MiB file differs from the host's"
    has_line "$out" "mapped=$mapped_sum" || { fail "ops: mmap read other bytes than the host's"; show "$out"; }
    [ "$(cat "$share/appended")" = "one
two" ] || fail "ops: append: '$(cat "$share/appended")'"
    [ "$(stat -c %s "$share/truncated")" = 10 ] || fail "ops: truncate left $(stat -c %s "$share/truncated") bytes"
    [ "$(cat "$share/over")" = new ] && [ ! -e "$share/renamed" ] || fail "ops: rename over a file"
    [ -L "$share/the-link" ] && [ "$(readlink "$share/the-link")" = over ] || fail "ops: symlink"
    [ ! -e "$share/gone" ] || fail "ops: rmdir left the directory"
    has_line "$out" "many=10000" || { fail "ops: the 10,000-entry folder did not list whole"; show "$out"; }
    [ "$(stat -c %a "$share/modes")" = 640 ] || fail "ops: chmod: mode $(stat -c %a "$share/modes")"
    if [ "$want_owner" = refused ]; then
        has_line "$out" chown-refused || fail "ops: chown by an unprivileged VMM was not refused"
    else
        [ "$(stat -c %u:%g "$share/owned")" = "$want_owner" ] ||
            fail "ops: chown: owner $(stat -c %u:%g "$share/owned")"
    fi
    [ "$(stat -c %Y "$share/stamp")" = 981173106 ] || fail "ops: utimes: mtime $(stat -c %Y "$share/stamp")"
    [ "$(cat "$share/fsynced")" = synced ] || fail "ops: the fsync'd file is not on the host"
    has_line "$out" "before=v1" || { fail "ops: the guest did not read the host's first version"; show "$out"; }
    has_line "$out" "host-wrote=from-host" ||
        { fail "ops: the guest did not see a file the host made while it ran"; show "$out"; }
    has_line "$out" "after=v2" || { fail "ops: the guest did not see the host's change"; show "$out"; }
    [ "$(cat "$share/guest-ready" 2>/dev/null)" = up ] || fail "ops: the host did not see the guest's file"
fi
# cache=never: reads and writes go direct (a MAP_SHARED mapping is refused, exec still maps
# privately), data moves intact both ways, and a host change is seen at the very next read,
# with no attribute window: the file grows and the guest reads all of it at once.
echo v1 > "$share/live.txt"
(
    waited=0
    while [ ! -e "$share/never-ready" ] && [ "$waited" -lt 600 ]; do
        sleep 0.2
        waited=$((waited + 1))
    done
    echo version-two > "$share/live.txt"
    touch "$share/host-done"
) &
watcher=$!
exec_run never --share "$share:/job:cache=never" --workdir /job -- sh -c '
    echo "read=$(md5sum < mapped | cut -d" " -f1)"
    dd if=mapped of=mapped.copy bs=64k 2>/dev/null && echo written
    ./mmap_cat mapped > /dev/null 2>/tmp/err || echo "map-refused: $(cat /tmp/err)"
    echo "live-before=$(cat live.txt)"
    echo up > never-ready
    i=0
    while [ ! -e host-done ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
    echo "live-after=$(cat live.txt)"'
wait "$watcher"
if expect_status never 0; then
    out=$WORK/never.out
    has_line "$out" "read=$mapped_sum" || { fail "never: a direct read returned other bytes"; show "$out"; }
    has_line "$out" written || { fail "never: dd into the share failed"; show "$out"; }
    [ "$(md5sum < "$share/mapped.copy" | awk '{ print $1 }')" = "$mapped_sum" ] ||
        fail "never: the guest's direct writes reached the host differently"
    tr -d '\r' < "$out" | grep '^map-refused: ' | grep -q "No such device" ||
        { fail "never: MAP_SHARED was not refused with ENODEV (the open was not direct I/O)"; show "$out"; }
    has_line "$out" "live-before=v1" || { fail "never: the first read"; show "$out"; }
    has_line "$out" "live-after=version-two" ||
        { fail "never: the host's change was not seen at the next read"; show "$out"; }
fi

# A cache mode the CLI does not know: one line and cove's own failure status (125, as for
# every usage error with a command), before any VM starts.
run_cove badcache run --share "$share:/job:cache=sometimes" -- true
if expect_status badcache 125; then
    [ "$(wc -l < "$WORK/badcache.err")" = 1 ] && has "$WORK/badcache.err" "unknown cache mode 'sometimes'" ||
        { fail "badcache: not one line naming the mode"; show "$WORK/badcache.err"; }
fi

finish
