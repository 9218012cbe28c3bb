/* ops.h — the evaluator's layers as forward/backward pairs (module-private).
 *
 * Tensors are NHWC fp32; N below is batch * height * width (rows of a
 * channel-minor matrix). Conventions, as in llm.c:
 *   - parameter gradients accumulate (+=); the caller zeroes them once a step;
 *   - input gradients are written (=), unless a function says otherwise;
 *   - nothing allocates: scratch comes from the caller, sized by the *_scratch
 *     helpers, so the network can put it in its one scratch block.
 * Work is spread with OpenMP over cx->threads threads with static schedules and
 * per-thread partial sums reduced in thread order, so the same thread count
 * gives the same result bit for bit.
 */
#ifndef EV_OPS_H
#define EV_OPS_H

#include <stddef.h>

typedef enum {
    OP_NONE,       /* identity */
    OP_RELU,
    OP_RELU6,
    OP_HSWISH,     /* x * relu6(x + 3) / 6 */
    OP_SWISH,      /* x * sigmoid(x) */
    OP_SIGMOID,
    OP_HSIGMOID,   /* relu6(x + 3) / 6 */
    OP_ACT_COUNT
} op_act;

const char *op_act_name(op_act a);

/* A spinning barrier for a team of threads that stays inside one parallel
 * region for a whole inference (net.c): at batch 1 a layer is a few
 * microseconds of work, and waking a sleeping OpenMP thread for each one
 * (passive waiting, as nas runs) costs more than the layer. */
typedef struct {
    _Atomic int arrived, phase;
    int n;
    double (*now)(void);   /* the clock that times thread 0's waits (nas_now) */
    double waited;         /* seconds thread 0 spent waiting for the others */
} ops_team;

void ops_team_init(ops_team *tm, int n, double (*now)(void));

/* Threads and the per-thread partial-sum buffer (ops_partial_floats(...) floats).
 * team set: the caller is thread t of team->n threads, already running in
 * one region; an op that takes a ctx computes only this thread's share of
 * its rows (the *_infer ops, op_conv_im2col) and opens no region of its own.
 * The shares are whole rows computed as one thread would, so a team gives the
 * same bits as one thread. */
typedef struct {
    int threads;
    float *partial;
    ops_team *team;
    int t;
} op_ctx;

/* Waits until every thread of cx's team has arrived (nothing without a team). */
void ops_team_sync(const op_ctx *cx);

void ops_set_threads(int threads);   /* OpenMP and OpenBLAS */
/* Floats of per-thread partials the ops need for at most max_c channels and a
 * depthwise kernel of at most k x k. */
size_t ops_partial_floats(int threads, int max_c, int max_k);

/* Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C: OpenBLAS's
 * cblas_sgemm (the Makefile keeps GSL's reference CBLAS out of the link). */
void op_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

/* The same, spread over cx->threads threads by blocks of rows (or columns)
 * of C, each block computed whole by one single-threaded sgemm. */
void op_gemm_par(const op_ctx *cx, int trans_a, int trans_b, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- full convolution (the stem), via im2col and one GEMM ----------------
 * x [B,H,W,Cin], w [k,k,Cin,Cout], y [B,Ho,Wo,Cout], col [B*Ho*Wo, k*k*Cin],
 * padding (k-1)/2, Ho = (H + 2p - k) / s + 1. No input gradient: the stem's
 * input is the image. */
int op_out_side(int in, int k, int stride);
/* col [B*Ho*Wo, k*k*Cin]: the patches, one row per output pixel. */
void op_conv_im2col(const op_ctx *cx, float *col, const float *x, int B, int H, int W, int Cin,
                    int k, int s);
void op_conv_forward(const op_ctx *cx, float *y, float *col, const float *x, const float *w,
                     int B, int H, int W, int Cin, int Cout, int k, int s);
void op_conv_backward(const op_ctx *cx, float *dw, float *col, const float *dy, const float *x,
                      int B, int H, int W, int Cin, int Cout, int k, int s);

/* ---- pointwise (1x1) convolution: one GEMM over all N rows ---------------
 * x [N,Cin], w [Cin,Cout], y [N,Cout].
 * Backward: dw += x^T dy; dx = dy w^T, or dx += dy w^T when dx_accumulate. */
void op_pw_forward(const op_ctx *cx, float *y, const float *x, const float *w, int N, int Cin,
                   int Cout);
void op_pw_backward(const op_ctx *cx, float *dx, float *dw, const float *dy, const float *x,
                    const float *w, int N, int Cin, int Cout, int dx_accumulate);

/* ---- depthwise convolution, k 3/5/7, stride 1/2, padding (k-1)/2 ---------
 * x [B,H,W,C], w [k,k,C], y [B,Ho,Wo,C].
 * The _ref pair is the plain scalar oracle; the other runs the kernel layer's
 * row kernels (kern.h: the ISA chosen at run time, specialised per kernel and
 * stride) on cx->threads threads. dx is written, dw +=. */
void op_dw_forward_ref(float *y, const float *x, const float *w, int B, int H, int W, int C, int k,
                       int s);
void op_dw_backward_ref(float *dx, float *dw, const float *dy, const float *x, const float *w, int B,
                        int H, int W, int C, int k, int s);
void op_dw_forward(const op_ctx *cx, float *y, const float *x, const float *w, int B, int H, int W,
                   int C, int k, int s);
void op_dw_backward(const op_ctx *cx, float *dx, float *dw, const float *dy, const float *x,
                    const float *w, int B, int H, int W, int C, int k, int s);

/* ---- batch norm fused with an activation ---------------------------------
 * z [N,C] -> y = act(gamma * (z - mean) * rstd + beta) [N,C].
 * Training: mean/rstd are the batch's (biased variance, eps 1e-5), saved in
 * mean[C], rstd[C], and the running statistics move by `momentum` (PyTorch's
 * convention: running = (1 - m) running + m batch, unbiased variance).
 * Eval: the running statistics, nothing saved.
 * Backward recomputes the normalised value from z and the saved statistics,
 * so only z and y are kept. dz is written; it may alias dy. */
#define OP_BN_EPS 1e-5f
void op_bn_act_forward(const op_ctx *cx, float *y, float *mean, float *rstd, const float *z,
                       const float *gamma, const float *beta, float *run_mean, float *run_var,
                       int N, int C, op_act act, int training, float momentum);
void op_bn_act_backward(const op_ctx *cx, float *dz, float *dgamma, float *dbeta, const float *dy,
                        const float *z, const float *mean, const float *rstd, const float *gamma,
                        const float *beta, int N, int C, op_act act);

/* ---- inference: convolutions with eval-mode batch norm fused -------------
 * The running statistics become a per-channel affine (scale, shift), computed
 * exactly as op_bn_act_forward's eval branch does, and applied with the
 * activation (and a residual, res may be NULL) to each output tile while it
 * is still in registers: no pre-normalisation tensor, no second pass. The
 * weights themselves are read as they are, so there is no folded copy to keep
 * in step with training or loading. Each output element's sum runs in the same
 * order whatever the batch and thread count. y must not alias x or res. */
void op_bn_eval_affine(float *scale, float *shift, const float *gamma, const float *beta,
                       const float *run_mean, const float *run_var, int C);
/* y [N,Cout] = act((x [N,Cin] w [Cin,Cout]) * scale + shift) (+ res [N,Cout]
 * before the activation; the space only puts residuals after a linear BN). */
void op_pw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, const float *res, int N, int Cin,
                        int Cout, op_act act);
