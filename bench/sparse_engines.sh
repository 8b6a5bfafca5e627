#!/bin/sh
# sparse_engines.sh: prunus's inference engines (dense, masked, sparse, shrunk,
# auto) vs PyTorch CPU on one trained LeNet-300-100, magnitude-pruned per layer
# (0..98%) and neuron-pruned (30% kept), 1 and 2 threads; all ratios from one run.
# Usage: bench/sparse_engines.sh [BUILD_DIR] [OUT_DIR]   (from the source root)
set -eu
BUILD=${1:-build}
OUT=${2:-/tmp/prunus-sparse-bench}
mkdir -p "$OUT"
# the dense network: 10 epochs of configs/lenet300.cfg, reused when present
[ -f "$OUT/l300/model.safetensors" ] ||
  "$BUILD/cli/prunus" train configs/lenet300.cfg -o "$OUT/l300" --threads 1 --quiet
# prunus side: masks by magnitude, latencies, checkpoints + safetensors + C exports
"$BUILD/bench/sparse_engines" "$OUT/l300/model.safetensors" "$OUT" 0.25 > "$OUT/prunus.json"
/usr/bin/python3 bench/sparse_report.py "$OUT/prunus.json"
# PyTorch side on the exported safetensors of the 90% and 95% networks
/usr/bin/python3 bench/sparse_torch.py "$OUT/prunus.json" "$OUT/torch.json"
