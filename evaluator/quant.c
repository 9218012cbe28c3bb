/* quant.c — post-training int8 quantization of a trained network.
 *
 * An ev_qnet is the network rebuilt from its named tensors with batch norm
 * folded, walked op by op from the layer list (space_layers, the one
 * description the engine and the export share), in one of three modes
 * (ev.h): float32, the float reference of the quantized arithmetic, and the
 * int8 engine (qkern.c). Calibration runs the float32 mode over training
 * images and watches every quantization point: a min/max pass, then, for
 * the percentile method, a histogram pass over that range. The scheme itself
 * (symmetric per-channel int8 weights, asymmetric per-tensor uint8
 * activations, int32 bias, float-scale requantization) is in quant.h; the
 * QDQ export (onnx.c) reads the same folded weights and the same table, so
 * the model ONNX Runtime runs is the one measured here.
 *
 * Buffers: every op that writes a new tensor owns one (B x its output);
 * batch norm, activations and dropout work in place on their input's.
 */
#include "evaluator/quant.h"
#include "evaluator/net_priv.h"
#include "evaluator/kern.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define HIST_BINS 2048

/* ======================= primitives ====================================== */

ev_qparam ev_qparam_u8(float lo, float hi)
{
    if (lo > 0.0f)
        lo = 0.0f;
    if (hi < 0.0f)
        hi = 0.0f;
    ev_qparam p = {1.0f, 0};
    float s = (hi - lo) / 255.0f;
    if (!(s > 0.0f) || !isfinite(s))
        return p;
    p.scale = s;
    float z = nearbyintf(-lo / s);
    p.zero = z < 0.0f ? 0 : z > 255.0f ? 255 : (int32_t)z;
    return p;
}

int32_t ev_quantize(float x, ev_qparam p, int32_t qmin, int32_t qmax)
{
    if (isnan(x))
        return p.zero < qmin ? qmin : p.zero > qmax ? qmax : p.zero;
    /* clamped in float first: a huge x / scale must never reach an int conversion */
    float r = nearbyintf(x / p.scale) + (float)p.zero;
    if (r <= (float)qmin)
        return qmin;
    if (r >= (float)qmax)
        return qmax;
    return (int32_t)r;
}

float ev_dequantize(int32_t q, ev_qparam p) { return p.scale * (float)(q - p.zero); }

void ev_quant_opts_default(ev_quant_opts *o)
{
    o->method = EV_CALIB_PERCENTILE;
    o->percentile = 99.99;
    o->images = EV_QUANT_DEFAULT_IMAGES;
    o->batch = 32;
}

const char *ev_calib_name(ev_calib_method m) { return m == EV_CALIB_MINMAX ? "minmax" : "percentile"; }

void evq_fold(const float *w_eng, int depthwise, const float *gamma, const float *beta,
              const float *mean, const float *var, int k, int cin, int cout, int keep_bn,
              float *ow, float *ob)
{
    int ci = depthwise ? 1 : cin;
    for (int o = 0; o < cout; o++) {
        double s = keep_bn ? 1.0 : gamma[o] / sqrt((double)var[o] + (double)OP_BN_EPS);
        for (int i = 0; i < ci; i++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    size_t src = ((size_t)(ky * k + kx) * ci + i) * cout + o;
                    ow[(((size_t)o * ci + i) * k + ky) * k + kx] = (float)(w_eng[src] * s);
                }
        ob[o] = (float)(beta[o] - mean[o] * s);
    }
}

void evq_quant_weights(const float *w, int O, int per, int8_t *wq, float *s)
{
    for (int o = 0; o < O; o++) {
        const float *r = w + (size_t)o * per;
        float m = 0.0f;
        for (int i = 0; i < per; i++)
            m = fmaxf(m, fabsf(r[i]));
        s[o] = m > 0.0f ? m / 127.0f : 1.0f;
        ev_qparam p = {s[o], 0};
        for (int i = 0; i < per; i++)
            wq[(size_t)o * per + i] = (int8_t)ev_quantize(r[i], p, -127, 127);
    }
}

void evq_quant_bias(const float *b, int O, float sx, const float *sw, int32_t *bq)
{
    for (int o = 0; o < O; o++) {
        double v = nearbyint((double)b[o] / ((double)(sx * sw[o])));
        bq[o] = isnan(v) ? 0 : v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : (int32_t)v;
    }
}

int evq_is_point(const space_layers *L, int i)
{
    const space_op *o = &L->op[i];
    switch (o->kind) {
    case SPACE_OP_ACT:   /* ending a conv group, or the fc's (a Gemm reads it) */
        return o->in >= 0 && (L->op[o->in].kind == SPACE_OP_BN || L->op[o->in].kind == SPACE_OP_LINEAR);
    case SPACE_OP_BN:
        return !(i + 1 < L->n && L->op[i + 1].kind == SPACE_OP_ACT && L->op[i + 1].in == i);
    case SPACE_OP_SE:
    case SPACE_OP_ADD:
    case SPACE_OP_POOL:  /* the head's first Gemm reads it */
        return 1;
    default:
        return 0;
    }
}

int evq_input(const space_layers *L, int i)
{
    int in = L->op[i].in;
    while (in >= 0 && L->op[in].kind == SPACE_OP_DROPOUT)
        in = L->op[in].in;
    return in;
}

int evq_point_act(const space_layers *L, int i) { return L->op[i].kind == SPACE_OP_ACT ? (int)L->op[i].act : -1; }

/* ======================= the network ===================================== */

