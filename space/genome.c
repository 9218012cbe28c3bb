/* genome.c — the searchable encoding: a fixed-length vector of categorical
 * genes, five per template stage (kernel, expansion, repeats, SE, activation)
 * and two global ones (width multiplier, compound-scaling phi).
 *
 * The template is EfficientNet-B0's ladder of stages (channels and strides);
 * phi applies Tan & Le's compound scaling on top of the chosen width. Every
 * genome whose genes are in range maps to a valid spec, so strategies never
 * need to repair or reject what they propose.
 */
#include "space/space.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { G_KERNEL, G_EXPAND, G_REPEATS, G_SE, G_ACT, GENES_PER_STAGE };
#define N_GLOBAL 2
#define TEMPLATE_STAGES 7

static const int tpl_ch[TEMPLATE_STAGES] = {16, 24, 40, 80, 112, 192, 320};
static const int tpl_stride[TEMPLATE_STAGES] = {1, 2, 2, 2, 1, 2, 1};
#define TPL_STEM 32
#define TPL_HEAD 1280

static const int kernels[] = {3, 5, 7};
static const double expands[] = {1, 3, 4, 6};
static const int repeats[] = {1, 2, 3, 4};
static const double ses[] = {0.0, 0.25};
static const space_act acts[] = {SPACE_ACT_RELU6, SPACE_ACT_HSWISH, SPACE_ACT_SWISH};
static const double widths[] = {0.25, 0.35, 0.5, 0.75, 1.0, 1.25};
static const int phis[] = {0, 1, 2};
#define LEN(a) (int)(sizeof(a) / sizeof((a)[0]))

void space_config_default(space_config *c, int resolution, int in_ch, int num_classes)
{
    memset(c, 0, sizeof *c);
    c->resolution = resolution;
    c->in_ch = in_ch;
    c->num_classes = num_classes;
    c->n_stages = TEMPLATE_STAGES;
    c->min_side = 4;
    c->scale_resolution = 0;
    c->max_width = 1.0;
}

static int n_stages(const space_config *c)
{
    return c->n_stages < 1 ? 1 : c->n_stages > TEMPLATE_STAGES ? TEMPLATE_STAGES : c->n_stages;
}

static int n_widths(const space_config *c)
{
    int n = 0;
    while (n < LEN(widths) && widths[n] <= c->max_width + 1e-9)
        n++;
    return n < 1 ? 1 : n;
}

int space_genome_len(const space_config *c) { return n_stages(c) * GENES_PER_STAGE + N_GLOBAL; }

/* Gene i is global when i >= stages * GENES_PER_STAGE: 0 width, 1 phi. */
static int global_index(const space_config *c, int gene) { return gene - n_stages(c) * GENES_PER_STAGE; }

int space_gene_cardinality(const space_config *c, int gene)
{
    int gi = global_index(c, gene);
    if (gi == 0)
        return n_widths(c);
    if (gi == 1)
        return LEN(phis);
    switch (gene % GENES_PER_STAGE) {
    case G_KERNEL:  return LEN(kernels);
    case G_EXPAND:  return LEN(expands);
    case G_REPEATS: return LEN(repeats);
    case G_SE:      return LEN(ses);
    default:        return LEN(acts);
    }
}

const char *space_gene_name(const space_config *c, int gene)
{
    static const char *per[GENES_PER_STAGE] = {"kernel", "expand", "repeats", "se", "act"};
    static char names[SPACE_MAX_GENES][24];   /* filled once; same text for every config */
    int gi = global_index(c, gene);
    if (gi == 0)
        return "width";
    if (gi == 1)
        return "phi";
    if (gene < 0 || gene >= SPACE_MAX_GENES)
        return "?";
    if (!names[gene][0])
        snprintf(names[gene], sizeof names[gene], "stage%d.%s", gene / GENES_PER_STAGE, per[gene % GENES_PER_STAGE]);
    return names[gene];
}

const char *space_gene_choice(const space_config *c, int gene, int v, char *buf, size_t n)
{
    int gi = global_index(c, gene);
    if (v < 0 || v >= space_gene_cardinality(c, gene))
        snprintf(buf, n, "?");
    else if (gi == 0)
        snprintf(buf, n, "%g", widths[v]);
    else if (gi == 1)
        snprintf(buf, n, "%d", phis[v]);
    else switch (gene % GENES_PER_STAGE) {
    case G_KERNEL:  snprintf(buf, n, "%d", kernels[v]); break;
    case G_EXPAND:  snprintf(buf, n, "%g", expands[v]); break;
    case G_REPEATS: snprintf(buf, n, "%d", repeats[v]); break;
    case G_SE:      snprintf(buf, n, "%g", ses[v]); break;
    default:        snprintf(buf, n, "%s", space_act_name(acts[v])); break;
    }
    return buf;
}

