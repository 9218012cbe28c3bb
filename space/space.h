/* space.h — what can be searched: MobileNet/EfficientNet-style networks.
 *
 * Three views of one network, each derived from the one before:
 *   genome  a fixed-length vector of categorical choices (what search/ mutates),
 *   spec    stages of MBConv blocks, as a person writes it (JSON on disk),
 *   net     the resolved blocks with every channel count and feature-map size
 *           (what evaluator/ builds and predictor/ reads features from).
 * From the net, one flat layer list (every conv, BN, activation, SE, add,
 * pooling and linear, with shapes and costs) is what the cost model, the
 * predictor's features, the evaluator's layout and the ONNX export walk.
 *
 * space/ depends on nothing of nas but base/. Everything here is pure: no I/O
 * but the JSON file helpers, no global state.
 */
#ifndef SPACE_H
#define SPACE_H

#include "base/nas.h"

typedef enum {
    SPACE_ACT_RELU,     /* MobileNetV3's early blocks and SE squeeze */
    SPACE_ACT_RELU6,    /* MobileNetV2 */
    SPACE_ACT_HSWISH,   /* MobileNetV3: x * relu6(x + 3) / 6 */
    SPACE_ACT_SWISH,    /* EfficientNet: x * sigmoid(x) */
    SPACE_ACT_COUNT
} space_act;

typedef enum {
    SPACE_GATE_SIGMOID,   /* EfficientNet's SE gate */
    SPACE_GATE_HSIGMOID,  /* MobileNetV3's SE gate: relu6(x + 3) / 6 */
} space_gate;

/* How the squeeze width of squeeze-excite is derived from se_ratio. */
typedef enum {
    SPACE_SE_OF_INPUT,     /* EfficientNet: max(1, floor(block_in * ratio)) */
    SPACE_SE_OF_EXPANDED,  /* MobileNetV3: make_divisible(floor(expanded * ratio), 8) */
} space_se_base;

/* A stage: `repeats` MBConv blocks that share kernel, expansion, SE and
 * activation. The first block has `stride` and maps in -> out channels; the
 * others have stride 1 and out -> out, with a residual connection. */
typedef struct {
    int kernel;        /* depthwise kernel: 3, 5 or 7 */
    double expand;     /* expanded = round(in * expand); 1: no expansion conv */
    int out_ch;
    int repeats;       /* >= 1 */
    int stride;        /* 1 or 2 */
    double se_ratio;   /* 0: no squeeze-excite */
    space_act act;
} space_stage;

#define SPACE_MAX_STAGES 16
#define SPACE_MAX_BLOCKS 128
#define SPACE_NAME_MAX 64

typedef struct {
    char name[SPACE_NAME_MAX];   /* preset name, or "" */
    int resolution;              /* input is resolution x resolution */
    int in_ch;                   /* 1 (digits) or 3 (colour) */
    int num_classes;
    int stem_ch, stem_kernel, stem_stride;
    space_act stem_act;
    int n_stages;
    space_stage stages[SPACE_MAX_STAGES];
    int head_ch;                 /* 1x1 conv + BN + act before pooling; 0: none */
    space_act head_act;
    int fc_ch;                   /* MobileNetV3's linear + act after pooling (no BN); 0: none */
    space_act fc_act;
    space_se_base se_base;
    space_act se_act;            /* activation inside the SE squeeze */
    space_gate se_gate;
    double dropout;              /* before the classifier, training only */
    /* Per-block expansion width, by block index over all stages (0: derived,
     * round(in * expand)). What structured pruning writes (evaluator/prune.c):
     * a block's expansion may then be any width from 1 to the derived one but
     * the block's input width (at which the expand conv would vanish); a stage
     * with expand 1 has no expansion to override. The SE squeeze width stays
     * the one the derived width gives, so pruning leaves SE's middle intact.
     * JSON: a stage's "exp_ch": [one per repeat], written only when set. */
    int exp_ch[SPACE_MAX_BLOCKS];
} space_spec;

