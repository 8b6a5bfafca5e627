#!/bin/sh
# setup-checks.sh: installs what the reliability checks need on Debian 12, only when
# missing: clang 14 and its libFuzzer runtime (scripts/fuzz.sh), valgrind
# (scripts/valgrind.sh) and python3-torch (PyTorch 1.13 for /usr/bin/python3: the `torch`
# test of tests/tools/, skipped without it); test.sh, fuzz.sh and valgrind.sh call it.
# llvm-14 (llvm-symbolizer) is optional: it makes crash stacks readable.
set -eu
PACKAGES="clang libclang-rt-14-dev valgrind python3-torch"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup-checks: installing$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
