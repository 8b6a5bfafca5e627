#!/bin/sh
# valgrind.sh: the test suite under valgrind memcheck: an invalid read or write, a use
# of uninitialised memory or a definite leak fails the test (valgrind exits 99), in the
# test programs and in the prunus processes they start.
# Usage: scripts/valgrind.sh [meson test options and TEST names...]
#   default: every test but the lint and slow suites (about 25 minutes on 2 cores);
#   scripts/valgrind.sh json idx ...: the named tests only (test.sh runs the readers' tests
#   and the fuzz corpora this way: a minute or two).
# Builds into build/ as scripts/setup.sh does; installs valgrind when missing.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup-checks.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
# children: the prunus binary and the test programs yes; the system's programs the tests
# start, no (the shell, mktemp, mount, gnuplot, chromium, python3, cc: their own leaks
# are not prunus's, and a skipped program's children are not traced either)
VG="valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite"
VG="$VG --errors-for-leak-kinds=definite --track-origins=yes --trace-children=yes"
VG="$VG --trace-children-skip=/usr/bin/*,/bin/*,/usr/sbin/*,/sbin/*,/usr/lib/*,*chromium*"
VG="$VG,*/sh,*/bash,*/gnuplot,*/python3*,*/cc,*/gcc,*/meson"
VG="$VG --suppressions=$PWD/scripts/valgrind.supp"
if [ $# -eq 0 ]; then
  set -- --no-suite lint --no-suite slow
fi
# the tests' wall-clock bounds (the faults test's "refused at once") stretch by as much
# as meson's timeouts: under memcheck a process starts tens of times slower
PRUNUS_TEST_TIME_FACTOR=30
# export's Fashion-MNIST subtests use fewer images (tests/testutil.h), and test scripts
# run by a skipped program (test_torch.py, under python3) start prunus under this wrapper
PRUNUS_TEST_UNDER_MEMCHECK=1
PRUNUS_TEST_CHILD_WRAPPER=$VG
export PRUNUS_TEST_TIME_FACTOR PRUNUS_TEST_UNDER_MEMCHECK PRUNUS_TEST_CHILD_WRAPPER
exec meson test -C build --print-errorlogs --timeout-multiplier $PRUNUS_TEST_TIME_FACTOR \
  --wrapper "$VG" "$@"
