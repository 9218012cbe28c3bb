/* test_quant.c — post-training int8 quantization (evaluator/quant.c, qkern.c,
 * the QDQ export in onnx.c).
 *
 * Hand values for quantize / dequantize and requantization; round trips; the
 * int8 kernels against their scalar oracles bit for bit (int32 sums are
 * exact); the ev_qnet's float mode against the engine's own ev_net_infer
 * (folding is right); the int8 engine against the float reference of the same
 * arithmetic; the exported QDQ model through Debian's onnx checker (full
 * check; its Gemms int8, the file smaller for it) and ONNX Runtime, whose
 * int8 outputs must be close to nas's quantized reference; and the errors (no calibration, 0 images, --keep-bn).
 * Run from the repository root (tests/onnx_check.py, tests/ort_run.js). */
#include "tests/testutil.h"
#include "tests/nethelp.h"
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"
#include "evaluator/quant.h"
#include "evaluator/kern.h"
#include "tests/netrand.h"

#include <math.h>


/* ---- primitives ------------------------------------------------------------ */

static void qparam_hand_values(void **state)
{
    (void)state;
    ev_qparam p = ev_qparam_u8(-1.0f, 3.0f);   /* 4 / 255, zero round(255 / 4) = 64 */
    assert_float_equal(p.scale, 4.0f / 255.0f, 1e-9);
    assert_int_equal(p.zero, 64);
    p = ev_qparam_u8(0.5f, 2.0f);              /* widened to [0, 2] */
    assert_int_equal(p.zero, 0);
    assert_float_equal(p.scale, 2.0f / 255.0f, 1e-9);
    p = ev_qparam_u8(-2.0f, -1.0f);            /* widened to [-2, 0] */
    assert_int_equal(p.zero, 255);
    p = ev_qparam_u8(0.0f, 0.0f);              /* no range: scale 1 */
    assert_float_equal(p.scale, 1.0f, 0);
    assert_int_equal(p.zero, 0);

    ev_qparam h = {0.5f, 10};
    assert_int_equal(ev_quantize(1.0f, h, 0, 255), 12);
    assert_int_equal(ev_quantize(0.25f, h, 0, 255), 10);    /* 0.5 rounds half to even: 0 */
    assert_int_equal(ev_quantize(0.75f, h, 0, 255), 12);    /* 1.5 -> 2 */
    assert_int_equal(ev_quantize(-0.25f, h, 0, 255), 10);   /* -0.5 -> -0 */
    assert_int_equal(ev_quantize(-100.0f, h, 0, 255), 0);   /* saturates */
    assert_int_equal(ev_quantize(1e30f, h, 0, 255), 255);   /* no overflow on the way */
    assert_int_equal(ev_quantize(-1e30f, h, -127, 127), -127);
    assert_int_equal(ev_quantize(NAN, h, 0, 255), 10);
    assert_float_equal(ev_dequantize(12, h), 1.0f, 0);
    assert_float_equal(ev_dequantize(0, h), -5.0f, 0);
}

/* Every uint8 value survives dequantize -> quantize; a real value moves by at
 * most half a step inside the range. */
static void round_trips(void **state)
{
    (void)state;
    nas_pcg32 r;
    nas_pcg32_seed(&r, 3, 4);
    for (int t = 0; t < 50; t++) {
        float lo = nr_urand(&r, -8.0f, 0.0f), hi = nr_urand(&r, 0.01f, 8.0f);
        ev_qparam p = ev_qparam_u8(lo, hi);
        for (int q = 0; q < 256; q++)
            assert_int_equal(ev_quantize(ev_dequantize(q, p), p, 0, 255), q);
        for (int j = 0; j < 100; j++) {
            float x = nr_urand(&r, lo, hi);
            float back = ev_dequantize(ev_quantize(x, p, 0, 255), p);
            assert_true(fabsf(back - x) <= 0.5f * p.scale * 1.0001f);
        }
        assert_float_equal(ev_dequantize(ev_quantize(0.0f, p, 0, 255), p), 0.0f, 0);   /* 0 exact */
    }
}

