/* net.c — a space_net made into a trainable network, run op by op from its
 * layer list (space_layers_build), the one description of the network that
 * the cost model, the predictor's features, the int8 path and the ONNX
 * export walk too. No MBConv block is spelled out here: forward, backward,
 * fused inference and the memory layout are each one loop over the ops.
 *
 * Memory is laid out once, before anything runs: parameters, gradients,
 * momentum, activations and scratch are one nas_malloc'd block each, with
 * every tensor an offset into its block (as llm.c does). The same layout pass
 * sizes ev_net_plan and fills ev_net_create, so the plan is the truth.
 * Training keeps every activation backward needs; inference-only nets
 * alternate two regions, unit by unit (stem, each block, head), since
 * nothing is kept.
 *
 * Backward walks the ops in reverse with three gradient buffers, each as
 * large as the largest activation: the op's output gradient, a free one, and
 * while inside a residual unit the skip path's gradient (net_backward).
 */
#include "evaluator/net_priv.h"
#include "evaluator/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <omp.h>

#define MAX_TENSORS (SPACE_MAX_BLOCKS * 20 + 32)
#define BN_MOMENTUM 0.1f

typedef struct {
    char name[48];
    size_t off, n;          /* in floats, into the parameter block */
    int ndim, shape[4];
    const char *layout;
    int decay;              /* weight decay applies (conv and linear weights) */
    int trainable;          /* 0: batch-norm running statistics */
} ptensor;

typedef struct {
    int c;
    size_t gamma, beta, rmean, rvar;   /* parameters */
    size_t mean, rstd;                 /* activations: this batch's statistics */
} bn_t;

/* One op of the layer list as the engine runs it. Offsets are into the
 * parameter or activation block. An ACT right after a BN is applied by that
 * BN (folded); an ADD adds in place into its first input; neither has a
 * buffer of its own, so y names the buffer holding its output. */
typedef struct {
    const space_op *o;
    size_t w, b;                    /* conv, dwconv, linear; SE: its reducing linear */
    size_t w2, b2;                  /* SE: its expanding linear */
    bn_t bn;
    size_t y;                       /* output */
    size_t sp, s1z, s1a, s2z, g;    /* SE: pooled, reduce, its act, expand, gate (y: the scaled map) */
    size_t mask;                    /* dropout (training) */
    int folded;                     /* ACT applied by the BN before it */
} evop;

struct ev_net {
    space_net arch;
    int batch, training, threads, max_threads;
    double macs;   /* multiply-adds per image, for the inference thread choice */
    int team_rest;  /* inferences left on one thread after a team mostly waited */
    ev_memplan plan;
    float *params, *grads, *mom, *acts, *scratch;
    size_t n_params, n_acts, n_scratch;

    space_layers layers;
    evop *op;                         /* one per layer-list op */
    size_t input, logits;
    size_t col, partial, gbuf[3], dlogits;   /* scratch */
    size_t gbuf_n;

    int n_tensors;
    ptensor t[MAX_TENSORS];
};

/* ======================= layout ========================================== */

typedef struct {
    ev_net *n;
    size_t p;                 /* parameter cursor */
    size_t a;                 /* activation cursor */
    int inference;            /* activations in two alternating regions */
    size_t region, seg_start, seg_max;
    size_t max_tensor;        /* largest activation tensor, for the gradient buffers */
    size_t max_col;           /* largest im2col matrix (a conv wider than 1x1) */
    int max_c;
    int error;
} layout_t;

static size_t lay_param(layout_t *L, const char *name, int ndim, const int *shape,
                        const char *layout, int decay, int trainable)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    size_t off = L->p;
    L->p += (n + 15) & ~(size_t)15;   /* each tensor on its own cache line */
    ev_net *net = L->n;
    if (net->n_tensors >= MAX_TENSORS) {
        L->error = 1;
        return off;
    }
    ptensor *t = &net->t[net->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->off = off;
    t->n = n;
    t->ndim = ndim;
    memset(t->shape, 0, sizeof t->shape);
    memcpy(t->shape, shape, sizeof(int) * ndim);
    t->layout = layout;
    t->decay = decay;
    t->trainable = trainable;
    return off;
}

static size_t lay_act(layout_t *L, size_t n)
{
    size_t off = L->a;
    L->a += (n + 15) & ~(size_t)15;
    if (n > L->max_tensor)
        L->max_tensor = n;
    if (L->a - L->seg_start > L->seg_max)
        L->seg_max = L->a - L->seg_start;
    return off;
}

/* Inference nets reuse memory: segment s (stem -1, blocks 0.., tail) lives in
 * region s mod 2 and reads its input from the other one. */
static void lay_segment(layout_t *L, int s)
{
    if (!L->inference)
        return;
    L->seg_start = L->a = (size_t)((s + 2) % 2) * L->region;
}

static void lay_conv(layout_t *L, size_t *w, const char *name, int k, int cin, int cout)
{
    int shape[4] = {k, k, cin, cout};
    *w = lay_param(L, name, 4, shape, "KKIO", 1, 1);
}

static void lay_bn(layout_t *L, bn_t *bn, const char *prefix, int c)
{
    char nm[48];
    int shape[1] = {c};
    bn->c = c;
    snprintf(nm, sizeof nm, "%s.gamma", prefix);
    bn->gamma = lay_param(L, nm, 1, shape, "C", 0, 1);
    snprintf(nm, sizeof nm, "%s.beta", prefix);
    bn->beta = lay_param(L, nm, 1, shape, "C", 0, 1);
    snprintf(nm, sizeof nm, "%s.running_mean", prefix);
    bn->rmean = lay_param(L, nm, 1, shape, "C", 0, 0);
    snprintf(nm, sizeof nm, "%s.running_var", prefix);
    bn->rvar = lay_param(L, nm, 1, shape, "C", 0, 0);
    bn->mean = lay_act(L, (size_t)c);
    bn->rstd = lay_act(L, (size_t)c);
    if (c > L->max_c)
        L->max_c = c;
}

