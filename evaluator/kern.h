/* kern.h — the engine's hot loops, one table of them per instruction set
 * (module-private: ops.c calls them, tests and benchmarks force a level).
 *
 * Each table is kern_body.h compiled for one ISA (see simd.h). The kernels are
 * single-threaded pieces (a row, a tile, a range of rows); ops.c spreads them
 * over threads and owns every reduction across threads, so the result is the
 * same bit for bit for a given ISA and thread count. The scalar oracles the
 * tests compare every level against are ops.c's *_ref functions.
 *
 * The level is chosen once: NAS_ISA (scalar | neon | avx2 | avx512 | auto)
 * when set, else the best this CPU runs. Asking for a level this CPU or build
 * lacks is an error (ev_kernels_init), never a silent fallback.
 */
#ifndef EV_KERN_H
#define EV_KERN_H

#include "base/nas.h"
#include "evaluator/ops.h"
#include "space/space.h"   /* space_out_side */

#include <stddef.h>
#include <stdint.h>

/* the levels, in kern_table.level and simd.h's KERN_LEVEL */
#define KERN_SCALAR 0
#define KERN_NEON 1
#define KERN_AVX2 2
#define KERN_AVX512 3

/* Depthwise kernels exist for k 3/5/7 x stride 1/2; kern_dw_case gives the
 * index into the tables below, or -1 (the oracle serves other shapes). */
#define KERN_DW_CASES 6
static inline int kern_dw_case(int k, int s)
{
    if ((k != 3 && k != 5 && k != 7) || (s != 1 && s != 2))
        return -1;
    return (k - 3) + (s - 1);
}

/* One output row (b, oy) of y = dw(x, w), all channels; with scale (not NULL)
 * y = act(dw * scale + shift), act only one that act_in_registers allows. */
typedef void (*kern_dw_fwd_fn)(float *yrow, const float *ximg, const float *w, int H, int W, int C,
                               int Wo, int oy, const float *scale, const float *shift, op_act act);
/* One input row iy of dx, written: dx[iy,ix] = sum of dy[oy,ox] w[ky,kx]
 * over the taps that reach it. */
typedef void (*kern_dw_dx_fn)(float *dxrow, const float *dyimg, const float *w, int W, int C,
                              int Ho, int Wo, int iy);
/* part[ky,kx,c] += sum over ox of dy[oy,ox,c] x[iy,ix,c], for output row oy. */
typedef void (*kern_dw_dw_fn)(float *part, const float *dyrow, const float *ximg, int H, int W,
                              int C, int Wo, int oy);

