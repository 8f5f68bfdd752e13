#!/bin/sh
# /init of the network benchmark's test host (see bench/net.sh, which carries everything in
# under /bench and reads the lines this prints on the serial console):
#
#   BENCH-HOST <facts about the test host>
#   BENCH-JOB vmm=NAME iter=I after=VMM job=JOB utime=T stime=T wall_ms=N mtu=N <result>
#             (one line per job; T: the VMM process's clock ticks during the job; result
#             mbit_s=X for throughput, n= ok= median_us= p10_us= p90_us= for latency)
#   BENCH-VM vmm=NAME iter=I wall_ms=N jobs=N
#   BENCH-ERR <text>
#   BENCH-DONE
#
# Every run boots the guest once (1 vCPU, MEMORY), which runs bench/net-guest.sh: it measures
# guest -> host against the servers started here (iperf3 -s on 5202, netlat -s on 8081, on the
# test host's loopback, which both VMMs' NAT reach as 10.0.2.2), then says BENCH-READY, and
# this script measures host -> guest through the VMM's port forwards (127.0.0.1:15201 to the
# guest's iperf3 on 5201, 127.0.0.1:18080 to its netlat on 8080), then kills the VMM.
#
#   cove       cove run --net nat --publish ... (the tree under test)
#   cove-base  the same with the cove built from --baseline (the tree before the offloads)
#   qemu       qemu-system-x86_64 -M microvm,rtc=on,pcie=on -accel kvm, -netdev user with the
#              same two hostfwd rules, -device virtio-net-pci (modern virtio-pci with MSI-X,
#              cove's transport; romfile= because no PXE option ROM is carried in)
# The VMMs take turns in the order of williams_order (bench/testhost-common.sh); iteration 0
# is a warm-up that net.sh leaves out.
. /bench/testhost-common.sh
testhost_setup
dmesg -n 1
. /bench/params
K=/bench/guest/bzImage
I=/bench/guest/initramfs.cpio.gz
CMDLINE="console=ttyS0 quiet panic=-1 -- sh /bench/net-guest.sh $RUNTIME $LAT_N"
ip link set lo up

iperf3 -s -p 5202 -D > /dev/null 2>&1 || echo "BENCH-ERR iperf3 -s does not start in the test host"
/bench/bin/netlat -s 8081 > /dev/null 2>&1 &

vmm_cmd() {
    case $1 in
        cove|cove-base)
            exec "/bench/bin/$1" run --kernel "$K" --initrd "$I" --cmdline "$CMDLINE" \
                --cpus 1 --memory "$MEMORY" --serial stdio --no-rng --net nat \
                --publish 127.0.0.1:15201:5201 --publish 127.0.0.1:18080:8080 ;;
        qemu)
            exec /usr/bin/qemu-system-x86_64 -M microvm,rtc=on,pcie=on,memory-backend=mem \
                -accel kvm -cpu host -smp 1 -m "$MEMORY" \
                -object "memory-backend-memfd,id=mem,size=$MEMORY" \
                -nodefaults -no-user-config -display none -serial stdio -no-reboot \
                -kernel "$K" -initrd "$I" -append "$CMDLINE" \
                -netdev user,id=n0,hostfwd=tcp:127.0.0.1:15201-:5201,hostfwd=tcp:127.0.0.1:18080-:8080 \
                -device virtio-net-pci,netdev=n0,romfile= ;;
    esac
}

# utime stime of process $1 (clock ticks, all threads): cpu_of without guest time.
cpu2_of() {
    set -- $(cpu_of "$1")
    echo "$1 $2"
}

# job_line JOB "UTIME STIME" T0 "UTIME STIME" T1 RESULT: a BENCH-JOB line for a job that ran
# between the two readings.
job_line() {
    set -- "$1" ${2} "$3" ${4} "$5" "$6"
    echo "BENCH-JOB vmm=$_vmm iter=$_iter after=$PREV job=$1 utime=$(($5 - $2)) stime=$(($6 - $3)) wall_ms=$(($7 - $4)) mtu=$_mtu $8"
    _jobs=$((_jobs + 1))
}

