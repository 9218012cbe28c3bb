/* kern_body.h — the engine's kernels, written once for every ISA (see simd.h
 * and kern.h). Included by kern_<isa>.c after KERN_LEVEL and KERN_TABLE are
 * defined; everything here is static but the table.
 *
 * Depthwise convolution vectorises over contiguous channels (NHWC) and blocks
 * along the row: OB outputs at a time share the loads of the inputs their
 * taps overlap on, so the FMAs, not the loads, set the pace. Pointwise
 * inference keeps an R x NV tile of outputs in registers over the whole sum.
 * The element-wise and per-channel loops are plain C that each ISA's compiler
 * vectorises at its own width (no fast-math: same results as the scalar
 * oracles to rounding, and reproducible).
 */
#include "evaluator/simd.h"
#include "evaluator/kern.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* no-trapping-math: nothing here reads floating-point exception flags, and
 * without it GCC will not if-convert a float compare, so a clamp or an
 * activation's select keeps a loop scalar. Values are unchanged (no
 * fast-math). */
#pragma GCC optimize("O3", "no-math-errno", "no-trapping-math")

#define INL SIMD_INL

/* ======================= activations, scalar ============================= */

/* e^x in plain arithmetic, so that the loops calling it vectorise (a call to
 * libm's expf keeps a loop scalar: swish networks ran 1.85x slower than in
 * ONNX Runtime, bench-faithful). x = n ln2 + r with n an integer (rounded
 * by the 1.5 * 2^23 shifter, no float-to-int cast) and |r| <= ln2/2, ln2 in
 * two parts for an exact product; e^r by its Taylor series to r^6 (relative
 * error under 2e-7, the size of float rounding); 2^n built in the exponent
 * bits. The clamps keep 2^n a normal float; NaN passes them and stays NaN. */
INL float exp_vec(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shifter = 12582912.0f;   /* 1.5 * 2^23 */
    float t = x * 1.44269504089f + shifter;
    float n = t - shifter;
    float r = x - n * 0.693145751953125f;   /* ln2, the high bits: n * hi is exact */
    r = r - n * 1.428606765330187e-6f;      /* ln2 - hi */
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; int32_t i; } tb = {t}, sc;
    sc.i = ((tb.i - 0x4B400000) + 127) << 23;   /* n + the exponent bias */
    return p * sc.f;
}

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + exp_vec(-x)); }

/* Written as a value then selects (no && or nested branches), so that GCC
 * if-converts and vectorises every loop they are inlined in: with
 * short-circuit conditions the batch-norm backward loops stayed scalar and
 * took 70% of a training step at AVX2 (measured with perf). */
INL float act_f(float h, op_act act)
{
    float v;
    switch (act) {
    case OP_RELU: return h > 0 ? h : 0;
    case OP_RELU6:
        v = h < 0 ? 0 : h;
        return v > 6 ? 6 : v;
    case OP_HSWISH:
        v = h * (h + 3) * (1.0f / 6);
        v = h <= -3 ? 0 : v;
        return h >= 3 ? h : v;
    case OP_SWISH: return h * sigmoidf_(h);
    case OP_SIGMOID: return sigmoidf_(h);
    case OP_HSIGMOID:
        v = (h + 3) * (1.0f / 6);
        v = h <= -3 ? 0 : v;
        return h >= 3 ? 1 : v;
    default: return h;
    }
}

/* Derivative at the pre-activation h; at the kinks, PyTorch's choices. */
INL float act_d(float h, op_act act)
{
    float v;
    switch (act) {
    case OP_RELU: return h > 0 ? 1.0f : 0.0f;
    case OP_RELU6:
        v = h > 0 ? 1.0f : 0.0f;
        return h < 6 ? v : 0.0f;
    case OP_HSWISH:
        v = h * (1.0f / 3) + 0.5f;
        v = h < -3 ? 0 : v;
        return h > 3 ? 1.0f : v;
    case OP_SWISH: { float s = sigmoidf_(h); return s * (1 + h * (1 - s)); }
    case OP_SIGMOID: { float s = sigmoidf_(h); return s * (1 - s); }
    case OP_HSIGMOID:
        v = h > -3 ? 1.0f / 6 : 0.0f;
        return h < 3 ? v : 0.0f;
    default: return 1.0f;
    }
}

/* Each element-wise loop is an always-inline function of a constant
 * activation, instantiated per activation, so no instance has a switch inside
 * its loop. */
#define ACT_SWITCH(act, CALL)                   \
    switch (act) {                              \
    case OP_RELU: CALL(OP_RELU); break;         \
    case OP_RELU6: CALL(OP_RELU6); break;       \
    case OP_HSWISH: CALL(OP_HSWISH); break;     \
    case OP_SWISH: CALL(OP_SWISH); break;       \
    case OP_SIGMOID: CALL(OP_SIGMOID); break;   \
    case OP_HSIGMOID: CALL(OP_HSIGMOID); break; \
    default: CALL(OP_NONE); break;              \
    }

/* ======================= activations in registers ======================== */

/* Stores act(v) to the first n lanes at dst (m = vm_first(n)). The
 * piecewise-linear activations are done in registers; swish and sigmoid
 * (which ops.c normally does as a separate pass) lane by lane. */
INL void store_act(float *dst, vmask m, int n, vf v, op_act act, const int FULL)
{
    const vf zero = v_zero(), three = v_set1(3.0f), six = v_set1(6.0f),
             sixth = v_set1(1.0f / 6);
    switch (act) {
    case OP_NONE: break;
    case OP_RELU: v = v_max(v, zero); break;
    case OP_RELU6: v = v_min(six, v_max(zero, v)); break;
    case OP_HSWISH: v = v_mul(v_mul(v, v_min(six, v_max(zero, v_add(v, three)))), sixth); break;
    case OP_HSIGMOID: v = v_mul(v_min(six, v_max(zero, v_add(v, three))), sixth); break;
    default: {
        float t[VW];
        v_st(t, v);
        for (int i = 0; i < n && i < VW; i++)
            dst[i] = act_f(t[i], act);
        return;
    }
    }
    if (FULL)
        v_st(dst, v);
    else
        v_stm(dst, m, v);
}

