#!/bin/sh
# setup-fuzz.sh: installs what the libFuzzer harnesses need on Debian 12 (clang 14 and
# its libFuzzer runtime), only when missing; scripts/fuzz.sh and test.sh's fuzz smoke
# call it. llvm-14 (llvm-symbolizer) is optional: it makes crash stacks readable.
set -eu
PACKAGES="clang libclang-rt-14-dev"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup-fuzz: installing$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
