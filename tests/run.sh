#!/bin/sh
# Runs each test program given as an argument (from the repository root), echoes its output,
# and sums the "PASS name" / "FAIL name" lines they print. A program that exits non-zero without
# printing a FAIL line (a crash, a sanitizer report) counts as one failure.
passed=0; failed=0
export MOGE_BIN="${BUILD:-build}/moge"  # the binary tests/test_cli.c drives
mkdir -p build
for t in "$@"; do
  out=$("$t" 2>&1 </dev/null); rc=$?  # stdin: nothing (moge run reads a piped prompt)
  printf '%s\n' "$out"
  p=$(printf '%s\n' "$out" | grep -c '^PASS ')
  f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $t (exit status $rc)"; f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
