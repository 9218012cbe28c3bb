/* test_kern.c — every kernel level this CPU runs (kern.h: avx512, avx2, neon,
 * scalar), forced in turn, against the scalar oracles: depthwise forward and
 * backward (k 3/5/7, stride 1/2, odd sides, channel counts that are not a
 * multiple of any vector width), the fused depthwise and pointwise inference
 * with every activation and a residual, batch norm forward and backward,
 * element-wise activations, pooling and SE scaling. Also: bit-for-bit repeats
 * for a level and thread count, and NAS_ISA's errors.
 *
 * The same file runs under qemu-aarch64 for the NEON level (make test-arm). */
#include "tests/testutil.h"
#include "evaluator/ev.h"
#include "evaluator/kern.h"
#include "evaluator/ops.h"

#include <math.h>

static uint64_t rng_state = 0x853c49e6748fea9bULL;

static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float *buf(size_t n, float scale)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = scale * frand();
    return p;
}

static float partial[1 << 18];
static op_ctx cx1 = {1, partial, NULL, 0}, cx2 = {2, partial, NULL, 0};

/* The oracle of each activation, as PyTorch defines it. */
static float act_ref(float h, op_act a)
{
    switch (a) {
    case OP_RELU: return h > 0 ? h : 0;
    case OP_RELU6: return fminf(fmaxf(h, 0), 6);
    case OP_HSWISH: return h * fminf(fmaxf(h + 3, 0), 6) / 6;
    case OP_SWISH: return h / (1 + expf(-h));
    case OP_SIGMOID: return 1 / (1 + expf(-h));
    case OP_HSIGMOID: return fminf(fmaxf(h + 3, 0), 6) / 6;
    default: return h;
    }
}

/* Its derivative at h; at the kinks, PyTorch's choices. */
static float act_d_ref(float h, op_act a)
{
    float sg = 1 / (1 + expf(-h));
    switch (a) {
    case OP_RELU: return h > 0;
    case OP_RELU6: return h > 0 && h < 6;
    case OP_HSWISH: return h < -3 ? 0 : h > 3 ? 1 : h / 3 + 0.5f;
    case OP_SWISH: return sg * (1 + h * (1 - sg));
    case OP_SIGMOID: return sg * (1 - sg);
    case OP_HSIGMOID: return h > -3 && h < 3 ? 1.0f / 6 : 0;
    default: return 1;
    }
}

/* max |a - b| / (1 + max |b|): rounding of sums in another order */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i]))
            return INFINITY;
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (1 + m);
}

/* Runs body once per level this CPU runs, that level active; restores auto. */
#define FOR_EACH_LEVEL(t)                                                 \
    for (int li_ = 0; li_ < kern_count(); li_++)                          \
        for (const kern_table *t = kern_at(li_); t; t = NULL)             \
            if (kern_cpu_runs(t) && (kern_use(t), 1))

static void restore_auto(void) { kern_use(kern_find("auto", NULL)); }

static const int chans[] = {1, 3, 8, 13, 16, 24, 37};
#define N_CHANS (int)(sizeof chans / sizeof chans[0])

static void test_levels_listed(void **state)
{
    (void)state;
    int runnable = 0, scalar = 0;
    for (int i = 0; i < kern_count(); i++) {
        const kern_table *t = kern_at(i);
        assert_non_null(t);
        runnable += kern_cpu_runs(t);
        scalar += !strcmp(t->name, "scalar");
        assert_true(t->width >= 1 && t->width <= 16);
    }
    assert_int_equal(scalar, 1);
    assert_true(runnable >= 1);
    print_message("levels this CPU runs: %s; active: %s\n", ev_kernels_available(), ev_kernels());
    /* the active level is the best runnable one unless NAS_ISA says otherwise */
    if (!getenv("NAS_ISA"))
        assert_string_equal(ev_kernels(), kern_find("auto", NULL)->name);
}

