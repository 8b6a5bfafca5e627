#!/bin/sh
# test.sh: set up (apt + build), run the whole test suite, then again on an
# ASan+UBSan build, then each libFuzzer harness for a few seconds and the readers'
# tests under valgrind (clang and valgrind installed by scripts/setup-checks.sh);
# ends with "N passed, N failed" counted from Meson's test logs and the fuzz smoke.
set -u
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1
# python3-torch before the suite, whose `torch` test needs it (clang, valgrind: below)
./scripts/setup-checks.sh || echo "test.sh: scripts/setup-checks.sh failed; the torch test may be skipped"

status=0
meson test -C build --print-errorlogs || status=1

if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized || exit 1
fi
ninja -C build-asan || exit 1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs || status=1

# fuzz smoke: every harness of tests/fuzz/ for FUZZ_SECONDS (default 5) from its seeds;
# the long runs are in docs/reliability.md. One result line per harness in
# build/fuzz-smoke.jsonl. scripts/setup-checks.sh installs clang and valgrind.
: >build/fuzz-smoke.jsonl
if ./scripts/setup-checks.sh; then
  for t in json idx safetensors checkpoint config summary; do
    if ./scripts/fuzz.sh "$t" "${FUZZ_SECONDS:-5}"; then r=OK; else r=FAIL; status=1; fi
    echo "{\"name\": \"fuzz-smoke-$t\", \"result\": \"$r\"}" >>build/fuzz-smoke.jsonl
  done
else
  echo '{"name": "fuzz-smoke (clang)", "result": "FAIL"}' >>build/fuzz-smoke.jsonl
  status=1
fi

# valgrind memcheck on the readers' tests and the fuzz corpora (the whole suite:
# scripts/valgrind.sh)
rm -f build/meson-logs/valgrind*.json
./scripts/valgrind.sh --logbase valgrind json idx safetensors checkpoint config limits \
  fuzz-replay-json fuzz-replay-idx fuzz-replay-safetensors fuzz-replay-checkpoint \
  fuzz-replay-config fuzz-replay-summary || status=1
logs="build/meson-logs/testlog.json build-asan/meson-logs/testlog.json build/fuzz-smoke.jsonl"
logs="$logs $(ls build/meson-logs/valgrind*.json 2>/dev/null)"

python3 - $logs <<'PY' || status=1
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
if skipped:
    print(f"({skipped} skipped)")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
exit $status
