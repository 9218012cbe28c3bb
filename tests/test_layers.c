/* test_layers.c — the flat layer list (space/layers.c), the one description
 * of a network: a preset's op counts and sums against the published figures,
 * shapes that chain from op to op, and every consumer agreeing with it (the
 * cost model's rows and totals, the predictor's per-unit costs, the
 * evaluator's parameter tensors). */
#include "tests/testutil.h"
#include "space/space.h"
#include "predictor/pred.h"
#include "evaluator/ev.h"

#include <math.h>

static void resolve_preset(const char *name, space_net *n)
{
    space_spec s;
    nas_err e;
    assert_int_equal(space_preset(name, &s, &e), NAS_OK);
    assert_int_equal(space_resolve(&s, n, &e), NAS_OK);
}

/* Resolves a preset and builds its layer list. */
static void build_preset(const char *name, space_net *n, space_layers *L)
{
    nas_err e;
    resolve_preset(name, n);
    assert_int_equal(space_layers_build(n, L, &e), NAS_OK);
}

static void sum_ops(const space_layers *L, double *macs, double *params)
{
    *macs = *params = 0;
    for (int i = 0; i < L->n; i++) {
        *macs += L->op[i].macs;
        *params += L->op[i].params;
    }
}

static int count_kind(const space_layers *L, space_op_kind k)
{
    int c = 0;
    for (int i = 0; i < L->n; i++)
        c += L->op[i].kind == k;
    return c;
}

/* MobileNetV2 (Sandler et al. 2018, Table 2; torchvision's mobilenet_v2):
 * 52 convolutions (stem, 16 expansions, 17 depthwise, 17 projections, head),
 * each with its BN, 10 residual adds, one classifier; 3,504,872 parameters
 * and about 300M multiply-adds at 224. */
static void mobilenetv2_layer_list_matches_the_paper(void **state)
{
    (void)state;
    static space_net n;
    space_layers L;
    build_preset("mobilenetv2", &n, &L);
    assert_int_equal(count_kind(&L, SPACE_OP_CONV), 35);
    assert_int_equal(count_kind(&L, SPACE_OP_DWCONV), 17);
    assert_int_equal(count_kind(&L, SPACE_OP_BN), 52);
    assert_int_equal(count_kind(&L, SPACE_OP_ACT), 35);   /* ReLU6 after all but the projections */
    assert_int_equal(count_kind(&L, SPACE_OP_ADD), 10);
    assert_int_equal(count_kind(&L, SPACE_OP_SE), 0);
    assert_int_equal(count_kind(&L, SPACE_OP_POOL), 1);
    assert_int_equal(count_kind(&L, SPACE_OP_LINEAR), 1);
    assert_int_equal(count_kind(&L, SPACE_OP_DROPOUT), 1);
    double macs, params;
    sum_ops(&L, &macs, &params);
    assert_true(params == 3504872.0);
    assert_true(fabs(macs / 300e6 - 1) < 0.02);
    /* the first op reads the image, the last writes the logits */
    assert_int_equal(L.op[0].in, -1);
    assert_int_equal(L.op[0].in_hw, 224);
    assert_int_equal(L.op[0].out_hw, 112);
    assert_string_equal(L.op[L.n - 1].name, "classifier");
    assert_int_equal(L.op[L.n - 1].out_ch, 1000);
    space_layers_free(&L);
}

/* EfficientNet-B0: 16 blocks, each with SE; 5.3M parameters, 0.39B FLOPs. */
static void efficientnet_b0_has_se_in_every_block(void **state)
{
    (void)state;
    static space_net n;
    space_layers L;
    build_preset("efficientnet-b0", &n, &L);
    assert_int_equal(count_kind(&L, SPACE_OP_SE), 16);
    assert_int_equal(count_kind(&L, SPACE_OP_DWCONV), 16);
    double macs, params;
    sum_ops(&L, &macs, &params);
    for (int i = 0; i < L.n; i++) {
        if (L.op[i].kind == SPACE_OP_SE) {
            assert_int_equal(L.op[i].act, SPACE_ACT_SWISH);
            assert_int_equal(L.op[i].gate, SPACE_GATE_SIGMOID);
            assert_true(L.op[i].mid_ch >= 1);
        }
    }
    assert_true(fabs(params / 5.3e6 - 1) < 0.02);
    assert_true(fabs(macs / 0.39e9 - 1) < 0.02);
    space_layers_free(&L);
}

/* Every op reads what the op it names writes: channels and map side chain,
 * a residual adds two maps of one shape, and units follow each other. */
