#!/bin/sh
# Networking: `cove run` gives the guest NAT by default (eth0 10.0.2.15, the host at 10.0.2.2),
# so it fetches a page from an HTTP server on the host's loopback; --publish forwards a host
# port to a server in the guest; a second VM publishing the same port fails before it boots
# with one line; --net none leaves no network device; --net host-only still reaches the host
# (what it blocks is proven by the unit tests: this machine has no outside network to try).
. "${0%/*}/../lib.sh"

mkdir -p "$WORK/www"
echo "hello-from-the-host-$$" > "$WORK/www/index.html"
port=$((20000 + $$ % 20000))
busybox httpd -f -p "127.0.0.1:$port" -h "$WORK/www" &
httpd=$!
sleep 1

exec_run fetch -- sh -c "ip -4 addr show eth0 | grep -o 'inet [0-9./]*'; wget -q -O- http://10.0.2.2:$port/"
if expect_status fetch 0; then
    has_line "$WORK/fetch.out" "inet 10.0.2.15/24" || { fail "fetch: eth0 is not 10.0.2.15/24"; show "$WORK/fetch.out"; }
    has_line "$WORK/fetch.out" "hello-from-the-host-$$" || { fail "fetch: the host's page did not arrive"; show "$WORK/fetch.out"; }
fi

exec_run hostonly --net host-only -- wget -q -O- "http://10.0.2.2:$port/"
if expect_status hostonly 0; then
    has_line "$WORK/hostonly.out" "hello-from-the-host-$$" || { fail "hostonly: the host alias was not reachable"; show "$WORK/hostonly.out"; }
fi
kill "$httpd" 2>/dev/null

exec_run none --net none -- sh -c 'ls /sys/class/net'
if expect_status none 0; then
    has_line "$WORK/none.out" lo || { fail "none: no lo"; show "$WORK/none.out"; }
    has_line "$WORK/none.out" eth0 && { fail "none: there is an eth0"; show "$WORK/none.out"; }
fi

# --publish: the guest serves on port 80, the host fetches through 127.0.0.1:$port.
timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
    --publish "$port:80" -- sh -c 'mkdir -p /www && echo served-by-the-guest > /www/index.html &&
        httpd -p 80 -h /www && echo READY && sleep 40' > "$WORK/publish.out" 2> "$WORK/publish.err" &
vm=$!
if wait_for "$WORK/publish.out" READY 90; then
    busybox wget -q -O "$WORK/published" "http://127.0.0.1:$port/" ||
        fail "publish: the host could not fetch through the forward"
    [ "$(cat "$WORK/published" 2>/dev/null)" = served-by-the-guest ] ||
        fail "publish: the page from the guest is not what it served"
    # Meanwhile a second VM asking for the same port fails before it boots.
    exec_run taken --publish "$port:80" -- true
    if expect_status taken 125; then
        has_line_prefix "$WORK/taken.err" "cove: port forward tcp 127.0.0.1:$port: " ||
            { fail "taken: no one-line reason naming the port"; show "$WORK/taken.err"; }
    fi
else
    fail "publish: the guest server never came up"
    show "$WORK/publish.out"
    show "$WORK/publish.err"
fi
kill "$vm" 2>/dev/null
wait "$vm" 2>/dev/null

exec_run badpub --publish 80 -- true
expect_status badpub 125

finish
