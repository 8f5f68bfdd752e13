#!/bin/sh
# Boot snapshots (`cove run --boot-cache DIR`): the first run of a configuration boots and
# saves its guest at cove-agent's READY, later runs restore it. A restored guest runs commands
# like a booted one, with the host's time and its own randomness (fresh entropy, reseeded);
# the snapshot holds no secret of the run that made it; a damaged snapshot is replaced; a new
# configuration gets an entry of its own; temporary files never stay behind; a restore marks
# its entry used and a save prunes the cache to its most recently used entries; a share's
# directory is the restored VM's own.
. "${0%/*}/../lib.sh"

cache=$WORK/boot-cache
snapshots() { find "$cache" -name '*.snap' 2>/dev/null | wc -l; }
leftovers() { find "$cache" -name '*.snap.*' 2>/dev/null | wc -l; }

printf 'hunter2-%s' "$$" > "$WORK/token"
exec_run first --boot-cache "$cache" --boot-timer --secret TOKEN=@"$WORK/token" -- \
    sh -c 'test "$TOKEN" = "$(cat /proc/self/environ | tr "\0" "\n" | sed -n "s/^TOKEN=//p")" && echo first'
if expect_status first 0; then
    expect_has first out first
    expect_has first err '(booted; saved to the boot cache)'
fi
[ "$(snapshots)" -eq 1 ] || fail "first: $(snapshots) snapshot files, expected 1"
[ "$(leftovers)" -eq 0 ] || fail "first: temporary files left in the cache"
snap=$(find "$cache" -name '*.snap' | head -n 1)
if [ -n "$snap" ] && grep -q "hunter2-$$" "$snap"; then
    fail "first: the snapshot holds the run's secret"
fi
[ "$(stat -c %a "$cache")" = 700 ] || fail "cache directory mode $(stat -c %a "$cache"), expected 700"
[ -n "$snap" ] && echo "    snapshot: $(du -k "$snap" | cut -f1) KiB on disk, $(stat -c %s "$snap") bytes apparent"

# Let the snapshot's clock fall behind, so a restored guest that kept it would show.
sleep 3
before=$(date +%s)
exec_run second --boot-cache "$cache" --boot-timer -- \
    sh -c 'echo "NOW=$(date +%s)"; echo "RAND=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n")"; echo "UUID=$(cat /proc/sys/kernel/random/uuid)"; exit 42'
if expect_status second 42; then
    expect_has second err '(restored from the boot cache)'
    now=$(value "$WORK/second.out" NOW)
    [ -n "$now" ] && [ "$now" -ge "$before" ] ||
        { fail "second: guest clock '$now' is behind the host's $before"; show "$WORK/second.out"; }
fi

exec_run third --boot-cache "$cache" --boot-timer -- \
    sh -c 'echo "RAND=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n")"; echo "UUID=$(cat /proc/sys/kernel/random/uuid)"'
if expect_status third 0; then
    expect_has third err '(restored from the boot cache)'
    for what in RAND UUID; do
        a=$(value "$WORK/second.out" $what)
        b=$(value "$WORK/third.out" $what)
        [ -n "$a" ] && [ "$a" != "$b" ] ||
            fail "second and third: the same $what '$a' from two restored guests"
    done
fi
[ "$(snapshots)" -eq 1 ] || fail "restores: $(snapshots) snapshot files, expected 1"

# Stdin, the exit status and streams work in a restored guest as in a booted one.
echo piped-through > "$WORK/stdin"
timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
    --boot-cache "$cache" -i -- sh -c 'cat; echo to-stderr >&2' \
    < "$WORK/stdin" > "$WORK/stdin.out" 2> "$WORK/stdin.err"
rc=$?
if expect_status stdin 0; then
    has_line "$WORK/stdin.out" piped-through || { fail "stdin: not echoed"; show "$WORK/stdin.out"; }
    has_line "$WORK/stdin.err" to-stderr || { fail "stdin: stderr lost"; show "$WORK/stdin.err"; }
fi

# A damaged snapshot: one warning, the guest boots, and a good snapshot replaces it.
if [ -n "$snap" ]; then
    head -c 100 "$snap" > "$snap.cut" && mv "$snap.cut" "$snap"
    exec_run damaged --boot-cache "$cache" --boot-timer -- echo damaged-ok
    if expect_status damaged 0; then
        expect_has damaged out damaged-ok
        expect_has damaged err 'damaged; removed, booting afresh'
        expect_has damaged err '(booted; saved to the boot cache)'
    fi
    # A restore marks its entry used: its modification time, which pruning goes by.
    touch -t 200101010000 "$snap"
    before=$(date +%s)
    exec_run after --boot-cache "$cache" --boot-timer -- echo after-ok
    if expect_status after 0; then
        expect_has after err '(restored from the boot cache)'
        [ "$(stat -c %Y "$snap")" -ge "$before" ] || fail "after: the restore did not mark its entry used"
    fi
