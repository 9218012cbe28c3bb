/* net.c — a space_net made into a trainable network.
 *
 * Memory is laid out once, from the spec, before anything runs: parameters,
 * gradients, momentum, activations and scratch are one nas_malloc'd block
 * each, with every tensor an offset into its block (as llm.c does). The same
 * layout pass sizes ev_net_plan and fills ev_net_create, so the plan is the
 * truth. The layout walks the layer list (space_unit_ops), unit by unit, so
 * tensor names and sizes are the ones the cost model and the ONNX export
 * see. Training keeps every activation backward needs; inference-only nets
 * alternate two regions, block by block, since nothing is kept.
 *
 * Backward walks the blocks in reverse with three gradient buffers, each as
 * large as the largest activation; which holds what is spelled out in
 * block_backward.
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

typedef struct {
    const space_block *sb;
    int expand;
    size_t w_exp, w_dw, w_proj, se_w1, se_b1, se_w2, se_b2;
    bn_t bn_exp, bn_dw, bn_proj;
    size_t in, ez, ea, dz, da, sp, s1z, s1a, s2z, g, u, pz, y;   /* activations */
} blk_t;

struct ev_net {
    space_net arch;
    int batch, training, threads, max_threads;
    double macs;   /* multiply-adds per image, for the inference thread choice */
    ev_memplan plan;
    float *params, *grads, *mom, *acts, *scratch;
    size_t n_params, n_acts, n_scratch;

