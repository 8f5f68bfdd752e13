#!/bin/sh
# Bad configuration or usage: exit status 2, one "cove: " line per problem on stderr, and
# nothing started: no files created (not even the console file), no core dump.
. "${0%/*}/../lib.sh"

mkdir "$WORK/cwd" "$WORK/inputs" "$WORK/logs"
text=$WORK/inputs/notes.txt
echo "this is not a kernel" > "$text"
missing=$WORK/inputs/missing
console=$WORK/cwd/console.log

# bad NAME exact|prefix|contains EXPECTED ARGS...: runs `cove ARGS...` from $WORK/cwd and
# checks the status, the stderr line and that $WORK holds only what this script made.
bad() {
    name=$1 how=$2 want=$3
    shift 3
    err=$WORK/logs/$name.err
    (cd "$WORK/cwd" && exec timeout 60 "$COVE" "$@") > "$WORK/logs/$name.out" 2> "$err" < /dev/null
    rc=$?
    if [ "$rc" -ne 2 ]; then
        fail "$name: exit status $rc, expected 2"
        show "$err"
    fi
    case $how in
        exact) has_line "$err" "$want" ;;
        prefix) has_line_prefix "$err" "$want" ;;
        contains) tr -d '\r' < "$err" | grep '^cove: ' | grep -qF -- "$want" ;;
    esac || {
        fail "$name: stderr lacks the line '$want'"
        show "$err"
    }
    if [ -n "$(ls -A "$WORK/cwd")" ] || [ "$(ls -A "$WORK/inputs")" != notes.txt ] ||
        [ "$(ls -A "$WORK" | tr '\n' ' ')" != "cwd inputs logs " ]; then
        fail "$name: cove left files behind: $(cd "$WORK" && find . ! -path './logs*' | tr '\n' ' ')"
        rm -rf "$WORK/cwd"/* "$WORK/cwd"/.[!.]*
    fi
}

bad missing-kernel exact "cove: kernel '$missing': No such file or directory" \
    run --kernel "$missing" --initrd "$INITRD"
bad text-kernel exact "cove: kernel '$text': not a bzImage or ELF vmlinux" \
    run --kernel "$text" --initrd "$INITRD"
bad missing-initrd exact "cove: initrd '$missing': No such file or directory" \
    run --kernel "$KERNEL" --initrd "$missing" --serial "file:$console"
bad memory-low exact "cove: memory 1 MiB is below the minimum of 32 MiB" \
    run --kernel "$KERNEL" --initrd "$INITRD" --memory 1M --serial "file:$console"
bad memory-high prefix "cove: memory 100 TiB is above the maximum of " \
    run --kernel "$KERNEL" --initrd "$INITRD" --memory 100T --serial "file:$console"
bad cpus-zero prefix "cove: cpus 0: must be between 1 and " \
    run --kernel "$KERNEL" --initrd "$INITRD" --cpus 0
bad cpus-many prefix "cove: cpus 100000: must be between 1 and " \
    run --kernel "$KERNEL" --initrd "$INITRD" --cpus 100000
bad memory-malformed exact "cove: --memory '12Q': not a size (use e.g. 512M or 2G)" \
    run --kernel "$KERNEL" --initrd "$INITRD" --memory 12Q
bad unknown-option contains "--no-such-option" \
    run --kernel "$KERNEL" --initrd "$INITRD" --no-such-option
# Without --kernel the bundled one is used; $COVE_KERNEL names it, here wrongly.
export COVE_KERNEL="$missing"
bad no-kernel exact "cove: kernel '$missing': No such file or directory" \
    run --initrd "$INITRD"
unset COVE_KERNEL

# Validation reports every problem, not only the first.
bad several prefix "cove: " \
    run --kernel "$missing" --initrd "$INITRD" --memory 1M --cpus 0
for want in "cove: kernel '$missing': No such file or directory" \
    "cove: memory 1 MiB is below the minimum of 32 MiB"; do
    has_line "$WORK/logs/several.err" "$want" || fail "several: stderr lacks the line '$want'"
done
has_line_prefix "$WORK/logs/several.err" "cove: cpus 0: must be between 1 and " ||
    fail "several: stderr lacks the line 'cove: cpus 0: ...'"

finish
