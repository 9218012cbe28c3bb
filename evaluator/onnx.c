/* onnx.c — export of a trained network as an ONNX model, written with the
 * protobuf-c code generated at build time from Debian's onnx.proto.
 *
 * The graph mirrors the engine's forward pass (net.c) op for op, in NCHW:
 *   stem Conv [+BN] + act -> blocks -> head Conv [+BN] + act -> GlobalAveragePool
 *   -> Flatten -> [fc Gemm + act] -> classifier Gemm -> `logits`.
 * A block: [expand Conv 1x1 + act] -> depthwise Conv (group = C) + act
 *   -> [SE: GlobalAveragePool -> Conv 1x1 + act -> Conv 1x1 -> gate -> Mul]
 *   -> project Conv 1x1 -> [Add of the block input].
 * The engine keeps NHWC weights (KKIO, KKC, IO); ONNX wants OIHW, [C,1,k,k]
 * for depthwise and [out,in] for Gemm with transB, so every weight is
 * transposed here. Batch norm (running statistics) is folded into the conv
 * before it unless keep_bn: w' = w * g/sqrt(v+eps), b' = beta - m * g/sqrt(v+eps),
 * computed in double so folding costs no accuracy the runtime would not lose.
 *
 * Every protobuf message, string and folded weight lives in one arena freed
 * at the end, so building the model has one cleanup and no per-node frees.
 */
#include "evaluator/ev.h"
#include "evaluator/quant.h"
#include "onnx/onnx.pb-c.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* BatchNormalization and folding must use the engine's epsilon, or every output moves. */
#define ONNX_BN_EPS ((double)OP_BN_EPS)

/* ======================= arena =========================================== */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk;

typedef struct {
    chunk *head;
    int failed;
} arena;

static void *arena_alloc(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        chunk *c = nas_malloc(sizeof(chunk) + cap);
        if (!c) {
            a->failed = 1;
            return NULL;
        }
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena *a)
{
    while (a->head) {
        chunk *c = a->head;
        a->head = c->next;
        nas_free(c);
    }
}

