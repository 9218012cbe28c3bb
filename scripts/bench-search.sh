#!/usr/bin/env bash
# bench-search.sh — `make bench-search`: evolution, RL and random search on the
# same small budget of the real task (the MNIST digits), 3 seeds each. Prints
# per run and per strategy (median over seeds) the hypervolume of the Pareto
# front (accuracy against measured energy per inference, reference point:
# accuracy 0 and HV_REF_MJ, the same for every run so the figures compare) and
# the best reward. The goal: evolution and RL both beat random on the median.
#
# Knobs (environment): EVALS (candidates per run, 12), JOULES (joule budget
# per run, 0: none), SUBSET (training images, 2000), BATCH (32), EPOCHS (1), STAGES (3),
# MAX_WIDTH (0.5), TARGET_MJ (soft target, 2), HV_REF_MJ (2 x TARGET_MJ),
# SEEDS ("1 2 3"), THREADS (1), OUT (build/bench-search).
# One thread by default: on a shared 2-core machine two OpenMP threads per run
# stretched one candidate from ~10 s to 160 s and its batch-1 latency 6000-fold.
set -euo pipefail
cd "$(dirname "$0")/.."
NAS=${NAS:-./nas}
EVALS=${EVALS:-12}
JOULES=${JOULES:-0}
SUBSET=${SUBSET:-2000}
BATCH=${BATCH:-32}
EPOCHS=${EPOCHS:-1}
STAGES=${STAGES:-3}
MAX_WIDTH=${MAX_WIDTH:-0.5}
TARGET_MJ=${TARGET_MJ:-2}
HV_REF_MJ=${HV_REF_MJ:-$(awk "BEGIN{print 2*$TARGET_MJ}")}
SEEDS=${SEEDS:-"1 2 3"}
THREADS=${THREADS:-1}
OUT=${OUT:-build/bench-search}
PY=/usr/bin/python3

if [ ! -d data/mnist ]; then
    echo "bench-search: no data/mnist; run 'make data' first" >&2
    exit 1
fi
mkdir -p "$OUT"
echo "bench-search: $EVALS candidates per run (joule budget: ${JOULES/#0/none}), subset $SUBSET, batch $BATCH, $EPOCHS epoch(s)," \
     "$STAGES stages, max width $MAX_WIDTH, target $TARGET_MJ mJ (soft), hypervolume reference $HV_REF_MJ mJ"
for strategy in evolution rl random; do
    for seed in $SEEDS; do
        start=$(date +%s)
        nice "$NAS" search --data mnist --strategy "$strategy" --seed "$seed" \
            --budget-evals "$EVALS" --budget-joules "$JOULES" \
            --subset "$SUBSET" --batch "$BATCH" --epochs "$EPOCHS" --stages "$STAGES" --max-width "$MAX_WIDTH" \
            --threads "$THREADS" --target-mj "$TARGET_MJ" --hv-ref-mj "$HV_REF_MJ" --no-db --json \
            > "$OUT/$strategy-$seed.json" 2> "$OUT/$strategy-$seed.log"
        echo "  $strategy seed $seed: $(( $(date +%s) - start )) s"
    done
done
"$PY" - "$OUT" $SEEDS <<'PYEOF'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
print("%-10s %5s %12s %12s %8s %10s  %s" % ("strategy", "seed", "hypervolume", "best_reward", "evals", "joules", "meter"))
med = {}
for s in ("evolution", "rl", "random"):
    hv, br = [], []
    for seed in seeds:
        r = json.load(open("%s/%s-%s.json" % (out, s, seed)))
        h = r["pareto"]["hypervolume"] or 0.0
        b = r["best"]["reward"] if r["best"] else 0.0
        hv.append(h); br.append(b)
        print("%-10s %5s %12.5f %12.5f %8d %10.1f  %s (%s)" % (s, seed, h, b, r["evals"], r["energy"]["joules"],
              r["energy"]["meter"], r["energy"]["quality"]))
    med[s] = (statistics.median(hv), statistics.median(br))
print()
for s, (h, b) in med.items():
    print("median %-10s hypervolume %.5f  best reward %.5f" % (s, h, b))
for s in ("evolution", "rl"):
    print("%s vs random: hypervolume %s, best reward %s" % (s,
          "beats" if med[s][0] > med["random"][0] else "does not beat",
          "beats" if med[s][1] > med["random"][1] else "does not beat"))
PYEOF