/* Full groups use plain loads and stores; only a channel tail pays for masks
 * (AVX2's maskload is slower than a load, AVX-512's is not). */
#define LD(p) (FULL ? v_ld(p) : v_ldm(p, m))
#define ST(p, v) (FULL ? v_st(p, v) : v_stm(p, m, v))

/* Outputs per block along a row in the stride-2 input gradient. */
#define DW_OB 4
/* The forward's block: OB accumulators are OB independent FMA chains, and a
 * chain of K FMAs per kernel row waits on the FMA's latency; 4 chains leave
 * half of the FMA slots empty (AVX2 on Zen 3, bench-train's kernel table:
 * 16x16x144 k3 went from 5-6 to 10-22 GFLOP/s, 8x8x192 k3 from 6-12 to
 * 19-28). Wider where the registers hold the block: accumulators, the K
 * weights of a kernel row and the input. Taps' weights stay in registers
 * across blocks when they fit too (HOLD). */
#define DW_FWD_OB(K) (VREGS >= 32 || (K) <= 3 ? 8 : (K) <= 5 ? 6 : 4)
#define DW_OB_MAX 8

/* ======================= depthwise forward =============================== */

INL void dw_out(float *dst, vf acc, vmask m, int n, const float *scale, vf sc, vf sh, op_act act,
                const int FULL)
{
    if (scale)
        store_act(dst, m, n, v_fma(acc, sc, sh), act, FULL);
    else
        ST(dst, acc);
}

/* OB outputs from ox: input p of the block feeds output j through tap
 * kx = p - j S, so the block loads each input once. CHECK skips inputs
 * outside the row (the zero padding), so the edges of a row reuse loads the
 * same way; on small maps with large kernels (7x7 with k7, 14x14 with k5)
 * most outputs are edges. Rows outside the image are cut by ky0..ky1. */