typedef struct {
    int k, stride, cin, cout, dw, in_hw, out_hw, end;   /* end: the op ending its group */
    op_act act;
    float *w, *b;          /* folded, engine order: KKIO, or KKC when depthwise */
    int8_t *wq;            /* the same order */
    int8_t *wp;            /* pointwise only: wq packed for the kernel layer (kern.h) */
    int32_t *colsum;       /* with it: the column sums */
    int deq;               /* a float op reads the group's output: dequantize it */
    float *sw, *wdq;       /* per-channel scales; dequantized weights */
    int32_t *bq;
    float *bdq, *mult;     /* dequantized bias; s_x * s_w[o] */
} qconv;

/* A Gemm of the head (fc, classifier) on a quantization point; its output
 * stays float. Weights [out][in], as ONNX's Gemm with transB holds them. */
typedef struct {
    int in, out, src;      /* src: the point it reads (dropout passed through) */
    const float *w, *b;    /* the engine's (the float mode's) */
    int8_t *wq;
    float *sw, *wdq;       /* per-output scales; dequantized weights */
    int32_t *bq;
    float *bdq, *mult;     /* dequantized bias; s_x * s_w[o] */
} qlin;

struct ev_qnet {
    space_net arch;
    space_layers L;
    const ev_tensor *t;
    int nt, batch, calibrated;
    qconv *cv;             /* [L.n]; used at conv ops */
    qlin *ln;              /* [L.n]; used at linear ops */
    float **f;             /* [L.n] op outputs (aliases for BN, ACT, dropout) */
    uint8_t **q;           /* [L.n] quantization points' uint8 values */
    int *owns;             /* [L.n] f[i] is op i's own block */
    float *xin, *tmp, *se;
    uint8_t *qin, *col;    /* col: the dense k x k convs' patches (im2col) */
    int32_t *acc;
    ev_qparam in, *op;
    char calib[96];
};

static const float *find(const ev_qnet *q, const char *name, size_t n, nas_err *err, nas_status *st)
{
    for (int i = 0; i < q->nt; i++) {
        if (strcmp(q->t[i].name, name) != 0)
            continue;
        size_t m = 1;
        for (int d = 0; d < q->t[i].ndim; d++)
            m *= (size_t)q->t[i].shape[d];
        if (m == n && q->t[i].data)
            return q->t[i].data;
        *st = nas_errf(err, NAS_EINVAL, "int8: tensor '%s' has %zu values, the architecture needs %zu",
                       name, m, n);
        return NULL;
    }
    *st = nas_errf(err, NAS_EINVAL, "int8: the network has no tensor '%s'", name);
    return NULL;
}

/* ======================= the head's linears ============================== */

/* Quantizes linear op i's weights (the engine's IO [in][out], transposed to
 * [out][in] first, so each output's row gets its own scale). */
static nas_status lin_setup(ev_qnet *q, int i, nas_err *err)
{
    const space_op *o = &q->L.op[i];
    qlin *l = &q->ln[i];
    nas_status st = NAS_OK;
    char nm[96];
    *l = (qlin){.in = o->in_ch, .out = o->out_ch, .src = evq_input(&q->L, i)};
    if (l->src < 0 || !evq_is_point(&q->L, l->src))
        return nas_errf(err, NAS_EUNSUPP, "int8: linear '%s' reads a value that is not quantized", o->name);
    size_t nw = (size_t)l->in * l->out;
    snprintf(nm, sizeof nm, "%s.w", o->name);
    const float *w = find(q, nm, nw, err, &st);
    snprintf(nm, sizeof nm, "%s.b", o->name);
    if (st == NAS_OK)
        l->b = find(q, nm, (size_t)l->out, err, &st);
    if (st != NAS_OK)
        return st;
    float *wt = nas_malloc(sizeof(float) * nw);
    l->wq = nas_malloc(nw);
    l->wdq = nas_malloc(sizeof(float) * nw);
    l->sw = nas_malloc(sizeof(float) * l->out);
    l->bq = nas_malloc(sizeof(int32_t) * l->out);
    l->bdq = nas_malloc(sizeof(float) * l->out);
    l->mult = nas_malloc(sizeof(float) * l->out);
    if (!wt || !l->wq || !l->wdq || !l->sw || !l->bq || !l->bdq || !l->mult) {
        nas_free(wt);
        return nas_errf(err, NAS_ENOMEM, "int8: out of memory for linear '%s'", o->name);
    }
    for (int r = 0; r < l->out; r++)
        for (int c = 0; c < l->in; c++)
            wt[(size_t)r * l->in + c] = w[(size_t)c * l->out + r];
    evq_quant_weights(wt, l->out, l->in, l->wq, l->sw);
    for (size_t j = 0; j < nw; j++)
        l->wdq[j] = (float)l->wq[j] * l->sw[j / (size_t)l->in];
    l->w = w;
    nas_free(wt);
    return NAS_OK;
}

static void lin_free(qlin *l)
{
    nas_free(l->wq), nas_free(l->wdq), nas_free(l->sw), nas_free(l->bq), nas_free(l->bdq);
    nas_free(l->mult);
}

/* The bias at its input's calibrated scale, as for a conv (quant.h). */
static void lin_calibrate(ev_qnet *q)
{
    for (int i = 0; i < q->L.n; i++) {
        qlin *l = &q->ln[i];
        if (!l->wq)
            continue;
        float sx = q->op[l->src].scale;
        evq_quant_bias(l->b, l->out, sx, l->sw, l->bq);
        for (int o = 0; o < l->out; o++) {
            l->mult[o] = sx * l->sw[o];
            l->bdq[o] = (float)l->bq[o] * l->mult[o];
        }
    }
}

/* Linear op i [B,in] -> [B,out] in float. FLOAT: the engine's weights. REF:
 * the dequantized int8 weights and int32 bias on the dequantized input (the
 * QDQ model's meaning). INT8: (x - z_x) * w summed in int32 with the bias,
 * then times s_x * s_w[o], as ONNX Runtime's QGemm with a float output does;
 * a plain loop: the head's Gemms are a small share of a network's MACs. */
