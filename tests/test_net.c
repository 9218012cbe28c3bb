/* test_net.c — whole networks: gradients of the loss against finite
 * differences for every parameter tensor (blocks with and without expansion,
 * SE and residual, kernels 3/5/7, strides 1/2, each activation, head, fc and
 * dropout), the memory plan and its limit, injected allocation failures, and
 * inference-only nets agreeing with trainable ones. */
#include "tests/testutil.h"
#include "tests/gradcheck.h"
#include "tests/nethelp.h"
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"

#include <math.h>

typedef struct {
    ev_net *net;
    const float *x;
    const uint8_t *labels;
    int B;
} step_t;

static double net_loss(void *c)
{
    step_t *s = c;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 99, 1);   /* the same dropout mask every time */
    return evn_train_step(s->net, s->x, s->labels, s->B, 0.1f, &rng, NULL);
}

static void net_grad(void *c) { net_loss(c); }

static void check_net_gradients(const space_net *arch, const char *what, double tol)
{
    ev_net_opts o = {.batch = 4, .training = 1, .threads = 1, .seed = 5};
    ev_net *net = NULL;
    nas_err err;
    assert_int_equal(ev_net_create(arch, &o, &net, &err), NAS_OK);
    int B = 4;
    size_t img = (size_t)arch->resolution * arch->resolution * arch->in_ch;
    float *x = nas_malloc(sizeof(float) * B * img);
    uint8_t labels[4];
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 3, 3);
    for (size_t i = 0; i < B * img; i++)
        x[i] = (float)(2 * nas_pcg32_double(&rng) - 1);
    for (int b = 0; b < B; b++)
        labels[b] = (uint8_t)nas_pcg32_bounded(&rng, arch->num_classes);
    /* Larger classifier weights than init's N(0, 0.01), so that gradients
     * reach the early layers at magnitudes fp32 differences can see. */
    ev_tensor ts[256];
    int nt = ev_net_tensors(net, ts, 256);
    assert_true(nt < 256);
    float *params = evn_params(net, NULL), *grads = evn_grads(net);
    for (int i = 0; i < nt; i++)
        if (!strcmp(ts[i].name, "classifier.w") || !strcmp(ts[i].name, "fc.w")) {
            float *p = (float *)ts[i].data;
            size_t n = (size_t)ts[i].shape[0] * ts[i].shape[1];
            for (size_t j = 0; j < n; j++)
                p[j] = (float)(2 * nas_pcg32_double(&rng) - 1);
        }
    gc_tensor gt[256];
    int ng = 0;
    for (int i = 0; i < nt; i++) {
        if (strstr(ts[i].name, "running_"))
            continue;
        size_t n = 1;
        for (int d = 0; d < ts[i].ndim; d++)
            n *= (size_t)ts[i].shape[d];
        float *p = (float *)ts[i].data;
        gt[ng++] = (gc_tensor){ts[i].name, p, grads + (p - params), n};
    }
    step_t s = {net, x, labels, B};
    double e = gc_check(&s, net_loss, net_grad, gt, ng, getenv("GC_H") ? (float)atof(getenv("GC_H")) : 1e-3f, 12, 11, what, 1e-2);
    fprintf(stderr, "  %s: %d tensors, worst relative error %.2e\n", what, ng, e);
    assert_true(e < tol);
    nas_free(x);
    ev_net_free(net);
}

static void network_gradients_smooth_activations(void **state)
{
    (void)state;
    space_net a;
    /* dw-separable residual with SE; expand + stride 2 + k5; expand + k7 residual with SE */
    nh_block b[3] = {{8, 8, 3, 1, 2, SPACE_ACT_SWISH},
                     {24, 12, 5, 2, 0, SPACE_ACT_SWISH},
                     {36, 12, 7, 1, 4, SPACE_ACT_SWISH}};
    nh_net(&a, 8, 3, 5, 8, 1, SPACE_ACT_SWISH, b, 3, 16, 0, 0.2);
    a.head_act = SPACE_ACT_SWISH;
    check_net_gradients(&a, "net swish/SE/residual/head/dropout", 2e-2);
}

