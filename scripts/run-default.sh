#!/bin/sh
# run-default.sh: set up (apt + build), then run the main job on Fashion-MNIST:
# the default pipeline config, results in runs/default/ (one thread: the README
# numbers reproduce bit for bit; pass --threads 2 to go faster).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec ./build/cli/prunus run configs/default.cfg -o runs/default --threads 1 "$@"
