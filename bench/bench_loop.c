/* bench_loop.c — what the search loop's bookkeeping costs per result as a
 * search grows: the real loop (search/) and the real run store (runs/, SQLite
 * in a temporary folder), with a made-up evaluator that trains nothing (its
 * accuracy and energy are a hash of the genome, instant), so that only the
 * bookkeeping is timed: the strategy, the front, the state saved with every
 * result, and the store's transactions.
 *
 * Milliseconds per result are taken over the results between N/2 and N
 * evaluations, for N = 100, 1,000 and 10,000: a bookkeeping whose cost grows
 * with the history shows as a figure that rises with N. The last line is
 *   per-result ms: 100 -> A, 1000 -> B, 10000 -> C
 * for evolution (the loop and the store together).
 *
 *   make bench-loop        (or: bench_loop [--max N] [--strategy evolution|rl|random|all] [--full-state])
 */
#include "runs/runs.h"
#include "search/search.h"
#include "space/space.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_MARKS 3
static const long marks[N_MARKS] = {100, 1000, 10000};

typedef struct {
    runs_db *db;
    int64_t run;
    int64_t *cand;            /* store row of each proposal id */
    long cap;
    double store_s;           /* inside the store's calls */
    double save_s;            /* serialising the loop's state */
    size_t state_len;         /* the last state's length */
    long max_evals;
    int full_state;           /* save the whole history with each result, as states were saved before */
    /* cumulative (loop, store) seconds when evaluation k finished, k = 0..max */
    double *at_total, *at_store;
    double t0;
    nas_err err;
} bench;

/* A number in [0, 1) from the genome: the same genome, the same figures. */
static double genome_hash(const space_genome *g, uint64_t salt)
{
    uint64_t h = 1469598103934665603ULL ^ salt;
    for (int i = 0; i < g->n; i++)
        h = (h ^ g->g[i]) * 1099511628211ULL;
    return (double)(h >> 11) / 9007199254740992.0;
}

static nas_status fake_evaluate(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                                nas_err *err)
{
    memset(out, 0, sizeof *out);
    out->status = SEARCH_EVAL_OK;
    out->accuracy = 0.5 + 0.49 * genome_hash(g, 1);
    out->energy_mj = 0.2 + 2.0 * genome_hash(g, 2);
    out->latency_ms = 0.1 + genome_hash(g, 3);
    out->joules = 1.0;
    out->joules_rel_unc = 0.05;
    out->joules_estimated = 1;
    snprintf(out->meter, sizeof out->meter, "model:cpu-time");
    out->seconds = 0.001;   /* made up: the loop would time the (instant) call otherwise */
    return NAS_OK;
}

static nas_status fake_measure(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                               nas_err *err)
{
    memset(out, 0, sizeof *out);
    out->energy_mj = 0.2 + 2.1 * genome_hash(g, 2);
    out->latency_ms = 0.1 + genome_hash(g, 3);
    out->joules = 0.1;
    snprintf(out->meter, sizeof out->meter, "model:cpu-time");
    out->joules_estimated = 1;
    out->seconds = 0.001;
    return NAS_OK;
}

static nas_status cand_row(bench *b, long id, const space_genome *g, nas_err *err)
{
    if (id >= b->cap) {
        long cap = b->cap ? b->cap * 2 : 1024;
        while (cap <= id)
            cap *= 2;
        int64_t *c = realloc(b->cand, (size_t)cap * sizeof *c);
        if (!c)
            return nas_errf(err, NAS_ENOMEM, "bench_loop: out of memory");
        b->cand = c;
        b->cap = cap;
    }
    char gs[320];
    space_genome_to_string(g, gs, sizeof gs);
    runs_new_cand nc = {.seq = (int)id, .genome = gs, .params = NAN, .macs = NAN,
                        .pred_latency_ms = runs_fig_none(), .pred_energy_mj = runs_fig_none()};
    int seq, existed;
    return runs_cand_add(b->db, b->run, &nc, &b->cand[id], &seq, &existed, err);
}

static nas_status on_start(void *ctx, long id, const space_genome *g, const search_prediction *p, int *ended,
                           nas_err *err)
{
    bench *b = ctx;
    double t = nas_now();
    nas_status st = cand_row(b, id, g, err);
    if (!st)
        st = runs_cand_start(b->db, b->cand[id], NULL, err);
    b->store_s += nas_now() - t;
    return st;
}

