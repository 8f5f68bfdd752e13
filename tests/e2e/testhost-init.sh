#!/bin/sh
# /init of the e2e test host: a QEMU (TCG, -cpu max) guest whose kernel has a working
# hardware-style /dev/kvm, so cove can run real VMs inside it. run.sh carries everything in
# under /e2e (see there). It runs the cases, prints their results on the console (the serial
# port run.sh logs), then powers off. If it dies early the kernel panics and QEMU exits
# (-no-reboot) without "COVE-E2E-DONE", which run.sh counts as a failure of the suite.
# /usr/local/sbin first: e2fsprogs carried in by run.sh, ahead of busybox's own mke2fs.
export PATH=/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Only /tmp gets a tmpfs: everything carried in lives in the initramfs itself (/e2e, /lib...).
mount -t tmpfs -o mode=1777 tmpfs /tmp
# Loopback for the network cases: host services that guests reach through cove's NAT.
ip link set lo up

export COVE=/e2e/bin/cove
export VM_API=/e2e/bin/vm_api
export EXEC_API=/e2e/bin/exec_api
export VIRTIO_GARBAGE=/e2e/bin/virtio_garbage
export MMAP_CAT=/e2e/bin/mmap_cat
export TAPCTL=/e2e/bin/tapctl
export DNS_RESPONDER=/e2e/bin/dns_responder
export E2E_MODE=testhost
export KERNEL=/e2e/guest/bzImage
export VMLINUX=/e2e/guest/vmlinux
export INITRD=/e2e/guest/initramfs.cpio.gz
export E2E_SCRATCH=/tmp/e2e
# Set by run.sh when it builds this image (empty: the runner's default).
E2E_CASE_TIMEOUT=$(cat /e2e/case-timeout 2>/dev/null)
[ -n "$E2E_CASE_TIMEOUT" ] && export E2E_CASE_TIMEOUT

# Keep kernel messages (e.g. KVM complaining about guest MSR writes) from splitting the
# result lines on the console; they are printed after the run instead.
dmesg -n 1

echo "COVE-E2E-HOST kernel $(uname -r), $(nproc) CPUs, $(awk '/^MemTotal/ { print $2 }' /proc/meminfo) kB," \
    "kvm: $(if [ -c /dev/kvm ]; then echo present; else echo MISSING; fi)"
/e2e/run-cases.sh /e2e/cases/*.sh
echo "COVE-E2E-HOST kernel log (last 60 lines):"
dmesg | tail -n 60 | sed "s/^/    /"
sync
poweroff -f