INL void dw_block(float *yrow, const float *ximg, const vf *wv, const float *w, int W, int C, int c0,
                  vmask m, int n, int oy, int ox, int ky0, int ky1, const float *scale, vf sc, vf sh,
                  op_act act, const int K, const int S, const int FLIP, const int FULL,
                  const int HOLD, const int OB, const int CHECK)
{
    const int P = (K - 1) / 2;
    vf acc[DW_OB_MAX];
#pragma GCC unroll 8
    for (int j = 0; j < OB; j++)
        acc[j] = v_zero();
    int ix0 = ox * S - P;
    for (int ky = ky0; ky < ky1; ky++) {
        const float *xr = ximg + (size_t)(oy * S - P + ky) * W * C + c0;
        vf wk[7];
#pragma GCC unroll 8
        for (int kx = 0; kx < K; kx++) {
            int t = FLIP ? K * K - 1 - (ky * K + kx) : ky * K + kx;
            wk[kx] = HOLD ? wv[t] : LD(w + (size_t)t * C + c0);
        }
#pragma GCC unroll 32
        for (int p = 0; p < (OB - 1) * S + K; p++) {
            int ix = ix0 + p;
            if (CHECK && (ix < 0 || ix >= W))
                continue;
            vf xv = LD(xr + (ptrdiff_t)ix * C);
#pragma GCC unroll 8
            for (int j = 0; j < OB; j++) {
                int kx = p - j * S;
                if (kx >= 0 && kx < K)
                    acc[j] = v_fma(xv, wk[kx], acc[j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < OB; j++)
        dw_out(yrow + (size_t)(ox + j) * C + c0, acc[j], m, n, scale, sc, sh, act, FULL);
}

/* Outputs oxa..oxb of a row for channels c0..c0+VW, in blocks of OB; a
 * block with a tap outside the row takes the checked variant. FLIP reads the
 * kernel rotated by 180 degrees: the input gradient of a stride-1 depthwise
 * conv is the forward conv of dy with the rotated kernel. */
INL void dw_fwd_group(float *yrow, const float *ximg, const float *w, int H, int W, int C,
                      int oxa, int oxb, int oy, int c0, const float *scale, const float *shift,
                      op_act act, const int K, const int S, const int FLIP, const int FULL)
{
    const int P = (K - 1) / 2;
    const int OB = DW_FWD_OB(K);
    const int HOLD = K * K + OB + 2 <= VREGS;   /* all taps' weights in registers */
    int n = C - c0;
    vmask m = vm_first(n);
    vf sc = v_zero(), sh = v_zero();
    if (scale) {
        sc = LD(scale + c0);
        sh = LD(shift + c0);
    }
    vf wv[7 * 7];   /* fixed sizes, not VLAs: a VLA is a stack allocation per call */
    if (HOLD)
        for (int t = 0; t < K * K; t++)
            wv[t] = LD(w + (size_t)t * C + c0);
    /* ox in [lo, hi) has all K taps inside the row */
    int lo = (P + S - 1) / S, hi = W - K + P >= 0 ? (W - K + P) / S + 1 : 0;
    int ky0 = 0, ky1 = K;   /* rows of the kernel inside the image */
    while (ky0 < K && oy * S - P + ky0 < 0)
        ky0++;
    while (ky1 > ky0 && oy * S - P + ky1 - 1 >= H)
        ky1--;
#define DW_BLOCK(OB, CHECK)                                                                       \
    dw_block(yrow, ximg, wv, w, W, C, c0, m, n, oy, ox, ky0, ky1, scale, sc, sh, act, K, S, FLIP, \
             FULL, HOLD, OB, CHECK)
    int ox = oxa;
    for (; ox + OB <= oxb; ox += OB) {
        if (ox >= lo && ox + OB <= hi)
            DW_BLOCK(OB, 0);
        else
            DW_BLOCK(OB, 1);
    }
    switch (oxb - ox) {   /* OB is at most 8 */
    case 7: DW_BLOCK(7, 1); break;
    case 6: DW_BLOCK(6, 1); break;
    case 5: DW_BLOCK(5, 1); break;
    case 4: DW_BLOCK(4, 1); break;
    case 3: DW_BLOCK(3, 1); break;
    case 2: DW_BLOCK(2, 1); break;
    case 1: DW_BLOCK(1, 1); break;
    default: break;
    }
#undef DW_BLOCK
}

/* A row in chunks of DW_CHUNK outputs, every channel group of a chunk before
 * the next chunk, so that the group after a group reads the same input
 * pixels' next channels while they are in L1. Measured against going group by
 * group over the whole row: no difference beyond noise (AVX2, bench-train's
 * shapes); it stays because it bounds the working set of wide rows. oneDNN's
 * AVX2 depthwise forward is still 2-4x faster on 16x16x144 k3. */
#define DW_CHUNK(K) (2 * DW_FWD_OB(K))
INL void dw_fwd_row(float *yrow, const float *ximg, const float *w, int H, int W, int C, int Wo,
                    int oy, const float *scale, const float *shift, op_act act, const int K,
                    const int S, const int FLIP)
{
    for (int oxa = 0; oxa < Wo; oxa += DW_CHUNK(K)) {
        int oxb = Wo - oxa < DW_CHUNK(K) ? Wo : oxa + DW_CHUNK(K);
        int c0 = 0;
        for (; c0 + VW <= C; c0 += VW)
            dw_fwd_group(yrow, ximg, w, H, W, C, oxa, oxb, oy, c0, scale, shift, act, K, S, FLIP, 1);
        if (c0 < C)
            dw_fwd_group(yrow, ximg, w, H, W, C, oxa, oxb, oy, c0, scale, shift, act, K, S, FLIP, 0);
    }
}

/* ======================= depthwise input gradient ======================== */

/* Stride 2: dx[iy,ix] gathers dy[oy,ox] w[ky,kx] over oy*2 - P + ky = iy and
 * ox*2 - P + kx = ix; the taps that reach ix depend on its parity only. */
INL void dw_dx_group_s2(float *dxrow, const float *dyimg, const float *w, int W, int C, int Ho,
                        int Wo, int iy, int c0, const int K, const int FULL)
{
    const int S = 2, P = (K - 1) / 2;
    vmask m = vm_first(C - c0);
    for (int ix = 0; ix < W; ix++) {
        vf acc = v_zero();
        for (int ky = (iy + P) & 1; ky < K; ky += S) {
            int oy = (iy + P - ky) / S;
            if (iy + P - ky < 0 || oy >= Ho)
                continue;
            const float *dr = dyimg + (size_t)oy * Wo * C + c0;
            for (int kx = (ix + P) & 1; kx < K; kx += S) {
                int u = ix + P - kx, ox = u / S;
                if (u < 0 || ox >= Wo)
                    continue;
                acc = v_fma(LD(dr + (size_t)ox * C), LD(w + (size_t)(ky * K + kx) * C + c0), acc);
            }
        }
        ST(dxrow + (size_t)ix * C + c0, acc);
    }
}

INL void dw_dx_row(float *dxrow, const float *dyimg, const float *w, int W, int C, int Ho, int Wo,
                   int iy, const int K, const int S)
{
    if (S == 1) {
        /* Ho = H and Wo = W: a forward row over dy with the kernel rotated */
        dw_fwd_row(dxrow, dyimg, w, Ho, Wo, C, W, iy, NULL, NULL, OP_NONE, K, 1, 1);
        return;
    }
    int c0 = 0;
    for (; c0 + VW <= C; c0 += VW)
        dw_dx_group_s2(dxrow, dyimg, w, W, C, Ho, Wo, iy, c0, K, 1);
    if (c0 < C)
        dw_dx_group_s2(dxrow, dyimg, w, W, C, Ho, Wo, iy, c0, K, 0);
}

/* ======================= depthwise weight gradient ======================= */

/* For output row oy and one kernel row ky: part[ky,kx,c] += sum over ox of
 * dy[oy,ox,c] x[iy,ox*S-P+kx,c]. Blocks of OB outputs share their inputs. */
INL void dw_dw_group(float *part, const float *dyrow, const float *xr, int W, int C, int Wo, int ky,
                     int c0, const int K, const int S, const int FULL)
{
    const int P = (K - 1) / 2;
    vmask m = vm_first(C - c0);
    vf acc[7];
#pragma GCC unroll 8
    for (int kx = 0; kx < K; kx++)
        acc[kx] = v_zero();
    int lo = (P + S - 1) / S, hi = W - K + P >= 0 ? (W - K + P) / S + 1 : 0;
    if (hi > Wo)
        hi = Wo;
    if (lo > hi)
        lo = hi;
    int ox = 0;
    for (; ox < lo; ox++) {
        vf g = LD(dyrow + (size_t)ox * C + c0);
        for (int kx = 0; kx < K; kx++) {
            int ix = ox * S - P + kx;
            if (ix >= 0 && ix < W)
                acc[kx] = v_fma(g, LD(xr + (size_t)ix * C + c0), acc[kx]);
        }
    }
    /* Two sets of K sums, by block parity, where registers allow: K chains
     * of dependent FMAs alone wait on the FMA's latency (k3: 3 chains). */
    const int SETS = 2 * K + DW_OB + 1 <= VREGS ? 2 : 1;
    vf acc2[7];
#pragma GCC unroll 8
    for (int kx = 0; kx < K; kx++)
        acc2[kx] = v_zero();
    for (int blk = 0; ox + DW_OB <= hi; ox += DW_OB, blk++) {
        vf g[DW_OB];
#pragma GCC unroll 8
        for (int j = 0; j < DW_OB; j++)
            g[j] = LD(dyrow + (size_t)(ox + j) * C + c0);
        const float *xb = xr + (size_t)(ox * S - P) * C + c0;
        vf *a = SETS == 2 && (blk & 1) ? acc2 : acc;
#pragma GCC unroll 32
        for (int p = 0; p < (DW_OB - 1) * S + K; p++) {
            vf xv = LD(xb + (size_t)p * C);
#pragma GCC unroll 8
            for (int j = 0; j < DW_OB; j++) {
                int kx = p - j * S;
                if (kx >= 0 && kx < K)
                    a[kx] = v_fma(g[j], xv, a[kx]);
            }
        }
    }
#pragma GCC unroll 8
    for (int kx = 0; kx < K; kx++)
        acc[kx] = v_add(acc[kx], acc2[kx]);
    for (; ox < Wo; ox++) {
        vf g = LD(dyrow + (size_t)ox * C + c0);
        for (int kx = 0; kx < K; kx++) {
            int ix = ox * S - P + kx;
            if (ix >= 0 && ix < W)
                acc[kx] = v_fma(g, LD(xr + (size_t)ix * C + c0), acc[kx]);
        }
    }
#pragma GCC unroll 8
    for (int kx = 0; kx < K; kx++) {
        float *pp = part + (size_t)(ky * K + kx) * C + c0;
        ST(pp, v_add(LD(pp), acc[kx]));
    }
}

INL void dw_dw_row(float *part, const float *dyrow, const float *ximg, int H, int W, int C, int Wo,
                   int oy, const int K, const int S)
{
    const int P = (K - 1) / 2;
    for (int ky = 0; ky < K; ky++) {
        int iy = oy * S - P + ky;
        if (iy < 0 || iy >= H)
            continue;
        const float *xr = ximg + (size_t)iy * W * C;
        int c0 = 0;
        for (; c0 + VW <= C; c0 += VW)
            dw_dw_group(part, dyrow, xr, W, C, Wo, ky, c0, K, S, 1);
        if (c0 < C)
            dw_dw_group(part, dyrow, xr, W, C, Wo, ky, c0, K, S, 0);
    }
}

#define DW_LIST(X) X(3, 1) X(3, 2) X(5, 1) X(5, 2) X(7, 1) X(7, 2)   /* kern_dw_case order */

#define DW_DEFINE(K, S)                                                                         \
    static void dw_fwd_k##K##s##S(float *yrow, const float *ximg, const float *w, int H, int W, \
                                  int C, int Wo, int oy, const float *scale,                    \
                                  const float *shift, op_act act)                               \
    {                                                                                           \
        dw_fwd_row(yrow, ximg, w, H, W, C, Wo, oy, scale, shift, act, K, S, 0);                 \
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
DW_LIST(DW_DEFINE)
#undef LD
#undef ST

/* ======================= pointwise inference tiles ======================= */

/* Tile shape: PW_RB rows x PW_NV vectors of outputs, with PW_NV weight
 * vectors and a broadcast beside the accumulators in the register file.
 * AVX-512: 8 x 3 = 24 of 32 registers; AVX2: 6 x 2 = 12 of 16; NEON: 8 x 3
 * of 32; scalar: 4 x 4 floats. */
#if VREGS >= 32
#define PW_RB 8
#define PW_NV 3
#elif VW == 1
#define PW_RB 4
#define PW_NV 4
#else
#define PW_RB 6
#define PW_NV 2
#endif

/* R rows x NV vectors of y = act(x w * scale + shift + res), from column c0;
 * the accumulators stay in registers for the whole sum over Cin. FULL: all
 * NV vectors are whole, so no masked load or store (AVX2's are several times
 * the cost of plain ones, and this loop is most of batch-1 inference). */
INL void pw_tile(float *y, const float *x, const float *w, const float *scale, const float *shift,
                 const float *res, int Cin, int Cout, int c0, op_act act, const int R, const int NV,
                 const int FULL)
{
    vmask m[4];
    int n[4];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) {
        n[v] = Cout - c0 - VW * v;
        m[v] = vm_first(n[v]);
    }
    vf acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            acc[r][v] = v_zero();
    const float *wk = w + c0;
    for (int k = 0; k < Cin; k++, wk += Cout) {
        vf wv[4];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            wv[v] = FULL ? v_ld(wk + VW * v) : v_ldm(wk + VW * v, m[v]);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            vf xb = v_set1(x[(size_t)r * Cin + k]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++)
                acc[r][v] = v_fma(xb, wv[v], acc[r][v]);
        }
    }
    /* the activation's switch outside the stores: one branch per tile */
#define PW_EPILOGUE(ACT)                                                       \
    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                       \
    {                                                                          \
        vf sc = FULL ? v_ld(scale + c0 + VW * v) : v_ldm(scale + c0 + VW * v, m[v]); \
        vf sh = FULL ? v_ld(shift + c0 + VW * v) : v_ldm(shift + c0 + VW * v, m[v]); \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                    \
        {                                                                      \
            size_t o = (size_t)r * Cout + c0 + VW * v;                         \
            vf val = v_fma(acc[r][v], sc, sh);                                 \
            if (res)                                                           \
                val = v_add(val, FULL ? v_ld(res + o) : v_ldm(res + o, m[v])); \
            store_act(y + o, m[v], n[v], val, ACT, FULL);                      \
        }                                                                      \
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

typedef void (*pw_tile_fn)(float *, const float *, const float *, const float *, const float *,
                           const float *, int, int, int, op_act);
#define PW_DEFINE(R, NV)                                                                         \
    static void pw_tile_r##R##v##NV(float *y, const float *x, const float *w, const float *sc, \
                                    const float *sh, const float *res, int Cin, int Cout, int c0, \
                                    op_act act)                                                  \
    {                                                                                            \
        pw_tile(y, x, w, sc, sh, res, Cin, Cout, c0, act, R, NV, 0);                             \
    }                                                                                            \
    static void pw_full_r##R##v##NV(float *y, const float *x, const float *w, const float *sc, \
                                    const float *sh, const float *res, int Cin, int Cout, int c0, \
                                    op_act act)                                                  \
    {                                                                                            \
        pw_tile(y, x, w, sc, sh, res, Cin, Cout, c0, act, R, NV, 1);                             \
    }
#define PW_PTR(R, NV) pw_tile_r##R##v##NV,
#define PW_FULL_PTR(R, NV) pw_full_r##R##v##NV,
#if PW_RB == 8
#define PW_ROWS(X, NV) X(1, NV) X(2, NV) X(3, NV) X(4, NV) X(5, NV) X(6, NV) X(7, NV) X(8, NV)
#elif PW_RB == 6
#define PW_ROWS(X, NV) X(1, NV) X(2, NV) X(3, NV) X(4, NV) X(5, NV) X(6, NV)
#else
#define PW_ROWS(X, NV) X(1, NV) X(2, NV) X(3, NV) X(4, NV)
#endif
#if PW_NV == 4
#define PW_COLS(X) X(1) X(2) X(3) X(4)
#elif PW_NV == 3
#define PW_COLS(X) X(1) X(2) X(3)
#else
#define PW_COLS(X) X(1) X(2)
#endif
#define PW_DEFINE_NV(NV) PW_ROWS(PW_DEFINE, NV)
#define PW_PTRS_NV(NV) {PW_ROWS(PW_PTR, NV)},
#define PW_FULL_PTRS_NV(NV) {PW_ROWS(PW_FULL_PTR, NV)},
PW_COLS(PW_DEFINE_NV)
/* [whole vectors only][vectors - 1][rows - 1] */
static const pw_tile_fn pw_tab[2][PW_NV][PW_RB] = {{PW_COLS(PW_PTRS_NV)}, {PW_COLS(PW_FULL_PTRS_NV)}};

/* Rows r0..r1, all columns, in panels of PW_PANEL rows: within a panel,
 * column tiles outside, so a tile of w is reused by every row block while it
 * is in cache, and the panel of x stays in cache across the column tiles. */
#define PW_PANEL 64
static void pw_rows(float *y, const float *x, const float *w, const float *scale,
                    const float *shift, const float *res, int r0, int r1, int Cin, int Cout,
                    op_act act)
{
    const int cols = PW_NV * VW;
    for (int p0 = r0; p0 < r1; p0 += PW_PANEL) {
        int p1 = r1 - p0 < PW_PANEL ? r1 : p0 + PW_PANEL;
        for (int c0 = 0; c0 < Cout; c0 += cols) {
            int left = Cout - c0, nv = left >= cols ? PW_NV : (left + VW - 1) / VW;
            int full = left >= cols || left % VW == 0;
            for (int r = p0; r < p1; r += PW_RB) {
                int R = p1 - r < PW_RB ? p1 - r : PW_RB;
                size_t o = (size_t)r * Cout;
                pw_tab[full][nv - 1][R - 1](y + o, x + (size_t)r * Cin, w, scale, shift,
                                      res ? res + o : NULL, Cin, Cout, c0, act);
            }
        }
    }
}

/* ======================= element-wise and per-channel loops ============== */

INL void act_fwd_loop(float *y, const float *x, size_t n, const op_act A)
{
    for (size_t i = 0; i < n; i++)
        y[i] = act_f(x[i], A);
}

INL void act_bwd_loop(float *dx, const float *dy, const float *x, size_t n, const op_act A)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * act_d(x[i], A);
}

static void act_fwd(float *y, const float *x, size_t n, op_act act)
{
#define CALL(A) act_fwd_loop(y, x, n, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}

static void act_bwd(float *dx, const float *dy, const float *x, size_t n, op_act act)
{
#define CALL(A) act_bwd_loop(dx, dy, x, n, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}

INL void affine_act_loop(float *y, const float *z, const float *scale, const float *shift,
                         const float *res, long lo, long hi, int C, const op_act A)
{
    for (long r = lo; r < hi; r++) {
        const float *zr = z + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        if (res) {
            const float *rr = res + (size_t)r * C;
            for (int c = 0; c < C; c++)
                yr[c] = act_f(zr[c] * scale[c] + shift[c] + rr[c], A);
        } else {
            for (int c = 0; c < C; c++)
                yr[c] = act_f(zr[c] * scale[c] + shift[c], A);
        }
    }
}

static void affine_act(float *y, const float *z, const float *scale, const float *shift,
                       const float *res, long lo, long hi, int C, op_act act)
{
#define CALL(A) affine_act_loop(y, z, scale, shift, res, lo, hi, C, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}

static void chan_sums(double *acc, const float *z, const float *mean, long lo, long hi, int C)
{
    for (long r = lo; r < hi; r++) {
        const float *zr = z + (size_t)r * C;
        if (!mean)
            for (int c = 0; c < C; c++)
                acc[c] += zr[c];
        else
            for (int c = 0; c < C; c++) {
                double d = zr[c] - mean[c];
                acc[c] += d * d;
            }
    }
}

INL void bn_bwd_sums_loop(double *a1, double *a2, const float *dy, const float *z,
                          const float *mean, const float *rstd, const float *gamma,
                          const float *beta, long lo, long hi, int C, const op_act A)
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

static void bn_bwd_sums(double *a1, double *a2, const float *dy, const float *z, const float *mean,
                        const float *rstd, const float *gamma, const float *beta, long lo, long hi,
                        int C, op_act act)
{
#define CALL(A) bn_bwd_sums_loop(a1, a2, dy, z, mean, rstd, gamma, beta, lo, hi, C, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}

INL void bn_bwd_rows_loop(float *dz, const float *dy, const float *z, const float *mean,
                          const float *rstd, const float *gamma, const float *beta,
                          const float *k1, const float *m1, const float *m2, long lo, long hi,
                          int C, const op_act A)
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

static void bn_bwd_rows(float *dz, const float *dy, const float *z, const float *mean,
                        const float *rstd, const float *gamma, const float *beta, const float *k1,
                        const float *m1, const float *m2, long lo, long hi, int C, op_act act)
{
#define CALL(A) bn_bwd_rows_loop(dz, dy, z, mean, rstd, gamma, beta, k1, m1, m2, lo, hi, C, A)
    ACT_SWITCH(act, CALL)
#undef CALL
}

static void pool_fwd(float *y, const float *x, int HW, int C)
{
    float inv = 1.0f / HW;
    for (int c = 0; c < C; c++)
        y[c] = 0;
    for (int i = 0; i < HW; i++)
        for (int c = 0; c < C; c++)
            y[c] += x[(size_t)i * C + c];
    for (int c = 0; c < C; c++)
        y[c] *= inv;
}

static void scale_fwd(float *y, const float *x, const float *g, int HW, int C)
{
    for (int i = 0; i < HW; i++)
        for (int c = 0; c < C; c++)
            y[(size_t)i * C + c] = x[(size_t)i * C + c] * g[c];
}

static void scale_bwd(float *dx, float *dg, const float *dy, const float *x, const float *g, int HW,
                      int C)
{
    for (int c = 0; c < C; c++)
        dg[c] = 0;
    for (int i = 0; i < HW; i++) {
        size_t o = (size_t)i * C;
        for (int c = 0; c < C; c++) {
            dg[c] += dy[o + c] * x[o + c];
            dx[o + c] = dy[o + c] * g[c];
        }
    }
}

/* ======================= the table ======================================= */

#define DW_FWD_PTR(K, S) dw_fwd_k##K##s##S,
#define DW_DX_PTR(K, S) dw_dx_k##K##s##S,
#define DW_DW_PTR(K, S) dw_dw_k##K##s##S,

/* ======================= int8 pointwise ================================== */

/* Weights come packed (kern.h, kern_qpw_pack): group g of 4 input channels
 * holds, per output o, the 4 bytes w[4g..4g+3][o] in one 32-bit lane. The
 * raw uint8 input is multiplied and zx * colsum taken off once per output;
 * every product and sum is exact in int32, so the order is free. */

/* The 4 input bytes of the last group when Cin is not a multiple of 4, zeros
 * after them (their weights are zero): never read past the pixel's row,
 * which may be the last of the buffer. */
INL int32_t q_x4_tail(const uint8_t *xp, int Cin)
{
    int32_t v = 0;
    memcpy(&v, xp + Cin / 4 * 4, (size_t)(Cin % 4));
    return v;
}

INL int32_t q_x4(const uint8_t *xp, int g)
{
    int32_t v;
    memcpy(&v, xp + 4 * g, 4);
    return v;
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/* An R x NV tile: R pixels by NV vectors of 16 outputs, in registers over the
 * whole sum (R * NV + NV + 1 of the 32). One vpdpbusd does 64 products. */
#define QPW_R 6
#define QPW_NV 4
INL void q_pw_tile(int32_t *acc, const uint8_t *x, const uint64_t *xw, int zx, const int8_t *wp,
                   const int32_t *colsum, const int32_t *bias, int Cin, int Cout, int o0, const int R, const int NV)
{
    (void)xw;
    int Cop = kern_qpw_cout(Cout), G = Cin / 4;
    __m512i a[QPW_R][QPW_NV], w[QPW_NV];
    __mmask16 m[QPW_NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) {
        int left = Cout - o0 - 16 * j;
        m[j] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512i b = _mm512_maskz_loadu_epi32(m[j], bias + o0 + 16 * j);
        __m512i cs = _mm512_maskz_loadu_epi32(m[j], colsum + o0 + 16 * j);
        b = _mm512_sub_epi32(b, _mm512_mullo_epi32(cs, _mm512_set1_epi32(zx)));
#pragma GCC unroll 6
        for (int r = 0; r < R; r++)
            a[r][j] = b;
    }
    for (int g = 0; g < (Cin + 3) / 4; g++) {
        const int8_t *wg = wp + ((size_t)g * Cop + o0) * 4;
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++)
            w[j] = _mm512_loadu_si512(wg + 64 * j);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const uint8_t *xp = x + (size_t)r * Cin;
            __m512i xb = _mm512_set1_epi32(g < G ? q_x4(xp, g) : q_x4_tail(xp, Cin));
#pragma GCC unroll 4
            for (int j = 0; j < NV; j++)
                a[r][j] = _mm512_dpbusd_epi32(a[r][j], xb, w[j]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++)
            _mm512_mask_storeu_epi32(acc + (size_t)r * Cout + o0 + 16 * j, m[j], a[r][j]);
}
#define QPW_OUT_STEP (16 * QPW_NV)
#elif KERN_LEVEL == KERN_AVX2 || KERN_LEVEL == KERN_AVX512
/* AVX2 (and AVX-512 without VNNI): the 4 bytes of an output widened to 16
 * bits, pmaddwd with the pixel's 4 inputs gives two pair sums per output,
 * added up at the end. R pixels by 8 outputs (2R + 3 registers of 16). No
 * pmaddubsw: its 16-bit sums saturate at 255 * 127 * 2. The inputs come
 * widened too, 4 to a 64-bit word, once per block of pixels (xw) rather than
 * once per block of outputs, when the row fits QPW_XW words. */
#define QPW_R 4
#define QPW_NV 1
#define QPW_XW 1024
INL __m256i q_pw_xb(const uint8_t *xp, const uint64_t *xwr, int g, int G, int Cin)
{
    if (xwr)
        return _mm256_set1_epi64x((long long)xwr[g]);
    __m128i x4 = _mm_cvtsi32_si128(g < G ? q_x4(xp, g) : q_x4_tail(xp, Cin));
    return _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(x4));
}

INL void q_pw_tile(int32_t *acc, const uint8_t *x, const uint64_t *xw, int zx, const int8_t *wp,
                   const int32_t *colsum, const int32_t *bias, int Cin, int Cout, int o0, const int R, const int NV)
{
    int Cop = kern_qpw_cout(Cout), G = Cin / 4;
    __m256i lo[QPW_R], hi[QPW_R];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        lo[r] = hi[r] = _mm256_setzero_si256();
    for (int g = 0; g < (Cin + 3) / 4; g++) {
        __m256i w8 = _mm256_loadu_si256((const __m256i *)(wp + ((size_t)g * Cop + o0) * 4));
        __m256i wl = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w8));
        __m256i wh = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w8, 1));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256i xb = q_pw_xb(x + (size_t)r * Cin, xw ? xw + (size_t)r * QPW_XW : NULL, g, G, Cin);
            lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(wl, xb));
            hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(wh, xb));
        }
    }
    int left = Cout - o0;
    int32_t lane[8];
    for (int j = 0; j < 8; j++)
        lane[j] = j < left ? -1 : 0;
    __m256i m = _mm256_loadu_si256((const __m256i *)lane);
    __m256i b = _mm256_maskload_epi32(bias + o0, m);
    __m256i cs = _mm256_maskload_epi32(colsum + o0, m);
    b = _mm256_sub_epi32(b, _mm256_mullo_epi32(cs, _mm256_set1_epi32(zx)));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        /* hadd: [o0 o1 o4 o5 | o2 o3 o6 o7]; the 64-bit permute puts them in order */
        __m256i s8 = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[r], hi[r]), 0xd8);
        _mm256_maskstore_epi32(acc + (size_t)r * Cout + o0, m, _mm256_add_epi32(s8, b));
    }
}
#define QPW_OUT_STEP 8
#endif