static void lay_linear(layout_t *L, size_t *w, size_t *b, const char *prefix, int in, int out)
{
    char nm[48];
    int ws[2] = {in, out}, bs[1] = {out};
    snprintf(nm, sizeof nm, "%s.w", prefix);
    *w = lay_param(L, nm, 2, ws, "IO", 1, 1);
    snprintf(nm, sizeof nm, "%s.b", prefix);
    *b = lay_param(L, nm, 1, bs, "C", 0, 1);
}


static void lay_se(layout_t *L, evop *k, size_t B)
{
    const space_op *o = k->o;
    char nm[48];
    size_t nout = B * o->out_hw * o->out_hw;
    snprintf(nm, sizeof nm, "%s.reduce", o->name);
    lay_linear(L, &k->w, &k->b, nm, o->in_ch, o->mid_ch);
    snprintf(nm, sizeof nm, "%s.expand", o->name);
    lay_linear(L, &k->w2, &k->b2, nm, o->mid_ch, o->out_ch);
    k->sp = lay_act(L, B * o->out_ch);
    k->s1z = lay_act(L, B * o->mid_ch);
    k->s1a = lay_act(L, B * o->mid_ch);
    k->s2z = lay_act(L, B * o->out_ch);
    k->g = lay_act(L, B * o->out_ch);
    k->y = lay_act(L, nout * o->out_ch);
    /* SE's backward keeps three small vectors in one gradient buffer */
    size_t se_need = B * (2 * (size_t)o->out_ch + o->mid_ch) + 48;
    if (se_need > L->max_tensor)
        L->max_tensor = se_need;
}

/* Op i's parameters (in the order weight files and ev_net_tensors keep) and
 * its output buffer. */
static void lay_op(layout_t *L, int i, size_t B)
{
    ev_net *n = L->n;
    evop *k = &n->op[i];
    const space_op *o = k->o;
    size_t nout = B * o->out_hw * o->out_hw * o->out_ch;
    const evop *in = o->in >= 0 ? &n->op[o->in] : NULL;
    char nm[48];
    k->folded = 0;
    switch (o->kind) {
    case SPACE_OP_CONV:
    case SPACE_OP_DWCONV:
        snprintf(nm, sizeof nm, "%s.conv", o->name);
        if (o->kind == SPACE_OP_DWCONV) {
            int dws[3] = {o->kernel, o->kernel, o->out_ch};
            k->w = lay_param(L, nm, 3, dws, "KKC", 1, 1);
        } else {
            lay_conv(L, &k->w, nm, o->kernel, o->in_ch, o->out_ch);
            /* the input's conv (the stem) and any conv wider than 1x1 go through im2col */
            size_t col = B * o->out_hw * o->out_hw * o->kernel * o->kernel * o->in_ch;
            if ((o->in < 0 || o->kernel != 1 || o->stride != 1) && col > L->max_col)
                L->max_col = col;
        }
        k->y = lay_act(L, nout);
        break;
    case SPACE_OP_BN:
        lay_bn(L, &k->bn, o->name, o->out_ch);
        k->y = lay_act(L, nout);
        break;
    case SPACE_OP_ACT:
        k->folded = in && in->o->kind == SPACE_OP_BN;
        k->y = k->folded ? in->y : lay_act(L, nout);
        break;
    case SPACE_OP_SE:
        lay_se(L, k, B);
        break;
    case SPACE_OP_ADD:
        k->y = in->y;
        break;
    case SPACE_OP_POOL:
        k->y = lay_act(L, B * o->out_ch);
        break;
    case SPACE_OP_LINEAR:
        lay_linear(L, &k->w, &k->b, o->name, o->in_ch, o->out_ch);
        k->y = lay_act(L, B * o->out_ch);
        break;
    case SPACE_OP_DROPOUT:
        if (L->inference) {
            k->y = in->y;   /* the identity at inference */
        } else {
            k->mask = lay_act(L, nout);
            k->y = lay_act(L, nout);
        }
        break;
    }
}

static void layout_pass(layout_t *L)
{
    ev_net *n = L->n;
    size_t B = (size_t)n->batch;
    n->n_tensors = 0;
    L->p = L->a = 0;
    L->seg_start = 0;
    L->seg_max = 0;
    L->max_tensor = 0;
    L->max_col = 0;
    L->max_c = 0;

    /* segments: the stem -1, block i i, the head n_blocks (unit u is segment u - 1) */
    lay_segment(L, -1);
    const space_net *a = &n->arch;
    n->input = L->inference ? 0   /* inference reads the caller's x */
                            : lay_act(L, B * a->resolution * a->resolution * a->in_ch);
    for (int i = 0; i < n->layers.n; i++) {
        int u = n->layers.op[i].unit;
        if (u > 0 && u != n->layers.op[i - 1].unit)
            lay_segment(L, u - 1);
        lay_op(L, i, B);
    }
    n->logits = n->op[n->layers.n - 1].y;
    if (a->head_in_ch > L->max_c)
        L->max_c = a->head_in_ch;
}

/* Sizes everything; fills the offsets of n. Returns 0, or -1 when the net has
 * more tensors than the table holds. */