/* ---- the resolved network ---------------------------------------------- */

/* One MBConv block (or, with exp_ch == in_ch, a depthwise-separable one):
 *   [expand 1x1 conv + BN + act]  (absent when exp_ch == in_ch)
 *   depthwise kxk conv, stride s  + BN + act
 *   [SE: avgpool -> fc(exp->se_ch)+bias -> se_act -> fc(se_ch->exp)+bias -> gate -> scale]
 *   project 1x1 conv + BN (no act)
 *   [+ input, when residual]
 * Convolutions have no bias (BN follows); padding is (k-1)/2. */
typedef struct {
    int in_ch, exp_ch, out_ch;
    int kernel, stride;
    int se_ch;           /* 0: no SE */
    space_act act;
    int residual;        /* stride 1 and in_ch == out_ch */
    int in_hw, out_hw;   /* feature-map side before and after */
} space_block;

typedef struct {
    int resolution, in_ch, num_classes;
    int stem_ch, stem_kernel, stem_stride, stem_out_hw;   /* conv + BN + act */
    space_act stem_act;
    int n_blocks;
    space_block blocks[SPACE_MAX_BLOCKS];
    int head_in_ch, head_ch, head_hw;   /* head_ch 0: none; head_hw is its map side */
    space_act head_act;
    int pool_ch;                         /* channels entering global average pooling */
    int fc_ch;                           /* 0: none */
    space_act fc_act;
    int classifier_in;                   /* fc_ch or pool_ch */
    space_act se_act;
    space_gate se_gate;
    double dropout;
} space_net;

/* Checks every field and resolves the blocks. Errors name the field and the
 * allowed values ("stages[2].kernel: 4 is not allowed (3, 5 or 7)"). */
NAS_MUST_USE nas_status space_resolve(const space_spec *spec, space_net *net, nas_err *err);
NAS_MUST_USE nas_status space_validate(const space_spec *spec, nas_err *err);

/* MobileNet's rounding: nearest multiple of `divisor` (at least divisor),
 * never more than 10% below v. */
int space_make_divisible(double v, int divisor);

/* The output side of a kxk conv with stride s and "same" padding (k-1)/2,
 * ceil(n / s): the one formula the space, the engine, the int8 path and the
 * kernels use. */
static inline int space_out_side(int n, int k, int s) { return (n + 2 * ((k - 1) / 2) - k) / s + 1; }

/* Replaces the resolution and turns the earliest stride-2 layers (stem first)
 * into stride 1 until the map entering the head is at least `min_side`
 * (ImageNet's total stride 32 would take 28x28 to 1x1). */
void space_adapt_strides(space_spec *spec, int resolution, int min_side);

/* ---- the layer list: the one description of a network ----------------- */

/* Every op of a resolved net, in execution order. The MBConv block is spelled
 * out here once; the cost model, the predictor's features, the evaluator and
 * the ONNX export walk this list rather than re-deriving the block. A conv,
 * dwconv or linear layer has no bias unless it is a linear (fc, classifier,
 * SE's linears, which have one); every conv and dwconv is followed by its BN. */
typedef enum {
    SPACE_OP_CONV,      /* dense kxk conv (stem, expand, project, head), no bias */
    SPACE_OP_DWCONV,    /* depthwise kxk conv, groups == channels, no bias */
    SPACE_OP_BN,        /* batch norm of the op before it: scale and shift per channel */
    SPACE_OP_ACT,       /* the activation `act`, elementwise */
    SPACE_OP_SE,        /* squeeze-excite: avgpool, linear(ch->mid)+bias, se_act,
                           linear(mid->ch)+bias, gate, scale of its input */
    SPACE_OP_ADD,       /* residual: output of `in` + output of `in2` */
    SPACE_OP_POOL,      /* global average pooling to 1x1 */
    SPACE_OP_LINEAR,    /* fc or classifier, with bias */
    SPACE_OP_DROPOUT,   /* before the classifier, training only (rate in the net) */
} space_op_kind;

