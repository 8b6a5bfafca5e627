#!/bin/sh
# tsan.sh: the tests that run the thread team (core/base/team.c: training, layers, the
# GEMM splits, the convolution kernels, the sparse engines) under ThreadSanitizer, in
# build-tsan/. A data race fails the test. OpenBLAS runs single-threaded (its threads are not instrumented and
# would be reported inside the library).
# Usage: scripts/tsan.sh [TEST...]   (default: train layers gemm conv engine)
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build-tsan/build.ninja ]; then
  meson setup build-tsan -Db_sanitize=thread -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C build-tsan >/dev/null
[ $# -eq 0 ] && set -- train layers gemm conv engine
OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  exec meson test -C build-tsan --print-errorlogs --timeout-multiplier 10 "$@"
