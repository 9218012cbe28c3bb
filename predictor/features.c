/* features.c — the numbers a predictor sees of a network.
 *
 * Two views. Whole-network features are totals and histograms (MACs by kind
 * of op, bytes moved, depth, widths, resolution, kernels, activations).
 * Per-unit features describe one unit of the block-level model (the stem,
 * one MBConv block, or the head with pooling and classifier) the way nn-Meter
 * describes a fused kernel: its input side, channels, kernel, stride,
 * expansion, SE, activation and its own costs.
 *
 * Costs come from walking each unit's ops in the layer list (space/space.h),
 * the same list the cost model walks, so the features cannot drift from it;
 * this file only decides how bytes and kinds of work are grouped.
 */
#include "predictor/pred.h"

#include <math.h>
#include <string.h>

/* One unit's costs, by kind of work. Bytes are fp32 activations at batch 1. */
typedef struct {
    double conv_macs;    /* dense convolutions: stem, expand, project, head */
    double dw_macs;      /* depthwise */
    double lin_macs;     /* SE linears, fc, classifier */
    double params;       /* weights, biases, BN scale and shift */
    double act_bytes;    /* activations read and written by all its layers */
    double in_bytes, out_bytes;
    double exp_bytes;    /* the expanded map entering the depthwise conv */
    int layers;          /* layers with weights, plus pooling */
} unit_cost;

static double bytes_of(int ch, int hw)
{
    return 4.0 * ch * (double)hw * hw;
}

/* One op's share of its unit's costs. Bytes count each op reading its
 * inputs and writing its output, with BN and activation fused into the op
 * before them; SE's pooling reads the map and its scale reads and writes it. */
static void cost_op(const space_op *o, unit_cost *c)
{
    double in = bytes_of(o->in_ch, o->in_hw), out = bytes_of(o->out_ch, o->out_hw);
    c->params += o->params;
    switch (o->kind) {
    case SPACE_OP_CONV:
        c->conv_macs += o->macs;
        c->act_bytes += in + out;
        c->layers++;
        break;
    case SPACE_OP_DWCONV:
        c->dw_macs += o->macs;
        c->act_bytes += in + out;
        c->exp_bytes = in;
        c->layers++;
        break;
    case SPACE_OP_SE:
        c->lin_macs += o->macs;
        c->act_bytes += 3 * out;
        c->layers += 2;
        break;
    case SPACE_OP_ADD:   /* reads both maps, writes one */
        c->act_bytes += 2 * out + in;
        break;
    case SPACE_OP_POOL:
        c->act_bytes += in + out;
        c->layers++;
        break;
    case SPACE_OP_LINEAR:
        c->lin_macs += o->macs;
        c->act_bytes += in + out;
        c->layers++;
        break;
    default:   /* BN, activation, dropout: fused, no bytes of their own */
        break;
    }
}

static void cost_unit(const space_net *n, int unit, unit_cost *c)
{
    space_op ops[SPACE_UNIT_MAX_OPS];
    int k = space_unit_ops(n, unit, 0, ops);
    memset(c, 0, sizeof *c);
    for (int i = 0; i < k; i++)
        cost_op(&ops[i], c);
    c->in_bytes = bytes_of(ops[0].in_ch, ops[0].in_hw);
    c->out_bytes = bytes_of(ops[k - 1].out_ch, ops[k - 1].out_hw);
}

int pred_unit_count(const space_net *net)
{
    return space_unit_count(net);
}

void pred_unit_cost(const space_net *net, int unit, double *macs, double *params)
{
    unit_cost c;
    cost_unit(net, unit, &c);
    *macs = c.conv_macs + c.dw_macs + c.lin_macs;
    *params = c.params;
}

/* ---- per-unit features -------------------------------------------------- */

