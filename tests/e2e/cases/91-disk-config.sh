#!/bin/sh
# --disk (and --console) mistakes: exit status 2, exactly the expected "cove: " lines on
# stderr, nothing created in $WORK (not even the console file) and the images untouched. No
# guest boots: every run here fails parsing or validation before a VM is made.
. "${0%/*}/../lib.sh"

mkdir "$WORK/cwd" "$WORK/inputs" "$WORK/logs" "$WORK/inputs/dir"
in=$WORK/inputs
dd if=/dev/zero of="$in/disk.img" bs=1024 count=64 2> /dev/null
printf 'not sectors' > "$in/odd.img"
: > "$in/empty.img"
ln "$in/disk.img" "$in/hardlink.img"
ln -s disk.img "$in/symlink.img"
missing=$in/missing.img
console=$WORK/cwd/console.log

# What validation must leave as it was: the names, sizes, modes, change times and contents
# (after the sleep, any change would get a later time).
inputs_listing() {
    (cd "$in" && stat -c '%n %s %a %Y %Z' * && md5sum disk.img odd.img)
}
inputs_before=$(inputs_listing)
sleep 1

# bad NAME ARGS... (then the expected stderr lines, after --): runs `cove run` with the
# default kernel and initrd plus ARGS from $WORK/cwd; checks the status, that stderr is
# exactly the expected lines, and that nothing was created or changed.
bad() {
    name=$1
    shift
    in_lines=false
    err=$WORK/logs/$name.err
    want=$WORK/logs/$name.want
    : > "$want"
    # Split "ARGS... -- LINES..." without arrays: ARGS go to the end of "$@", LINES to $want.
    n=$#
    while [ "$n" -gt 0 ]; do
        arg=$1
        shift
        n=$((n - 1))
        if $in_lines; then
            printf '%s\n' "$arg" >> "$want"
        elif [ "$arg" = -- ]; then
            in_lines=true
        else
            set -- "$@" "$arg"
        fi
    done
    (cd "$WORK/cwd" && exec timeout 60 "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" \
        --serial "file:$console" "$@") > "$WORK/logs/$name.out" 2> "$err" < /dev/null
    rc=$?
    if [ "$rc" -ne 2 ]; then
        fail "$name: exit status $rc, expected 2"
        show "$WORK/logs/$name.out"
    fi
    tr -d '\r' < "$err" > "$err.lines"
    if ! cmp -s "$err.lines" "$want"; then
        fail "$name: stderr is not exactly the expected lines"
        show "$want"
        show "$err"
    fi
    if [ -n "$(ls -A "$WORK/cwd")" ] || [ "$(ls -A "$WORK" | tr '\n' ' ')" != "cwd inputs logs " ] ||
        [ "$(inputs_listing)" != "$inputs_before" ]; then
        fail "$name: cove created or changed files: $(cd "$WORK" && find . ! -path './logs*' | tr '\n' ' ')"
        rm -rf "$WORK/cwd"/* "$WORK/cwd"/.[!.]*
    fi
}

bad missing --disk "$missing" -- \
    "cove: disk '$missing': No such file or directory"
bad directory --disk "$in/dir" -- \
    "cove: disk '$in/dir': is a directory"
bad not-sectors --disk "$in/odd.img" -- \
    "cove: disk '$in/odd.img': size 11 is not a multiple of 512 bytes"
bad empty --disk "$in/empty.img,ro" -- \
    "cove: disk '$in/empty.img': empty image (0 bytes)"
bad same-image --disk "$in/disk.img" --disk "$in/hardlink.img" -- \
    "cove: disk '$in/hardlink.img': the same image as disk 0 '$in/disk.img', attached read-write (attach both read-only)"
bad same-image-ro-rw --disk "$in/symlink.img,ro" --disk "$in/disk.img,cache=host" -- \
    "cove: disk '$in/disk.img': the same image as disk 0 '$in/symlink.img', attached read-write (attach both read-only)"
bad sub-option --disk "$in/disk.img,ro,rw" -- \
    "cove: --disk '$in/disk.img,ro,rw': unknown option 'rw' (use ro, cache=none|host, serial=ID)"
bad serial --disk "$in/disk.img,serial=ABCDEFGHIJKLMNOPQRSTU" -- \
    "cove: disk '$in/disk.img': serial 'ABCDEFGHIJKLMNOPQRSTU' is longer than 20 bytes"
bad no-path --disk ",ro" -- \
    "cove: --disk ',ro': no image path (use PATH[,ro][,cache=none|host][,serial=ID])"
# ",," is a comma in the path.
bad comma --disk "$in/a,,b.img,ro" -- \
    "cove: disk '$in/a,b.img': No such file or directory"
bad console --console tty -- \
    "cove: --console 'tty': use serial or hvc"
# Validation reports every disk's problem, in order, one line each.
bad several --disk "$missing" --disk "$in/disk.img,ro" --disk "$in/odd.img" --disk "$in/disk.img" -- \
    "cove: disk '$missing': No such file or directory" \
    "cove: disk '$in/odd.img': size 11 is not a multiple of 512 bytes" \
    "cove: disk '$in/disk.img': the same image as disk 1 '$in/disk.img', attached read-write (attach both read-only)"

finish
