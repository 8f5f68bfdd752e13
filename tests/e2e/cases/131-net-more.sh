#!/bin/sh
# More networking, each side checked:
# - NAT: the guest gets its address by DHCP from slirp (cove-agent's static one removed first)
#   and uses it; a datagram goes through a UDP forward to a server in the guest and its answer
#   comes back; DNS at 10.0.2.3 resolves a name that a resolver on the host's loopback serves
#   (cove's /etc/resolv.conf replaced in a private mount namespace only).
# - TAP (--net tap:NAME): the guest's eth0 is up without an address, and with one set in the
#   command it pings and fetches from the host side of the tap; a missing device, one that is
#   not a TAP, one another program holds and one this user may not attach each fail before
#   boot with one line (125; 2 without a command); a tap owned by the user and a multi-queue
#   tap attach. Offloads pass through a tap: the guest negotiates CSUM/GUEST_CSUM and
#   TSO4/6/ECN both ways (its virtio features), a 4 MiB file crosses the tap each way intact
#   (wget from the host, nc to the host), and the frames it went in averaged more than a
#   1514-byte Ethernet frame each way: TSO frames went through whole, not cut into MTU frames.
# Needs root (TAP devices; tapctl makes them, since busybox has no `ip tuntap`). Nothing leaves
# this machine: the tap's network is 10.9.0.0/24 on this host only. In direct mode this runs on
# the host itself: it makes (and removes) taps named cove-*PID with 10.9.0.1/24, serves DNS on
# 127.0.0.1:53 (so it fails if a resolver holds that port), and opens /dev/kvm and
# /dev/net/tun to others for two runs as uid 1000 (their modes restored after).
. "${0%/*}/../lib.sh"
: "${TAPCTL:?}" "${DNS_RESPONDER:?}"

[ "$(id -u)" -eq 0 ] || { fail "needs root (TAP devices, a resolver on port 53)"; finish; }

mkdir -p "$WORK/www" "$WORK/netbin"
echo "hello-over-the-net-$$" > "$WORK/www/index.html"
port=$((20000 + $$ % 20000))
busybox httpd -f -p "0.0.0.0:$port" -h "$WORK/www" &
httpd=$!

# Carried into guests on a share: the DHCP event script and the UDP server.
cp "$DNS_RESPONDER" "$WORK/netbin/dns_responder"
cat > "$WORK/netbin/dhcp.sh" <<'EOF'
#!/bin/sh
# udhcpc's event script: on a lease, use it and say what it was.
[ "$1" = bound ] || exit 0
ip addr add "$ip/$mask" dev "$interface" && echo "DHCP ip=$ip mask=$mask router=$router dns=$dns"
EOF
chmod 0755 "$WORK/netbin/dhcp.sh"

# ---- DHCP ----
exec_run dhcp --share "$WORK/netbin:/netbin:ro" -- sh -c "ip addr flush dev eth0 &&
    udhcpc -i eth0 -n -q -f -s /netbin/dhcp.sh && ip -4 addr show eth0 | grep -o 'inet [0-9./]*' &&
    wget -q -O- http://10.0.2.2:$port/"
if expect_status dhcp 0; then
    has_line "$WORK/dhcp.out" "DHCP ip=10.0.2.15 mask=24 router=10.0.2.2 dns=10.0.2.3" ||
        { fail "dhcp: no lease of 10.0.2.15 from slirp"; show "$WORK/dhcp.out"; show "$WORK/dhcp.err"; }
    has_line "$WORK/dhcp.out" "inet 10.0.2.15/24" ||
        { fail "dhcp: eth0 does not carry the leased address"; show "$WORK/dhcp.out"; }
    has_line "$WORK/dhcp.out" "hello-over-the-net-$$" ||
        { fail "dhcp: the host's page did not arrive over the leased address"; show "$WORK/dhcp.out"; }
fi

# ---- UDP forward: host 127.0.0.1:$uport -> guest port 5353, where dns_responder answers ----
uport=$((port + 1))
timeout "$COVE_RUN_TIMEOUT" "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
    --publish "$uport:5353/udp" --share "$WORK/netbin:/netbin:ro" -- \
    sh -c '/netbin/dns_responder 0.0.0.0 5353 forward.cove.test 10.7.7.7 60 & sleep 50' \
    > "$WORK/udpfwd.out" 2> "$WORK/udpfwd.err" &
