#!/bin/sh
# --serial file:PATH sends the console to a file instead of stdout; --serial none drops it.
. "${0%/*}/../lib.sh"

log=$WORK/console.log
guest file 'echo FILE-$((6*7))' --serial "file:$log"
if expect_status file 0; then
    if [ ! -f "$log" ]; then
        fail "file: $log was not created"
    elif ! has "$log" 'FILE-42'; then
        fail "file: $log lacks the guest output"
        show "$log"
    fi
    if has "$WORK/file.out" 'FILE-42'; then
        fail "file: the guest output also went to stdout"
        show "$WORK/file.out"
    fi
fi

guest none 'echo NONE-$((6*7))' --serial none
if expect_status none 0; then
    if has "$WORK/none.out" 'NONE-42'; then
        fail "none: the guest output reached stdout"
        show "$WORK/none.out"
    fi
fi

finish
