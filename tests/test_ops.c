/* test_ops.c — every op's backward against finite differences, in every
 * configuration the space emits (kernels 3/5/7, strides 1/2, each activation,
 * SE pieces), and the depthwise kernels of the active level against the scalar
 * oracle (tests/test_kern.c covers every level). */
#include "tests/testutil.h"
#include "tests/gradcheck.h"
#include "evaluator/ops.h"

#include <math.h>

static nas_pcg32 rng;

static void fill(float *p, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = scale * (float)(2 * nas_pcg32_double(&rng) - 1);
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static float *fa(size_t n)
{
    float *p = nas_malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    memset(p, 0, sizeof(float) * (n ? n : 1));
    return p;
}

static float partial_buf[1 << 16];
static op_ctx cx1 = {1, partial_buf, NULL, 0}, cx2 = {2, partial_buf, NULL, 0};

/* ---------------- depthwise conv ------------------------------------------ */

typedef struct {
    int B, H, W, C, k, s, simd;
    float *x, *w, *y, *r, *dx, *dw;
} dw_t;

static double dw_loss(void *c)
{
    dw_t *t = c;
    if (t->simd)
        op_dw_forward(&cx2, t->y, t->x, t->w, t->B, t->H, t->W, t->C, t->k, t->s);
    else
        op_dw_forward_ref(t->y, t->x, t->w, t->B, t->H, t->W, t->C, t->k, t->s);
    int Ho = op_out_side(t->H, t->k, t->s), Wo = op_out_side(t->W, t->k, t->s);
    return dot(t->y, t->r, (size_t)t->B * Ho * Wo * t->C);
}

static void dw_grad(void *c)
{
    dw_t *t = c;
    memset(t->dw, 0, sizeof(float) * t->k * t->k * t->C);
    if (t->simd)
        op_dw_backward(&cx2, t->dx, t->dw, t->r, t->x, t->w, t->B, t->H, t->W, t->C, t->k, t->s);
    else
        op_dw_backward_ref(t->dx, t->dw, t->r, t->x, t->w, t->B, t->H, t->W, t->C, t->k, t->s);
}

static void dw_setup(dw_t *t, int B, int H, int C, int k, int s)
{
    t->B = B; t->H = t->W = H; t->C = C; t->k = k; t->s = s;
    int Ho = op_out_side(H, k, s);
    size_t nx = (size_t)B * H * H * C, ny = (size_t)B * Ho * Ho * C;
    t->x = fa(nx); t->dx = fa(nx); t->w = fa(k * k * C); t->dw = fa(k * k * C);
    t->y = fa(ny); t->r = fa(ny);
    fill(t->x, nx, 1); fill(t->w, k * k * C, 0.5f); fill(t->r, ny, 1);
}

static void dw_teardown(dw_t *t)
{
    nas_free(t->x); nas_free(t->dx); nas_free(t->w); nas_free(t->dw); nas_free(t->y); nas_free(t->r);
}

static void dwconv_gradients_all_kernels_and_strides(void **state)
{
    (void)state;
    static const int ks[3] = {3, 5, 7};
    for (int simd = 0; simd < 2; simd++)
        for (int ki = 0; ki < 3; ki++)
            for (int s = 1; s <= 2; s++)
                for (int H = 7; H <= 8; H++) {
                    dw_t t = {.simd = simd};
                    dw_setup(&t, 2, H, 19, ks[ki], s);
                    gc_tensor ts[2] = {{"dx", t.x, t.dx, (size_t)2 * H * H * 19},
                                       {"dw", t.w, t.dw, (size_t)ks[ki] * ks[ki] * 19}};
                    char what[64];
                    snprintf(what, sizeof what, "dw%s k%d s%d H%d", simd ? "-simd" : "-ref", ks[ki], s, H);
                    /* linear in each input: rounding is the only error */
                    double e = gc_check(&t, dw_loss, dw_grad, ts, 2, 1e-2f, 40, 1, what, 1e-6);
                    assert_true(e < 2e-3);
                    dw_teardown(&t);
                }
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / (s > 0 ? s : 1);
}

static void dwconv_simd_matches_oracle(void **state)
{
    (void)state;
    static const int ks[3] = {3, 5, 7}, Cs[3] = {16, 40, 7}, Hs[3] = {14, 9, 5};
    for (int ki = 0; ki < 3; ki++)
        for (int s = 1; s <= 2; s++)
            for (int ci = 0; ci < 3; ci++) {
                dw_t t;
                dw_setup(&t, 3, Hs[ci], Cs[ci], ks[ki], s);
                int Ho = op_out_side(t.H, t.k, s);
                size_t ny = (size_t)t.B * Ho * Ho * t.C, nx = (size_t)t.B * t.H * t.H * t.C;
                size_t nw = (size_t)t.k * t.k * t.C;
                float *y2 = fa(ny), *dx2 = fa(nx), *dw2 = fa(nw);
                op_dw_forward_ref(t.y, t.x, t.w, t.B, t.H, t.W, t.C, t.k, s);
                op_dw_forward(&cx2, y2, t.x, t.w, t.B, t.H, t.W, t.C, t.k, s);
                assert_true(rel_diff(y2, t.y, ny) < 1e-5);
                op_dw_backward_ref(t.dx, t.dw, t.r, t.x, t.w, t.B, t.H, t.W, t.C, t.k, s);
                op_dw_backward(&cx2, dx2, dw2, t.r, t.x, t.w, t.B, t.H, t.W, t.C, t.k, s);
                assert_true(rel_diff(dx2, t.dx, nx) < 1e-5);
                assert_true(rel_diff(dw2, t.dw, nw) < 1e-5);
                /* dw accumulates: a second call doubles it */
                op_dw_backward(&cx1, dx2, dw2, t.r, t.x, t.w, t.B, t.H, t.W, t.C, t.k, s);
                for (size_t i = 0; i < nw; i++)
                    assert_true(fabsf(dw2[i] - 2 * t.dw[i]) <= 1e-4f * (1 + fabsf(t.dw[i])));
                nas_free(y2); nas_free(dx2); nas_free(dw2);
                dw_teardown(&t);
            }
}

/* ---------------- pointwise and stem convs, linear -------------------------- */

typedef struct {
    int kind;   /* 0 pointwise, 1 stem conv, 2 linear */
    int B, H, Cin, Cout, k, s;
    float *x, *w, *b, *y, *r, *dx, *dw, *db, *col;
} mm_t;

static size_t mm_out(const mm_t *t)
{
    if (t->kind == 1) {
        int Ho = op_out_side(t->H, t->k, t->s);
        return (size_t)t->B * Ho * Ho * t->Cout;
    }
    return (size_t)t->B * t->H * t->H * t->Cout;
}

static double mm_loss(void *c)
{
    mm_t *t = c;
    int N = t->B * t->H * t->H;
    if (t->kind == 0)
        op_pw_forward(&cx2, t->y, t->x, t->w, N, t->Cin, t->Cout);
    else if (t->kind == 1)
        op_conv_forward(&cx2, t->y, t->col, t->x, t->w, t->B, t->H, t->H, t->Cin, t->Cout, t->k, t->s);
    else
        op_linear_forward(t->y, t->x, t->w, t->b, N, t->Cin, t->Cout);
    return dot(t->y, t->r, mm_out(t));
}

static void mm_grad(void *c)
{
    mm_t *t = c;
    int N = t->B * t->H * t->H;
    memset(t->dw, 0, sizeof(float) * t->k * t->k * t->Cin * t->Cout);
    memset(t->db, 0, sizeof(float) * t->Cout);
    if (t->kind == 0)
        op_pw_backward(&cx2, t->dx, t->dw, t->r, t->x, t->w, N, t->Cin, t->Cout, 0);
    else if (t->kind == 1)
        op_conv_backward(&cx2, t->dw, t->col, t->r, t->x, t->B, t->H, t->H, t->Cin, t->Cout, t->k, t->s);
    else
        op_linear_backward(t->dx, t->dw, t->db, t->r, t->x, t->w, N, t->Cin, t->Cout);
}

static void matmul_ops_gradients(void **state)
{
    (void)state;
    struct { int kind, B, H, Cin, Cout, k, s; } cfg[] = {
        {0, 2, 5, 12, 20, 1, 1}, {0, 1, 3, 7, 3, 1, 1},
        {1, 2, 9, 3, 8, 3, 1}, {1, 2, 9, 1, 8, 3, 2}, {1, 1, 8, 3, 5, 3, 2},
        {2, 5, 1, 9, 6, 1, 1},
    };
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        mm_t t = {.kind = cfg[i].kind, .B = cfg[i].B, .H = cfg[i].H, .Cin = cfg[i].Cin,
                  .Cout = cfg[i].Cout, .k = cfg[i].k, .s = cfg[i].s};
        size_t nx = (size_t)t.B * t.H * t.H * t.Cin, nw = (size_t)t.k * t.k * t.Cin * t.Cout;
        t.x = fa(nx); t.dx = fa(nx); t.w = fa(nw); t.dw = fa(nw); t.b = fa(t.Cout); t.db = fa(t.Cout);
        t.y = fa((size_t)t.B * t.H * t.H * t.Cout); t.r = fa(mm_out(&t));
        t.col = fa((size_t)t.B * t.H * t.H * t.k * t.k * t.Cin);
        fill(t.x, nx, 1); fill(t.w, nw, 0.5f); fill(t.b, t.Cout, 0.5f); fill(t.r, mm_out(&t), 1);
        gc_tensor ts[3] = {{"w", t.w, t.dw, nw}, {"x", t.x, t.dx, nx}, {"b", t.b, t.db, t.Cout}};
        int nt = t.kind == 1 ? 1 : t.kind == 0 ? 2 : 3;   /* the stem has no input gradient */
        char what[32];
        snprintf(what, sizeof what, "%s#%zu", t.kind == 0 ? "pw" : t.kind == 1 ? "stem" : "linear", i);
        assert_true(gc_check(&t, mm_loss, mm_grad, ts, nt, 1e-2f, 40, 2, what, 1e-6) < 2e-3);
        /* accumulation: parameter gradients add up; pw's dx_accumulate adds */
        if (t.kind == 0) {
            int N = t.B * t.H * t.H;
            float *dx2 = fa(nx);
            memcpy(dx2, t.dx, sizeof(float) * nx);
            op_pw_backward(&cx2, dx2, t.dw, t.r, t.x, t.w, N, t.Cin, t.Cout, 1);
            for (size_t j = 0; j < nx; j++)
                assert_true(fabsf(dx2[j] - 2 * t.dx[j]) <= 1e-5f * (1 + fabsf(t.dx[j])));
            nas_free(dx2);
        }
        nas_free(t.x); nas_free(t.dx); nas_free(t.w); nas_free(t.dw); nas_free(t.b); nas_free(t.db);
        nas_free(t.y); nas_free(t.r); nas_free(t.col);
    }
}

