/* layers.c — the flat layer list of a resolved net: the one place where the
 * MBConv block (and the stem and head around it) is spelled out op by op.
 *
 * Each op carries its shapes, its kernel, stride and groups, the ops whose
 * outputs it reads, and its multiply-adds and parameters, counted as the
 * published figures count them (MobileNetV2, MnasNet, EfficientNet papers):
 * MACs of convolutions and linear layers, SE linears included; BN,
 * activations, pooling, the SE scale and the residual add are no MACs.
 * Parameters include every bias and BN's scale and shift (not its running
 * statistics, which are buffers). Consumers (cost model, predictor
 * features, evaluator, ONNX export) walk this list instead of the blocks.
 */
#include "space/space.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    space_op *ops;
    int n, first;
    int unit, block;
} unit_b;

/* Appends an op that reads the op appended before it (or `in` when the unit
 * is empty: the previous unit's last op, -1 for the network input). */
static space_op *emit(unit_b *u, space_op_kind kind, const char *name, int cin, int cout, int in_hw,
                      int out_hw)
{
    space_op *o = &u->ops[u->n];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->unit = u->unit;
    o->block = u->block;
    snprintf(o->name, sizeof o->name, "%s", name);
    o->in_ch = cin;
    o->out_ch = cout;
    o->in_hw = in_hw;
    o->out_hw = out_hw;
    o->kernel = o->stride = o->groups = 1;
    o->in = u->first + u->n - 1;
    o->in2 = -1;
    u->n++;
    return o;
}

static void name_of(char *buf, size_t n, const char *prefix, const char *suffix)
{
    snprintf(buf, n, "%s%s", prefix, suffix);
}

/* A kxk conv (groups 1, or depthwise) then its BN, then act when act >= 0. */
static void conv_bn_act(unit_b *u, const char *prefix, int depthwise, int cin, int cout, int in_hw,
                        int out_hw, int k, int stride, int act)
{
    char nm[32];
    space_op *c = emit(u, depthwise ? SPACE_OP_DWCONV : SPACE_OP_CONV, prefix, cin, cout, in_hw, out_hw);
    c->kernel = k;
    c->stride = stride;
    c->groups = depthwise ? cin : 1;
    double per_out = (double)(cin / c->groups) * k * k;
    c->macs = (double)out_hw * out_hw * cout * per_out;
    c->params = per_out * cout;
    name_of(nm, sizeof nm, prefix, ".bn");
    emit(u, SPACE_OP_BN, nm, cout, cout, out_hw, out_hw)->params = 2.0 * cout;
    if (act < 0)
        return;
    name_of(nm, sizeof nm, prefix, ".act");
    emit(u, SPACE_OP_ACT, nm, cout, cout, out_hw, out_hw)->act = (space_act)act;
}

static void linear(unit_b *u, const char *name, int in, int out)
{
    space_op *o = emit(u, SPACE_OP_LINEAR, name, in, out, 1, 1);
    o->macs = (double)in * out;
    o->params = (double)in * out + out;
}

static void stem_ops(const space_net *n, unit_b *u)
{
    conv_bn_act(u, "stem", 0, n->in_ch, n->stem_ch, n->resolution, n->stem_out_hw, n->stem_kernel,
                n->stem_stride, n->stem_act);
}

static void block_ops(const space_net *n, const space_block *b, int i, unit_b *u)
{
    char pre[32];
    int x = u->first - 1;   /* the block's input: the previous unit's last op */
    if (b->exp_ch != b->in_ch) {
        snprintf(pre, sizeof pre, "b%d.expand", i);
        conv_bn_act(u, pre, 0, b->in_ch, b->exp_ch, b->in_hw, b->in_hw, 1, 1, b->act);
    }
    snprintf(pre, sizeof pre, "b%d.dw", i);
    conv_bn_act(u, pre, 1, b->exp_ch, b->exp_ch, b->in_hw, b->out_hw, b->kernel, b->stride, b->act);
    if (b->se_ch > 0) {
        snprintf(pre, sizeof pre, "b%d.se", i);
        space_op *o = emit(u, SPACE_OP_SE, pre, b->exp_ch, b->exp_ch, b->out_hw, b->out_hw);
        o->mid_ch = b->se_ch;
        o->act = n->se_act;
        o->gate = n->se_gate;
        o->macs = 2.0 * b->exp_ch * b->se_ch;
        o->params = 2.0 * b->exp_ch * b->se_ch + b->se_ch + b->exp_ch;
    }
    snprintf(pre, sizeof pre, "b%d.project", i);
    conv_bn_act(u, pre, 0, b->exp_ch, b->out_ch, b->out_hw, b->out_hw, 1, 1, -1);
    if (b->residual) {
        snprintf(pre, sizeof pre, "b%d.add", i);
        emit(u, SPACE_OP_ADD, pre, b->out_ch, b->out_ch, b->out_hw, b->out_hw)->in2 = x;
    }
}

static void head_ops(const space_net *n, unit_b *u)
{
    if (n->head_ch > 0)
        conv_bn_act(u, "head", 0, n->head_in_ch, n->head_ch, n->head_hw, n->head_hw, 1, 1, n->head_act);
    space_op *p = emit(u, SPACE_OP_POOL, "pool", n->pool_ch, n->pool_ch, n->head_hw, 1);
    p->kernel = n->head_hw;
    if (n->fc_ch > 0) {
        linear(u, "fc", n->pool_ch, n->fc_ch);
        emit(u, SPACE_OP_ACT, "fc.act", n->fc_ch, n->fc_ch, 1, 1)->act = n->fc_act;
    }
    if (n->dropout > 0)
        emit(u, SPACE_OP_DROPOUT, "dropout", n->classifier_in, n->classifier_in, 1, 1);
    linear(u, "classifier", n->classifier_in, n->num_classes);
}

int space_unit_count(const space_net *net)
{
    return net->n_blocks + 2;
}

int space_unit_ops(const space_net *net, int unit, int first, space_op *ops)
{
    unit_b u = {ops, 0, first, unit, -1};
    if (unit == 0) {
        stem_ops(net, &u);
    } else if (unit <= net->n_blocks) {
        u.block = unit - 1;
        block_ops(net, &net->blocks[unit - 1], unit - 1, &u);
    } else {
        head_ops(net, &u);
    }
    return u.n;
}

nas_status space_layers_build(const space_net *net, space_layers *out, nas_err *err)
{
    int units = space_unit_count(net);
    out->n = 0;
    out->op = nas_malloc(sizeof(space_op) * (size_t)units * SPACE_UNIT_MAX_OPS);
    if (!out->op)
        return nas_errf(err, NAS_ENOMEM, "layer list: out of memory for %d units", units);
    for (int u = 0; u < units; u++)
        out->n += space_unit_ops(net, u, out->n, out->op + out->n);
    return NAS_OK;
}

void space_layers_free(space_layers *l)
{
    nas_free(l->op);
    l->op = NULL;
    l->n = 0;
}

const char *space_op_kind_name(space_op_kind k)
{
    static const char *const names[] = {"conv", "dwconv", "bn", "act", "se", "add", "pool", "linear",
                                        "dropout"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}