static void test_depthwise_matches_oracle(void **state)
{
    (void)state;
    static const int sides[][2] = {{1, 1}, {5, 4}, {8, 8}, {11, 9}};
    FOR_EACH_LEVEL(t)
    {
        double worst = 0;
        for (int k = 3; k <= 7; k += 2)
            for (int s = 1; s <= 2; s++)
                for (int ci = 0; ci < N_CHANS; ci++)
                    for (int si = 0; si < 4; si++) {
                        int B = 2, H = sides[si][0], W = sides[si][1], C = chans[ci];
                        int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
                        size_t nx = (size_t)B * H * W * C, ny = (size_t)B * Ho * Wo * C;
                        size_t nw = (size_t)k * k * C;
                        float *x = buf(nx, 1), *w = buf(nw, 1), *dy = buf(ny, 1);
                        float *y = buf(ny, 0), *y0 = buf(ny, 0), *dx = buf(nx, 0), *dx0 = buf(nx, 0);
                        float *dw = buf(nw, 0), *dw0 = buf(nw, 0);
                        op_dw_forward_ref(y0, x, w, B, H, W, C, k, s);
                        op_dw_backward_ref(dx0, dw0, dy, x, w, B, H, W, C, k, s);
                        for (int th = 1; th <= 2; th++) {
                            memset(dw, 0, sizeof(float) * nw);
                            op_dw_forward(th == 1 ? &cx1 : &cx2, y, x, w, B, H, W, C, k, s);
                            op_dw_backward(th == 1 ? &cx1 : &cx2, dx, dw, dy, x, w, B, H, W, C, k, s);
                            double e = fmax(rel_err(y, y0, ny),
                                            fmax(rel_err(dx, dx0, nx), rel_err(dw, dw0, nw)));
                            if (e > 1e-5)
                                fail_msg("%s: depthwise k%d s%d %dx%dx%d, %d threads: rel err %.2e",
                                         t->name, k, s, H, W, C, th, e);
                            worst = fmax(worst, e);
                        }
                        free(x); free(w); free(dy); free(y); free(y0);
                        free(dx); free(dx0); free(dw); free(dw0);
                    }
        print_message("%-6s depthwise fwd/bwd, 168 shapes x 2 thread counts: worst rel err %.1e\n",
                      t->name, worst);
    }
    restore_auto();
}

static void test_fused_inference_matches_oracle(void **state)
{
    (void)state;
    FOR_EACH_LEVEL(t)
    {
        double worst = 0;
        for (int a = 0; a < OP_ACT_COUNT; a++) {
            /* depthwise + BN + activation */
            for (int ci = 0; ci < N_CHANS; ci++) {
                int B = 2, H = 9, W = 7, C = chans[ci], k = 3 + 2 * (ci % 3), s = 1 + ci % 2;
                int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
                size_t nx = (size_t)B * H * W * C, ny = (size_t)B * Ho * Wo * C;
                float *x = buf(nx, 1), *w = buf((size_t)k * k * C, 1), *sc = buf(C, 1),
                      *sh = buf(C, 1), *y = buf(ny, 0), *y0 = buf(ny, 0);
                op_dw_forward_ref(y0, x, w, B, H, W, C, k, s);
                for (size_t i = 0; i < ny; i++)
                    y0[i] = act_ref(y0[i] * sc[i % C] + sh[i % C], (op_act)a);
                op_dw_bn_act_infer(&cx1, y, x, w, sc, sh, NULL, B, H, W, C, k, s, (op_act)a);
                double e = rel_err(y, y0, ny);
                if (e > 1e-5)
                    fail_msg("%s: dw infer %s C=%d k%d s%d: rel err %.2e", t->name,
                             op_act_name((op_act)a), C, k, s, e);
                worst = fmax(worst, e);
                free(x); free(w); free(sc); free(sh); free(y); free(y0);
            }
            /* pointwise + BN (+ residual) + activation, rows and columns with tails */
            static const int shapes[][3] = {{1, 3, 1}, {7, 8, 5}, {13, 16, 17}, {29, 24, 33},
                                            {64, 40, 50}, {9, 17, 96}, {70, 96, 24}};
            for (int si = 0; si < 7; si++) {
                int N = shapes[si][0], Ci = shapes[si][1], Co = shapes[si][2];
                float *x = buf((size_t)N * Ci, 1), *w = buf((size_t)Ci * Co, 1), *sc = buf(Co, 1),
                      *sh = buf(Co, 1), *res = buf((size_t)N * Co, 1), *y = buf((size_t)N * Co, 0),
                      *y0 = buf((size_t)N * Co, 0);
                for (int with_res = 0; with_res <= 1; with_res++) {
                    for (int r = 0; r < N; r++)
                        for (int c = 0; c < Co; c++) {
                            double acc = 0;
                            for (int i = 0; i < Ci; i++)
                                acc += (double)x[r * Ci + i] * w[i * Co + c];
                            float v = (float)acc * sc[c] + sh[c] + (with_res ? res[r * Co + c] : 0);
                            y0[r * Co + c] = act_ref(v, (op_act)a);
                        }
                    for (int th = 1; th <= 2; th++) {
                        op_pw_bn_act_infer(th == 1 ? &cx1 : &cx2, y, x, w, sc, sh,
                                           with_res ? res : NULL, N, Ci, Co, (op_act)a);
                        double e = rel_err(y, y0, (size_t)N * Co);
                        if (e > 1e-5)
                            fail_msg("%s: pw infer %s %dx%d->%d res=%d: rel err %.2e", t->name,
                                     op_act_name((op_act)a), N, Ci, Co, with_res, e);
                        worst = fmax(worst, e);
                    }
                }
                free(x); free(w); free(sc); free(sh); free(res); free(y); free(y0);
            }
        }
        print_message("%-6s fused dw/pw inference, every activation: worst rel err %.1e\n", t->name,
                      worst);
    }
    restore_auto();
}

