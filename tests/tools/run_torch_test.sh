#!/bin/sh
# run_torch_test.sh: runs a test script with Debian's python3, which has python3-torch
# (scripts/setup-checks.sh installs it); exits 77, which Meson counts as skipped, with a
# message when that python cannot import torch. PRUNUS_TORCH_PYTHON picks another python.
PY=${PRUNUS_TORCH_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "SKIP: $PY cannot import torch (apt-get install python3-torch, or set PRUNUS_TORCH_PYTHON)"
  exit 77
fi
exec "$PY" "$@"