/* ---------------- batch norm + activation ----------------------------------- */

typedef struct {
    int N, C;
    op_act act;
    float *z, *gamma, *beta, *rm, *rv, *mean, *rstd, *y, *r, *dz, *dg, *db;
} bn_t;

static double bn_loss(void *c)
{
    bn_t *t = c;
    op_bn_act_forward(&cx2, t->y, t->mean, t->rstd, t->z, t->gamma, t->beta, t->rm, t->rv, t->N, t->C,
                      t->act, 1, 0.1f);
    return dot(t->y, t->r, (size_t)t->N * t->C);
}

static void bn_grad(void *c)
{
    bn_t *t = c;
    bn_loss(c);
    memset(t->dg, 0, sizeof(float) * t->C);
    memset(t->db, 0, sizeof(float) * t->C);
    op_bn_act_backward(&cx2, t->dz, t->dg, t->db, t->r, t->z, t->mean, t->rstd, t->gamma, t->beta,
                       t->N, t->C, t->act);
}

static void bn_act_gradients_each_activation(void **state)
{
    (void)state;
    for (int a = 0; a < OP_ACT_COUNT; a++) {
        bn_t t = {.N = 37, .C = 21, .act = (op_act)a};
        size_t n = (size_t)t.N * t.C;
        t.z = fa(n); t.y = fa(n); t.r = fa(n); t.dz = fa(n);
        t.gamma = fa(t.C); t.beta = fa(t.C); t.rm = fa(t.C); t.rv = fa(t.C); t.mean = fa(t.C);
        t.rstd = fa(t.C); t.dg = fa(t.C); t.db = fa(t.C);
        fill(t.z, n, 2); fill(t.r, n, 1);
        for (int c = 0; c < t.C; c++) {
            t.gamma[c] = 0.5f + (float)nas_pcg32_double(&rng);
            t.beta[c] = (float)(2 * nas_pcg32_double(&rng) - 1);
            t.rv[c] = 1;
        }
        gc_tensor ts[3] = {{"z", t.z, t.dz, n}, {"gamma", t.gamma, t.dg, t.C}, {"beta", t.beta, t.db, t.C}};
        char what[32];
        snprintf(what, sizeof what, "bn+%s", op_act_name(t.act));
        double e = gc_check(&t, bn_loss, bn_grad, ts, 3, 1e-3f, 60, 3, what, 1e-6);
        assert_true(e < 1e-2);
        nas_free(t.z); nas_free(t.y); nas_free(t.r); nas_free(t.dz); nas_free(t.gamma);
        nas_free(t.beta); nas_free(t.rm); nas_free(t.rv); nas_free(t.mean); nas_free(t.rstd);
        nas_free(t.dg); nas_free(t.db);
    }
}

