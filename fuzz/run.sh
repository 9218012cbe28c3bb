#!/usr/bin/env bash
# run.sh BUILD SECONDS NAME... — runs each fuzz target for SECONDS from its
# seeds and regressions, and then on until it has run FUZZ_MIN_RUNS inputs in
# all (default 0: no minimum; `make fuzz` asks for a million, which the run
# store's targets, at about a thousand inputs a second under ASan, do not reach
# in ten minutes), niced (the machine is shared), FUZZ_JOBS at a time (default
# 1: one after another; give one per core). It prints a line per target:
# seconds, executions, edges covered, and what it found. Exit 1 when any
# target crashed, hung, leaked or tripped a sanitizer (its input is in
# BUILD/crash/).
set -u
build=$1; secs=$2; shift 2
jobs=${FUZZ_JOBS:-1}
min_runs=${FUZZ_MIN_RUNS:-0}
cd "$(dirname "$0")/.."
mkdir -p "$build/crash"

# One target; its summary line goes to BUILD/fuzz-NAME.sum, and its exit
# status says whether it found something.
run_one() {
    local n=$1 bin="$build/fuzz/fuzz_$1" log="$build/fuzz-$1.log"
    mkdir -p "$build/corpus/$n" "fuzz/regress/$n"
    local dict=(); [ -f "fuzz/dict/$n.dict" ] && dict=(-dict="fuzz/dict/$n.dict")
    local start; start=$(date +%s)
    # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: one that
    # needs 2 GB is a memory bomb. New inputs go to the first folder only.
    local args=("${dict[@]+"${dict[@]}"}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
                -artifact_prefix="$build/crash/$n-" "$build/corpus/$n" "fuzz/corpus/$n" "fuzz/regress/$n")
    nice -n 10 "$bin" -max_total_time="$secs" "${args[@]}" >"$log" 2>&1
    local rc=$?
    local runs cov what="nothing found"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # short of the minimum: on from the corpus it has grown, for the rest
    if [ $rc -eq 0 ] && [ -n "$runs" ] && [ "$runs" -lt "$min_runs" ]; then
        nice -n 10 "$bin" -runs=$((min_runs - runs)) "${args[@]}" >>"$log" 2>&1
        rc=$?
        local more; more=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        runs=$((runs + ${more:-0}))
    fi
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc -ne 0 ]; then
        what="FOUND (exit $rc): $(grep -m1 -E 'ERROR|runtime error|promise broken|timeout|out-of-memory' "$log" | cut -c1-160)"
        tail -40 "$log" >&2
    fi
    echo "fuzz: $n: $(( $(date +%s) - start )) s, ${runs:-?} executions, ${cov:-?} edges, $what" >"$build/fuzz-$n.sum"
    [ $rc -eq 0 ]
}

found=0; running=0
for n in "$@"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || found=1
        running=$((running - 1))
    fi
    run_one "$n" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || found=1
    running=$((running - 1))
done
for n in "$@"; do cat "$build/fuzz-$n.sum"; done
exit $found
