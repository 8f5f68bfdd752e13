#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every test: unit tests in the normal build,
# the same unit tests under ASan+UBSan, and the
# end-to-end suite on a real KVM (directly, or inside the nested test host when this host's
# /dev/kvm is not hardware-backed). Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || { echo "test: set-up failed"; echo "0 passed, 1 failed"; exit 1; }

# The sanitizer build: UBSan findings abort instead of printing and carrying on.
if [[ ! -f build-asan/build.ninja ]]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fno-sanitize-recover=all >/dev/null || exit 1
fi
ninja -C build-asan >/dev/null || { echo "test: sanitizer build failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
# Runs one Meson test suite and adds its results to the totals.
run_suite() {
    local dir=$1 suite=$2 label=$3
    echo "== $label"
    meson test -C "$dir" --suite "$suite" --print-errorlogs --no-rebuild "${@:4}"
    local counts
    counts=$(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): ok += 1
    else: bad += 1
print(ok, bad)
PY
)
    passed=$((passed + ${counts% *}))
    failed=$((failed + ${counts#* }))
}

run_suite build unit "unit tests"
run_suite build-asan unit "unit tests under ASan+UBSan"
run_suite build e2e "end-to-end on real KVM" --verbose

echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
