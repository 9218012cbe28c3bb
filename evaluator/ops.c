/* ops.c — forward/backward pairs of every layer the space emits (see ops.h).
 *
 * Pointwise convs, the stem and linears are GEMMs through OpenBLAS. The
 * depthwise conv, the one op BLAS cannot do, has a plain scalar oracle and an
 * AVX-512 version vectorised over contiguous channels (16 per register),
 * specialised per kernel size and stride by inlining one template with
 * constant K and S. Reductions over the batch (batch-norm statistics,
 * depthwise weight gradients) use per-thread partials added in thread order:
 * the same thread count gives the same bits.
 */
/* The element-wise and per-channel loops below are written to vectorise;
 * -O2's cheap cost model leaves most of them scalar. No fast-math: results
 * must match PyTorch to 1e-4 and be reproducible. */
#pragma GCC optimize("O3", "no-math-errno")

#include "evaluator/ops.h"

#include <math.h>
#include <string.h>
#include <omp.h>
#include <cblas.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

const char *op_act_name(op_act a)
{
    static const char *names[OP_ACT_COUNT] = {"none", "relu", "relu6", "hswish",
                                              "swish", "sigmoid", "hsigmoid"};
    return (unsigned)a < OP_ACT_COUNT ? names[a] : "?";
}

/* One pool of threads: OpenMP's. OpenBLAS runs single-threaded inside each
 * OpenMP thread (op_gemm_par splits the work), because two pools spinning on
 * two cores starve each other (measured: most of a step went to libgomp's
 * barriers and sched_yield). */
void ops_set_threads(int threads)
{
    if (threads < 1)
        threads = 1;
    omp_set_num_threads(threads);
    openblas_set_num_threads(1);
}

size_t ops_partial_floats(int threads, int max_c, int max_k)
{
    size_t per = (size_t)max_k * max_k * max_c;
    if (per < (size_t)4 * max_c)   /* batch norm: two double sums per channel */
        per = (size_t)4 * max_c;
    per = (per + 15) & ~(size_t)15;   /* each thread's slice on its own cache line */
    return per * (size_t)(threads < 1 ? 1 : threads);
}

static size_t partial_stride(int max_c_needed, int kk)
{
    size_t per = (size_t)kk * max_c_needed;
    return (per + 15) & ~(size_t)15;
}

void op_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void op_gemm_par(const op_ctx *cx, int trans_a, int trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    int T = cx->threads < 1 ? 1 : cx->threads;
    long work = (long)M * N * K;
    if (T == 1 || work < 200000) {
        op_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the larger of M and N in blocks of 16: each thread's share of C
     * is computed whole, so the result does not depend on the split. */
    int split_m = M >= N;
    int len = split_m ? M : N;
    int blocks = (len + 15) / 16;
    if (blocks < T)
        T = blocks;
#pragma omp parallel num_threads(T)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int b0 = blocks * t / nt, b1 = blocks * (t + 1) / nt;
        int lo = b0 * 16, hi = b1 * 16 < len ? b1 * 16 : len;
        if (hi > lo) {
            if (split_m)
                op_gemm(trans_a, trans_b, hi - lo, N, K, alpha,
                        trans_a ? A + lo : A + (size_t)lo * lda, lda, B, ldb, beta,
                        C + (size_t)lo * ldc, ldc);
            else
                op_gemm(trans_a, trans_b, M, hi - lo, K, alpha, A, lda,
                        trans_b ? B + (size_t)lo * ldb : B + lo, ldb, beta, C + lo, ldc);
        }
    }
}

int op_out_side(int in, int k, int stride)
{
    int p = (k - 1) / 2;
    return (in + 2 * p - k) / stride + 1;
}

/* ======================= full convolution (stem) ========================= */

void op_conv_im2col(const op_ctx *cx, float *col, const float *x, int B, int H, int W, int Cin,
                   int k, int s)
{
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s), p = (k - 1) / 2;
    int kc = k * k * Cin;
    long rows = (long)B * Ho;
#pragma omp parallel for schedule(static) num_threads(cx->threads)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / Ho), oy = (int)(r % Ho);
        for (int ox = 0; ox < Wo; ox++) {
            float *c = col + ((size_t)r * Wo + ox) * kc;
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * s - p + ky;
                for (int kx = 0; kx < k; kx++) {
                    int ix = ox * s - p + kx;
                    float *dst = c + (ky * k + kx) * Cin;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                        memset(dst, 0, sizeof(float) * Cin);
                    else
                        memcpy(dst, x + (((size_t)b * H + iy) * W + ix) * Cin, sizeof(float) * Cin);
                }
            }
        }
    }
}

void op_conv_forward(const op_ctx *cx, float *y, float *col, const float *x, const float *w,
                     int B, int H, int W, int Cin, int Cout, int k, int s)
{
    int M = B * op_out_side(H, k, s) * op_out_side(W, k, s), K = k * k * Cin;
    op_conv_im2col(cx, col, x, B, H, W, Cin, k, s);
    op_gemm_par(cx, 0, 0, M, Cout, K, 1.0f, col, K, w, Cout, 0.0f, y, Cout);
}

void op_conv_backward(const op_ctx *cx, float *dw, float *col, const float *dy, const float *x,
                      int B, int H, int W, int Cin, int Cout, int k, int s)
{
    int M = B * op_out_side(H, k, s) * op_out_side(W, k, s), K = k * k * Cin;
    op_conv_im2col(cx, col, x, B, H, W, Cin, k, s);   /* recomputed: cheaper than keeping it */
    op_gemm_par(cx, 1, 0, K, Cout, M, 1.0f, col, K, dy, Cout, 1.0f, dw, Cout);
}