static void bn_statistics_match_definition(void **state)
{
    (void)state;
    int N = 50, C = 3;
    float z[150], y[150], gamma[3] = {1, 2, 0.5f}, beta[3] = {0, 1, -1};
    float rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1}, mean[3], rstd[3];
    fill(z, 150, 3);
    op_bn_act_forward(&cx2, y, mean, rstd, z, gamma, beta, rm, rv, N, C, OP_NONE, 1, 0.1f);
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (int i = 0; i < N; i++)
            m += z[i * C + c];
        m /= N;
        for (int i = 0; i < N; i++)
            v += (z[i * C + c] - m) * (z[i * C + c] - m);
        assert_true(fabs(mean[c] - m) < 1e-5);
        assert_true(fabs(rstd[c] - 1 / sqrt(v / N + 1e-5)) < 1e-4);
        assert_true(fabs(rm[c] - 0.1 * m) < 1e-6);                    /* PyTorch's momentum */
        assert_true(fabs(rv[c] - (0.9 + 0.1 * v / (N - 1))) < 1e-5);   /* unbiased */
        for (int i = 0; i < N; i++)
            assert_true(fabs(y[i * C + c] - (gamma[c] * (z[i * C + c] - m) / sqrt(v / N + 1e-5) + beta[c])) < 1e-4);
    }
    /* eval mode uses the running statistics */
    op_bn_act_forward(&cx1, y, mean, rstd, z, gamma, beta, rm, rv, N, C, OP_RELU6, 0, 0.1f);
    for (int i = 0; i < N * C; i++) {
        int c = i % C;
        double h = gamma[c] * (z[i] - rm[c]) / sqrt(rv[c] + 1e-5) + beta[c];
        assert_true(fabs(y[i] - fmin(6, fmax(0, h))) < 1e-4);
    }
}