/* Batch norm (training and eval), activations, pooling and SE scaling: each
 * level against the oracle of its definition, computed here in double. */
static void test_elementwise_and_bn_match_oracle(void **state)
{
    (void)state;
    FOR_EACH_LEVEL(t)
    {
        double worst = 0;
        for (int a = 0; a < OP_ACT_COUNT; a++)
            for (int ci = 0; ci < N_CHANS; ci++) {
                int N = 37, C = chans[ci];
                size_t n = (size_t)N * C;
                float *z = buf(n, 4), *dy = buf(n, 1), *g = buf(C, 1), *b = buf(C, 1);
                float *rm = buf(C, 0), *rv = buf(C, 0), *mean = buf(C, 0), *rstd = buf(C, 0);
                float *y = buf(n, 0), *y0 = buf(n, 0), *dz = buf(n, 0), *dz0 = buf(n, 0);
                float *dg = buf(C, 0), *db = buf(C, 0);
                for (int c = 0; c < C; c++)
                    rv[c] = 1;
                op_bn_act_forward(&cx2, y, mean, rstd, z, g, b, rm, rv, N, C, (op_act)a, 1, 0.1f);
                op_bn_act_backward(&cx2, dz, dg, db, dy, z, mean, rstd, g, b, N, C, (op_act)a);
                for (int c = 0; c < C; c++) {
                    double m = 0, v = 0, s1 = 0, s2 = 0;
                    for (int r = 0; r < N; r++)
                        m += z[r * C + c];
                    m /= N;
                    for (int r = 0; r < N; r++)
                        v += (z[r * C + c] - m) * (z[r * C + c] - m);
                    double rs = 1 / sqrt(v / N + OP_BN_EPS), dh[64], xh[64];
                    for (int r = 0; r < N; r++) {
                        xh[r] = (z[r * C + c] - m) * rs;
                        float h = (float)(g[c] * xh[r] + b[c]);
                        y0[r * C + c] = act_ref(h, (op_act)a);
                        dh[r] = dy[r * C + c] * act_d_ref(h, (op_act)a);
                        s1 += dh[r];
                        s2 += dh[r] * xh[r];
                    }
                    for (int r = 0; r < N; r++)
                        dz0[r * C + c] = (float)(g[c] * rs * (dh[r] - s1 / N - xh[r] * s2 / N));
                }
                double e = rel_err(y, y0, n);
                if (e > 1e-5)
                    fail_msg("%s: bn forward %s C=%d: rel err %.2e", t->name, op_act_name((op_act)a), C, e);
                worst = fmax(worst, e);
                e = rel_err(dz, dz0, n);
                if (e > 1e-4)
                    fail_msg("%s: bn backward %s C=%d: rel err %.2e", t->name, op_act_name((op_act)a), C, e);

                /* element-wise activation and its backward */
                op_act_forward(y, z, n, (op_act)a);
                for (size_t i = 0; i < n; i++)
                    y0[i] = act_ref(z[i], (op_act)a);
                e = rel_err(y, y0, n);
                if (e > 1e-6)
                    fail_msg("%s: act %s: rel err %.2e", t->name, op_act_name((op_act)a), e);
                op_act_backward(dz, dy, z, n, (op_act)a);
                for (size_t i = 0; i < n; i++)
                    dz0[i] = dy[i] * act_d_ref(z[i], (op_act)a);
                e = rel_err(dz, dz0, n);
                if (e > 1e-6)
                    fail_msg("%s: act backward %s: rel err %.2e", t->name, op_act_name((op_act)a), e);
                free(z); free(dy); free(g); free(b); free(rm); free(rv); free(mean); free(rstd);
                free(y); free(y0); free(dz); free(dz0); free(dg); free(db);
            }
        /* pooling and SE scaling: exact sums of few terms */
        for (int ci = 0; ci < N_CHANS; ci++) {
            int B = 3, HW = 10, C = chans[ci];
            size_t n = (size_t)B * HW * C;
            float *x = buf(n, 1), *gate = buf((size_t)B * C, 1), *dy = buf(n, 1);
            float *y = buf(n, 0), *p = buf((size_t)B * C, 0), *dx = buf(n, 0), *dg = buf((size_t)B * C, 0);
            op_pool_forward(p, x, B, HW, C);
            op_scale_forward(y, x, gate, B, HW, C);
            op_scale_backward(dx, dg, dy, x, gate, B, HW, C);
            for (int b = 0; b < B; b++)
                for (int c = 0; c < C; c++) {
                    double s = 0, sg = 0;
                    for (int i = 0; i < HW; i++) {
                        size_t o = ((size_t)b * HW + i) * C + c;
                        s += x[o];
                        sg += (double)dy[o] * x[o];
                        assert_true(fabsf(y[o] - x[o] * gate[b * C + c]) <= 1e-6f);
                        assert_true(fabsf(dx[o] - dy[o] * gate[b * C + c]) <= 1e-6f);
                    }
                    assert_true(fabs(p[b * C + c] - s / HW) <= 1e-5);
                    assert_true(fabs(dg[b * C + c] - sg) <= 1e-5 * (1 + fabs(sg)));
                }
            free(x); free(gate); free(dy); free(y); free(p); free(dx); free(dg);
        }
        print_message("%-6s batch norm, activations, pool, SE scale: worst rel err %.1e\n", t->name,
                      worst);
    }
    restore_auto();
}