static void lin_forward(ev_qnet *q, ev_qmode mode, int i, int B)
{
    const qlin *l = &q->ln[i];
    float *y = q->f[i];
    if (mode == EV_QMODE_FLOAT) {
        op_linear_forward(y, q->f[l->src], l->w, l->b, B, l->in, l->out);
        return;
    }
    int zx = q->op[l->src].zero;
    for (int n = 0; n < B; n++) {
        const float *xf = q->f[l->src] + (size_t)n * l->in;
        const uint8_t *xq = q->q[l->src] + (size_t)n * l->in;
        for (int o = 0; o < l->out; o++) {
            size_t r = (size_t)o * l->in;
            if (mode == EV_QMODE_REF) {
                float a = l->bdq[o];
                for (int k = 0; k < l->in; k++)
                    a += xf[k] * l->wdq[r + k];
                y[(size_t)n * l->out + o] = a;
                continue;
            }
            int32_t a = l->bq[o];
            for (int k = 0; k < l->in; k++)
                a += ((int32_t)xq[k] - zx) * (int32_t)l->wq[r + k];
            y[(size_t)n * l->out + o] = (float)a * l->mult[o];
        }
    }
}

static size_t op_elems(const space_op *o, int B)
{
    int hw = o->out_hw > 0 ? o->out_hw : 1;
    if (o->kind == SPACE_OP_POOL || o->kind == SPACE_OP_LINEAR)
        hw = 1;
    return (size_t)B * hw * hw * o->out_ch;
}

/* The dense convs' int8 weights in the order the kernel layer's q_pw reads
 * ([ky][kx][i] as one input axis: a k x k conv runs as im2col + q_pw). */
static nas_status pack_pointwise(qconv *c, const char *name, nas_err *err)
{
    if (c->dw)
        return NAS_OK;
    int cin = c->k * c->k * c->cin;
    c->wp = nas_malloc(kern_qpw_size(cin, c->cout));
    c->colsum = nas_malloc(sizeof(int32_t) * (size_t)c->cout);
    if (!c->wp || !c->colsum)
        return nas_errf(err, NAS_ENOMEM, "int8: out of memory for conv '%s'", name);
    kern_qpw_pack(c->wp, c->colsum, c->wq, cin, c->cout);
    return NAS_OK;
}

/* Folds conv op i with its BN and quantizes its weights. */
static nas_status conv_setup(ev_qnet *q, int i, nas_err *err)
{
    const space_layers *L = &q->L;
    const space_op *o = &L->op[i];
    qconv *c = &q->cv[i];
    nas_status st = NAS_OK;
    char nm[96];
    if (i + 1 >= L->n || L->op[i + 1].kind != SPACE_OP_BN)
        return nas_errf(err, NAS_EINTERNAL, "int8: conv '%s' has no batch norm after it", o->name);
    if (o->in >= 0 && !evq_is_point(L, o->in))
        return nas_errf(err, NAS_EUNSUPP, "int8: conv '%s' reads '%s', which is not quantized", o->name,
                        L->op[o->in].name);
    *c = (qconv){.k = o->kernel, .stride = o->stride, .cin = o->in_ch, .cout = o->out_ch,
                 .dw = o->kind == SPACE_OP_DWCONV, .in_hw = o->in_hw, .out_hw = o->out_hw, .end = i + 1};
    if (i + 2 < L->n && L->op[i + 2].kind == SPACE_OP_ACT && L->op[i + 2].in == i + 1)
        c->end = i + 2;
    c->act = evn_act_of((space_act)evq_point_act(L, c->end));
    int ci = c->dw ? 1 : c->cin, per = ci * c->k * c->k;
    size_t nw = (size_t)per * c->cout;
    snprintf(nm, sizeof nm, "%s.conv", o->name);
    const float *w = find(q, nm, nw, err, &st);
    const float *bn[4];
    static const char *const part[4] = {"gamma", "beta", "running_mean", "running_var"};
    for (int j = 0; j < 4 && st == NAS_OK; j++) {
        snprintf(nm, sizeof nm, "%s.%s", L->op[i + 1].name, part[j]);
        bn[j] = find(q, nm, (size_t)c->cout, err, &st);
    }
    if (st != NAS_OK)
        return st;
    float *ow = nas_malloc(sizeof(float) * nw);
    int8_t *owq = nas_malloc(nw);
    c->w = nas_malloc(sizeof(float) * nw);
    c->wdq = nas_malloc(sizeof(float) * nw);
    c->wq = nas_malloc(nw);
    c->b = nas_malloc(sizeof(float) * c->cout);
    c->sw = nas_malloc(sizeof(float) * c->cout);
    c->bdq = nas_malloc(sizeof(float) * c->cout);
    c->mult = nas_malloc(sizeof(float) * c->cout);
    c->bq = nas_malloc(sizeof(int32_t) * c->cout);
    if (!ow || !owq || !c->w || !c->wdq || !c->wq || !c->b || !c->sw || !c->bdq || !c->mult || !c->bq) {
        nas_free(ow);
        nas_free(owq);
        return nas_errf(err, NAS_ENOMEM, "int8: out of memory for conv '%s'", o->name);
    }
    evq_fold(w, c->dw, bn[0], bn[1], bn[2], bn[3], c->k, c->cin, c->cout, 0, ow, c->b);
    evq_quant_weights(ow, c->cout, per, owq, c->sw);
    /* OIHW -> the kernels' order: [ky][kx][i][o] */
    for (int oc = 0; oc < c->cout; oc++)
        for (int j = 0; j < per; j++) {
            int ii = j / (c->k * c->k), kk = j % (c->k * c->k);
            size_t dst = ((size_t)kk * ci + ii) * c->cout + oc;
            c->w[dst] = ow[(size_t)oc * per + j];
            c->wq[dst] = owq[(size_t)oc * per + j];
            c->wdq[dst] = (float)c->wq[dst] * c->sw[oc];
        }
    nas_free(ow);
    nas_free(owq);
    return pack_pointwise(c, o->name, err);
}

