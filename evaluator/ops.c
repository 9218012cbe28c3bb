/* ops.c — forward/backward pairs of every layer the space emits (see ops.h).
 *
 * Pointwise convs, the stem and linears are GEMMs through OpenBLAS. The hot
 * loops BLAS cannot do (depthwise conv, the fused inference tiles, batch norm,
 * activations, pooling, SE scaling) live in the kernel layer (kern.h), one
 * table per instruction set chosen at run time; this file keeps their scalar
 * oracles and spreads the kernels over threads. Reductions over the batch
 * (batch-norm statistics, depthwise weight gradients) use per-thread partials
 * added in thread order: the same ISA and thread count give the same bits.
 */
#pragma GCC optimize("O3", "no-math-errno")

#include "evaluator/ops.h"
#include "evaluator/kern.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <omp.h>
#include <cblas.h>

const char *op_act_name(op_act a)
{
    static const char *names[OP_ACT_COUNT] = {"none", "relu", "relu6", "hswish",
                                              "swish", "sigmoid", "hsigmoid"};
    return (unsigned)a < OP_ACT_COUNT ? names[a] : "?";
}

void ops_team_init(ops_team *tm, int n, double (*now)(void))
{
    atomic_init(&tm->arrived, 0);
    atomic_init(&tm->phase, 0);
    tm->n = n;
    tm->now = now;
    tm->waited = 0;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The last to arrive opens the next phase. A waiter spins a while (a layer
 * is microseconds; 2,000 pauses are some 40-100), then yields its core at
 * every look: on a loaded or oversubscribed machine (mpirun ranks with more
 * threads than cores) the thread it waits for may need that core. seq_cst
 * atomics order every write of a phase before the reads of the next. */
void ops_team_sync(const op_ctx *cx)
{
    ops_team *tm = cx->team;
    if (!tm || tm->n < 2)
        return;
    int phase = atomic_load(&tm->phase);
    if (atomic_fetch_add(&tm->arrived, 1) == tm->n - 1) {
        atomic_store(&tm->arrived, 0);
        atomic_store(&tm->phase, phase + 1);
        return;
    }
    double t0 = cx->t == 0 ? tm->now() : 0;
    for (long spins = 0; atomic_load(&tm->phase) == phase; spins++) {
        if (spins < 2000)
            cpu_relax();
        else
            sched_yield();
    }
    if (cx->t == 0)
        tm->waited += tm->now() - t0;
}

/* Thread t's share [lo, hi) of n items split over nt threads in whole units
 * of `unit`: the one split of every op's rows, in a team or a region. */
static void share_of(long n, long unit, int t, int nt, long *lo, long *hi)
{
    long blocks = (n + unit - 1) / unit;
    *lo = blocks * t / nt * unit;
    *hi = blocks * (t + 1) / nt * unit;
    if (*hi > n)
        *hi = n;
    if (*lo > n)
        *lo = n;
}

static void team_share(const op_ctx *cx, long n, long unit, long *lo, long *hi)
{
    share_of(n, unit, cx->t, cx->team->n, lo, hi);
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

int op_out_side(int in, int k, int stride) { return space_out_side(in, k, stride); }

/* ======================= full convolution (stem) ========================= */

static void im2col_row(float *col, const float *x, long r, int H, int W, int Cin, int k, int s,
                       int Ho, int Wo)
{
    int p = (k - 1) / 2, kc = k * k * Cin;
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

void op_conv_im2col(const op_ctx *cx, float *col, const float *x, int B, int H, int W, int Cin,
                   int k, int s)
{
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
    long rows = (long)B * Ho;
    if (cx->team) {
        long lo, hi;
        team_share(cx, rows, 1, &lo, &hi);
        for (long r = lo; r < hi; r++)
            im2col_row(col, x, r, H, W, Cin, k, s, Ho, Wo);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(cx->threads)
    for (long r = 0; r < rows; r++)
        im2col_row(col, x, r, H, W, Cin, k, s, Ho, Wo);
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

/* ======================= depthwise convolution: the kernel layer ========
 * kern.h's row kernels for the ISA in use; here, only the split over
 * threads: rows of the output (forward), rows of dx and of dw's partials
 * (backward), each thread's dw partial reduced in thread order. */

void op_dw_forward(const op_ctx *cx, float *y, const float *x, const float *w, int B, int H, int W,
                   int C, int k, int s)
{
    int ci = kern_dw_case(k, s);
    if (ci < 0) {
        op_dw_forward_ref(y, x, w, B, H, W, C, k, s);
        return;
    }
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
    kern_dw_fwd_fn f = kern_active()->dw_fwd[ci];
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
    int ci = kern_dw_case(k, s);
    if (ci < 0) {
        op_dw_backward_ref(dx, dw, dy, x, w, B, H, W, C, k, s);
        return;
    }
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
    int nt = cx->threads < 1 ? 1 : cx->threads;
    size_t ps = partial_stride(C, k * k);
    const kern_table *K = kern_active();
    kern_dw_dx_fn fdx = K->dw_dx[ci];
    kern_dw_dw_fn fdw = K->dw_dw[ci];
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

/* Rows lo..hi of op_dw_bn_act_infer's output. */
static void dw_infer_rows(kern_dw_fwd_fn f, float *y, const float *x, const float *w,
                          const float *scale, const float *shift, const float *res, int H, int W,
                          int C, int Ho, int Wo, long lo, long hi, op_act fa, op_act act)
{
    const kern_table *K = kern_active();
    for (long r = lo; r < hi; r++)
        f(y + (size_t)r * Wo * C, x + (size_t)(r / Ho) * H * W * C, w, H, W, C, Wo, (int)(r % Ho),
          scale, shift, fa);
    size_t at = (size_t)lo * Wo * C, len = (size_t)(hi - lo) * Wo * C;
    if (fa != act)
        K->act_fwd(y + at, y + at, len, act);
    if (res)
        for (size_t i = at; i < at + len; i++)
            y[i] += res[i];
}

void op_dw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, const float *res, int B, int H,
                        int W, int C, int k, int s, op_act act)
{
    const kern_table *K = kern_active();
    int ci = kern_dw_case(k, s);
    int Ho = op_out_side(H, k, s), Wo = op_out_side(W, k, s);
    long rows = (long)B * Ho;
    if (ci < 0) {   /* a case without a kernel: the oracle, on one thread of a team */
        if (cx->team && cx->t)
            return;
        op_dw_forward_ref(y, x, w, B, H, W, C, k, s);
        K->affine_act(y, y, scale, shift, NULL, 0, rows * Wo, C, act);
        if (res)
            op_add(y, res, (size_t)rows * Wo * C);
        return;
    }
    kern_dw_fwd_fn f = K->dw_fwd[ci];
    int T = cx->threads < 1 ? 1 : cx->threads;
    op_act fa = act_in_registers(act) ? act : OP_NONE;
    if (cx->team) {
        long lo, hi;
        team_share(cx, rows, 1, &lo, &hi);
        dw_infer_rows(f, y, x, w, scale, shift, res, H, W, C, Ho, Wo, lo, hi, fa, act);
    } else if (T == 1 || rows * Wo * C * k * k < INFER_PAR_WORK) {
        dw_infer_rows(f, y, x, w, scale, shift, res, H, W, C, Ho, Wo, 0, rows, fa, act);
    } else {
#pragma omp parallel num_threads(T)
        {
            long lo, hi;
            share_of(rows, 1, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
            dw_infer_rows(f, y, x, w, scale, shift, res, H, W, C, Ho, Wo, lo, hi, fa, act);
        }
    }
}

/* Above this many weights a pointwise layer goes to OpenBLAS's packed GEMM:
 * the register tiles stream all of w per row block, without packing. With
 * bench_infer (batch 1 and 64, AVX-512), 256K was no slower than 64K anywhere
 * and faster on MobileNetV2-0.5, whose head (80 x 1280) stays on the tiles;
 * EfficientNet-B0's widest 1x1 convs (over 256K) go to OpenBLAS. */
#ifndef PW_FUSED_MAX_W
#define PW_FUSED_MAX_W 262144L
#endif
/* rows a tile covers at most, on any ISA (kern_body.h's PW_RB): the unit
 * of the split over threads */
#define PW_SPLIT_ROWS 8

/* Rows lo..hi of op_pw_bn_act_infer's output from the register tiles. */
static void pw_infer_rows(float *y, const float *x, const float *w, const float *scale,
                          const float *shift, const float *res, int lo, int hi, int Cin, int Cout,
                          op_act fa, op_act act)
{
    const kern_table *K = kern_active();
    if (hi <= lo)
        return;
    K->pw_rows(y, x, w, scale, shift, res, lo, hi, Cin, Cout, fa);
    if (fa != act)
        K->act_fwd(y + (size_t)lo * Cout, y + (size_t)lo * Cout, (size_t)(hi - lo) * Cout, act);
}

void op_pw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, const float *res, int N, int Cin,
                        int Cout, op_act act)
{
    const kern_table *K = kern_active();
    long lo = 0, hi = N;
    if (cx->team)
        team_share(cx, N, PW_SPLIT_ROWS, &lo, &hi);
    if ((long)Cin * Cout > PW_FUSED_MAX_W) {
        /* wide layers: OpenBLAS's packed GEMM, then the epilogue as a pass */
        if (cx->team)
            op_gemm(0, 0, (int)(hi - lo), Cout, Cin, 1.0f, x + (size_t)lo * Cin, Cin, w, Cout, 0.0f,
                    y + (size_t)lo * Cout, Cout);
        else
            op_gemm_par(cx, 0, 0, N, Cout, Cin, 1.0f, x, Cin, w, Cout, 0.0f, y, Cout);
        K->affine_act(y, y, scale, shift, res, lo, hi, Cout, act);
        return;
    }
    op_act fa = act_in_registers(act) ? act : OP_NONE;
    if (cx->team) {
        pw_infer_rows(y, x, w, scale, shift, res, (int)lo, (int)hi, Cin, Cout, fa, act);
        return;
    }
    int T = cx->threads < 1 ? 1 : cx->threads;
    int blocks = (N + PW_SPLIT_ROWS - 1) / PW_SPLIT_ROWS;
    if (blocks < T)
        T = blocks;
    if (T <= 1 || (long)N * Cin * Cout < INFER_PAR_WORK) {
        pw_infer_rows(y, x, w, scale, shift, res, 0, N, Cin, Cout, fa, act);
    } else {
#pragma omp parallel num_threads(T)
        {
            long lo_t, hi_t;
            share_of(N, PW_SPLIT_ROWS, omp_get_thread_num(), omp_get_num_threads(), &lo_t, &hi_t);
            pw_infer_rows(y, x, w, scale, shift, res, (int)lo_t, (int)hi_t, Cin, Cout, fa, act);
        }
    }
}

/* ======================= activations ===================================== */

void op_act_forward(float *y, const float *x, size_t n, op_act act)
{
    kern_active()->act_fwd(y, x, n, act);
}

void op_act_backward(float *dx, const float *dy, const float *x, size_t n, op_act act)
{
    kern_active()->act_bwd(dx, dy, x, n, act);
}

/* ======================= batch norm + activation ========================= */

/* Per-channel sums over N rows, deterministic for a thread count: each
 * thread sums a static slice of rows in double, slices added in order.
 * mean NULL: sum z; else sum (z - mean)^2. */
static void channel_sums(const op_ctx *cx, double *out, const float *z, const float *mean, int N,
                         int C)
{
    int nt = cx->threads < 1 ? 1 : cx->threads;
    size_t ps = partial_stride(C, 4) / 2;   /* in doubles */
    double *part = (double *)cx->partial;
    const kern_table *K = kern_active();
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        double *acc = part + (size_t)t * ps;
        for (int c = 0; c < C; c++)
            acc[c] = 0;
        long lo = (long)N * t / T, hi = (long)N * (t + 1) / T;
        K->chan_sums(acc, z, mean, lo, hi, C);
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

void op_bn_act_forward(const op_ctx *cx, float *y, float *mean, float *rstd, const float *z,
                       const float *gamma, const float *beta, float *run_mean, float *run_var,
                       int N, int C, op_act act, int training, float momentum)
{
    float scale[C > 0 ? C : 1], shift[C > 0 ? C : 1];
    if (training) {
        double sum[C > 0 ? C : 1];
        channel_sums(cx, sum, z, NULL, N, C);
        for (int c = 0; c < C; c++)
            mean[c] = (float)(sum[c] / N);
        channel_sums(cx, sum, z, mean, N, C);
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
        op_bn_eval_affine(scale, shift, gamma, beta, run_mean, run_var, C);
    }
    int nt = cx->threads < 1 ? 1 : cx->threads;
    const kern_table *K = kern_active();
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        long lo = (long)N * t / T, hi = (long)N * (t + 1) / T;
        K->affine_act(y, z, scale, shift, NULL, lo, hi, C, act);
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
    const kern_table *K = kern_active();
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        double *a1 = part + (size_t)t * ps, *a2 = a1 + C;
        for (int c = 0; c < C; c++)
            a1[c] = a2[c] = 0;
        long lo = (long)N * t / T, hi = (long)N * (t + 1) / T;
        K->bn_bwd_sums(a1, a2, dy, z, mean, rstd, gamma, beta, lo, hi, C, act);
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
        K->bn_bwd_rows(dz, dy, z, mean, rstd, gamma, beta, k1, m1, m2, lo, hi, C, act);
    }
}

/* ======================= pooling, SE scale, linear ======================= */

void op_pool_forward(float *y, const float *x, int B, int HW, int C)
{
    const kern_table *K = kern_active();
    for (int b = 0; b < B; b++)
        K->pool_fwd(y + (size_t)b * C, x + (size_t)b * HW * C, HW, C);
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
    const kern_table *K = kern_active();
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * HW * C;
        K->scale_fwd(y + o, x + o, g + (size_t)b * C, HW, C);
    }
}

void op_scale_backward(float *dx, float *dg, const float *dy, const float *x, const float *g,
                       int B, int HW, int C)
{
    const kern_table *K = kern_active();
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * HW * C;
        K->scale_bwd(dx + o, dg + (size_t)b * C, dy + o, x + o, g + (size_t)b * C, HW, C);
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

/* log of sum_c exp(z_c / T), shifted by the max so it cannot overflow.
 * Neither this nor its caller is vectorised: B x K values a step, and
 * aarch64 GCC 12 crashes vectorising their double reductions (internal
 * compiler error in vect_transform_reduction). */
__attribute__((optimize("no-tree-vectorize")))
static double lse_t(const float *z, int K, double T)
{
    double mx = z[0] / T, se = 0;
    for (int c = 1; c < K; c++)
        mx = fmax(mx, z[c] / T);
    for (int c = 0; c < K; c++)
        se += exp(z[c] / T - mx);
    return mx + log(se);
}

__attribute__((optimize("no-tree-vectorize")))
double op_kd_forward_backward(float *dlogits, const float *logits, const float *teacher,
                              const unsigned char *labels, int B, int K, float eps, float T,
                              float alpha, int *correct)
{
    double hard = op_xent_forward_backward(dlogits, logits, labels, B, K, eps, correct);
    double soft = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K, *t = teacher + (size_t)b * K;
        double lse_s = lse_t(z, K, T), lse_te = lse_t(t, K, T);
        for (int c = 0; c < K; c++) {
            double ls = z[c] / (double)T - lse_s, lt = t[c] / (double)T - lse_te;
            double pt = exp(lt);
            soft += pt * (lt - ls);
            if (dlogits) {
                float *d = dlogits + (size_t)b * K + c;
                *d = (float)((1 - alpha) * *d + alpha * T * (exp(ls) - pt) / B);
            }
        }
    }
    return (1 - alpha) * hard + alpha * (double)T * T * soft / B;
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
