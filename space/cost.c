/* cost.c — multiply-adds, parameters and activation bytes of a resolved net.
 *
 * A walk of the layer list (layers.c, where each op's MACs and parameters
 * are counted as the published figures count them), grouped into one row per
 * layer with weights, its BN folded in; this file adds the activation-bytes
 * model (sizes written, peak live set, bytes moved).
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

/* A row of the table is a layer with weights (or the pooling) and the BN
 * that follows it: activations, adds and dropout are folded into it. */
static int starts_row(space_op_kind k)
{
    return k == SPACE_OP_CONV || k == SPACE_OP_DWCONV || k == SPACE_OP_SE || k == SPACE_OP_POOL ||
           k == SPACE_OP_LINEAR;
}

static space_layer_kind row_kind(const space_op *o, int last)
{
    switch (o->kind) {
    case SPACE_OP_CONV:   return SPACE_LAYER_CONV;
    case SPACE_OP_DWCONV: return SPACE_LAYER_DWCONV;
    case SPACE_OP_SE:     return SPACE_LAYER_SE;
    case SPACE_OP_POOL:   return SPACE_LAYER_POOL;
    default:              return last ? SPACE_LAYER_CLASSIFIER : SPACE_LAYER_FC;
    }
}

/* One unit's rows; `last_unit` marks the head, whose last linear is the classifier. */
static void add_unit(acc_t *a, const space_op *ops, int n, int last_unit)
{
    a->live_extra = 0.0;
    for (int i = 0; i < n; i++)
        if (ops[i].kind == SPACE_OP_ADD)   /* the block input stays live for its residual */
            a->live_extra = F32 * ops[i].out_ch * (double)ops[i].out_hw * ops[i].out_hw;
    for (int i = 0; i < n; i++) {
        const space_op *o = &ops[i];
        if (!starts_row(o->kind))
            continue;
        double params = o->params;
        if (i + 1 < n && ops[i + 1].kind == SPACE_OP_BN)
            params += ops[i + 1].params;
        add(a, row_kind(o, last_unit && i == n - 1), o->block, o->name, o->in_ch, o->out_ch, o->in_hw,
            o->out_hw, o->kernel, o->stride, o->macs, params);
    }
    a->live_extra = 0.0;
}

int space_cost_of(const space_net *n, space_layer *layers, int max_layers, space_cost *total)
{
    space_cost t;
    memset(&t, 0, sizeof t);
    acc_t a = {layers, max_layers, 0, &t, 0.0};
    space_op ops[SPACE_UNIT_MAX_OPS];
    int units = space_unit_count(n), first = 0;
    for (int u = 0; u < units; u++) {
        int k = space_unit_ops(n, u, first, ops);
        add_unit(&a, ops, k, u == units - 1);
        first += k;
    }
    t.n_layers = a.n;
    if (total)
        *total = t;
    return a.n;
}