/* What cli/cmd_search.c's store_result does with a result, on the same store calls. */
static nas_status store(bench *b, const search_result *r, const char *state, nas_err *err)
{
    if (r->cached)
        return runs_strategy_put(b->db, b->run, (int)r->id, state, err);
    if (r->measured_later) {
        runs_fig en = runs_fig_make(r->eval.energy_mj, r->eval.meter, "estimated");
        runs_fig lat = runs_fig_make(r->eval.latency_ms, "clock", "measured");
        runs_fig j = runs_fig_make(0.1, r->eval.meter, "estimated");
        return runs_cand_add_measurement(b->db, b->cand[r->id], &lat, &en, &j, state, err);
    }
    nas_status st;
    if (r->screened && (st = cand_row(b, r->id, &r->genome, err)))
        return st;
    runs_result res;
    runs_result_init(&res);
    res.status = r->screened ? RUNS_SCREENED : RUNS_DONE;
    if (!r->screened) {
        res.accuracy = r->eval.accuracy;
        res.energy_mj = runs_fig_make(r->eval.energy_mj, r->eval.meter, "estimated");
        res.latency_ms = runs_fig_make(r->eval.latency_ms, "clock", "measured");
        res.joules = runs_fig_make(r->eval.joules, r->eval.meter, "estimated");
        res.wall_s = r->eval.seconds;
        res.reward = r->reward;
    }
    return runs_cand_finish(b->db, b->cand[r->id], &res, state, err);
}

static nas_status on_result(void *ctx, const search_result *r, const search_loop *l, nas_err *err)
{
    bench *b = ctx;
    double t = nas_now();
    char *state = b->full_state ? search_loop_save(l) : search_loop_save_state(l);
    double t1 = nas_now();
    b->save_s += t1 - t;
    if (!state)
        return nas_errf(err, NAS_ENOMEM, "bench_loop: saving the state: out of memory");
    b->state_len = strlen(state);
    nas_status st = store(b, r, state, err);
    nas_free(state);
    b->store_s += nas_now() - t1;
    long k = search_loop_budget(l)->evals;
    if (!st && k <= b->max_evals) {
        b->at_total[k] = nas_now() - b->t0;
        b->at_store[k] = b->store_s;
    }
    return st;
}

/* One search of max_evals evaluations; per-result ms of loop and store at each mark. */
static int run_one(search_kind kind, long max_evals, int full_state, const char *dir, double loop_ms[N_MARKS],
                   double store_ms[N_MARKS])
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s.db", dir, search_kind_name(kind));
    bench b;
    memset(&b, 0, sizeof b);
    b.max_evals = max_evals;
    b.full_state = full_state;
    b.at_total = calloc((size_t)max_evals + 1, sizeof(double));
    b.at_store = calloc((size_t)max_evals + 1, sizeof(double));
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    search_space sp;
    runs_new_run nr = {.name = "bench", .settings_json = "{}", .seed = 1, .hardware = "bench", .meter = "model"};
    search_loop *l = NULL;
    search_stop why;
    int rc = 1;
    if (!b.at_total || !b.at_store)
        goto cleanup;
    if (runs_open(path, RUNS_OPEN_CREATE, &b.db, &b.err) || runs_run_create(b.db, &nr, &b.run, &b.err) ||
        search_space_from_config(&sp, &cfg, &b.err))
        goto cleanup;
    search_loop_opts o;
    search_loop_opts_default(&o, kind, max_evals);
    o.strategy.seed = 7;
    /* a policy that keeps exploring: on the made-up objective the default one
     * converges within a few thousand evaluations and the search stalls */
    o.strategy.entropy_coef = 0.05;
    o.strategy.lr = 0.05;
    search_objective_init(&o.objective, SEARCH_TARGET_MJ, 1.0, 0);
    if (search_loop_new(&sp, &o, &l, &b.err))
        goto cleanup;
    search_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = &b;
    cb.evaluate = fake_evaluate;
    cb.measure = fake_measure;
    cb.on_start = on_start;
    cb.on_result = on_result;
    b.t0 = nas_now();
    if (search_run(l, &cb, &why, &b.err))
        goto cleanup;
    long done = search_loop_budget(l)->evals;
    /* what one result would cost at this size if its state held the whole
     * history, as states did before: serialise it and commit it, three times */
    double full_kb = 0, tf = nas_now();
    for (int rep = 0; rep < 3; rep++) {
        char *full = search_loop_save(l);
        if (!full || runs_strategy_put(b.db, b.run, (int)done, full, &b.err)) {
            nas_free(full);
            goto cleanup;
        }
        full_kb = (double)strlen(full) / 1024;
        nas_free(full);
    }
    double full_ms = (nas_now() - tf) / 3 * 1e3;
    for (int m = 0; m < N_MARKS; m++) {
        long hi = marks[m], lo = hi / 2;
        if (hi > done) {
            loop_ms[m] = store_ms[m] = NAN;
            continue;
        }
        double tot = b.at_total[hi] - b.at_total[lo], sto = b.at_store[hi] - b.at_store[lo];
        loop_ms[m] = (tot - sto) / (double)(hi - lo) * 1e3;
        store_ms[m] = sto / (double)(hi - lo) * 1e3;
    }
    printf("%-9s %ld evaluations (%d results, stopped: %s) in %.1f s; state saved last: %.1f KB; "
           "serialising states %.1f s in all\n", search_kind_name(kind), done, search_loop_n_results(l),
           search_stop_name(why), nas_now() - b.t0, (double)b.state_len / 1024, b.save_s);
    printf("  with the whole history (%.0f KB) saved with a result at %ld evaluations, that result would cost "
           "%.1f ms more\n", full_kb, done, full_ms);
    rc = 0;
