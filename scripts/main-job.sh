#!/usr/bin/env bash
# The main job: set up and build everything (scripts/setup.sh), then boot the default guest
# kernel and initramfs with cove and print the guest's uname, through cove-agent as /init.
# Runs on this host when its KVM is hardware-backed, otherwise in the nested test host.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec guest/testhost.sh -- sh -c \
    'cove run --kernel "$COVE_KERNEL" --initrd "$COVE_INITRD" --cpus 2 --memory 512M \
         --cmdline "console=ttyS0 quiet panic=-1 -- uname -a"'