/* ======================= pointwise convolution =========================== */

void op_pw_forward(const op_ctx *cx, float *y, const float *x, const float *w, int N, int Cin,
                   int Cout)
{
    op_gemm_par(cx, 0, 0, N, Cout, Cin, 1.0f, x, Cin, w, Cout, 0.0f, y, Cout);
}

void op_pw_backward(const op_ctx *cx, float *dx, float *dw, const float *dy, const float *x,
                    const float *w, int N, int Cin, int Cout, int dx_accumulate)
{
    op_gemm_par(cx, 1, 0, Cin, Cout, N, 1.0f, x, Cin, dy, Cout, 1.0f, dw, Cout);
    if (dx)
        op_gemm_par(cx, 0, 1, N, Cin, Cout, 1.0f, dy, Cout, w, Cout, dx_accumulate ? 1.0f : 0.0f,
                    dx, Cin);
}

/* ======================= depthwise convolution: the oracle =============== */

void op_dw_forward_ref(float *y, const float *x, const float *w, int B, int H, int W, int C, int k,
                       int s)
{
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s), p = (k - 1) / 2;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int c = 0; c < C; c++) {
                    float acc = 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * s - p + ky, ix = ox * s - p + kx;
                            if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                acc += x[(((size_t)b * H + iy) * W + ix) * C + c] *
                                       w[(ky * k + kx) * C + c];
                        }
                    y[(((size_t)b * Ho + oy) * Wo + ox) * C + c] = acc;
                }
}

void op_dw_backward_ref(float *dx, float *dw, const float *dy, const float *x, const float *w, int B,
                        int H, int W, int C, int k, int s)
{
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s), p = (k - 1) / 2;
    memset(dx, 0, sizeof(float) * (size_t)B * H * W * C);
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int c = 0; c < C; c++) {
                    float g = dy[(((size_t)b * Ho + oy) * Wo + ox) * C + c];
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * s - p + ky, ix = ox * s - p + kx;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                continue;
                            size_t xi = (((size_t)b * H + iy) * W + ix) * C + c;
                            dx[xi] += g * w[(ky * k + kx) * C + c];
                            dw[(ky * k + kx) * C + c] += g * x[xi];
                        }
                }
}

/* Scalar epilogue of the fallbacks: y = act(z * scale + shift (+ res)). */
static void affine_act_rows(float *y, const float *z, const float *scale, const float *shift,
                            const float *res, long N, int C, op_act act);

/* ======================= depthwise convolution: AVX-512 ================== */
#ifdef __AVX512F__

#define INL static inline __attribute__((always_inline))

static inline float act_f(float h, op_act act);

/* Stores act(v) under mask m (a run of low lanes). The piecewise-linear
 * activations are done in registers; swish and sigmoid go through act_f
 * lane by lane, as the element-wise ops do. NaN stays NaN where act_f keeps it. */
INL void store_act(float *dst, __mmask16 m, __m512 v, op_act act)
{
    const __m512 zero = _mm512_setzero_ps(), three = _mm512_set1_ps(3.0f),
                 six = _mm512_set1_ps(6.0f), sixth = _mm512_set1_ps(1.0f / 6);
    switch (act) {
    case OP_NONE: break;
    case OP_RELU: v = _mm512_max_ps(v, zero); break;
    case OP_RELU6: v = _mm512_min_ps(six, _mm512_max_ps(zero, v)); break;
    case OP_HSWISH:
        v = _mm512_mul_ps(_mm512_mul_ps(v, _mm512_min_ps(six, _mm512_max_ps(zero, _mm512_add_ps(v, three)))),
                          sixth);
        break;
    case OP_HSIGMOID:
        v = _mm512_mul_ps(_mm512_min_ps(six, _mm512_max_ps(zero, _mm512_add_ps(v, three))), sixth);
        break;
    default: {
        float t[16];
        _mm512_storeu_ps(t, v);
        int n = __builtin_popcount((unsigned)m);
        for (int i = 0; i < n; i++)
            dst[i] = act_f(t[i], act);
        return;
    }
    }
    _mm512_mask_storeu_ps(dst, m, v);
}

INL __mmask16 tail_mask(int C, int c0)
{
    int n = C - c0;
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* One output row (b, oy), all channels. K and S are compile-time constants at
 * every call site, so the tap loops unroll and the weights stay in registers. */
INL void dw_fwd_row(float *yrow, const float *ximg, const float *w, int H, int W, int C, int Wo,
                    int oy, const float *scale, const float *shift, op_act act, const int K,
                    const int S)
{
    const int P = (K - 1) / 2;
    for (int c0 = 0; c0 < C; c0 += 16) {
        __mmask16 m = tail_mask(C, c0);
        __m512 sc = _mm512_setzero_ps(), sh = _mm512_setzero_ps();
        if (scale) {
            sc = _mm512_maskz_loadu_ps(m, scale + c0);
            sh = _mm512_maskz_loadu_ps(m, shift + c0);
        }
        __m512 wv[K * K];
        for (int t = 0; t < K * K; t++)
            wv[t] = _mm512_maskz_loadu_ps(m, w + (size_t)t * C + c0);
        for (int ox = 0; ox < Wo; ox++) {
            __m512 acc = _mm512_setzero_ps();
            int ix0 = ox * S - P;
            int inner = ix0 >= 0 && ix0 + K <= W;
            for (int ky = 0; ky < K; ky++) {
                int iy = oy * S - P + ky;
                if (iy < 0 || iy >= H)
                    continue;
                const float *xr = ximg + (size_t)iy * W * C + c0;
                if (inner) {
                    for (int kx = 0; kx < K; kx++)
                        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr + (size_t)(ix0 + kx) * C),
                                              wv[ky * K + kx], acc);
                } else {
                    for (int kx = 0; kx < K; kx++) {
                        int ix = ix0 + kx;
                        if (ix < 0 || ix >= W)
                            continue;
                        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xr + (size_t)ix * C),
                                              wv[ky * K + kx], acc);
                    }
                }
            }
            if (scale)
                store_act(yrow + (size_t)ox * C + c0, m, _mm512_fmadd_ps(acc, sc, sh), act);
            else
                _mm512_mask_storeu_ps(yrow + (size_t)ox * C + c0, m, acc);
        }
    }
}