/* ---------------- element-wise, SE pieces, pool, dropout, loss --------------- */

typedef struct {
    int which;   /* 0 act, 1 pool, 2 scale, 3 dropout, 4 xent, 5 distillation (teacher in r) */
    op_act act;
    int B, HW, C;
    float eps;
    float *x, *g, *mask, *y, *r, *dx, *dg;
    unsigned char labels[8];
} ew_t;

static double ew_loss(void *c)
{
    ew_t *t = c;
    size_t n = (size_t)t->B * t->HW * t->C;
    switch (t->which) {
    case 0: op_act_forward(t->y, t->x, n, t->act); return dot(t->y, t->r, n);
    case 1: op_pool_forward(t->y, t->x, t->B, t->HW, t->C); return dot(t->y, t->r, (size_t)t->B * t->C);
    case 2: op_scale_forward(t->y, t->x, t->g, t->B, t->HW, t->C); return dot(t->y, t->r, n);
    case 3: op_dropout_forward(t->y, t->x, t->mask, n); return dot(t->y, t->r, n);
    case 4: return op_xent_forward_backward(NULL, t->x, t->labels, t->B, t->C, t->eps, NULL);
    default: return op_kd_forward_backward(NULL, t->x, t->r, t->labels, t->B, t->C, t->eps,
                                           t->eps ? 4.0f : 2.0f, 0.7f, NULL);
    }
}

