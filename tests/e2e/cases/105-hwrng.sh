#!/bin/sh
# virtio-rng. With it (the CLI's default): one virtio-rng function (PCI 1af4:1044), the
# guest's hw_random core uses it (rng_current names virtio_rng), and /dev/hwrng gives 64
# bytes twice, neither all zero and not the same twice. With --no-rng: no such function,
# rng_current is none and reading /dev/hwrng fails.
. "${0%/*}/../lib.sh"

rngcmd='echo CUR=$(cat /sys/class/misc/hw_random/rng_current) FN=$(grep -l 0x1044 /sys/bus/pci/devices/*/device|wc -l);echo A=$(head -c 64 /dev/hwrng|od -An -v -tx1|tr -dc 0-9a-f) B=$(head -c 64 /dev/hwrng|od -An -v -tx1|tr -dc 0-9a-f)'

guest rng "$rngcmd"
if expect_status rng 0; then
    out=$WORK/rng.out
    case $(value "$out" CUR) in
        virtio_rng*) ;;
        *) fail "rng: rng_current is '$(value "$out" CUR)', not virtio_rng.N" ;;
    esac
    [ "$(value "$out" FN)" = 1 ] || fail "rng: $(value "$out" FN) virtio-rng PCI functions, not 1"
    a=$(value "$out" A)
    b=$(value "$out" B)
    [ "${#a}" -eq 128 ] || fail "rng: the first read gave ${#a} hex digits, not 128 (64 bytes)"
    [ "${#b}" -eq 128 ] || fail "rng: the second read gave ${#b} hex digits, not 128 (64 bytes)"
    case $a in
        *[1-9a-f]*) ;;
        *) fail "rng: 64 bytes from /dev/hwrng are all zero" ;;
    esac
    [ "$a" != "$b" ] || fail "rng: two reads of /dev/hwrng gave the same 64 bytes"
    any_failed && show "$out"
fi

guest norng 'echo CUR=$(cat /sys/class/misc/hw_random/rng_current) FN=$(grep -l 0x1044 /sys/bus/pci/devices/*/device|wc -l);head -c 64 /dev/hwrng>/dev/null&&echo READ=ok||echo READ=failed' \
    --no-rng
if expect_status norng 0; then
    out=$WORK/norng.out
    [ "$(value "$out" CUR)" = none ] || fail "norng: rng_current is '$(value "$out" CUR)', not none"
    [ "$(value "$out" FN)" = 0 ] || fail "norng: $(value "$out" FN) virtio-rng PCI functions, not 0"
    [ "$(value "$out" READ)" = failed ] || fail "norng: reading /dev/hwrng: '$(value "$out" READ)', not failed"
    any_failed && show "$out"
fi

finish