#ifdef QPW_OUT_STEP
#define QPW_CASE(R, NV) q_pw_tile(acc + (size_t)p * Cout, x + (size_t)p * Cin, xw, zx, wp, colsum, bias, Cin, \
                                  Cout, o0, R, NV)
/* The tile's sizes are constants in every call, so that its arrays stay in registers. */
INL void q_pw_rows(int32_t *acc, const uint8_t *x, const uint64_t *xw, int zx, const int8_t *wp,
                   const int32_t *colsum, const int32_t *bias, int p, int R, int Cin, int Cout, int o0)
{
    int NV = (Cout - o0 + 15) / 16;
    NV = NV > QPW_NV ? QPW_NV : NV;
    switch (R * 8 + NV) {
#if QPW_NV == 4
    case 8 + 1: QPW_CASE(1, 1); break;
    case 8 + 2: QPW_CASE(1, 2); break;
    case 8 + 3: QPW_CASE(1, 3); break;
    case 8 + 4: QPW_CASE(1, 4); break;
    case 16 + 1: QPW_CASE(2, 1); break;
    case 16 + 2: QPW_CASE(2, 2); break;
    case 16 + 3: QPW_CASE(2, 3); break;
    case 16 + 4: QPW_CASE(2, 4); break;
    case 24 + 1: QPW_CASE(3, 1); break;
    case 24 + 2: QPW_CASE(3, 2); break;
    case 24 + 3: QPW_CASE(3, 3); break;
    case 24 + 4: QPW_CASE(3, 4); break;
    case 32 + 1: QPW_CASE(4, 1); break;
    case 32 + 2: QPW_CASE(4, 2); break;
    case 32 + 3: QPW_CASE(4, 3); break;
    case 32 + 4: QPW_CASE(4, 4); break;
    case 40 + 1: QPW_CASE(5, 1); break;
    case 40 + 2: QPW_CASE(5, 2); break;
    case 40 + 3: QPW_CASE(5, 3); break;
    case 40 + 4: QPW_CASE(5, 4); break;
    case 48 + 1: QPW_CASE(6, 1); break;
    case 48 + 2: QPW_CASE(6, 2); break;
    case 48 + 3: QPW_CASE(6, 3); break;
    default: QPW_CASE(6, 4); break;
#else
    case 8 + 1: QPW_CASE(1, 1); break;
    case 16 + 1: QPW_CASE(2, 1); break;
    case 24 + 1: QPW_CASE(3, 1); break;
    default: QPW_CASE(4, 1); break;
#endif
    }
}