/* Units group ops as the block-level predictor does: unit 0 is the stem,
 * units 1..n_blocks the blocks, unit n_blocks + 1 the head (head conv,
 * pooling, fc, dropout, classifier). */
#define SPACE_UNIT_MAX_OPS 12

typedef struct {
    space_op_kind kind;
    int unit;
    int block;            /* block index, -1 outside blocks */
    char name[32];        /* "stem", "b3.expand", "b3.expand.bn", "b3.dw.act", "b3.se", "b3.add", ... */
    int in_ch, out_ch, in_hw, out_hw;
    int kernel, stride, groups;   /* convs; 1 elsewhere */
    int mid_ch;           /* SE: squeeze width */
    space_act act;        /* ACT: its activation; SE: the squeeze's activation */
    space_gate gate;      /* SE */
    int in, in2;          /* ops whose outputs it reads (-1: the network input; in2 -1: none) */
    double macs;          /* multiply-adds, as the published figures count them */
    double params;        /* weights, biases, BN scale and shift */
} space_op;

/* The ops of one unit, numbered from `first` (their index in the whole list;
 * `in` fields refer to that numbering). Returns how many (<= SPACE_UNIT_MAX_OPS). */
int space_unit_ops(const space_net *net, int unit, int first, space_op *ops);
int space_unit_count(const space_net *net);

typedef struct {
    int n;
    space_op *op;         /* nas_malloc'd */
} space_layers;

/* The whole list, resolved once (outside any training loop). */
NAS_MUST_USE nas_status space_layers_build(const space_net *net, space_layers *out, nas_err *err);
void space_layers_free(space_layers *l);
const char *space_op_kind_name(space_op_kind k);

/* ---- cost model -------------------------------------------------------- */

typedef enum {
    SPACE_LAYER_CONV,      /* stem, expand, project, head */
    SPACE_LAYER_DWCONV,
    SPACE_LAYER_SE,        /* both SE linears together */
    SPACE_LAYER_POOL,
    SPACE_LAYER_FC,        /* MobileNetV3's pre-classifier linear */
    SPACE_LAYER_CLASSIFIER,
} space_layer_kind;

typedef struct {
    space_layer_kind kind;
    int block;             /* index of the block it belongs to, -1 for stem/head/classifier */
    char name[32];         /* "stem", "b3.expand", "b3.dw", "b3.se", "b3.project", "head", ... */
    int in_ch, out_ch, in_hw, out_hw, kernel, stride;
    double macs;           /* multiply-adds */
    double params;         /* weights + biases + BN scale and shift */
    double in_bytes, out_bytes;   /* fp32 activations read and written, batch 1 */
} space_layer;

typedef struct {
    double macs, params;
    double act_bytes_total;   /* all activations written, batch 1, fp32 */
    double act_bytes_peak;    /* largest live set at a layer boundary (block input kept for residuals) */
    double rw_bytes;          /* activations read + written + weights read once */
    int n_layers;
    int depth;                /* layers with weights (convs + linears) */
} space_cost;

/* Fills up to max_layers entries of `layers` (may be NULL) and the totals.
 * Returns the number of layers the net has (which may exceed max_layers). */
int space_cost_of(const space_net *net, space_layer *layers, int max_layers, space_cost *total);

/* ---- presets: published networks at their native ImageNet resolution ---- */

/* mobilenetv2, mobilenetv3-large, mobilenetv3-small, efficientnet-b0 .. -b7 */
NAS_MUST_USE nas_status space_preset(const char *name, space_spec *spec, nas_err *err);
int space_preset_count(void);
const char *space_preset_name(int i);
/* The published figures the cost model is checked against (params, MACs). */
void space_preset_published(int i, double *params, double *macs, const char **source);