/* One input row (b, iy) of dx, gathered: dx[iy,ix] = sum of dy[oy,ox] w[ky,kx]
 * over the taps with oy*S - P + ky = iy and ox*S - P + kx = ix. */
INL void dw_dx_row(float *dxrow, const float *dyimg, const float *w, int W, int C, int Ho, int Wo,
                   int iy, const int K, const int S)
{
    const int P = (K - 1) / 2;
    for (int c0 = 0; c0 < C; c0 += 16) {
        __mmask16 m = tail_mask(C, c0);
        __m512 wv[K * K];
        for (int t = 0; t < K * K; t++)
            wv[t] = _mm512_maskz_loadu_ps(m, w + (size_t)t * C + c0);
        for (int ix = 0; ix < W; ix++) {
            __m512 acc = _mm512_setzero_ps();
            for (int ky = 0; ky < K; ky++) {
                int t = iy + P - ky;
                if (t < 0 || t % S)
                    continue;
                int oy = t / S;
                if (oy >= Ho)
                    continue;
                const float *dr = dyimg + (size_t)oy * Wo * C + c0;
                for (int kx = 0; kx < K; kx++) {
                    int u = ix + P - kx;
                    if (u < 0 || u % S)
                        continue;
                    int ox = u / S;
                    if (ox >= Wo)
                        continue;
                    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, dr + (size_t)ox * C),
                                          wv[ky * K + kx], acc);
                }
            }
            _mm512_mask_storeu_ps(dxrow + (size_t)ix * C + c0, m, acc);
        }
    }
}

/* dw partial of one output row (b, oy): part[ky,kx,c] += sum_ox dy[oy,ox,c] x[iy,ix,c]. */
INL void dw_dw_row(float *part, const float *dyrow, const float *ximg, int H, int W, int C, int Wo,
                   int oy, const int K, const int S)
{
    const int P = (K - 1) / 2;
    for (int c0 = 0; c0 < C; c0 += 16) {
        __mmask16 m = tail_mask(C, c0);
        __m512 acc[K * K];
        for (int t = 0; t < K * K; t++)
            acc[t] = _mm512_setzero_ps();
        for (int ox = 0; ox < Wo; ox++) {
            __m512 g = _mm512_maskz_loadu_ps(m, dyrow + (size_t)ox * C + c0);
            int ix0 = ox * S - P;
            int inner = ix0 >= 0 && ix0 + K <= W;
            for (int ky = 0; ky < K; ky++) {
                int iy = oy * S - P + ky;
                if (iy < 0 || iy >= H)
                    continue;
                const float *xr = ximg + (size_t)iy * W * C + c0;
                if (inner) {
                    for (int kx = 0; kx < K; kx++)
                        acc[ky * K + kx] = _mm512_fmadd_ps(
                            g, _mm512_maskz_loadu_ps(m, xr + (size_t)(ix0 + kx) * C), acc[ky * K + kx]);
                } else {
                    for (int kx = 0; kx < K; kx++) {
                        int ix = ix0 + kx;
                        if (ix < 0 || ix >= W)
                            continue;
                        acc[ky * K + kx] = _mm512_fmadd_ps(
                            g, _mm512_maskz_loadu_ps(m, xr + (size_t)ix * C), acc[ky * K + kx]);
                    }
                }
            }
        }
        for (int t = 0; t < K * K; t++) {
            float *pp = part + (size_t)t * C + c0;
            _mm512_mask_storeu_ps(pp, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, pp), acc[t]));
        }
    }
}

#define DW_CASES(X) X(3, 1) X(3, 2) X(5, 1) X(5, 2) X(7, 1) X(7, 2)

#define DW_DEFINE(K, S)                                                                         \
    static void dw_fwd_k##K##s##S(float *yrow, const float *ximg, const float *w, int H, int W, \
                                  int C, int Wo, int oy, const float *scale,                    \
                                  const float *shift, op_act act)                               \
    {                                                                                           \
        dw_fwd_row(yrow, ximg, w, H, W, C, Wo, oy, scale, shift, act, K, S);                    \
    }                                                                                           \
    static void dw_dx_k##K##s##S(float *dxrow, const float *dyimg, const float *w, int W, int C, \
                                 int Ho, int Wo, int iy)                                        \
    {                                                                                           \
        dw_dx_row(dxrow, dyimg, w, W, C, Ho, Wo, iy, K, S);                                     \
    }                                                                                           \
    static void dw_dw_k##K##s##S(float *part, const float *dyrow, const float *ximg, int H,     \
                                 int W, int C, int Wo, int oy)                                  \
    {                                                                                           \
        dw_dw_row(part, dyrow, ximg, H, W, C, Wo, oy, K, S);                                    \
    }
DW_CASES(DW_DEFINE)

typedef void (*dw_fwd_fn)(float *, const float *, const float *, int, int, int, int, int,
                          const float *, const float *, op_act);
typedef void (*dw_dx_fn)(float *, const float *, const float *, int, int, int, int, int);
typedef void (*dw_dw_fn)(float *, const float *, const float *, int, int, int, int, int);

