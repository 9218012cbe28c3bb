/* qkern.c — the int8 kernels of nas's quantized inference (quant.h), each
 * beside the plain scalar oracle the tests compare it with bit for bit (the
 * sums are exact in int32, so any order must give the same accumulator).
 *
 * Range: |x - zx| <= 255 and |w| <= 127, so one product is under 2^15 and an
 * int32 holds 65,000 of them: far more than any layer's k*k*Cin here. The
 * fast versions keep a row of Cout (or C) accumulators and add one input
 * value times a contiguous weight row into it, the loop compilers vectorise;
 * the oracles sum each output element alone, in the formula's order.
 */
#include "evaluator/quant.h"

#include <math.h>
#include <string.h>

void evq_pw_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int N,
                int Cin, int Cout)
{
    for (int p = 0; p < N; p++) {
        int32_t *a = acc + (size_t)p * Cout;
        const uint8_t *xp = x + (size_t)p * Cin;
        memcpy(a, bias, sizeof(int32_t) * (size_t)Cout);
        for (int i = 0; i < Cin; i++) {
            int32_t xv = (int32_t)xp[i] - zx;
            const int8_t *wr = w + (size_t)i * Cout;
            for (int o = 0; o < Cout; o++)
                a[o] += xv * (int32_t)wr[o];
        }
    }
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

static int out_side(int n, int k, int s) { return (n + 2 * ((k - 1) / 2) - k) / s + 1; }

/* One output pixel of a depthwise conv: acc row [C] += taps inside the map. */
static void dw_pixel(int32_t *a, const uint8_t *x, int zx, const int8_t *w, int H, int W, int C, int k,
                     int iy0, int ix0)
{
    for (int ky = 0; ky < k; ky++) {
        int iy = iy0 + ky;
        if (iy < 0 || iy >= H)
            continue;
        for (int kx = 0; kx < k; kx++) {
            int ix = ix0 + kx;
            if (ix < 0 || ix >= W)
                continue;
            const uint8_t *xp = x + ((size_t)iy * W + ix) * C;
            const int8_t *wp = w + (size_t)(ky * k + kx) * C;
            for (int c = 0; c < C; c++)
                a[c] += ((int32_t)xp[c] - zx) * (int32_t)wp[c];
        }
    }
}

void evq_dw_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int B,
                int H, int W, int C, int k, int s)
{
    int Ho = out_side(H, k, s), Wo = out_side(W, k, s), pad = (k - 1) / 2;
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                int32_t *a = acc + (((size_t)b * Ho + oy) * Wo + ox) * C;
                memcpy(a, bias, sizeof(int32_t) * (size_t)C);
                dw_pixel(a, x + (size_t)b * H * W * C, zx, w, H, W, C, k, oy * s - pad, ox * s - pad);
            }
}

void evq_dw_s32_ref(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias,
                    int B, int H, int W, int C, int k, int s)
{
    int Ho = out_side(H, k, s), Wo = out_side(W, k, s), pad = (k - 1) / 2;
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
    int Ho = out_side(H, k, s), Wo = out_side(W, k, s), pad = (k - 1) / 2;
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

void evq_requant(uint8_t *y, const int32_t *acc, int N, int C, const float *mult, op_act act,
                 ev_qparam py, float *tmp)
{
    for (int p = 0; p < N; p++) {
        const int32_t *a = acc + (size_t)p * C;
        for (int c = 0; c < C; c++)
            tmp[c] = (float)a[c] * mult[c];
        if (act != OP_NONE)
            op_act_forward(tmp, tmp, (size_t)C, act);
        for (int c = 0; c < C; c++)
            y[(size_t)p * C + c] = (uint8_t)ev_quantize(tmp[c], py, 0, 255);
    }
}
