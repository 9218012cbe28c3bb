#!/usr/bin/python3
"""bench_search.py -- `make bench-search`: does the search save joules against
random sampling on a task that tells architectures apart (Fashion-MNIST)?

Every strategy gets the same joule budget per run and the same seeds; each run
ends with the final training of its chosen network, tested once on the test
split (all 10,000 images), which the search itself never reads. Per strategy,
medians over seeds of:
  - final test accuracy: the chosen network's (chosen under the hard energy
    target, so it is under it), after final training;
  - hypervolume of the accuracy / energy-per-inference front (reference point:
    accuracy 0 and HV_REF_MJ, the same for every run, so the figures compare);
  - joules to reach: the joules the search had spent (candidates in the order
    they finished, each with its own training and benchmark)
    when it first held a candidate under the target whose proxy validation
    accuracy was at least random's median best. "Random's best" is, per random
    seed, the best proxy validation accuracy under the target at the end of its
    run; the threshold is their median. A run that never reaches it counts as
    infinitely many joules. Proxy accuracies are compared with proxy
    accuracies, because that is what the search sees: final test accuracies
    exist only for the chosen networks.
The last line names the strategy with the largest factor of joules saved.

evolution-mf is evolution with multi-fidelity training (--rungs 2 --eta 3):
every candidate first trains EPOCHS / 3 epochs (rung 0), and the best third
of rung 0 train on from their weights to EPOCHS epochs (rung 1), the proxy
training the other strategies give every candidate. Its "held" candidates
are its rung-1 ones, so joules to reach compares accuracies after the same
training; its rung-0 joules count, its rung-0 accuracies do not.

Knobs (environment): SEEDS ("1 2 3 4 5"), STRATEGIES ("random evolution rl
evolution-mf"), JOULES (joule budget per run, counted with the meter's
uncertainty: 1500), SUBSET (proxy training images, 2000), VAL (validation
images, 2000), EPOCHS (3),
BATCH (32), STAGES (3), MAX_WIDTH (0.75), TARGET_MJ (hard target, 2),
HV_REF_MJ (2 x TARGET_MJ), FINAL_EPOCHS (3), FINAL_SUBSET (20000),
PARALLEL (runs at a time, one thread each: 2), OUT (build/bench-search),
NAS (./nas). Every run goes without a predictor (--predictor none), so no run
pays for a calibration that the next finds cached: every candidate of random,
evolution and RL is benchmarked; evolution-mf benchmarks a rung-0 candidate
only before its promotion (and the best at the end), and those joules join
the candidate's.
"""
import json
import math
import shutil
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def env(name, default):
    return os.environ.get(name, default)


NAS = env("NAS", "./nas")
BIN = NAS
SEEDS = env("SEEDS", "1 2 3 4 5").split()
STRATEGIES = env("STRATEGIES", "random evolution rl evolution-mf").split()
JOULES = env("JOULES", "1500")
SUBSET = env("SUBSET", "2000")
VAL = env("VAL", "2000")
EPOCHS = env("EPOCHS", "3")
ETA = 3   # evolution-mf: rung 0 trains EPOCHS / ETA epochs, rung 1 (the top) EPOCHS, as the others do
BATCH = env("BATCH", "32")
STAGES = env("STAGES", "3")
MAX_WIDTH = env("MAX_WIDTH", "0.75")
TARGET_MJ = env("TARGET_MJ", "2")
HV_REF_MJ = env("HV_REF_MJ", str(2 * float(TARGET_MJ)))
FINAL_EPOCHS = env("FINAL_EPOCHS", "3")
FINAL_SUBSET = env("FINAL_SUBSET", "20000")
PARALLEL = int(env("PARALLEL", "2"))
OUT = env("OUT", "build/bench-search")