static void ew_grad(void *c)
{
    ew_t *t = c;
    size_t n = (size_t)t->B * t->HW * t->C;
    switch (t->which) {
    case 0: op_act_backward(t->dx, t->r, t->x, n, t->act); break;
    case 1: op_pool_backward(t->dx, t->r, t->B, t->HW, t->C, 0); break;
    case 2: op_scale_backward(t->dx, t->dg, t->r, t->x, t->g, t->B, t->HW, t->C); break;
    case 3: op_dropout_backward(t->dx, t->r, t->mask, n); break;
    case 4: op_xent_forward_backward(t->dx, t->x, t->labels, t->B, t->C, t->eps, NULL); break;
    default: op_kd_forward_backward(t->dx, t->x, t->r, t->labels, t->B, t->C, t->eps,
                                    t->eps ? 4.0f : 2.0f, 0.7f, NULL); break;
    }
}

static void elementwise_se_pool_dropout_loss_gradients(void **state)
{
    (void)state;
    for (int which = 0; which < 6; which++)
        for (int a = 0; a < (which == 0 ? OP_ACT_COUNT : which >= 4 ? 2 : 1); a++) {
            ew_t t = {.which = which, .act = (op_act)a, .B = 3, .HW = which >= 4 ? 1 : 10, .C = 7,
                      .eps = a ? 0.1f : 0.0f};
            size_t n = (size_t)t.B * t.HW * t.C;
            t.x = fa(n); t.g = fa(t.B * t.C); t.mask = fa(n); t.y = fa(n); t.r = fa(n); t.dx = fa(n);
            t.dg = fa(t.B * t.C);
            fill(t.x, n, 4); fill(t.g, t.B * t.C, 1); fill(t.r, n, 1);
            for (size_t i = 0; i < n; i++)
                t.mask[i] = nas_pcg32_double(&rng) < 0.3 ? 0 : 1 / 0.7f;
            for (int b = 0; b < t.B; b++)
                t.labels[b] = (unsigned char)nas_pcg32_bounded(&rng, t.C);
            gc_tensor ts[2] = {{"x", t.x, t.dx, n}, {"g", t.g, t.dg, (size_t)t.B * t.C}};
            char what[32];
            snprintf(what, sizeof what, "ew%d %s", which, op_act_name(t.act));
            double e = gc_check(&t, ew_loss, ew_grad, ts, which == 2 ? 2 : 1, 1e-3f, 80, 4, what, 1e-6);
            assert_true(e < 1e-2);
            nas_free(t.x); nas_free(t.g); nas_free(t.mask); nas_free(t.y); nas_free(t.r);
            nas_free(t.dx); nas_free(t.dg);
        }
}

