#!/bin/sh
# tsan.sh: the thread team (core/base/team.c) under ThreadSanitizer (gcc or clang
# -fsanitize=thread, in build-tsan/): the tests that run it (training, layers, the GEMM
# splits, the convolution kernels, the sparse engines), then whole `prunus` commands
# with --threads 2 on a slice of Fashion-MNIST: LeNet-5 and ResNet-8 (batchnorm, add,
# Winograd convolutions) trained one epoch, and a 2-round lottery run (pruning,
# rewinding, retraining, the latency benchmark, the report). A data race fails the test
# or the command (halt_on_error). OpenBLAS runs single-threaded: its threads are not
# instrumented, and races inside it would be reported there. No suppression is needed.
# Usage: scripts/tsan.sh [TEST... | commands]   (default: train layers gemm conv engine,
#   then the commands; "commands": only those; they are skipped without
#   /usr/share/datasets/fashion-mnist)
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build-tsan/build.ninja ]; then
  meson setup build-tsan -Db_sanitize=thread -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C build-tsan >/dev/null
export OPENBLAS_NUM_THREADS=1
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 exitcode=66"
commands=0
if [ $# -eq 0 ]; then
  set -- train layers gemm conv engine
  commands=1
elif [ "$*" = commands ]; then
  set --
  commands=1
fi
[ $# -eq 0 ] || meson test -C build-tsan --print-errorlogs --timeout-multiplier 10 "$@"
[ "$commands" -eq 1 ] || exit 0

data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
  echo "tsan: commands skipped: no Fashion-MNIST in $data"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
small="--threads 2 --set train.epochs=1 --set dataset.validation=200 --set dataset.test_limit=1000"
prunus() {
  start=$(date +%s)
  # shellcheck disable=SC2086 # $small is a list of options
  if ! build-tsan/cli/prunus "$@" $small -q >"$work/out.txt" 2>&1; then
    cat "$work/out.txt"
    echo "tsan: FAIL: prunus $* $small"
    exit 1
  fi
  echo "tsan: OK ($(($(date +%s) - start)) s): prunus $* $small"
}
prunus train configs/lenet5.cfg -o "$work/lenet5" --set dataset.train_limit=2000
prunus train configs/resnet8.cfg -o "$work/resnet8" --set dataset.train_limit=600
prunus run configs/lenet300-lottery.cfg -o "$work/lottery" --set dataset.train_limit=3000 \
  --set prune.schedule.rounds=2