static void check_chain(const space_net *n, const space_layers *L)
{
    int unit = 0;
    for (int i = 0; i < L->n; i++) {
        const space_op *o = &L->op[i];
        assert_true(o->in < i && o->in >= -1);
        int ch = o->in < 0 ? n->in_ch : L->op[o->in].out_ch;
        int hw = o->in < 0 ? n->resolution : L->op[o->in].out_hw;
        if (ch != o->in_ch || hw != o->in_hw)
            fail_msg("%s reads %dx%d from op %d, which writes %dx%d", o->name, o->in_ch, o->in_hw, o->in,
                     ch, hw);
        if (o->kind == SPACE_OP_ADD) {
            const space_op *r = &L->op[o->in2];
            assert_int_equal(r->out_ch, o->out_ch);
            assert_int_equal(r->out_hw, o->out_hw);
            assert_int_not_equal(r->unit, o->unit);   /* the block's input, not one of its ops */
        } else {
            assert_int_equal(o->in2, -1);
        }
        if (o->kind == SPACE_OP_DWCONV)
            assert_int_equal(o->groups, o->in_ch);
        assert_true(o->unit == unit || o->unit == unit + 1);
        unit = o->unit;
    }
    assert_int_equal(unit, space_unit_count(n) - 1);
}

/* The cost model walks the list: its totals are the list's sums. */
static void check_cost_agrees(const space_net *n, const space_layers *L)
{
    space_cost c;
    space_cost_of(n, NULL, 0, &c);
    double macs, params;
    int weighted = 0;
    sum_ops(L, &macs, &params);
    for (int i = 0; i < L->n; i++) {
        space_op_kind k = L->op[i].kind;
        weighted += k == SPACE_OP_CONV || k == SPACE_OP_DWCONV || k == SPACE_OP_LINEAR;
    }
    assert_true(c.macs == macs);
    assert_true(c.params == params);
    assert_int_equal(c.depth, weighted);
}

/* The predictor's per-unit costs are the list's, unit by unit. */
static void check_features_agree(const space_net *n, const space_layers *L)
{
    for (int u = 0; u < pred_unit_count(n); u++) {
        double m, q, macs = 0, params = 0;
        pred_unit_cost(n, u, &m, &q);
        for (int i = 0; i < L->n; i++)
            if (L->op[i].unit == u) {
                macs += L->op[i].macs;
                params += L->op[i].params;
            }
        if (m != macs || q != params)
            fail_msg("unit %d: predictor %.0f MACs %.0f params, layer list %.0f, %.0f", u, m, q, macs,
                     params);
    }
}

/* The number of values of the evaluator's tensor `name`, -1 when it has none. */
static long tensor_size(const ev_tensor *t, int nt, const char *name)
{
    for (int i = 0; i < nt; i++)
        if (!strcmp(t[i].name, name)) {
            long v = 1;
            for (int d = 0; d < t[i].ndim; d++)
                v *= t[i].shape[d];
            return v;
        }
    return -1;
}

static void expect_tensor(const ev_tensor *t, int nt, const char *op, const char *part, long want,
                          int *seen)
{
    char nm[64];
    snprintf(nm, sizeof nm, "%s%s", op, part);
    long got = tensor_size(t, nt, nm);
    if (got != want)
        fail_msg("evaluator tensor %s: %ld values, the layer list says %ld", nm, got, want);
    (*seen)++;
}

/* The evaluator lays out exactly the tensors the list's ops need, with the
 * sizes the list states, and its trainable values add up to the list's
 * parameters (BN's running statistics are buffers, not parameters). */