static void weights_and_bias_hand_values(void **state)
{
    (void)state;
    const float w[6] = {0.5f, -1.27f, 0.0f, /* row 2: */ 0.0f, 0.0f, 0.0f};
    int8_t wq[6];
    float s[2];
    evq_quant_weights(w, 2, 3, wq, s);
    assert_float_equal(s[0], 1.27f / 127.0f, 1e-9);
    assert_int_equal(wq[0], 50);
    assert_int_equal(wq[1], -127);
    assert_int_equal(wq[2], 0);
    assert_float_equal(s[1], 1.0f, 0);   /* an all-zero channel */
    const float b[2] = {0.3f, -1e12f};
    int32_t bq[2];
    const float sw[2] = {0.01f, 0.01f};
    evq_quant_bias(b, 2, 0.1f, sw, bq);   /* 0.3 / 0.001 = 300 */
    assert_int_equal(bq[0], 300);
    assert_int_equal(bq[1], INT32_MIN);  /* saturated, not wrapped */
}

/* acc * mult, the activation, then the output grid. */
static void requant_hand_values(void **state)
{
    (void)state;
    const int32_t acc[4] = {100, -100, 1000, 7};
    const float mult[4] = {0.01f, 0.01f, 0.01f, 0.5f};   /* 1, -1, 10, 3.5 */
    ev_qparam py = {0.05f, 20};
    uint8_t y[4];
    float tmp[4];
    for (int fast = 0; fast < 2; fast++) {   /* the oracle, then the kernel layer's */
        if (fast)
            evq_requant(y, acc, 1, 4, mult, OP_NONE, py);
        else
            evq_requant_ref(y, acc, 1, 4, mult, OP_NONE, py, tmp);
        assert_int_equal(y[0], 40);    /* 1 / 0.05 + 20 */
        assert_int_equal(y[1], 0);     /* -1 / 0.05 + 20 = 0 */
        assert_int_equal(y[2], 220);   /* 200 + 20 */
        assert_int_equal(y[3], 90);    /* 70 + 20 */
        if (fast)
            evq_requant(y, acc, 1, 4, mult, OP_RELU6, py);
        else
            evq_requant_ref(y, acc, 1, 4, mult, OP_RELU6, py, tmp);
        assert_int_equal(y[0], 40);
        assert_int_equal(y[1], 20);    /* relu6(-1) = 0: the zero point */
        assert_int_equal(y[2], 140);   /* relu6(10) = 6: 120 + 20 */
        assert_int_equal(y[3], 90);
    }
}

/* ---- kernels against their oracles -------------------------------------- */

static void fill_u8(nas_pcg32 *r, uint8_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (uint8_t)nas_pcg32_bounded(r, 256);
}

static void fill_s8(nas_pcg32 *r, int8_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (int8_t)((int)nas_pcg32_bounded(r, 255) - 127);
}

/* Every kernel level this CPU runs, each made active in turn; auto after. */
#define FOR_EACH_LEVEL(t)                                                 \
    for (int li_ = 0; li_ < kern_count(); li_++)                          \
        for (const kern_table *t = kern_at(li_); t; t = NULL)             \
            if (kern_cpu_runs(t) && (kern_use(t), 1))

static void pw_one_level(void);
static void conv_one_level(void);
static void dw_one_level(void);

static void pw_matches_oracle(void **state)
{
    (void)state;
    FOR_EACH_LEVEL(t) pw_one_level(), conv_one_level();
    kern_use(kern_find("auto", NULL));
}

static void dw_matches_oracle(void **state)
{
    (void)state;
    FOR_EACH_LEVEL(t) dw_one_level();
    kern_use(kern_find("auto", NULL));
}

/* The vector quantizer against ev_quantize (halves, ties to even; the
 * clamps, NaN and infinities) and the dequantizer against ev_dequantize, at every level. */