static nas_status alloc_buffers(ev_qnet *q, nas_err *err)
{
    const space_layers *L = &q->L;
    const space_net *a = &q->arch;
    size_t maxc = 1, maxcol = 1;
    for (int i = 0; i < L->n; i++) {
        const space_op *o = &L->op[i];
        const qconv *c = &q->cv[i];
        if (c->w && !c->dw && (c->k > 1 || c->stride > 1)) {
            size_t ncol = (size_t)q->batch * c->out_hw * c->out_hw * c->k * c->k * c->cin;
            maxcol = ncol > maxcol ? ncol : maxcol;
        }
        size_t n = op_elems(o, q->batch);
        int alias = o->kind == SPACE_OP_BN || o->kind == SPACE_OP_ACT || o->kind == SPACE_OP_DROPOUT;
        if (alias && o->in >= 0) {
            q->f[i] = q->f[o->in];
        } else {
            q->f[i] = nas_malloc(sizeof(float) * n);
            q->owns[i] = 1;
        }
        if (evq_is_point(L, i))
            q->q[i] = nas_malloc(n);
        if (!q->f[i] || (evq_is_point(L, i) && !q->q[i]))
            return nas_errf(err, NAS_ENOMEM, "int8: out of memory for op '%s'", o->name);
        if (n / (size_t)q->batch > maxc)
            maxc = n / (size_t)q->batch;
    }
    size_t nin = (size_t)q->batch * a->resolution * a->resolution * a->in_ch;
    q->xin = nas_malloc(sizeof(float) * nin);
    q->qin = nas_malloc(nin);
    q->acc = nas_malloc(sizeof(int32_t) * maxc * q->batch);
    q->col = nas_malloc(maxcol);
    q->tmp = nas_malloc(sizeof(float) * maxc);
    q->se = nas_malloc(sizeof(float) * 3 * maxc * q->batch);
    if (!q->xin || !q->qin || !q->acc || !q->col || !q->tmp || !q->se)
        return nas_errf(err, NAS_ENOMEM, "int8: out of memory for the buffers");
    return NAS_OK;
}

/* A conv group's output is dequantized in int8 mode only where an op that
 * runs in float (SE, add, pooling) reads it; convs read the uint8 values. */
static void mark_float_reads(ev_qnet *q)
{
    const space_layers *L = &q->L;
    for (int i = 0; i < L->n; i++) {
        qconv *c = &q->cv[i];
        if (!c->w)
            continue;
        for (int j = c->end + 1; j < L->n && !c->deq; j++) {
            const space_op *o = &L->op[j];
            int conv = o->kind == SPACE_OP_CONV || o->kind == SPACE_OP_DWCONV;
            c->deq = !conv && (o->in == c->end || o->in2 == c->end);
        }
    }
}

nas_status ev_qnet_create(const space_net *arch, const ev_tensor *t, int nt, int batch, ev_qnet **out,
                          nas_err *err)
{
    *out = NULL;
    if (!arch || !t || nt < 1 || batch < 1)
        return nas_errf(err, NAS_EINVAL, "int8: no network or tensors given, or batch %d < 1", batch);
    ev_qnet *q = nas_calloc(1, sizeof *q);
    if (!q)
        return nas_errf(err, NAS_ENOMEM, "int8: out of memory");
    q->arch = *arch;
    q->t = t;
    q->nt = nt;
    q->batch = batch;
    nas_status st = space_layers_build(arch, &q->L, err);
    if (st != NAS_OK) {
        nas_free(q);
        return st;
    }
    int n = q->L.n;
    q->cv = nas_calloc((size_t)n, sizeof *q->cv);
    q->f = nas_calloc((size_t)n, sizeof *q->f);
    q->q = nas_calloc((size_t)n, sizeof *q->q);
    q->owns = nas_calloc((size_t)n, sizeof *q->owns);
    q->op = nas_calloc((size_t)n, sizeof *q->op);
    q->ln = nas_calloc((size_t)n, sizeof *q->ln);
    if (!q->cv || !q->f || !q->q || !q->owns || !q->op || !q->ln)
        st = nas_errf(err, NAS_ENOMEM, "int8: out of memory for %d ops", n);
    for (int i = 0; i < n && st == NAS_OK; i++)
        if (q->L.op[i].kind == SPACE_OP_CONV || q->L.op[i].kind == SPACE_OP_DWCONV)
            st = conv_setup(q, i, err);
        else if (q->L.op[i].kind == SPACE_OP_LINEAR)
            st = lin_setup(q, i, err);
    if (st == NAS_OK)
        st = alloc_buffers(q, err);
    if (st == NAS_OK)
        mark_float_reads(q);
    if (st != NAS_OK) {
        ev_qnet_free(q);
        return st;
    }
    *out = q;
    return NAS_OK;
}

void ev_qnet_free(ev_qnet *q)
{
    if (!q)
        return;
    for (int i = 0; q->cv && i < q->L.n; i++) {
        qconv *c = &q->cv[i];
        nas_free(c->w), nas_free(c->b), nas_free(c->wq), nas_free(c->sw), nas_free(c->wdq);
        nas_free(c->bq), nas_free(c->bdq), nas_free(c->mult), nas_free(c->wp), nas_free(c->colsum);
        if (q->owns && q->owns[i])
            nas_free(q->f[i]);
        if (q->q)
            nas_free(q->q[i]);
    }
    nas_free(q->cv), nas_free(q->f), nas_free(q->q), nas_free(q->owns), nas_free(q->op);
    nas_free(q->xin), nas_free(q->qin), nas_free(q->col), nas_free(q->acc), nas_free(q->tmp), nas_free(q->se);
    for (int i = 0; q->ln && i < q->L.n; i++)
        lin_free(&q->ln[i]);
    nas_free(q->ln);
    space_layers_free(&q->L);
    nas_free(q);
}

