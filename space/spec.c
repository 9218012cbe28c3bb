/* spec.c — checking a spec and resolving it into blocks.
 *
 * The spec is what a person writes (stages); the net is what the engine
 * builds (blocks with every channel count and map size). Validation happens
 * here once, with messages that name the field and the allowed values, so
 * everything downstream can trust a space_net.
 */
#include "space/space.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *act_names[SPACE_ACT_COUNT] = {"relu", "relu6", "hswish", "swish"};

const char *space_act_name(space_act a)
{
    return (a >= 0 && a < SPACE_ACT_COUNT) ? act_names[a] : "?";
}

int space_act_from_name(const char *s)
{
    for (int i = 0; i < SPACE_ACT_COUNT; i++)
        if (!strcmp(s, act_names[i]))
            return i;
    return -1;
}

int space_make_divisible(double v, int divisor)
{
    int nv = (int)(v + divisor / 2.0) / divisor * divisor;
    if (nv < divisor)
        nv = divisor;
    if (nv < 0.9 * v)   /* rounding down must not lose more than 10% */
        nv += divisor;
    return nv;
}


static int valid_act(space_act a) { return a >= 0 && a < SPACE_ACT_COUNT; }

#define ACTS "relu, relu6, hswish or swish"

static nas_status check_stage(const space_stage *st, int i, nas_err *err)
{
    if (st->kernel != 3 && st->kernel != 5 && st->kernel != 7)
        return nas_errf(err, NAS_EINVAL, "stages[%d].kernel: %d is not allowed (3, 5 or 7)", i, st->kernel);
    if (!(st->expand >= 1.0 && st->expand <= 8.0))
        return nas_errf(err, NAS_EINVAL, "stages[%d].expand: %g is out of range (1 to 8)", i, st->expand);
    if (st->out_ch < 1 || st->out_ch > 4096)
        return nas_errf(err, NAS_EINVAL, "stages[%d].channels: %d is out of range (1 to 4096)", i, st->out_ch);
    if (st->repeats < 1 || st->repeats > 32)
        return nas_errf(err, NAS_EINVAL, "stages[%d].repeats: %d is out of range (1 to 32)", i, st->repeats);
    if (st->stride != 1 && st->stride != 2)
        return nas_errf(err, NAS_EINVAL, "stages[%d].stride: %d is not allowed (1 or 2)", i, st->stride);
    if (!(st->se_ratio >= 0.0 && st->se_ratio <= 1.0))
        return nas_errf(err, NAS_EINVAL, "stages[%d].se: %g is out of range (0 to 1)", i, st->se_ratio);
    if (!valid_act(st->act))
        return nas_errf(err, NAS_EINVAL, "stages[%d].act: not allowed (" ACTS ")", i);
    return NAS_OK;
}

/* The per-block exp_ch overrides (space.h): each 0, or a width from 1 to the
 * derived one that is not the block's input width. */
static nas_status check_exp_overrides(const space_spec *s, int blocks, nas_err *err)
{
    int ch = s->stem_ch, j = 0;
    for (int i = 0; i < s->n_stages; i++) {
        const space_stage *sg = &s->stages[i];
        for (int r = 0; r < sg->repeats; r++, j++) {
            int e = s->exp_ch[j], derived = (int)lround(ch * sg->expand);
            if (e != 0 && derived == ch)
                return nas_errf(err, NAS_EINVAL,
                                "stages[%d].exp_ch[%d]: %d given, but the stage has no expansion (expand %g)", i,
                                r, e, sg->expand);
            if (e != 0 && (e < 1 || e > derived))
                return nas_errf(err, NAS_EINVAL, "stages[%d].exp_ch[%d]: %d is out of range (1 to %d)", i, r, e,
                                derived);
            if (e != 0 && e == ch)
                return nas_errf(err, NAS_EINVAL,
                                "stages[%d].exp_ch[%d]: %d is the block's input width (the expand conv would "
                                "vanish; use expand 1)",
                                i, r, e);
            ch = sg->out_ch;
        }
    }
    for (; j < SPACE_MAX_BLOCKS; j++)
        if (s->exp_ch[j] != 0)
            return nas_errf(err, NAS_EINVAL, "exp_ch: block %d set, but the spec has %d blocks", j, blocks);
    return NAS_OK;
}