# The host -> guest jobs, through the forwards.
host_jobs() {
    _c=$(cpu2_of "$_pid") _t=$(now_ms)
    iperf3 -c 127.0.0.1 -p 15201 -t "$RUNTIME" -f m < /dev/null > "$W/h2g.txt" 2>&1
    _rc=$? _ec=$(cpu2_of "$_pid") _et=$(now_ms)
    _r=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") r = $(i - 1) } END { print r }' "$W/h2g.txt")
    if [ "$_rc" = 0 ] && [ -n "$_r" ]; then
        job_line h2g "$_c" "$_t" "$_ec" "$_et" "mbit_s=$_r"
    else
        echo "BENCH-ERR $_vmm iteration $_iter: iperf3 h2g failed ($_rc): $(tail -n 3 "$W/h2g.txt" | tr '\n' ' ')"
    fi
    _c=$(cpu2_of "$_pid") _t=$(now_ms)
    _line=$(/bench/bin/netlat 127.0.0.1 18080 "$LAT_N")
    _ec=$(cpu2_of "$_pid") _et=$(now_ms)
    case $_line in
        "NETLAT "*) job_line h2g-lat "$_c" "$_t" "$_ec" "$_et" "${_line#NETLAT }" ;;
        *) echo "BENCH-ERR $_vmm iteration $_iter: netlat h2g-lat failed: $_line" ;;
    esac
}

# run_one ITER VMM: one boot of the guest and its four jobs.
run_one() {
    _iter=$1 _vmm=$2
    _out=$W/$_vmm.$_iter.log
    rm -f "$W/console"
    mkfifo "$W/console"
    ( vmm_cmd "$_vmm" < /dev/null > "$W/console" 2>&1 ) &
    _pid=$!
    ( sleep "$TIMEOUT"; kill -KILL "$_pid" 2> /dev/null ) &
    _guard=$!
    _cr=$(printf '\r')
    _jobs=0 _mtu=unknown _start=$(now_ms) _c="0 0" _t=0 _ec="0 0" _et=0
    while IFS= read -r _line; do
        _line=${_line%"$_cr"}
        echo "$_line" >> "$_out"
        case $_line in
            "BENCH-LINK mtu="*) _mtu=${_line#BENCH-LINK mtu=} ;;
            "BENCH-MARK begin "*) _c=$(cpu2_of "$_pid") _t=$(now_ms) ;;
            "BENCH-MARK end "*) _ec=$(cpu2_of "$_pid") _et=$(now_ms) ;;
            "BENCH-RESULT "*)
                _rest=${_line#BENCH-RESULT job=}
                job_line "${_rest%% *}" "$_c" "$_t" "$_ec" "$_et" "${_rest#* }" ;;
            "BENCH-GUEST-ERR "*) echo "BENCH-ERR $_vmm iteration $_iter: ${_line#BENCH-GUEST-ERR }" ;;
            BENCH-READY)
                host_jobs
                kill -KILL "$_pid" 2> /dev/null ;;
        esac
    done < "$W/console"
    wait "$_pid" 2> /dev/null
    kill "$_guard" 2> /dev/null
    wait "$_guard" 2> /dev/null
    echo "BENCH-VM vmm=$_vmm iter=$_iter wall_ms=$(($(now_ms) - _start)) jobs=$_jobs"
    if [ "$_jobs" != 4 ]; then
        echo "BENCH-ERR $_vmm iteration $_iter: $_jobs of 4 jobs; its console:"
        tail -n 15 "$_out" | sed 's/^/BENCH-ERR   | /'
    fi
}

run_iterations "$ITERATIONS" $VMMS

echo "BENCH-DONE"
sync
poweroff -f