const char *ev_qnet_calibration(const ev_qnet *q) { return q->calib; }
const space_net *evq_arch(const ev_qnet *q) { return &q->arch; }

/* ======================= forward ========================================= */

/* Calibration's watcher: per point (0 the input, i + 1 op i) its range, then its histogram. */
typedef struct {
    int pass;              /* 1: min/max; 2: histogram */
    float *lo, *hi;
    double *hist;          /* [points][HIST_BINS] */
} watch;

static void observe(watch *w, int p, const float *x, size_t n)
{
    if (!w)
        return;
    if (w->pass == 1) {
        for (size_t j = 0; j < n; j++) {
            w->lo[p] = fminf(w->lo[p], x[j]);
            w->hi[p] = fmaxf(w->hi[p], x[j]);
        }
        return;
    }
    double *h = w->hist + (size_t)p * HIST_BINS;
    float lo = w->lo[p], width = (w->hi[p] - lo) / HIST_BINS;
    for (size_t j = 0; j < n; j++) {
        float v = width > 0.0f ? (x[j] - lo) / width : 0.0f;   /* clamped before the conversion (NaN too) */
        int b = v >= 0.0f ? (v < (float)HIST_BINS ? (int)v : HIST_BINS - 1) : 0;
        h[b] += 1.0;
    }
}

/* x (float, dequantized after) <-> its uint8 values. */
static void fake_quant(float *x, uint8_t *qv, size_t n, ev_qparam p)
{
    evq_u8(qv, x, n, p);
    evq_f32(x, qv, n, p);
}

/* A direct float conv (engine order weights), bias added. */
static void conv_float(const qconv *c, float *y, const float *x, const float *w, const float *b, int B)
{
    int H = c->in_hw, Ho = c->out_hw, k = c->k, s = c->stride, pad = (k - 1) / 2;
    int ci = c->dw ? 1 : c->cin, C = c->cout;
    for (int n = 0; n < B; n++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Ho; ox++) {
                float *a = y + (((size_t)n * Ho + oy) * Ho + ox) * C;
                memcpy(a, b, sizeof(float) * (size_t)C);
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * s - pad + ky;
                    for (int kx = 0; kx < k && iy >= 0 && iy < H; kx++) {
                        int ix = ox * s - pad + kx;
                        if (ix < 0 || ix >= H)
                            continue;
                        const float *xp = x + (((size_t)n * H + iy) * H + ix) * c->cin;
                        const float *wp = w + (size_t)(ky * k + kx) * ci * C;
                        if (c->dw) {
                            for (int o = 0; o < C; o++)
                                a[o] += xp[o] * wp[o];
                            continue;
                        }
                        for (int i = 0; i < ci; i++)
                            for (int o = 0; o < C; o++)
                                a[o] += xp[i] * wp[(size_t)i * C + o];
                    }
                }
            }
}

static void conv_int8(ev_qnet *q, int i, int B)
{
    const qconv *c = &q->cv[i];
    int in = q->L.op[i].in;
    const uint8_t *x = in < 0 ? q->qin : q->q[in];
    int zx = in < 0 ? q->in.zero : q->op[in].zero;
    int N = B * c->out_hw * c->out_hw;
    if (c->dw)
        evq_dw_s32(q->acc, x, zx, c->wq, c->bq, B, c->in_hw, c->in_hw, c->cout, c->k, c->stride);
    else if (c->k == 1 && c->stride == 1)
        evq_pw_s32(q->acc, x, zx, c->wp, c->colsum, c->bq, N, c->cin, c->cout);
    else
        evq_conv_im2col(q->acc, x, zx, c->wp, c->colsum, c->bq, B, c->in_hw, c->in_hw, c->cin, c->cout, c->k,
                        c->stride, q->col);
    evq_requant(q->q[c->end], q->acc, N, c->cout, c->mult, c->act, q->op[c->end]);
    if (c->deq)
        evq_f32(q->f[c->end], q->q[c->end], (size_t)N * c->cout, q->op[c->end]);
}

static const float *tensor(const ev_qnet *q, const char *prefix, const char *suffix)
{
    char nm[96];
    snprintf(nm, sizeof nm, "%s.%s", prefix, suffix);
    for (int i = 0; i < q->nt; i++)
        if (!strcmp(q->t[i].name, nm))
            return q->t[i].data;
    return NULL;   /* create checked every tensor the walk reads */
}

static void se_float(ev_qnet *q, const space_op *o, float *u, const float *x, int B)
{
    char pre[48];
    int C = o->out_ch, S = o->mid_ch, hw = o->out_hw * o->out_hw;
    float *sp = q->se, *s1 = sp + (size_t)B * C, *g = s1 + (size_t)B * C;
    op_pool_forward(sp, x, B, hw, C);
    snprintf(pre, sizeof pre, "%s.reduce", o->name);
    op_linear_forward(s1, sp, tensor(q, pre, "w"), tensor(q, pre, "b"), B, C, S);
    op_act_forward(s1, s1, (size_t)B * S, evn_act_of((space_act)o->act));
    snprintf(pre, sizeof pre, "%s.expand", o->name);
    op_linear_forward(g, s1, tensor(q, pre, "w"), tensor(q, pre, "b"), B, S, C);
    op_act_forward(g, g, (size_t)B * C, o->gate == SPACE_GATE_HSIGMOID ? OP_HSIGMOID : OP_SIGMOID);
    op_scale_forward(u, x, g, B, hw, C);
}