/* y [B,Ho,Wo,C] = act(depthwise(x, w) * scale + shift) (+ res [B,Ho,Wo,C]
 * after the activation, as the network adds a skip after a conv's BN). */
void op_dw_bn_act_infer(const op_ctx *cx, float *y, const float *x, const float *w,
                        const float *scale, const float *shift, const float *res, int B, int H,
                        int W, int C, int k, int s, op_act act);

/* ---- element-wise activations: x [n] -> y [n]; dx may alias dy ---------- */
void op_act_forward(float *y, const float *x, size_t n, op_act act);
void op_act_backward(float *dx, const float *dy, const float *x, size_t n, op_act act);

/* ---- global average pool: x [B,HW,C] -> y [B,C] --------------------------
 * Backward: dx = dy / HW broadcast, or += when dx_accumulate (SE adds it to
 * the scale's gradient). */
void op_pool_forward(float *y, const float *x, int B, int HW, int C);
void op_pool_backward(float *dx, const float *dy, int B, int HW, int C, int dx_accumulate);

/* ---- channel scale (squeeze-excite's excite): x [B,HW,C] * g [B,C] -------
 * Backward: dx = dy * g; dg = sum over HW of dy * x (written). */
void op_scale_forward(float *y, const float *x, const float *g, int B, int HW, int C);
void op_scale_backward(float *dx, float *dg, const float *dy, const float *x, const float *g,
                       int B, int HW, int C);

/* ---- linear with bias: x [B,I], w [I,O], b [O] -> y [B,O] -----------------
 * Backward: dw += x^T dy, db += sum dy, dx = dy w^T (dx may be NULL). */
void op_linear_forward(float *y, const float *x, const float *w, const float *b, int B, int In, int O);
void op_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int B, int In, int O);

/* ---- residual add: y += x [n]; its backward is the identity on both ----- */
void op_add(float *y, const float *x, size_t n);

/* ---- dropout: y = x * mask, mask 0 or 1/(1-p) [n], drawn by the caller ---
 * Backward: dx = dy * mask. */
void op_dropout_forward(float *y, const float *x, const float *mask, size_t n);
void op_dropout_backward(float *dx, const float *dy, const float *mask, size_t n);

/* ---- softmax cross-entropy with label smoothing ---------------------------
 * logits [B,K], labels [B] -> mean loss over the batch (returned); target is
 * (1 - eps) on the label plus eps / K everywhere (PyTorch's definition).
 * dlogits (may be NULL) = (softmax - target) / B. correct (may be NULL) counts
 * argmax hits. */
double op_xent_forward_backward(float *dlogits, const float *logits, const unsigned char *labels,
                                int B, int K, float eps, int *correct);

/* ---- knowledge distillation (Hinton, Vinyals, Dean 2015) -----------------
 * loss = (1 - alpha) * xent(labels, eps) + alpha * T^2 * KL(pt || ps), mean
 * over the batch, with pt = softmax(teacher / T), ps = softmax(logits / T).
 * T^2 keeps the soft term's gradient, alpha * T * (ps - pt) / B, on the scale
 * of the hard one's as T grows, so alpha means the same at every T. */
double op_kd_forward_backward(float *dlogits, const float *logits, const float *teacher,
                              const unsigned char *labels, int B, int K, float eps, float T,
                              float alpha, int *correct);

#endif