static void u8_matches_ev_quantize(void **state)
{
    (void)state;
    ev_qparam ps[3] = {{.scale = 0.05f, .zero = 17}, {.scale = 1.0f, .zero = 0}, {.scale = 3e-3f, .zero = 255}};
    enum { N = 67 };
    float x[N];
    nas_pcg32 r;
    nas_pcg32_seed(&r, 3, 4);
    FOR_EACH_LEVEL(t) {
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < N; i++)
                x[i] = (float)((nas_pcg32_double(&r) - 0.5) * 40 * ps[k].scale * 255);
            x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 1e30f, x[4] = -1e30f;
            x[5] = 2.5f * ps[k].scale, x[6] = 3.5f * ps[k].scale, x[7] = -0.5f * ps[k].scale;
            uint8_t q[N];
            evq_u8(q, x, N, ps[k]);
            float back[N];
            evq_f32(back, q, N, ps[k]);
            for (int i = 0; i < N; i++)
                if (back[i] != ev_dequantize(q[i], ps[k]))
                    fail_msg("%s: dequantize %d: %g, ev_dequantize %g", t->name, q[i], back[i],
                             ev_dequantize(q[i], ps[k]));
            for (int i = 0; i < N; i++)
                if (q[i] != (uint8_t)ev_quantize(x[i], ps[k], 0, 255))
                    fail_msg("%s: x %g (scale %g, zero %d): %d, ev_quantize %d", t->name, x[i], ps[k].scale,
                             ps[k].zero, q[i], ev_quantize(x[i], ps[k], 0, 255));
        }
    }
    kern_use(kern_find("auto", NULL));
}

static void pw_one_level(void)
{
    nas_pcg32 r;
    nas_pcg32_seed(&r, 5, 6);
    static const int shapes[][3] = {{1, 1, 1},    {7, 3, 5},     {5, 5, 33},  {3, 7, 70},  {49, 16, 24},
                                    {13, 96, 17}, {4, 576, 8},   {6, 8, 64},  {7, 13, 65}, {25, 40, 200},
                                    {1, 1280, 10}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int N = shapes[t][0], Ci = shapes[t][1], Co = shapes[t][2];
        uint8_t *x = malloc((size_t)N * Ci);
        int8_t *w = malloc((size_t)Ci * Co);
        int32_t *b = malloc(sizeof(int32_t) * Co), *a = malloc(sizeof(int32_t) * N * Co),
                *want = malloc(sizeof(int32_t) * N * Co);
        fill_u8(&r, x, (size_t)N * Ci);
        fill_s8(&r, w, (size_t)Ci * Co);
        for (int o = 0; o < Co; o++)
            b[o] = (int32_t)nas_pcg32_bounded(&r, 200001) - 100000;
        int zx = (int)nas_pcg32_bounded(&r, 256);
        int8_t *wp = malloc(kern_qpw_size(Ci, Co));
        int32_t *cs = malloc(sizeof(int32_t) * Co);
        kern_qpw_pack(wp, cs, w, Ci, Co);
        evq_pw_s32(a, x, zx, wp, cs, b, N, Ci, Co);
        evq_pw_s32_ref(want, x, zx, w, b, N, Ci, Co);
        assert_memory_equal(a, want, sizeof(int32_t) * N * Co);
        free(x), free(w), free(b), free(a), free(want), free(wp), free(cs);
    }
}

/* The dense conv (the stem) by im2col and the pointwise kernel against the
 * direct integer sum, odd sizes and both strides. */
static void conv_one_level(void)
{
    nas_pcg32 r;
    nas_pcg32_seed(&r, 13, 14);
    static const int shapes[][5] = {{1, 9, 1, 16, 3}, {2, 8, 3, 24, 3}, {1, 7, 5, 13, 5}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++)
        for (int s = 1; s <= 2; s++) {
            int B = shapes[t][0], H = shapes[t][1], Ci = shapes[t][2], Co = shapes[t][3], k = shapes[t][4];
            int Ho = nh_side(H, k, s), kin = k * k * Ci;
            size_t nx = (size_t)B * H * H * Ci, no = (size_t)B * Ho * Ho * Co;
            uint8_t *x = malloc(nx), *col = malloc((size_t)B * Ho * Ho * kin);
            int8_t *w = malloc((size_t)kin * Co), *wp = malloc(kern_qpw_size(kin, Co));
            int32_t *b = malloc(sizeof(int32_t) * Co), *cs = malloc(sizeof(int32_t) * Co);
            int32_t *a = malloc(sizeof(int32_t) * no), *want = malloc(sizeof(int32_t) * no);
            fill_u8(&r, x, nx);
            fill_s8(&r, w, (size_t)kin * Co);
            for (int o = 0; o < Co; o++)
                b[o] = (int32_t)nas_pcg32_bounded(&r, 2001) - 1000;
            int zx = (int)nas_pcg32_bounded(&r, 256);
            kern_qpw_pack(wp, cs, w, kin, Co);
            evq_conv_im2col(a, x, zx, wp, cs, b, B, H, H, Ci, Co, k, s, col);
            evq_conv_s32(want, x, zx, w, b, B, H, H, Ci, Co, k, s);
            assert_memory_equal(a, want, sizeof(int32_t) * no);
            free(x), free(col), free(w), free(wp), free(b), free(cs), free(a), free(want);
        }
}