static int dw_case(int k, int s)
{
    if ((k != 3 && k != 5 && k != 7) || (s != 1 && s != 2))
        return -1;
    return (k - 3) + (s - 1);   /* 0..5 in DW_CASES order */
}

#define DW_FWD_PTR(K, S) dw_fwd_k##K##s##S,
#define DW_DX_PTR(K, S) dw_dx_k##K##s##S,
#define DW_DW_PTR(K, S) dw_dw_k##K##s##S,
static const dw_fwd_fn dw_fwd_tab[6] = {DW_CASES(DW_FWD_PTR)};
static const dw_dx_fn dw_dx_tab[6] = {DW_CASES(DW_DX_PTR)};
static const dw_dw_fn dw_dw_tab[6] = {DW_CASES(DW_DW_PTR)};

void op_dw_forward(const op_ctx *cx, float *y, const float *x, const float *w, int B, int H, int W,
                   int C, int k, int s)
{
    int ci = dw_case(k, s);
    if (ci < 0) {
        op_dw_forward_ref(y, x, w, B, H, W, C, k, s);
        return;
    }
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
    dw_fwd_fn f = dw_fwd_tab[ci];
    long rows = (long)B * Ho;
#pragma omp parallel for schedule(static) num_threads(cx->threads)
    for (long r = 0; r < rows; r++) {
        int b = (int)(r / Ho), oy = (int)(r % Ho);
        f(y + (size_t)r * Wo * C, x + (size_t)b * H * W * C, w, H, W, C, Wo, oy, NULL, NULL,
          OP_NONE);
    }
}

void op_dw_backward(const op_ctx *cx, float *dx, float *dw, const float *dy, const float *x,
                    const float *w, int B, int H, int W, int C, int k, int s)
{
    int ci = dw_case(k, s);
    if (ci < 0) {
        op_dw_backward_ref(dx, dw, dy, x, w, B, H, W, C, k, s);
        return;
    }
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
    int nt = cx->threads < 1 ? 1 : cx->threads;
    size_t ps = partial_stride(C, k * k);
    dw_dx_fn fdx = dw_dx_tab[ci];
    dw_dw_fn fdw = dw_dw_tab[ci];
    long in_rows = (long)B * H, out_rows = (long)B * Ho;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        float *part = cx->partial + (size_t)t * ps;
        memset(part, 0, sizeof(float) * (size_t)k * k * C);
#pragma omp for schedule(static) nowait
        for (long r = 0; r < in_rows; r++) {
            int b = (int)(r / H), iy = (int)(r % H);
            fdx(dx + (size_t)r * W * C, dy + (size_t)b * Ho * Wo * C, w, W, C, Ho, Wo, iy);
        }
#pragma omp for schedule(static)
        for (long r = 0; r < out_rows; r++) {
            int b = (int)(r / Ho), oy = (int)(r % Ho);
            fdw(part, dy + (size_t)r * Wo * C, x + (size_t)b * H * W * C, H, W, C, Wo, oy);
        }
        /* The implicit barrier above: every partial is done. Reduce in thread order. */
        int kkc = k * k * C;
#pragma omp for schedule(static)
        for (int j = 0; j < kkc; j++) {
            float sum = 0;
            for (int u = 0; u < omp_get_num_threads(); u++)
                sum += cx->partial[(size_t)u * ps + j];
            dw[j] += sum;
        }
    }
}

/* Swish and sigmoid cost an expf a lane: a separate pass (op_act_forward,
 * its loop specialised per activation) beats doing them lane by lane in a
 * tile's epilogue. */
static int act_in_registers(op_act act)
{
    return act != OP_SWISH && act != OP_SIGMOID;
}

/* Inference: threads only where a layer has enough work to pay for waking
 * them (at batch 1 most layers do not); rows split in whole blocks. */
#define INFER_PAR_WORK 200000L

void op_dw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, int B, int H, int W, int C, int k,
                        int s, op_act act)
{
    int ci = dw_case(k, s);
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
    if (ci < 0) {
        op_dw_forward_ref(y, x, w, B, H, W, C, k, s);
        affine_act_rows(y, y, scale, shift, NULL, (long)B * Ho * Wo, C, act);
        return;
    }
    dw_fwd_fn f = dw_fwd_tab[ci];
    long rows = (long)B * Ho;
    int T = cx->threads < 1 ? 1 : cx->threads;
    op_act fa = act_in_registers(act) ? act : OP_NONE;
    if (T == 1 || rows * Wo * C * k * k < INFER_PAR_WORK) {
        for (long r = 0; r < rows; r++)
            f(y + (size_t)r * Wo * C, x + (size_t)(r / Ho) * H * W * C, w, H, W, C, Wo,
              (int)(r % Ho), scale, shift, fa);
    } else {
#pragma omp parallel for schedule(static) num_threads(T)
        for (long r = 0; r < rows; r++)
            f(y + (size_t)r * Wo * C, x + (size_t)(r / Ho) * H * W * C, w, H, W, C, Wo,
              (int)(r % Ho), scale, shift, fa);
    }
    if (fa != act)
        op_act_forward(y, y, (size_t)rows * Wo * C, act);
}

/* R rows x NV*16 columns of y = act(x w * scale + shift + res), from column c0;
 * the accumulators stay in registers for the whole sum over Cin. */
