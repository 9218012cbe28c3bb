/* test_search_objective.c — MnasNet's reward against hand-computed values,
 * the Pareto front and its hypervolume against hand-worked examples and
 * against a brute-force computation over random point sets. */
#include "tests/testutil.h"
#include "search/search.h"

#include <math.h>

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-6)

static void soft_reward_matches_hand_values(void **state)
{
    (void)state;
    search_objective o;
    search_objective_init(&o, SEARCH_TARGET_MJ, 2.0, 0);
    assert_true(o.alpha == -0.07 && o.beta == -0.07);
    /* ACC 0.9, E = 2T: 0.9 * 2^-0.07 = 0.9 * 0.9526380 = 0.8573742 */
    NEAR(search_reward(&o, 0.9, 4.0, NAN), 0.8573742);
    /* E = T/2: 0.9 * 0.5^-0.07 = 0.9 * 1.0497167 = 0.9447450 */
    NEAR(search_reward(&o, 0.9, 1.0, NAN), 0.9447450);
    NEAR(search_reward(&o, 0.9, 2.0, NAN), 0.9);
    assert_true(search_feasible(&o, 100.0, NAN));   /* soft: everything is feasible */
    /* latency targets read the latency */
    search_objective_init(&o, SEARCH_TARGET_MS, 10.0, 0);
    NEAR(search_reward(&o, 0.8, 999.0, 20.0), 0.8 * 0.9526380);
    /* unknown cost: the reward is the accuracy */
    NEAR(search_reward(&o, 0.8, 1.0, NAN), 0.8);
    NEAR(search_reward(&o, 0.8, 1.0, 0.0), 0.8);
    search_objective_init(&o, SEARCH_TARGET_NONE, 0, 0);
    NEAR(search_reward(&o, 0.7, 5.0, 5.0), 0.7);
    assert_true(search_reward(&o, NAN, 5.0, 5.0) == 0.0);
}

static void hard_reward_matches_hand_values(void **state)
{
    (void)state;
    search_objective o;
    search_objective_init(&o, SEARCH_TARGET_MJ, 2.0, 1);
    assert_true(o.alpha == 0.0 && o.beta == -1.0);
    NEAR(search_reward(&o, 0.9, 4.0, NAN), 0.45);    /* 0.9 * (4/2)^-1 */
    NEAR(search_reward(&o, 0.9, 1.0, NAN), 0.9);     /* under the target: w = 0 */
    NEAR(search_reward(&o, 0.9, 2.0, NAN), 0.9);     /* at the target counts as under */
    NEAR(search_reward(&o, 0.9, 2.1, NAN), 0.9 * 2.0 / 2.1);
    assert_true(search_feasible(&o, 2.0, NAN));
    assert_false(search_feasible(&o, 2.0000001, NAN));
    assert_false(search_feasible(&o, NAN, NAN));     /* unknown cost cannot be shown to meet it */
    assert_false(search_feasible(&o, 0.0, NAN));
    search_objective_init(&o, SEARCH_TARGET_MS, 5.0, 1);
    assert_true(search_feasible(&o, 100.0, 4.0));
    assert_false(search_feasible(&o, 0.1, 6.0));
}

static void front_keeps_only_nondominated_points(void **state)
{
    (void)state;
    search_front f;
    search_front_init(&f);
    assert_int_equal(search_front_add(&f, 1, 0.7, 2.0), 1);
    assert_int_equal(search_front_add(&f, 2, 0.5, 1.0), 1);
    assert_int_equal(search_front_add(&f, 3, 0.9, 4.0), 1);
    assert_int_equal(f.n, 3);
    /* sorted by energy, accuracy ascending with it */
    assert_true(f.p[0].id == 2 && f.p[1].id == 1 && f.p[2].id == 3);
    /* hypervolume with reference (acc 0, 5 mJ): 4*0.5 + 3*0.2 + 1*0.2 = 2.8 */
    NEAR(search_front_hypervolume(&f, 5.0), 2.8);
    assert_int_equal(search_front_add(&f, 4, 0.6, 3.0), 0);   /* dominated by (0.7, 2) */
    assert_int_equal(search_front_add(&f, 5, 0.7, 2.0), 0);   /* a duplicate adds nothing */
    assert_int_equal(search_front_add(&f, 6, 0.7, 2.5), 0);   /* weakly dominated */
    assert_int_equal(search_front_add(&f, 7, 0.65, 2.0), 0);  /* same energy, lower accuracy */
    /* (0.8, 1.5) dominates (0.7, 2): 4*0.5 + 3.5*0.3 + 1*0.1 = 3.15 */
    assert_int_equal(search_front_add(&f, 8, 0.8, 1.5), 1);
    assert_int_equal(f.n, 3);
    assert_true(f.p[0].id == 2 && f.p[1].id == 8 && f.p[2].id == 3);
    NEAR(search_front_hypervolume(&f, 5.0), 3.15);
    /* same energy, higher accuracy replaces */
    assert_int_equal(search_front_add(&f, 9, 0.6, 1.0), 1);
    assert_true(f.p[0].id == 9 && f.n == 3);
    /* one point dominating all */
    assert_int_equal(search_front_add(&f, 10, 0.95, 0.5), 1);
    assert_int_equal(f.n, 1);
    NEAR(search_front_hypervolume(&f, 5.0), 4.5 * 0.95);
    /* beyond the reference: on the front, but adds no volume */
    assert_int_equal(search_front_add(&f, 11, 0.99, 6.0), 1);
    NEAR(search_front_hypervolume(&f, 5.0), 4.5 * 0.95);
    NEAR(search_front_hypervolume(&f, 7.0), 6.5 * 0.95 + 1.0 * 0.04);
    /* points that cannot be placed */
    assert_int_equal(search_front_add(&f, 12, NAN, 1.0), 0);
    assert_int_equal(search_front_add(&f, 13, 0.99, -1.0), 0);
    assert_int_equal(search_front_add(&f, 14, 0.99, INFINITY), 0);
    search_front_free(&f);
}