/* Op i in float (FLOAT and REF, and INT8 but for its convs), a linear in the
 * mode's own arithmetic. */
static void op_float(ev_qnet *q, ev_qmode mode, int i, int B)
{
    const space_op *o = &q->L.op[i];
    const float *x = o->in < 0 ? q->xin : q->f[o->in];
    size_t n = op_elems(o, B);
    const qconv *c = &q->cv[i];
    switch (o->kind) {
    case SPACE_OP_CONV:
    case SPACE_OP_DWCONV:
        if (mode == EV_QMODE_REF)
            conv_float(c, q->f[i], x, c->wdq, c->bdq, B);
        else
            conv_float(c, q->f[i], x, c->w, c->b, B);
        break;
    case SPACE_OP_ACT:
        op_act_forward(q->f[i], q->f[i], n, evn_act_of((space_act)o->act));
        break;
    case SPACE_OP_SE:
        se_float(q, o, q->f[i], x, B);
        break;
    case SPACE_OP_ADD:
        for (size_t j = 0; j < n; j++)
            q->f[i][j] = x[j] + q->f[o->in2][j];
        break;
    case SPACE_OP_POOL:
        op_pool_forward(q->f[i], x, B, o->in_hw * o->in_hw, o->out_ch);
        break;
    case SPACE_OP_LINEAR:
        lin_forward(q, mode, i, B);
        break;
    default:   /* BN (folded), dropout: aliases */
        break;
    }
}

static void forward(ev_qnet *q, ev_qmode mode, const float *x, int B, watch *w)
{
    const space_net *a = &q->arch;
    size_t nin = (size_t)B * a->resolution * a->resolution * a->in_ch;
    memcpy(q->xin, x, sizeof(float) * nin);
    if (mode != EV_QMODE_FLOAT)
        fake_quant(q->xin, q->qin, nin, q->in);
    observe(w, 0, q->xin, nin);
    for (int i = 0; i < q->L.n; i++) {
        const space_op *o = &q->L.op[i];
        if (mode == EV_QMODE_INT8 && (o->kind == SPACE_OP_CONV || o->kind == SPACE_OP_DWCONV)) {
            conv_int8(q, i, B);
            i = q->cv[i].end;   /* the group's BN and activation are in the requantization */
            continue;
        }
        op_float(q, mode, i, B);
        if (!evq_is_point(&q->L, i))
            continue;
        if (mode != EV_QMODE_FLOAT)
            fake_quant(q->f[i], q->q[i], op_elems(o, B), q->op[i]);
        observe(w, i + 1, q->f[i], op_elems(o, B));
    }
}

nas_status ev_qnet_infer(ev_qnet *q, ev_qmode mode, const float *x, int B, float *logits, nas_err *err)
{
    if (B < 1 || B > q->batch)
        return nas_errf(err, NAS_EINVAL, "int8 inference: batch %d is outside 1..%d", B, q->batch);
    if (mode != EV_QMODE_FLOAT && !q->calibrated)
        return nas_errf(err, NAS_EINVAL, "int8 inference: the network is not calibrated");
    forward(q, mode, x, B, NULL);
    memcpy(logits, q->f[q->L.n - 1], sizeof(float) * (size_t)B * q->arch.num_classes);
    return NAS_OK;
}

nas_status ev_qnet_evaluate(ev_qnet *q, ev_qmode mode, const ev_split *s, int limit, double *accuracy,
                            nas_err *err)
{
    int n = limit > 0 && limit < s->n ? limit : s->n, K = q->arch.num_classes, hit = 0;
    size_t img = (size_t)s->h * s->w * s->c;
    float *lg = nas_malloc(sizeof(float) * (size_t)q->batch * K);
    if (!lg)
        return nas_errf(err, NAS_ENOMEM, "int8: out of memory");
    nas_status st = NAS_OK;
    for (int b0 = 0; b0 < n && st == NAS_OK; b0 += q->batch) {
        int B = n - b0 < q->batch ? n - b0 : q->batch;
        st = ev_qnet_infer(q, mode, s->images + (size_t)b0 * img, B, lg, err);
        for (int j = 0; j < B && st == NAS_OK; j++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (lg[(size_t)j * K + k] > lg[(size_t)j * K + best])
                    best = k;
            hit += best == s->labels[b0 + j];
        }
    }
    nas_free(lg);
    *accuracy = n > 0 ? (double)hit / n : NAN;
    return st;
}

/* ======================= calibration ===================================== */

/* The range that keeps pct % of point p's values (its histogram). */
static void percentile_range(const watch *w, int p, double pct, float *lo, float *hi)
{
    const double *h = w->hist + (size_t)p * HIST_BINS;
    double total = 0, cum = 0, tail = (1.0 - pct / 100.0) * 0.5;
    for (int b = 0; b < HIST_BINS; b++)
        total += h[b];
    float width = (w->hi[p] - w->lo[p]) / HIST_BINS;
    int blo = 0, bhi = HIST_BINS - 1;
    for (int b = 0; b < HIST_BINS; b++) {
        cum += h[b];
        if (cum > tail * total) {
            blo = b;
            break;
        }
    }
    cum = 0;
    for (int b = HIST_BINS - 1; b >= 0; b--) {
        cum += h[b];
        if (cum > tail * total) {
            bhi = b;
            break;
        }
    }
    *lo = blo == 0 ? w->lo[p] : w->lo[p] + width * blo;
    *hi = bhi == HIST_BINS - 1 ? w->hi[p] : w->lo[p] + width * (bhi + 1);
}

