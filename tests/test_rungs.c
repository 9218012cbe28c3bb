/* test_rungs.c — multi-fidelity search (ASHA) on a made-up task with known
 * learning curves: a candidate's accuracy after u units of training is
 * final(g) x (1 - exp(-u / tau(g))), so a short training ranks candidates
 * only roughly. Checked: every promotion's parent ranked, when it was
 * promoted, within the best 1/eta of its rung's finished results; no rung
 * holds more than 1/eta of the one below; a promotion trains on from its
 * parent (units add up to eta^rung); the strategy learns from rung-0 results
 * only; the joule budget holds over every rung; the leaderboard holds each
 * candidate once, at its highest rung; a promotion, not measured again, has
 * its parent's energy and latency; and a state saved mid-rung resumes to the
 * end an uninterrupted run reaches; with no figures from rung 0 (no
 * predictor), a candidate is measured before its promotion, and one measured
 * over a hard target is not promoted. */
#include "tests/testutil.h"
#include "search/search.h"
#include "search/internal.h"

#include <jansson.h>
#include <math.h>

#define NG 12
#define MAXID 4096

typedef struct {
    search_space sp;
    search_loop *loop;        /* the loop being run, for search_loop_lineage */
    int eta;
    double units[MAXID];      /* training units each id has had in all (its parent's and its own) */
    int rung_of[MAXID];
    int n_eval, promotions, bad_rank, bad_units;
    int save_at, n_results;
    char *saved;
    double clock;             /* fake seconds: a resumed run's clock must not differ */
    int lazy;                 /* rung 0 gives no figures (no predictor): measure() does */
    int measured[MAXID], measures, unmeasured_promotions;
} task;

static double final_acc(const space_genome *g)
{
    double s = 0;
    for (int i = 0; i < g->n; i++)
        s += (double)((g->g[i] * 7 + i * 3) % 5) / 4.0;
    return 0.3 + 0.6 * s / g->n;
}

static double tau(const space_genome *g)
{
    return 0.5 + (double)((g->g[0] + 2 * g->g[1]) % 4);   /* slow learners look bad at rung 0 */
}

static double acc_after(const space_genome *g, double units)
{
    return final_acc(g) * (1 - exp(-units / tau(g)));
}

/* Where result `parent` stood among the finished results of its rung. */
static void check_rank(task *t, long parent)
{
    int rung = -1, n = 0, better = 0;
    double reward = 0;
    for (int i = 0; i < search_loop_n_results(t->loop); i++) {
        const search_result *r = search_loop_result(t->loop, i);
        if (r->id == parent) {
            rung = r->rung;
            reward = r->reward;
        }
    }
    assert_true(rung >= 0);
    for (int i = 0; i < search_loop_n_results(t->loop); i++) {
        const search_result *r = search_loop_result(t->loop, i);
        if (r->rung != rung || r->screened || r->cached || r->eval.status != SEARCH_EVAL_OK)
            continue;
        n++;
        better += r->reward > reward || (r->reward == reward && r->id < parent);
    }
    if (better >= n / t->eta)
        t->bad_rank++;
}

static nas_status cb_eval(void *ctx, long id, const space_genome *g, double allowance, search_eval *out, nas_err *err)
{
    (void)err;
    task *t = ctx;
    assert_true(id >= 0 && id < MAXID);
    long parent;
    int rung = search_loop_lineage(t->loop, id, &parent);
    double work = search_rung_work(rung, t->eta);
    t->n_eval++;
    t->rung_of[id] = rung;
    if (rung > 0) {
        t->promotions++;
        check_rank(t, parent);
        assert_int_equal(t->rung_of[parent], rung - 1);
        t->unmeasured_promotions += t->lazy && rung == 1 && !t->measured[parent];
        t->units[id] = t->units[parent] + work;   /* on from the parent's weights */
    } else {
        assert_int_equal(parent, -1);
        t->units[id] = work;
    }
    if (fabs(t->units[id] - pow(t->eta, rung)) > 1e-9)
        t->bad_units++;
    memset(out, 0, sizeof *out);
    out->status = SEARCH_EVAL_OK;
    out->joules = 10 * work;
    if (out->joules * 1.05 > allowance)   /* an evaluator that keeps to its allowance */
        out->joules = allowance / 1.05;
    out->joules_rel_unc = 0.05;
    out->joules_estimated = 1;
    snprintf(out->meter, sizeof out->meter, "model:cpu-time");
    out->accuracy = acc_after(g, t->units[id]);
    if (rung == 0 && !t->lazy) {   /* measured once, as nas's evaluator does: a promotion has its parent's figures */
        out->energy_mj = 1.0 + (double)g->g[2];
        out->latency_ms = 0.5 + (double)g->g[3];
    }
    out->seconds = 1;
    t->clock += 1;
    return NAS_OK;
}

