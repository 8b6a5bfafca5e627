#!/bin/sh
# expect_compile_error.sh: runs a compiler command that MUST fail, and checks its
# messages contain PATTERN (a fixed string). Usage: PATTERN COMMAND ARGS...
pattern=$1
shift
if out=$("$@" 2>&1); then
  echo "FAIL: compiled without error, expected one containing: $pattern"
  exit 1
fi
if ! printf '%s\n' "$out" | grep -F -- "$pattern" >/dev/null; then
  printf '%s\n' "$out"
  echo "FAIL: the compiler failed, but not with: $pattern"
  exit 1
fi
echo "ok: the compiler refused it with: $pattern"