static void dw_one_level(void)
{
    nas_pcg32 r;
    nas_pcg32_seed(&r, 8, 9);
    for (int k = 3; k <= 7; k += 2)
        for (int s = 1; s <= 2; s++)
            for (int t = 0; t < 4; t++) {   /* channels: scalar only, 8 lanes, 16 + tail, 16 + 8 + tail */
                int B = 1 + t % 2, H = 5 + 3 * t, C = (int[]){1, 8, 19, 27}[t];
                int Ho = nh_side(H, k, s);
                uint8_t *x = malloc((size_t)B * H * H * C);
                int8_t *w = malloc((size_t)k * k * C);
                int32_t *b = malloc(sizeof(int32_t) * C);
                size_t no = (size_t)B * Ho * Ho * C;
                int32_t *a = malloc(sizeof(int32_t) * no), *want = malloc(sizeof(int32_t) * no);
                fill_u8(&r, x, (size_t)B * H * H * C);
                fill_s8(&r, w, (size_t)k * k * C);
                for (int c = 0; c < C; c++)
                    b[c] = (int32_t)nas_pcg32_bounded(&r, 2001) - 1000;
                int zx = (int)nas_pcg32_bounded(&r, 256);
                evq_dw_s32(a, x, zx, w, b, B, H, H, C, k, s);
                evq_dw_s32_ref(want, x, zx, w, b, B, H, H, C, k, s);
                assert_memory_equal(a, want, sizeof(int32_t) * no);
                free(x), free(w), free(b), free(a), free(want);
            }
}

/* The one-pass requantization gives its oracle's bytes at every level, for
 * every activation, rows longer than its block of 256 included. */
static void requant_matches_oracle(void **state)
{
    (void)state;
    nas_pcg32 r;
    nas_pcg32_seed(&r, 11, 12);
    static const op_act acts[] = {OP_NONE, OP_RELU, OP_RELU6, OP_HSWISH, OP_SWISH, OP_SIGMOID, OP_HSIGMOID};
    static const int shapes[][2] = {{3, 7}, {2, 300}, {5, 16}, {2, 700}};   /* rows per block, one row, pieces */
    FOR_EACH_LEVEL(t) {
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int N = shapes[si][0], C = shapes[si][1];
            int32_t *acc = malloc(sizeof(int32_t) * (size_t)N * C);
            float *mult = malloc(sizeof(float) * C), *tmp = malloc(sizeof(float) * C);
            uint8_t *y = malloc((size_t)N * C), *want = malloc((size_t)N * C);
            for (int i = 0; i < N * C; i++)
                acc[i] = (int32_t)nas_pcg32_bounded(&r, 40001) - 20000;
            for (int c = 0; c < C; c++)
                mult[c] = (float)(1e-4 + 4e-4 * nas_pcg32_double(&r));
            ev_qparam py = {0.03f, (int32_t)nas_pcg32_bounded(&r, 256)};
            for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
                evq_requant(y, acc, N, C, mult, acts[a], py);
                evq_requant_ref(want, acc, N, C, mult, acts[a], py, tmp);
                if (memcmp(y, want, (size_t)N * C))
                    fail_msg("%s: requant %dx%d, activation %d differs from its oracle", t->name, N, C,
                             (int)acts[a]);
            }
            free(acc), free(mult), free(tmp), free(y), free(want);
        }
    }
    kern_use(kern_find("auto", NULL));
}