static int layout(ev_net *n)
{
    layout_t L = {.n = n, .inference = !n->training};
    if (L.inference) {
        L.region = 0;
        layout_pass(&L);   /* first pass: the largest segment */
        L.region = (L.seg_max + 15) & ~(size_t)15;
        L.seg_max = 0;
    }
    layout_pass(&L);
    if (L.error)
        return -1;
    const space_net *a = &n->arch;
    size_t B = (size_t)n->batch;
    n->n_params = L.p;
    n->n_acts = L.inference ? 2 * L.region : L.a;

    size_t s = 0;
    n->col = s;
    s += (L.max_col + 15) & ~(size_t)15;
    n->partial = s;
    s += ops_partial_floats(n->max_threads, L.max_c, 7);
    n->gbuf_n = (L.max_tensor + 15) & ~(size_t)15;
    for (int i = 0; i < 3; i++) {
        n->gbuf[i] = s;
        if (n->training)
            s += n->gbuf_n;
    }
    n->dlogits = s;
    if (n->training)
        s += (B * a->num_classes + 15) & ~(size_t)15;
    n->n_scratch = s;

    ev_memplan *p = &n->plan;
    p->params = n->n_params * sizeof(float);
    p->grads = n->training ? p->params : 0;
    p->optim = n->training ? p->params : 0;
    p->acts = n->n_acts * sizeof(float);
    p->scratch = n->n_scratch * sizeof(float);
    p->total = p->params + p->grads + p->optim + p->acts + p->scratch + sizeof(ev_net) +
               sizeof(evop) * (size_t)n->layers.n + sizeof(space_op) * (size_t)n->layers.n;
    return 0;
}

static int default_threads(int threads)
{
    if (threads > 0)
        return threads;
    int n = omp_get_num_procs();
    return n > 0 ? n : 1;
}

static nas_status check_arch(const space_net *arch, int batch, nas_err *err)
{
    if (!arch)
        return nas_errf(err, NAS_EINVAL, "network: no architecture given");
    if (batch < 1)
        return nas_errf(err, NAS_EINVAL, "network: batch %d must be at least 1", batch);
    if (arch->n_blocks < 0 || arch->n_blocks > SPACE_MAX_BLOCKS)
        return nas_errf(err, NAS_EINVAL, "network: n_blocks %d is outside 0..%d", arch->n_blocks,
                        SPACE_MAX_BLOCKS);
    if (arch->resolution < 1 || arch->in_ch < 1 || arch->num_classes < 2 || arch->stem_ch < 1)
        return nas_errf(err, NAS_EINVAL,
                        "network: resolution %d, in_ch %d, num_classes %d, stem_ch %d must be positive "
                        "(and at least 2 classes)",
                        arch->resolution, arch->in_ch, arch->num_classes, arch->stem_ch);
    if (op_out_side(arch->resolution, arch->stem_kernel, arch->stem_stride) != arch->stem_out_hw)
        return nas_errf(err, NAS_EINVAL, "network: stem_out_hw %d does not follow from resolution %d, "
                        "kernel %d, stride %d", arch->stem_out_hw, arch->resolution,
                        arch->stem_kernel, arch->stem_stride);
    int ch = arch->stem_ch, hw = arch->stem_out_hw;
    for (int i = 0; i < arch->n_blocks; i++) {
        const space_block *b = &arch->blocks[i];
        if (b->in_ch != ch || b->in_hw != hw)
            return nas_errf(err, NAS_EINVAL, "network: blocks[%d] takes %d channels at %dx%d but gets "
                            "%d at %dx%d", i, b->in_ch, b->in_hw, b->in_hw, ch, hw, hw);
        if ((b->kernel != 3 && b->kernel != 5 && b->kernel != 7) || (b->stride != 1 && b->stride != 2))
            return nas_errf(err, NAS_EINVAL, "network: blocks[%d] kernel %d stride %d (3/5/7, 1/2)", i,
                            b->kernel, b->stride);
        if (b->exp_ch < 1 || b->out_ch < 1 || b->se_ch < 0)
            return nas_errf(err, NAS_EINVAL, "network: blocks[%d] has a non-positive channel count", i);
        if (op_out_side(b->in_hw, b->kernel, b->stride) != b->out_hw)
            return nas_errf(err, NAS_EINVAL, "network: blocks[%d].out_hw %d does not follow from "
                            "in_hw %d, stride %d", i, b->out_hw, b->in_hw, b->stride);
        if (b->residual && (b->stride != 1 || b->in_ch != b->out_ch))
            return nas_errf(err, NAS_EINVAL, "network: blocks[%d] is residual with stride %d and "
                            "%d -> %d channels", i, b->stride, b->in_ch, b->out_ch);
        ch = b->out_ch;
        hw = b->out_hw;
    }
    if (arch->head_in_ch != ch || arch->head_hw != hw)
        return nas_errf(err, NAS_EINVAL, "network: head takes %d channels at %dx%d but the last block "
                        "gives %d at %dx%d", arch->head_in_ch, arch->head_hw, arch->head_hw, ch, hw, hw);
    int pool = arch->head_ch > 0 ? arch->head_ch : ch;
    if (arch->pool_ch != pool)
        return nas_errf(err, NAS_EINVAL, "network: pool_ch %d, expected %d", arch->pool_ch, pool);
    int cls = arch->fc_ch > 0 ? arch->fc_ch : pool;
    if (arch->classifier_in != cls)
        return nas_errf(err, NAS_EINVAL, "network: classifier_in %d, expected %d",
                        arch->classifier_in, cls);
    if (!(arch->dropout >= 0 && arch->dropout < 1))
        return nas_errf(err, NAS_EINVAL, "network: dropout %g is outside [0, 1)", arch->dropout);
    return NAS_OK;
}


/* The header of a net, its layer list and its layout; no parameter or
 * activation memory yet. */
