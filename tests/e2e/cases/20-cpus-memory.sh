#!/bin/sh
# --cpus and --memory shape the guest: vCPU count and RAM as the guest kernel sees them; the
# guest's CPU shows no VMX/SVM unless --nested asks for it.
. "${0%/*}/../lib.sh"

# Word count matters (init gets at most 32 arguments) and the kernel mangles double quotes
# on its command line, so the probe is compact and uses single quotes only.
probe="echo NPROC=\$(nproc) CPUINFO=\$(grep -c ^processor /proc/cpuinfo) MEMKB=\$(awk '/^MemTotal/{print \$2}' /proc/meminfo)"

guest one "$probe" --cpus 1
if expect_status one 0; then
    [ "$(value "$WORK/one.out" NPROC)" = 1 ] || fail "1 vCPU: nproc says '$(value "$WORK/one.out" NPROC)'"
    [ "$(value "$WORK/one.out" CPUINFO)" = 1 ] ||
        fail "1 vCPU: /proc/cpuinfo lists '$(value "$WORK/one.out" CPUINFO)' processors"
    mem=$(value "$WORK/one.out" MEMKB)
    # MemTotal excludes what the kernel reserves for itself: expect 80% to 100% of 256 MiB.
    low=$((256 * 1024 * 80 / 100))
    high=$((256 * 1024))
    case $mem in
        ''|*[!0-9]*) fail "256M: no MemTotal in the output" ;;
        *)
            if [ "$mem" -lt "$low" ] || [ "$mem" -gt "$high" ]; then
                fail "256M: MemTotal $mem kB is outside [$low, $high] kB"
            else
                note "MemTotal $mem kB"
            fi ;;
    esac
    [ "$e2e_failed" -eq 0 ] || show "$WORK/one.out"
fi

guest two "$probe" --cpus 2
if expect_status two 0; then
    [ "$(value "$WORK/two.out" NPROC)" = 2 ] || fail "2 vCPUs: nproc says '$(value "$WORK/two.out" NPROC)'"
    [ "$(value "$WORK/two.out" CPUINFO)" = 2 ] ||
        fail "2 vCPUs: /proc/cpuinfo lists '$(value "$WORK/two.out" CPUINFO)' processors"
    [ "$e2e_failed" -eq 0 ] || show "$WORK/two.out"
fi

# Nested virtualization: hidden by default; with --nested the guest sees what this host's KVM
# offers, or, where it offers nothing (nested=0), cove refuses to start with the fix named.
virt_probe="echo VIRT=\$(grep -cwE 'vmx|svm' /proc/cpuinfo)"
guest plain "$virt_probe"
if expect_status plain 0; then
    [ "$(value "$WORK/plain.out" VIRT)" = 0 ] ||
        { fail "default: the guest sees VMX/SVM"; show "$WORK/plain.out"; }
fi
host_nested=no
for param in /sys/module/kvm_amd/parameters/nested /sys/module/kvm_intel/parameters/nested; do
    [ -r "$param" ] && case $(cat "$param") in Y|1) host_nested=yes ;; esac
done
note "this host's KVM offers nested virtualization: $host_nested"
guest nested "$virt_probe" --nested
if [ "$host_nested" = yes ]; then
    if expect_status nested 0; then
        [ "$(value "$WORK/nested.out" VIRT)" = 1 ] ||
            { fail "--nested: the guest does not see VMX/SVM"; show "$WORK/nested.out"; }
    fi
elif [ "$rc" -eq 0 ]; then
    fail "--nested on a host without nested virtualization started anyway"
else
    has_line_prefix "$WORK/nested.err" "cove: nested virtualization: this host's KVM offers guests neither VMX nor SVM" ||
        { fail "--nested without host support: no one-line reason"; show "$WORK/nested.err"; }
fi

finish