static void network_gradients_kinked_activations(void **state)
{
    (void)state;
    space_net a;
    nh_block b[3] = {{18, 10, 3, 2, 3, SPACE_ACT_HSWISH},
                     {30, 10, 5, 1, 0, SPACE_ACT_RELU6},
                     {20, 14, 7, 2, 5, SPACE_ACT_RELU}};
    nh_net(&a, 9, 1, 4, 6, 2, SPACE_ACT_HSWISH, b, 3, 0, 12, 0);
    a.se_gate = SPACE_GATE_HSIGMOID;
    /* kinks: a step of 1e-3 on a stem weight moves many pixels across ReLU/ReLU6
     * corners, so differences are a few % off where the smooth net is within 1% */
    check_net_gradients(&a, "net hswish/relu6/relu, hsigmoid gate, fc", 0.1);
}

static void small_net(space_net *a)
{
    nh_block b[2] = {{16, 16, 3, 1, 4, SPACE_ACT_RELU6}, {48, 24, 5, 2, 0, SPACE_ACT_RELU6}};
    nh_net(a, 16, 3, 10, 16, 2, SPACE_ACT_RELU6, b, 2, 64, 0, 0.1);
}

static void memory_plan_and_limit(void **state)
{
    (void)state;
    space_net a;
    small_net(&a);
    ev_memplan p, pi;
    nas_err err;
    assert_int_equal(ev_net_plan(&a, 32, 1, &p, &err), NAS_OK);
    assert_int_equal(ev_net_plan(&a, 32, 0, &pi, &err), NAS_OK);
    assert_true(p.params > 0 && p.grads == p.params && p.optim == p.params);
    assert_true(pi.grads == 0 && pi.optim == 0 && pi.acts < p.acts);
    assert_true(p.total >= p.params + p.grads + p.optim + p.acts + p.scratch);
    /* activations grow with the batch */
    ev_memplan p2;
    assert_int_equal(ev_net_plan(&a, 64, 1, &p2, &err), NAS_OK);
    assert_true(p2.acts > p.acts * 19 / 10 && p2.params == p.params);

    ev_net_opts o = {.batch = 32, .training = 1, .threads = 1, .seed = 1, .mem_limit = p.total - 1};
    ev_net *net = NULL;
    size_t live = nas_alloc_live();
    assert_int_equal(ev_net_create(&a, &o, &net, &err), NAS_ENOMEM);
    assert_null(net);
    assert_non_null(strstr(err.msg, "over the memory limit"));
    assert_non_null(strstr(err.msg, "activations"));
    assert_int_equal(nas_alloc_live(), live);
    o.mem_limit = p.total;
    assert_int_equal(ev_net_create(&a, &o, &net, &err), NAS_OK);
    ev_net_free(net);

    /* a malformed net is refused with the field named */
    a.blocks[1].in_ch = 7;
    assert_int_equal(ev_net_create(&a, &o, &net, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "blocks[1]"));
}

static void allocation_failures_are_reported(void **state)
{
    (void)state;
    space_net a;
    small_net(&a);
    ev_net_opts o = {.batch = 8, .training = 1, .threads = 1, .seed = 1};
    nas_err err;
    size_t live = nas_alloc_live();
    int failed = 0;
    for (int k = 1; k <= 8; k++) {
        ev_net *net = NULL;
        nas_alloc_fail_at(k);
        nas_status st = ev_net_create(&a, &o, &net, &err);
        nas_alloc_fail_at(0);
        if (st == NAS_OK) {
            ev_net_free(net);
        } else {
            failed++;
            assert_int_equal(st, NAS_ENOMEM);
            assert_null(net);
        }
        assert_int_equal(nas_alloc_live(), live);
    }
    assert_int_equal(failed, 6);   /* header, params, acts, scratch, grads, momentum */
}