static void check_evaluator_agrees(const space_net *n, const space_layers *L)
{
    ev_net *net;
    nas_err e;
    ev_net_opts o = {.batch = 1, .training = 0, .threads = 1, .seed = 1};
    assert_int_equal(ev_net_create(n, &o, &net, &e), NAS_OK);
    static ev_tensor t[SPACE_MAX_BLOCKS * 20 + 32];
    int nt = ev_net_tensors(net, t, (int)(sizeof t / sizeof t[0]));
    int seen = 0;
    double params = 0, values = 0;
    for (int i = 0; i < L->n; i++) {
        const space_op *op = &L->op[i];
        long in = op->in_ch, out = op->out_ch, k2 = (long)op->kernel * op->kernel;
        params += op->params;
        switch (op->kind) {
        case SPACE_OP_CONV:
        case SPACE_OP_DWCONV:
            expect_tensor(t, nt, op->name, ".conv", k2 * (in / op->groups) * out, &seen);
            break;
        case SPACE_OP_BN:
            expect_tensor(t, nt, op->name, ".gamma", out, &seen);
            expect_tensor(t, nt, op->name, ".beta", out, &seen);
            expect_tensor(t, nt, op->name, ".running_mean", out, &seen);
            expect_tensor(t, nt, op->name, ".running_var", out, &seen);
            break;
        case SPACE_OP_SE:
            expect_tensor(t, nt, op->name, ".reduce.w", in * op->mid_ch, &seen);
            expect_tensor(t, nt, op->name, ".reduce.b", op->mid_ch, &seen);
            expect_tensor(t, nt, op->name, ".expand.w", op->mid_ch * out, &seen);
            expect_tensor(t, nt, op->name, ".expand.b", out, &seen);
            break;
        case SPACE_OP_LINEAR:
            expect_tensor(t, nt, op->name, ".w", in * out, &seen);
            expect_tensor(t, nt, op->name, ".b", out, &seen);
            break;
        default:
            break;
        }
    }
    assert_int_equal(seen, nt);   /* no tensor the list does not name */
    for (int i = 0; i < nt; i++) {
        if (strstr(t[i].name, ".running_"))
            continue;
        double v = 1;
        for (int d = 0; d < t[i].ndim; d++)
            v *= t[i].shape[d];
        values += v;
    }
    assert_true(values == params);
    ev_net_free(net);
}

static void check_all(const space_net *n, const space_layers *L, int with_evaluator)
{
    check_chain(n, L);
    check_cost_agrees(n, L);
    check_features_agree(n, L);
    if (with_evaluator)
        check_evaluator_agrees(n, L);
}

static void every_preset_and_random_genome_chains_and_agrees(void **state)
{
    (void)state;
    static space_net n;
    nas_err e;
    space_layers L;
    for (int p = 0; p < space_preset_count(); p++) {
        build_preset(space_preset_name(p), &n, &L);
        check_all(&n, &L, n.resolution <= 240);   /* the larger EfficientNets take long to build */
        space_layers_free(&L);
    }
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 14, 3);
    const int res[2] = {28, 32};
    for (int i = 0; i < 300; i++) {
        space_config cfg;
        space_config_default(&cfg, res[i % 2], i % 2 ? 3 : 1, 10);
        space_genome g;
        space_spec s;
        space_genome_sample(&cfg, &rng, &g);
        assert_int_equal(space_genome_to_spec(&cfg, &g, &s, &e), NAS_OK);
        assert_int_equal(space_resolve(&s, &n, &e), NAS_OK);
        assert_int_equal(space_layers_build(&n, &L, &e), NAS_OK);
        check_all(&n, &L, i % 10 == 0);
        space_layers_free(&L);
    }
}

/* The per-unit view and the whole list are the same ops. */
static void unit_ops_concatenate_to_the_list(void **state)
{
    (void)state;
    static space_net n;
    space_layers L;
    build_preset("mobilenetv3-small", &n, &L);
    int first = 0;
    for (int u = 0; u < space_unit_count(&n); u++) {
        space_op ops[SPACE_UNIT_MAX_OPS];
        int k = space_unit_ops(&n, u, first, ops);
        assert_true(k >= 1 && k <= SPACE_UNIT_MAX_OPS);
        assert_memory_equal(ops, L.op + first, sizeof(space_op) * (size_t)k);
        first += k;
    }
    assert_int_equal(first, L.n);
    /* MobileNetV3's head: conv, BN, h-swish, pool, fc, h-swish, dropout, classifier */
    assert_int_equal(L.op[L.n - 4].kind, SPACE_OP_LINEAR);
    assert_string_equal(L.op[L.n - 4].name, "fc");
    assert_int_equal(L.op[L.n - 3].act, SPACE_ACT_HSWISH);
    space_layers_free(&L);
}

static void out_of_memory_is_an_error(void **state)
{
    (void)state;
    static space_net n;
    resolve_preset("efficientnet-b0", &n);
    space_layers L;
    nas_err e;
    nas_alloc_fail_at(1);
    nas_status st = space_layers_build(&n, &L, &e);
    nas_alloc_fail_at(0);
    assert_int_equal(st, NAS_ENOMEM);
    assert_non_null(strstr(e.msg, "layer list"));
    assert_null(L.op);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mobilenetv2_layer_list_matches_the_paper),
        cmocka_unit_test(efficientnet_b0_has_se_in_every_block),
        cmocka_unit_test(every_preset_and_random_genome_chains_and_agrees),
        cmocka_unit_test(unit_ops_concatenate_to_the_list),
        cmocka_unit_test(out_of_memory_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