static double energy_of(const space_genome *g) { return 1.0 + (double)g->g[2]; }

/* A benchmark of a trained candidate: what rung 0 of a lazy task left out. */
static nas_status cb_measure(void *ctx, long id, const space_genome *g, double allowance, search_eval *out,
                             nas_err *err)
{
    (void)err;
    task *t = ctx;
    assert_true(id >= 0 && id < MAXID && t->lazy);
    assert_false(t->measured[id]);   /* once */
    assert_int_equal(t->rung_of[id], 0);
    t->measured[id] = 1;
    t->measures++;
    memset(out, 0, sizeof *out);
    out->joules = 4 * 1.05 < allowance ? 4 : allowance / 1.05;
    out->joules_rel_unc = 0.05;
    out->joules_estimated = 1;
    snprintf(out->meter, sizeof out->meter, "model:cpu-time");
    out->energy_mj = energy_of(g);
    out->latency_ms = 0.5 + (double)g->g[3];
    out->seconds = 0.4;
    t->clock += 0.4;
    return NAS_OK;
}

static double cb_now(void *ctx) { return ((task *)ctx)->clock; }

static nas_status cb_result(void *ctx, const search_result *r, const search_loop *l, nas_err *err)
{
    (void)r;
    (void)err;
    task *t = ctx;
    if (++t->n_results == t->save_at && !t->saved)
        t->saved = search_loop_save(l);
    return NAS_OK;
}

static search_callbacks callbacks(task *t)
{
    search_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = t;
    cb.evaluate = cb_eval;
    cb.on_result = cb_result;
    cb.now = cb_now;
    if (t->lazy)
        cb.measure = cb_measure;
    return cb;
}

static void task_init(task *t, int eta)
{
    memset(t, 0, sizeof *t);
    int card[NG];
    for (int i = 0; i < NG; i++)
        card[i] = 3 + i % 3;
    assert_int_equal(search_space_init(&t->sp, NG, card, NULL), NAS_OK);
    t->eta = eta;
}

static void opts_of(search_loop_opts *o, search_kind kind, long evals, double joules, int rungs, int eta)
{
    search_loop_opts_default(o, kind, evals);
    o->limits.joules = joules;
    o->rungs = rungs;
    o->eta = eta;
    o->strategy.seed = 5;
}

static search_loop *run(task *t, const search_loop_opts *o)
{
    search_loop *l = NULL;
    nas_err err = {0};
    assert_int_equal(search_loop_new(&t->sp, o, &l, &err), NAS_OK);
    t->loop = l;
    search_callbacks cb = callbacks(t);
    search_stop why;
    assert_int_equal(search_run(l, &cb, &why, &err), NAS_OK);
    return l;
}

