/* quant.h — what quant.c shares with the rest of the evaluator (onnx.c's QDQ
 * export, the int8 kernels in qkern.c, the white-box tests); module-private.
 *
 * The quantization scheme, one definition for nas's own int8 inference and
 * the exported QDQ model (as ONNX Runtime's quantizer writes it):
 *   weights     int8, symmetric, per output channel: s_w[o] = max|w[o]| / 127,
 *               zero point 0, values in [-127, 127]; batch norm folded first;
 *   activations uint8, asymmetric, per tensor: [lo, hi] (calibrated, widened
 *               to hold 0) -> s = (hi - lo) / 255, z = round(-lo / s);
 *   bias        int32, scale s_x * s_w[o], zero point 0;
 *   requantize  float scale: acc (int32, bias included) * (s_x * s_w[o]),
 *               the activation, then round-half-even(v / s_y) + z_y, clamped
 *               to [0, 255] (as ONNX Runtime's MlasRequantizeOutput does in
 *               float, rather than a fixed-point multiplier and shift).
 * A quantization point is the output of a conv group (conv, its BN and its
 * activation, when it has one), of squeeze-excite, of a residual add, of the
 * head's pooling and of the fc's activation, and the network input: every
 * tensor a conv or a Gemm of the head (fc, classifier) reads. Those Gemms
 * have the weights and bias above (per output row of their [out][in]
 * weights) and give float: acc * (s_x * s_w[o]), no requantization, so the
 * logits are float and the fc's activation runs in float before its point.
 * Squeeze-excite's own linears and the pooling stay float32. */
#ifndef EV_QUANT_H
#define EV_QUANT_H

#include "evaluator/ev.h"
#include "evaluator/ops.h"

/* 1 when op i's output is quantized (a Q node in the export). */
int evq_is_point(const space_layers *L, int i);
/* The op whose value op i reads as its first input (-1: the network input),
 * through dropout, which inference passes on. */
int evq_input(const space_layers *L, int i);
/* The activation that ends op i's conv group, or -1 (none); op i is a q-point. */
int evq_point_act(const space_layers *L, int i);

/* Batch norm folded into conv weights, in ONNX's OIHW order (depthwise:
 * [C,1,k,k]): w' = w * g / sqrt(v + eps), b' = beta - m * g / sqrt(v + eps),
 * in double (keep_bn: w' = w, b' = beta - m, which the caller ignores). */
void evq_fold(const float *w_eng, int depthwise, const float *gamma, const float *beta,
              const float *mean, const float *var, int k, int cin, int cout, int keep_bn,
              float *ow, float *ob);
/* w [O][per] -> wq [O][per], s [O] (symmetric int8 per row; an all-zero row gets s = 1). */
void evq_quant_weights(const float *w, int O, int per, int8_t *wq, float *s);
/* round(b / (sx * sw[o])), saturated to int32. */
void evq_quant_bias(const float *b, int O, float sx, const float *sw, int32_t *bq);

/* The calibrated table: per op (scale 0: not a point) and the input. */
typedef struct {
    int n;
    ev_qparam in;
    const ev_qparam *op;
} evq_table;
/* NAS_EINVAL when q is not calibrated. */
NAS_MUST_USE nas_status evq_table_of(const ev_qnet *q, evq_table *tab, const ev_tensor **t, int *nt,
                                     nas_err *err);

const space_net *evq_arch(const ev_qnet *q);

/* ---- int8 kernels (qkern.c): int32 accumulators, each with its scalar oracle.
 * x is uint8 NHWC with zero point zx; weights int8 (zero point 0); bias int32;
 * acc gets sum (x - zx) * w + bias. */
/* pointwise: x [N,Cin], w [Cin,Cout] -> acc [N,Cout]; the fast one reads w
 * packed by kern_qpw_pack (wp, colsum), the oracle reads w as it is */
void evq_pw_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *wp, const int32_t *colsum,
                const int32_t *bias, int N, int Cin, int Cout);
void evq_pw_s32_ref(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias,
                    int N, int Cin, int Cout);
/* depthwise k x k, stride s, pad (k-1)/2: x [B,H,W,C], w [k,k,C] -> acc [B,Ho,Wo,C] */
void evq_dw_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int B,
                int H, int W, int C, int k, int s);
void evq_dw_s32_ref(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias,
                    int B, int H, int W, int C, int k, int s);
/* dense k x k (the stem), w [k,k,Cin,Cout] -> acc [B,Ho,Wo,Cout] */
void evq_conv_s32(int32_t *acc, const uint8_t *x, int zx, const int8_t *w, const int32_t *bias, int B,
                  int H, int W, int Cin, int Cout, int k, int s);
/* The same from w packed as a pointwise conv of k * k * Cin inputs, through
 * col (B * Ho * Wo * k * k * Cin bytes). */
void evq_conv_im2col(int32_t *acc, const uint8_t *x, int zx, const int8_t *wp, const int32_t *colsum,
                     const int32_t *bias, int B, int H, int W, int Cin, int Cout, int k, int s, uint8_t *col);
/* acc [N,C] -> y [N,C]: v = acc * mult[c]; act (OP_NONE: none); ev_quantize(v, py).
 * The kernel layer's one pass, and its oracle in three (tmp holds C floats). */
void evq_requant(uint8_t *y, const int32_t *acc, int N, int C, const float *mult, op_act act,
                 ev_qparam py);
void evq_requant_ref(uint8_t *y, const int32_t *acc, int N, int C, const float *mult, op_act act,
                     ev_qparam py, float *tmp);
/* y[i] = ev_dequantize(q[i], p) for n values, by the kernel layer. */
void evq_f32(float *y, const uint8_t *q, size_t n, ev_qparam p);
/* q[i] = ev_quantize(x[i], p, 0, 255) for n values, by the kernel layer. */
void evq_u8(uint8_t *q, const float *x, size_t n, ev_qparam p);

#endif