/* Brute force: a point is on the front iff no other point weakly dominates it
 * (ties: the first of equal points stays); the hypervolume is the integral over
 * energy of the best accuracy reachable at or below that energy. */
static void front_agrees_with_brute_force(void **state)
{
    (void)state;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 8, 8);
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + (int)nas_pcg32_bounded(&rng, 60);
        double acc[64], en[64];
        search_front f;
        search_front_init(&f);
        for (int i = 0; i < n; i++) {
            /* coarse grids make ties likely */
            acc[i] = nas_pcg32_bounded(&rng, 20) / 20.0;
            en[i] = 0.25 * (1 + nas_pcg32_bounded(&rng, 24));
            assert_true(search_front_add(&f, i, acc[i], en[i]) >= 0);
        }
        int on = 0;
        for (int i = 0; i < n; i++) {
            int dominated = 0;
            for (int j = 0; j < n && !dominated; j++) {
                if (j == i)
                    continue;
                int weak = acc[j] >= acc[i] && en[j] <= en[i];
                int equal = acc[j] == acc[i] && en[j] == en[i];
                dominated = weak && (!equal || j < i);
            }
            int found = 0;
            for (int k = 0; k < f.n; k++)
                found |= f.p[k].id == i;
            assert_int_equal(found, !dominated);
            on += !dominated;
        }
        assert_int_equal(f.n, on);
        double ref = 5.0, hv = 0;
        /* integrate on the 0.25 grid: the step function changes only there */
        for (double x = 0.25; x < ref; x += 0.25) {
            double h = 0;
            for (int i = 0; i < n; i++)
                if (en[i] <= x && acc[i] > h)
                    h = acc[i];
            hv += 0.25 * h;
        }
        NEAR(search_front_hypervolume(&f, ref), hv);
        search_front_free(&f);
    }
}

static void front_growth_survives_allocation_failure(void **state)
{
    (void)state;
    search_front f;
    search_front_init(&f);
    nas_alloc_fail_at(1);
    assert_int_equal(search_front_add(&f, 1, 0.5, 1.0), -1);
    nas_alloc_fail_at(0);
    assert_int_equal(f.n, 0);
    assert_int_equal(search_front_add(&f, 1, 0.5, 1.0), 1);
    search_front_free(&f);
}

/* A stand-in predictor: energy 1 + the sum of the genes, latency twice that;
 * the first call after `fail_at` calls fails. */
static int predict_calls, fail_at = -1;
static nas_status fake_predict(void *ctx, const space_genome *g, search_prediction *out, nas_err *err)
{
    (void)ctx;
    if (predict_calls++ == fail_at)
        return nas_errf(err, NAS_EINTERNAL, "the fake predictor failed");
    double e = 1;
    for (int i = 0; i < g->n; i++)
        e += g->g[i];
    out->energy_mj = e;
    out->latency_ms = 2 * e;
    return NAS_OK;
}

/* The floor under a target is the lowest prediction over the sampled
 * networks: with enough samples of a small space it finds the all-zero
 * genome's 1 mJ; no target or no predictor gives none; a failing predictor is
 * the error. */
static void target_floor_is_the_lowest_prediction(void **state)
{
    (void)state;
    search_space sp;
    int card[3] = {2, 2, 2};
    nas_err err = {0};
    assert_int_equal(search_space_init(&sp, 3, card, &err), NAS_OK);
    search_objective o;
    double lo;
    search_objective_init(&o, SEARCH_TARGET_MJ, 0.5, 1);
    assert_int_equal(search_target_floor(&sp, &o, fake_predict, &sp, 200, 1, &lo, &err), NAS_OK);
    NEAR(lo, 1.0);
    search_objective_init(&o, SEARCH_TARGET_MS, 0.5, 1);
    assert_int_equal(search_target_floor(&sp, &o, fake_predict, &sp, 200, 1, &lo, &err), NAS_OK);
    NEAR(lo, 2.0);
    /* one sample: a genome's own prediction, at least the floor */
    assert_int_equal(search_target_floor(&sp, &o, fake_predict, &sp, 1, 7, &lo, &err), NAS_OK);
    assert_true(lo >= 2.0 && lo <= 8.0);
    search_objective_init(&o, SEARCH_TARGET_NONE, 0, 0);
    assert_int_equal(search_target_floor(&sp, &o, fake_predict, &sp, 200, 1, &lo, &err), NAS_OK);
    assert_true(isnan(lo));
    search_objective_init(&o, SEARCH_TARGET_MJ, 0.5, 1);
    assert_int_equal(search_target_floor(&sp, &o, NULL, NULL, 200, 1, &lo, &err), NAS_OK);
    assert_true(isnan(lo));
    predict_calls = 0;
    fail_at = 3;
    assert_int_equal(search_target_floor(&sp, &o, fake_predict, &sp, 200, 1, &lo, &err), NAS_EINTERNAL);
    assert_non_null(strstr(err.msg, "sampled network 4 of 200"));
    fail_at = -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(soft_reward_matches_hand_values),
        cmocka_unit_test(target_floor_is_the_lowest_prediction),
        cmocka_unit_test(hard_reward_matches_hand_values),
        cmocka_unit_test(front_keeps_only_nondominated_points),
        cmocka_unit_test(front_agrees_with_brute_force),
        cmocka_unit_test(front_growth_survives_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