/* ---- whole networks --------------------------------------------------------- */
typedef struct {
    space_spec spec;
    space_net arch;
    ev_net *net;
    ev_tensor t[1024];
    int nt;
    ev_qnet *q;
    ev_split calib;          /* random images, NHWC */
} qcase;

/* A MobileNetV2-like spec (ReLU6, residuals) or, with v3, SE, h-swish, head,
 * fc and dropout (which the classifier's input point is read through). */
static void make_spec(space_spec *s, int v3, int in_ch)
{
    memset(s, 0, sizeof *s);
    s->resolution = 16;
    s->in_ch = in_ch;
    s->num_classes = 10;
    s->stem_ch = 8;
    s->stem_kernel = 3;
    s->stem_stride = 1;
    s->stem_act = v3 ? SPACE_ACT_HSWISH : SPACE_ACT_RELU6;
    s->n_stages = 3;
    space_act a = v3 ? SPACE_ACT_HSWISH : SPACE_ACT_RELU6;
    s->stages[0] = (space_stage){.kernel = 3, .expand = 1, .out_ch = 8, .repeats = 1, .stride = 1, .act = a};
    s->stages[1] = (space_stage){.kernel = 5, .expand = 4, .out_ch = 16, .repeats = 2, .stride = 2,
                                 .se_ratio = v3 ? 0.25 : 0, .act = v3 ? SPACE_ACT_RELU : a};
    s->stages[2] = (space_stage){.kernel = 7, .expand = 3, .out_ch = 24, .repeats = 2, .stride = 2,
                                 .se_ratio = v3 ? 0.25 : 0, .act = v3 ? SPACE_ACT_SWISH : a};
    s->head_ch = v3 ? 48 : 0;
    s->head_act = SPACE_ACT_HSWISH;
    s->fc_ch = v3 ? 32 : 0;
    s->fc_act = SPACE_ACT_HSWISH;
    s->dropout = v3 ? 0.2 : 0.0;
    s->se_base = SPACE_SE_OF_EXPANDED;
    s->se_act = SPACE_ACT_RELU;
    s->se_gate = SPACE_GATE_HSIGMOID;
}

static void qcase_make(qcase *c, int v3, int in_ch, int n_calib, uint64_t seed)
{
    nas_err e;
    nas_pcg32 r;
    nas_pcg32_seed(&r, seed, 11);
    make_spec(&c->spec, v3, in_ch);
    if (space_resolve(&c->spec, &c->arch, &e) != NAS_OK)
        fail_msg("%s", e.msg);
    ev_net_opts no = {.batch = 8, .training = 0, .threads = 1, .seed = seed};
    if (ev_net_create(&c->arch, &no, &c->net, &e) != NAS_OK)
        fail_msg("%s", e.msg);
    assert_true(nr_randomise_stats(c->net, &r) > 0);
    c->nt = ev_net_tensors(c->net, c->t, 1024);
    if (ev_qnet_create(&c->arch, c->t, c->nt, 8, &c->q, &e) != NAS_OK)
        fail_msg("%s", e.msg);
    ev_split *s = &c->calib;
    memset(s, 0, sizeof *s);
    s->n = n_calib;
    s->h = s->w = 16;
    s->c = in_ch;
    size_t n = (size_t)n_calib * 16 * 16 * in_ch;
    s->images = malloc(sizeof(float) * n);
    s->labels = calloc((size_t)n_calib, 1);
    assert_true(s->images && s->labels);
    for (size_t i = 0; i < n; i++)
        s->images[i] = nr_urand(&r, -1.5f, 2.5f);
}

static void qcase_free(qcase *c)
{
    ev_qnet_free(c->q);
    ev_net_free(c->net);
    free(c->calib.images);
    free(c->calib.labels);
}

