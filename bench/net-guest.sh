#!/bin/sh
# The inner guest's session for the network benchmark (bench/net.sh): cove-agent runs it as
#
#   sh /bench/net-guest.sh RUNTIME_SECONDS LATENCY_COUNT
#
# The guest's interface is 10.0.2.15/24 with the host (the test host, through the VMM's NAT) at
# 10.0.2.2: cove-agent sets that up under cove (cove.net=nat); under QEMU this script does. It
# starts the two servers the test host reaches through the VMM's port forwards (iperf3 -s on
# 5201, netlat -s on 8080), then measures guest -> host itself:
#
#   g2h      iperf3 -c 10.0.2.2 -p 5202 -t RUNTIME (one TCP stream, the guest sends)
#   g2h-lat  netlat 10.0.2.2 8081 LATENCY_COUNT (connect + request + answer, each anew)
#
# and prints, for the test host (bench/net-testhost-init.sh), which reads the VMM's CPU time at
# the markers and then runs the host -> guest jobs itself:
#
#   BENCH-LINK mtu=N                          the interface's MTU (what the device offered)
#   BENCH-MARK begin JOB / BENCH-MARK end JOB
#   BENCH-RESULT job=JOB mbit_s=X | job=JOB median_us=M p10_us=A p90_us=B ok=K
#   BENCH-GUEST-ERR <text>
#   BENCH-READY                               the servers are up; the guest then waits
runtime=${1:-5}
lat_n=${2:-200}

err() {
    echo "BENCH-GUEST-ERR $*"
}

grep -q ' /tmp ' /proc/mounts || mount -t tmpfs tmpfs /tmp
ip link set lo up
if ! ip addr show eth0 2> /dev/null | grep -q 'inet 10\.0\.2\.15/'; then
    ip addr add 10.0.2.15/24 dev eth0 || err "cannot set eth0's address"
    ip link set eth0 up
fi
ip route show | grep -q '^default' || ip route add default via 10.0.2.2
echo "BENCH-LINK mtu=$(cat /sys/class/net/eth0/mtu)"

iperf3 -s -p 5201 -D > /dev/null 2>&1 || err "iperf3 -s does not start"
/bench/netlat -s 8080 > /dev/null 2>&1 &

# iperf3's receiver line, with -f m: "... 1234 MBytes  987 Mbits/sec   receiver".
mbits() {
    awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") r = $(i - 1) } END { print r }' "$1"
}

echo "BENCH-MARK begin g2h"
iperf3 -c 10.0.2.2 -p 5202 -t "$runtime" -f m > /tmp/g2h.txt 2>&1
rc=$?
echo "BENCH-MARK end g2h"
r=$(mbits /tmp/g2h.txt)
if [ "$rc" = 0 ] && [ -n "$r" ]; then
    echo "BENCH-RESULT job=g2h mbit_s=$r"
else
    err "iperf3 g2h failed ($rc): $(tail -n 3 /tmp/g2h.txt | tr '\n' ' ')"
fi

echo "BENCH-MARK begin g2h-lat"
line=$(/bench/netlat 10.0.2.2 8081 "$lat_n")
echo "BENCH-MARK end g2h-lat"
case $line in
    "NETLAT "*) echo "BENCH-RESULT job=g2h-lat ${line#NETLAT }" ;;
    *) err "netlat g2h-lat failed: $line" ;;
esac

echo "BENCH-READY"
# The test host kills the VMM when it is done; this is only a bound.
sleep 900