static const char *const unit_names[PRED_UNIT_NFEAT] = {
    "type", "in_hw", "out_hw", "in_ch", "exp_ch", "out_ch", "kernel", "stride",
    "expansion", "se_ch", "act", "residual", "has_expand", "macs", "conv_macs", "dw_macs",
    "lin_macs", "in_bytes", "out_bytes", "act_bytes", "weight_bytes", "layers", "log_macs",
    "exp_bytes", "position", "dw_out_elems", "net_resolution", "macs_per_byte",
    "wasted_lanes", "tile_loads", "blas_macs", "exp_ch_mod16", "out_ch_mod16",
};

const char *pred_unit_feature_name(int i)
{
    return i >= 0 && i < PRED_UNIT_NFEAT ? unit_names[i] : "?";
}

void pred_unit_features(const space_net *net, int unit, float *f)
{
    unit_cost c;
    cost_unit(net, unit, &c);
    double v[PRED_UNIT_NFEAT] = {0};
    int units = pred_unit_count(net);
    if (unit == 0) {
        v[0] = 0;
        v[1] = net->resolution;
        v[2] = net->stem_out_hw;
        v[3] = net->in_ch;
        v[4] = net->in_ch;
        v[5] = net->stem_ch;
        v[6] = net->stem_kernel;
        v[7] = net->stem_stride;
        v[8] = 1;
        v[10] = net->stem_act;
    } else if (unit <= net->n_blocks) {
        const space_block *b = &net->blocks[unit - 1];
        v[0] = 1;
        v[1] = b->in_hw;
        v[2] = b->out_hw;
        v[3] = b->in_ch;
        v[4] = b->exp_ch;
        v[5] = b->out_ch;
        v[6] = b->kernel;
        v[7] = b->stride;
        v[8] = (double)b->exp_ch / b->in_ch;
        v[9] = b->se_ch;
        v[10] = b->act;
        v[11] = b->residual;
        v[12] = b->exp_ch != b->in_ch;
        v[25] = (double)b->exp_ch * b->out_hw * b->out_hw;
    } else {
        v[0] = 2;
        v[1] = net->head_hw;
        v[2] = 1;
        v[3] = net->head_in_ch;
        v[4] = net->head_ch > 0 ? net->head_ch : net->head_in_ch;
        v[5] = net->num_classes;
        v[6] = 1;
        v[7] = 1;
        v[8] = net->head_in_ch > 0 ? v[4] / net->head_in_ch : 1;
        v[9] = net->fc_ch;
        v[10] = net->head_act;
    }
    double macs = c.conv_macs + c.dw_macs + c.lin_macs;
    v[13] = macs;
    v[14] = c.conv_macs;
    v[15] = c.dw_macs;
    v[16] = c.lin_macs;
    v[17] = c.in_bytes;
    v[18] = c.out_bytes;
    v[19] = c.act_bytes;
    v[20] = 4 * c.params;
    v[21] = c.layers;
    v[22] = log1p(macs);
    v[23] = c.exp_bytes;
    v[24] = units > 1 ? (double)unit / (units - 1) : 0;
    v[26] = net->resolution;
    v[27] = macs / (c.act_bytes + 4 * c.params + 1);
    double p[PRED_NPRIOR];
    pred_unit_prior(net, unit, p);
    v[28] = p[19];
    v[29] = p[20];
    v[30] = p[1];
    v[31] = (int)v[4] % 16;
    v[32] = (int)v[5] % 16;
    for (int i = 0; i < PRED_UNIT_NFEAT; i++)
        f[i] = (float)v[i];
}

/* The prior's additive costs. Each is a count of work of one kind whose time
 * per unit is roughly constant on a given CPU, so a non-negative linear
 * combination is a fair first model of latency. They follow how the built-in
 * engine runs a network (evaluator/ops.c), as nn-Meter follows the kernels a
 * device runs: a 1x1 conv runs on AVX-512 register tiles (8 rows x 48 columns,
 * 16 lanes a vector) up to PW_BLAS_ABOVE weights and through OpenBLAS's packed
 * GEMM above; thin inputs leave the tile loop short and the epilogue dominant;
 * depthwise kernels are specialised per kernel and stride and called per
 * output row; lanes past a channel count that is not a multiple of 16 are
 * wasted; swish's exp costs many times a ReLU6 and runs as a pass of its own.
 * The MAC terms (0..10) add up to the unit's MACs. */
