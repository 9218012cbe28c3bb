/* presets.c — published networks, built from the papers' tables, at their
 * native ImageNet resolution with 1000 classes. They anchor the cost model:
 * tests check computed params and MACs against the published figures.
 *
 * Sources: Sandler et al. 2018 (MobileNetV2, Table 2); Howard et al. 2019
 * (MobileNetV3, Tables 1 and 2); Tan & Le 2019 (EfficientNet, Table 1 for
 * B0, compound coefficients per variant as released with the paper).
 */
#include "space/space.h"

#include <stdio.h>
#include <string.h>

static void stage(space_spec *s, int k, double e, int c, int n, int st, double se, space_act a)
{
    space_stage *g = &s->stages[s->n_stages++];
    g->kernel = k;
    g->expand = e;
    g->out_ch = c;
    g->repeats = n;
    g->stride = st;
    g->se_ratio = se;
    g->act = a;
}

static void base(space_spec *s, const char *name, int res, int stem, space_act act)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->resolution = res;
    s->in_ch = 3;
    s->num_classes = 1000;
    s->stem_ch = stem;
    s->stem_kernel = 3;
    s->stem_stride = 2;
    s->stem_act = act;
    s->head_act = act;
    s->fc_act = act;
    s->se_act = act;
}

static void mobilenetv2(space_spec *s)
{
    base(s, "mobilenetv2", 224, 32, SPACE_ACT_RELU6);
    const space_act a = SPACE_ACT_RELU6;
    stage(s, 3, 1, 16, 1, 1, 0, a);
    stage(s, 3, 6, 24, 2, 2, 0, a);
    stage(s, 3, 6, 32, 3, 2, 0, a);
    stage(s, 3, 6, 64, 4, 2, 0, a);
    stage(s, 3, 6, 96, 3, 1, 0, a);
    stage(s, 3, 6, 160, 3, 2, 0, a);
    stage(s, 3, 6, 320, 1, 1, 0, a);
    s->head_ch = 1280;
    s->dropout = 0.2;
}

/* MobileNetV3 lists expanded channels per block; as ratios of the block input
 * they are exact (184/80 = 2.3), so one block per stage reproduces the table. */
static void v3_common(space_spec *s)
{
    s->se_base = SPACE_SE_OF_EXPANDED;
    s->se_act = SPACE_ACT_RELU;
    s->se_gate = SPACE_GATE_HSIGMOID;
    s->stem_act = SPACE_ACT_HSWISH;
    s->head_act = SPACE_ACT_HSWISH;
    s->fc_act = SPACE_ACT_HSWISH;
    s->dropout = 0.2;
}

static void mobilenetv3_large(space_spec *s)
{
    base(s, "mobilenetv3-large", 224, 16, SPACE_ACT_HSWISH);
    v3_common(s);
    const space_act R = SPACE_ACT_RELU, H = SPACE_ACT_HSWISH;
    stage(s, 3, 16.0 / 16, 16, 1, 1, 0, R);
    stage(s, 3, 64.0 / 16, 24, 1, 2, 0, R);
    stage(s, 3, 72.0 / 24, 24, 1, 1, 0, R);
    stage(s, 5, 72.0 / 24, 40, 1, 2, 0.25, R);
    stage(s, 5, 120.0 / 40, 40, 2, 1, 0.25, R);
    stage(s, 3, 240.0 / 40, 80, 1, 2, 0, H);
    stage(s, 3, 200.0 / 80, 80, 1, 1, 0, H);
    stage(s, 3, 184.0 / 80, 80, 2, 1, 0, H);
    stage(s, 3, 480.0 / 80, 112, 1, 1, 0.25, H);
    stage(s, 3, 672.0 / 112, 112, 1, 1, 0.25, H);
    stage(s, 5, 672.0 / 112, 160, 1, 2, 0.25, H);
    stage(s, 5, 960.0 / 160, 160, 2, 1, 0.25, H);
    s->head_ch = 960;
    s->fc_ch = 1280;
}

static void mobilenetv3_small(space_spec *s)
{
    base(s, "mobilenetv3-small", 224, 16, SPACE_ACT_HSWISH);
    v3_common(s);
    const space_act R = SPACE_ACT_RELU, H = SPACE_ACT_HSWISH;
    stage(s, 3, 16.0 / 16, 16, 1, 2, 0.25, R);
    stage(s, 3, 72.0 / 16, 24, 1, 2, 0, R);
    stage(s, 3, 88.0 / 24, 24, 1, 1, 0, R);
    stage(s, 5, 96.0 / 24, 40, 1, 2, 0.25, H);
    stage(s, 5, 240.0 / 40, 40, 2, 1, 0.25, H);
    stage(s, 5, 120.0 / 40, 48, 1, 1, 0.25, H);
    stage(s, 5, 144.0 / 48, 48, 1, 1, 0.25, H);
    stage(s, 5, 288.0 / 48, 96, 1, 2, 0.25, H);
    stage(s, 5, 576.0 / 96, 96, 2, 1, 0.25, H);
    s->head_ch = 576;
    s->fc_ch = 1024;
}

