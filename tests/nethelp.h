/* nethelp.h — resolved networks written by hand for the evaluator's suites, so
 * they test the engine on exactly the block shapes they name. */
#ifndef NETHELP_H
#define NETHELP_H

#include <string.h>
#include "space/space.h"

typedef struct {
    int exp, out, k, s, se;
    space_act act;
} nh_block;

static inline int nh_side(int in, int k, int s) { return space_out_side(in, k, s); }

/* stem: 3x3 with stem_stride; blocks chained from stem_ch; head_ch 0 for none. */
static inline void nh_net(space_net *n, int res, int in_ch, int classes, int stem_ch, int stem_stride,
                          space_act stem_act, const nh_block *b, int nb, int head_ch, int fc_ch,
                          double dropout)
{
    memset(n, 0, sizeof *n);
    n->resolution = res;
    n->in_ch = in_ch;
    n->num_classes = classes;
    n->stem_ch = stem_ch;
    n->stem_kernel = 3;
    n->stem_stride = stem_stride;
    n->stem_out_hw = nh_side(res, 3, stem_stride);
    n->stem_act = stem_act;
    int ch = stem_ch, hw = n->stem_out_hw;
    for (int i = 0; i < nb; i++) {
        space_block *s = &n->blocks[i];
        s->in_ch = ch;
        s->exp_ch = b[i].exp;
        s->out_ch = b[i].out;
        s->kernel = b[i].k;
        s->stride = b[i].s;
        s->se_ch = b[i].se;
        s->act = b[i].act;
        s->residual = b[i].s == 1 && ch == b[i].out;
        s->in_hw = hw;
        s->out_hw = nh_side(hw, b[i].k, b[i].s);
        ch = s->out_ch;
        hw = s->out_hw;
    }
    n->n_blocks = nb;
    n->head_in_ch = ch;
    n->head_hw = hw;
    n->head_ch = head_ch;
    n->head_act = SPACE_ACT_HSWISH;
    n->pool_ch = head_ch > 0 ? head_ch : ch;
    n->fc_ch = fc_ch;
    n->fc_act = SPACE_ACT_HSWISH;
    n->classifier_in = fc_ch > 0 ? fc_ch : n->pool_ch;
    n->se_act = SPACE_ACT_RELU;
    n->se_gate = SPACE_GATE_SIGMOID;
    n->dropout = dropout;
}

/* A preset at half width for 10 classes, its strides adapted to a 32x32
 * input, as bench-ort runs it: a few to a few tens of millions of MACs. */
static inline nas_status nh_preset_32px(const char *name, space_spec *s, nas_err *e)
{
    nas_status st = space_preset(name, s, e);
    if (st != NAS_OK)
        return st;
    s->num_classes = 10;
    space_scale(s, 0.5, 1.0);
    space_adapt_strides(s, 32, 4);
    return NAS_OK;
}
#endif