static void q_pw(int32_t *acc, const uint8_t *x, int zx, const int8_t *wp, const int32_t *colsum,
                 const int32_t *bias, int N, int Cin, int Cout)
{
    const uint64_t *xw = NULL;
#ifdef QPW_XW
    uint64_t xwbuf[QPW_R * QPW_XW];
    int G1 = (Cin + 3) / 4;
#endif
    for (int p = 0; p < N; p += QPW_R) {
        int R = N - p < QPW_R ? N - p : QPW_R;
#ifdef QPW_XW
        if (G1 <= QPW_XW) {   /* each pixel's inputs as 16-bit lanes, 4 to a word */
            for (int r = 0; r < R; r++)
                for (int g = 0; g < G1; g++) {
                    const uint8_t *xp = x + (size_t)(p + r) * Cin;
                    int32_t v = g < Cin / 4 ? q_x4(xp, g) : q_x4_tail(xp, Cin);
                    uint64_t u = (uint32_t)v;
                    xwbuf[r * QPW_XW + g] = (u & 0xff) | (u >> 8 & 0xff) << 16 | (u >> 16 & 0xff) << 32 |
                                            (u >> 24 & 0xff) << 48;
                }
            xw = xwbuf;
        }
#endif
        for (int o0 = 0; o0 < Cout; o0 += QPW_OUT_STEP)
            q_pw_rows(acc, x, xw, zx, wp, colsum, bias, p, R, Cin, Cout, o0);
    }
}
#else
/* NEON and scalar: the same packed order in plain C (correct, not tuned). */
static void q_pw(int32_t *acc, const uint8_t *x, int zx, const int8_t *wp, const int32_t *colsum,
                 const int32_t *bias, int N, int Cin, int Cout)
{
    int Cop = kern_qpw_cout(Cout), G = (Cin + 3) / 4;
    for (int p = 0; p < N; p++) {
        int32_t *restrict a = acc + (size_t)p * Cout;
        const uint8_t *xp = x + (size_t)p * Cin;
        for (int o = 0; o < Cout; o++)
            a[o] = bias[o] - zx * colsum[o];
        for (int g = 0; g < G; g++) {
            int32_t v = g < Cin / 4 ? q_x4(xp, g) : q_x4_tail(xp, Cin);
            uint8_t b[4];
            memcpy(b, &v, 4);
            const int8_t *restrict wg = wp + (size_t)g * Cop * 4;
            for (int o = 0; o < Cout; o++)
                a[o] += b[0] * wg[4 * o] + b[1] * wg[4 * o + 1] + b[2] * wg[4 * o + 2] + b[3] * wg[4 * o + 3];
        }
    }
}
#endif