    size_t input, stem_w, stem_z, stem_a;
    bn_t stem_bn;
    blk_t blk[SPACE_MAX_BLOCKS];
    size_t head_w, head_z, head_a;
    bn_t head_bn;
    size_t pool_in, pooled, fc_w, fc_b, fc_z, fc_a, drop_mask, drop_out, cls_w, cls_b, logits;
    size_t feat;                      /* what the classifier reads */

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

/* Where the stem, one block or the head keeps its offsets while its ops are
 * laid out: the conv being laid, its pre-BN output (z) and post-activation
 * output (a), and the BN between them. */
typedef struct {
    size_t *w, *z, *a;
    bn_t *bn;
} slot_t;

/* The slot of conv op o of its unit: a block's conv before its depthwise one
 * is the expansion, after it the projection. */
static slot_t conv_slot(ev_net *n, const space_op *o, int seen_dw)
{
    if (o->block < 0 && o->unit == 0)
        return (slot_t){&n->stem_w, &n->stem_z, &n->stem_a, &n->stem_bn};
    if (o->block < 0)
        return (slot_t){&n->head_w, &n->head_z, &n->head_a, &n->head_bn};
    blk_t *k = &n->blk[o->block];
    if (o->kind == SPACE_OP_DWCONV)
        return (slot_t){&k->w_dw, &k->dz, &k->da, &k->bn_dw};
    if (!seen_dw)
        return (slot_t){&k->w_exp, &k->ez, &k->ea, &k->bn_exp};
    return (slot_t){&k->w_proj, &k->pz, &k->y, &k->bn_proj};
}

static void lay_se(layout_t *L, blk_t *k, const space_op *o, size_t B)
{
    char nm[48];
    size_t nout = B * o->out_hw * o->out_hw;
    snprintf(nm, sizeof nm, "%s.reduce", o->name);
    lay_linear(L, &k->se_w1, &k->se_b1, nm, o->in_ch, o->mid_ch);
    snprintf(nm, sizeof nm, "%s.expand", o->name);
    lay_linear(L, &k->se_w2, &k->se_b2, nm, o->mid_ch, o->out_ch);
    k->sp = lay_act(L, B * o->out_ch);
    k->s1z = lay_act(L, B * o->mid_ch);
    k->s1a = lay_act(L, B * o->mid_ch);
    k->s2z = lay_act(L, B * o->out_ch);
    k->g = lay_act(L, B * o->out_ch);
    k->u = lay_act(L, nout * o->out_ch);
    /* SE's backward keeps three small vectors in one gradient buffer */
    size_t se_need = B * (2 * (size_t)o->out_ch + o->mid_ch) + 48;
    if (se_need > L->max_tensor)
        L->max_tensor = se_need;
}

/* The head's pooling, fc and classifier (its last op, with dropout's buffers
 * in training). */
static void lay_tail(layout_t *L, const space_op *o, size_t B, size_t *prev, int last)
{
    ev_net *n = L->n;
    if (o->kind == SPACE_OP_POOL) {
        n->pool_in = *prev;
        n->pooled = n->feat = lay_act(L, B * o->out_ch);
        return;
    }
    if (!last) {
        lay_linear(L, &n->fc_w, &n->fc_b, o->name, o->in_ch, o->out_ch);
        n->fc_z = lay_act(L, B * o->out_ch);
        n->fc_a = n->feat = lay_act(L, B * o->out_ch);
        return;
    }
    if (!L->inference) {
        n->drop_mask = lay_act(L, B * o->in_ch);
        n->drop_out = lay_act(L, B * o->in_ch);
    }
    lay_linear(L, &n->cls_w, &n->cls_b, o->name, o->in_ch, o->out_ch);
    n->logits = lay_act(L, B * o->out_ch);
}

/* One unit's parameters and activations, op by op from the layer list.
 * `prev` is the activation the unit reads; on return, the one it writes. */
static void lay_unit(layout_t *L, const space_op *ops, int k, size_t B, size_t *prev)
{
    ev_net *n = L->n;
    char nm[48];
    int seen_dw = 0;
    slot_t sl = {0};
    if (ops[0].block >= 0) {
        blk_t *b = &n->blk[ops[0].block];
        b->sb = &n->arch.blocks[ops[0].block];
        b->in = *prev;
        b->expand = b->sb->exp_ch != b->sb->in_ch;
    }
    for (int i = 0; i < k; i++) {
        const space_op *o = &ops[i];
        size_t nout = B * o->out_hw * o->out_hw;
        switch (o->kind) {
        case SPACE_OP_CONV:
        case SPACE_OP_DWCONV:
            sl = conv_slot(n, o, seen_dw);
            snprintf(nm, sizeof nm, "%s.conv", o->name);
            if (o->kind == SPACE_OP_DWCONV) {
                int dws[3] = {o->kernel, o->kernel, o->out_ch};
                *sl.w = lay_param(L, nm, 3, dws, "KKC", 1, 1);
                seen_dw = 1;
            } else {
                lay_conv(L, sl.w, nm, o->kernel, o->in_ch, o->out_ch);
            }
            break;
        case SPACE_OP_BN:
            lay_bn(L, sl.bn, o->name, o->out_ch);
            *sl.z = lay_act(L, nout * o->out_ch);
            *prev = *sl.a = lay_act(L, nout * o->out_ch);
            break;
        case SPACE_OP_SE:
            lay_se(L, &n->blk[o->block], o, B);
            break;
        case SPACE_OP_POOL:
        case SPACE_OP_LINEAR:
            lay_tail(L, o, B, prev, i == k - 1);
            break;
        default:   /* activations, adds and dropout write in place or in their op's buffers */
            break;
        }
    }
}

static void layout_pass(layout_t *L)
{
    ev_net *n = L->n;
    const space_net *a = &n->arch;
    size_t B = (size_t)n->batch;
    n->n_tensors = 0;
    L->p = L->a = 0;
    L->seg_start = 0;
    L->seg_max = 0;
    L->max_tensor = 0;
    L->max_c = 0;

    /* segments: the stem -1, block i i, the head n_blocks (unit u is segment u - 1) */
    lay_segment(L, -1);
    n->input = L->inference ? 0   /* inference reads the caller's x */
                            : lay_act(L, B * a->resolution * a->resolution * a->in_ch);
    size_t prev = 0;
    space_op ops[SPACE_UNIT_MAX_OPS];
    for (int u = 0; u < space_unit_count(a); u++) {
        if (u > 0)
            lay_segment(L, u - 1);
        lay_unit(L, ops, space_unit_ops(a, u, 0, ops), B, &prev);
    }
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
    s += (B * a->stem_out_hw * a->stem_out_hw * a->stem_kernel * a->stem_kernel * a->in_ch + 15) &
         ~(size_t)15;
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
    p->total = p->params + p->grads + p->optim + p->acts + p->scratch + sizeof(ev_net);
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

nas_status ev_net_plan(const space_net *arch, int batch, int training, ev_memplan *plan, nas_err *err)
{
    nas_status st = check_arch(arch, batch, err);
    if (st)
        return st;
    ev_net *n = nas_malloc(sizeof *n);
    if (!n)
        return nas_errf(err, NAS_ENOMEM, "network plan: out of memory");
    memset(n, 0, sizeof *n);
    n->arch = *arch;
    n->batch = batch;
    n->training = training;
    n->threads = n->max_threads = default_threads(0);
    if (layout(n)) {
        nas_free(n);
        return nas_errf(err, NAS_EINVAL, "network: more than %d parameter tensors", MAX_TENSORS);
    }
    *plan = n->plan;
    nas_free(n);
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
    nas_status st = check_arch(arch, opts ? opts->batch : 0, err);
    if (st)
        return st;
    ev_net *n = nas_malloc(sizeof *n);
    if (!n)
        return nas_errf(err, NAS_ENOMEM, "network: out of memory for the network header");
    memset(n, 0, sizeof *n);
    n->arch = *arch;
    n->batch = opts->batch;
    n->training = opts->training;
    n->threads = default_threads(opts->threads);
    n->max_threads = n->threads > default_threads(0) ? n->threads : default_threads(0);
    space_cost cost;
    space_cost_of(arch, NULL, 0, &cost);
    n->macs = (double)cost.macs;
    if (layout(n)) {
        st = nas_errf(err, NAS_EINVAL, "network: more than %d parameter tensors", MAX_TENSORS);
        goto cleanup;
    }
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

/* Squeeze-excite of the depthwise output da [B, ohw, E] into u, the one
 * forward that training and inference share (se_backward is its pair):
 *   sp = mean over the map, s1z = sp W1 + b1, s1a = se_act(s1z),
 *   s2z = s1a W2 + b2, g = gate(s2z), u = da * g per channel.
 * Returns u, what the projection reads. */
static size_t se_forward(ev_net *n, const blk_t *k, int B)
{
    const space_net *a = &n->arch;
    const space_block *b = k->sb;
    int ohw = b->out_hw * b->out_hw, E = b->exp_ch;
    op_pool_forward(A(k->sp), A(k->da), B, ohw, E);
    op_linear_forward(A(k->s1z), A(k->sp), P(k->se_w1), P(k->se_b1), B, E, b->se_ch);
    op_act_forward(A(k->s1a), A(k->s1z), (size_t)B * b->se_ch, evn_act_of(a->se_act));
    op_linear_forward(A(k->s2z), A(k->s1a), P(k->se_w2), P(k->se_b2), B, b->se_ch, E);
    op_act_forward(A(k->g), A(k->s2z), (size_t)B * E, gate_of(a->se_gate));
    op_scale_forward(A(k->u), A(k->da), A(k->g), B, ohw, E);
    return k->u;
}

/* x: the input batch (B x res x res x in_ch). */
static void net_forward(ev_net *n, const float *x, int B, int training, nas_pcg32 *rng)
{
    const space_net *a = &n->arch;
    op_ctx cx = {n->threads, S(n->partial)};
    ops_set_threads(n->threads);
    int hw = a->stem_out_hw;
    op_conv_forward(&cx, A(n->stem_z), S(n->col), x, P(n->stem_w), B, a->resolution, a->resolution,
                    a->in_ch, a->stem_ch, a->stem_kernel, a->stem_stride);
    bn_fwd(n, &cx, &n->stem_bn, n->stem_a, n->stem_z, B * hw * hw, evn_act_of(a->stem_act), training);

    for (int i = 0; i < a->n_blocks; i++) {
        const blk_t *k = &n->blk[i];
        const space_block *b = k->sb;
        int nin = B * b->in_hw * b->in_hw, nout = B * b->out_hw * b->out_hw, E = b->exp_ch;
        op_act act = evn_act_of(b->act);
        size_t dwin = k->in;
        if (k->expand) {
            op_pw_forward(&cx, A(k->ez), A(k->in), P(k->w_exp), nin, b->in_ch, E);
            bn_fwd(n, &cx, &k->bn_exp, k->ea, k->ez, nin, act, training);
            dwin = k->ea;
        }
        op_dw_forward(&cx, A(k->dz), A(dwin), P(k->w_dw), B, b->in_hw, b->in_hw, E, b->kernel,
                      b->stride);
        bn_fwd(n, &cx, &k->bn_dw, k->da, k->dz, nout, act, training);
        size_t pin = b->se_ch > 0 ? se_forward(n, k, B) : k->da;
        op_pw_forward(&cx, A(k->pz), A(pin), P(k->w_proj), nout, E, b->out_ch);
        bn_fwd(n, &cx, &k->bn_proj, k->y, k->pz, nout, OP_NONE, training);
        if (b->residual)
            op_add(A(k->y), A(k->in), (size_t)nout * b->out_ch);
    }

    hw = a->head_hw;
    if (a->head_ch > 0) {
        size_t hin = a->n_blocks ? n->blk[a->n_blocks - 1].y : n->stem_a;
        op_pw_forward(&cx, A(n->head_z), A(hin), P(n->head_w), B * hw * hw, a->head_in_ch, a->head_ch);
        bn_fwd(n, &cx, &n->head_bn, n->head_a, n->head_z, B * hw * hw, evn_act_of(a->head_act), training);
    }
    op_pool_forward(A(n->pooled), A(n->pool_in), B, hw * hw, a->pool_ch);
    if (a->fc_ch > 0) {
        op_linear_forward(A(n->fc_z), A(n->pooled), P(n->fc_w), P(n->fc_b), B, a->pool_ch, a->fc_ch);
        op_act_forward(A(n->fc_a), A(n->fc_z), (size_t)B * a->fc_ch, evn_act_of(a->fc_act));
    }
    size_t feat = n->feat;
    if (training && a->dropout > 0) {
        float keep = 1.0f - (float)a->dropout, inv = 1.0f / keep;
        float *m = A(n->drop_mask);
        for (size_t j = 0; j < (size_t)B * a->classifier_in; j++)
            m[j] = nas_pcg32_double(rng) < a->dropout ? 0.0f : inv;
        op_dropout_forward(A(n->drop_out), A(feat), m, (size_t)B * a->classifier_in);
        feat = n->drop_out;
    }
    op_linear_forward(A(n->logits), A(feat), P(n->cls_w), P(n->cls_b), B, a->classifier_in,
                      a->num_classes);
}

/* Inference: every conv with its batch norm (running statistics), activation
 * and residual in one pass (ops.h's *_bn_act_infer), so no pre-normalisation
 * tensor is written. The BN affine is recomputed from the parameters on every
 * call (a few thousand channels, a few microseconds): nothing is cached, so
 * whatever writes the parameters (SGD, weight loading, a caller through
 * ev_net_tensors) is seen at once. The rest is net_forward's eval path. */
static void pw_bn(ev_net *n, const op_ctx *cx, size_t y, const float *x, size_t w, const bn_t *bn,
                  const float *res, int N, int Cin, op_act act)
{
    float sc[bn->c], sh[bn->c];
    op_bn_eval_affine(sc, sh, P(bn->gamma), P(bn->beta), P(bn->rmean), P(bn->rvar), bn->c);
    op_pw_bn_act_infer(cx, A(y), x, P(w), sc, sh, res, N, Cin, bn->c, act);
}

/* Waking a sleeping OpenMP thread (OMP_WAIT_POLICY=passive, as nas and the
 * benchmarks run) costs tens of microseconds a parallel region. Below this
 * much work a call runs on one thread: MobileNetV2-0.5 at 32x32, batch 1
 * (26M MACs), took 3.3-3.9 ms on 2 threads against 0.83 ms on one (bench-ort,
 * AMD EPYC, 2 cores, AVX2 and AVX-512 kernels alike). */
#define INFER_THREADS_MIN_MACS 200e6

static void net_infer(ev_net *n, const float *x, int B)
{
    const space_net *a = &n->arch;
    int T = (double)B * n->macs < INFER_THREADS_MIN_MACS ? 1 : n->threads;
    op_ctx cx = {T, S(n->partial)};
    ops_set_threads(T);
    int hw = a->stem_out_hw;
    {
        /* the stem: im2col, then a pointwise conv over the patches */
        int kk = a->stem_kernel * a->stem_kernel * a->in_ch;
        op_conv_im2col(&cx, S(n->col), x, B, a->resolution, a->resolution, a->in_ch,
                       a->stem_kernel, a->stem_stride);
        pw_bn(n, &cx, n->stem_a, S(n->col), n->stem_w, &n->stem_bn, NULL, B * hw * hw, kk,
              evn_act_of(a->stem_act));
    }
    for (int i = 0; i < a->n_blocks; i++) {
        const blk_t *k = &n->blk[i];
        const space_block *b = k->sb;
        int nin = B * b->in_hw * b->in_hw, nout = B * b->out_hw * b->out_hw, E = b->exp_ch;
        op_act act = evn_act_of(b->act);
        size_t dwin = k->in;
        if (k->expand) {
            pw_bn(n, &cx, k->ea, A(k->in), k->w_exp, &k->bn_exp, NULL, nin, b->in_ch, act);
            dwin = k->ea;
        }
        {
            float sc[E], sh[E];
            const bn_t *bn = &k->bn_dw;
            op_bn_eval_affine(sc, sh, P(bn->gamma), P(bn->beta), P(bn->rmean), P(bn->rvar), E);
            op_dw_bn_act_infer(&cx, A(k->da), A(dwin), P(k->w_dw), sc, sh, B, b->in_hw, b->in_hw, E,
                               b->kernel, b->stride, act);
        }
        size_t pin = b->se_ch > 0 ? se_forward(n, k, B) : k->da;
        pw_bn(n, &cx, k->y, A(pin), k->w_proj, &k->bn_proj, b->residual ? A(k->in) : NULL, nout, E,
              OP_NONE);
    }
    hw = a->head_hw;
    if (a->head_ch > 0) {
        size_t hin = a->n_blocks ? n->blk[a->n_blocks - 1].y : n->stem_a;
        pw_bn(n, &cx, n->head_a, A(hin), n->head_w, &n->head_bn, NULL, B * hw * hw, a->head_in_ch,
              evn_act_of(a->head_act));
    }
    op_pool_forward(A(n->pooled), A(n->pool_in), B, hw * hw, a->pool_ch);
    if (a->fc_ch > 0) {
        op_linear_forward(A(n->fc_z), A(n->pooled), P(n->fc_w), P(n->fc_b), B, a->pool_ch, a->fc_ch);
        op_act_forward(A(n->fc_a), A(n->fc_z), (size_t)B * a->fc_ch, evn_act_of(a->fc_act));
    }
    op_linear_forward(A(n->logits), A(n->feat), P(n->cls_w), P(n->cls_b), B, a->classifier_in,
                      a->num_classes);
}

/* ======================= backward ======================================== */

/* se_forward's pair: du [B, ohw, E] in d becomes d(da) in place; `tmp`, a
 * free gradient buffer, holds d gate [B,E], d s1 [B,S] and d pooled [B,E]. */
static void se_backward(ev_net *n, const blk_t *k, int B, float *d, float *tmp)
{
    const space_net *a = &n->arch;
    const space_block *b = k->sb;
    int ohw = b->out_hw * b->out_hw, E = b->exp_ch;
    float *dgate = tmp, *ds1 = tmp + (((size_t)B * E + 15) & ~(size_t)15);
    float *dsp = ds1 + (((size_t)B * b->se_ch + 15) & ~(size_t)15);
    op_scale_backward(d, dgate, d, A(k->da), A(k->g), B, ohw, E);
    op_act_backward(dgate, dgate, A(k->s2z), (size_t)B * E, gate_of(a->se_gate));
    op_linear_backward(ds1, G(k->se_w2), G(k->se_b2), dgate, A(k->s1a), P(k->se_w2), B, b->se_ch, E);
    op_act_backward(ds1, ds1, A(k->s1z), (size_t)B * b->se_ch, evn_act_of(a->se_act));
    op_linear_backward(dsp, G(k->se_w1), G(k->se_b1), ds1, A(k->sp), P(k->se_w1), B, E, b->se_ch);
    op_pool_backward(d, dsp, B, ohw, E, 1);
}

/* Gradient buffers: cur holds d(block output); f1, f2 are free. Returns the
 * buffer that holds d(block input). */
static int block_backward(ev_net *n, const op_ctx *cx, const blk_t *k, int B, int cur)
{
    const space_block *b = k->sb;
    int f1 = (cur + 1) % 3, f2 = (cur + 2) % 3;
    float *gc = S(n->gbuf[cur]), *g1 = S(n->gbuf[f1]), *g2 = S(n->gbuf[f2]);
    int nin = B * b->in_hw * b->in_hw, nout = B * b->out_hw * b->out_hw, E = b->exp_ch;
    op_act act = evn_act_of(b->act);

    /* project BN (no act): d pz -> g1 */
    memcpy(g1, gc, sizeof(float) * (size_t)nout * b->out_ch);
    bn_bwd(n, cx, &k->bn_proj, g1, k->pz, nout, OP_NONE);
    /* project conv: d(project input) -> g2 */
    size_t pin = b->se_ch > 0 ? k->u : k->da;
    op_pw_backward(cx, g2, G(k->w_proj), g1, A(pin), P(k->w_proj), nout, E, b->out_ch, 0);
    if (b->se_ch > 0)
        se_backward(n, k, B, g2, g1);
    /* depthwise BN + act, in place in g2; then the depthwise conv: d(dw input) -> g1 */
    bn_bwd(n, cx, &k->bn_dw, g2, k->dz, nout, act);
    size_t dwin = k->expand ? k->ea : k->in;
    op_dw_backward(cx, g1, G(k->w_dw), g2, A(dwin), P(k->w_dw), B, b->in_hw, b->in_hw, E,
                   b->kernel, b->stride);
    if (!k->expand) {
        if (b->residual)
            op_add(g1, gc, (size_t)nin * b->in_ch);
        return f1;
    }
    bn_bwd(n, cx, &k->bn_exp, g1, k->ez, nin, act);
    if (b->residual)
        memcpy(g2, gc, sizeof(float) * (size_t)nin * b->in_ch);
    op_pw_backward(cx, g2, G(k->w_exp), g1, A(k->in), P(k->w_exp), nin, b->in_ch, E, b->residual);
    return f2;
}

static void net_backward(ev_net *n, const float *x, int B)
{
    const space_net *a = &n->arch;
    op_ctx cx = {n->threads, S(n->partial)};
    float *g0 = S(n->gbuf[0]), *g1 = S(n->gbuf[1]);
    size_t feat = (a->dropout > 0) ? n->drop_out : n->feat;
    int C = a->classifier_in;

    op_linear_backward(g0, G(n->cls_w), G(n->cls_b), S(n->dlogits), A(feat), P(n->cls_w), B, C,
                       a->num_classes);
    if (a->dropout > 0)
        op_dropout_backward(g0, g0, A(n->drop_mask), (size_t)B * C);
    if (a->fc_ch > 0) {
        op_act_backward(g0, g0, A(n->fc_z), (size_t)B * a->fc_ch, evn_act_of(a->fc_act));
        op_linear_backward(g1, G(n->fc_w), G(n->fc_b), g0, A(n->pooled), P(n->fc_w), B,
                           a->pool_ch, a->fc_ch);
        memcpy(g0, g1, sizeof(float) * (size_t)B * a->pool_ch);
    }
    int hw = a->head_hw;
    int cur = 1;
    op_pool_backward(g1, g0, B, hw * hw, a->pool_ch, 0);
    if (a->head_ch > 0) {
        size_t hin = a->n_blocks ? n->blk[a->n_blocks - 1].y : n->stem_a;
        bn_bwd(n, &cx, &n->head_bn, g1, n->head_z, B * hw * hw, evn_act_of(a->head_act));
        op_pw_backward(&cx, g0, G(n->head_w), g1, A(hin), P(n->head_w), B * hw * hw, a->head_in_ch,
                       a->head_ch, 0);
        cur = 0;
    }
    for (int i = a->n_blocks - 1; i >= 0; i--)
        cur = block_backward(n, &cx, &n->blk[i], B, cur);
    hw = a->stem_out_hw;
    bn_bwd(n, &cx, &n->stem_bn, S(n->gbuf[cur]), n->stem_z, B * hw * hw, evn_act_of(a->stem_act));
    op_conv_backward(&cx, G(n->stem_w), S(n->col), S(n->gbuf[cur]), x, B, a->resolution,
                     a->resolution, a->in_ch, a->stem_ch, a->stem_kernel, a->stem_stride);
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
    net_forward(n, x, B, 1, rng);
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