nas_status space_validate(const space_spec *s, nas_err *err)
{
    if (s->resolution < 8 || s->resolution > 1024)
        return nas_errf(err, NAS_EINVAL, "resolution: %d is out of range (8 to 1024)", s->resolution);
    if (s->in_ch < 1 || s->in_ch > 4)
        return nas_errf(err, NAS_EINVAL, "in_channels: %d is out of range (1 to 4)", s->in_ch);
    if (s->num_classes < 2 || s->num_classes > 100000)
        return nas_errf(err, NAS_EINVAL, "num_classes: %d is out of range (2 to 100000)", s->num_classes);
    if (s->stem_ch < 1 || s->stem_ch > 4096)
        return nas_errf(err, NAS_EINVAL, "stem.channels: %d is out of range (1 to 4096)", s->stem_ch);
    if (s->stem_kernel != 1 && s->stem_kernel != 3 && s->stem_kernel != 5 && s->stem_kernel != 7)
        return nas_errf(err, NAS_EINVAL, "stem.kernel: %d is not allowed (1, 3, 5 or 7)", s->stem_kernel);
    if (s->stem_stride != 1 && s->stem_stride != 2)
        return nas_errf(err, NAS_EINVAL, "stem.stride: %d is not allowed (1 or 2)", s->stem_stride);
    if (!valid_act(s->stem_act))
        return nas_errf(err, NAS_EINVAL, "stem.act: not allowed (" ACTS ")");
    if (s->n_stages < 1 || s->n_stages > SPACE_MAX_STAGES)
        return nas_errf(err, NAS_EINVAL, "stages: %d stages given (1 to %d allowed)", s->n_stages,
                        SPACE_MAX_STAGES);
    int blocks = 0;
    for (int i = 0; i < s->n_stages; i++) {
        nas_status st = check_stage(&s->stages[i], i, err);
        if (st)
            return st;
        blocks += s->stages[i].repeats;
    }
    if (blocks > SPACE_MAX_BLOCKS)
        return nas_errf(err, NAS_EINVAL, "stages: %d blocks in all (at most %d)", blocks, SPACE_MAX_BLOCKS);
    nas_status est = check_exp_overrides(s, blocks, err);
    if (est)
        return est;
    if (s->head_ch < 0 || s->head_ch > 8192)
        return nas_errf(err, NAS_EINVAL, "head.channels: %d is out of range (0 to 8192)", s->head_ch);
    if (!valid_act(s->head_act))
        return nas_errf(err, NAS_EINVAL, "head.act: not allowed (" ACTS ")");
    if (s->fc_ch < 0 || s->fc_ch > 8192)
        return nas_errf(err, NAS_EINVAL, "fc.channels: %d is out of range (0 to 8192)", s->fc_ch);
    if (!valid_act(s->fc_act))
        return nas_errf(err, NAS_EINVAL, "fc.act: not allowed (" ACTS ")");
    if (s->se_base != SPACE_SE_OF_INPUT && s->se_base != SPACE_SE_OF_EXPANDED)
        return nas_errf(err, NAS_EINVAL, "se.base: not allowed (input or expanded)");
    if (!valid_act(s->se_act))
        return nas_errf(err, NAS_EINVAL, "se.act: not allowed (" ACTS ")");
    if (s->se_gate != SPACE_GATE_SIGMOID && s->se_gate != SPACE_GATE_HSIGMOID)
        return nas_errf(err, NAS_EINVAL, "se.gate: not allowed (sigmoid or hsigmoid)");
    if (!(s->dropout >= 0.0 && s->dropout < 1.0))
        return nas_errf(err, NAS_EINVAL, "dropout: %g is out of range (0 to below 1)", s->dropout);
    return NAS_OK;
}

static int se_channels(const space_spec *s, double ratio, int in_ch, int exp_ch)
{
    if (ratio <= 0.0)
        return 0;
    if (s->se_base == SPACE_SE_OF_EXPANDED)
        return space_make_divisible(floor(exp_ch * ratio), 8);
    int c = (int)floor(in_ch * ratio);
    return c < 1 ? 1 : c;
}