INL void pw_tile(float *y, const float *x, const float *w, const float *scale, const float *shift,
                 const float *res, int Cin, int Cout, int c0, op_act act, const int R, const int NV)
{
    /* fixed-size arrays (not VLAs), fully unrolled: they live in registers */
    __mmask16 m[3];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
        m[v] = tail_mask(Cout, c0 + 16 * v);
    __m512 acc[8][3];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    const float *wk = w + c0;
    for (int k = 0; k < Cin; k++, wk += Cout) {
        __m512 wv[3];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            wv[v] = _mm512_maskz_loadu_ps(m[v], wk + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 xb = _mm512_set1_ps(x[(size_t)r * Cin + k]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++)
                acc[r][v] = _mm512_fmadd_ps(xb, wv[v], acc[r][v]);
        }
    }
    /* the activation's switch outside the stores: one branch per tile */
#define PW_EPILOGUE(ACT)                                                               \
    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                               \
    {                                                                                  \
        __m512 sc = _mm512_maskz_loadu_ps(m[v], scale + c0 + 16 * v);                 \
        __m512 sh = _mm512_maskz_loadu_ps(m[v], shift + c0 + 16 * v);                 \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                            \
        {                                                                              \
            size_t o = (size_t)r * Cout + c0 + 16 * v;                                 \
            __m512 val = _mm512_fmadd_ps(acc[r][v], sc, sh);                           \
            if (res)                                                                   \
                val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(m[v], res + o));        \
            store_act(y + o, m[v], val, ACT);                                          \
        }                                                                              \
    }
    switch (act) {
    case OP_NONE: PW_EPILOGUE(OP_NONE); break;
    case OP_RELU: PW_EPILOGUE(OP_RELU); break;
    case OP_RELU6: PW_EPILOGUE(OP_RELU6); break;
    case OP_HSWISH: PW_EPILOGUE(OP_HSWISH); break;
    default: PW_EPILOGUE(act); break;
    }
#undef PW_EPILOGUE
}

/* 8 rows x 48 columns: 24 accumulators, 3 weight vectors and a broadcast in
 * the 32 registers; 11 loads per 24 FMAs, so the FMAs set the pace. */
#define PW_RB 8   /* acc[8][3] in pw_tile */
typedef void (*pw_tile_fn)(float *, const float *, const float *, const float *, const float *,
                           const float *, int, int, int, op_act);
#define PW_DEFINE(R, NV)                                                                         \
    static void pw_tile_r##R##v##NV(float *y, const float *x, const float *w, const float *sc, \
                                    const float *sh, const float *res, int Cin, int Cout, int c0, \
                                    op_act act)                                                  \
    {                                                                                            \
        pw_tile(y, x, w, sc, sh, res, Cin, Cout, c0, act, R, NV);                                \
    }
#define PW_ROWS(X, NV) X(1, NV) X(2, NV) X(3, NV) X(4, NV) X(5, NV) X(6, NV) X(7, NV) X(8, NV)
PW_ROWS(PW_DEFINE, 1)
PW_ROWS(PW_DEFINE, 2)
PW_ROWS(PW_DEFINE, 3)
#define PW_PTR(R, NV) pw_tile_r##R##v##NV,
static const pw_tile_fn pw_tab[3][PW_RB] = {
    {PW_ROWS(PW_PTR, 1)}, {PW_ROWS(PW_PTR, 2)}, {PW_ROWS(PW_PTR, 3)}};

/* Rows r0..r1 of the output, all columns, in panels of PW_PANEL rows: within
 * a panel, column tiles outside, so a tile of w is reused by every row block
 * while it is in cache, and the panel of x stays in cache across the column
 * tiles (a large batch would otherwise stream x from memory once per tile). */
#define PW_PANEL 64
/* Above this many weights the layer goes to OpenBLAS's packed GEMM: the
 * register tiles stream all of w per row block, without packing. With bench_infer
 * (batch 1 and 64), 256K was no slower than 64K anywhere and faster on
 * MobileNetV2-0.5, whose head (80 x 1280) stays on the tiles; EfficientNet-B0's
 * widest 1x1 convs (over 256K) go to OpenBLAS. Not tuned further. */
#ifndef PW_FUSED_MAX_W
#define PW_FUSED_MAX_W 262144L
#endif
static void pw_rows(float *y, const float *x, const float *w, const float *scale,
                    const float *shift, const float *res, int r0, int r1, int Cin, int Cout,
                    op_act act)
{
    for (int p0 = r0; p0 < r1; p0 += PW_PANEL) {
        int p1 = r1 - p0 < PW_PANEL ? r1 : p0 + PW_PANEL;
        for (int c0 = 0; c0 < Cout; c0 += 48) {
            int nv = Cout - c0 > 32 ? 3 : Cout - c0 > 16 ? 2 : 1;
            for (int r = p0; r < p1; r += PW_RB) {
                int R = p1 - r < PW_RB ? p1 - r : PW_RB;
                size_t o = (size_t)r * Cout;
                pw_tab[nv - 1][R - 1](y + o, x + (size_t)r * Cin, w, scale, shift,
                                      res ? res + o : NULL, Cin, Cout, c0, act);
            }
        }
    }
}

void op_pw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, const float *res, int N, int Cin,
                        int Cout, op_act act)
{
    if ((long)Cin * Cout > PW_FUSED_MAX_W) {
        /* wide layers: OpenBLAS's packed GEMM, then the epilogue as a pass */
        op_gemm_par(cx, 0, 0, N, Cout, Cin, 1.0f, x, Cin, w, Cout, 0.0f, y, Cout);
        affine_act_rows(y, y, scale, shift, res, N, Cout, act);
        return;
    }
    int T = cx->threads < 1 ? 1 : cx->threads;
    int blocks = (N + PW_RB - 1) / PW_RB;
    if (blocks < T)
        T = blocks;
    op_act fa = act_in_registers(act) ? act : OP_NONE;
    if (T <= 1 || (long)N * Cin * Cout < INFER_PAR_WORK) {
        pw_rows(y, x, w, scale, shift, res, 0, N, Cin, Cout, fa);
    } else {
#pragma omp parallel num_threads(T)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int lo = blocks * t / nt * PW_RB, hi = blocks * (t + 1) / nt * PW_RB;
            if (hi > N)
                hi = N;
            if (hi > lo)
                pw_rows(y, x, w, scale, shift, res, lo, hi, Cin, Cout, fa);
        }
    }
    if (fa != act)
        op_act_forward(y, y, (size_t)N * Cout, act);
}

