#!/bin/sh
# --env and --secret reach CMD's environment; a secret is visible to CMD and nowhere else: not
# the host's process list, not the guest's console or kernel command line. --workdir, --user.
. "${0%/*}/../lib.sh"

exec_run env --env CI=1 --env 'GREETING=hello world' -- sh -c 'echo "CI=$CI"; echo "[$GREETING]"'
if expect_status env 0; then
    has_line "$WORK/env.out" "CI=1" || { fail "env: CI not set"; show "$WORK/env.out"; }
    has_line "$WORK/env.out" "[hello world]" || { fail "env: GREETING not set"; show "$WORK/env.out"; }
fi

secret="s3cr3t-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$secret" > "$WORK/token.txt"
from_env="envsecret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# While the guest sleeps, the host's process list is searched for the secrets.
(
    if wait_for "$WORK/secret.out" "READY" 90; then
        cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' > "$WORK/ps.txt"
        ps -o args > "$WORK/ps-args.txt" 2>/dev/null || ps > "$WORK/ps-args.txt"
    fi
) &
watcher=$!
TOKEN2=$from_env timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" \
    --memory 256M --serial "file:$WORK/console.log" --secret "TOKEN=@$WORK/token.txt" \
    --secret TOKEN2 -- \
    sh -c 'echo "TOKEN=$TOKEN"; echo "TOKEN2=$TOKEN2"; echo "CMDLINE=$(cat /proc/cmdline)";
           echo READY; sleep 3' > "$WORK/secret.out" 2> "$WORK/secret.err" < /dev/null
rc=$?
wait "$watcher"
if expect_status secret 0; then
    has_line "$WORK/secret.out" "TOKEN=$secret" || { fail "secret: CMD did not get TOKEN"; show "$WORK/secret.out"; }
    has_line "$WORK/secret.out" "TOKEN2=$from_env" || { fail "secret: CMD did not get TOKEN2"; show "$WORK/secret.out"; }
    grep '^CMDLINE=' "$WORK/secret.out" | grep -qF -e "$secret" -e "$from_env" &&
        fail "secret: on the guest's kernel command line"
    [ -s "$WORK/ps.txt" ] || fail "secret: the process list was not captured"
    grep -qF -e "$secret" -e "$from_env" "$WORK/ps.txt" "$WORK/ps-args.txt" &&
        fail "secret: in the host's process list"
    [ -f "$WORK/console.log" ] || fail "secret: no console log written"
    grep -qF -e "$secret" -e "$from_env" "$WORK/console.log" && fail "secret: in the console log"
    grep -qF -e "$secret" -e "$from_env" "$WORK/secret.err" && fail "secret: on cove's stderr"
fi

# A value on the command line would be in `ps`: refused, and nothing runs.
exec_run inline --secret TOKEN=visible -- true
if expect_status inline 125; then
    has_line_prefix "$WORK/inline.err" "cove: --secret TOKEN: a value on the command line shows in the host's process list" ||
        { fail "inline: no one-line reason"; show "$WORK/inline.err"; }
fi
exec_run unset --secret NO_SUCH_VARIABLE_HERE -- true
expect_status unset 125

exec_run workdir --workdir /tmp -- pwd
if expect_status workdir 0; then
    has_line "$WORK/workdir.out" "/tmp" || { fail "workdir: not /tmp"; show "$WORK/workdir.out"; }
fi
exec_run baddir --workdir /no/such/dir -- pwd
expect_status baddir 126

exec_run user --user 1000:2000 -- sh -c 'echo "ids=$(id -u):$(id -g)"'
if expect_status user 0; then
    has_line "$WORK/user.out" "ids=1000:2000" || { fail "user: wrong ids"; show "$WORK/user.out"; }
fi

finish