nas_status space_resolve(const space_spec *s, space_net *net, nas_err *err)
{
    nas_status st = space_validate(s, err);
    if (st)
        return st;
    memset(net, 0, sizeof *net);
    net->resolution = s->resolution;
    net->in_ch = s->in_ch;
    net->num_classes = s->num_classes;
    net->stem_ch = s->stem_ch;
    net->stem_kernel = s->stem_kernel;
    net->stem_stride = s->stem_stride;
    net->stem_act = s->stem_act;
    net->stem_out_hw = space_out_side(s->resolution, s->stem_kernel, s->stem_stride);
    net->se_act = s->se_act;
    net->se_gate = s->se_gate;
    net->dropout = s->dropout;

    int ch = s->stem_ch, hw = net->stem_out_hw;
    for (int i = 0; i < s->n_stages; i++) {
        const space_stage *sg = &s->stages[i];
        for (int r = 0; r < sg->repeats; r++) {
            space_block *b = &net->blocks[net->n_blocks++];
            b->in_ch = ch;
            int derived = (int)lround(ch * sg->expand);
            int ov = s->exp_ch[net->n_blocks - 1];
            b->exp_ch = ov ? ov : derived;
            b->out_ch = sg->out_ch;
            b->kernel = sg->kernel;
            b->stride = r == 0 ? sg->stride : 1;
            b->se_ch = se_channels(s, sg->se_ratio, ch, derived);
            b->act = sg->act;
            b->residual = b->stride == 1 && b->in_ch == b->out_ch;
            b->in_hw = hw;
            b->out_hw = space_out_side(hw, b->kernel, b->stride);
            ch = b->out_ch;
            hw = b->out_hw;
        }
    }
    net->head_in_ch = ch;
    net->head_ch = s->head_ch;
    net->head_act = s->head_act;
    net->head_hw = hw;
    net->pool_ch = s->head_ch > 0 ? s->head_ch : ch;
    net->fc_ch = s->fc_ch;
    net->fc_act = s->fc_act;
    net->classifier_in = s->fc_ch > 0 ? s->fc_ch : net->pool_ch;
    return NAS_OK;
}

void space_adapt_strides(space_spec *s, int resolution, int min_side)
{
    if (min_side < 1)
        min_side = 1;
    s->resolution = resolution;
    /* Reductions allowed so that resolution / 2^n stays >= min_side (sides round up). */
    int allowed = 0, side = resolution;
    while ((side + 1) / 2 >= min_side && allowed < 16) {
        side = (side + 1) / 2;
        allowed++;
    }
    int have = (s->stem_stride == 2);
    for (int i = 0; i < s->n_stages; i++)
        have += s->stages[i].stride == 2;
    /* Drop the earliest reductions: late layers keep the receptive field growth
     * that matters for classification, early ones only cost resolution. */
    if (have > allowed && s->stem_stride == 2) {
        s->stem_stride = 1;
        have--;
    }
    for (int i = 0; i < s->n_stages && have > allowed; i++) {
        if (s->stages[i].stride == 2) {
            s->stages[i].stride = 1;
            have--;
        }
    }
}

void space_scale(space_spec *s, double width_mult, double depth_mult)
{
    if (width_mult != 1.0 || depth_mult != 1.0)
        memset(s->exp_ch, 0, sizeof s->exp_ch);
    if (width_mult != 1.0) {
        s->stem_ch = space_make_divisible(s->stem_ch * width_mult, 8);
        for (int i = 0; i < s->n_stages; i++)
            s->stages[i].out_ch = space_make_divisible(s->stages[i].out_ch * width_mult, 8);
        if (s->head_ch > 0)
            s->head_ch = space_make_divisible(s->head_ch * width_mult, 8);
    }
    if (depth_mult != 1.0)
        for (int i = 0; i < s->n_stages; i++)
            s->stages[i].repeats = (int)ceil(s->stages[i].repeats * depth_mult - 1e-9);
}
