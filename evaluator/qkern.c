/* qkern.c — the int8 kernels of nas's quantized inference (quant.h), each
 * beside the plain scalar oracle the tests compare it with bit for bit (the
 * sums are exact in int32, so any order must give the same accumulator).
 *
 * Range: |x - zx| <= 255 and |w| <= 127, so one product is under 2^15 and an
 * int32 holds 65,000 of them: far more than any layer's k*k*Cin here. The
 * fast versions keep a row of Cout (or C) accumulators and add one input
 * value times a contiguous weight row into it, the loop compilers vectorise;
 * the oracles sum each output element alone, in the formula's order. The
 * pointwise one (the hot one, on weights packed for it) and the
 * requantization are the kernel layer's (kern.h): compiled for each ISA and
 * chosen at run time.
 */
#include "evaluator/quant.h"
#include "evaluator/kern.h"

#include <math.h>
#include <string.h>

void evq_pw_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *wp, const int32_t *colsum,
                const int32_t *bias, int N, int Cin, int Cout)
{
    kern_active()->q_pw(acc, x, zx, wp, colsum, bias, N, Cin, Cout);   /* kern_body.h, this CPU's level */
}

void evq_pw_s32_ref(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias,
                    int N, int Cin, int Cout)
{
    for (int p = 0; p < N; p++)
        for (int o = 0; o < Cout; o++) {
            int32_t s = bias[o];
            for (int i = 0; i < Cin; i++)
                s += ((int32_t)x[(size_t)p * Cin + i] - zx) * (int32_t)w[(size_t)i * Cout + o];
            acc[(size_t)p * Cout + o] = s;
        }
}


void evq_dw_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int B,
                int H, int W, int C, int k, int s)
{
    kern_active()->q_dw(acc, x, zx, w, bias, B, H, W, C, k, s);
}

void evq_dw_s32_ref(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias,
                    int B, int H, int W, int C, int k, int s)
{
    int Ho = space_out_side(H, k, s), Wo = space_out_side(W, k, s), pad = (k - 1) / 2;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int c = 0; c < C; c++) {
                    int32_t sum = bias[c];
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                            /* padding holds the real value 0, i.e. zx: it adds nothing */
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                continue;
                            int32_t xv = x[(((size_t)b * H + iy) * W + ix) * C + c];
                            sum += (xv - zx) * (int32_t)w[(size_t)(ky * k + kx) * C + c];
                        }
                    acc[(((size_t)b * Ho + oy) * Wo + ox) * C + c] = sum;
                }
}

void evq_conv_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int B,
                  int H, int W, int Cin, int Cout, int k, int s)
{
    int Ho = space_out_side(H, k, s), Wo = space_out_side(W, k, s), pad = (k - 1) / 2;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                int32_t *a = acc + (((size_t)b * Ho + oy) * Wo + ox) * Cout;
                memcpy(a, bias, sizeof(int32_t) * (size_t)Cout);
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * s - pad + ky;
                    if (iy < 0 || iy >= H)
                        continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox * s - pad + kx;
                        if (ix < 0 || ix >= W)
                            continue;
                        const uint8_t *xp = x + (((size_t)b * H + iy) * W + ix) * Cin;
                        const int8_t *wp = w + (size_t)(ky * k + kx) * Cin * Cout;
                        for (int i = 0; i < Cin; i++) {
                            int32_t xv = (int32_t)xp[i] - zx;
                            for (int o = 0; o < Cout; o++)
                                a[o] += xv * (int32_t)wp[(size_t)i * Cout + o];
                        }
                    }
                }
            }
}

/* The dense conv as the pointwise kernel over patches: each output pixel's
 * k x k x Cin inputs side by side (the padding is the zero point, which adds
 * nothing), against weights packed with Cin' = k * k * Cin, as they already
 * lie in [ky][kx][i][o]. */
void evq_conv_im2col(int32_t *acc, const uint8_t *x, int zx, const int8_t *wp, const int32_t *colsum,
                     const int32_t *bias, int B, int H, int W, int Cin, int Cout, int k, int s, uint8_t *col)
{
    int Ho = space_out_side(H, k, s), Wo = space_out_side(W, k, s), pad = (k - 1) / 2;
    size_t patch = (size_t)k * k * Cin;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                uint8_t *c = col + (((size_t)b * Ho + oy) * Wo + ox) * patch;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++, c += Cin) {
                        int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                        const uint8_t *xp = x + (((size_t)b * H + iy) * W + ix) * Cin;
                        int in = iy >= 0 && iy < H && ix >= 0 && ix < W;
                        if (Cin > 8)   /* a stem reads 1 or 3 channels: no call per tap */
                            in ? memcpy(c, xp, (size_t)Cin) : memset(c, zx, (size_t)Cin);
                        else
                            for (int i = 0; i < Cin; i++)
                                c[i] = in ? xp[i] : (uint8_t)zx;
                    }
            }
    evq_pw_s32(acc, col, zx, wp, colsum, bias, B * Ho * Wo, (int)patch, Cout);
}

void evq_requant(uint8_t *y, const int32_t *acc, int N, int C, const float *mult, op_act act,
                 ev_qparam py)
{
    kern_active()->q_requant(y, acc, (size_t)N, C, mult, act, py.scale, py.zero);
}

void evq_requant_ref(uint8_t *y, const int32_t *acc, int N, int C, const float *mult, op_act act,
                     ev_qparam py, float *tmp)
{
    for (int p = 0; p < N; p++) {
        const int32_t *a = acc + (size_t)p * C;
        for (int c = 0; c < C; c++)
            tmp[c] = (float)a[c] * mult[c];
        if (act != OP_NONE)
            op_act_forward(tmp, tmp, (size_t)C, act);
        evq_u8(y + (size_t)p * C, tmp, (size_t)C, py);
    }
}

void evq_f32(float *y, const uint8_t *q, size_t n, ev_qparam p)
{
    kern_active()->q_f32(y, q, n, p.scale, p.zero);
}

void evq_u8(uint8_t *q, const float *x, size_t n, ev_qparam p)
{
    kern_active()->q_u8(q, x, n, p.scale, p.zero);
}