/* The float mode (folded BN, plain convs) gives the engine's own logits. */
static void float_mode_matches_engine(void **state)
{
    (void)state;
    for (int v3 = 0; v3 <= 1; v3++) {
        qcase c;
        nas_err e;
        qcase_make(&c, v3, v3 ? 3 : 1, 8, 20 + v3);
        float want[80], got[80];
        assert_int_equal(ev_net_infer(c.net, c.calib.images, 8, want, &e), NAS_OK);
        assert_int_equal(ev_qnet_infer(c.q, EV_QMODE_FLOAT, c.calib.images, 8, got, &e), NAS_OK);
        double mx = 0;
        for (int i = 0; i < 80; i++) {
            assert_true(fabsf(got[i] - want[i]) <= 1e-4f + 1e-3f * fabsf(want[i]));
            mx = fmax(mx, fabs(want[i]));
        }
        assert_true(mx > 0.05);
        qcase_free(&c);
    }
}

static int argmax(const float *x, int K)
{
    int b = 0;
    for (int k = 1; k < K; k++)
        if (x[k] > x[b])
            b = k;
    return b;
}

/* The int8 engine against the float reference of the same arithmetic: they
 * differ only by float rounding of the conv sums (exact in int32), which can
 * move a value across a rounding boundary of the next grid now and then. */
static void int8_matches_reference(void **state)
{
    (void)state;
    for (int v3 = 0; v3 <= 1; v3++)
        for (int m = 0; m < 2; m++) {
            qcase c;
            nas_err e;
            qcase_make(&c, v3, 1 + 2 * m, 64, 30 + v3 + 2 * m);
            ev_quant_opts o;
            ev_quant_opts_default(&o);
            o.images = 64;
            o.method = m ? EV_CALIB_MINMAX : EV_CALIB_PERCENTILE;
            float lf[80], lr[80], lq[80];
            assert_int_equal(ev_qnet_infer(c.q, EV_QMODE_REF, c.calib.images, 8, lr, &e), NAS_EINVAL);
            assert_int_equal(ev_qnet_calibrate(c.q, &c.calib, &o, &e), NAS_OK);
            assert_non_null(strstr(ev_qnet_calibration(c.q), m ? "minmax on 64" : "percentile 99.99 on 64"));
            int agree = 0, agree_f = 0;
            double span = 0, dmax = 0;
            for (int b0 = 0; b0 < 64; b0 += 8) {
                const float *x = c.calib.images + (size_t)b0 * 16 * 16 * c.arch.in_ch;
                assert_int_equal(ev_qnet_infer(c.q, EV_QMODE_FLOAT, x, 8, lf, &e), NAS_OK);
                assert_int_equal(ev_qnet_infer(c.q, EV_QMODE_REF, x, 8, lr, &e), NAS_OK);
                assert_int_equal(ev_qnet_infer(c.q, EV_QMODE_INT8, x, 8, lq, &e), NAS_OK);
                for (int j = 0; j < 8; j++) {
                    agree += argmax(lr + 10 * j, 10) == argmax(lq + 10 * j, 10);
                    agree_f += argmax(lf + 10 * j, 10) == argmax(lq + 10 * j, 10);
                }
                for (int i = 0; i < 80; i++) {
                    span = fmax(span, fabs(lr[i]));
                    dmax = fmax(dmax, fabs(lr[i] - lq[i]));
                }
            }
            print_message("v3 %d %s: int8 vs reference: %d/64 argmax, max |diff| %.3g of %.3g; "
                          "vs float32 %d/64\n", v3, m ? "minmax" : "percentile", agree, dmax, span, agree_f);
            assert_true(agree >= 62);
            assert_true(dmax <= 0.05 * span);
            assert_true(agree_f >= 48);   /* random weights: quantization noise is larger than trained */
            qcase_free(&c);
        }
}

static void bad_calibration_is_refused(void **state)
{
    (void)state;
    qcase c;
    nas_err e;
    qcase_make(&c, 0, 1, 8, 40);
    ev_quant_opts o;
    ev_quant_opts_default(&o);
    o.images = 0;
    assert_int_equal(ev_qnet_calibrate(c.q, &c.calib, &o, &e), NAS_EINVAL);
    o.images = 9;   /* more than the split has */
    assert_int_equal(ev_qnet_calibrate(c.q, &c.calib, &o, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "the split has 8"));
    o.images = 8;
    o.percentile = 30;
    assert_int_equal(ev_qnet_calibrate(c.q, &c.calib, &o, &e), NAS_EINVAL);
    ev_export_opts xo;
    ev_export_opts_default(&xo);
    xo.spec = &c.spec;
    assert_int_equal(ev_export_onnx_int8(c.q, &xo, "/tmp/never.onnx", &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "not calibrated"));
    qcase_free(&c);
}

