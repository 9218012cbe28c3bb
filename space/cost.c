/* cost.c — multiply-adds, parameters and activation bytes of a resolved net.
 *
 * Counted as the published figures count them (MobileNetV2, MnasNet and
 * EfficientNet papers, torchvision's tables): MACs of convolutions and linear
 * layers, SE linears included; batch norm, activations, pooling and the SE
 * scale are not MACs. Parameters include BN scale and shift (not the running
 * statistics, which are buffers) and every bias.
 */
#include "space/space.h"

#include <stdio.h>
#include <string.h>

#define F32 4.0

typedef struct {
    space_layer *out;
    int max, n;
    space_cost *t;
    double live_extra;   /* bytes held across layers (a block input kept for its residual) */
} acc_t;

static void add(acc_t *a, space_layer_kind kind, int block, const char *name, int cin, int cout,
                int in_hw, int out_hw, int k, int s, double macs, double params)
{
    space_layer L = {0};
    L.kind = kind;
    L.block = block;
    snprintf(L.name, sizeof L.name, "%s", name);
    L.in_ch = cin;
    L.out_ch = cout;
    L.in_hw = in_hw;
    L.out_hw = out_hw;
    L.kernel = k;
    L.stride = s;
    L.macs = macs;
    L.params = params;
    L.in_bytes = F32 * cin * (double)in_hw * in_hw;
    L.out_bytes = F32 * cout * (double)out_hw * out_hw;
    if (kind == SPACE_LAYER_SE)   /* SE reads its map and writes it scaled */
        L.out_bytes = L.in_bytes;
    a->t->macs += macs;
    a->t->params += params;
    a->t->act_bytes_total += L.out_bytes;
    a->t->rw_bytes += L.in_bytes + L.out_bytes + F32 * params;
    double live = L.in_bytes + L.out_bytes + a->live_extra;
    if (live > a->t->act_bytes_peak)
        a->t->act_bytes_peak = live;
    if (kind == SPACE_LAYER_CONV || kind == SPACE_LAYER_DWCONV || kind == SPACE_LAYER_FC ||
        kind == SPACE_LAYER_CLASSIFIER)
        a->t->depth++;
    if (a->out && a->n < a->max)
        a->out[a->n] = L;
    a->n++;
}

/* A kxk conv with BN: weights cin*cout*k*k (per group), BN 2 per output channel. */
static double conv_macs(int cin, int cout, int k, int ohw, int groups)
{
    return (double)ohw * ohw * cout * (cin / groups) * k * k;
}

static void add_block(acc_t *a, const space_block *b, int i)
{
    char nm[32];
    a->live_extra = b->residual ? F32 * b->in_ch * (double)b->in_hw * b->in_hw : 0.0;
    if (b->exp_ch != b->in_ch) {
        snprintf(nm, sizeof nm, "b%d.expand", i);
        add(a, SPACE_LAYER_CONV, i, nm, b->in_ch, b->exp_ch, b->in_hw, b->in_hw, 1, 1,
            conv_macs(b->in_ch, b->exp_ch, 1, b->in_hw, 1), (double)b->in_ch * b->exp_ch + 2.0 * b->exp_ch);
    }
    snprintf(nm, sizeof nm, "b%d.dw", i);
    add(a, SPACE_LAYER_DWCONV, i, nm, b->exp_ch, b->exp_ch, b->in_hw, b->out_hw, b->kernel, b->stride,
        conv_macs(b->exp_ch, b->exp_ch, b->kernel, b->out_hw, b->exp_ch),
        (double)b->exp_ch * b->kernel * b->kernel + 2.0 * b->exp_ch);
    if (b->se_ch > 0) {
        snprintf(nm, sizeof nm, "b%d.se", i);
        double p = 2.0 * b->exp_ch * b->se_ch + b->se_ch + b->exp_ch;
        add(a, SPACE_LAYER_SE, i, nm, b->exp_ch, b->exp_ch, b->out_hw, b->out_hw, 1, 1,
            2.0 * b->exp_ch * b->se_ch, p);
    }
    snprintf(nm, sizeof nm, "b%d.project", i);
    add(a, SPACE_LAYER_CONV, i, nm, b->exp_ch, b->out_ch, b->out_hw, b->out_hw, 1, 1,
        conv_macs(b->exp_ch, b->out_ch, 1, b->out_hw, 1), (double)b->exp_ch * b->out_ch + 2.0 * b->out_ch);
    a->live_extra = 0.0;
}

int space_cost_of(const space_net *n, space_layer *layers, int max_layers, space_cost *total)
{
    space_cost t;
    memset(&t, 0, sizeof t);
    acc_t a = {layers, max_layers, 0, &t, 0.0};
    add(&a, SPACE_LAYER_CONV, -1, "stem", n->in_ch, n->stem_ch, n->resolution, n->stem_out_hw,
        n->stem_kernel, n->stem_stride, conv_macs(n->in_ch, n->stem_ch, n->stem_kernel, n->stem_out_hw, 1),
        (double)n->in_ch * n->stem_ch * n->stem_kernel * n->stem_kernel + 2.0 * n->stem_ch);
    for (int i = 0; i < n->n_blocks; i++)
        add_block(&a, &n->blocks[i], i);
    if (n->head_ch > 0)
        add(&a, SPACE_LAYER_CONV, -1, "head", n->head_in_ch, n->head_ch, n->head_hw, n->head_hw, 1, 1,
            conv_macs(n->head_in_ch, n->head_ch, 1, n->head_hw, 1),
            (double)n->head_in_ch * n->head_ch + 2.0 * n->head_ch);
    add(&a, SPACE_LAYER_POOL, -1, "pool", n->pool_ch, n->pool_ch, n->head_hw, 1, n->head_hw, 1, 0.0, 0.0);
    if (n->fc_ch > 0)
        add(&a, SPACE_LAYER_FC, -1, "fc", n->pool_ch, n->fc_ch, 1, 1, 1, 1, (double)n->pool_ch * n->fc_ch,
            (double)n->pool_ch * n->fc_ch + n->fc_ch);
    add(&a, SPACE_LAYER_CLASSIFIER, -1, "classifier", n->classifier_in, n->num_classes, 1, 1, 1, 1,
        (double)n->classifier_in * n->num_classes,
        (double)n->classifier_in * n->num_classes + n->num_classes);
    t.n_layers = a.n;
    if (total)
        *total = t;
    return a.n;
}