/* ======================= int8 depthwise ================================== */


#if KERN_LEVEL == KERN_AVX512 || KERN_LEVEL == KERN_AVX2
/* A vector of int32 lanes, one channel each, loaded from 8-bit values. */
#if KERN_LEVEL == KERN_AVX512
#define QV 16
typedef __m512i qvi;
#define qv_ldu8(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define qv_lds8(p) _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p)))
#define qv_ld(p) _mm512_loadu_si512(p)
#define qv_st(p, v) _mm512_storeu_si512(p, v)
#define qv_add _mm512_add_epi32
#define qv_sub _mm512_sub_epi32
#define qv_mul _mm512_mullo_epi32
#define qv_set1 _mm512_set1_epi32
#else
#define QV 8
typedef __m256i qvi;
#define qv_ldu8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
#define qv_lds8(p) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
#define qv_ld(p) _mm256_loadu_si256((const __m256i *)(p))
#define qv_st(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define qv_add _mm256_add_epi32
#define qv_sub _mm256_sub_epi32
#define qv_mul _mm256_mullo_epi32
#define qv_set1 _mm256_set1_epi32
#endif
#endif

/* One output pixel of a depthwise conv: acc row [C] = bias + the taps inside
 * the map (padding is the zero point: it adds nothing). On x86 each block of
 * QV channels keeps its sum in a register over all the taps; the channels
 * past the last whole block, and other ISAs, in plain C. */