/* EfficientNet compound scaling (Tan & Le 2019): depth alpha^phi, width beta^phi,
 * resolution gamma^phi, with alpha = 1.2, beta = 1.1, gamma = 1.15. */
#define SPACE_ALPHA 1.2
#define SPACE_BETA  1.1
#define SPACE_GAMMA 1.15
/* Scales channels (make-divisible by 8) and repeats (rounded up per stage);
 * any exp_ch override is cleared (it belongs to the unscaled widths). */
void space_scale(space_spec *spec, double width_mult, double depth_mult);

/* ---- the genome ---------------------------------------------------------- */

#define SPACE_MAX_GENES 64

typedef struct {
    int n;
    uint8_t g[SPACE_MAX_GENES];
} space_genome;

/* What the genome ranges over: a template of stages (EfficientNet-B0's strides
 * and channel ladder) whose per-stage choices are searched, plus global width
 * and compound-scaling choices. Data shape is fixed by the config. */
typedef struct {
    int resolution, in_ch, num_classes;
    int n_stages;              /* template stages searched, 1..7 */
    int min_side;              /* smallest map before the head (stride adaptation) */
    int scale_resolution;      /* 1: phi also scales the input resolution */
    double max_width;          /* cap on the width multiplier choices */
} space_config;

void space_config_default(space_config *cfg, int resolution, int in_ch, int num_classes);
int  space_genome_len(const space_config *cfg);
int  space_gene_cardinality(const space_config *cfg, int gene);
/* "stage3.kernel", "width", ... (static storage) */
const char *space_gene_name(const space_config *cfg, int gene);
/* The value a gene's choice stands for, as text ("5", "0.25", "swish"). */
const char *space_gene_choice(const space_config *cfg, int gene, int choice, char *buf, size_t n);

void space_genome_sample(const space_config *cfg, nas_pcg32 *rng, space_genome *out);
/* Changes n_mutations distinct genes, each to a different value. */
void space_genome_mutate(const space_config *cfg, nas_pcg32 *rng, space_genome *g, int n_mutations);
/* Uniform over stages: each stage's genes come together from a or b; globals likewise. */
void space_genome_crossover(const space_config *cfg, nas_pcg32 *rng, const space_genome *a,
                            const space_genome *b, space_genome *child);
/* Every genome of the right length with every gene in range yields a valid spec. */
NAS_MUST_USE nas_status space_genome_to_spec(const space_config *cfg, const space_genome *g, space_spec *spec,
                                             nas_err *err);
/* The inverse, for specs that genome_to_spec produced (round trip). */
NAS_MUST_USE nas_status space_spec_to_genome(const space_config *cfg, const space_spec *spec, space_genome *g,
                                             nas_err *err);
NAS_MUST_USE nas_status space_genome_check(const space_config *cfg, const space_genome *g, nas_err *err);
/* "2.0.1.3..." text form, for the run store and logs. */
void space_genome_to_string(const space_genome *g, char *buf, size_t n);
NAS_MUST_USE nas_status space_genome_from_string(const char *s, space_genome *g, nas_err *err);

/* ---- JSON -------------------------------------------------------------- */

/* Returns a nas_malloc'd string. */
char *space_spec_to_json(const space_spec *spec, int pretty);
/* `where` names the source in error messages (a file name, "stdin"). */
NAS_MUST_USE nas_status space_spec_from_json(const char *text, const char *where, space_spec *spec, nas_err *err);
NAS_MUST_USE nas_status space_spec_load(const char *path, space_spec *spec, nas_err *err);
/* A preset name or a JSON file path. */
NAS_MUST_USE nas_status space_spec_from_arg(const char *arg, space_spec *spec, nas_err *err);

const char *space_act_name(space_act a);
int space_act_from_name(const char *s);   /* -1 when unknown */

#endif