/* The int8 benchmark (--deploy int8): it times the int8 engine on the
 * network calibrated from the split given, or from made-up images when there
 * is none or its images are of another shape, and gives a latency and a
 * modelled energy; a zero batch is refused by the harness. */
static void int8_benchmark_runs(void **state)
{
    (void)state;
    qcase c;
    nas_err e;
    qcase_make(&c, 1, 3, 8, 41);
    ev_meter_opts mo;
    ev_meter_opts_default(&mo);
    mo.kind = "model";
    ev_meter *m = NULL;
    assert_int_equal(ev_meter_open(&mo, &m, &e), NAS_OK);
    ev_bench_opts bo;
    ev_bench_opts_default(&bo);
    bo.batch = 1, bo.warmup = 1, bo.repeats = 2, bo.min_seconds = 0.01, bo.threads = 1;
    ev_split other = c.calib;
    other.c = 1;   /* the wrong shape: not used */
    const ev_split *splits[3] = {&c.calib, NULL, &other};
    for (int k = 0; k < 3; k++) {
        ev_bench_result r;
        if (ev_bench_infer_int8(c.net, splits[k], 4, m, &bo, &r, &e) != NAS_OK)
            fail_msg("split %d: %s", k, e.msg);
        assert_true(r.latency_ms_p10 > 0 && r.latency_ms_median >= r.latency_ms_p10);
        assert_true(r.energy_mj_median > 0);
        assert_true(r.runs >= 2);
    }
    ev_bench_result r;
    bo.batch = 0;
    assert_int_not_equal(ev_bench_infer_int8(c.net, NULL, 4, m, &bo, &r, &e), NAS_OK);
    ev_meter_close(m);
    qcase_free(&c);
}

/* ---- the QDQ export in the checker and ONNX Runtime ---------------------- */

static void write_nchw(const char *path, const float *nhwc, int B, int H, int C)
{
    size_t per = (size_t)H * H * C;
    float *t = malloc(sizeof(float) * per * B);
    for (int b = 0; b < B; b++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < H; x++)
                for (int c = 0; c < C; c++)
                    t[b * per + ((size_t)c * H + y) * H + x] = nhwc[b * per + ((size_t)y * H + x) * C + c];
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(t, sizeof(float), per * B, f), per * B);
    fclose(f);
    free(t);
}