static void activations_match_definitions(void **state)
{
    (void)state;
    float x[7] = {-5, -3, -1, 0, 1, 4, 7}, y[7];
    op_act_forward(y, x, 7, OP_RELU6);
    float relu6[7] = {0, 0, 0, 0, 1, 4, 6};
    op_act_forward(y, x, 7, OP_HSWISH);
    for (int i = 0; i < 7; i++) {
        double r6 = fmin(6, fmax(0, x[i] + 3));
        assert_true(fabs(y[i] - x[i] * r6 / 6) < 1e-6);
    }
    op_act_forward(y, x, 7, OP_RELU6);
    for (int i = 0; i < 7; i++)
        assert_true(y[i] == relu6[i]);
    op_act_forward(y, x, 7, OP_SWISH);
    for (int i = 0; i < 7; i++)
        assert_true(fabs(y[i] - x[i] / (1 + exp(-x[i]))) < 1e-6);
    op_act_forward(y, x, 7, OP_HSIGMOID);
    for (int i = 0; i < 7; i++)
        assert_true(fabs(y[i] - fmin(6, fmax(0, x[i] + 3)) / 6) < 1e-6);
    /* label smoothing: uniform logits give log K whatever eps */
    float z[10] = {0};
    unsigned char lab[1] = {3};
    assert_true(fabs(op_xent_forward_backward(NULL, z, lab, 1, 10, 0.1f, NULL) - log(10)) < 1e-6);
    /* a confident right answer: loss near eps * (what spreading costs) */
    z[3] = 20;
    double l0 = op_xent_forward_backward(NULL, z, lab, 1, 10, 0.0f, NULL);
    double l1 = op_xent_forward_backward(NULL, z, lab, 1, 10, 0.1f, NULL);
    assert_true(l0 < 1e-6 && fabs(l1 - 0.1 * 0.9 * 20) < 1e-3);
    /* distillation: a teacher that agrees with the student adds nothing, whatever
     * T; with alpha 1 a uniform student pays T^2 * KL(pt || uniform) =
     * T^2 * (log K - H(pt)); a teacher (0, log 3) at T = 1 over K = 2 gives
     * pt = (1/4, 3/4) */
    float zt[10];
    memcpy(zt, z, sizeof zt);
    double kd = op_kd_forward_backward(NULL, z, zt, lab, 1, 10, 0.1f, 3.0f, 0.4f, NULL);
    assert_true(fabs(kd - 0.6 * l1) < 1e-6);
    float u[2] = {0, 0}, tt[2] = {0, (float)log(3.0)};
    unsigned char lab2[1] = {1};
    double h = -(0.25 * log(0.25) + 0.75 * log(0.75));
    kd = op_kd_forward_backward(NULL, u, tt, lab2, 1, 2, 0.0f, 1.0f, 1.0f, NULL);
    assert_true(fabs(kd - (log(2) - h)) < 1e-6);
    tt[1] = (float)(2 * log(3.0));   /* the same soft targets at T = 2, paid 4x */
    kd = op_kd_forward_backward(NULL, u, tt, lab2, 1, 2, 0.0f, 2.0f, 1.0f, NULL);
    assert_true(fabs(kd - 4 * (log(2) - h)) < 1e-5);
}

/* The fused inference convs against the unfused ops they replace (conv, then
 * op_bn_act_forward with running statistics, then the residual add), for
 * every activation, row counts around the 8-row tile, column counts around
 * the 16/48-column tiles, one and two threads (with work enough to split),
 * and a layer wide enough (2800 x 97 weights) for the OpenBLAS path. */