static void inference_net_agrees_with_training_net(void **state)
{
    (void)state;
    space_net a;
    small_net(&a);
    nas_err err;
    ev_net *tn = NULL, *in = NULL;
    ev_net_opts o = {.batch = 6, .training = 1, .threads = 2, .seed = 42};
    assert_int_equal(ev_net_create(&a, &o, &tn, &err), NAS_OK);
    o.training = 0;
    assert_int_equal(ev_net_create(&a, &o, &in, &err), NAS_OK);
    size_t np, np2;
    float *pt = evn_params(tn, &np), *pi = evn_params(in, &np2);
    assert_int_equal(np, np2);
    assert_memory_equal(pt, pi, np * sizeof(float));   /* same seed, same init */
    /* train a step so that running statistics are not the initial ones */
    float x[6 * 16 * 16 * 3];
    uint8_t lab[6] = {0, 1, 2, 3, 4, 5};
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 1, 1);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)nas_pcg32_double(&rng);
    double loss = evn_train_step(tn, x, lab, 6, 0, &rng, NULL);
    assert_true(isfinite(loss) && loss > 1.0);
    evn_sgd(tn, 0.1f, 0.9f, 1e-4f);
    memcpy(pi, pt, np * sizeof(float));
    float l1[60], l2[60];
    assert_int_equal(ev_net_infer(tn, x, 6, l1, &err), NAS_OK);
    assert_int_equal(ev_net_infer(in, x, 6, l2, &err), NAS_OK);
    assert_memory_equal(l1, l2, sizeof l1);
    /* a smaller batch gives the same logits for the images it has */
    assert_int_equal(ev_net_infer(in, x, 2, l2, &err), NAS_OK);
    assert_memory_equal(l1, l2, 20 * sizeof(float));
    assert_int_equal(ev_net_infer(in, x, 7, l2, &err), NAS_EINVAL);
    ev_net_free(tn);
    ev_net_free(in);
}

static void tensors_are_named_with_layouts(void **state)
{
    (void)state;
    space_net a;
    small_net(&a);
    nas_err err;
    ev_net *net = NULL;
    ev_net_opts o = {.batch = 2, .training = 0, .threads = 1, .seed = 7};
    assert_int_equal(ev_net_create(&a, &o, &net, &err), NAS_OK);
    ev_tensor ts[64];
    int n = ev_net_tensors(net, ts, 64);
    /* stem conv+bn(4), b0: dw+bn, se 4, project+bn = 14, b1: expand+bn, dw+bn, project+bn = 15,
     * head conv+bn = 5, classifier 2 */
    assert_int_equal(n, 5 + 14 + 15 + 5 + 2);
    assert_string_equal(ts[0].name, "stem.conv");
    assert_string_equal(ts[0].layout, "KKIO");
    assert_int_equal(ts[0].shape[2], 3);
    assert_int_equal(ts[0].shape[3], 16);
    int found_dw = 0, found_se = 0;
    double var = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(ts[i].name, "b1.dw.conv")) {
            found_dw = 1;
            assert_string_equal(ts[i].layout, "KKC");
            assert_int_equal(ts[i].shape[0], 5);
            assert_int_equal(ts[i].shape[2], 48);
        }
        if (!strcmp(ts[i].name, "b0.se.reduce.w")) {
            found_se = 1;
            assert_int_equal(ts[i].shape[0], 16);
            assert_int_equal(ts[i].shape[1], 4);
        }
        if (!strcmp(ts[i].name, "b1.expand.conv"))   /* Kaiming fan-out: var 2 / 48 */
            for (int j = 0; j < 16 * 48; j++)
                var += ts[i].data[j] * ts[i].data[j] / (16 * 48);
    }
    assert_true(found_dw && found_se);
    assert_true(fabs(var - 2.0 / 48) < 0.2 * 2.0 / 48);
    ev_net_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(network_gradients_smooth_activations),
        cmocka_unit_test(network_gradients_kinked_activations),
        cmocka_unit_test(memory_plan_and_limit),
        cmocka_unit_test(allocation_failures_are_reported),
        cmocka_unit_test(inference_net_agrees_with_training_net),
        cmocka_unit_test(tensors_are_named_with_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