static void qdq_export_checks_and_runs_in_ort(void **state)
{
    (void)state;
    char dir[256], cmd[4096], path[2][512], in[2][512], out[2][512];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    float want[2][80], got[80], q8[2][80];
    for (int v3 = 0; v3 <= 1; v3++) {
        qcase c;
        nas_err e;
        qcase_make(&c, v3, v3 ? 3 : 1, 64, 50 + v3);
        ev_quant_opts o;
        ev_quant_opts_default(&o);
        o.images = 64;
        assert_int_equal(ev_qnet_calibrate(c.q, &c.calib, &o, &e), NAS_OK);
        assert_int_equal(ev_qnet_infer(c.q, EV_QMODE_REF, c.calib.images, 8, want[v3], &e), NAS_OK);
        assert_int_equal(ev_qnet_infer(c.q, EV_QMODE_INT8, c.calib.images, 8, q8[v3], &e), NAS_OK);
        snprintf(path[v3], sizeof path[v3], "%s/q%d.onnx", dir, v3);
        snprintf(in[v3], sizeof in[v3], "%s/q%d.in", dir, v3);
        snprintf(out[v3], sizeof out[v3], "%s/q%d.out", dir, v3);
        write_nchw(in[v3], c.calib.images, 8, 16, c.arch.in_ch);
        ev_export_opts xo;
        ev_export_opts_default(&xo);
        xo.spec = &c.spec;
        xo.out_dir = dir;
        xo.accuracy = 0.9;
        xo.accuracy_int8 = 0.89;
        xo.calib_data = "64 random images (test)";
        xo.keep_bn = 1;
        assert_int_equal(ev_export_onnx_int8(c.q, &xo, path[v3], &e), NAS_EINVAL);
        xo.keep_bn = 0;
        if (ev_export_onnx_int8(c.q, &xo, path[v3], &e) != NAS_OK)
            fail_msg("export: %s", e.msg);
        qcase_free(&c);
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/onnx_check.py --expect-op QuantizeLinear "
             "--expect-op DequantizeLinear --meta nas.quantization --meta nas.quantization.calibration "
             "--meta nas.accuracy.int8 --qdq-gemm '%s' '%s' >%s/check.txt", path[0], path[1], dir);
    assert_int_equal(system(cmd), 0);
    /* The classifier (the Gemm giving `logits`) and the v3 net's fc have int8
     * weights, and each file is smaller than with them float32 (--qdq-gemm). */
    snprintf(cmd, sizeof cmd, "grep '^gemm: [0-9]' %s/check.txt; "
             "grep -c '^gemm: logits int8 \\[10, ' %s/check.txt | grep -qx 2 && "
             "grep -q '^gemm: fc.gemm int8 \\[32, 48\\]' %s/check.txt", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    /* ONNX Runtime runs both of the v3 net's Gemms as QGemm (int8), not float. */
    snprintf(cmd, sizeof cmd, "node -e \"require(require.resolve('onnxruntime-node',{paths:[process.cwd()]}))"
             ".InferenceSession.create('%s',{optimizedModelFilePath:'%s/opt.onnx',graphOptimizationLevel:"
             "'all',intraOpNumThreads:1}).catch(e=>{console.error(e);process.exit(1)})\" 2>/dev/null && "
             "/usr/bin/python3 -c \"import onnx,sys;g=onnx.load('%s/opt.onnx').graph;"
             "o=[n.op_type for n in g.node];sys.exit(not (o.count('QGemm')==2 and 'Gemm' not in o))\"",
             path[1], dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'Calibration: 64 random images' %s/q0.model-card.md && "
             "grep -q '| int8 | 89.00%%' %s/q0.model-card.md", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "node tests/ort_run.js --threads 1 '%s' '%s' 8 '%s' '%s' '%s' 8 '%s' >/dev/null",
             path[0], in[0], out[0], path[1], in[1], out[1]);
    assert_int_equal(system(cmd), 0);
    for (int v3 = 0; v3 <= 1; v3++) {
        FILE *f = fopen(out[v3], "rb");
        assert_non_null(f);
        assert_int_equal(fread(got, sizeof(float), 81, f), 80);
        fclose(f);
        double span = 0, dmax = 0, dq = 0;
        int agree = 0;
        for (int i = 0; i < 80; i++) {
            span = fmax(span, fabs(want[v3][i]));
            dmax = fmax(dmax, fabs(got[i] - want[v3][i]));
            dq = fmax(dq, fabs(got[i] - q8[v3][i]));
        }
        for (int j = 0; j < 8; j++)
            agree += argmax(got + 10 * j, 10) == argmax(q8[v3] + 10 * j, 10);
        print_message("v3 %d: ORT int8 vs nas reference max |diff| %.3g, vs nas int8 %.3g (logits up "
                      "to %.3g); argmax agree %d/8\n", v3, dmax, dq, span, agree);
        assert_true(dmax <= 0.05 * span);
        assert_true(agree >= 7);
    }
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(qparam_hand_values),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(weights_and_bias_hand_values),
        cmocka_unit_test(requant_hand_values),
        cmocka_unit_test(requant_matches_oracle),
        cmocka_unit_test(pw_matches_oracle),
        cmocka_unit_test(dw_matches_oracle),
        cmocka_unit_test(u8_matches_ev_quantize),
        cmocka_unit_test(float_mode_matches_engine),
        cmocka_unit_test(int8_matches_reference),
        cmocka_unit_test(bad_calibration_is_refused),
        cmocka_unit_test(int8_benchmark_runs),
        cmocka_unit_test(qdq_export_checks_and_runs_in_ort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