static nas_status net_header(const space_net *arch, int batch, int training, int threads, ev_net **out,
                             nas_err *err)
{
    *out = NULL;
    nas_status st = check_arch(arch, batch, err);
    if (st)
        return st;
    ev_net *n = nas_malloc(sizeof *n);
    if (!n)
        return nas_errf(err, NAS_ENOMEM, "network: out of memory for the network header");
    memset(n, 0, sizeof *n);
    n->arch = *arch;
    n->batch = batch;
    n->training = training;
    n->threads = default_threads(threads);
    n->max_threads = n->threads > default_threads(0) ? n->threads : default_threads(0);
    st = space_layers_build(arch, &n->layers, err);
    if (st) {
        nas_free(n);
        return st;
    }
    int n_ops = n->layers.n;
    n->op = nas_malloc(sizeof(evop) * (size_t)n_ops);
    if (!n->op) {
        ev_net_free(n);
        return nas_errf(err, NAS_ENOMEM, "network: out of memory for %d ops", n_ops);
    }
    memset(n->op, 0, sizeof(evop) * (size_t)n->layers.n);
    for (int i = 0; i < n->layers.n; i++)
        n->op[i].o = &n->layers.op[i];
    if (layout(n)) {
        ev_net_free(n);
        return nas_errf(err, NAS_EINVAL, "network: more than %d parameter tensors", MAX_TENSORS);
    }
    *out = n;
    return NAS_OK;
}

nas_status ev_net_plan(const space_net *arch, int batch, int training, ev_memplan *plan, nas_err *err)
{
    ev_net *n;
    nas_status st = net_header(arch, batch, training, 0, &n, err);
    if (st)
        return st;
    *plan = n->plan;
    ev_net_free(n);
    return NAS_OK;
}

/* ======================= initialisation ================================== */

static float normal(nas_pcg32 *rng)
{
    /* Box-Muller; 1 - u keeps the log away from 0. */
    double u1 = 1.0 - nas_pcg32_double(rng), u2 = nas_pcg32_double(rng);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

/* torchvision's MobileNet/EfficientNet init: Kaiming normal with fan-out for
 * convolutions (fan_out = out channels x k x k; a depthwise conv has one output
 * per channel), N(0, 0.01) for linears, zero biases, BN gamma 1, beta 0. */
static void init_params(ev_net *n, uint64_t seed)
{
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 0x6e65745f696e6974ULL);   /* "net_init" */
    memset(n->params, 0, n->n_params * sizeof(float));
    for (int i = 0; i < n->n_tensors; i++) {
        ptensor *t = &n->t[i];
        float *p = n->params + t->off;
        float std = 0;
        if (!strcmp(t->layout, "KKIO"))
            std = sqrtf(2.0f / (float)(t->shape[0] * t->shape[1] * t->shape[3]));
        else if (!strcmp(t->layout, "KKC"))
            std = sqrtf(2.0f / (float)(t->shape[0] * t->shape[1]));
        else if (!strcmp(t->layout, "IO"))
            std = strstr(t->name, ".se.") ? sqrtf(2.0f / (float)t->shape[1]) : 0.01f;
        if (std > 0) {
            for (size_t j = 0; j < t->n; j++)
                p[j] = std * normal(&rng);
        } else if (strstr(t->name, ".gamma") || strstr(t->name, ".running_var")) {
            for (size_t j = 0; j < t->n; j++)
                p[j] = 1.0f;
        }
    }
}


nas_status ev_net_create(const space_net *arch, const ev_net_opts *opts, ev_net **out, nas_err *err)
{
    *out = NULL;
    ev_net *n;
    nas_status st = net_header(arch, opts ? opts->batch : 0, opts ? opts->training : 0,
                               opts ? opts->threads : 0, &n, err);
    if (st)
        return st;
    space_cost cost;
    space_cost_of(arch, NULL, 0, &cost);
    n->macs = (double)cost.macs;
    const ev_memplan *p = &n->plan;
    if (opts->mem_limit && p->total > opts->mem_limit) {
        st = nas_errf(err, NAS_ENOMEM,
                      "network needs %.1f MiB (params %.1f, grads %.1f, optimizer %.1f, activations "
                      "%.1f, scratch %.1f) for batch %d, over the memory limit of %.1f MiB",
                      p->total / 1048576.0, p->params / 1048576.0, p->grads / 1048576.0,
                      p->optim / 1048576.0, p->acts / 1048576.0, p->scratch / 1048576.0, n->batch,
                      opts->mem_limit / 1048576.0);
        goto cleanup;
    }
    n->params = nas_malloc(p->params ? p->params : 64);
    n->acts = nas_malloc(p->acts ? p->acts : 64);
    n->scratch = nas_malloc(p->scratch ? p->scratch : 64);
    if (n->training) {
        n->grads = nas_malloc(p->grads);
        n->mom = nas_malloc(p->optim);
    }
    if (!n->params || !n->acts || !n->scratch || (n->training && (!n->grads || !n->mom))) {
        st = nas_errf(err, NAS_ENOMEM, "network: out of memory allocating %.1f MiB",
                      p->total / 1048576.0);
        goto cleanup;
    }
    memset(n->acts, 0, p->acts);
    memset(n->scratch, 0, p->scratch);
    if (n->training) {
        memset(n->grads, 0, p->grads);
        memset(n->mom, 0, p->optim);
    }
    init_params(n, opts->seed);
    *out = n;
    return NAS_OK;

cleanup:
    ev_net_free(n);
    return st;
}

void ev_net_free(ev_net *n)
{
    if (!n)
        return;
    nas_free(n->params);
    nas_free(n->grads);
    nas_free(n->mom);
    nas_free(n->acts);
    nas_free(n->scratch);
    nas_free(n->op);
    space_layers_free(&n->layers);
    nas_free(n);
}

const space_net *ev_net_arch(const ev_net *n) { return &n->arch; }
int ev_net_tensors(const ev_net *n, ev_tensor *out, int max)
{
    for (int i = 0; i < n->n_tensors && i < max; i++) {
        const ptensor *t = &n->t[i];
        snprintf(out[i].name, sizeof out[i].name, "%s", t->name);
        out[i].data = n->params + t->off;
        out[i].ndim = t->ndim;
        memcpy(out[i].shape, t->shape, sizeof t->shape);
        out[i].layout = t->layout;
    }
    return n->n_tensors;
}

