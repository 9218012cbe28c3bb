#!/usr/bin/env bash
# run.sh BUILD SECONDS NAME... — runs each fuzz target for SECONDS, one after
# another and niced (the machine is shared), from its seeds and regressions,
# and prints a line per target: seconds, executions, edges covered, and what
# it found. Exit 1 when any target crashed, hung, leaked or tripped a
# sanitizer (its input is in BUILD/crash/).
set -u
build=$1; secs=$2; shift 2
cd "$(dirname "$0")/.."
mkdir -p "$build/crash"
summary=(); found=0
for n in "$@"; do
    bin="$build/fuzz/fuzz_$n"
    mkdir -p "$build/corpus/$n" "fuzz/regress/$n"
    log="$build/fuzz-$n.log"
    dict=(); [ -f "fuzz/dict/$n.dict" ] && dict=(-dict="fuzz/dict/$n.dict")
    start=$(date +%s)
    # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: one that
    # needs 2 GB is a memory bomb. New inputs go to the first folder only.
    nice -n 10 "$bin" "${dict[@]+"${dict[@]}"}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/crash/$n-" "$build/corpus/$n" "fuzz/corpus/$n" "fuzz/regress/$n" \
        >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    what="nothing found"
    if [ $rc -ne 0 ]; then
        found=1
        what="FOUND (exit $rc): $(grep -m1 -E 'ERROR|runtime error|promise broken|timeout|out-of-memory' "$log" | cut -c1-160)"
        tail -40 "$log" >&2
    fi
    summary+=("fuzz: $n: $(( $(date +%s) - start )) s, ${runs:-?} executions, ${cov:-?} edges, $what")
done
printf '%s\n' "${summary[@]}"
exit $found
