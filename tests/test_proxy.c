/* test_proxy.c — the zero-cost scores (evaluator/proxy.c): finite and
 * deterministic from one batch, bounded as Cauchy-Schwarz says snip must be,
 * the network left bit for bit as it was, and bad inputs refused by name. */
#include "tests/testutil.h"
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"
#include "space/space.h"

#include <math.h>

#define RES 28
#define NIMG 96

typedef struct {
    space_net arch;
    ev_net *net;
    ev_split split;
} fixture;

/* A network of the search space (as a search samples it) on random images. */
static int setup(void **state)
{
    fixture *f = nas_calloc(1, sizeof *f);
    space_config cfg;
    space_config_default(&cfg, RES, 1, 10);
    cfg.n_stages = 2;
    cfg.max_width = 0.5;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 11, 3);
    space_genome g;
    space_genome_sample(&cfg, &rng, &g);
    space_spec spec;
    nas_err err;
    assert_int_equal(space_genome_to_spec(&cfg, &g, &spec, &err), NAS_OK);
    assert_int_equal(space_resolve(&spec, &f->arch, &err), NAS_OK);
    ev_net_opts no = {.batch = 16, .training = 1, .threads = 1, .seed = 5};
    assert_int_equal(ev_net_create(&f->arch, &no, &f->net, &err), NAS_OK);
    f->split = (ev_split){.n = NIMG, .h = RES, .w = RES, .c = 1};
    f->split.images = nas_malloc(sizeof(float) * NIMG * RES * RES);
    f->split.labels = nas_malloc(NIMG);
    for (int i = 0; i < NIMG * RES * RES; i++)
        f->split.images[i] = (float)(2 * nas_pcg32_double(&rng) - 1);
    for (int i = 0; i < NIMG; i++)
        f->split.labels[i] = (uint8_t)nas_pcg32_bounded(&rng, 10);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ev_net_free(f->net);
    nas_free(f->split.images);
    nas_free(f->split.labels);
    nas_free(f);
    return 0;
}

static void scores_are_finite_deterministic_and_leave_the_net_alone(void **state)
{
    fixture *f = *state;
    size_t n;
    float *theta = evn_params(f->net, &n);
    float *before = nas_malloc(n * sizeof *before);
    memcpy(before, theta, n * sizeof *before);
    nas_err err;
    ev_zero_cost_scores a, b, c;
    assert_int_equal(ev_zero_cost(f->net, &f->split, 16, 1, &a, &err), NAS_OK);
    assert_memory_equal(theta, before, n * sizeof *before);   /* weights and BN statistics as they were */
    assert_int_equal(ev_zero_cost(f->net, &f->split, 16, 1, &b, &err), NAS_OK);
    assert_true(a.grad_norm == b.grad_norm && a.snip == b.snip && a.loss == b.loss);
    assert_true(isfinite(a.grad_norm) && a.grad_norm > 0);
    assert_true(isfinite(a.snip) && a.snip > 0);
    assert_int_equal(a.batch, 16);
    /* untrained, 10 classes: the loss is near log 10 */
    assert_true(a.loss > 0.5 * log(10) && a.loss < 3 * log(10));
    /* Cauchy-Schwarz: sum |theta g| <= ||theta|| ||g|| */
    double t2 = 0;
    for (size_t i = 0; i < n; i++)
        t2 += (double)before[i] * before[i];
    assert_true(a.snip <= sqrt(t2) * a.grad_norm * (1 + 1e-9));
    /* another seed, another batch: other scores */
    assert_int_equal(ev_zero_cost(f->net, &f->split, 16, 2, &c, &err), NAS_OK);
    assert_true(c.grad_norm != a.grad_norm);
    nas_free(before);
}

static void bad_inputs_are_refused_by_name(void **state)
{
    fixture *f = *state;
    nas_err err;
    ev_zero_cost_scores s;
    assert_int_equal(ev_zero_cost(f->net, &f->split, 0, 1, &s, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "batch 0"));
    assert_int_equal(ev_zero_cost(f->net, &f->split, 17, 1, &s, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "batch 17"));
    ev_split few = f->split;
    few.n = 8;
    assert_int_equal(ev_zero_cost(f->net, &few, 16, 1, &s, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "8 training images"));
    ev_split wrong = f->split;
    wrong.h = wrong.w = 32;
    wrong.n = NIMG * RES * RES / (32 * 32);
    assert_int_equal(ev_zero_cost(f->net, &wrong, 16, 1, &s, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "32x32x1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(scores_are_finite_deterministic_and_leave_the_net_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_inputs_are_refused_by_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
