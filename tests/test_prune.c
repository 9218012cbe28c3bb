/* test_prune.c — structured pruning (evaluator/prune.c) and `nas prune`
 * (the spec's per-block exp_ch overrides it writes: test_space.c).
 *
 * Keep 1 changes nothing (logits within 1e-5, with non-trivial BN statistics);
 * keep < 1 computes what the original does once the removed channels' outgoing
 * weights (project conv rows, SE reduce rows) are zeroed there, which checks
 * every gathered tensor; the ranking keeps exactly the largest L1 norms of a
 * hand-set expand conv; the pruned spec validates and its MACs fall by the
 * hand count of the removed channels; the MAC target
 * gives the largest fraction under it; and the CLI refuses bad options. */
#include "tests/testutil.h"
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"
#include "tests/netrand.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 16x16x1, 10 classes: a block without expansion, a stage of two expanded
 * blocks with SE, and a 5x5 hswish block with SE. Derived widths: 8, 48, 96, 64. */
static const char *SPEC_JSON =
    "{\"name\": \"tiny\", \"resolution\": 16, \"in_channels\": 1, \"num_classes\": 10,"
    " \"stem\": {\"channels\": 8, \"kernel\": 3, \"stride\": 1, \"act\": \"relu6\"},"
    " \"stages\": [{\"kernel\": 3, \"expand\": 1, \"channels\": 8},"
    "  {\"kernel\": 3, \"expand\": 6, \"channels\": 16, \"repeats\": 2, \"stride\": 2, \"se\": 0.25, \"act\": \"swish\"},"
    "  {\"kernel\": 5, \"expand\": 4, \"channels\": 24, \"stride\": 2, \"se\": 0.25, \"act\": \"hswish\"}],"
    " \"head\": {\"channels\": 32, \"act\": \"hswish\"}, \"dropout\": 0}";

static void tiny(space_spec *s, space_net *a)
{
    nas_err err;
    assert_int_equal(space_spec_from_json(SPEC_JSON, "tiny", s, &err), NAS_OK);
    assert_int_equal(space_resolve(s, a, &err), NAS_OK);
}

static ev_net *make_net(const space_net *a, int batch, uint64_t seed)
{
    ev_net_opts o = {.batch = batch, .training = 0, .threads = 1, .seed = seed};
    ev_net *n = NULL;
    nas_err err;
    assert_int_equal(ev_net_create(a, &o, &n, &err), NAS_OK);
    nas_pcg32 r;
    nas_pcg32_seed(&r, seed, 7);
    assert_true(nr_randomise_stats(n, &r) > 0);
    return n;
}