/* ======================= forward ========================================= */

op_act evn_act_of(space_act a)
{
    switch (a) {
    case SPACE_ACT_RELU: return OP_RELU;
    case SPACE_ACT_RELU6: return OP_RELU6;
    case SPACE_ACT_HSWISH: return OP_HSWISH;
    case SPACE_ACT_SWISH: return OP_SWISH;
    default: return OP_NONE;
    }
}

static op_act gate_of(space_gate g) { return g == SPACE_GATE_HSIGMOID ? OP_HSIGMOID : OP_SIGMOID; }

#define P(off) (n->params + (off))
#define G(off) (n->grads + (off))
#define A(off) (n->acts + (off))
#define S(off) (n->scratch + (off))

static void bn_fwd(ev_net *n, const op_ctx *cx, const bn_t *bn, size_t y, size_t z, int N,
                   op_act act, int training)
{
    op_bn_act_forward(cx, A(y), A(bn->mean), A(bn->rstd), A(z), P(bn->gamma), P(bn->beta),
                      P(bn->rmean), P(bn->rvar), N, bn->c, act, training, BN_MOMENTUM);
}

static void bn_bwd(ev_net *n, const op_ctx *cx, const bn_t *bn, float *d, size_t z, int N, op_act act)
{
    op_bn_act_backward(cx, d, G(bn->gamma), G(bn->beta), d, A(z), A(bn->mean), A(bn->rstd),
                       P(bn->gamma), P(bn->beta), N, bn->c, act);
}


/* What op k reads: the caller's input batch for the first op. */
static const float *in_of(ev_net *n, const evop *k, const float *x)
{
    return k->o->in < 0 ? x : A(n->op[k->o->in].y);
}

/* The activation a BN applies: that of the ACT folded into it. */
static op_act bn_act(const ev_net *n, int i)
{
    const evop *next = i + 1 < n->layers.n ? &n->op[i + 1] : NULL;
    return next && next->folded ? evn_act_of(next->o->act) : OP_NONE;
}

/* Squeeze-excite of the depthwise output x [B, ohw, E] into y, the one
 * forward that training and inference share (se_backward is its pair):
 *   sp = mean over the map, s1z = sp W1 + b1, s1a = se_act(s1z),
 *   s2z = s1a W2 + b2, g = gate(s2z), y = x * g per channel. */
static void se_forward(ev_net *n, const evop *k, const float *x, int B)
{
    const space_op *o = k->o;
    int ohw = o->out_hw * o->out_hw, E = o->out_ch, S = o->mid_ch;
    op_pool_forward(A(k->sp), x, B, ohw, E);
    op_linear_forward(A(k->s1z), A(k->sp), P(k->w), P(k->b), B, E, S);
    op_act_forward(A(k->s1a), A(k->s1z), (size_t)B * S, evn_act_of(o->act));
    op_linear_forward(A(k->s2z), A(k->s1a), P(k->w2), P(k->b2), B, S, E);
    op_act_forward(A(k->g), A(k->s2z), (size_t)B * E, gate_of(o->gate));
    op_scale_forward(A(k->y), x, A(k->g), B, ohw, E);
}

/* The ops that run alike in training and at inference; returns 0 for the
 * others (convs, BN, dropout). */
static int op_shared(ev_net *n, const evop *k, const float *x, int B)
{
    const space_op *o = k->o;
    const float *in = in_of(n, k, x);
    size_t len = (size_t)B * o->out_hw * o->out_hw * o->out_ch;
    switch (o->kind) {
    case SPACE_OP_ACT:
        if (!k->folded)
            op_act_forward(A(k->y), in, len, evn_act_of(o->act));
        break;
    case SPACE_OP_SE:
        se_forward(n, k, in, B);
        break;
    case SPACE_OP_ADD:
        op_add(A(k->y), o->in2 < 0 ? x : A(n->op[o->in2].y), len);
        break;
    case SPACE_OP_POOL:
        op_pool_forward(A(k->y), in, B, o->in_hw * o->in_hw, o->out_ch);
        break;
    case SPACE_OP_LINEAR:
        op_linear_forward(A(k->y), in, P(k->w), P(k->b), B, o->in_ch, o->out_ch);
        break;
    default:
        return 0;
    }
    return 1;
}

/* Op i in training mode (batch statistics, dropout from rng). */
static void op_forward(ev_net *n, const op_ctx *cx, int i, const float *x, int B, nas_pcg32 *rng)
{
    const evop *k = &n->op[i];
    const space_op *o = k->o;
    const float *in = in_of(n, k, x);
    int N = B * o->in_hw * o->in_hw, M = B * o->out_hw * o->out_hw;
    size_t len = (size_t)M * o->out_ch;
    if (op_shared(n, k, x, B))
        return;
    switch (o->kind) {
    case SPACE_OP_CONV:
        if (o->in < 0 || o->kernel != 1 || o->stride != 1)
            op_conv_forward(cx, A(k->y), S(n->col), in, P(k->w), B, o->in_hw, o->in_hw, o->in_ch,
                            o->out_ch, o->kernel, o->stride);
        else
            op_pw_forward(cx, A(k->y), in, P(k->w), N, o->in_ch, o->out_ch);
        break;
    case SPACE_OP_DWCONV:
        op_dw_forward(cx, A(k->y), in, P(k->w), B, o->in_hw, o->in_hw, o->out_ch, o->kernel, o->stride);
        break;
    case SPACE_OP_BN:
        bn_fwd(n, cx, &k->bn, k->y, n->op[o->in].y, M, bn_act(n, i), 1);
        break;
    case SPACE_OP_DROPOUT: {
        double rate = n->arch.dropout;
        float inv = 1.0f / (1.0f - (float)rate), *m = A(k->mask);
        for (size_t j = 0; j < len; j++)
            m[j] = nas_pcg32_double(rng) < rate ? 0.0f : inv;
        op_dropout_forward(A(k->y), in, m, len);
        break;
    }
    default:
        break;
    }
}