/* The same level and thread count give the same bits, call after call. */
static void test_repeats_bit_for_bit(void **state)
{
    (void)state;
    FOR_EACH_LEVEL(t)
    {
        int B = 4, H = 12, W = 12, C = 40, k = 5, s = 1;
        size_t nx = (size_t)B * H * W * C, nw = (size_t)k * k * C;
        float *x = buf(nx, 1), *w = buf(nw, 1), *dy = buf(nx, 1);
        float *dx1 = buf(nx, 0), *dx2 = buf(nx, 0), *dw1 = buf(nw, 0), *dw2 = buf(nw, 0);
        op_dw_backward(&cx2, dx1, dw1, dy, x, w, B, H, W, C, k, s);
        op_dw_backward(&cx2, dx2, dw2, dy, x, w, B, H, W, C, k, s);
        assert_memory_equal(dx1, dx2, sizeof(float) * nx);
        assert_memory_equal(dw1, dw2, sizeof(float) * nw);
        free(x); free(w); free(dy); free(dx1); free(dx2); free(dw1); free(dw2);
    }
    restore_auto();
}

/* The int8 kernels at every level, in the ARM suite too (which links no
 * quant.c): pointwise and depthwise against an exact integer sum written
 * here (int32 is exact, so bit for bit), the uint8 quantizer against the
 * scalar level (test_quant checks that one against ev_quantize). */
static void ref_q_pw(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *b, int N, int Ci, int Co)
{
    for (int p = 0; p < N; p++)
        for (int o = 0; o < Co; o++) {
            int32_t s = b ? b[o] : 0;
            for (int i = 0; i < Ci; i++)
                s += ((int32_t)x[(size_t)p * Ci + i] - zx) * w[(size_t)i * Co + o];
            acc[(size_t)p * Co + o] = s;
        }
}

static void ref_q_dw(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *b, int B, int H, int W,
                     int C, int k, int s)
{
    int Ho = space_out_side(H, k, s), Wo = space_out_side(W, k, s), pad = (k - 1) / 2;
    for (int n = 0; n < B; n++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int c = 0; c < C; c++) {
                    int32_t v = b ? b[c] : 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * s + ky - pad, ix = ox * s + kx - pad;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                continue;   /* padding is the zero point: it adds nothing */
                            v += ((int32_t)x[(((size_t)n * H + iy) * W + ix) * C + c] - zx) * w[(ky * k + kx) * C + c];
                        }
                    acc[(((size_t)n * Ho + oy) * Wo + ox) * C + c] = v;
                }
}

/* 0..n-1 from this file's generator (the ARM suite links no base/pcg.c) */
static int ubounded(int n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)((rng_state >> 33) % (uint64_t)n);
}