static const ev_tensor *find(ev_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return &t[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

static void logits_of(ev_net *n, const float *x, int B, float *out)
{
    nas_err err;
    assert_int_equal(ev_net_infer(n, x, B, out, &err), NAS_OK);
}

static float *random_input(int B, int side, uint64_t seed)
{
    size_t n = (size_t)B * side * side;
    float *x = malloc(n * sizeof *x);
    nas_pcg32 r;
    nas_pcg32_seed(&r, seed, 1);
    for (size_t i = 0; i < n; i++)
        x[i] = nr_urand(&r, -2.0f, 2.0f);
    return x;
}

static void assert_close(const float *a, const float *b, int n, float tol)
{
    for (int i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > tol)
            fail_msg("logit %d: %.7g vs %.7g", i, a[i], b[i]);
}

/* ---- the pruned spec (the exp_ch overrides themselves: test_space.c) ---- */

/* MACs of the pruned spec: the cost model's, and less by the hand count of
 * every removed channel (expand, depthwise, both SE linears, project). */
static void pruned_spec_macs(void **state)
{
    (void)state;
    space_spec s, p;
    space_net a, pa;
    nas_err err;
    tiny(&s, &a);
    ev_prune_opts o;
    ev_prune_opts_default(&o);
    o.keep = 0.5;
    assert_int_equal(ev_prune_spec(&s, &o, &p, &err), NAS_OK);
    assert_int_equal(space_validate(&p, &err), NAS_OK);
    assert_int_equal(space_resolve(&p, &pa, &err), NAS_OK);
    int want[4] = {8, 24, 48, 32};
    double removed = 0;
    for (int j = 0; j < 4; j++) {
        const space_block *b = &a.blocks[j];
        assert_int_equal(pa.blocks[j].exp_ch, want[j]);
        double d = b->exp_ch - want[j];
        removed += d * ((double)b->in_hw * b->in_hw * b->in_ch + (double)b->out_hw * b->out_hw * b->kernel * b->kernel +
                        2.0 * b->se_ch + (double)b->out_hw * b->out_hw * b->out_ch);
    }
    space_cost c0, c1;
    space_cost_of(&a, NULL, 0, &c0);
    space_cost_of(&pa, NULL, 0, &c1);
    assert_true(c1.macs < c0.macs);
    assert_true(fabs(c0.macs - c1.macs - removed) <= 1e-6);

    /* keep 1: the spec unchanged; a width landing on the input width steps up */
    o.keep = 1.0;
    assert_int_equal(ev_prune_spec(&s, &o, &p, &err), NAS_OK);
    assert_memory_equal(p.exp_ch, s.exp_ch, sizeof s.exp_ch);
    o.keep = 16.0 / 96;   /* b2: 16 = its input width -> 24 */
    assert_int_equal(ev_prune_spec(&s, &o, &p, &err), NAS_OK);
    assert_int_equal(p.exp_ch[2], 24);
    assert_int_equal(p.exp_ch[1], 16);   /* 48/6 = 8, b1's input width too -> 16 */
    assert_int_equal(p.exp_ch[3], 8);    /* 64/6 -> 8, the floor (b3's input is 16) */
    o.keep = 0;
    assert_int_equal(ev_prune_spec(&s, &o, &p, &err), NAS_EINVAL);
}

static void target_macs(void **state)
{
    (void)state;
    space_spec s, p;
    space_net a, pa;
    nas_err err;
    tiny(&s, &a);
    space_cost c0, c;
    space_cost_of(&a, NULL, 0, &c0);
    ev_prune_opts o;
    ev_prune_opts_default(&o);
    double keep;
    assert_int_equal(ev_prune_keep_for_macs(&s, &o, c0.macs, &keep, &err), NAS_OK);
    assert_true(keep == 1.0);
    double target = 0.6 * c0.macs;
    assert_int_equal(ev_prune_keep_for_macs(&s, &o, target, &keep, &err), NAS_OK);
    o.keep = keep;
    assert_int_equal(ev_prune_spec(&s, &o, &p, &err), NAS_OK);
    assert_int_equal(space_resolve(&p, &pa, &err), NAS_OK);
    space_cost_of(&pa, NULL, 0, &c);
    assert_true(c.macs <= target);
    o.keep = fmin(1.0, keep + 1e-6);   /* a hair more is over it: the largest */
    assert_int_equal(ev_prune_spec(&s, &o, &p, &err), NAS_OK);
    assert_int_equal(space_resolve(&p, &pa, &err), NAS_OK);
    space_cost_of(&pa, NULL, 0, &c);
    assert_true(c.macs > target);
    assert_int_equal(ev_prune_keep_for_macs(&s, &o, 1000, &keep, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "cannot be met"));
}

/* ---- the pruned network ------------------------------------------------- */

static ev_net *prune(ev_net *n, const space_spec *s, double keep, space_spec *ps)
{
    ev_prune_opts o;
    ev_prune_opts_default(&o);
    o.keep = keep;
    ev_net_opts no = {.batch = 4, .training = 0, .threads = 1, .seed = 9};
    ev_net *p = NULL;
    nas_err err;
    nas_status st = ev_prune_net(n, s, &o, &no, ps, &p, &err);
    if (st)
        fail_msg("%s", err.msg);
    return p;
}

static void keep_all_same_function(void **state)
{
    (void)state;
    space_spec s, ps;
    space_net a;
    tiny(&s, &a);
    ev_net *n = make_net(&a, 4, 3);
    ev_net *p = prune(n, &s, 1.0, &ps);
    float *x = random_input(4, 16, 5), y0[40], y1[40];
    logits_of(n, x, 4, y0);
    logits_of(p, x, 4, y1);
    assert_close(y0, y1, 40, 1e-5f);
    float spread = 0;
    for (int i = 0; i < 40; i++)
        spread = fmaxf(spread, fabsf(y0[i] - y0[0]));
    assert_true(spread > 1e-2f);   /* logits that differ: the comparison means something */
    free(x);
    ev_net_free(p);
    ev_net_free(n);
}

/* Zero the removed channels' outgoing weights in the original; it then computes
 * what the pruned net does, whose every tensor was gathered from it. */
static void pruned_same_as_zeroed(void **state)
{
    (void)state;
    space_spec s, ps;
    space_net a;
    nas_err err;
    tiny(&s, &a);
    ev_net *n = make_net(&a, 4, 11);
    ev_net *p = prune(n, &s, 0.5, &ps);
    const space_net *pa = ev_net_arch(p);
    ev_tensor t[256];
    int nt = ev_net_tensors(n, t, 256);
    for (int j = 0; j < a.n_blocks; j++) {
        const space_block *b = &a.blocks[j];
        int E = b->exp_ch, k = pa->blocks[j].exp_ch, kept[256], keepme[256] = {0};
        assert_int_equal(ev_prune_rank(n, j, k, kept, &err), NAS_OK);
        for (int e = 0; e < k; e++)
            keepme[kept[e]] = 1;
        char nm[48];
        snprintf(nm, sizeof nm, "b%d.project.conv", j);
        float *w = nr_param(n, find(t, nt, nm));
        for (int e = 0; e < E; e++)
            if (!keepme[e])
                for (int o = 0; o < b->out_ch; o++)
                    w[(size_t)e * b->out_ch + o] = 0;
        if (b->se_ch > 0) {
            snprintf(nm, sizeof nm, "b%d.se.reduce.w", j);
            w = nr_param(n, find(t, nt, nm));
            for (int e = 0; e < E; e++)
                if (!keepme[e])
                    for (int m = 0; m < b->se_ch; m++)
                        w[(size_t)e * b->se_ch + m] = 0;
        }
    }
    ev_net_free(p);
    p = prune(n, &s, 0.5, &ps);   /* from the zeroed net: the ranking only reads expand convs */
    float *x = random_input(4, 16, 6), y0[40], y1[40];
    logits_of(n, x, 4, y0);
    logits_of(p, x, 4, y1);
    assert_close(y0, y1, 40, 1e-4f);
    free(x);
    ev_net_free(p);
    ev_net_free(n);
}

/* Block 1's expand conv set by hand: channel e's column is (e * 37) mod 48
 * times a sign, so the L1 order is known; the 24 kept are those with the
 * largest (e * 37) mod 48, and the pruned net's tensors are their slices. */
static void keeps_largest_l1(void **state)
{
    (void)state;
    space_spec s, ps;
    space_net a;
    nas_err err;
    tiny(&s, &a);
    ev_net *n = make_net(&a, 4, 21);
    ev_tensor t[256];
    int nt = ev_net_tensors(n, t, 256);
    const ev_tensor *we = find(t, nt, "b1.expand.conv");   /* [1,1,8,48] */
    float *w = nr_param(n, we);
    int I = we->shape[2], E = we->shape[3];
    assert_int_equal(E, 48);
    for (int ci = 0; ci < I; ci++)
        for (int e = 0; e < E; e++)
            w[ci * E + e] = (float)((e * 37) % 48) * (ci % 2 ? -0.01f : 0.01f);
    int kept[48];
    assert_int_equal(ev_prune_rank(n, 1, 24, kept, &err), NAS_OK);
    for (int i = 0; i < 24; i++) {
        assert_true((kept[i] * 37) % 48 >= 24);
        if (i)
            assert_true(kept[i] > kept[i - 1]);
    }
    assert_int_equal(ev_prune_rank(n, 0, 4, kept, &err), NAS_EINVAL);   /* no expand conv */
    assert_non_null(strstr(err.msg, "no expand conv"));

    ev_net *p = prune(n, &s, 0.5, &ps);
    ev_tensor u[256];
    int nu = ev_net_tensors(p, u, 256);
    const ev_tensor *pe = find(u, nu, "b1.expand.conv");
    assert_int_equal(pe->shape[3], 24);
    const ev_tensor *dw = find(t, nt, "b1.dw.conv"), *pdw = find(u, nu, "b1.dw.conv");
    const ev_tensor *g = find(t, nt, "b1.dw.bn.running_var"), *pg = find(u, nu, "b1.dw.bn.running_var");
    const ev_tensor *se = find(t, nt, "b1.se.expand.w"), *pse = find(u, nu, "b1.se.expand.w");
    int kk = dw->shape[0] * dw->shape[1], mid = se->shape[0];
    for (int i = 0; i < 24; i++) {
        int e = kept[i];
        for (int ci = 0; ci < I; ci++)
            assert_float_equal(pe->data[ci * 24 + i], we->data[ci * E + e], 0);
        for (int q = 0; q < kk; q++)
            assert_float_equal(pdw->data[q * 24 + i], dw->data[q * E + e], 0);
        assert_float_equal(pg->data[i], g->data[e], 0);
        for (int m = 0; m < mid; m++)
            assert_float_equal(pse->data[m * 24 + i], se->data[m * E + e], 0);
    }
    ev_net_free(p);
    ev_net_free(n);
}

static void wrong_spec_refused(void **state)
{
    (void)state;
    space_spec s, other, ps;
    space_net a;
    nas_err err;
    tiny(&s, &a);
    ev_net *n = make_net(&a, 2, 1);
    other = s;
    other.exp_ch[1] = 40;
    ev_prune_opts o;
    ev_prune_opts_default(&o);
    ev_net_opts no = {.batch = 2, .training = 0, .threads = 1};
    ev_net *p = NULL;
    assert_int_equal(ev_prune_net(n, &other, &o, &no, &ps, &p, &err), NAS_EINVAL);
    assert_null(p);
    assert_non_null(strstr(err.msg, "b1"));
    ev_net_free(n);
}

/* ---- nas prune ------------------------------------------------------------ */

/* in with every '@' replaced by dir */
static void subst(char *out, size_t n, const char *in, const char *dir)
{
    size_t o = 0;
    for (; *in && o + 1 < n; in++) {
        if (*in == '@')
            o += (size_t)snprintf(out + o, n - o, "%s", dir);
        else
            out[o++] = *in;
        if (o >= n)
            o = n - 1;
    }
    out[o] = '\0';
}

static void cli(void **state)
{
    (void)state;
    char dir[256], args[2048], path[512];
    tu_tmpdir(dir, sizeof dir);
    nas_err err;
    space_spec s;
    space_net a;
    tiny(&s, &a);
    char *txt = space_spec_to_json(&s, 1);
    snprintf(path, sizeof path, "%s/tiny.json", dir);
    assert_int_equal(nas_write_file_atomic(path, txt, strlen(txt), &err), NAS_OK);
    nas_free(txt);
    ev_net *n = make_net(&a, 2, 4);
    void *blob;
    size_t len;
    assert_int_equal(ev_net_weights_pack(n, &blob, &len, &err), NAS_OK);
    snprintf(path, sizeof path, "%s/tiny.w", dir);
    assert_int_equal(nas_write_file_atomic(path, blob, len, &err), NAS_OK);
    nas_free(blob);
    ev_net_free(n);

    char *out = NULL;
    assert_int_equal(tu_run_nas("prune --help", &out), 0);
    assert_non_null(strstr(out, "examples:"));
    free(out);
    static const struct {
        const char *args, *says;
    } bad[] = {
        {"--keep 0.5 --out @/o", "--weights is required"},
        {"--weights @/tiny.w --out @/o", "one of --keep"},
        {"--weights @/tiny.w --keep 0.5 --target-macs 1000 --out @/o", "one of --keep"},
        {"--weights @/tiny.w --keep 1.5 --out @/o", "--keep: '1.5'"},
        {"--weights @/tiny.w --keep 0 --out @/o", "--keep: '0'"},
        {"--weights @/tiny.w --keep 0.5", "--out DIR is required"},
        {"--weights @/tiny.w --keep 0.5 --epochs 2 --out @/o", "--epochs needs --data"},
        {"--weights @/tiny.w --keep 0.5 --frobnicate 1 --out @/o", "unknown option"},
        {"--weights @/tiny.w --keep 0.5 --target-mj 1 --out @/o", "one of --keep"},
        {"--weights @/tiny.w --target-mj 0 --out @/o", "--target-mj: '0'"},
        {"--weights @/tiny.w --keep 0.5 --candidate x --out @/o", "--candidate: 'x'"},
        {"--weights @/tiny.w --keep 0.5 --distill --out @/o", "--distill works in the fine-tune"},
        {"--weights @/tiny.w --keep 0.5 --distill --kd-alpha 2 --out @/o", "--kd-alpha: '2'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char opt[1024];
        subst(opt, sizeof opt, bad[i].args, dir);
        snprintf(args, sizeof args, "prune %s/tiny.json %s 2>&1", dir, opt);
        int rc = tu_run_nas(args, &out);
        if (rc != 2 || !strstr(out, bad[i].says))
            fail_msg("'%s': exit %d, said: %s", args, rc, out);
        free(out);
    }
    /* errors past parsing: exit non-zero with the cause named */
    snprintf(args, sizeof args, "prune %s/tiny.json --weights %s/none.w --keep 0.5 --out %s/o 2>&1", dir, dir,
             dir);
    assert_int_not_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "none.w"));
    free(out);
    snprintf(args, sizeof args, "prune %s/tiny.json --weights %s/tiny.w --target-macs 1000 --out %s/o 2>&1",
             dir, dir, dir);
    assert_int_not_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "cannot be met"));
    free(out);

    /* a run without data: the pruned spec, ONNX model and weights written */
    snprintf(args, sizeof args, "prune %s/tiny.json --weights %s/tiny.w --keep 0.5 --out %s/o", dir, dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    double m0 = 0, m1 = 0;
    assert_non_null(strstr(out, "macs_before"));
    assert_int_equal(sscanf(strstr(out, "macs_before"), "macs_before %lf\nmacs_after %lf", &m0, &m1), 2);
    free(out);
    space_spec ps;
    space_net pa;
    snprintf(path, sizeof path, "%s/o/pruned.spec.json", dir);
    assert_int_equal(space_spec_load(path, &ps, &err), NAS_OK);
    assert_int_equal(space_resolve(&ps, &pa, &err), NAS_OK);
    assert_int_equal(pa.blocks[2].exp_ch, 48);
    space_cost c0, c1;
    space_cost_of(&a, NULL, 0, &c0);
    space_cost_of(&pa, NULL, 0, &c1);
    assert_true(fabs(m0 - c0.macs) <= 0.5);
    assert_true(fabs(m1 - c1.macs) <= 0.5);
    snprintf(args, sizeof args, "test -s %s/o/pruned.onnx && test -s %s/o/pruned.weights", dir, dir);
    assert_int_equal(system(args), 0);
    /* the model passes Debian's onnx checker, when it is installed */
    if (system("/usr/bin/python3 -c 'import onnx' 2>/dev/null") == 0) {
        snprintf(args, sizeof args, "/usr/bin/python3 tests/onnx_check.py %s/o/pruned.onnx >/dev/null", dir);
        assert_int_equal(system(args), 0);
    }
    /* the same again refuses to overwrite */
    snprintf(args, sizeof args, "prune %s/tiny.json --weights %s/tiny.w --keep 0.5 --out %s/o 2>&1", dir, dir,
             dir);
    assert_int_not_equal(tu_run_nas(args, &out), 0);
    free(out);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pruned_spec_macs),
        cmocka_unit_test(target_macs),
        cmocka_unit_test(keep_all_same_function),
        cmocka_unit_test(pruned_same_as_zeroed),
        cmocka_unit_test(keeps_largest_l1),
        cmocka_unit_test(wrong_spec_refused),
        cmocka_unit_test(cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