typedef struct kern_table {
    const char *name;   /* "avx512", "avx2", "neon", "scalar" */
    int width;          /* floats per vector */
    int level;          /* KERN_SCALAR .. KERN_AVX512 */

    kern_dw_fwd_fn dw_fwd[KERN_DW_CASES];
    kern_dw_dx_fn dw_dx[KERN_DW_CASES];
    kern_dw_dw_fn dw_dw[KERN_DW_CASES];

    /* Rows r0..r1 of y [N,Cout] = act((x w) * scale + shift (+ res)), from
     * register tiles; act in registers only (see ops.c). */
    void (*pw_rows)(float *y, const float *x, const float *w, const float *scale,
                    const float *shift, const float *res, int r0, int r1, int Cin, int Cout,
                    op_act act);
    /* Rows lo..hi of y [.,C] = act(z * scale + shift (+ res)); y may be z. */
    void (*affine_act)(float *y, const float *z, const float *scale, const float *shift,
                       const float *res, long lo, long hi, int C, op_act act);
    void (*act_fwd)(float *y, const float *x, size_t n, op_act act);
    void (*act_bwd)(float *dx, const float *dy, const float *x, size_t n, op_act act);
    /* acc[c] += sum over rows lo..hi of z (mean NULL) or of (z - mean)^2, in double. */
    void (*chan_sums)(double *acc, const float *z, const float *mean, long lo, long hi, int C);
    /* Batch norm backward over rows lo..hi, with h = gamma xhat + beta and
     * dh = dy act'(h): a1 += sum dh, a2 += sum dh xhat (double); then
     * dz = k1 (dh - m1 - xhat m2). */
    void (*bn_bwd_sums)(double *a1, double *a2, const float *dy, const float *z, const float *mean,
                        const float *rstd, const float *gamma, const float *beta, long lo,
                        long hi, int C, op_act act);
    void (*bn_bwd_rows)(float *dz, const float *dy, const float *z, const float *mean,
                        const float *rstd, const float *gamma, const float *beta, const float *k1,
                        const float *m1, const float *m2, long lo, long hi, int C, op_act act);
    /* One image: y [C] = mean over HW of x [HW,C]; g [C] scales x [HW,C]. */
    void (*pool_fwd)(float *y, const float *x, int HW, int C);
    void (*scale_fwd)(float *y, const float *x, const float *g, int HW, int C);
    void (*scale_bwd)(float *dx, float *dg, const float *dy, const float *x, const float *g,
                      int HW, int C);
    /* int8 pointwise conv: acc [N,Cout] = bias + sum over i of (x[p,i] - zx) w[i,:]
     * (quant.h's evq_pw_s32; exact in int32, so every level gives the oracle's
     * integers), from w packed by kern_qpw_pack (wp, colsum). */
    void (*q_pw)(int32_t *acc, const uint8_t *x, int zx, const int8_t *wp, const int32_t *colsum,
                 const int32_t *bias, int N, int Cin, int Cout);
    /* int8 depthwise k x k, stride s, pad (k-1)/2 (quant.h's evq_dw_s32) */
    void (*q_dw)(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int B, int H,
                 int W, int C, int k, int s);
    /* q[i] = ev_quantize(x[i]) to uint8 with scale and zero (the oracle, bit for bit). */
    void (*q_u8)(uint8_t *q, const float *x, size_t n, float scale, int zero);
    /* acc [N,C] -> y [N,C]: q_u8(act(acc * mult[c])) in one pass, the same
     * values as act_fwd then q_u8 at this level (quant.h's evq_requant). */
    void (*q_requant)(uint8_t *y, const int32_t *acc, size_t N, int C, const float *mult, op_act act,
                      float scale, int zero);
    /* y[i] = scale * (q[i] - zero): ev_dequantize, bit for bit (one product). */
    void (*q_f32)(float *y, const uint8_t *q, size_t n, float scale, int zero);
    int vnni;   /* q_pw uses AVX-512 VNNI (vpdpbusd): the CPU must have it */
} kern_table;

/* The int8 pointwise weights as every level's q_pw reads them: groups of 4
 * input channels, each [Cout rounded up to 16][4] int8, zero-padded, so
 * that one 32-bit lane holds the 4 weights of one output that a VNNI
 * vpdpbusd (or a pair of pmaddwd) multiplies with 4 input bytes at once.
 * The zero point then comes out of the sum: sum (x - zx) w = sum x w -
 * zx colsum, with colsum[o] = sum over i of w[i,o]. */
#define KERN_QPW_OUT 16
static inline int kern_qpw_cout(int Cout) { return (Cout + KERN_QPW_OUT - 1) / KERN_QPW_OUT * KERN_QPW_OUT; }
static inline size_t kern_qpw_size(int Cin, int Cout)
{
    return (size_t)((Cin + 3) / 4) * (size_t)kern_qpw_cout(Cout) * 4;
}
/* w [Cin,Cout] -> wp [kern_qpw_size], colsum [Cout] */
void kern_qpw_pack(int8_t *wp, int32_t *colsum, const int8_t *w, int Cin, int Cout);

/* The active table (chosen on first use, see above). */
const kern_table *kern_active(void);
/* Every table this build has, best first, and whether this CPU runs it. */
int kern_count(void);
const kern_table *kern_at(int i);
int kern_cpu_runs(const kern_table *t);
/* By name ("auto" is the best this CPU runs); NULL with err set when unknown,
 * not built here, or not runnable on this CPU. */
const kern_table *kern_find(const char *name, nas_err *err);
/* Makes t the active table (tests and benchmarks; not thread-safe against
 * kernels running at the same time). */
void kern_use(const kern_table *t);

#endif
