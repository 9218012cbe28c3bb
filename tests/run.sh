#!/usr/bin/env bash
# Runs each cmocka test binary given, then prints one closing line that counts
# the tests of all of them: "tests: N passed, N failed". Exit 1 if any failed
# (a binary that exits non-zero with no test failed, e.g. on a valgrind error,
# counts as one failure).
set -u
passed=0; failed=0; broken=()
log=$(mktemp)
for t in "$@"; do
    name=$(basename "$t")
    start=$(date +%s)
    # NAS_TEST_WRAP: a command each binary runs under (make test-valgrind's valgrind)
    ${NAS_TEST_WRAP:-} "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p)); failed=$((failed + f))
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        failed=$((failed + 1)); broken+=("$name (exit $rc)")
    fi
    echo "== $name: $p passed, $f failed, $(( $(date +%s) - start ))s"
done
rm -f "$log"
for b in "${broken[@]+"${broken[@]}"}"; do echo "crashed: $b"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