#else /* no AVX-512: the oracle serves */

void op_dw_forward(const op_ctx *cx, float *y, const float *x, const float *w, int B, int H, int W,
                   int C, int k, int s)
{
    (void)cx;
    op_dw_forward_ref(y, x, w, B, H, W, C, k, s);
}

void op_dw_backward(const op_ctx *cx, float *dx, float *dw, const float *dy, const float *x,
                    const float *w, int B, int H, int W, int C, int k, int s)
{
    (void)cx;
    op_dw_backward_ref(dx, dw, dy, x, w, B, H, W, C, k, s);
}

void op_dw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, int B, int H, int W, int C, int k,
                        int s, op_act act)
{
    (void)cx;
    op_dw_forward_ref(y, x, w, B, H, W, C, k, s);
    affine_act_rows(y, y, scale, shift, NULL,
                    (long)B * op_out_side(H, k, s) * op_out_side(W, k, s), C, act);
}

void op_pw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, const float *res, int N, int Cin,
                        int Cout, op_act act)
{
    op_gemm_par(cx, 0, 0, N, Cout, Cin, 1.0f, x, Cin, w, Cout, 0.0f, y, Cout);
    affine_act_rows(y, y, scale, shift, res, N, Cout, act);
}

#endif

/* ======================= activations ===================================== */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float act_f(float h, op_act act)
{
    switch (act) {
    case OP_RELU: return h > 0 ? h : 0;
    case OP_RELU6: return h < 0 ? 0 : h > 6 ? 6 : h;
    case OP_HSWISH: return h <= -3 ? 0 : h >= 3 ? h : h * (h + 3) * (1.0f / 6);
    case OP_SWISH: return h * sigmoidf(h);
    case OP_SIGMOID: return sigmoidf(h);
    case OP_HSIGMOID: return h <= -3 ? 0 : h >= 3 ? 1 : (h + 3) * (1.0f / 6);
    default: return h;
    }
}

/* Derivative at the pre-activation h; at the kinks, PyTorch's choices. */
static inline float act_d(float h, op_act act)
{
    switch (act) {
    case OP_RELU: return h > 0 ? 1.0f : 0.0f;
    case OP_RELU6: return (h > 0 && h < 6) ? 1.0f : 0.0f;
    case OP_HSWISH: return h < -3 ? 0 : h > 3 ? 1.0f : h * (1.0f / 3) + 0.5f;
    case OP_SWISH: { float s = sigmoidf(h); return s * (1 + h * (1 - s)); }
    case OP_SIGMOID: { float s = sigmoidf(h); return s * (1 - s); }
    case OP_HSIGMOID: return (h > -3 && h < 3) ? 1.0f / 6 : 0.0f;
    default: return 1.0f;
    }
}

/* Each element-wise loop is written once as an always-inline function of a
 * constant activation and instantiated per activation through ACT_SWITCH, so
 * every instance vectorises without a switch inside the loop. */
#define ACT_SWITCH(act, CALL)                        \
    switch (act) {                                   \
    case OP_RELU: CALL(OP_RELU); break;              \
    case OP_RELU6: CALL(OP_RELU6); break;            \
    case OP_HSWISH: CALL(OP_HSWISH); break;          \
    case OP_SWISH: CALL(OP_SWISH); break;            \
    case OP_SIGMOID: CALL(OP_SIGMOID); break;        \
    case OP_HSIGMOID: CALL(OP_HSIGMOID); break;      \
    default: CALL(OP_NONE); break;                   \
    }

#define INLA static inline __attribute__((always_inline))

INLA void act_fwd_loop(float *y, const float *x, size_t n, const op_act A)
{
    for (size_t i = 0; i < n; i++)
        y[i] = act_f(x[i], A);
}

INLA void act_bwd_loop(float *dx, const float *dy, const float *x, size_t n, const op_act A)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * act_d(x[i], A);
}

void op_act_forward(float *y, const float *x, size_t n, op_act act)
{
#define CALL(A) act_fwd_loop(y, x, n, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}

void op_act_backward(float *dx, const float *dy, const float *x, size_t n, op_act act)
{
#define CALL(A) act_bwd_loop(dx, dy, x, n, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}

/* ======================= batch norm + activation ========================= */

/* Per-channel sums over N rows, deterministic for a thread count: each
 * thread sums a static slice of rows in double, slices added in order.
 * mode 0: sum z; mode 1: sum (z - mean)^2. */
static void channel_sums(const op_ctx *cx, double *out, const float *z, const float *mean, int N,
                         int C, int mode)
{
    int nt = cx->threads < 1 ? 1 : cx->threads;
    size_t ps = partial_stride(C, 4) / 2;   /* in doubles */
    double *part = (double *)cx->partial;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        double *acc = part + (size_t)t * ps;
        for (int c = 0; c < C; c++)
            acc[c] = 0;
        long lo = (long)N * t / T, hi = (long)N * (t + 1) / T;
        for (long r = lo; r < hi; r++) {
            const float *zr = z + (size_t)r * C;
            if (mode == 0)
                for (int c = 0; c < C; c++)
                    acc[c] += zr[c];
            else
                for (int c = 0; c < C; c++) {
                    double d = zr[c] - mean[c];
                    acc[c] += d * d;
                }
        }
#pragma omp barrier
#pragma omp single
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int u = 0; u < T; u++)
                s += part[(size_t)u * ps + c];
            out[c] = s;
        }
    }
}