static void promotes_the_best_third_and_learns_from_rung_zero(void **state)
{
    (void)state;
    for (int k = 0; k < 3; k++) {
        task t;
        task_init(&t, 3);
        search_loop_opts o;
        opts_of(&o, (search_kind)k, 60, 0, 3, 3);
        search_loop *l = run(&t, &o);
        assert_int_equal(t.bad_rank, 0);
        assert_int_equal(t.bad_units, 0);
        assert_true(t.promotions > 0);
        int per_rung[3] = {0};
        for (int i = 0; i < search_loop_n_results(l); i++) {
            const search_result *r = search_loop_result(l, i);
            if (!r->screened && !r->cached)
                per_rung[r->rung]++;
        }
        fprintf(stderr, "  kind %d: %d evaluations, by rung %d / %d / %d\n", k, t.n_eval, per_rung[0], per_rung[1],
                per_rung[2]);
        assert_true(per_rung[2] > 0);   /* some reached the top */
        /* each rung narrower than the one below (ASHA promotes whatever ranks in the best
         * 1/eta when it is asked, so over a run somewhat more than 1/eta go up) */
        assert_true(per_rung[1] < per_rung[0] && per_rung[2] < per_rung[1]);
        assert_int_equal(per_rung[0] + per_rung[1] + per_rung[2], t.n_eval);
        /* the strategy was told rung 0 only */
        json_t *j = search_strategy_to_json(search_loop_strategy(l));
        long told = (long)json_integer_value(json_object_get(j, "told"));
        json_decref(j);
        int rung0 = 0;
        for (int i = 0; i < search_loop_n_results(l); i++)
            rung0 += search_loop_result(l, i)->rung == 0;
        assert_int_equal(told, rung0);
        /* every result has figures: a promotion its parent's, though not measured again */
        for (int i = 0; i < search_loop_n_results(l); i++) {
            const search_result *r = search_loop_result(l, i);
            const space_genome *g = &r->genome;
            assert_true(r->eval.energy_mj == 1.0 + (double)g->g[2] && r->energy_mj == r->eval.energy_mj);
            assert_true(r->eval.latency_ms == 0.5 + (double)g->g[3] && r->latency_ms == r->eval.latency_ms);
        }
        /* the leaderboard: each candidate once, at its highest rung */
        int idx[64], n = search_loop_leaderboard(l, idx, 64);
        assert_true(n > 0);
        for (int a = 0; a < n; a++) {
            const search_result *ra = search_loop_result(l, idx[a]);
            for (int b = a + 1; b < n; b++)
                assert_false(search_genome_equal(&ra->genome, &search_loop_result(l, idx[b])->genome));
            for (int i = 0; i < search_loop_n_results(l); i++) {
                const search_result *c = search_loop_result(l, i);
                assert_false(c->parent == ra->id && c->eval.status == SEARCH_EVAL_OK);   /* not superseded */
            }
        }
        const search_result *best = search_loop_best(l);
        assert_non_null(best);
        assert_true(best->rung == 2);   /* the slow learners the top rung found beat every short training */
        search_loop_free(l);
    }
}

static void the_budget_holds_over_every_rung(void **state)
{
    (void)state;
    for (double joules = 150; joules <= 1200; joules *= 2) {
        task t;
        task_init(&t, 3);
        search_loop_opts o;
        opts_of(&o, SEARCH_EVOLUTION, 0, joules, 4, 3);
        search_loop *l = run(&t, &o);
        assert_true(search_loop_budget(l)->joules_hi <= joules * (1 + 1e-9));
        assert_true(t.n_eval > 0);
        search_loop_free(l);
    }
}

static void a_state_saved_mid_rung_resumes_to_the_same_end(void **state)
{
    (void)state;
    for (int save_at = 5; save_at <= 40; save_at += 7) {
        task a, b, c;
        task_init(&a, 3);
        task_init(&b, 3);
        b.save_at = save_at;
        search_loop_opts o;
        opts_of(&o, SEARCH_EVOLUTION, 50, 0, 3, 3);
        search_loop *la = run(&a, &o), *lb = run(&b, &o);
        assert_non_null(b.saved);
        json_t *st = json_loads(b.saved, 0, NULL);
        assert_non_null(json_object_get(st, "rungs"));
        json_decref(st);
        task_init(&c, 3);
        memcpy(c.units, b.units, sizeof c.units);   /* the weights a store would hold */
        memcpy(c.rung_of, b.rung_of, sizeof c.rung_of);
        search_loop *lc = NULL;
        nas_err err = {0};
        assert_int_equal(search_loop_load(&c.sp, b.saved, &lc, &err), NAS_OK);
        c.loop = lc;
        search_callbacks cb = callbacks(&c);
        search_stop why;
        assert_int_equal(search_run(lc, &cb, &why, &err), NAS_OK);
        char *ja = search_loop_save(la), *jc = search_loop_save(lc);
        if (strcmp(ja, jc)) {
            size_t i = 0;
            while (ja[i] == jc[i])
                i++;
            fprintf(stderr, "save_at %d: differ at %zu:\n  %.300s\n  %.300s\n", save_at, i, ja + (i > 100 ? i - 100 : 0),
                    jc + (i > 100 ? i - 100 : 0));
        }
        assert_string_equal(ja, jc);
        assert_int_equal(c.bad_units, 0);
        nas_free(ja);
        nas_free(jc);
        nas_free(b.saved);
        search_loop_free(la);
        search_loop_free(lb);
        search_loop_free(lc);
    }
}

