#!/bin/sh
# setup.sh: installs what prunus needs on Debian 12 (only the missing packages)
# and builds it into build/. Sourced by run-default.sh and test.sh.
set -eu
cd "$(dirname "$0")/.."

# clang-format: scripts/check-format.sh (the .clang-format dialect)
PACKAGES="build-essential meson ninja-build pkg-config libglib2.0-dev libconfig-dev \
libopenblas-dev dataset-fashion-mnist gnuplot-nox python3 chromium clang-format"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

if [ ! -f build/build.ninja ]; then
  meson setup build
fi
ninja -C build