/* A point after ReLU6 keeps its grid inside [0, 6], so that ONNX Runtime can
 * drop the Clip into the QuantizeLinear (its check: scale * (255 - z) <= 6). */
static ev_qparam point_param(float lo, float hi, int act)
{
    if (act == SPACE_ACT_RELU6 && hi > 6.0f)
        hi = 6.0f;
    ev_qparam p = ev_qparam_u8(lo, hi);
    while (act == SPACE_ACT_RELU6 && p.scale * (float)(255 - p.zero) > 6.0f)
        p.scale = nextafterf(p.scale, 0.0f);
    return p;
}

static void finish_calibration(ev_qnet *q, const watch *w, const ev_quant_opts *o)
{
    for (int p = 0; p <= q->L.n; p++) {
        if (p > 0 && !evq_is_point(&q->L, p - 1))
            continue;
        float lo = w->lo[p], hi = w->hi[p];
        if (o->method == EV_CALIB_PERCENTILE)
            percentile_range(w, p, o->percentile, &lo, &hi);
        ev_qparam qp = point_param(lo, hi, p > 0 ? evq_point_act(&q->L, p - 1) : -1);
        if (p == 0)
            q->in = qp;
        else
            q->op[p - 1] = qp;
    }
    for (int i = 0; i < q->L.n; i++) {
        qconv *c = &q->cv[i];
        if (!c->w)
            continue;
        int in = q->L.op[i].in;
        float sx = in < 0 ? q->in.scale : q->op[in].scale;
        evq_quant_bias(c->b, c->cout, sx, c->sw, c->bq);
        for (int oc = 0; oc < c->cout; oc++) {
            c->mult[oc] = sx * c->sw[oc];
            c->bdq[oc] = (float)c->bq[oc] * c->mult[oc];
        }
    }
    lin_calibrate(q);
    q->calibrated = 1;
}

static nas_status calib_check(const ev_qnet *q, const ev_split *s, const ev_quant_opts *o, nas_err *err)
{
    const space_net *a = &q->arch;
    if (o->images < 1)
        return nas_errf(err, NAS_EINVAL, "int8 calibration: %d images (at least 1)", o->images);
    if (o->method == EV_CALIB_PERCENTILE && !(o->percentile > 50.0 && o->percentile <= 100.0))
        return nas_errf(err, NAS_EINVAL, "int8 calibration: percentile %g is outside (50, 100]",
                        o->percentile);
    if (s->n < o->images)
        return nas_errf(err, NAS_EINVAL, "int8 calibration: %d images asked, the split has %d", o->images,
                        s->n);
    if (s->h != a->resolution || s->w != a->resolution || s->c != a->in_ch)
        return nas_errf(err, NAS_EINVAL, "int8 calibration: images are %dx%dx%d, the network takes "
                        "%dx%dx%d", s->h, s->w, s->c, a->resolution, a->resolution, a->in_ch);
    return NAS_OK;
}

nas_status ev_qnet_calibrate(ev_qnet *q, const ev_split *s, const ev_quant_opts *o, nas_err *err)
{
    nas_status st = calib_check(q, s, o, err);
    if (st != NAS_OK)
        return st;
    int np = q->L.n + 1, bs = o->batch > 0 && o->batch < q->batch ? o->batch : q->batch;
    size_t img = (size_t)s->h * s->w * s->c;
    watch w = {.pass = 1};
    w.lo = nas_malloc(sizeof(float) * np);
    w.hi = nas_malloc(sizeof(float) * np);
    if (o->method == EV_CALIB_PERCENTILE)
        w.hist = nas_calloc((size_t)np * HIST_BINS, sizeof(double));
    if (!w.lo || !w.hi || (o->method == EV_CALIB_PERCENTILE && !w.hist)) {
        st = nas_errf(err, NAS_ENOMEM, "int8 calibration: out of memory");
        goto cleanup;
    }
    for (int p = 0; p < np; p++)
        w.lo[p] = INFINITY, w.hi[p] = -INFINITY;
    for (; w.pass <= (o->method == EV_CALIB_PERCENTILE ? 2 : 1); w.pass++)
        for (int b0 = 0; b0 < o->images; b0 += bs)
            forward(q, EV_QMODE_FLOAT, s->images + (size_t)b0 * img,
                    o->images - b0 < bs ? o->images - b0 : bs, &w);
    finish_calibration(q, &w, o);
    if (o->method == EV_CALIB_PERCENTILE)
        snprintf(q->calib, sizeof q->calib, "percentile %g on %d images", o->percentile, o->images);
    else
        snprintf(q->calib, sizeof q->calib, "minmax on %d images", o->images);
cleanup:
    nas_free(w.lo);
    nas_free(w.hi);
    nas_free(w.hist);
    return st;
}

nas_status evq_table_of(const ev_qnet *q, evq_table *tab, const ev_tensor **t, int *nt, nas_err *err)
{
    if (!q || !q->calibrated)
        return nas_errf(err, NAS_EINVAL, "int8 export: the network is not calibrated");
    tab->n = q->L.n;
    tab->in = q->in;
    tab->op = q->op;
    *t = q->t;
    *nt = q->nt;
    return NAS_OK;
}

/* ======================= the int8 benchmark ============================== */

typedef struct {
    ev_qnet *q;
    const float *x;
    float *logits;
    int batch;
} qbench;

static nas_status qbench_one(void *ctx, nas_err *err)
{
    qbench *b = ctx;
    return ev_qnet_infer(b->q, EV_QMODE_INT8, b->x, b->batch, b->logits, err);
}