static char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *arena_printf(arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = arena_alloc(a, (size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ======================= graph builder =================================== */

typedef struct {
    arena A;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    const ev_tensor *t;
    int nt;
    int keep_bn, portable;
    const char *relu6_min, *relu6_max;   /* Clip's bounds (portable: 6 only), shared initializers */
    const evq_table *q;                  /* int8: the calibrated table (QDQ export); NULL: float */
    ev_qparam xq;                        /* int8: the parameters of the conv being added's input */
    nas_err *err;
    nas_status st;                       /* first failure; later steps do nothing */
} gb;

static int gb_ok(gb *g)
{
    if (g->st == NAS_OK && g->A.failed)
        g->st = nas_errf(g->err, NAS_ENOMEM, "onnx export: out of memory building the graph");
    return g->st == NAS_OK;
}

static const ev_tensor *gb_tensor(gb *g, const char *name, int n_elems)
{
    if (!gb_ok(g))
        return NULL;
    for (int i = 0; i < g->nt; i++) {
        if (strcmp(g->t[i].name, name) != 0)
            continue;
        long n = 1;
        for (int d = 0; d < g->t[i].ndim; d++)
            n *= g->t[i].shape[d];
        if (n != n_elems || !g->t[i].data) {
            g->st = nas_errf(g->err, NAS_EINVAL,
                             "onnx export: tensor '%s' has %ld values, the architecture needs %d",
                             name, n, n_elems);
            return NULL;
        }
        return &g->t[i];
    }
    g->st = nas_errf(g->err, NAS_EINVAL, "onnx export: the network has no tensor '%s'", name);
    return NULL;
}

/* The layout string must be the one the transposition below assumes. */
static int gb_layout(gb *g, const ev_tensor *t, const char *want)
{
    if (!t || !gb_ok(g))
        return 0;
    if (!t->layout || strcmp(t->layout, want) != 0) {
        g->st = nas_errf(g->err, NAS_EINVAL, "onnx export: tensor '%s' has layout '%s', expected '%s'",
                         t->name, t->layout ? t->layout : "(none)", want);
        return 0;
    }
    return 1;
}

static float *gb_floats(gb *g, size_t n) { return arena_alloc(&g->A, n * sizeof(float)); }

/* Adds an initializer of `dtype` (esize bytes a value) as raw little-endian bytes. */
static const char *gb_init_raw(gb *g, const char *name, const void *data, int dtype, size_t esize,
                               int ndim, const int64_t *dims)
{
    if (!gb_ok(g))
        return NULL;
    Onnx__TensorProto *t = arena_alloc(&g->A, sizeof *t);
    int64_t *d = arena_alloc(&g->A, sizeof(int64_t) * (ndim ? ndim : 1));
    char *nm = arena_printf(&g->A, "%s", name);
    if (!t || !d || !nm || !gb_ok(g))
        return NULL;
    onnx__tensor_proto__init(t);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        d[i] = dims[i];
        n *= (size_t)dims[i];
    }
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->name = nm;
    t->has_raw_data = 1;
    t->raw_data.len = n * esize;
    t->raw_data.data = (uint8_t *)data;
    if (g->n_inits == g->cap_inits) {
        g->st = nas_errf(g->err, NAS_EINTERNAL, "onnx export: more initializers than planned (%zu)",
                         g->cap_inits);
        return NULL;
    }
    g->inits[g->n_inits++] = t;
    return nm;
}

/* A float initializer (raw bytes, as ONNX prefers for size). */
static const char *gb_init(gb *g, const char *name, const float *data, int ndim, const int64_t *dims)
{
    return gb_init_raw(g, name, data, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, sizeof(float), ndim, dims);
}

typedef struct {
    const char *name;
    int kind;            /* 'i' int, 'f' float, 'I' ints */
    int64_t i;
    float f;
    int n_ints;
    int64_t ints[4];
} gb_attr;

/* Adds a node; returns the name of its (single) output, which is `out`. */
static const char *gb_node(gb *g, const char *op, const char *out, int n_in, const char *const *in,
                           int n_attr, const gb_attr *attrs)
{
    if (!gb_ok(g))
        return NULL;
    Onnx__NodeProto *nd = arena_alloc(&g->A, sizeof *nd);
    char **ins = arena_alloc(&g->A, sizeof(char *) * (size_t)n_in);
    char **outs = arena_alloc(&g->A, sizeof(char *));
    Onnx__AttributeProto **at = arena_alloc(&g->A, sizeof(*at) * (size_t)(n_attr ? n_attr : 1));
    char *on = arena_printf(&g->A, "%s", out);
    char *opn = arena_printf(&g->A, "%s", op);
    if (!gb_ok(g))
        return NULL;
    onnx__node_proto__init(nd);
    for (int i = 0; i < n_in; i++)
        ins[i] = arena_printf(&g->A, "%s", in[i]);
    outs[0] = on;
    for (int i = 0; i < n_attr; i++) {
        Onnx__AttributeProto *a = arena_alloc(&g->A, sizeof *a);
        if (!a)
            break;
        onnx__attribute_proto__init(a);
        a->name = arena_printf(&g->A, "%s", attrs[i].name);
        a->has_type = 1;
        if (attrs[i].kind == 'i') {
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
            a->has_i = 1;
            a->i = attrs[i].i;
        } else if (attrs[i].kind == 'f') {
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
            a->has_f = 1;
            a->f = attrs[i].f;
        } else {
            a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
            a->n_ints = (size_t)attrs[i].n_ints;
            a->ints = arena_alloc(&g->A, sizeof(int64_t) * 4);
            if (a->ints)
                memcpy(a->ints, attrs[i].ints, sizeof(int64_t) * 4);
        }
        at[i] = a;
    }
    if (!gb_ok(g))
        return NULL;
    nd->n_input = (size_t)n_in;
    nd->input = ins;
    nd->n_output = 1;
    nd->output = outs;
    nd->name = on;
    nd->op_type = opn;
    nd->n_attribute = (size_t)n_attr;
    nd->attribute = n_attr ? at : NULL;
    if (g->n_nodes == g->cap_nodes) {
        g->st = nas_errf(g->err, NAS_EINTERNAL, "onnx export: more nodes than planned (%zu)", g->cap_nodes);
        return NULL;
    }
    g->nodes[g->n_nodes++] = nd;
    return on;
}

static const char *gb_node1(gb *g, const char *op, const char *out, const char *x)
{
    return gb_node(g, op, out, 1, &x, 0, NULL);
}

static const char *gb_node2(gb *g, const char *op, const char *out, const char *x, const char *y)
{
    const char *in[2] = {x, y};
    return gb_node(g, op, out, 2, in, 0, NULL);
}

/* ---- activations --------------------------------------------------------- */

/* x -> act(x) named `out`; identity when act < 0. */
static const char *gb_act(gb *g, const char *x, int act, const char *out)
{
    char nm[96];
    switch (act) {
    case SPACE_ACT_RELU:
        return gb_node1(g, "Relu", out, x);
    case SPACE_ACT_RELU6: {
        /* Clip takes its bounds as inputs since opset 11. */
        if (!g->relu6_max) {
            static const float lo = 0.0f, hi = 6.0f;
            if (!g->portable)
                g->relu6_min = gb_init(g, "const.relu6_min", &lo, 0, NULL);
            g->relu6_max = gb_init(g, "const.relu6_max", &hi, 0, NULL);
            if (!gb_ok(g))
                return NULL;
        }
        if (g->portable) {
            /* min(max(x, 0), 6) = relu(x) - relu(x - 6): ops every importer has */
            char r[96], s[96], r2[96];
            snprintf(r, sizeof r, "%s.relu", out);
            snprintf(s, sizeof s, "%s.minus6", out);
            snprintf(r2, sizeof r2, "%s.relu_minus6", out);
            const char *pos = gb_node1(g, "Relu", r, x);
            const char *over = gb_node1(g, "Relu", r2, gb_node2(g, "Sub", s, x, g->relu6_max));
            return gb_node2(g, "Sub", out, pos, over);
        }
        const char *in[3] = {x, g->relu6_min, g->relu6_max};
        return gb_node(g, "Clip", out, 3, in, 0, NULL);
    }
    case SPACE_ACT_HSWISH:
        return gb_node1(g, "HardSwish", out, x);
    case SPACE_ACT_SWISH:
        snprintf(nm, sizeof nm, "%s.sigmoid", out);
        return gb_node2(g, "Mul", out, x, gb_node1(g, "Sigmoid", nm, x));
    default:
        return x;
    }
}

static const char *gb_gate(gb *g, const char *x, space_gate gate, const char *out)
{
    if (gate == SPACE_GATE_SIGMOID)
        return gb_node1(g, "Sigmoid", out, x);
    /* relu6(x + 3) / 6 = max(0, min(1, x/6 + 1/2)) */
    gb_attr at[2] = {{.name = "alpha", .kind = 'f', .f = 1.0f / 6.0f},
                     {.name = "beta", .kind = 'f', .f = 0.5f}};
    return gb_node(g, "HardSigmoid", out, 1, &x, 2, at);
}

/* ---- int8: QuantizeLinear / DequantizeLinear ------------------------------ */

/* x (float) -> `x`.q (uint8), with its scale and zero point as `x`.q.scale and
 * `x`.q.zero_point, which every DequantizeLinear of it shares. */
static const char *gb_quant(gb *g, const char *x, ev_qparam p)
{
    char nm[128], sc[140], zp[140];
    snprintf(nm, sizeof nm, "%s.q", x);
    snprintf(sc, sizeof sc, "%s.scale", nm);
    snprintf(zp, sizeof zp, "%s.zero_point", nm);
    float *s = gb_floats(g, 1);
    uint8_t *z = arena_alloc(&g->A, 1);
    if (!gb_ok(g))
        return NULL;
    *s = p.scale;
    *z = (uint8_t)p.zero;
    const char *in[3] = {x, gb_init(g, sc, s, 0, NULL),
                         gb_init_raw(g, zp, z, ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, 1, 0, NULL)};
    return gb_node(g, "QuantizeLinear", nm, 3, in, 0, NULL);
}

/* A DequantizeLinear of xq for consumer op `user` alone (one per consumer, as
 * ONNX Runtime's quantizer writes them, so each node unit has its own). */
static const char *gb_dequant(gb *g, const char *xq, int user)
{
    char nm[140], sc[140], zp[140];
    snprintf(nm, sizeof nm, "%s.dq%d", xq, user);
    snprintf(sc, sizeof sc, "%s.scale", xq);
    snprintf(zp, sizeof zp, "%s.zero_point", xq);
    const char *in[3] = {xq, sc, zp};
    return gb_node(g, "DequantizeLinear", nm, 3, in, 0, NULL);
}

/* Per-channel DequantizeLinear (axis 0) of an integer initializer. The zero
 * point is left out (ONNX's default, 0, for int8 and int32 alike) unless
 * with_zero: ONNX Runtime fuses a Conv's node unit all the same, and the file
 * is smaller; but it leaves a Gemm in float unless the weight's zero point is
 * there (ORT 1.30, seen in its optimised graph: QGemm only then). */
static const char *gb_dq_const(gb *g, const char *out, const void *data, int dtype, size_t esize,
                               const float *scale, int ndim, const int64_t *dims, int with_zero)
{
    char qn[128], sn[128], zn[128];
    snprintf(qn, sizeof qn, "%s.quantized", out);
    snprintf(sn, sizeof sn, "%s.scale", out);
    snprintf(zn, sizeof zn, "%s.zero_point", out);
    const char *in[3] = {gb_init_raw(g, qn, data, dtype, esize, ndim, dims), gb_init(g, sn, scale, 1, dims),
                         NULL};
    if (with_zero) {
        void *z = arena_alloc(&g->A, esize * (size_t)dims[0]);   /* zeroed */
        in[2] = z ? gb_init_raw(g, zn, z, dtype, esize, 1, dims) : NULL;
    }
    gb_attr axis = {.name = "axis", .kind = 'i', .i = 0};
    return gb_node(g, "DequantizeLinear", out, with_zero ? 3 : 2, in, 1, &axis);
}

/* A quantized conv's or Gemm's weights (int8 per output channel) and bias
 * (int32 at scale s_x * s_w) from ow [cout][per] (folded, for a conv) and ob,
 * as DequantizeLinear outputs `prefix`.weight (dims wd, ndim of them: 2 for
 * a Gemm, whose weight gets its zero point) and `prefix`.bias. */
static void gb_qconv_params(gb *g, const char *prefix, const float *ow, const float *ob, int per,
                            int cout, int ndim, const int64_t *wd, const char **wi, const char **bi)
{
    char nm[96];
    int8_t *wq = arena_alloc(&g->A, (size_t)cout * per);
    int32_t *bq = arena_alloc(&g->A, sizeof(int32_t) * (size_t)cout);
    float *sw = gb_floats(g, (size_t)cout), *sb = gb_floats(g, (size_t)cout);
    if (!gb_ok(g))
        return;
    evq_quant_weights(ow, cout, per, wq, sw);
    evq_quant_bias(ob, cout, g->xq.scale, sw, bq);
    for (int o = 0; o < cout; o++)
        sb[o] = g->xq.scale * sw[o];
    int64_t bd[1] = {cout};
    snprintf(nm, sizeof nm, "%s.weight", prefix);
    *wi = gb_dq_const(g, nm, wq, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, 1, sw, ndim, wd, ndim == 2);
    snprintf(nm, sizeof nm, "%s.bias", prefix);
    *bi = gb_dq_const(g, nm, bq, ONNX__TENSOR_PROTO__DATA_TYPE__INT32, 4, sb, 1, bd, 0);
}

/* ---- convolutions -------------------------------------------------------- */

/* Conv of x with weights `wname` (KKIO [k][k][cin][cout], or KKC [k][k][c]
 * when depthwise) and the batch norm `bnname` after it, then act (-1: none).
 * `prefix` names the ONNX values. */
static const char *gb_conv_bn(gb *g, const char *x, const char *prefix, const char *wname,
                              const char *bnname, int k, int stride, int cin, int cout, int depthwise,
                              int act)
{
    int ci = depthwise ? 1 : cin;   /* input channels per group */
    const ev_tensor *w = gb_tensor(g, wname, k * k * ci * cout);
    if (!gb_layout(g, w, depthwise ? "KKC" : "KKIO"))
        return NULL;
    const ev_tensor *bn[4];
    static const char *const bn_part[4] = {"gamma", "beta", "running_mean", "running_var"};
    char nm[96];
    for (int i = 0; i < 4; i++) {
        snprintf(nm, sizeof nm, "%s.%s", bnname, bn_part[i]);
        bn[i] = gb_tensor(g, nm, cout);
    }
    float *ow = gb_floats(g, (size_t)cout * ci * k * k);
    float *ob = gb_floats(g, (size_t)cout);
    if (!gb_ok(g))
        return NULL;
    evq_fold(w->data, depthwise, bn[0]->data, bn[1]->data, bn[2]->data, bn[3]->data, k, cin, cout,
             g->keep_bn, ow, ob);
    int64_t wd[4] = {cout, ci, k, k}, cd[1] = {cout};
    snprintf(nm, sizeof nm, "%s.weight", prefix);
    const char *wi = g->q ? NULL : gb_init(g, nm, ow, 4, wd), *qbias = NULL;
    if (g->q)
        gb_qconv_params(g, prefix, ow, ob, ci * k * k, cout, 4, wd, &wi, &qbias);
    int p = (k - 1) / 2;
    gb_attr at[5] = {{.name = "kernel_shape", .kind = 'I', .n_ints = 2, .ints = {k, k}},
                     {.name = "strides", .kind = 'I', .n_ints = 2, .ints = {stride, stride}},
                     {.name = "pads", .kind = 'I', .n_ints = 4, .ints = {p, p, p, p}},
                     {.name = "dilations", .kind = 'I', .n_ints = 2, .ints = {1, 1}},
                     {.name = "group", .kind = 'i', .i = depthwise ? cout : 1}};
    const char *y;
    if (g->keep_bn) {
        const char *in[2] = {x, wi};
        snprintf(nm, sizeof nm, "%s.conv", prefix);
        const char *z = gb_node(g, "Conv", nm, 2, in, 5, at);
        const char *bi[5] = {z, NULL, NULL, NULL, NULL};
        for (int i = 0; i < 4; i++) {
            int64_t d1[1] = {cout};
            snprintf(nm, sizeof nm, "%s.bn.%s", prefix, bn_part[i]);
            bi[i + 1] = gb_init(g, nm, bn[i]->data, 1, d1);
        }
        gb_attr eps = {.name = "epsilon", .kind = 'f', .f = (float)ONNX_BN_EPS};
        snprintf(nm, sizeof nm, "%s.bn", prefix);
        y = gb_node(g, "BatchNormalization", nm, 5, bi, 1, &eps);
    } else {
        snprintf(nm, sizeof nm, "%s.bias", prefix);
        const char *in[3] = {x, wi, qbias ? qbias : gb_init(g, nm, ob, 1, cd)};
        snprintf(nm, sizeof nm, "%s.conv", prefix);
        y = gb_node(g, "Conv", nm, 3, in, 5, at);
    }
    if (act < 0 || !y)
        return y;
    snprintf(nm, sizeof nm, "%s.act", prefix);
    return gb_act(g, y, act, nm);
}

/* A linear layer of the engine (`name`.w IO [in][out], `name`.b [out]) as a
 * 1x1 Conv with bias on an N x in x 1 x 1 map (inside SE), or as Gemm with
 * transB on N x in (fc, classifier; in an int8 export with int8 weights per
 * output row, axis 0 of [out][in], and int32 bias, on a dequantized input).
 * Its output is `out`, or "<name>.conv" / "<name>.gemm" when out is NULL. */
static const char *gb_linear(gb *g, const char *x, const char *name, int in, int out, int as_conv,
                             const char *out_name)
{
    char nm[96];
    snprintf(nm, sizeof nm, "%s.w", name);
    const ev_tensor *w = gb_tensor(g, nm, in * out);
    snprintf(nm, sizeof nm, "%s.b", name);
    const ev_tensor *b = gb_tensor(g, nm, out);
    if (!gb_layout(g, w, "IO"))
        return NULL;
    float *ow = gb_floats(g, (size_t)in * out);
    if (!gb_ok(g))
        return NULL;
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            ow[(size_t)o * in + i] = w->data[(size_t)i * out + o];
    int64_t wd[4] = {out, in, 1, 1}, bd[1] = {out};
    const char *wi = NULL, *bi = NULL;
    if (g->q && !as_conv) {
        gb_qconv_params(g, name, ow, b->data, in, out, 2, wd, &wi, &bi);
    } else {
        snprintf(nm, sizeof nm, "%s.weight", name);
        wi = gb_init(g, nm, ow, as_conv ? 4 : 2, wd);
        snprintf(nm, sizeof nm, "%s.bias", name);
        bi = gb_init(g, nm, b->data, 1, bd);
    }
    const char *ins[3] = {x, wi, bi};
    snprintf(nm, sizeof nm, "%s", out_name ? out_name : "");
    if (as_conv) {
        gb_attr k = {.name = "kernel_shape", .kind = 'I', .n_ints = 2, .ints = {1, 1}};
        if (!out_name)
            snprintf(nm, sizeof nm, "%s.conv", name);
        return gb_node(g, "Conv", nm, 3, ins, 1, &k);
    }
    gb_attr tb = {.name = "transB", .kind = 'i', .i = 1};
    if (!out_name)
        snprintf(nm, sizeof nm, "%s.gemm", name);
    return gb_node(g, "Gemm", nm, 3, ins, 1, &tb);
}

/* ---- the network ---------------------------------------------------------- */

/* Squeeze-excite of x: pool, reduce linear, se_act, expand linear, gate, scale. */
static const char *gb_se(gb *g, const space_op *o, const char *x)
{
    char pre[48], nm[96];
    snprintf(nm, sizeof nm, "%s.pool", o->name);
    const char *s = gb_node1(g, "GlobalAveragePool", nm, x);
    snprintf(pre, sizeof pre, "%s.reduce", o->name);
    s = gb_linear(g, s, pre, o->out_ch, o->mid_ch, 1, NULL);
    snprintf(nm, sizeof nm, "%s.reduce.act", o->name);
    s = gb_act(g, s, o->act, nm);
    snprintf(pre, sizeof pre, "%s.expand", o->name);
    s = gb_linear(g, s, pre, o->mid_ch, o->out_ch, 1, NULL);
    snprintf(nm, sizeof nm, "%s.gate", o->name);
    s = gb_gate(g, s, o->gate, nm);
    snprintf(nm, sizeof nm, "%s.scale", o->name);
    /* [N,C,1,1] * [N,C,H,W] broadcasts. The gate first: OpenCV DNN 4.6 gives
     * Mul(x, gate) the gate's shape when x is itself a product (swish), a
     * silently wrong model, and gets the same product this way round right. */
    return gb_node2(g, "Mul", nm, s, x);
}

/* The ONNX value op i of the layer list writes, given the values it reads.
 * A conv takes the BN after it (the engine's tensors "<op>.conv" and
 * "<op>.bn"), folded or kept; that BN and dropout then pass their input on. */
static const char *gb_op(gb *g, const space_layers *L, int i, const char *x, const char *x2)
{
    const space_op *o = &L->op[i];
    char wn[48];
    switch (o->kind) {
    case SPACE_OP_CONV:
    case SPACE_OP_DWCONV:
        if (i + 1 >= L->n || L->op[i + 1].kind != SPACE_OP_BN) {
            g->st = nas_errf(g->err, NAS_EINTERNAL, "onnx export: conv '%s' has no batch norm after it",
                             o->name);
            return NULL;
        }
        snprintf(wn, sizeof wn, "%s.conv", o->name);
        return gb_conv_bn(g, x, o->name, wn, L->op[i + 1].name, o->kernel, o->stride, o->in_ch,
                          o->out_ch, o->kind == SPACE_OP_DWCONV, -1);
    case SPACE_OP_ACT:
        return gb_act(g, x, o->act, o->name);
    case SPACE_OP_SE:
        return gb_se(g, o, x);
    case SPACE_OP_ADD:
        return gb_node2(g, "Add", o->name, x, x2);
    case SPACE_OP_POOL: {
        gb_attr axis = {.name = "axis", .kind = 'i', .i = 1};
        const char *p = gb_node1(g, "GlobalAveragePool", o->name, x);
        return gb_node(g, "Flatten", "flatten", 1, &p, 1, &axis);
    }
    case SPACE_OP_LINEAR:
        /* The classifier's Gemm gives `logits` directly, so the graph's
         * output is a node output. */
        return gb_linear(g, x, o->name, o->in_ch, o->out_ch, 0, i == L->n - 1 ? "logits" : NULL);
    default:   /* BN (taken by its conv) and dropout (training only) */
        return x;
    }
}

/* What op `user` reads of op `in` (-1: the input): in an int8 export a
 * quantization point's value is its QuantizeLinear output, dequantized here. */
static const char *gb_read(gb *g, const space_layers *L, const char **out, const char *in_q, int in,
                           int user)
{
    if (!g->q)
        return in < 0 ? "input" : out[in];
    if (in < 0)
        return gb_dequant(g, in_q, user);
    return evq_is_point(L, in) ? gb_dequant(g, out[in], user) : out[in];
}

static void gb_network(gb *g, const space_layers *L)
{
    const char **out = arena_alloc(&g->A, sizeof(char *) * (size_t)L->n);
    const char *in_q = g->q ? gb_quant(g, "input", g->q->in) : NULL;
    for (int i = 0; i < L->n && gb_ok(g); i++) {
        const space_op *o = &L->op[i];
        int src = evq_input(L, i);   /* a Gemm's input scale, through dropout */
        if (g->q)
            g->xq = src < 0 ? g->q->in : g->q->op[src];
        const char *x = gb_read(g, L, out, in_q, o->in, i);
        out[i] = gb_op(g, L, i, x, o->in2 < 0 ? NULL : gb_read(g, L, out, in_q, o->in2, i));
        if (g->q && evq_is_point(L, i) && out[i])
            out[i] = gb_quant(g, out[i], g->q->op[i]);
    }
}

/* ======================= model =========================================== */

static Onnx__ValueInfoProto *gb_value_info(gb *g, const char *name, int ndim, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = arena_alloc(&g->A, sizeof *v);
    Onnx__TypeProto *tp = arena_alloc(&g->A, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = arena_alloc(&g->A, sizeof *tt);
    Onnx__TensorShapeProto *sh = arena_alloc(&g->A, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = arena_alloc(&g->A, sizeof(*dd) * (size_t)ndim);
    if (!gb_ok(g))
        return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = arena_alloc(&g->A, sizeof *d);
        if (!d)
            return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) {   /* the batch: symbolic */
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = arena_printf(&g->A, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dd[i] = d;
    }
    sh->n_dim = (size_t)ndim;
    sh->dim = dd;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = arena_printf(&g->A, "%s", name);
    v->type = tp;
    return gb_ok(g) ? v : NULL;
}

typedef struct {
    const char *key;
    char *value;
} kv;

static int fig_known(double v) { return !isnan(v); }

/* Metadata: keys under "nas." so they never collide with a runtime's own. */
static int gb_metadata(gb *g, const ev_export_opts *o, const char *spec_json, kv *out)
{
    int n = 0;
    arena *A = &g->A;
#define PUT(k, ...) (out[n].key = (k), out[n].value = arena_printf(A, __VA_ARGS__), n++)
    PUT("nas.version", "%s", NAS_VERSION);
    PUT("nas.spec", "%s", spec_json);
    PUT("nas.batch_norm", "%s", o->keep_bn ? "kept" : "folded");
    PUT("nas.relu6", "%s", o->portable ? "Relu(x) - Relu(x - 6) (portable)" : "Clip(x, 0, 6)");
    PUT("nas.input_layout", "NCHW float32, normalised per channel as in training");
    if (o->norm_channels > 0) {
        char m[96] = "", sd[96] = "";
        for (int c = 0; c < o->norm_channels && c < 4; c++) {
            snprintf(m + strlen(m), sizeof m - strlen(m), "%s%.6g", c ? "," : "", o->norm_mean[c]);
            snprintf(sd + strlen(sd), sizeof sd - strlen(sd), "%s%.6g", c ? "," : "", o->norm_std[c]);
        }
        PUT("nas.input_mean", "%s", m);
        PUT("nas.input_std", "%s", sd);
    }
    if (o->trained_on)
        PUT("nas.trained_on", "%s", o->trained_on);
    if (fig_known(o->accuracy)) {
        PUT("nas.accuracy", "%.6g", o->accuracy);
        PUT("nas.accuracy.source", "%s", o->accuracy_split ? o->accuracy_split : "unstated");
    }
    if (fig_known(o->pred_latency_ms))
        PUT("nas.latency_ms.predicted", "%.6g", o->pred_latency_ms);
    if (fig_known(o->pred_energy_mj))
        PUT("nas.energy_mj.predicted", "%.6g", o->pred_energy_mj);
    if (fig_known(o->pred_latency_ms) || fig_known(o->pred_energy_mj))
        PUT("nas.predicted.source", "%s", o->pred_source ? o->pred_source : "unstated");
    if (fig_known(o->meas_latency_ms)) {
        PUT("nas.latency_ms.measured", "%.6g", o->meas_latency_ms);
        PUT("nas.latency_ms.measured.source", "%s",
            o->meas_latency_source ? o->meas_latency_source : "unstated");
    }
    /* The benchmarked energy under a key that does not call it measured: its
     * quality (measured, sampled, estimated) says what it is. */
    if (fig_known(o->meas_energy_mj)) {
        PUT("nas.energy_mj", "%.6g", o->meas_energy_mj);
        PUT("nas.energy_mj.source", "%s", o->meas_energy_source ? o->meas_energy_source : "unstated");
        PUT("nas.energy_quality", "%s", o->meas_energy_quality ? o->meas_energy_quality : "unstated");
    }
    if (o->run_id)
        PUT("nas.run", "%s", o->run_id);
    if (o->candidate)
        PUT("nas.candidate", "%s", o->candidate);
#undef PUT
    return n;
}

#define MAX_META 32

/* An int8 export's own keys: the scheme, the calibration, both accuracies. */
static int gb_quant_metadata(gb *g, const ev_export_opts *o, kv *out)
{
    int n = 0;
    arena *A = &g->A;
#define PUT(k, ...) (out[n].key = (k), out[n].value = arena_printf(A, __VA_ARGS__), n++)
    PUT("nas.quantization", "int8 QDQ: weights int8 symmetric per output channel, activations uint8 "
                            "asymmetric per tensor, bias int32 (scale s_x*s_w); batch norm folded first; "
                            "convolutions and the head's Gemms (fc, classifier) quantized, the Gemms "
                            "giving float; squeeze-excite and pooling float32");
    PUT("nas.quantization.calibration", "%s", o->calib_data ? o->calib_data : "unstated");
    if (fig_known(o->accuracy_int8)) {
        PUT("nas.accuracy.int8", "%.6g", o->accuracy_int8);
        PUT("nas.accuracy.int8.source", "%s", o->accuracy_int8_split ? o->accuracy_int8_split : "unstated");
    }
#undef PUT
    return n;
}

/* Builds the model and packs it into *buf (nas_malloc'd). */
static nas_status build_and_pack(const space_net *arch, const ev_tensor *t, int nt,
                                 const ev_export_opts *o, const evq_table *q, const char *spec_json,
                                 uint8_t **buf, size_t *len, nas_err *err)
{
    gb g = {.t = t, .nt = nt, .keep_bn = o->keep_bn, .portable = o->portable, .q = q, .err = err};
    int opset = o->opset ? o->opset : EV_ONNX_OPSET_DEFAULT;
    space_layers L;
    g.st = space_layers_build(arch, &L, err);
    if (g.st != NAS_OK)
        return g.st;
    /* At most 8 nodes and 8 initializers per op (SE has 7 nodes and 4
     * initializers, a conv with kept BN 5), plus ReLU6's shared bounds; an
     * int8 export adds at most 4 nodes (a conv's 3 DequantizeLinear and its
     * QuantizeLinear) and 8 initializers to an op. */
    g.cap_nodes = g.cap_inits = 16 + (q ? 16 : 8) * (size_t)L.n;
    g.nodes = arena_alloc(&g.A, sizeof(*g.nodes) * g.cap_nodes);
    g.inits = arena_alloc(&g.A, sizeof(*g.inits) * g.cap_inits);
    gb_network(&g, &L);

    int64_t in_dims[4] = {-1, arch->in_ch, arch->resolution, arch->resolution};
    int64_t out_dims[2] = {-1, arch->num_classes};
    Onnx__ValueInfoProto *vin = gb_value_info(&g, "input", 4, in_dims);
    Onnx__ValueInfoProto *vout = gb_value_info(&g, "logits", 2, out_dims);
    Onnx__GraphProto *graph = arena_alloc(&g.A, sizeof *graph);
    Onnx__ModelProto *model = arena_alloc(&g.A, sizeof *model);
    Onnx__OperatorSetIdProto *ops = arena_alloc(&g.A, sizeof *ops);
    Onnx__OperatorSetIdProto **opsp = arena_alloc(&g.A, sizeof *opsp);
    Onnx__ValueInfoProto **ins = arena_alloc(&g.A, sizeof *ins), **outs = arena_alloc(&g.A, sizeof *outs);
    kv meta[MAX_META];
    int n_meta = gb_metadata(&g, o, spec_json, meta);
    if (q)
        n_meta += gb_quant_metadata(&g, o, meta + n_meta);
    Onnx__StringStringEntryProto **mp = arena_alloc(&g.A, sizeof(*mp) * MAX_META);
    for (int i = 0; mp && i < n_meta; i++) {
        mp[i] = arena_alloc(&g.A, sizeof **mp);
        if (!mp[i])
            break;
        onnx__string_string_entry_proto__init(mp[i]);
        mp[i]->key = arena_printf(&g.A, "%s", meta[i].key);
        mp[i]->value = meta[i].value;
    }
    if (!gb_ok(&g))
        goto cleanup;

    onnx__graph_proto__init(graph);
    graph->name = arena_printf(&g.A, "%s", o->spec && o->spec->name[0] ? o->spec->name : "nas");
    graph->n_node = g.n_nodes;
    graph->node = g.nodes;
    graph->n_initializer = g.n_inits;
    graph->initializer = g.inits;
    ins[0] = vin;
    outs[0] = vout;
    graph->n_input = 1;
    graph->input = ins;
    graph->n_output = 1;
    graph->output = outs;

    onnx__operator_set_id_proto__init(ops);
    ops->domain = arena_printf(&g.A, "%s", "");
    ops->has_version = 1;
    ops->version = opset;
    opsp[0] = ops;

    onnx__model_proto__init(model);
    model->has_ir_version = 1;
    /* IR 7 came with opset 13-14 (ONNX 1.8-1.9), IR 8 with opset 15-17. */
    model->ir_version = opset >= 15 ? 8 : 7;
    model->n_opset_import = 1;
    model->opset_import = opsp;
    model->producer_name = arena_printf(&g.A, "nas");
    model->producer_version = arena_printf(&g.A, "%s", NAS_VERSION);
    model->domain = arena_printf(&g.A, "nas");
    model->has_model_version = 1;
    model->model_version = 1;
    model->doc_string = arena_printf(&g.A, "%s", "A network found by nas (neural architecture search). "
                                                 "See metadata_props for its spec and figures.");
    model->graph = graph;
    model->n_metadata_props = (size_t)n_meta;
    model->metadata_props = mp;
    if (!gb_ok(&g))
        goto cleanup;

    *len = onnx__model_proto__get_packed_size(model);
    *buf = nas_malloc(*len ? *len : 1);
    if (!*buf) {
        g.st = nas_errf(err, NAS_ENOMEM, "onnx export: out of memory packing %zu bytes", *len);
        goto cleanup;
    }
    size_t packed = onnx__model_proto__pack(model, *buf);
    if (packed != *len) {
        nas_free(*buf);
        *buf = NULL;
        g.st = nas_errf(err, NAS_EINTERNAL, "onnx export: packed %zu bytes, expected %zu", packed, *len);
    }
cleanup:
    arena_free(&g.A);
    space_layers_free(&L);
    return g.st;
}

/* ======================= files =========================================== */

void ev_export_opts_default(ev_export_opts *o)
{
    memset(o, 0, sizeof *o);
    o->sidecars = 1;
    o->accuracy = o->pred_latency_ms = o->pred_energy_mj = NAN;
    o->meas_latency_ms = o->meas_energy_mj = NAN;
    o->accuracy_int8 = NAN;
}

void ev_export_sidecar_paths(const char *path, char *spec_path, char *card_path, size_t n)
{
    size_t len = strlen(path);
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    if (dot && (!slash || dot > slash + 1))   /* an extension, not a dot-file's leading dot */
        len = (size_t)(dot - path);
    snprintf(spec_path, n, "%.*s.spec.json", (int)len, path);
    snprintf(card_path, n, "%.*s.model-card.md", (int)len, path);
}


static nas_status check_inside(const char *path, const char *out_dir, nas_err *err)
{
    char dir[PATH_MAX], rdir[PATH_MAX], rout[PATH_MAX];
    nas_path_dir(path, dir, sizeof dir);
    if (!realpath(out_dir, rout))
        return nas_errf(err, NAS_EINVAL, "onnx export: output folder %s: %s", out_dir, strerror(errno));
    if (!realpath(dir, rdir))
        return nas_errf(err, NAS_EINVAL, "onnx export: %s: folder %s: %s", path, dir, strerror(errno));
    size_t lo = strlen(rout);
    int inside = !strncmp(rdir, rout, lo) && (rdir[lo] == '\0' || rdir[lo] == '/' || lo == 1);
    if (!inside)
        return nas_errf(err, NAS_EINVAL,
                        "onnx export: %s is outside the output folder %s (use --force to write there)",
                        path, out_dir);
    return NAS_OK;
}

static nas_status refuse_existing(const char *path, nas_err *err)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return nas_errf(err, NAS_EINVAL, "onnx export: %s exists (use --force to overwrite it)", path);
    return NAS_OK;
}

static void md_fig(FILE *f, const char *what, double v, const char *unit, const char *src)
{
    if (isnan(v))
        fprintf(f, "| %s | not measured | |\n", what);
    else
        fprintf(f, "| %s | %.4g %s | %s |\n", what, v, unit, src ? src : "unstated");
}

/* The int8 section: the scheme, the calibration, float32 against int8. */
static void model_card_quant(FILE *f, const ev_export_opts *o)
{
    fprintf(f, "## Quantization\n\nPost-training int8, QDQ format (QuantizeLinear / DequantizeLinear "
               "around every convolution and the head's Gemms, which ONNX Runtime fuses into QLinearConv "
               "and QGemm): weights int8, symmetric, per output channel; activations uint8, asymmetric, "
               "per tensor; bias int32 at scale s_x * s_w; batch norm folded before quantizing. The "
               "Gemms (fc, classifier) give float, so the logits are float32. Squeeze-excite, residual "
               "adds and pooling compute in float32 on dequantized values.\n\n"
               "Calibration: %s.\n\n", o->calib_data);
    fprintf(f, "| model | accuracy | how it was obtained |\n|---|---|---|\n");
    if (isnan(o->accuracy))
        fprintf(f, "| float32 | not measured | |\n");
    else
        fprintf(f, "| float32 | %.2f%% | %s |\n", 100 * o->accuracy,
                o->accuracy_float_split ? o->accuracy_float_split
                                        : o->accuracy_split ? o->accuracy_split : "unstated");
    if (isnan(o->accuracy_int8))
        fprintf(f, "| int8 | not measured | |\n\n");
    else
        fprintf(f, "| int8 | %.2f%% | %s |\n\n", 100 * o->accuracy_int8,
                o->accuracy_int8_split ? o->accuracy_int8_split : "unstated");
}

static char *model_card(const space_net *a, const ev_export_opts *o, const char *model_file,
                        size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    space_cost c;
    space_cost_of(a, NULL, 0, &c);
    const char *name = o->spec && o->spec->name[0] ? o->spec->name : "a searched architecture";
    fprintf(f, "# Model card: %s\n\n", name);
    fprintf(f, "Exported by nas %s as `%s` (ONNX, opset %d, batch norm %s%s).\n\n", NAS_VERSION,
            model_file, o->opset ? o->opset : EV_ONNX_OPSET_DEFAULT, o->keep_bn ? "kept" : "folded",
            o->portable ? ", portable: ReLU6 as Relu(x) - Relu(x - 6) for importers without "
                          "opset-11 Clip, such as OpenCV DNN" : "");
    if (o->run_id)
        fprintf(f, "From run `%s`%s%s.\n\n", o->run_id, o->candidate ? ", candidate " : "",
                o->candidate ? o->candidate : "");
    fprintf(f, "## Architecture\n\n");
    fprintf(f, "- Input `input`: N x %d x %d x %d (NCHW, float32, N free): pixels scaled to [0, 1], "
               "then normalised per channel with the training split's mean and std",
            a->in_ch, a->resolution, a->resolution);
    if (o->norm_channels > 0) {
        fprintf(f, " (x = (p - mean) / std; mean");
        for (int ch = 0; ch < o->norm_channels && ch < 4; ch++)
            fprintf(f, "%s%.4f", ch ? ", " : " ", o->norm_mean[ch]);
        fprintf(f, "; std");
        for (int ch = 0; ch < o->norm_channels && ch < 4; ch++)
            fprintf(f, "%s%.4f", ch ? ", " : " ", o->norm_std[ch]);
        fprintf(f, ")");
    } else {
        fprintf(f, " (the values were not recorded with this model)");
    }
    fprintf(f, ".\n");
    fprintf(f, "- Output `logits`: N x %d (no softmax).\n", a->num_classes);
    fprintf(f, "- %d MBConv blocks; %.0f parameters, %.0f multiply-adds per image (nas's cost "
               "model). The spec is in the `.spec.json` file beside this card and in the model's "
               "`nas.spec` metadata.\n\n",
            a->n_blocks, c.params, c.macs);
    fprintf(f, "## Training\n\n%s\n\n", o->trained_on ? o->trained_on : "Not stated.");
    if (o->calib_data)
        model_card_quant(f, o);
    fprintf(f, "## Figures\n\n| figure | value | how it was obtained |\n|---|---|---|\n");
    if (isnan(o->accuracy))
        fprintf(f, "| accuracy | not measured | |\n");
    else
        fprintf(f, "| accuracy | %.2f%% | %s |\n", 100 * o->accuracy,
                o->accuracy_split ? o->accuracy_split : "unstated");
    md_fig(f, "latency per inference, measured", o->meas_latency_ms, "ms", o->meas_latency_source);
    if (isnan(o->meas_energy_mj))
        md_fig(f, "energy per inference, benchmarked", NAN, "", NULL);
    else {
        /* the row is named by the figure's quality: an estimate is never "measured" */
        char src[256], what[64];
        const char *q = o->meas_energy_quality ? o->meas_energy_quality : "quality unstated";
        snprintf(src, sizeof src, "%s (%s)", o->meas_energy_source ? o->meas_energy_source : "unstated", q);
        snprintf(what, sizeof what, "energy per inference, %s", q);
        md_fig(f, what, o->meas_energy_mj, "mJ", src);
    }
    md_fig(f, "latency per inference, predicted", o->pred_latency_ms, "ms", o->pred_source);
    md_fig(f, "energy per inference, predicted", o->pred_energy_mj, "mJ", o->pred_source);
    fprintf(f, "\nMeasured figures are from the machine that ran nas, with nas's own engine unless "
               "the source says otherwise; predicted ones come from the predictor model named. "
               "An energy figure whose quality is `estimated` is a model, not a measurement.\n\n"
               "## Limits\n\nThe accuracy is that of the training stated above; a search "
               "candidate's proxy training is short, so its accuracy is indicative, not that of a "
               "fully trained network. Dropout is left out (inference only).\n");
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

nas_status ev_export_check_path(const ev_export_opts *opts, const char *path, nas_err *err)
{
    char spec_path[PATH_MAX], card_path[PATH_MAX];
    nas_status st = NAS_OK;
    if (!path || !*path)
        return nas_errf(err, NAS_EINVAL, "onnx export: no output path");
    if (opts->force)
        return NAS_OK;
    ev_export_sidecar_paths(path, spec_path, card_path, sizeof spec_path);
    if (opts->out_dir && (st = check_inside(path, opts->out_dir, err)) != NAS_OK)
        return st;
    if ((st = refuse_existing(path, err)) != NAS_OK)
        return st;
    if (opts->sidecars && ((st = refuse_existing(spec_path, err)) != NAS_OK ||
                           (st = refuse_existing(card_path, err)) != NAS_OK))
        return st;
    return NAS_OK;
}

static nas_status export_model(const space_net *arch, const ev_tensor *tensors, int n_tensors,
                               const ev_export_opts *opts, const evq_table *q, const char *path,
                               nas_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0, card_len = 0;
    char *spec_json = NULL, *spec_line = NULL, *card = NULL;
    char spec_path[PATH_MAX], card_path[PATH_MAX];
    nas_status st = NAS_OK;
    if (!opts || !opts->spec)
        return nas_errf(err, NAS_EINVAL, "onnx export: no spec given (opts->spec)");
    int opset = opts->opset ? opts->opset : EV_ONNX_OPSET_DEFAULT;
    if (opset < EV_ONNX_OPSET_MIN || opset > EV_ONNX_OPSET_MAX)
        return nas_errf(err, NAS_EINVAL, "onnx export: opset %d is not supported (%d to %d)", opset,
                        EV_ONNX_OPSET_MIN, EV_ONNX_OPSET_MAX);
    if (!path || !*path)
        return nas_errf(err, NAS_EINVAL, "onnx export: no output path");
    ev_export_sidecar_paths(path, spec_path, card_path, sizeof spec_path);
    if ((st = ev_export_check_path(opts, path, err)) != NAS_OK)
        return st;
    spec_json = space_spec_to_json(opts->spec, 1);
    spec_line = space_spec_to_json(opts->spec, 0);
    if (!spec_json || !spec_line) {
        st = nas_errf(err, NAS_ENOMEM, "onnx export: out of memory writing the spec JSON");
        goto cleanup;
    }
    st = build_and_pack(arch, tensors, n_tensors, opts, q, spec_line, &buf, &len, err);
    if (st != NAS_OK)
        goto cleanup;
    if ((st = nas_write_file_atomic(path, buf, len, err)) != NAS_OK)
        goto cleanup;
    if (opts->sidecars) {
        const char *base = strrchr(path, '/');
        card = model_card(arch, opts, base ? base + 1 : path, &card_len);
        if (!card) {
            st = nas_errf(err, NAS_ENOMEM, "onnx export: out of memory writing the model card");
            goto cleanup;
        }
        if ((st = nas_write_file_atomic(spec_path, spec_json, strlen(spec_json), err)) != NAS_OK ||
            (st = nas_write_file_atomic(card_path, card, card_len, err)) != NAS_OK)
            goto cleanup;
    }
cleanup:
    nas_free(buf);
    nas_free(spec_json);
    nas_free(spec_line);
    free(card);   /* open_memstream's buffer comes from libc */
    return st;
}

nas_status ev_export_onnx_tensors(const space_net *arch, const ev_tensor *tensors, int n_tensors,
                                  const ev_export_opts *opts, const char *path, nas_err *err)
{
    return export_model(arch, tensors, n_tensors, opts, NULL, path, err);
}

nas_status ev_export_onnx_int8(const ev_qnet *q, const ev_export_opts *opts, const char *path,
                               nas_err *err)
{
    evq_table tab;
    const ev_tensor *t;
    int nt;
    nas_status st = evq_table_of(q, &tab, &t, &nt, err);
    if (st != NAS_OK)
        return st;
    if (opts && (opts->keep_bn || opts->portable))
        return nas_errf(err, NAS_EINVAL, "int8 export: --keep-bn and --portable do not apply (batch norm "
                                         "is folded before quantizing; ONNX Runtime fuses Clip)");
    return export_model(evq_arch(q), t, nt, opts, &tab, path, err);
}

nas_status ev_export_onnx(const ev_net *net, const ev_export_opts *opts, const char *path,
                          nas_err *err)
{
    int n = ev_net_tensors(net, NULL, 0);
    ev_tensor *t = nas_malloc(sizeof(ev_tensor) * (size_t)(n > 0 ? n : 1));
    if (!t)
        return nas_errf(err, NAS_ENOMEM, "onnx export: out of memory listing %d tensors", n);
    ev_net_tensors(net, t, n);
    nas_status st = ev_export_onnx_tensors(ev_net_arch(net), t, n, opts, path, err);
    nas_free(t);
    return st;
}