cleanup:
    if (rc)
        fprintf(stderr, "bench_loop: %s: %s\n", search_kind_name(kind), b.err.msg);
    search_loop_free(l);
    runs_close(b.db);
    free(b.cand);
    free(b.at_total);
    free(b.at_store);
    unlink(path);
    char side[620];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_loop [--max N (100..1000000, default 10000)] "
                    "[--strategy evolution|rl|random|all (default all)]\n"
                    "  [--full-state: save the whole history with every result, as nas did before]\n");
}

int main(int argc, char **argv)
{
    long max_evals = 10000;
    int full_state = 0;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--max") && i + 1 < argc) {
            char *end;
            max_evals = strtol(argv[++i], &end, 10);
            if (*end || max_evals < 100 || max_evals > 1000000) {
                fprintf(stderr, "bench_loop: --max %s: a number of evaluations from 100 to 1000000\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--full-state")) {
            full_state = 1;
        } else if (!strcmp(argv[i], "--strategy") && i + 1 < argc) {
            which = argv[++i];
            if (strcmp(which, "all") && search_kind_from_name(which) < 0) {
                fprintf(stderr, "bench_loop: --strategy %s: evolution, rl, random or all\n", which);
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/nas-bench-loop-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("bench_loop: mkdtemp");
        return 1;
    }
    printf("bench_loop: made-up evaluator (no training), run store in %s; ms per result over evaluations "
           "N/2..N; %s\n", dir, full_state ? "the whole history saved with each result" : "the state without its history");
    search_kind kinds[3] = {SEARCH_EVOLUTION, SEARCH_RL, SEARCH_RANDOM};
    double evo_total[N_MARKS] = {NAN, NAN, NAN};
    int rc = 0;
    for (int k = 0; k < 3 && !rc; k++) {
        if (strcmp(which, "all") && search_kind_from_name(which) != (int)kinds[k])
            continue;
        double lm[N_MARKS], sm[N_MARKS];
        if ((rc = run_one(kinds[k], max_evals, full_state, dir, lm, sm)))
            break;
        for (int m = 0; m < N_MARKS; m++) {
            printf("  %-9s N=%-6ld loop %8.3f ms  store %8.3f ms  per result\n", search_kind_name(kinds[k]), marks[m],
                   lm[m], sm[m]);
            if (kinds[k] == SEARCH_EVOLUTION || !strcmp(which, search_kind_name(kinds[k])))
                evo_total[m] = lm[m] + sm[m];
        }
    }
    rmdir(dir);
    if (rc)
        return 1;
    printf("per-result ms: 100 -> %.3f, 1000 -> %.3f, 10000 -> %.3f\n", evo_total[0], evo_total[1], evo_total[2]);
    return 0;
}