/* x: the input batch (B x res x res x in_ch). */
static void net_forward(ev_net *n, const float *x, int B, nas_pcg32 *rng)
{
    op_ctx cx = {n->threads, S(n->partial), NULL, 0};
    ops_set_threads(n->threads);
    for (int i = 0; i < n->layers.n; i++)
        op_forward(n, &cx, i, x, B, rng);
}

/* Inference: every conv with its batch norm (running statistics), activation
 * and residual in one pass (ops.h's *_bn_act_infer), so no pre-normalisation
 * tensor is written. The BN affine is recomputed from the parameters on every
 * call (a few thousand channels, a few microseconds): nothing is cached, so
 * whatever writes the parameters (SGD, weight loading, a caller through
 * ev_net_tensors) is seen at once. */
static void bn_affine(ev_net *n, const bn_t *bn, float *sc, float *sh)
{
    op_bn_eval_affine(sc, sh, P(bn->gamma), P(bn->beta), P(bn->rmean), P(bn->rvar), bn->c);
}

/* The op after the group of the conv at op i: its BN, the ACT folded into
 * that and a residual ADD after those (*add: that ADD, or -1). */
static int conv_group_end(const ev_net *n, int i, int *add)
{
    int j = i + 2;
    j += j < n->layers.n && n->op[j].folded;
    *add = -1;
    if (j < n->layers.n && n->op[j].o->kind == SPACE_OP_ADD && n->op[j].o->in == j - 1)
        *add = j++;
    return j;
}

/* The op after op i at inference, as op_infer returns it. */
static int op_next(const ev_net *n, int i)
{
    int add;
    space_op_kind kd = n->op[i].o->kind;
    return kd == SPACE_OP_CONV || kd == SPACE_OP_DWCONV ? conv_group_end(n, i, &add) : i + 1;
}

/* The conv or dwconv at op i with the BN after it, the ACT folded into that
 * and the residual ADD after those, in one pass. Returns the op after them. */
static int conv_infer(ev_net *n, const op_ctx *cx, int i, const float *x, int B)
{
    const evop *k = &n->op[i], *bn = &n->op[i + 1];
    const space_op *o = k->o;
    op_act act = bn_act(n, i + 1);
    int add, j = conv_group_end(n, i, &add);
    const float *res = NULL;
    if (add >= 0)
        res = n->op[add].o->in2 < 0 ? x : A(n->op[n->op[add].o->in2].y);
    const float *in = in_of(n, k, x);
    int N = B * o->in_hw * o->in_hw, M = B * o->out_hw * o->out_hw, C = o->out_ch;
    float sc[C], sh[C];
    bn_affine(n, &bn->bn, sc, sh);
    if (o->kind == SPACE_OP_DWCONV) {
        op_dw_bn_act_infer(cx, A(bn->y), in, P(k->w), sc, sh, res, B, o->in_hw, o->in_hw, C,
                           o->kernel, o->stride, act);
    } else if (o->in < 0 || o->kernel != 1 || o->stride != 1) {
        /* im2col, then a pointwise conv over the patches (a team's shares of
         * the two differ, hence the wait) */
        op_conv_im2col(cx, S(n->col), in, B, o->in_hw, o->in_hw, o->in_ch, o->kernel, o->stride);
        ops_team_sync(cx);
        op_pw_bn_act_infer(cx, A(bn->y), S(n->col), P(k->w), sc, sh, res, M,
                           o->kernel * o->kernel * o->in_ch, C, act);
    } else {
        op_pw_bn_act_infer(cx, A(bn->y), in, P(k->w), sc, sh, res, N, o->in_ch, C, act);
    }
    return j;
}

/* Op i at inference; returns the next op to run. */
static int op_infer(ev_net *n, const op_ctx *cx, int i, const float *x, int B)
{
    const evop *k = &n->op[i];
    const space_op *o = k->o;
    const float *in = in_of(n, k, x);
    size_t len = (size_t)B * o->out_hw * o->out_hw * o->out_ch;
    if (o->kind == SPACE_OP_CONV || o->kind == SPACE_OP_DWCONV)
        return conv_infer(n, cx, i, x, B);
    if (op_shared(n, k, x, B))
        return i + 1;
    switch (o->kind) {
    case SPACE_OP_DROPOUT:   /* the identity; a training net has a buffer of its own for it */
        if (A(k->y) != in)
            memcpy(A(k->y), in, sizeof(float) * len);
        break;
    default:   /* a BN: run by conv_infer with the conv before it, as every BN follows a conv */
        break;
    }
    return i + 1;
}

/* Waking a sleeping OpenMP thread (OMP_WAIT_POLICY=passive, as nas and the
 * benchmarks run) costs tens of microseconds a parallel region, and at batch
 * 1 a layer is a few microseconds of work. So a network below
 * INFER_THREADS_MIN_MACS of work runs all its layers in one parallel region
 * whose threads split the rows of every conv of TEAM_SPLIT_MACS or more and
 * wait for each other at a spinning barrier around it (ops_team): one
 * wake-up an inference. Before that
 * team, MobileNetV2-0.5 at 32x32, batch 1 (26M MACs), ran on one thread: a
 * region per layer took 3.3-3.9 ms on 2 threads against 0.83 ms on one
 * (bench-ort, AMD EPYC, 2 cores); with the team, 0.36-0.45 ms against
 * 0.61-0.79 (Zen 4). Below INFER_TEAM_MIN_MACS even one wake-up costs more
 * than a second core saves: a 1.24M-MAC net took 0.13 ms on a team of 2
 * against 0.066 ms on one thread, a 9.2M-MAC one 0.18 against 0.22. Above
 * INFER_THREADS_MIN_MACS each layer's work pays for its own region. */
