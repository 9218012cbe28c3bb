/* test_search.c — the strategies on a synthetic objective (a hidden target
 * genome; reward = share of genes that match it): each improves over its
 * start, evolution and RL beat random on the median over seeds, the same seed
 * gives the same proposals, and a saved state restored into a fresh strategy
 * continues exactly as the uninterrupted one. Also the REINFORCE update against
 * a hand-computed step, the genome operators, and injected allocation faults. */
#include "tests/testutil.h"
#include "search/search.h"

#include <jansson.h>
#include <math.h>

#define NG 24

static void make_space(search_space *sp)
{
    int card[NG];
    for (int i = 0; i < NG; i++)
        card[i] = 2 + i % 5;   /* 2..6 choices */
    assert_int_equal(search_space_init(sp, NG, card, NULL), NAS_OK);
}

static void make_target(const search_space *sp, uint64_t seed, space_genome *t)
{
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 999);
    search_space_sample(sp, &rng, t);
}

static double match(const space_genome *g, const space_genome *t)
{
    int m = 0;
    for (int i = 0; i < t->n; i++)
        m += g->g[i] == t->g[i];
    return (double)m / t->n;
}

typedef struct {
    double best, first_mean, last_mean, first;
} run_stats;

/* n sequential ask/tell rounds on the matching objective. */
static run_stats run_strategy(const search_opts *o, const space_genome *target, int n)
{
    search_space sp;
    make_space(&sp);
    search_strategy *s;
    assert_int_equal(search_strategy_new(&sp, o, &s, NULL), NAS_OK);
    run_stats st = {0};
    int w = n / 6;
    for (int i = 0; i < n; i++) {
        space_genome g;
        long t;
        assert_int_equal(search_ask(s, &g, &t, NULL), NAS_OK);
        assert_int_equal(t, i);
        double r = match(&g, target);
        assert_int_equal(search_tell(s, t, &g, r, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
        if (i == 0)
            st.first = r;
        if (i < w)
            st.first_mean += r / w;
        if (i >= n - w)
            st.last_mean += r / w;
        if (r > st.best)
            st.best = r;
    }
    assert_int_equal(search_strategy_pending(s), 0);
    search_strategy_free(s);
    return st;
}

static void genome_operators_stay_in_range_and_mutate_exactly(void **state)
{
    (void)state;
    search_space sp;
    make_space(&sp);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 3, 4);
    int seen[NG][6] = {{0}};
    for (int k = 0; k < 2000; k++) {
        space_genome g, h;
        search_space_sample(&sp, &rng, &g);
        assert_int_equal(g.n, NG);
        for (int i = 0; i < NG; i++) {
            assert_true(g.g[i] < sp.card[i]);
            seen[i][g.g[i]] = 1;
        }
        h = g;
        int nm = 1 + k % 3;
        search_space_mutate(&sp, &rng, &h, nm);
        int diff = 0;
        for (int i = 0; i < NG; i++) {
            assert_true(h.g[i] < sp.card[i]);
            diff += h.g[i] != g.g[i];
        }
        assert_int_equal(diff, nm);   /* distinct genes, each to a different value */
    }
    for (int i = 0; i < NG; i++)
        for (int c = 0; c < sp.card[i]; c++)
            assert_true(seen[i][c]);
    /* bad spaces are refused with the gene named */
    int bad[2] = {3, 0};
    nas_err err = {0};
    assert_int_equal(search_space_init(&sp, 2, bad, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "gene 1"));
}

static void each_strategy_improves_over_its_start(void **state)
{
    (void)state;
    space_genome target;
    search_space sp;
    make_space(&sp);
    make_target(&sp, 11, &target);
    for (int k = 0; k < 3; k++) {
        search_opts o;
        search_opts_default(&o, (search_kind)k, 300);
        o.seed = 5;
        run_stats st = run_strategy(&o, &target, 300);
        if (k == SEARCH_RANDOM) {
            /* random does not learn; what improves is the best found */
            assert_true(st.best > st.first + 0.1);
        } else {
            assert_true(st.last_mean > st.first_mean + 0.25);
            assert_true(st.best >= 0.7);
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void evolution_and_rl_beat_random_on_the_median(void **state)
{
    (void)state;
    search_space sp;
    make_space(&sp);
    double best[3][7];
    for (int seed = 0; seed < 7; seed++) {
        space_genome target;
        make_target(&sp, 100 + (uint64_t)seed, &target);
        for (int k = 0; k < 3; k++) {
            search_opts o;
            search_opts_default(&o, (search_kind)k, 200);
            o.seed = 1000 + (uint64_t)seed;
            best[k][seed] = run_strategy(&o, &target, 200).best;
        }
    }
    for (int k = 0; k < 3; k++)
        qsort(best[k], 7, sizeof(double), cmp_double);
    print_message("median best of 200: evolution %.3f  rl %.3f  random %.3f\n", best[0][3], best[1][3], best[2][3]);
    assert_true(best[SEARCH_EVOLUTION][3] > best[SEARCH_RANDOM][3] + 0.1);
    assert_true(best[SEARCH_RL][3] > best[SEARCH_RANDOM][3] + 0.1);
}

static void ppo_variant_learns_too(void **state)
{
    (void)state;
    search_space sp;
    make_space(&sp);
    space_genome target;
    make_target(&sp, 21, &target);
    search_opts o;
    search_opts_default(&o, SEARCH_RL, 400);
    o.batch = 8;
    o.ppo_epochs = 4;
    o.lr = 1.0;   /* a batch averages its gradients: the step wants to be larger */
    o.seed = 9;
    run_stats st = run_strategy(&o, &target, 400);
    assert_true(st.last_mean > st.first_mean + 0.25);
}

/* Drives a strategy with up to `inflight` asks outstanding, told back in a
 * scrambled order, as an MPI run would; every seventh ticket is screened. The
 * driver's own bookkeeping lives in a struct, so it can go on with a restored
 * strategy where it left the saved one. */
typedef struct {
    space_genome g[16];
    long t[16];
    int np, inflight;
    nas_pcg32 order;
} driver;

static void driver_init(driver *d, int inflight)
{
    memset(d, 0, sizeof *d);
    d->inflight = inflight;
    nas_pcg32_seed(&d->order, 5, 5);
}

static void drive(search_strategy *s, driver *d, const space_genome *target, int n_asks, space_genome *log)
{
    int asked = 0;
    while (asked < n_asks) {
        while (d->np < d->inflight && asked < n_asks) {
            assert_int_equal(search_ask(s, &d->g[d->np], &d->t[d->np], NULL), NAS_OK);
            log[asked++] = d->g[d->np];
            d->np++;
        }
        if (d->np < d->inflight)
            break;   /* leave some in flight: a save here must carry them */
        int k = (int)nas_pcg32_bounded(&d->order, (uint32_t)d->np);
        double r = match(&d->g[k], target);
        search_tell_kind kind = d->t[k] % 7 == 3 ? SEARCH_TELL_SCREENED : SEARCH_TELL_OK;
        assert_int_equal(search_tell(s, d->t[k], &d->g[k], r, NAN, kind, NULL), NAS_OK);
        d->g[k] = d->g[d->np - 1];
        d->t[k] = d->t[d->np - 1];
        d->np--;
    }
    assert_int_equal(search_strategy_pending(s), d->np);
}

static void same_seed_same_proposals(void **state)
{
    (void)state;
    search_space sp;
    make_space(&sp);
    space_genome target;
    make_target(&sp, 7, &target);
    for (int k = 0; k < 3; k++) {
        space_genome a[120], b[120], c[120];
        search_opts o;
        search_opts_default(&o, (search_kind)k, 120);
        search_strategy *s1, *s2, *s3;
        assert_int_equal(search_strategy_new(&sp, &o, &s1, NULL), NAS_OK);
        assert_int_equal(search_strategy_new(&sp, &o, &s2, NULL), NAS_OK);
        o.seed = 2;
        assert_int_equal(search_strategy_new(&sp, &o, &s3, NULL), NAS_OK);
        driver d1, d2, d3;
        driver_init(&d1, 1);
        driver_init(&d2, 1);
        driver_init(&d3, 1);
        drive(s1, &d1, &target, 120, a);
        drive(s2, &d2, &target, 120, b);
        drive(s3, &d3, &target, 120, c);
        int differ = 0;
        for (int i = 0; i < 120; i++) {
            assert_true(search_genome_equal(&a[i], &b[i]));
            differ += !search_genome_equal(&a[i], &c[i]);
        }
        assert_true(differ > 60);
        search_strategy_free(s1);
        search_strategy_free(s2);
        search_strategy_free(s3);
    }
}

/* Runs n1 asks, saves (with up to inflight-1 asks outstanding), restores into a
 * fresh strategy and runs n2 more: the proposals equal those of one
 * uninterrupted run, and the state round-trips to the byte. */
static void check_resume(const search_opts *o, int inflight, int n1, int n2)
{
    search_space sp;
    make_space(&sp);
    space_genome target;
    make_target(&sp, 31, &target);
    space_genome whole[300], part[300];
    assert_true(n1 + n2 <= 300);
    search_strategy *s, *a, *b;
    driver d1, d2;
    driver_init(&d1, inflight);
    driver_init(&d2, inflight);
    assert_int_equal(search_strategy_new(&sp, o, &s, NULL), NAS_OK);
    drive(s, &d1, &target, n1 + n2, whole);
    assert_int_equal(search_strategy_new(&sp, o, &a, NULL), NAS_OK);
    drive(a, &d2, &target, n1, part);
    char *js = search_strategy_save(a);
    assert_non_null(js);
    search_strategy_free(a);
    nas_err err = {0};
    assert_int_equal(search_strategy_load(&sp, js, &b, &err), NAS_OK);
    char *again = search_strategy_save(b);
    assert_string_equal(js, again);
    nas_free(again);
    nas_free(js);
    drive(b, &d2, &target, n2, part + n1);
    for (int i = 0; i < n1 + n2; i++)
        assert_true(search_genome_equal(&whole[i], &part[i]));
    search_strategy_free(s);
    search_strategy_free(b);
}

static void save_restore_continues_exactly(void **state)
{
    (void)state;
    search_opts opts[4];
    search_opts_default(&opts[0], SEARCH_EVOLUTION, 300);
    search_opts_default(&opts[1], SEARCH_RL, 300);
    search_opts_default(&opts[2], SEARCH_RANDOM, 300);
    search_opts_default(&opts[3], SEARCH_RL, 300);
    opts[3].batch = 5;
    opts[3].ppo_epochs = 3;
    for (int k = 0; k < 4; k++) {
        check_resume(&opts[k], 1, 137, 163);   /* sequential */
        check_resume(&opts[k], 4, 150, 150);   /* three asks in flight at the save */
        check_resume(&opts[k], 6, 3, 200);     /* saved during evolution's random start */
    }
}

/* With asks in flight at the save, the restored strategy accepts their tells
 * and continues as the original does. */
static void resume_with_asks_in_flight(void **state)
{
    (void)state;
    search_space sp;
    make_space(&sp);
    space_genome target;
    make_target(&sp, 41, &target);
    for (int k = 0; k < 2; k++) {
        search_opts o;
        search_opts_default(&o, (search_kind)k, 200);
        o.population = 10;
        o.sample_size = 3;
        search_strategy *a, *b;
        assert_int_equal(search_strategy_new(&sp, &o, &a, NULL), NAS_OK);
        space_genome g[5];
        long t[5];
        for (int i = 0; i < 60; i++) {   /* warm up */
            assert_int_equal(search_ask(a, &g[0], &t[0], NULL), NAS_OK);
            assert_int_equal(search_tell(a, t[0], &g[0], match(&g[0], &target), NAN, SEARCH_TELL_OK, NULL), NAS_OK);
        }
        for (int i = 0; i < 5; i++)
            assert_int_equal(search_ask(a, &g[i], &t[i], NULL), NAS_OK);
        char *js = search_strategy_save(a);
        assert_int_equal(search_strategy_load(&sp, js, &b, NULL), NAS_OK);
        nas_free(js);
        assert_int_equal(search_strategy_pending(b), 5);
        int order[5] = {3, 0, 4, 1, 2};
        for (int j = 0; j < 5; j++) {
            int i = order[j];
            double r = match(&g[i], &target);
            assert_int_equal(search_tell(a, t[i], &g[i], r, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
            assert_int_equal(search_tell(b, t[i], &g[i], r, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
        }
        for (int i = 0; i < 50; i++) {
            space_genome x, y;
            long tx, ty;
            assert_int_equal(search_ask(a, &x, &tx, NULL), NAS_OK);
            assert_int_equal(search_ask(b, &y, &ty, NULL), NAS_OK);
            assert_int_equal(tx, ty);
            assert_true(search_genome_equal(&x, &y));
            double r = match(&x, &target);
            assert_int_equal(search_tell(a, tx, &x, r, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
            assert_int_equal(search_tell(b, ty, &y, r, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
        }
        search_strategy_free(a);
        search_strategy_free(b);
    }
}

static void reinforce_step_matches_hand_computation(void **state)
{
    (void)state;
    /* One gene of two choices, uniform start. Tell 0 (sets the baseline), then 1:
     * diff = 1, var = 0.1 * 1, baseline 0.1, A = 1 / sqrt(0.1) = 3.16228;
     * d log pi(a) / d z = +-0.5, entropy gradient 0 at the uniform policy, so the
     * chosen logit moves to +0.15 * 1.58114 = 0.237171 and the other to -0.237171:
     * p(a) = 1 / (1 + exp(-0.474342)) = 0.616410. */
    search_space sp;
    int card[1] = {2};
    assert_int_equal(search_space_init(&sp, 1, card, NULL), NAS_OK);
    search_opts o;
    search_opts_default(&o, SEARCH_RL, 0);
    assert_true(fabs(o.lr - 0.15) < 1e-12 && fabs(o.baseline_decay - 0.9) < 1e-12);
    search_strategy *s;
    assert_int_equal(search_strategy_new(&sp, &o, &s, NULL), NAS_OK);
    space_genome g;
    long t;
    assert_int_equal(search_ask(s, &g, &t, NULL), NAS_OK);
    assert_int_equal(search_tell(s, t, &g, 0.0, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
    assert_true(fabs(search_rl_prob(s, 0, 0) - 0.5) < 1e-12);
    assert_int_equal(search_ask(s, &g, &t, NULL), NAS_OK);
    int a = g.g[0];
    assert_int_equal(search_tell(s, t, &g, 1.0, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
    assert_true(fabs(search_rl_prob(s, 0, a) - 0.616410) < 1e-6);
    assert_true(fabs(search_rl_prob(s, 0, 1 - a) - 0.383590) < 1e-6);
    assert_true(search_rl_prob(s, 0, 2) < 0);
    search_strategy_free(s);
}

static void rl_policy_concentrates_on_the_target(void **state)
{
    (void)state;
    search_space sp;
    make_space(&sp);
    space_genome target;
    make_target(&sp, 77, &target);
    search_opts o;
    search_opts_default(&o, SEARCH_RL, 0);
    o.seed = 3;
    search_strategy *s;
    assert_int_equal(search_strategy_new(&sp, &o, &s, NULL), NAS_OK);
    for (int i = 0; i < 600; i++) {
        space_genome g;
        long t;
        assert_int_equal(search_ask(s, &g, &t, NULL), NAS_OK);
        assert_int_equal(search_tell(s, t, &g, match(&g, &target), NAN, SEARCH_TELL_OK, NULL), NAS_OK);
    }
    int most = 0;
    for (int i = 0; i < NG; i++)
        most += search_rl_prob(s, i, target.g[i]) > 0.5;
    assert_true(most >= NG * 3 / 4);
    search_strategy_free(s);
}

/* asks children, each told screened (the population stays as it is): how
 * many differ from p in exactly one gene, as a child of p does */
static int children_near(search_strategy *s, const space_genome *p, int asks)
{
    int n = 0;
    for (int i = 0; i < asks; i++) {
        space_genome c;
        long tc;
        assert_int_equal(search_ask(s, &c, &tc, NULL), NAS_OK);
        int d = 0;
        for (int j = 0; j < NG; j++)
            d += c.g[j] != p->g[j];
        n += d == 1;
        assert_int_equal(search_tell(s, tc, &c, 0.0, NAN, SEARCH_TELL_SCREENED, NULL), NAS_OK);
    }
    return n;
}

/* evolution with a population of five and tournaments of two */
static search_strategy *small_evolution(uint64_t seed)
{
    search_space sp;
    make_space(&sp);
    search_opts o;
    search_opts_default(&o, SEARCH_EVOLUTION, 0);
    o.population = 5;
    o.sample_size = 2;
    o.seed = seed;
    search_strategy *s;
    assert_int_equal(search_strategy_new(&sp, &o, &s, NULL), NAS_OK);
    return s;
}

static void evolution_keeps_a_fixed_population_and_drops_screened(void **state)
{
    (void)state;
    search_strategy *s = small_evolution(1);   /* search_opts_default's seed */
    space_genome g[8];
    long t[8];
    /* five random asks in flight make the start; the sixth is already a child */
    for (int i = 0; i < 5; i++)
        assert_int_equal(search_ask(s, &g[i], &t[i], NULL), NAS_OK);
    /* a screened start sample does not join, so one more random ask is owed */
    assert_int_equal(search_tell(s, t[0], &g[0], 0.9, NAN, SEARCH_TELL_SCREENED, NULL), NAS_OK);
    for (int i = 1; i < 5; i++)
        assert_int_equal(search_tell(s, t[i], &g[i], 0.1 * i, NAN, SEARCH_TELL_OK, NULL), NAS_OK);
    char *js = search_strategy_save(s);
    /* four members, oldest first, with their rewards */
    assert_non_null(strstr(js, "\"start_pending\":0"));
    nas_free(js);
    assert_int_equal(search_ask(s, &g[5], &t[5], NULL), NAS_OK);   /* the owed random one */
    assert_int_equal(search_tell(s, t[5], &g[5], 0.0, NAN, SEARCH_TELL_FAILED, NULL), NAS_OK);
    /* the best member (reward 0.4, g[4]) wins any tournament that draws it; a
     * child differs from its parent in exactly one gene */
    int near_best = children_near(s, &g[4], 40);
    /* P(draw g[4] in 2 of 5 with replacement) = 1 - 0.8^2 = 0.36 */
    assert_true(near_best >= 6 && near_best <= 26);
    nas_err err = {0};
    assert_int_equal(search_tell(s, 12345, &g[0], 0.5, NAN, SEARCH_TELL_OK, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "ticket 12345"));
    search_strategy_free(s);
}

/* A population of five, told these (reward, cost): the children of A (whose
 * genome goes to *a). A is the cheapest and the worst but one; C, D and E are
 * dominated by B. */
static int children_of_a(int with_cost, int asks, char **saved, space_genome *a)
{
    static const double rw[5] = {0.3, 0.6, 0.5, 0.4, 0.45}, cost[5] = {1, 10, 20, 30, 25};
    search_strategy *s = small_evolution(17);
    space_genome g[5];
    long t[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(search_ask(s, &g[i], &t[i], NULL), NAS_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(search_tell(s, t[i], &g[i], rw[i], with_cost ? cost[i] : NAN, SEARCH_TELL_OK, NULL),
                         NAS_OK);
    if (saved)
        *saved = search_strategy_save(s);
    if (a)
        *a = g[0];
    int n = children_near(s, &g[0], asks);
    search_strategy_free(s);
    return n;
}

/* The children of A from a loaded state, as children_of_a counts them. */
static void same_children_after_load(const char *js, const space_genome *a, int expect_a)
{
    search_space sp;
    make_space(&sp);
    search_strategy *s;
    nas_err err = {0};
    assert_int_equal(search_strategy_load(&sp, js, &s, &err), NAS_OK);
    assert_int_equal(children_near(s, a, 400), expect_a);
    search_strategy_free(s);
}

static void evolution_tournament_prefers_the_undominated(void **state)
{
    (void)state;
    /* Pareto-first, A (no dominator) beats C, D and E (dominated) whatever
     * their reward: it parents when drawn without B, P = 0.8^2 - 0.6^2 =
     * 0.28, ~112 of 400. On reward alone it parents only when drawn twice,
     * P = 0.04, ~16 of 400 (the paper's tournament, kept without costs). */
    char *js = NULL;
    space_genome a;
    int pareto = children_of_a(1, 400, &js, &a);
    int plain = children_of_a(0, 400, NULL, NULL);
    assert_true(pareto >= 75 && pareto <= 150);
    assert_true(plain <= 40);
    /* the costs are saved: a loaded state picks the same parents */
    assert_non_null(js);
    same_children_after_load(js, &a, pareto);
    /* a state saved before costs ([genome, reward]) loads, as the paper's */
    json_t *root = json_loads(js, 0, NULL);
    json_t *pop = json_object_get(root, "population");
    for (size_t i = 0; i < json_array_size(pop); i++)
        assert_int_equal(json_array_remove(json_array_get(pop, i), 2), 0);
    char *old = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    same_children_after_load(old, &a, plain);
    nas_free(old);
    /* a negative cost, a string for one, or a fourth element is refused */
    for (int k = 0; k < 3; k++) {
        root = json_loads(js, 0, NULL);
        json_t *m = json_array_get(json_object_get(root, "population"), 1);
        if (k < 2)
            json_array_set_new(m, 2, k == 0 ? json_real(-1) : json_string("1"));
        else
            json_array_append_new(m, json_integer(0));
        char *bad = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        search_space sp;
        make_space(&sp);
        search_strategy *s = NULL;
        nas_err err = {0};
        assert_int_equal(search_strategy_load(&sp, bad, &s, &err), NAS_EINVAL);
        assert_non_null(strstr(err.msg, "population"));
        nas_free(bad);
    }
    nas_free(js);
}

static void bad_state_is_refused_with_the_field_named(void **state)
{
    (void)state;
    search_space sp, other;
    make_space(&sp);
    int card[3] = {2, 2, 2};
    assert_int_equal(search_space_init(&other, 3, card, NULL), NAS_OK);
    search_opts o;
    search_opts_default(&o, SEARCH_RL, 0);
    search_strategy *s, *b = NULL;
    assert_int_equal(search_strategy_new(&sp, &o, &s, NULL), NAS_OK);
    char *js = search_strategy_save(s);
    nas_err err = {0};
    assert_int_equal(search_strategy_load(&other, js, &b, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "another genome"));
    assert_null(b);
    char *p = strstr(js, "\"logits\":[");
    assert_non_null(p);
    p[10] = '"';   /* a string where a number should be */
    assert_int_equal(search_strategy_load(&sp, js, &b, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_int_equal(search_strategy_load(&sp, "{\"version\":1,\"kind\":\"annealing\"}", &b, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "'kind'"));
    nas_free(js);
    search_strategy_free(s);
    o.population = 1;
    o.kind = SEARCH_EVOLUTION;
    assert_int_equal(search_strategy_new(&sp, &o, &s, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "population 1"));
}

static void allocation_failures_leave_nothing_behind(void **state)
{
    (void)state;
    search_space sp;
    make_space(&sp);
    for (int k = 0; k < 3; k++) {
        search_opts o;
        search_opts_default(&o, (search_kind)k, 100);
        for (int n = 1; n <= 6; n++) {
            size_t live = nas_alloc_live();
            search_strategy *s = NULL;
            nas_alloc_fail_at(n);
            nas_status st = search_strategy_new(&sp, &o, &s, NULL);
            if (st == NAS_OK) {
                space_genome g;
                long t;
                /* the pending table's first allocation may be the one that fails */
                nas_status sa = search_ask(s, &g, &t, NULL);
                assert_true(sa == NAS_OK || sa == NAS_ENOMEM);
                search_strategy_free(s);
            } else {
                assert_int_equal(st, NAS_ENOMEM);
                assert_null(s);
            }
            nas_alloc_fail_at(0);
            assert_int_equal(nas_alloc_live(), live);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(genome_operators_stay_in_range_and_mutate_exactly),
        cmocka_unit_test(each_strategy_improves_over_its_start),
        cmocka_unit_test(evolution_and_rl_beat_random_on_the_median),
        cmocka_unit_test(ppo_variant_learns_too),
        cmocka_unit_test(same_seed_same_proposals),
        cmocka_unit_test(save_restore_continues_exactly),
        cmocka_unit_test(resume_with_asks_in_flight),
        cmocka_unit_test(reinforce_step_matches_hand_computation),
        cmocka_unit_test(rl_policy_concentrates_on_the_target),
        cmocka_unit_test(evolution_keeps_a_fixed_population_and_drops_screened),
        cmocka_unit_test(evolution_tournament_prefers_the_undominated),
        cmocka_unit_test(bad_state_is_refused_with_the_field_named),
        cmocka_unit_test(allocation_failures_leave_nothing_behind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