/* EfficientNet-B0 (Table 1), then (width, depth, resolution, dropout) per variant. */
static void efficientnet(space_spec *s, int variant)
{
    static const double width[8] = {1.0, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0};
    static const double depth[8] = {1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1};
    static const int res[8] = {224, 240, 260, 300, 380, 456, 528, 600};
    static const double drop[8] = {0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5};
    char name[32];
    snprintf(name, sizeof name, "efficientnet-b%d", variant);
    base(s, name, res[variant], 32, SPACE_ACT_SWISH);
    const space_act a = SPACE_ACT_SWISH;
    stage(s, 3, 1, 16, 1, 1, 0.25, a);
    stage(s, 3, 6, 24, 2, 2, 0.25, a);
    stage(s, 5, 6, 40, 2, 2, 0.25, a);
    stage(s, 3, 6, 80, 3, 2, 0.25, a);
    stage(s, 5, 6, 112, 3, 1, 0.25, a);
    stage(s, 5, 6, 192, 4, 2, 0.25, a);
    stage(s, 3, 6, 320, 1, 1, 0.25, a);
    s->head_ch = 1280;
    s->se_base = SPACE_SE_OF_INPUT;
    s->se_gate = SPACE_GATE_SIGMOID;
    s->dropout = drop[variant];
    space_scale(s, width[variant], depth[variant]);
}

/* Published (params, MACs). Where the paper rounds to two digits, the
 * framework's model table (torchvision 0.14 docs, same architectures) is the
 * precise figure; both are kept, the precise one is tested. */
static const struct {
    const char *name;
    double params, macs;
    const char *source;
} published[] = {
    {"mobilenetv2", 3.47e6, 300e6, "MobileNetV2 paper / TF-slim table: 3.47M params, 300M MACs"},
    {"mobilenetv3-large", 5.48e6, 219e6, "MobileNetV3 paper Table 3: 219M MAdds; torchvision: 5,483,032 params"},
    {"mobilenetv3-small", 2.54e6, 56e6, "MobileNetV3 paper Table 4: 56M MAdds; torchvision: 2,542,856 params"},
    {"efficientnet-b0", 5.29e6, 0.39e9, "EfficientNet paper Table 2: 5.3M, 0.39B FLOPs; torchvision: 5,288,548 params"},
    {"efficientnet-b1", 7.79e6, 0.69e9, "torchvision: 7,794,184 params, 0.69 GFLOPS (paper: 7.8M, 0.70B)"},
    {"efficientnet-b2", 9.11e6, 1.0e9, "paper Table 2: 1.0B FLOPs at 260 (torchvision's 1.09 is at 288); torchvision: 9,109,994 params"},
    {"efficientnet-b3", 12.23e6, 1.83e9, "torchvision: 12,233,232 params, 1.83 GFLOPS (paper: 12M, 1.8B)"},
    {"efficientnet-b4", 19.34e6, 4.39e9, "torchvision: 19,341,616 params, 4.39 GFLOPS (paper: 19M, 4.2B)"},
    {"efficientnet-b5", 30.39e6, 10.27e9, "torchvision: 30,389,784 params, 10.27 GFLOPS (paper: 30M, 9.9B)"},
    {"efficientnet-b6", 43.04e6, 19.07e9, "torchvision: 43,040,704 params, 19.07 GFLOPS (paper: 43M, 19B)"},
    {"efficientnet-b7", 66.35e6, 37.75e9, "torchvision: 66,347,960 params, 37.75 GFLOPS (paper: 66M, 37B)"},
};
#define N_PRESETS (int)(sizeof published / sizeof published[0])

int space_preset_count(void) { return N_PRESETS; }

const char *space_preset_name(int i) { return (i >= 0 && i < N_PRESETS) ? published[i].name : NULL; }

void space_preset_published(int i, double *params, double *macs, const char **source)
{
    *params = published[i].params;
    *macs = published[i].macs;
    *source = published[i].source;
}

nas_status space_preset(const char *name, space_spec *s, nas_err *err)
{
    if (!strcmp(name, "mobilenetv2"))
        mobilenetv2(s);
    else if (!strcmp(name, "mobilenetv3-large"))
        mobilenetv3_large(s);
    else if (!strcmp(name, "mobilenetv3-small"))
        mobilenetv3_small(s);
    else if (!strncmp(name, "efficientnet-b", 14) && name[14] >= '0' && name[14] <= '7' && !name[15])
        efficientnet(s, name[14] - '0');
    else
        return nas_errf(err, NAS_EINVAL,
                        "unknown preset '%s' (mobilenetv2, mobilenetv3-large, mobilenetv3-small, "
                        "efficientnet-b0 ... efficientnet-b7)", name);
    return NAS_OK;
}