#define INFER_TEAM_MIN_MACS 4e6
#define INFER_THREADS_MIN_MACS 200e6

static void infer_ops(ev_net *n, const op_ctx *cx, const float *x, int B)
{
    for (int i = 0; i < n->layers.n;)
        i = op_infer(n, cx, i, x, B);
}

/* A conv the team splits: enough work to pay for the two waits around it
 * (a fraction of a microsecond each), and a share for every thread. The
 * rest runs on thread 0 alone and costs no wait. */
#define TEAM_SPLIT_MACS 30e3

static int team_splits(const ev_net *n, int i, int B, int nt)
{
    const space_op *o = n->op[i].o;
    if (o->kind != SPACE_OP_CONV && o->kind != SPACE_OP_DWCONV)
        return 0;
    long units = (long)B * o->out_hw;   /* output rows: a dwconv's unit of work */
    if (o->kind == SPACE_OP_CONV)
        units = (units * o->out_hw + 7) / 8;   /* blocks of 8 pixels: a pointwise tile */
    return B * o->macs >= TEAM_SPLIT_MACS && units >= nt;
}

/* Thread t of a team of cx->team->n. A split conv is run by all, between two
 * waits; consecutive solo ops run on thread 0 with no wait between them, the
 * others walking the list beside it to the next split. */
static void team_infer_ops(ev_net *n, const op_ctx *cx, const float *x, int B)
{
    op_ctx solo = {1, cx->partial, NULL, 0};
    int split_before = 0;   /* the input was written before the region began */
    for (int i = 0; i < n->layers.n;) {
        int split = team_splits(n, i, B, cx->team->n);
        if (split || split_before)
            ops_team_sync(cx);
        if (split)
            i = op_infer(n, cx, i, x, B);
        else if (cx->t == 0)
            i = op_infer(n, &solo, i, x, B);
        else
            i = op_next(n, i);
        split_before = split;
    }
}

/* On a loaded machine (other work, more ranks' threads than cores) a team
 * waits for descheduled threads at every split layer: MobileNetV2-0.5 at
 * batch 1 took 1.6-2.1 ms on a team of 2 beside a running test suite, 0.63 ms
 * on one thread. When thread 0 waited for more than half an inference, the
 * next TEAM_REST inferences run on one thread; then the team is tried again. */
#define TEAM_REST 64

static void net_infer(ev_net *n, const float *x, int B)
{
    double work = (double)B * n->macs;
    int T = n->threads;
    int team = T > 1 && work >= INFER_TEAM_MIN_MACS && work < INFER_THREADS_MIN_MACS;
    if (team && n->team_rest > 0) {
        n->team_rest--;
        team = 0;
    }
    if (team) {
        ops_team tm;
        ops_team_init(&tm, T, nas_now);
        double t0 = nas_now();
        ops_set_threads(1);   /* the ops' own regions, nested in the team, stay single */
#pragma omp parallel num_threads(T)
        {
            /* a short team (a thread limit) runs the whole net on its thread 0 */
            int t = omp_get_thread_num(), whole = omp_get_num_threads() == T;
            op_ctx cx = {1, S(n->partial), whole ? &tm : NULL, t};
            if (whole)
                team_infer_ops(n, &cx, x, B);
            else if (t == 0)
                infer_ops(n, &cx, x, B);
        }
        if (tm.waited > 0.5 * (nas_now() - t0))
            n->team_rest = TEAM_REST;
        return;
    }
    if (work < INFER_THREADS_MIN_MACS)
        T = 1;
    op_ctx cx = {T, S(n->partial), NULL, 0};
    ops_set_threads(T);
    infer_ops(n, &cx, x, B);
}

/* ======================= backward ======================================== */

/* se_forward's pair: dy [B, ohw, E] in d becomes dx in place; `tmp`, a
 * free gradient buffer, holds d gate [B,E], d s1 [B,S] and d pooled [B,E]. */
static void se_backward(ev_net *n, const evop *k, const float *x, int B, float *d, float *tmp)
{
    const space_op *o = k->o;
    int ohw = o->out_hw * o->out_hw, E = o->out_ch, S = o->mid_ch;
    float *dgate = tmp, *ds1 = tmp + (((size_t)B * E + 15) & ~(size_t)15);
    float *dsp = ds1 + (((size_t)B * S + 15) & ~(size_t)15);
    op_scale_backward(d, dgate, d, x, A(k->g), B, ohw, E);
    op_act_backward(dgate, dgate, A(k->s2z), (size_t)B * E, gate_of(o->gate));
    op_linear_backward(ds1, G(k->w2), G(k->b2), dgate, A(k->s1a), P(k->w2), B, S, E);
    op_act_backward(ds1, ds1, A(k->s1z), (size_t)B * S, evn_act_of(o->act));
    op_linear_backward(dsp, G(k->w), G(k->b), ds1, A(k->sp), P(k->w), B, E, S);
    op_pool_backward(d, dsp, B, ohw, E, 1);
}

/* Where backward's gradients are: buf[cur] holds d(output) of the op being
 * run back (buffer 3 is d(logits)); inside a residual unit buf[skip] holds
 * d(ADD), which the op reading the skip's source (op skip_src) adds to the
 * gradient of its input. */
typedef struct {
    float *buf[4];
    int cur, skip, skip_src;
} grads_t;

static int free_buf(const grads_t *g)
{
    int i = 0;
    while (i == g->cur || i == g->skip)
        i++;
    return i;
}

/* Op i run back: d(output) in buf[cur] becomes d(input), in place or in a
 * free buffer that becomes cur; parameter gradients accumulate. */