/* With no figures from rung 0 (nas with no predictor), a candidate is
 * benchmarked just before its promotion, ranked again with its cost (a hard
 * energy target), and never promoted unmeasured; most of rung 0 is never
 * benchmarked, and the budget counts the benchmarks. */
static void an_unmeasured_candidate_is_measured_before_its_promotion(void **state)
{
    (void)state;
    for (int k = 0; k < 3; k++) {
        task t;
        task_init(&t, 3);
        t.lazy = 1;
        search_loop_opts o;
        opts_of(&o, (search_kind)k, 0, 900, 2, 3);
        o.measure_every = 0;   /* only the promotions' and the end's benchmarks */
        search_objective_init(&o.objective, SEARCH_TARGET_MJ, 3.0, 1);
        search_loop *l = run(&t, &o);
        assert_true(search_loop_budget(l)->joules_hi <= 900 * (1 + 1e-9));
        assert_true(t.promotions > 0);
        assert_int_equal(t.unmeasured_promotions, 0);
        assert_int_equal(t.bad_rank, 0);
        int rung0 = 0;
        for (int i = 0; i < search_loop_n_results(l); i++) {
            const search_result *r = search_loop_result(l, i);
            rung0 += r->rung == 0 && !r->screened && !r->cached;
            if (r->rung > 0) {   /* its parent's measured figures, under the hard target */
                assert_true(r->eval.energy_mj == energy_of(&r->genome));
                assert_true(r->eval.energy_mj <= 3.0);
            } else if (!t.measured[r->id]) {
                assert_false(r->eval.energy_mj > 0);
                assert_false(r->feasible);   /* a hard target with no figure to meet it */
            }
        }
        fprintf(stderr, "  kind %d: %d rung-0 results, %d benchmarked, %d promoted\n", k, rung0, t.measures,
                t.promotions);
        /* the promoted, those that ranked out once measured, and the end's best: not all of rung 0 */
        assert_true(t.measures >= t.promotions && t.measures < rung0);
        const search_result *best = search_loop_best(l);
        assert_non_null(best);
        assert_true(best->feasible && best->eval.energy_mj <= 3.0);
        search_loop_free(l);
    }
}

static void rungs_are_refused_where_they_cannot_run(void **state)
{
    (void)state;
    task t;
    task_init(&t, 3);
    search_loop_opts o;
    opts_of(&o, SEARCH_RANDOM, 10, 0, 3, 1);
    search_loop *l = NULL;
    nas_err err = {0};
    assert_int_equal(search_loop_new(&t.sp, &o, &l, &err), NAS_EINVAL);   /* eta 1 never narrows */
    opts_of(&o, SEARCH_RANDOM, 10, 0, SEARCH_MAX_RUNGS + 1, 3);
    assert_int_equal(search_loop_new(&t.sp, &o, &l, &err), NAS_EINVAL);
    assert_null(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(promotes_the_best_third_and_learns_from_rung_zero),
        cmocka_unit_test(the_budget_holds_over_every_rung),
        cmocka_unit_test(a_state_saved_mid_rung_resumes_to_the_same_end),
        cmocka_unit_test(an_unmeasured_candidate_is_measured_before_its_promotion),
        cmocka_unit_test(rungs_are_refused_where_they_cannot_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