static void test_int8_kernels_every_level(void **state)
{
    (void)state;
    const kern_table *scalar = kern_find("scalar", NULL);
    assert_non_null(scalar);
    FOR_EACH_LEVEL(t)
    {
        static const int shapes[][3] = {{1, 1, 1},   {7, 3, 5},    {33, 16, 24}, {49, 37, 19},
                                        {16, 64, 72}, {13, 96, 130}, {6, 8, 64}};
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int N = shapes[si][0], Ci = shapes[si][1], Co = shapes[si][2], zx = ubounded(256);
            uint8_t *x = malloc((size_t)N * Ci);
            int8_t *w = malloc((size_t)Ci * Co);
            int32_t *bias = malloc(sizeof(int32_t) * Co), *a = malloc(sizeof(int32_t) * N * Co),
                    *want = malloc(sizeof(int32_t) * N * Co);
            for (int i = 0; i < N * Ci; i++)
                x[i] = (uint8_t)ubounded(256);
            for (int i = 0; i < Ci * Co; i++)
                w[i] = (int8_t)(ubounded(255) - 127);
            for (int i = 0; i < Co; i++)
                bias[i] = ubounded(20001) - 10000;
            int8_t *wp = malloc(kern_qpw_size(Ci, Co));
            int32_t *cs = malloc(sizeof(int32_t) * Co);
            kern_qpw_pack(wp, cs, w, Ci, Co);
            t->q_pw(a, x, zx, wp, cs, bias, N, Ci, Co);
            ref_q_pw(want, x, zx, w, bias, N, Ci, Co);
            assert_memory_equal(a, want, sizeof(int32_t) * N * Co);
            free(x); free(w); free(bias); free(a); free(want); free(wp); free(cs);
        }
        for (int k = 3; k <= 7; k += 2)
            for (int s = 1; s <= 2; s++) {
                int B = 2, H = 9, W = 7, C = 19, zx = ubounded(256);
                int Ho = space_out_side(H, k, s), Wo = space_out_side(W, k, s);
                size_t nx = (size_t)B * H * W * C, ny = (size_t)B * Ho * Wo * C;
                uint8_t *x = malloc(nx);
                int8_t *w = malloc((size_t)k * k * C);
                int32_t *bias = malloc(sizeof(int32_t) * C), *a = malloc(sizeof(int32_t) * ny),
                        *want = malloc(sizeof(int32_t) * ny);
                for (size_t i = 0; i < nx; i++)
                    x[i] = (uint8_t)ubounded(256);
                for (int i = 0; i < k * k * C; i++)
                    w[i] = (int8_t)(ubounded(255) - 127);
                for (int i = 0; i < C; i++)
                    bias[i] = ubounded(2001) - 1000;
                t->q_dw(a, x, zx, w, bias, B, H, W, C, k, s);
                ref_q_dw(want, x, zx, w, bias, B, H, W, C, k, s);
                assert_memory_equal(a, want, sizeof(int32_t) * ny);
                free(x); free(w); free(bias); free(a); free(want);
            }
        /* the quantizer: ties, clamps, NaN and infinities beside random values */
        size_t n = 203;
        float *v = malloc(sizeof(float) * n);
        uint8_t *q = malloc(n), *qs = malloc(n);
        for (size_t i = 0; i < n; i++)
            v[i] = 4 * frand();
        v[0] = 0.5f, v[1] = 1.5f, v[2] = -0.5f, v[3] = 1e9f, v[4] = -1e9f, v[5] = NAN, v[6] = INFINITY, v[7] = -INFINITY;
        t->q_u8(q, v, n, 0.03125f, 128);
        scalar->q_u8(qs, v, n, 0.03125f, 128);
        assert_memory_equal(q, qs, n);
        free(v); free(q); free(qs);
    }
    restore_auto();
}

static void test_isa_names_are_checked(void **state)
{
    (void)state;
    nas_err err = {0};
    assert_null(kern_find("sse9", &err));
    assert_int_equal(err.code, NAS_EINVAL);
    assert_non_null(strstr(err.msg, "sse9"));
    assert_non_null(strstr(err.msg, "scalar"));   /* the known levels are listed */
    assert_non_null(kern_find("scalar", NULL));
    assert_non_null(kern_find("auto", NULL));
    /* a level this build or CPU lacks is refused, never silently replaced */
    for (int i = 0; i < kern_count(); i++)
        if (!kern_cpu_runs(kern_at(i))) {
            nas_err e2 = {0};
            assert_null(kern_find(kern_at(i)->name, &e2));
            assert_int_equal(e2.code, NAS_EUNSUPP);
            assert_non_null(strstr(e2.msg, "lacks"));
        }
#if defined(__x86_64__)
    nas_err e3 = {0};
    assert_null(kern_find("neon", &e3));
    assert_int_equal(e3.code, NAS_EINVAL);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_listed),
        cmocka_unit_test(test_depthwise_matches_oracle),
        cmocka_unit_test(test_fused_inference_matches_oracle),
        cmocka_unit_test(test_elementwise_and_bn_match_oracle),
        cmocka_unit_test(test_repeats_bit_for_bit),
        cmocka_unit_test(test_int8_kernels_every_level),
        cmocka_unit_test(test_isa_names_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