vm=$!
if wait_for "$WORK/udpfwd.out" READY 90; then
    "$DNS_RESPONDER" query 127.0.0.1 "$uport" forward.cove.test > "$WORK/udpq.out" 2> "$WORK/udpq.err" ||
        fail "udp forward: no datagram came back through 127.0.0.1:$uport"
    note "udp forward: $(cat "$WORK/udpq.out")"
    has_line "$WORK/udpq.out" "ANSWER 10.7.7.7" ||
        { fail "udp forward: not the guest server's answer"; show "$WORK/udpq.out"; show "$WORK/udpq.err"; }
    sleep 1
    has_line "$WORK/udpfwd.err" "QUERY forward.cove.test 1" ||
        { fail "udp forward: the guest server never saw the datagram"; show "$WORK/udpfwd.err"; }
else
    fail "udp forward: the guest server never came up"
    show "$WORK/udpfwd.out"
    show "$WORK/udpfwd.err"
fi
kill "$vm" 2>/dev/null
wait "$vm" 2>/dev/null

# ---- DNS: slirp relays 10.0.2.3 to the host's first nameserver, here 127.0.0.1:53 ----
"$DNS_RESPONDER" 127.0.0.1 53 cove-test.example 10.9.8.7 100 > "$WORK/dns.ready" 2> "$WORK/dns.log" &
dns=$!
printf 'nameserver 127.0.0.1\n' > "$WORK/resolv.conf"
made_resolv=
[ -e /etc/resolv.conf ] || { mkdir -p /etc && : > /etc/resolv.conf && made_resolv=1; }
if wait_for "$WORK/dns.ready" READY 10; then
    timeout "$COVE_RUN_TIMEOUT" unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && shift &&
        exec "$@"' sh "$WORK/resolv.conf" \
        "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M -- \
        sh -c 'nslookup cove-test.example 10.0.2.3; echo "found=$?";
               nslookup missing.example 10.0.2.3; echo "missing=$?"' \
        > "$WORK/dnsq.out" 2> "$WORK/dnsq.err" < /dev/null
    rc=$?
    note "dnsq: status $rc"
    if expect_status dnsq 0; then
        grep -Eq '^Address:[[:space:]]+10\.9\.8\.7$' "$WORK/dnsq.out" ||
            { fail "dns: the name did not resolve to the test resolver's address"; show "$WORK/dnsq.out"; show "$WORK/dns.log"; }
        has_line "$WORK/dnsq.out" "found=0" || { fail "dns: nslookup of the served name failed"; show "$WORK/dnsq.out"; }
        has_line "$WORK/dnsq.out" "missing=0" && { fail "dns: a name the resolver does not serve resolved"; show "$WORK/dnsq.out"; }
        grep -q NXDOMAIN "$WORK/dnsq.out" "$WORK/dnsq.err" ||
            { fail "dns: no NXDOMAIN for the unknown name"; show "$WORK/dnsq.out"; show "$WORK/dnsq.err"; }
        has_line "$WORK/dns.log" "QUERY cove-test.example 1" ||
            { fail "dns: the query never reached the resolver on the host's loopback"; show "$WORK/dns.log"; }
    fi
else
    fail "dns: the test resolver could not serve 127.0.0.1:53"
    show "$WORK/dns.log"
fi
kill "$dns" 2>/dev/null
[ -z "$made_resolv" ] || rm -f /etc/resolv.conf

# ---- TAP ----
tap=cove-e2e$$
# eth0 exists and the agent set IFF_UP. Not operstate: that follows the carrier through the
# kernel's link watch, which can say "down" for up to a second after the link is up.
eth0_up='flags=$(cat /sys/class/net/eth0/flags) && [ $((flags & 1)) = 1 ] && echo up'
# Owned by root: a tap with no owner may be attached by anyone who can open /dev/net/tun.
if "$TAPCTL" add "$tap" --user 0 && ip addr add 10.9.0.1/24 dev "$tap" && ip link set "$tap" up; then
    exec_run tap --net "tap:$tap" -- sh -c "echo eth0=\$($eth0_up)
        echo addresses=\$(ip -4 addr show eth0 | grep -c inet)
        ip addr add 10.9.0.2/24 dev eth0 && ping -c 1 -W 10 10.9.0.1 && wget -q -O- http://10.9.0.1:$port/"
    if expect_status tap 0; then
        has_line "$WORK/tap.out" "eth0=up" || { fail "tap: eth0 is not up"; show "$WORK/tap.out"; }
        has_line "$WORK/tap.out" "addresses=0" ||
            { fail "tap: cove-agent gave eth0 an address on a tap"; show "$WORK/tap.out"; }
        grep -q '1 packets received' "$WORK/tap.out" ||
            { fail "tap: no ping reply from the host side"; show "$WORK/tap.out"; }
        has_line "$WORK/tap.out" "hello-over-the-net-$$" ||
            { fail "tap: the host's page did not arrive across the tap"; show "$WORK/tap.out"; }
    fi

    # Offloads: large frames both ways, the bytes intact.
    head -c 4194304 /dev/urandom > "$WORK/www/big.bin"
    want=$(sha256sum < "$WORK/www/big.bin" | cut -d' ' -f1)
    nport=$((port + 2))
    cat > "$WORK/netbin/tso.sh" <<EOF
