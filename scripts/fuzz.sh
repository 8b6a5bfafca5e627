#!/bin/sh
# fuzz.sh: run one libFuzzer harness of tests/fuzz/ for SECONDS (clang, ASan+UBSan).
# Usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]
#   TARGET: json idx safetensors checkpoint config summary (or "all": each in turn)
# The first call sets up build-fuzz/ (CC=clang, -Dfuzz=true); new inputs go to
# build-fuzz/fuzz-corpus/TARGET (the seeds in tests/fuzz/corpus/TARGET stay as they
# are), a crash to build-fuzz/fuzz-crashes/TARGET-*. Ends with the line
# "fuzz TARGET: N executions in S s (R/s), K crashes" and exits non-zero on a crash
# (it stops at SECONDS, or earlier when a -runs=N option is reached).
# A crash found is fixed and its input kept in tests/fuzz/regress/TARGET/ (replayed
# by the test suite from then on).
set -eu
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2
all="json idx safetensors checkpoint config summary"
if [ "$target" = all ]; then
  for t in $all; do "$0" "$t" "$seconds" "$@" || exit 1; done
  exit 0
fi
case " $all " in
*" $target "*) ;;
*)
  echo "fuzz.sh: unknown target '$target' (one of: $all, all)" >&2
  exit 2
  ;;
esac

./scripts/setup-checks.sh
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
    -Dbuildtype=debugoptimized -Db_lundef=false >/dev/null
fi
ninja -C build-fuzz "tests/fuzz/fuzz-$target" >/dev/null

work=build-fuzz/fuzz-corpus/$target
mkdir -p "$work" build-fuzz/fuzz-crashes
dict=""
[ -f "tests/fuzz/dict/$target.dict" ] && dict="-dict=tests/fuzz/dict/$target.dict"
log=build-fuzz/fuzz-$target.log
# -rss_limit_mb: an input that makes a reader allocate more than this is a finding
# (sizes are refused before large allocations); -timeout: one input > 10 s is a hang
# config: libconfig's own leaks on refused configs (tests/fuzz/lsan.supp) would make
# the leak check after every input symbolize a stack, 20 times slower: leaks are
# checked once, over everything the run did, when it ends
leaks=""
[ "$target" = config ] && leaks="-detect_leaks=0"
status=0
start=$(date +%s)
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 OPENBLAS_NUM_THREADS=1 \
  "build-fuzz/tests/fuzz/fuzz-$target" "$work" "tests/fuzz/corpus/$target" $dict \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="build-fuzz/fuzz-crashes/$target-" $leaks "$@" >"$log" 2>&1 || status=$?
took=$(($(date +%s) - start))
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
# one input written per crash, leak or timeout (a crash's report has several ERROR and
# SUMMARY lines, so those are not counted)
crashes=$(grep -c 'Test unit written to' "$log" || true)
echo "fuzz $target: ${runs:-0} executions in $took s (${rate:-0}/s), $crashes crashes (log: $log)"
if [ "$status" -ne 0 ]; then
  grep -m 20 'ERROR\|SUMMARY\|Test unit written\|runtime error' "$log" >&2 || true
  exit 1
fi
