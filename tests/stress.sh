#!/usr/bin/env bash
# stress.sh RUNS — `make test` RUNS times in a row while stress-ng keeps every
# core busy at normal priority: a suite that passes only on an idle machine
# fails here. Prints each run's closing line and its time, then
# "stress: P of RUNS passed"; exit 1 unless every run passed.
set -u
runs=${1:-5}
cd "$(dirname "$0")/.."
command -v stress-ng >/dev/null || { echo "stress: stress-ng is not installed (bash scripts/setup.sh)" >&2; exit 2; }
cores=$(nproc)
stress-ng --cpu "$cores" --timeout 0 --quiet &
load=$!
trap 'kill $load 2>/dev/null; wait $load 2>/dev/null' EXIT
passed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s)
    log=$(mktemp)
    make --no-print-directory test >"$log" 2>&1
    rc=$?
    echo "stress: run $i of $runs, ${cores} stress-ng workers beside it: $(grep '^tests:' "$log" | tail -1) in $(( $(date +%s) - start )) s"
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
    else
        grep -E '^\[  FAILED  \]|^crashed:|^== .*[1-9][0-9]* failed' "$log"
        cp "$log" "stress-run-$i.log" && echo "stress: the failed run's output is in stress-run-$i.log"
    fi
    rm -f "$log"
done
echo "stress: $passed of $runs passed"
[ "$passed" -eq "$runs" ]
