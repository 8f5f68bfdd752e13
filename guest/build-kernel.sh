#!/usr/bin/env bash
# Builds the Cove guest kernel (bzImage + vmlinux) from Debian's linux-source-6.1 with
# guest/kernel.config applied on top of tinyconfig. The result is cached outside the work
# tree, keyed by the hash of the config fragment and this script, so a rebuild happens only
# when either changes. Prints the cache directory holding bzImage and vmlinux.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/kernel.config"
tarball=/usr/src/linux-source-6.1.tar.xz
cache_root="${COVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cove}"
key=$(cat "$fragment" "$0" | sha256sum | cut -c1-16)
out="$cache_root/kernel-$key"

if [[ -f "$out/bzImage" && -f "$out/vmlinux" ]]; then
    echo "$out"
    exit 0
fi
if [[ ! -f "$tarball" ]]; then
    echo "build-kernel: $tarball missing: apt-get install linux-source-6.1" >&2
    exit 1
fi
mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$tarball"
src="$work/linux-source-6.1"
make -C "$src" -s tinyconfig >&2
"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment" >/dev/null
make -C "$src" -s olddefconfig >&2
# Fail loudly when an option of the fragment did not survive olddefconfig (missing dependency).
missing=0
while IFS= read -r line; do
    [[ "$line" =~ ^CONFIG_ ]] || continue
    grep -qxF "$line" "$src/.config" || { echo "build-kernel: not applied: $line" >&2; missing=1; }
done < "$fragment"
[[ $missing -eq 0 ]] || exit 1
make -C "$src" -s -j"$(( $(nproc) + 1 ))" bzImage >&2
mkdir -p "$out.tmp"
cp "$src/arch/x86/boot/bzImage" "$src/vmlinux" "$src/.config" "$out.tmp/"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