/* calib's first n images, or n made-up ones (a fixed pattern in [0, 1]) when it has none. */
static float *bench_images(const space_net *a, const ev_split *calib, int n, ev_split *sp)
{
    size_t img = (size_t)a->resolution * a->resolution * a->in_ch;
    *sp = (ev_split){.n = n, .h = a->resolution, .w = a->resolution, .c = a->in_ch};
    if (calib && calib->n > 0 && calib->h == sp->h && calib->w == sp->w && calib->c == sp->c) {
        sp->n = calib->n < n ? calib->n : n;
        sp->images = calib->images;
        return NULL;
    }
    float *x = nas_malloc(sizeof(float) * img * (size_t)n);
    for (size_t i = 0; x && i < img * (size_t)n; i++)
        x[i] = (float)((i * 2654435761u) >> 24 & 255) / 255.0f;
    sp->images = x;
    return x;
}

nas_status ev_bench_infer_int8(const ev_net *net, const ev_split *calib, int calib_images, ev_meter *meter,
                               const ev_bench_opts *opts, ev_bench_result *res, nas_err *err)
{
    const space_net *a = ev_net_arch(net);
    int nt = ev_net_tensors(net, NULL, 0), B = opts->batch > 0 ? opts->batch : 1;
    int n = calib_images > 0 ? calib_images : EV_BENCH_INT8_CALIB;
    ev_tensor *t = nas_malloc(sizeof(ev_tensor) * (size_t)(nt > 0 ? nt : 1));
    float *logits = nas_malloc(sizeof(float) * (size_t)B * a->num_classes), *made = NULL, *x = NULL;
    ev_qnet *q = NULL;
    ev_split sp = {0};
    nas_status st = NAS_OK;
    if (t && logits)
        made = bench_images(a, calib, n > B ? n : B, &sp);
    if (!sp.images)
        st = nas_errf(err, NAS_ENOMEM, "int8 benchmark: out of memory");
    if (st == NAS_OK) {
        ev_net_tensors(net, t, nt);
        st = ev_qnet_create(a, t, nt, B > n ? B : n, &q, err);   /* the timed batch, or the calibration's */
    }
    ev_quant_opts qo;
    ev_quant_opts_default(&qo);
    qo.method = EV_CALIB_MINMAX;
    qo.images = sp.n < n ? sp.n : n;
    if (st == NAS_OK)
        st = ev_qnet_calibrate(q, &sp, &qo, err);
    /* B copies of the first image: the batch the benchmark times */
    size_t img = (size_t)sp.h * sp.w * sp.c;
    if (st == NAS_OK && !(x = nas_malloc(sizeof(float) * img * (size_t)B)))
        st = nas_errf(err, NAS_ENOMEM, "int8 benchmark: out of memory");
    for (int b = 0; st == NAS_OK && b < B; b++)
        memcpy(x + (size_t)b * img, sp.images, sizeof(float) * img);
    if (st == NAS_OK) {
        qbench qb = {.q = q, .x = x, .logits = logits, .batch = B};
        st = ev_bench_run(qbench_one, &qb, meter, opts, res, err);
    }
    ev_qnet_free(q);
    nas_free(t), nas_free(logits), nas_free(made), nas_free(x);
    return st;
}

/* ======================= the export, start to end ======================== */

typedef struct {
    char calib[256], fsrc[192], qsrc[192];
} export_words;

static nas_status score_both(ev_qnet *q, const ev_data *d, int limit, ev_export_opts *o, export_words *w,
                             nas_err *err)
{
    if (d->test.n < 1)
        return NAS_OK;
    int n = limit > 0 && limit < d->test.n ? limit : d->test.n;
    double af, aq;
    nas_status st = ev_qnet_evaluate(q, EV_QMODE_FLOAT, &d->test, n, &af, err);
    if (st == NAS_OK)
        st = ev_qnet_evaluate(q, EV_QMODE_INT8, &d->test, n, &aq, err);
    if (st != NAS_OK)
        return st;
    snprintf(w->fsrc, sizeof w->fsrc, "nas float32 engine (batch norm folded), first %d test images of %s",
             n, d->name);
    snprintf(w->qsrc, sizeof w->qsrc, "nas int8 engine, first %d test images of %s", n, d->name);
    o->accuracy = af;
    o->accuracy_split = o->accuracy_float_split = w->fsrc;
    o->accuracy_int8 = aq;
    o->accuracy_int8_split = w->qsrc;
    return NAS_OK;
}

nas_status ev_export_int8(const ev_net *net, const ev_data *data, const ev_quant_opts *qo, int eval_images,
                          ev_export_opts *opts, const char *path, nas_err *err)
{
    int nt = ev_net_tensors(net, NULL, 0);
    ev_tensor *t = nas_malloc(sizeof(ev_tensor) * (size_t)(nt > 0 ? nt : 1));
    ev_qnet *q = NULL;
    export_words w;
    if (!t)
        return nas_errf(err, NAS_ENOMEM, "int8 export: out of memory listing %d tensors", nt);
    ev_net_tensors(net, t, nt);
    nas_status st = ev_export_check_path(opts, path, err);
    if (st == NAS_OK)
        st = ev_qnet_create(ev_net_arch(net), t, nt, 32, &q, err);
    if (st == NAS_OK)
        st = ev_qnet_calibrate(q, &data->train, qo, err);
    if (st == NAS_OK)
        st = score_both(q, data, eval_images, opts, &w, err);
    if (st == NAS_OK) {
        snprintf(w.calib, sizeof w.calib, "%s: training images of %s, the first after the seeded shuffle",
                 q->calib, data->name);
        opts->calib_data = w.calib;
        st = ev_export_onnx_int8(q, opts, path, err);
        opts->calib_data = NULL;   /* the words die here */
        opts->accuracy_split = opts->accuracy_float_split = opts->accuracy_int8_split = NULL;
    }
    ev_qnet_free(q);
    nas_free(t);
    return st;
}