#!/bin/sh
# The net device's negotiated features (bit i is character i+1), then the interface's counters
# around a download and an upload of big.bin.
for d in /sys/bus/virtio/devices/*; do
    [ "\$(cat \$d/device)" = 0x0001 ] && echo "features=\$(cat \$d/features)"
done
st() { s=/sys/class/net/eth0/statistics
       echo "\$1 \$(cat \$s/rx_bytes) \$(cat \$s/rx_packets) \$(cat \$s/tx_bytes) \$(cat \$s/tx_packets)"; }
ip addr add 10.9.0.2/24 dev eth0 || exit 1
st s0
echo "down=\$(wget -q -O- http://10.9.0.1:$port/big.bin | sha256sum | cut -d' ' -f1)"
st s1
nc 10.9.0.1 $nport < /www/big.bin; echo "up=\$?"
st s2
EOF
    rm -f "$WORK/nc.in" && mkfifo "$WORK/nc.in"
    busybox nc -l -p "$nport" < "$WORK/nc.in" > "$WORK/up.bin" &
    ncl=$!
    exec 9> "$WORK/nc.in" # a writer, so the listener's input does not end before the guest's
    exec_run taptso --net "tap:$tap" --share "$WORK/netbin:/netbin:ro" \
        --share "$WORK/www:/www:ro" -- sh /netbin/tso.sh
    # The listener ends with the guest's connection; on its input's end it would stop early.
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$ncl" 2>/dev/null || break; sleep 1; done
    exec 9>&-
    if expect_status taptso 0; then
        feat=$(tr -d '\r' < "$WORK/taptso.out" | sed -n 's/^features=//p')
        # CSUM 0, GUEST_CSUM 1, GUEST_TSO4 7, GUEST_TSO6 8, GUEST_ECN 9, HOST_TSO4 11,
        # HOST_TSO6 12, HOST_ECN 13, MRG_RXBUF 15
        for bit in 0 1 7 8 9 11 12 13 15; do
            [ "$(printf %s "$feat" | cut -c $((bit + 1)))" = 1 ] ||
                fail "taptso: feature bit $bit not negotiated (features=$feat)"
        done
        has_line "$WORK/taptso.out" "down=$want" ||
            { fail "taptso: the download arrived changed"; show "$WORK/taptso.out"; }
        has_line "$WORK/taptso.out" "up=0" || { fail "taptso: the upload failed"; show "$WORK/taptso.out"; }
        # Bytes per frame over the download (received) and the upload (sent).
        tr -d '\r' < "$WORK/taptso.out" | awk '
            $1 ~ /^s[012]$/ { rb[$1] = $2; rp[$1] = $3; tb[$1] = $4; tp[$1] = $5 }
            END { rx = (rb["s1"] - rb["s0"]) / (rp["s1"] - rp["s0"] + 0.0001)
                  tx = (tb["s2"] - tb["s1"]) / (tp["s2"] - tp["s1"] + 0.0001)
                  printf "rx %d bytes/frame in the download, tx %d in the upload\n", rx, tx
                  exit !(rx > 1514 && tx > 1514) }' > "$WORK/tso.avg"
        avg_ok=$?
        note "taptso: $(cat "$WORK/tso.avg")"
        [ "$avg_ok" -eq 0 ] ||
            { fail "taptso: frames no larger than the MTU: no TSO through the tap"; show "$WORK/taptso.out"; }
    fi
    kill "$ncl" 2>/dev/null
    wait "$ncl" 2>/dev/null
    cmp -s "$WORK/www/big.bin" "$WORK/up.bin" ||
        fail "taptso: the upload arrived changed ($(wc -c < "$WORK/up.bin") bytes)"

    # Held by another program: busy, before boot.
    "$TAPCTL" hold "$tap" 60 > "$WORK/hold.out" 2>&1 &
    hold=$!
    if wait_for "$WORK/hold.out" HELD 10; then
        exec_run tapbusy --net "tap:$tap" -- true
        if expect_status tapbusy 125; then
            has_line_prefix "$WORK/tapbusy.err" "cove: tap '$tap': busy: another program is attached to it" ||
                { fail "tapbusy: no one-line reason"; show "$WORK/tapbusy.err"; }
        fi
    else
        fail "tapbusy: tapctl could not hold the tap"
        show "$WORK/hold.out"
    fi
    kill "$hold" 2>/dev/null
    wait "$hold" 2>/dev/null

    # An unprivileged user on a tap root owns: EPERM, before boot; on a tap created for it, it
    # attaches. (The devices are opened to others for the run, then restored.)
    kvm_mode=$(stat -c %a /dev/kvm)
    tun_mode=$(stat -c %a /dev/net/tun)
    chmod o+rw /dev/kvm /dev/net/tun
    "$TAPCTL" as 1000 1000 "$COVE" run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
        --net "tap:$tap" -- true > "$WORK/tapperm.out" 2> "$WORK/tapperm.err" < /dev/null
    rc=$?
    note "tapperm: status $rc"
    if expect_status tapperm 125; then
        has_line_prefix "$WORK/tapperm.err" "cove: tap '$tap': permission denied: attaching needs CAP_NET_ADMIN" ||
            { fail "tapperm: no one-line reason"; show "$WORK/tapperm.err"; }
    fi
    owned=cove-own$$
    if "$TAPCTL" add "$owned" --user 1000; then
        timeout "$COVE_RUN_TIMEOUT" "$TAPCTL" as 1000 1000 "$COVE" run --kernel "$KERNEL" \
            --initrd "$INITRD" --memory 256M --net "tap:$owned" -- sh -c "$eth0_up" \
            > "$WORK/tapown.out" 2> "$WORK/tapown.err" < /dev/null
        rc=$?
        note "tapown: status $rc"
        expect_status tapown 0 && { has_line "$WORK/tapown.out" up || { fail "tapown: no eth0"; show "$WORK/tapown.out"; }; }
        "$TAPCTL" del "$owned" || fail "tapown: could not remove $owned"
    else
        fail "tapown: could not create a tap owned by uid 1000"
    fi
    chmod "$kvm_mode" /dev/kvm
    chmod "$tun_mode" /dev/net/tun
    "$TAPCTL" del "$tap" || fail "tap: could not remove $tap"
else
    fail "tap: could not create and address $tap"
fi

mq=cove-mq$$
if "$TAPCTL" add "$mq" --multi-queue; then
    exec_run tapmq --net "tap:$mq" -- sh -c "$eth0_up"
    expect_status tapmq 0 && { has_line "$WORK/tapmq.out" up || { fail "tapmq: no eth0"; show "$WORK/tapmq.out"; }; }
    "$TAPCTL" del "$mq" || fail "tapmq: could not remove $mq"
else
    fail "tapmq: could not create a multi-queue tap"
fi
kill "$httpd" 2>/dev/null

# Missing, and not a TAP: configuration errors, nothing created.
exec_run tapmissing --net tap:cove-nosuch0 -- true
if expect_status tapmissing 125; then
    has_line "$WORK/tapmissing.err" "cove: tap 'cove-nosuch0': no such device (create it first: ip tuntap add dev cove-nosuch0 mode tap [user USER])" ||
        { fail "tapmissing: not the one-line reason"; show "$WORK/tapmissing.err"; }
fi
[ -e /sys/class/net/cove-nosuch0 ] && fail "tapmissing: a device cove-nosuch0 was left behind"
run_cove tapconsole run --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --net tap:cove-nosuch0
expect_status tapconsole 2
exec_run tapnottap --net tap:lo -- true
if expect_status tapnottap 125; then
    has_line "$WORK/tapnottap.err" "cove: tap 'lo': not a TAP device (a TUN device or another kind of interface)" ||
        { fail "tapnottap: not the one-line reason"; show "$WORK/tapnottap.err"; }
fi

finish