static void q_dw_pixel(int32_t *a, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int H,
                       int W, int C, int k, int iy0, int ix0)
{
    int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = H - iy0 < k ? H - iy0 : k;
    int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = W - ix0 < k ? W - ix0 : k;
    int c0 = 0;
#ifdef QV
    qvi vz = qv_set1(zx);
    for (; c0 + QV <= C; c0 += QV) {
        qvi s = qv_ld(bias + c0);
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++) {
                const uint8_t *xp = x + ((size_t)(iy0 + ky) * W + ix0 + kx) * C + c0;
                qvi xv = qv_sub(qv_ldu8(xp), vz);
                s = qv_add(s, qv_mul(xv, qv_lds8(w + (size_t)(ky * k + kx) * C + c0)));
            }
        qv_st(a + c0, s);
    }
#endif
#if KERN_LEVEL == KERN_AVX512
    /* the thin layers of small networks (8, 24 channels): 8 more lanes in AVX2 */
    if (c0 + 8 <= C) {
        __m256i vz8 = _mm256_set1_epi32(zx), s8 = _mm256_loadu_si256((const __m256i *)(bias + c0));
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++) {
                const uint8_t *xp = x + ((size_t)(iy0 + ky) * W + ix0 + kx) * C + c0;
                __m256i xv = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)xp)), vz8);
                __m256i wv = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w + (size_t)(ky * k + kx) * C + c0)));
                s8 = _mm256_add_epi32(s8, _mm256_mullo_epi32(xv, wv));
            }
        _mm256_storeu_si256((__m256i *)(a + c0), s8);
        c0 += 8;
    }