def run_one(strategy, seed):
    name = "%s-%s" % (strategy, seed)
    db = os.path.join(OUT, name + ".db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    if strategy.endswith("-mf"):
        kind, fidelity = strategy[:-3], ["--epochs", str(int(EPOCHS) // ETA), "--rungs", "2", "--eta", str(ETA)]
    else:
        kind, fidelity = strategy, ["--epochs", EPOCHS]
    cmd = ["nice", BIN, "search", "--data", "fashion-mnist", "--strategy", kind, "--seed", seed,
           "--budget-joules", JOULES, "--budget-evals", "1000",
           "--subset", SUBSET, "--val-count", VAL] + fidelity + ["--batch", BATCH,
           "--stages", STAGES, "--max-width", MAX_WIDTH, "--threads", "1",
           "--target-mj", TARGET_MJ, "--hard", "--hv-ref-mj", HV_REF_MJ,
           "--final-top", "1", "--final-epochs", FINAL_EPOCHS, "--final-subset", FINAL_SUBSET,
           "--predictor", "none", "--no-export", "--db", db, "--name", name, "--json"]
    t0 = time.time()
    with open(os.path.join(OUT, name + ".json"), "w") as out, open(os.path.join(OUT, name + ".log"), "w") as log:
        rc = subprocess.call(cmd, stdout=out, stderr=log)
    if rc != 0:
        sys.exit("bench-search: %s failed (exit %d); see %s/%s.log" % (name, rc, OUT, name))
    print("  %-12s seed %s: %4.0f s" % (strategy, seed, time.time() - t0), flush=True)
    return name


def candidates(name, top_rung):
    """(joules, accuracy at the proxy's fidelity, under target) per candidate, in the order they
    finished. Under multi-fidelity only the top rung has had the proxy's training (EPOCHS); a lower
    rung's accuracy is not comparable and counts for its joules only."""
    con = sqlite3.connect(os.path.join(OUT, name + ".db"))
    rows = con.execute("SELECT c.joules, c.accuracy, c.energy_mj, c.status, c.rung FROM candidates c "
                       "JOIN runs r ON r.id = c.run WHERE r.name = ? AND c.status IN ('done','failed','diverged') "
                       "ORDER BY c.finished, c.seq", (name,)).fetchall()
    con.close()
    t = float(TARGET_MJ)
    return [(j or 0.0, a if s == "done" and a is not None and rung == top_rung else None, e is not None and e <= t)
            for j, a, e, s, rung in rows]


def summary(name):
    r = json.load(open(os.path.join(OUT, name + ".json")))
    cands = candidates(name, 1 if name.split("-")[-2] == "mf" else 0)
    chosen = [m for m in (r.get("final") or {}).get("models", []) if m.get("chosen")]
    best_proxy = max([a for _, a, ok in cands if a is not None and ok], default=float("nan"))
    return {
        "test": chosen[0]["test_accuracy"] if chosen else float("nan"),
        "hv": r["pareto"]["hypervolume"] or 0.0,
        "joules": r["energy"]["joules"],
        "joules_unc": r["energy"]["joules_with_uncertainty"],
        "evals": r["evals"],
        "best_proxy": best_proxy,
        "cands": cands,
        "meter": "%s (%s)" % (r["energy"]["meter"], r["energy"]["quality"]),
    }


def print_machine():
    model, flags = "?", ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line.split(":", 1)[1].split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2+FMA" if "avx2" in flags and "fma" in flags else "other"
    print("# machine: %s; %s; %d logical CPUs" % (model, isa, os.cpu_count()))


def joules_to_reach(cands, threshold):
    spent = 0.0
    for j, a, ok in cands:
        spent += j
        if a is not None and ok and a >= threshold:
            return spent
    return math.inf


def ratio_words(f):
    """random's joules over the strategy's, in words."""
    if not f > 0:
        return "not reached (median)"
    if math.isinf(f):   # random's median run never reaches its own median best: there is no factor
        return "reached where random's median run does not (no finite factor)"
    return "%.2fx fewer" % f if f >= 1 else "%.2fx more" % (1 / f)


def main():
    if subprocess.call([NAS, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
        sys.exit("bench-search: %s does not run; build it first (make)" % NAS)
    os.makedirs(OUT, exist_ok=True)
    # a copy, so that a rebuild while the runs go on does not change the binary under them
    global BIN
    BIN = os.path.join(OUT, "nas")
    shutil.copy2(NAS, BIN)
    print_machine()
    print("bench-search: Fashion-MNIST, %s J per run (with the meter's uncertainty), proxy %s epoch(s) of %s "
          "images (validation %s), %s stages, max width %s, hard target %s mJ, hypervolume reference %s mJ; "
          "final training %s epochs of %s images, tested on all 10,000 test images; seeds %s; %d runs at a time, "
          "1 thread each" % (JOULES, EPOCHS, SUBSET, VAL, STAGES, MAX_WIDTH, TARGET_MJ, HV_REF_MJ,
                             FINAL_EPOCHS, FINAL_SUBSET, " ".join(SEEDS), PARALLEL), flush=True)
    t0 = time.time()
    jobs = [(s, seed) for seed in SEEDS for s in STRATEGIES]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(lambda a: run_one(*a), jobs))
    res = {(s, seed): summary("%s-%s" % (s, seed)) for s, seed in jobs}
    for line in open(os.path.join(OUT, "%s-%s.log" % jobs[0])):
        if "kernels" in line:
            print("# nas kernels: " + line.rsplit("kernels", 1)[1].strip())
            break
    if "random" not in STRATEGIES:
        sys.exit("bench-search: joules to reach needs random among STRATEGIES")
    threshold = statistics.median(res[("random", seed)]["best_proxy"] for seed in SEEDS)
    print("\n%-10s %5s %6s %9s %12s %9s %9s %12s  %s" % ("strategy", "seed", "evals", "joules", "hypervolume",
                                                       "best_val", "test_acc", "J_to_reach", "meter"))
    med = {}
    for s in STRATEGIES:
        tests, hvs, reach = [], [], []
        for seed in SEEDS:
            r = res[(s, seed)]
            jr = joules_to_reach(r["cands"], threshold)
            tests.append(r["test"])
            hvs.append(r["hv"])
            reach.append(jr)
            print("%-12s %5s %6d %9.1f %12.5f %9.4f %9.4f %12s  %s" % (
                s, seed, r["evals"], r["joules"], r["hv"], r["best_proxy"], r["test"],
                "not reached" if math.isinf(jr) else "%.1f" % jr, r["meter"]))
        med[s] = (statistics.median(tests), statistics.median(hvs), statistics.median(reach),
                  sum(not math.isinf(j) for j in reach))
    print("\nrandom's median best proxy accuracy under the target (the threshold): %.4f" % threshold)
    for s, (t, h, j, n) in med.items():
        print("median %-12s final test accuracy %.4f  hypervolume %.5f  joules to reach %s (%d of %d runs reach)" % (
            s, t, h, "not reached" if math.isinf(j) else "%.1f" % j, n, len(SEEDS)))
    jr_random = med["random"][2]
    best, factor = None, 0.0
    for s in STRATEGIES:
        if s == "random":
            continue
        t, h, j, _ = med[s]
        f = jr_random / j if j > 0 and not math.isinf(j) else 0.0
        print("%s vs random: final test accuracy %s, hypervolume %s, joules to reach %s" % (
            s, "higher" if t > med["random"][0] else "not higher",
            "higher" if h > med["random"][1] else "not higher", ratio_words(f)))
        if best is None or f > factor:
            best, factor = s, f
    print("bench-search: %.0f s in all" % (time.time() - t0))
    if best and math.isinf(factor):
        print("joules to reach random's best: %s %s" % (best, ratio_words(factor)))
    elif best and factor > 0:
        print("joules to reach random's best: %s %s than random" % (best, ratio_words(factor)))
    else:
        print("joules to reach random's best: no strategy reached it (median over seeds)")


if __name__ == "__main__":
    main()