#define PW_BLAS_ABOVE 262144.0   /* evaluator/ops.c PW_FUSED_MAX_W */
static const char *const prior_names[PRED_NPRIOR] = {
    "conv_macs_tile", "conv_macs_blas", "conv_macs_thin", "stem_macs",
    "dw_macs_k3s1", "dw_macs_k3s2", "dw_macs_k5s1", "dw_macs_k5s2", "dw_macs_k7s1", "dw_macs_k7s2",
    "lin_macs", "act_relu_elems", "act_hswish_elems", "act_swish_elems", "se_elems", "residual_elems",
    "act_bytes", "weight_bytes", "layers", "wasted_lanes", "tile_loads", "dw_rows", "fixed",
};

const char *pred_prior_name(int i)
{
    return i >= 0 && i < PRED_NPRIOR ? prior_names[i] : "?";
}

static double ceil16(double c)
{
    return 16 * ceil(c / 16);
}

/* A 1x1 conv of n positions: its MACs by path, wasted lanes and tile loads. */
static void add_conv(double *p, double n, int cin, int cout)
{
    double macs = n * cin * cout;
    if ((double)cin * cout > PW_BLAS_ABOVE) {
        p[1] += macs;
        return;
    }
    p[cin < 32 ? 2 : 0] += macs;
    p[19] += n * cin * (ceil16(cout) - cout);
    /* per tile and input channel: a weight vector per 16 columns, a broadcast per row */
    p[20] += cin * (ceil(n / 8) * ceil16(cout) / 16 + n * ceil(cout / 48.0));
}

static void add_act(double *p, space_act a, double elems)
{
    p[a == SPACE_ACT_SWISH ? 13 : a == SPACE_ACT_HSWISH ? 12 : 11] += elems;
}

/* One op's additive prior terms. The stem (unit 0) is a dense kxk conv run
 * as a GEMM over im2col patches, not on the 1x1 path. */
static void prior_op(const space_op *o, double *p)
{
    double n = (double)o->out_hw * o->out_hw;
    switch (o->kind) {
    case SPACE_OP_CONV:
        if (o->unit == 0) {
            int kk = o->kernel * o->kernel * o->in_ch;
            p[3] = o->macs;
            p[19] += n * kk * (ceil16(o->out_ch) - o->out_ch);
            p[20] += kk * (ceil(n / 8) * ceil16(o->out_ch) / 16 + n * ceil(o->out_ch / 48.0));
        } else {
            add_conv(p, n, o->in_ch, o->out_ch);
        }
        break;
    case SPACE_OP_DWCONV: {
        int k = o->kernel == 7 ? 2 : o->kernel == 5 ? 1 : 0;
        p[4 + 2 * k + (o->stride == 2)] += o->macs;
        p[19] += n * o->kernel * o->kernel * (ceil16(o->out_ch) - o->out_ch);
        p[21] += o->out_hw;
        break;
    }
    case SPACE_OP_ACT:
        add_act(p, o->act, n * o->out_ch);
        break;
    case SPACE_OP_SE:
        p[14] += n * o->out_ch;
        break;
    case SPACE_OP_ADD:
        p[15] += n * o->out_ch;
        break;
    default:
        break;
    }
}

void pred_unit_prior(const space_net *net, int unit, double *p)
{
    unit_cost c;
    cost_unit(net, unit, &c);
    memset(p, 0, sizeof(double) * PRED_NPRIOR);
    space_op ops[SPACE_UNIT_MAX_OPS];
    int k = space_unit_ops(net, unit, 0, ops);
    for (int i = 0; i < k; i++)
        prior_op(&ops[i], p);
    p[10] = c.lin_macs;
    p[16] = c.act_bytes;
    p[17] = 4 * c.params;
    p[18] = c.layers;
    p[PRED_NPRIOR - 1] = 1;
}