#endif
    if (c0 == C)
        return;
    memcpy(a + c0, bias + c0, sizeof(int32_t) * (size_t)(C - c0));
    for (int ky = ky0; ky < ky1; ky++)
        for (int kx = kx0; kx < kx1; kx++) {
            const uint8_t *xp = x + ((size_t)(iy0 + ky) * W + ix0 + kx) * C;
            const int8_t *wp = w + (size_t)(ky * k + kx) * C;
            for (int c = c0; c < C; c++)
                a[c] += ((int32_t)xp[c] - zx) * (int32_t)wp[c];
        }
}

static void q_dw(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int B, int H,
                 int W, int C, int k, int s)
{
    int Ho = space_out_side(H, k, s), Wo = space_out_side(W, k, s), pad = (k - 1) / 2;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                int32_t *a = acc + (((size_t)b * Ho + oy) * Wo + ox) * C;
                q_dw_pixel(a, x + (size_t)b * H * W * C, zx, w, bias, H, W, C, k, oy * s - pad, ox * s - pad);
            }
}

/* ev_quantize to [0, 255] in a loop that vectorises (ev_quantize's branches
 * and libm call keep it scalar): round half to even by nearbyintf (one
 * instruction from SSE4.1 and NEON on), NaN to the zero point. */
static void q_u8(uint8_t *q, const float *x, size_t n, float scale, int zero)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / scale;
        float r = v == v ? nearbyintf(v) + (float)zero : (float)zero;
        r = r <= 0.0f ? 0.0f : r;
        r = r >= 255.0f ? 255.0f : r;
        q[i] = (uint8_t)(int32_t)r;
    }
}

static void q_f32(float *restrict y, const uint8_t *restrict q, size_t n, float scale, int zero)
{
    for (size_t i = 0; i < n; i++)
        y[i] = scale * (float)((int32_t)q[i] - zero);
}

/* The requantization in one pass: acc * mult, the activation (act_f, as
 * act_fwd applies it), then q_u8's rounding, through a small float block so
 * the loops vectorise: whole rows of C at a time when C is small (a thin
 * layer's rows are 8 values: a call per row cost more than the work), else
 * pieces of one row. */
#define QRQ_BLOCK 512
static void q_requant(uint8_t *y, const int32_t *acc, size_t N, int C, const float *mult, op_act act,
                      float scale, int zero)
{
    float t[QRQ_BLOCK];
    size_t rows = C <= QRQ_BLOCK ? (size_t)(QRQ_BLOCK / C) : 1;
    for (size_t p = 0; p < N; p += rows) {
        size_t nr = N - p < rows ? N - p : rows;
        for (int c0 = 0; c0 < C; c0 += QRQ_BLOCK) {
            int n = C - c0 < QRQ_BLOCK ? C - c0 : QRQ_BLOCK;
            for (size_t r = 0; r < nr; r++) {
                const int32_t *a = acc + (p + r) * (size_t)C + c0;
                float *tr = t + r * (size_t)n;
                for (int c = 0; c < n; c++)
                    tr[c] = (float)a[c] * mult[c0 + c];
            }
            size_t m = nr * (size_t)n;
            if (act != OP_NONE)
                act_fwd(t, t, m, act);
            if (n == C)
                q_u8(y + p * (size_t)C, t, m, scale, zero);
            else
                q_u8(y + p * (size_t)C + c0, t, (size_t)n, scale, zero);
        }
    }
}

const kern_table KERN_TABLE = {
    .name = KERN_NAME,
    .width = VW,
    .level = KERN_LEVEL,
    .dw_fwd = {DW_LIST(DW_FWD_PTR)},
    .dw_dx = {DW_LIST(DW_DX_PTR)},
    .dw_dw = {DW_LIST(DW_DW_PTR)},
    .pw_rows = pw_rows,
    .affine_act = affine_act,
    .act_fwd = act_fwd,
    .act_bwd = act_bwd,
    .chan_sums = chan_sums,
    .bn_bwd_sums = bn_bwd_sums,
    .bn_bwd_rows = bn_bwd_rows,
    .pool_fwd = pool_fwd,
    .scale_fwd = scale_fwd,
    .scale_bwd = scale_bwd,
    .q_pw = q_pw,
    .q_dw = q_dw,
    .q_u8 = q_u8,
    .q_requant = q_requant,
    .q_f32 = q_f32,
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    .vnni = 1,
#endif
};
