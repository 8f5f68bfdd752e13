#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (as root) and builds everything: Debian packages, the
# Meson build in ./build, and the guest kernel (cached in ~/.cache/cove, built once).
# Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    build-essential pkg-config meson ninja-build   # the build
    libcmocka-dev                                  # unit tests
    clang libclang-rt-14-dev                       # libFuzzer targets (tests/fuzz)
    liburing-dev                                   # virtio-blk I/O
    libslirp-dev libglib2.0-dev                    # user-mode NAT networking (slirp.pc needs glib's)
    linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio xz-utils  # the guest kernel
    busybox-static                                 # the default guest userspace
    e2fsprogs                                      # disk images for the tests (mke2fs -d, debugfs)
    qemu-system-x86                                # the nested test host, the benchmarks' reference,
                                                   # the front-end in tests/interop
    python3                                        # test result counting; tests/interop's bad front-end
    fio                                            # the disk benchmark (bench/disk.sh)
    iperf3                                         # the network benchmark (bench/net.sh), carried into its guests
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

[[ -f build/build.ninja ]] || meson setup build >&2
ninja -C build >&2
kernel_dir=$(guest/build-kernel.sh)
# The bundled guest `cove run` finds beside its binary (build/src/cli/cove -> build/guest/).
ln -sfn "$kernel_dir/vmlinux" build/guest/vmlinux
ln -sfn "$kernel_dir/bzImage" build/guest/bzImage