/* ---- whole-network features --------------------------------------------- */

static const char *const net_names[PRED_NET_NFEAT] = {
    "macs", "params", "act_bytes_total", "act_bytes_peak", "rw_bytes", "depth", "n_layers",
    "n_blocks", "resolution", "in_ch", "stem_ch", "head_ch", "max_exp_ch", "last_out_ch",
    "n_se", "n_residual", "n_stride2", "k3", "k5", "k7", "act_relu", "act_relu6",
    "act_hswish", "act_swish", "conv_macs", "dw_macs", "lin_macs", "unit_act_bytes",
    "weight_bytes", "log_macs", "mean_expansion", "num_classes", "head_hw", "n_expand",
    "fc_ch", "stem_out_hw", "exp_bytes", "max_unit_act_bytes", "mean_kernel", "log_act_bytes",
    "wasted_lanes", "tile_loads", "blas_macs", "dw_rows",
};

const char *pred_net_feature_name(int i)
{
    return i >= 0 && i < PRED_NET_NFEAT ? net_names[i] : "?";
}

void pred_net_features(const space_net *net, float *f)
{
    double v[PRED_NET_NFEAT] = {0};
    space_cost tot;
    space_cost_of(net, NULL, 0, &tot);
    int units = pred_unit_count(net);
    double max_unit_bytes = 0;
    for (int u = 0; u < units; u++) {
        unit_cost c;
        cost_unit(net, u, &c);
        v[0] += c.conv_macs + c.dw_macs + c.lin_macs;
        v[1] += c.params;
        v[24] += c.conv_macs;
        v[25] += c.dw_macs;
        v[26] += c.lin_macs;
        v[27] += c.act_bytes;
        v[28] += 4 * c.params;
        v[36] += c.exp_bytes;
        if (c.act_bytes > max_unit_bytes)
            max_unit_bytes = c.act_bytes;
        double p[PRED_NPRIOR];
        pred_unit_prior(net, u, p);
        v[40] += p[19];
        v[41] += p[20];
        v[42] += p[1];
        v[43] += p[21];
    }
    v[2] = tot.act_bytes_total;
    v[3] = tot.act_bytes_peak;
    v[4] = tot.rw_bytes;
    v[5] = tot.depth;
    v[6] = tot.n_layers;
    v[7] = net->n_blocks;
    v[8] = net->resolution;
    v[9] = net->in_ch;
    v[10] = net->stem_ch;
    v[11] = net->head_ch;
    double sum_exp = 0, sum_k = 0;
    for (int i = 0; i < net->n_blocks; i++) {
        const space_block *b = &net->blocks[i];
        if (b->exp_ch > v[12])
            v[12] = b->exp_ch;
        v[14] += b->se_ch > 0;
        v[15] += b->residual;
        v[16] += b->stride == 2;
        v[17] += b->kernel == 3;
        v[18] += b->kernel == 5;
        v[19] += b->kernel == 7;
        if (b->act >= 0 && b->act < SPACE_ACT_COUNT)
            v[20 + b->act] += 1;
        v[33] += b->exp_ch != b->in_ch;
        sum_exp += (double)b->exp_ch / b->in_ch;
        sum_k += b->kernel;
    }
    v[13] = net->n_blocks > 0 ? net->blocks[net->n_blocks - 1].out_ch : net->stem_ch;
    v[29] = log1p(v[0]);
    v[30] = net->n_blocks > 0 ? sum_exp / net->n_blocks : 0;
    v[31] = net->num_classes;
    v[32] = net->head_hw;
    v[34] = net->fc_ch;
    v[35] = net->stem_out_hw;
    v[37] = max_unit_bytes;
    v[38] = net->n_blocks > 0 ? sum_k / net->n_blocks : 0;
    v[39] = log1p(v[27]);
    for (int i = 0; i < PRED_NET_NFEAT; i++)
        f[i] = (float)v[i];
}