static void op_backward(ev_net *n, const op_ctx *cx, int i, const float *x, int B, grads_t *g)
{
    const evop *k = &n->op[i];
    const space_op *o = k->o;
    const float *in = in_of(n, k, x);
    int N = B * o->in_hw * o->in_hw, M = B * o->out_hw * o->out_hw, f = free_buf(g);
    float *d = g->buf[g->cur], *dx = g->buf[f];
    size_t len = (size_t)M * o->out_ch, in_len = (size_t)N * o->in_ch;
    int skip = g->skip >= 0 && o->in == g->skip_src;   /* then dx takes the skip's gradient too */
    switch (o->kind) {
    case SPACE_OP_CONV:
        if (o->in < 0) {   /* the image: no input gradient */
            op_conv_backward(cx, G(k->w), S(n->col), d, in, B, o->in_hw, o->in_hw, o->in_ch,
                             o->out_ch, o->kernel, o->stride);
            return;
        }
        if (skip)
            memcpy(dx, g->buf[g->skip], sizeof(float) * in_len);
        op_pw_backward(cx, dx, G(k->w), d, in, P(k->w), N, o->in_ch, o->out_ch, skip);
        break;
    case SPACE_OP_DWCONV:
        op_dw_backward(cx, dx, G(k->w), d, in, P(k->w), B, o->in_hw, o->in_hw, o->out_ch, o->kernel,
                       o->stride);
        if (skip)
            op_add(dx, g->buf[g->skip], in_len);
        break;
    case SPACE_OP_BN:
        bn_bwd(n, cx, &k->bn, d, n->op[o->in].y, M, bn_act(n, i));
        return;
    case SPACE_OP_ACT:
        if (!k->folded)
            op_act_backward(d, d, in, len, evn_act_of(o->act));
        return;
    case SPACE_OP_SE:
        se_backward(n, k, in, B, d, dx);
        return;
    case SPACE_OP_ADD:
        /* d(ADD) goes both ways: kept for the skip, copied for the main path */
        memcpy(dx, d, sizeof(float) * len);
        g->skip = g->cur;
        g->skip_src = o->in2;
        g->cur = f;
        return;
    case SPACE_OP_POOL:
        op_pool_backward(dx, d, B, o->in_hw * o->in_hw, o->out_ch, 0);
        break;
    case SPACE_OP_LINEAR:
        op_linear_backward(dx, G(k->w), G(k->b), d, in, P(k->w), B, o->in_ch, o->out_ch);
        break;
    case SPACE_OP_DROPOUT:
        op_dropout_backward(d, d, A(k->mask), len);
        return;
    }
    if (skip)
        g->skip = -1;
    g->cur = f;
}

static void net_backward(ev_net *n, const float *x, int B)
{
    op_ctx cx = {n->threads, S(n->partial), NULL, 0};
    grads_t g = {{S(n->gbuf[0]), S(n->gbuf[1]), S(n->gbuf[2]), S(n->dlogits)}, 3, -1, -1};
    for (int i = n->layers.n - 1; i >= 0; i--)
        op_backward(n, &cx, i, x, B, &g);
}

/* ======================= the private face ================================ */

float *evn_params(ev_net *n, size_t *count)
{
    if (count)
        *count = n->n_params;
    return n->params;
}
float *evn_grads(ev_net *n) { return n->grads; }
float *evn_momentum(ev_net *n) { return n->mom; }
float *evn_input(ev_net *n) { return n->training ? A(n->input) : NULL; }
const float *evn_logits(const ev_net *n) { return n->acts + n->logits; }
int evn_threads(const ev_net *n) { return n->threads; }
int evn_batch(const ev_net *n) { return n->batch; }

void evn_set_threads(ev_net *n, int threads)
{
    threads = default_threads(threads);
    n->threads = threads > n->max_threads ? n->max_threads : threads;
}

double evn_train_step(ev_net *n, const float *x, const uint8_t *labels, int B, float smoothing,
                      nas_pcg32 *rng, int *correct)
{
    return evn_train_step_kd(n, x, labels, B, smoothing, NULL, 1, 0, rng, correct);
}

double evn_train_step_kd(ev_net *n, const float *x, const uint8_t *labels, int B, float smoothing,
                         const float *teacher, float T, float alpha, nas_pcg32 *rng, int *correct)
{
    memset(n->grads, 0, n->n_params * sizeof(float));
    net_forward(n, x, B, rng);
    int K = n->arch.num_classes;
    double loss = teacher ? op_kd_forward_backward(S(n->dlogits), A(n->logits), teacher, labels, B, K,
                                                   smoothing, T, alpha, correct)
                          : op_xent_forward_backward(S(n->dlogits), A(n->logits), labels, B, K,
                                                     smoothing, correct);
    if (!isfinite(loss))
        return loss;
    net_backward(n, x, B);
    return loss;
}

void evn_sgd(ev_net *n, float lr, float momentum, float wd)
{
    for (int i = 0; i < n->n_tensors; i++) {
        const ptensor *t = &n->t[i];
        if (!t->trainable)
            continue;
        float *p = P(t->off), *g = G(t->off), *m = n->mom + t->off;
        float d = t->decay ? wd : 0.0f;
        for (size_t j = 0; j < t->n; j++) {
            float gj = g[j] + d * p[j];
            m[j] = momentum * m[j] + gj;
            p[j] -= lr * (gj + momentum * m[j]);
        }
    }
}

nas_status ev_net_infer(ev_net *n, const float *x, int B, float *logits, nas_err *err)
{
    if (B < 1 || B > n->batch)
        return nas_errf(err, NAS_EINVAL, "inference: batch %d is outside 1..%d (the net was built for "
                        "batch %d)", B, n->batch, n->batch);
    net_infer(n, x, B);
    if (logits)
        memcpy(logits, A(n->logits), sizeof(float) * (size_t)B * n->arch.num_classes);
    return NAS_OK;
}
