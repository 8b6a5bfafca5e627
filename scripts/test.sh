#!/bin/sh
# test.sh: set up (apt + build), run the whole test suite, then again on an
# ASan+UBSan build; ends with "N passed, N failed" counted from Meson's test logs.
set -u
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1

status=0
meson test -C build --print-errorlogs || status=1

if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized || exit 1
fi
ninja -C build-asan || exit 1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs || status=1

python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json <<'PY' || status=1
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