fi

# Another configuration, another entry; --no-boot-cache neither reads nor writes.
exec_run other --boot-cache "$cache" --boot-timer --cpus 2 -- echo other-ok
if expect_status other 0; then
    expect_has other err '(booted; saved to the boot cache)'
fi
[ "$(snapshots)" -eq 2 ] || fail "other: $(snapshots) snapshot files, expected 2"
exec_run two-cpus --boot-cache "$cache" --boot-timer --cpus 2 -- sh -c 'nproc'
if expect_status two-cpus 0; then
    expect_has two-cpus err '(restored from the boot cache)'
    has_line "$WORK/two-cpus.out" 2 || { fail "two-cpus: nproc is not 2"; show "$WORK/two-cpus.out"; }
fi
exec_run uncached --boot-cache "$cache" --no-boot-cache --boot-timer -- echo uncached-ok
if expect_status uncached 0; then
    has "$WORK/uncached.err" 'boot cache' && { fail "uncached: used the boot cache"; show "$WORK/uncached.err"; }
fi

# Pruning: with 16 old entries of other configurations and a killed save's temporary file from
# long ago in the cache, the next save keeps the 16 most recently used entries (its own and the
# two in use among them) and removes the temporary file.
i=1
while [ "$i" -le 16 ]; do
    name=$(printf '%s/%016x.snap' "$cache" "$i")
    echo old > "$name" && touch -t 200101010000 "$name"
    i=$((i + 1))
done
abandoned=$(printf '%s/%016x.snap.AbCd12' "$cache" 99)
echo partial > "$abandoned" && touch -t 200101010000 "$abandoned"
exec_run pruned --boot-cache "$cache" --boot-timer --no-rng -- echo pruned-ok
if expect_status pruned 0; then
    expect_has pruned err '(booted; saved to the boot cache)'
fi
[ "$(snapshots)" -eq 16 ] || fail "pruned: $(snapshots) snapshot files, expected 16"
if [ -n "$snap" ] && [ ! -e "$snap" ]; then
    fail "pruned: the entry in use was removed"
fi
if [ -e "$abandoned" ]; then
    fail "pruned: the abandoned temporary file is still there"
fi
exec_run after-prune --boot-cache "$cache" --boot-timer -- echo after-prune-ok
if expect_status after-prune 0; then
    expect_has after-prune err '(restored from the boot cache)'
fi

# Shares: the guest mounts them after the snapshot point, so one entry serves the same share
# options on another directory, and the restored guest sees and writes that directory only.
mkdir -p "$WORK/share-a" "$WORK/share-b"
echo from-a > "$WORK/share-a/which"
echo from-b > "$WORK/share-b/which"
exec_run share-a --boot-cache "$cache" --boot-timer --share "$WORK/share-a:/job" -- \
    sh -c 'cat /job/which; echo written-a > /job/out'
if expect_status share-a 0; then
    expect_has share-a out from-a
    expect_has share-a err '(booted; saved to the boot cache)'
fi
exec_run share-b --boot-cache "$cache" --boot-timer --share "$WORK/share-b:/job" -- \
    sh -c 'cat /job/which; echo written-b > /job/out'
if expect_status share-b 0; then
    expect_has share-b err '(restored from the boot cache)'
    expect_has share-b out from-b
    has "$WORK/share-b.out" from-a && { fail "share-b: the restored guest saw the first run's directory"; show "$WORK/share-b.out"; }
fi
[ "$(cat "$WORK/share-b/out" 2> /dev/null)" = written-b ] || fail "share-b: the guest's write is not in its directory"
[ "$(cat "$WORK/share-a/out" 2> /dev/null)" = written-a ] || fail "share-b: the first run's directory changed"
# Read-only is the restored VM's own configuration too: the second run restores and is refused.
for n in 1 2; do
    exec_run share-ro$n --boot-cache "$cache" --boot-timer --share "$WORK/share-b:/job:ro" -- \
        sh -c 'cat /job/which; if echo x > /job/ro-test; then echo wrote; else echo refused; fi'
    if expect_status share-ro$n 0; then
        expect_has share-ro$n out from-b
        expect_has share-ro$n out refused
    fi
done
expect_has share-ro2 err '(restored from the boot cache)'
[ -e "$WORK/share-b/ro-test" ] && fail "share-ro: a file was written through the read-only share"

[ "$(leftovers)" -eq 0 ] || fail "temporary files left in the cache"
[ -z "$(cove_processes)" ] || fail "cove processes left: $(cove_processes)"
finish