nas_status space_genome_check(const space_config *c, const space_genome *g, nas_err *err)
{
    int len = space_genome_len(c);
    if (g->n != len)
        return nas_errf(err, NAS_EINVAL, "genome: %d genes given, this space has %d", g->n, len);
    for (int i = 0; i < len; i++)
        if (g->g[i] >= space_gene_cardinality(c, i))
            return nas_errf(err, NAS_EINVAL, "genome: gene %d (%s) is %d, allowed 0 to %d", i,
                            space_gene_name(c, i), g->g[i], space_gene_cardinality(c, i) - 1);
    return NAS_OK;
}

void space_genome_sample(const space_config *c, nas_pcg32 *rng, space_genome *out)
{
    memset(out, 0, sizeof *out);
    out->n = space_genome_len(c);
    for (int i = 0; i < out->n; i++)
        out->g[i] = (uint8_t)nas_pcg32_bounded(rng, (uint32_t)space_gene_cardinality(c, i));
}

void space_genome_mutate(const space_config *c, nas_pcg32 *rng, space_genome *g, int n_mut)
{
    int mutable[SPACE_MAX_GENES], m = 0;
    for (int i = 0; i < g->n; i++)
        if (space_gene_cardinality(c, i) > 1)
            mutable[m++] = i;
    if (n_mut > m)
        n_mut = m;
    /* Partial Fisher-Yates: n_mut distinct genes. */
    for (int k = 0; k < n_mut; k++) {
        int j = k + (int)nas_pcg32_bounded(rng, (uint32_t)(m - k));
        int t = mutable[k];
        mutable[k] = mutable[j];
        mutable[j] = t;
        int gene = mutable[k], card = space_gene_cardinality(c, gene);
        /* A different value, uniformly among the others. */
        int v = (int)nas_pcg32_bounded(rng, (uint32_t)(card - 1));
        g->g[gene] = (uint8_t)(v >= g->g[gene] ? v + 1 : v);
    }
}

void space_genome_crossover(const space_config *c, nas_pcg32 *rng, const space_genome *a,
                            const space_genome *b, space_genome *child)
{
    *child = *a;
    int ns = n_stages(c);
    for (int s = 0; s < ns; s++) {
        if (nas_pcg32_next(rng) & 1)
            memcpy(child->g + s * GENES_PER_STAGE, b->g + s * GENES_PER_STAGE, GENES_PER_STAGE);
    }
    for (int k = 0; k < N_GLOBAL; k++) {
        int i = ns * GENES_PER_STAGE + k;
        if (nas_pcg32_next(rng) & 1)
            child->g[i] = b->g[i];
    }
}

/* The spec for given globals, before any stage choice is applied. */
static void build(const space_config *c, const space_genome *g, space_spec *s)
{
    int ns = n_stages(c);
    memset(s, 0, sizeof *s);
    s->in_ch = c->in_ch;
    s->num_classes = c->num_classes;
    s->stem_ch = TPL_STEM;
    s->stem_kernel = 3;
    s->stem_stride = 2;
    s->head_ch = TPL_HEAD;
    s->se_base = SPACE_SE_OF_INPUT;
    s->se_act = SPACE_ACT_RELU;
    s->se_gate = SPACE_GATE_SIGMOID;
    s->dropout = 0.1;
    s->n_stages = ns;
    for (int i = 0; i < ns; i++) {
        const uint8_t *sg = g->g + i * GENES_PER_STAGE;
        space_stage *st = &s->stages[i];
        st->kernel = kernels[sg[G_KERNEL]];
        st->expand = expands[sg[G_EXPAND]];
        st->repeats = repeats[sg[G_REPEATS]];
        st->se_ratio = ses[sg[G_SE]];
        st->act = acts[sg[G_ACT]];
        st->out_ch = tpl_ch[i];
        st->stride = tpl_stride[i];
    }
    s->stem_act = s->stages[0].act;
    s->head_act = s->stages[ns - 1].act;
    s->fc_act = s->head_act;
    double w = widths[g->g[ns * GENES_PER_STAGE]];
    int phi = phis[g->g[ns * GENES_PER_STAGE + 1]];
    space_scale(s, w * pow(SPACE_BETA, phi), pow(SPACE_ALPHA, phi));
    int res = c->resolution;
    if (c->scale_resolution)
        res = (int)lround(c->resolution * pow(SPACE_GAMMA, phi));
    space_adapt_strides(s, res, c->min_side);
}

nas_status space_genome_to_spec(const space_config *c, const space_genome *g, space_spec *spec, nas_err *err)
{
    nas_status st = space_genome_check(c, g, err);
    if (st)
        return st;
    build(c, g, spec);
    return space_validate(spec, err);
}