INLA void bn_fwd_rows(float *y, const float *z, const float *scale, const float *shift, long lo,
                      long hi, int C, const op_act A)
{
    for (long r = lo; r < hi; r++) {
        const float *zr = z + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        for (int c = 0; c < C; c++)
            yr[c] = act_f(zr[c] * scale[c] + shift[c], A);
    }
}

void op_bn_act_forward(const op_ctx *cx, float *y, float *mean, float *rstd, const float *z,
                       const float *gamma, const float *beta, float *run_mean, float *run_var,
                       int N, int C, op_act act, int training, float momentum)
{
    float scale[C > 0 ? C : 1], shift[C > 0 ? C : 1];
    if (training) {
        double sum[C > 0 ? C : 1];
        channel_sums(cx, sum, z, NULL, N, C, 0);
        for (int c = 0; c < C; c++)
            mean[c] = (float)(sum[c] / N);
        channel_sums(cx, sum, z, mean, N, C, 1);
        for (int c = 0; c < C; c++) {
            double var = sum[c] / N;
            rstd[c] = (float)(1.0 / sqrt(var + OP_BN_EPS));
            double unbiased = N > 1 ? sum[c] / (N - 1) : var;
            run_mean[c] = (1 - momentum) * run_mean[c] + momentum * mean[c];
            run_var[c] = (float)((1 - momentum) * run_var[c] + momentum * unbiased);
            scale[c] = gamma[c] * rstd[c];
            shift[c] = beta[c] - mean[c] * scale[c];
        }
    } else {
        for (int c = 0; c < C; c++) {
            float rs = 1.0f / sqrtf(run_var[c] + OP_BN_EPS);
            scale[c] = gamma[c] * rs;
            shift[c] = beta[c] - run_mean[c] * scale[c];
        }
    }
    int nt = cx->threads < 1 ? 1 : cx->threads;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        long lo = (long)N * t / T, hi = (long)N * (t + 1) / T;
#define CALL(A) bn_fwd_rows(y, z, scale, shift, lo, hi, C, A)
        ACT_SWITCH(act, CALL)
#undef CALL
    }
}

/* h = gamma xhat + beta, dh = dy act'(h): sums of dh and dh xhat over rows. */
INLA void bn_bwd_sums(double *a1, double *a2, const float *dy, const float *z, const float *mean,
                      const float *rstd, const float *gamma, const float *beta, long lo, long hi,
                      int C, const op_act A)
{
    for (long r = lo; r < hi; r++) {
        const float *zr = z + (size_t)r * C, *gr = dy + (size_t)r * C;
        for (int c = 0; c < C; c++) {
            float xh = (zr[c] - mean[c]) * rstd[c];
            float dh = gr[c] * act_d(gamma[c] * xh + beta[c], A);
            a1[c] += dh;
            a2[c] += dh * xh;
        }
    }
}

/* dz = gamma rstd (dh - mean(dh) - xhat mean(dh xhat)). */
INLA void bn_bwd_rows(float *dz, const float *dy, const float *z, const float *mean,
                      const float *rstd, const float *gamma, const float *beta, const float *k1,
                      const float *m1, const float *m2, long lo, long hi, int C, const op_act A)
{
    for (long r = lo; r < hi; r++) {
        const float *zr = z + (size_t)r * C, *gr = dy + (size_t)r * C;
        float *dr = dz + (size_t)r * C;
        for (int c = 0; c < C; c++) {
            float xh = (zr[c] - mean[c]) * rstd[c];
            float dh = gr[c] * act_d(gamma[c] * xh + beta[c], A);
            dr[c] = k1[c] * (dh - m1[c] - xh * m2[c]);
        }
    }
}

void op_bn_act_backward(const op_ctx *cx, float *dz, float *dgamma, float *dbeta, const float *dy,
                        const float *z, const float *mean, const float *rstd, const float *gamma,
                        const float *beta, int N, int C, op_act act)
{
    int nt = cx->threads < 1 ? 1 : cx->threads;
    size_t ps = partial_stride(C, 4) / 2;
    double *part = (double *)cx->partial;
    float k1[C > 0 ? C : 1], m1[C > 0 ? C : 1], m2[C > 0 ? C : 1];
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        double *a1 = part + (size_t)t * ps, *a2 = a1 + C;
        for (int c = 0; c < C; c++)
            a1[c] = a2[c] = 0;
        long lo = (long)N * t / T, hi = (long)N * (t + 1) / T;
#define CALL(A) bn_bwd_sums(a1, a2, dy, z, mean, rstd, gamma, beta, lo, hi, C, A)
        ACT_SWITCH(act, CALL)
#undef CALL
#pragma omp barrier
#pragma omp single
        for (int c = 0; c < C; c++) {
            double s1 = 0, s2 = 0;
            for (int u = 0; u < T; u++) {
                s1 += part[(size_t)u * ps + c];
                s2 += part[(size_t)u * ps + C + c];
            }
            dgamma[c] += (float)s2;
            dbeta[c] += (float)s1;
            k1[c] = gamma[c] * rstd[c];
            m1[c] = (float)(s1 / N);
            m2[c] = (float)(s2 / N);
        }
        /* the implicit barrier of single: k1, m1, m2 are ready */
#define CALL(A) bn_bwd_rows(dz, dy, z, mean, rstd, gamma, beta, k1, m1, m2, lo, hi, C, A)
        ACT_SWITCH(act, CALL)
#undef CALL
    }
}