static void fused_inference_convs_match_unfused(void **state)
{
    (void)state;
    static const int Ns[4] = {1, 7, 19, 600}, Cins[4] = {1, 9, 40, 2800}, Couts[6] = {1, 16, 17, 33, 48, 97};
    const op_ctx *cxs[2] = {&cx1, &cx2};
    for (int a = 0; a < OP_ACT_COUNT; a++)
        for (int ni = 0; ni < 4; ni++)
            for (int ii = 0; ii < 4; ii++)
                for (int oi = 0; oi < 6; oi++) {
                    int N = Ns[ni], Cin = Cins[ii], C = Couts[oi];
                    if (N * Cin > 600 * 40)   /* the wide case (OpenBLAS's path) on few rows */
                        continue;
                    float *x = fa((size_t)N * Cin), *w = fa((size_t)Cin * C), *res = fa((size_t)N * C);
                    float *z = fa((size_t)N * C), *ref = fa((size_t)N * C), *y = fa((size_t)N * C);
                    float *g = fa(C), *be = fa(C), *rm = fa(C), *rv = fa(C), *sc = fa(C), *sh = fa(C);
                    fill(x, (size_t)N * Cin, 1); fill(w, (size_t)Cin * C, 0.5f);
                    fill(res, (size_t)N * C, 1); fill(g, C, 1); fill(be, C, 1); fill(rm, C, 0.5f);
                    for (int c = 0; c < C; c++)
                        rv[c] = 0.1f + (float)nas_pcg32_double(&rng);
                    op_bn_eval_affine(sc, sh, g, be, rm, rv, C);
                    op_pw_forward(&cx1, z, x, w, N, Cin, C);
                    op_bn_act_forward(&cx1, ref, NULL, NULL, z, g, be, rm, rv, N, C, (op_act)a, 0, 0.1f);
                    for (int use_res = 0; use_res < 2; use_res++) {
                        if (use_res)   /* the space adds residuals after a linear BN only */
                            for (size_t i = 0; i < (size_t)N * C; i++)
                                ref[i] += res[i];
                        if (use_res && a != OP_NONE)
                            continue;
                        for (int t = 0; t < 2; t++) {
                            memset(y, 0, sizeof(float) * N * C);
                            op_pw_bn_act_infer(cxs[t], y, x, w, sc, sh, use_res ? res : NULL, N, Cin,
                                               C, (op_act)a);
                            /* sums over Cin in another order (wide layers: OpenBLAS's) */
                            float tol = 1e-5f * (1 + Cin / 16.0f);
                            for (size_t i = 0; i < (size_t)N * C; i++)
                                assert_true(fabsf(y[i] - ref[i]) <= tol * (1 + fabsf(ref[i])));
                        }
                    }
                    nas_free(x); nas_free(w); nas_free(res); nas_free(z); nas_free(ref); nas_free(y);
                    nas_free(g); nas_free(be); nas_free(rm); nas_free(rv); nas_free(sc); nas_free(sh);
                }
    /* depthwise: every kernel and stride, channel counts with tails */
    static const int ks[3] = {3, 5, 7}, Cs[3] = {16, 40, 7};
    for (int a = 0; a < OP_ACT_COUNT; a++)
        for (int ki = 0; ki < 3; ki++)
            for (int s = 1; s <= 2; s++)
                for (int ci = 0; ci < 3; ci++) {
                    int B = 2, H = 9, C = Cs[ci], k = ks[ki], Ho = op_out_side(H, k, s);
                    size_t nx = (size_t)B * H * H * C, ny = (size_t)B * Ho * Ho * C;
                    float *x = fa(nx), *w = fa((size_t)k * k * C), *z = fa(ny), *ref = fa(ny), *y = fa(ny);
                    float *g = fa(C), *be = fa(C), *rm = fa(C), *rv = fa(C), *sc = fa(C), *sh = fa(C);
                    fill(x, nx, 1); fill(w, (size_t)k * k * C, 0.5f);
                    fill(g, C, 1); fill(be, C, 1); fill(rm, C, 0.5f);
                    for (int c = 0; c < C; c++)
                        rv[c] = 0.1f + (float)nas_pcg32_double(&rng);
                    op_bn_eval_affine(sc, sh, g, be, rm, rv, C);
                    op_dw_forward_ref(z, x, w, B, H, H, C, k, s);
                    op_bn_act_forward(&cx1, ref, NULL, NULL, z, g, be, rm, rv, B * Ho * Ho, C, (op_act)a,
                                      0, 0.1f);
                    for (int t = 0; t < 2; t++) {
                        op_dw_bn_act_infer(cxs[t], y, x, w, sc, sh, NULL, B, H, H, C, k, s, (op_act)a);
                        for (size_t i = 0; i < ny; i++)
                            assert_true(fabsf(y[i] - ref[i]) <= 1e-5f * (1 + fabsf(ref[i])));
                        /* a residual is added after the activation */
                        op_dw_bn_act_infer(cxs[t], y, x, w, sc, sh, z, B, H, H, C, k, s, (op_act)a);
                        for (size_t i = 0; i < ny; i++)
                            assert_true(fabsf(y[i] - (ref[i] + z[i])) <= 1e-5f * (1 + fabsf(ref[i] + z[i])));
                    }
                    nas_free(x); nas_free(w); nas_free(z); nas_free(ref); nas_free(y);
                    nas_free(g); nas_free(be); nas_free(rm); nas_free(rv); nas_free(sc); nas_free(sh);
                }
}

int main(void)
{
    nas_pcg32_seed(&rng, 12345, 1);
    ops_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dwconv_gradients_all_kernels_and_strides),
        cmocka_unit_test(dwconv_simd_matches_oracle),
        cmocka_unit_test(matmul_ops_gradients),
        cmocka_unit_test(bn_act_gradients_each_activation),
        cmocka_unit_test(bn_statistics_match_definition),
        cmocka_unit_test(elementwise_se_pool_dropout_loss_gradients),
        cmocka_unit_test(activations_match_definitions),
        cmocka_unit_test(fused_inference_convs_match_unfused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