static int index_of_int(const int *a, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v)
            return i;
    return -1;
}

static int index_of_double(const double *a, int n, double v)
{
    for (int i = 0; i < n; i++)
        if (fabs(a[i] - v) < 1e-9)
            return i;
    return -1;
}

static int same_spec(const space_spec *a, const space_spec *b)
{
    if (a->resolution != b->resolution || a->in_ch != b->in_ch || a->num_classes != b->num_classes ||
        a->stem_ch != b->stem_ch || a->stem_stride != b->stem_stride || a->stem_act != b->stem_act ||
        a->head_ch != b->head_ch || a->head_act != b->head_act || a->n_stages != b->n_stages ||
        memcmp(a->exp_ch, b->exp_ch, sizeof a->exp_ch))
        return 0;
    for (int i = 0; i < a->n_stages; i++) {
        const space_stage *x = &a->stages[i], *y = &b->stages[i];
        if (x->kernel != y->kernel || fabs(x->expand - y->expand) > 1e-9 || x->out_ch != y->out_ch ||
            x->repeats != y->repeats || x->stride != y->stride || fabs(x->se_ratio - y->se_ratio) > 1e-9 ||
            x->act != y->act)
            return 0;
    }
    return 1;
}

/* Stage genes are read off directly; repeats and globals are found by trying
 * each global choice and keeping the one that regenerates the spec exactly. */
nas_status space_spec_to_genome(const space_config *c, const space_spec *s, space_genome *g, nas_err *err)
{
    int ns = n_stages(c);
    if (s->n_stages != ns)
        return nas_errf(err, NAS_EINVAL, "spec has %d stages, this space has %d", s->n_stages, ns);
    space_genome t;
    memset(&t, 0, sizeof t);
    t.n = space_genome_len(c);
    for (int i = 0; i < ns; i++) {
        const space_stage *st = &s->stages[i];
        int k = index_of_int(kernels, LEN(kernels), st->kernel);
        int e = index_of_double(expands, LEN(expands), st->expand);
        int se = index_of_double(ses, LEN(ses), st->se_ratio);
        int a = -1;
        for (int j = 0; j < LEN(acts); j++)
            if (acts[j] == st->act)
                a = j;
        if (k < 0 || e < 0 || se < 0 || a < 0)
            return nas_errf(err, NAS_EINVAL, "stages[%d]: a choice outside this space", i);
        uint8_t *sg = t.g + i * GENES_PER_STAGE;
        sg[G_KERNEL] = (uint8_t)k;
        sg[G_EXPAND] = (uint8_t)e;
        sg[G_SE] = (uint8_t)se;
        sg[G_ACT] = (uint8_t)a;
    }
    for (int w = 0; w < n_widths(c); w++) {
        for (int p = 0; p < LEN(phis); p++) {
            t.g[ns * GENES_PER_STAGE] = (uint8_t)w;
            t.g[ns * GENES_PER_STAGE + 1] = (uint8_t)p;
            int ok = 1;
            for (int i = 0; i < ns && ok; i++) {
                int found = -1;
                for (int r = 0; r < LEN(repeats); r++)
                    if ((int)ceil(repeats[r] * pow(SPACE_ALPHA, phis[p]) - 1e-9) == s->stages[i].repeats)
                        found = r;
                ok = found >= 0;
                t.g[i * GENES_PER_STAGE + G_REPEATS] = (uint8_t)(found < 0 ? 0 : found);
            }
            space_spec again;
            if (ok) {
                build(c, &t, &again);
                if (same_spec(&again, s)) {
                    *g = t;
                    return NAS_OK;
                }
            }
        }
    }
    return nas_errf(err, NAS_EINVAL, "spec is not in this search space (no genome produces it)");
}

void space_genome_to_string(const space_genome *g, char *buf, size_t n)
{
    size_t used = 0;
    if (n)
        buf[0] = '\0';
    for (int i = 0; i < g->n && used + 5 < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ".%d" : "%d", g->g[i]);
}

nas_status space_genome_from_string(const char *s, space_genome *g, nas_err *err)
{
    memset(g, 0, sizeof *g);
    const char *p = s;
    while (*p) {
        if (g->n >= SPACE_MAX_GENES)
            return nas_errf(err, NAS_EINVAL, "genome '%s': more than %d genes", s, SPACE_MAX_GENES);
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 255 || (*end && *end != '.') || (*end == '.' && !end[1]))
            return nas_errf(err, NAS_EINVAL, "genome '%s': gene %d is not a number 0..255", s, g->n);
        g->g[g->n++] = (uint8_t)v;
        p = *end ? end + 1 : end;
    }
    if (g->n == 0)
        return nas_errf(err, NAS_EINVAL, "genome: empty");
    return NAS_OK;
}
