#!/bin/sh
# criteria-table.sh: runs configs/criteria.cfg (every criterion x {weight, neuron}
# on LeNet-300-100) and writes docs/criteria.md, the test-accuracy table.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
./build/cli/prunus run configs/criteria.cfg -o runs/criteria --threads 1 --quiet "$@"
python3 scripts/criteria_table.py runs/criteria/summary.json > docs/criteria.md
echo "wrote docs/criteria.md"