/* ======================= pooling, SE scale, linear ======================= */

void op_pool_forward(float *y, const float *x, int B, int HW, int C)
{
    float inv = 1.0f / HW;
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * C;
        const float *xb = x + (size_t)b * HW * C;
        for (int c = 0; c < C; c++)
            yb[c] = 0;
        for (int i = 0; i < HW; i++)
            for (int c = 0; c < C; c++)
                yb[c] += xb[(size_t)i * C + c];
        for (int c = 0; c < C; c++)
            yb[c] *= inv;
    }
}

void op_pool_backward(float *dx, const float *dy, int B, int HW, int C, int dx_accumulate)
{
    float inv = 1.0f / HW;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *gb = dy + (size_t)b * C;
        float *db = dx + (size_t)b * HW * C;
        for (int i = 0; i < HW; i++)
            for (int c = 0; c < C; c++)
                db[(size_t)i * C + c] = (dx_accumulate ? db[(size_t)i * C + c] : 0) + gb[c] * inv;
    }
}

void op_scale_forward(float *y, const float *x, const float *g, int B, int HW, int C)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *gb = g + (size_t)b * C;
        for (int i = 0; i < HW; i++) {
            size_t o = ((size_t)b * HW + i) * C;
            for (int c = 0; c < C; c++)
                y[o + c] = x[o + c] * gb[c];
        }
    }
}

void op_scale_backward(float *dx, float *dg, const float *dy, const float *x, const float *g,
                       int B, int HW, int C)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *gb = g + (size_t)b * C;
        float *dgb = dg + (size_t)b * C;
        for (int c = 0; c < C; c++)
            dgb[c] = 0;
        for (int i = 0; i < HW; i++) {
            size_t o = ((size_t)b * HW + i) * C;
            for (int c = 0; c < C; c++) {
                dgb[c] += dy[o + c] * x[o + c];
                dx[o + c] = dy[o + c] * gb[c];
            }
        }
    }
}

void op_linear_forward(float *y, const float *x, const float *w, const float *b, int B, int In, int O)
{
    for (int r = 0; r < B; r++)
        memcpy(y + (size_t)r * O, b, sizeof(float) * O);
    op_gemm(0, 0, B, O, In, 1.0f, x, In, w, O, 1.0f, y, O);
}

void op_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int B, int In, int O)
{
    op_gemm(1, 0, In, O, B, 1.0f, x, In, dy, O, 1.0f, dw, O);
    for (int r = 0; r < B; r++)
        for (int o = 0; o < O; o++)
            db[o] += dy[(size_t)r * O + o];
    if (dx)
        op_gemm(0, 1, B, In, O, 1.0f, dy, O, w, O, 0.0f, dx, In);
}

/* ======================= residual, dropout, loss ========================= */

void op_add(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void op_dropout_forward(float *y, const float *x, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * mask[i];
}

void op_dropout_backward(float *dx, const float *dy, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * mask[i];
}

double op_xent_forward_backward(float *dlogits, const float *logits, const unsigned char *labels,
                                int B, int K, float eps, int *correct)
{
    double loss = 0;
    int hits = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        int y = labels[b], arg = 0;
        float mx = z[0];
        for (int c = 1; c < K; c++)
            if (z[c] > mx) {
                mx = z[c];
                arg = c;
            }
        hits += arg == y;
        double se = 0, sz = 0;
        for (int c = 0; c < K; c++) {
            se += exp((double)z[c] - mx);
            sz += (double)z[c] - mx;
        }
        double lse = log(se);
        /* -sum q log p with q = (1-eps) onehot + eps/K; log p_c = z_c - mx - lse. */
        loss += -(1 - eps) * ((double)z[y] - mx - lse) - eps / K * (sz - K * lse);
        if (dlogits)
            for (int c = 0; c < K; c++) {
                double p = exp((double)z[c] - mx - lse);
                double q = eps / K + (c == y ? 1 - eps : 0);
                dlogits[(size_t)b * K + c] = (float)((p - q) / B);
            }
    }
    if (correct)
        *correct = hits;
    return loss / B;
}

/* ======================= inference epilogues ============================= */

void op_bn_eval_affine(float *scale, float *shift, const float *gamma, const float *beta,
                       const float *run_mean, const float *run_var, int C)
{
    /* the same arithmetic as op_bn_act_forward's eval branch */
    for (int c = 0; c < C; c++) {
        float rs = 1.0f / sqrtf(run_var[c] + OP_BN_EPS);
        scale[c] = gamma[c] * rs;
        shift[c] = beta[c] - run_mean[c] * scale[c];
    }
}

INLA void affine_act_loop(float *y, const float *z, const float *scale, const float *shift,
                          const float *res, long N, int C, const op_act A)
{
    for (long r = 0; r < N; r++) {
        const float *zr = z + (size_t)r * C, *rr = res ? res + (size_t)r * C : NULL;
        float *yr = y + (size_t)r * C;
        if (rr)
            for (int c = 0; c < C; c++)
                yr[c] = act_f(zr[c] * scale[c] + shift[c] + rr[c], A);
        else
            for (int c = 0; c < C; c++)
                yr[c] = act_f(zr[c] * scale[c] + shift[c], A);
    }
}

static void affine_act_rows(float *y, const float *z, const float *scale, const float *shift,
                            const float *res, long N, int C, op_act act)
{
#define CALL(A) affine_act_loop(y, z, scale, shift, res, N, C, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}
