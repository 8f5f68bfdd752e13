#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every test: unit tests in the normal build,
# the same unit tests under ASan+UBSan, the libFuzzer targets for a bounded time, and the
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
# The fuzz build: clang, for libFuzzer. Each target runs for a bounded time.
if [[ ! -f build-fuzz/build.ninja ]]; then
    CC=clang meson setup build-fuzz -Db_lundef=false >/dev/null || exit 1
fi
ninja -C build-fuzz >/dev/null || { echo "test: fuzz build failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
failures=$(mktemp /tmp/cove-test-failures.XXXXXX)
trap 'rm -f "$failures"' EXIT
# Runs one Meson test suite and adds its results to the totals.
run_suite() {
    local dir=$1 suite=$2 label=$3
    echo "== $label"
    meson test -C "$dir" --suite "$suite" --print-errorlogs --no-rebuild "${@:4}"
    local counts
    counts=$(python3 - "$dir/meson-logs/testlog.json" "$label" "$failures" <<'PY'
# Counts test cases, not Meson tests: a cmocka executable or the e2e suite holds many. A test
# whose output has no count of its own counts once, by its Meson result. Appends a line per
# failed test to the failures file, with the lines of its output that say what failed.
import json, re, sys
ok = bad = 0
report = open(sys.argv[3], "a")
def failed_lines(out):
    pats = (r"^\[  FAILED  \] \S", r"^\s*FAIL\s", r"^COVE-E2E \S+ FAIL", r"^==\d+== ?ERROR", r"runtime error:",
            r"^SUMMARY: ", r"deadly signal", r"^Test \S+ failed", r"^.*: error: ")
    hits = [l for l in out.splitlines() if any(re.search(p, l) for p in pats)]
    return hits[:12] or out.strip().splitlines()[-8:]
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = (t.get("stdout") or "") + (t.get("stderr") or "")
    if t["result"] not in ("OK", "EXPECTEDFAIL") or re.search(r"^\[  FAILED  \] \d+ test", out, re.M):
        report.write("%s: %s (%s, %.0f s)\n" % (sys.argv[2], t["name"], t["result"], t.get("duration", 0)))
        report.writelines("    %s\n" % l[:300] for l in failed_lines(out))
    cm_pass = re.findall(r"^\[  PASSED  \] (\d+) test", out, re.M)
    cm_fail = re.findall(r"^\[  FAILED  \] (\d+) test", out, re.M)
    summary = re.findall(r"^(\d+) passed, (\d+) failed$", out, re.M)
    if cm_pass or cm_fail:
        ok += sum(map(int, cm_pass)); bad += sum(map(int, cm_fail))
    elif summary:
        ok += int(summary[-1][0]); bad += int(summary[-1][1])
    else:
        good = t["result"] in ("OK", "EXPECTEDFAIL")
        ok += good; bad += not good
        continue
    reported_failure = cm_fail or (summary and int(summary[-1][1]))
    if t["result"] not in ("OK", "EXPECTEDFAIL") and not reported_failure:
        bad += 1  # crashed or timed out without saying so
print(ok, bad)
PY
)
    passed=$((passed + ${counts% *}))
    failed=$((failed + ${counts#* }))
}

run_suite build unit "unit tests"
run_suite build-asan unit "unit tests under ASan+UBSan"
run_suite build-fuzz fuzz "fuzz targets (bounded runs)"
run_suite build interop "cove virtiofsd under QEMU (vhost-user-fs)" --verbose
run_suite build e2e "end-to-end on real KVM" --verbose

if [[ -s $failures ]]; then
    echo "== what failed"
    cat "$failures"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
