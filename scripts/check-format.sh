#!/bin/sh
# check-format.sh: checks the C sources against .clang-format without changing them
# (clang-format --dry-run --Werror); prints each file that differs, exits 1 if any.
# Usage: scripts/check-format.sh [FILE...]   (default: every tracked .c and .h file)
# To apply the format to a file instead: clang-format -i FILE
set -u
cd "$(dirname "$0")/.."

# .clang-format is written for clang-format 14 (Debian 12); other versions break
# lines differently, so the versioned binary wins when both are installed.
CLANG_FORMAT=""
for c in clang-format-14 clang-format; do
  if command -v "$c" >/dev/null 2>&1; then CLANG_FORMAT="$c"; break; fi
done
if [ -z "$CLANG_FORMAT" ]; then
  echo "check-format: clang-format not found; install it with: apt-get install -y clang-format" \
       "(scripts/setup.sh does)" >&2
  exit 1
fi

if [ $# -eq 0 ]; then
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tests/plugin-abi-r1/ holds a byte-exact copy of an old plugin.h: never reformatted
    set -- $(git ls-files '*.c' '*.h' | grep -v '^tests/plugin-abi-r1/')
  else
    set -- $(find core include cli plugins examples tests bench -name '*.[ch]' \
             -not -path 'tests/plugin-abi-r1/*' | sort)
  fi
fi

failed=0
for f in "$@"; do
  if ! "$CLANG_FORMAT" --dry-run --Werror --style=file "$f" 2>/dev/null; then
    n=$("$CLANG_FORMAT" --style=file "$f" | diff "$f" - | grep -c '^<')
    echo "check-format: $f: $n line(s) differ from .clang-format (see: $CLANG_FORMAT $f | diff $f -)"
    failed=$((failed + 1))
  fi
done
echo "check-format: $# files, $failed not formatted ($("$CLANG_FORMAT" --version | sed 's/.*version //'))"
[ "$failed" -eq 0 ]
