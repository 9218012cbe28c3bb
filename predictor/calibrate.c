/* calibrate.c — fit a predictor to the hardware at hand.
 *
 * 1. Sample networks that cover the space: a Latin hypercube over every gene
 *    (each choice dealt out equally often), and for half the samples the
 *    per-stage genes of one kind (all kernels, all repeats, ...) pulled
 *    together toward a stratified level, so the totals (depth, MACs) reach
 *    both ends of their range instead of piling up in the middle as sums of
 *    independent genes do.
 * 2. Measure each through the caller's callback (the evaluator's benchmark,
 *    an external command, or a synthetic function in tests); a measurement
 *    whose latency spread is over max_spread is taken again (disturbed
 *    measurements were a fifth of the data on a real machine and the largest
 *    source of error).
 * 3. Cross-validate the whole-network and the block-level regressor for
 *    latency and energy; keep the more accurate of each.
 * 4. Adaptive rounds: networks whose held-out latency or energy error is over
 *    10% get mutated neighbours measured and added, then step 3 again,
 *    within the sample cap.
 * 5. Fit the kept kinds on everything and record hardware, space and metrics.
 */
#include "predictor/pred_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pred_calib_opts_default(pred_calib_opts *o)
{
    memset(o, 0, sizeof *o);
    space_config_default(&o->space, 28, 1, 10);
    o->samples = 300;
    o->max_samples = 450;
    o->adaptive_rounds = 2;
    o->folds = 5;
    o->seed = 1;
    pred_fit_opts_default(&o->fit);
    o->threads = 1;
    o->max_spread = 0.15;
    o->remeasure = 2;
    snprintf(o->measure, sizeof o->measure, "builtin");
}

/* ---- sampling ----------------------------------------------------------- */

static void shuffle_ints(int *a, int n, nas_pcg32 *rng)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)nas_pcg32_bounded(rng, (uint32_t)i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void pred_sample_stratified(const space_config *cfg, int n, nas_pcg32 *rng, space_genome *out)
{
    int len = space_genome_len(cfg);
    int *col = nas_malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!col) {   /* no memory for the strata: plain sampling still covers the space */
        for (int j = 0; j < n; j++)
            space_genome_sample(cfg, rng, &out[j]);
        return;
    }
    for (int j = 0; j < n; j++) {
        memset(&out[j], 0, sizeof out[j]);
        out[j].n = len;
    }
    /* Latin hypercube over every gene */
    for (int i = 0; i < len; i++) {
        int card = space_gene_cardinality(cfg, i);
        for (int j = 0; j < n; j++)
            col[j] = j % card;
        shuffle_ints(col, n, rng);
        for (int j = 0; j < n; j++)
            out[j].g[i] = (uint8_t)col[j];
    }
    /* Correlated half: per kind of stage gene ("kernel", "repeats", ...), a
     * stratified level per sample that all stages of that kind follow with
     * some jitter. Kinds are told apart by the gene's name after the dot. */
    char kinds[16][24];
    int n_kinds = 0;
    for (int i = 0; i < len; i++) {
        const char *dot = strchr(space_gene_name(cfg, i), '.');
        if (!dot)
            continue;   /* a global gene: the hypercube is all it needs */
        int k = 0;
        while (k < n_kinds && strcmp(kinds[k], dot + 1) != 0)
            k++;
        if (k == n_kinds && n_kinds < 16)
            snprintf(kinds[n_kinds++], sizeof kinds[0], "%s", dot + 1);
    }
    int n_corr = n / 2;
    for (int k = 0; k < n_kinds; k++) {
        for (int j = 0; j < n_corr; j++)
            col[j] = j;
        shuffle_ints(col, n_corr, rng);
        for (int j = 0; j < n_corr; j++) {
            double level = (col[j] + nas_pcg32_double(rng)) / n_corr;
            for (int i = 0; i < len; i++) {
                const char *dot = strchr(space_gene_name(cfg, i), '.');
                if (!dot || strcmp(dot + 1, kinds[k]) != 0)
                    continue;
                int card = space_gene_cardinality(cfg, i);
                double x = level + (nas_pcg32_double(rng) - 0.5) * 0.5;
                int c = (int)floor(x * card);
                out[j].g[i] = (uint8_t)(c < 0 ? 0 : c >= card ? card - 1 : c);
            }
        }
    }
    nas_free(col);
}

/* ---- the calibration ---------------------------------------------------- */

typedef struct {
    int n, cap;
    space_genome *g;
    double *lat, *en;            /* what the models fit: raw, or normalised by the reference */
    double *lat_raw, *en_raw;    /* as measured */
    double *refm;                /* reference latency around each measurement (0: no reference) */
    double *lat_spread, *en_spread, *macs;
    pred_dataset d;
    /* the reference network, measured between networks when o->reference */
    space_spec ref_spec;
    space_net ref_net;
    double ref_last;             /* the latest reference measurement, 0 before the first */
    double *refs;                /* every reference measurement */
    int n_refs, refs_cap;
} samples_t;

static void samples_free(samples_t *s)
{
    nas_free(s->g);
    nas_free(s->lat);
    nas_free(s->en);
    nas_free(s->lat_spread);
    nas_free(s->en_spread);
    nas_free(s->lat_raw);
    nas_free(s->en_raw);
    nas_free(s->refm);
    nas_free(s->refs);
    nas_free(s->macs);
    pred_dataset_free(&s->d);
}

static int samples_reserve(samples_t *s, int cap)
{
    if (cap <= s->cap)
        return 0;
    void *p;
#define GROW(field, type)                                                \
    if (!(p = nas_realloc(s->field, sizeof(type) * (size_t)cap)))        \
        return -1;                                                       \
    s->field = p;
    GROW(g, space_genome)
    GROW(lat, double)
    GROW(en, double)
    GROW(lat_spread, double)
    GROW(lat_raw, double)
    GROW(en_raw, double)
    GROW(refm, double)
    GROW(en_spread, double)
    GROW(macs, double)
#undef GROW
    s->cap = cap;
    return 0;
}

static int seen(const samples_t *s, const space_genome *g)
{
    for (int i = 0; i < s->n; i++)
        if (s->g[i].n == g->n && memcmp(s->g[i].g, g->g, (size_t)g->n) == 0)
            return 1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    if (n <= 0)
        return 0;
    double *c = nas_malloc(sizeof(double) * (size_t)n);
    if (!c)
        return 0;
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    nas_free(c);
    return m;
}

/* Measures the reference network once more into s->ref_last. */
static nas_status measure_reference(const pred_calib_opts *o, pred_measure_fn fn, void *ctx, samples_t *s,
                                    int *remeasured, nas_err *err)
{
    pred_measurement m;
    memset(&m, 0, sizeof m);
    nas_status st = fn(ctx, &s->ref_spec, &s->ref_net, &m, err);
    for (int again = 0; st == NAS_OK && again < o->remeasure && o->max_spread > 0 &&
                        m.latency_spread > o->max_spread; again++) {
        pred_measurement m2;
        memset(&m2, 0, sizeof m2);
        st = fn(ctx, &s->ref_spec, &s->ref_net, &m2, err);
        (*remeasured)++;
        if (st == NAS_OK && m2.latency_spread < m.latency_spread)
            m = m2;
    }
    if (st != NAS_OK)
        return nas_errctx(err, "calibration: the reference network");
    if (!(m.latency_ms > 0) || !isfinite(m.latency_ms))
        return nas_errf(err, NAS_EINVAL, "calibration: the reference network measured %g ms", m.latency_ms);
    if (s->n_refs == s->refs_cap) {
        int cap = s->refs_cap ? 2 * s->refs_cap : 256;
        double *r = nas_realloc(s->refs, sizeof(double) * (size_t)cap);
        if (!r)
            return nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
        s->refs = r;
        s->refs_cap = cap;
    }
    s->refs[s->n_refs++] = m.latency_ms;
    s->ref_last = m.latency_ms;
    return NAS_OK;
}

/* The targets the models fit. With a reference, each measurement is scaled
 * by (median reference) / (reference around it): a machine that runs slower
 * for a while (a neighbour on the host, a frequency change) slows the
 * reference alike, and the ratio cancels it. */
static void apply_reference(samples_t *s)
{
    double r = s->n_refs > 0 ? median(s->refs, s->n_refs) : 0;
    for (int i = 0; i < s->n; i++) {
        double f = s->refm[i] > 0 && r > 0 ? r / s->refm[i] : 1.0;
        s->lat[i] = s->lat_raw[i] * f;
        s->en[i] = s->en_raw[i] * f;
    }
}

/* How far a measurement is from a steady one, in units of its tolerance:
 * <= 1 is steady. Spread: the benchmark's own (p90-p10)/median. With a
 * reference: how much the machine's speed changed across the measurement
 * (reference after / before) and how much slower than usual it ran
 * (reference around it / median of all references so far). */
static double unsteadiness(const pred_calib_opts *o, const samples_t *s, const pred_measurement *m,
                           double before, double after, double usual, double usual_spread)
{
    /* a machine whose every measurement is wide gets its outliers taken again, not all of them */
    double max_spread = o->max_spread > 2 * usual_spread ? o->max_spread : 2 * usual_spread;
    double bad = o->max_spread > 0 ? m->latency_spread / max_spread : 0;
    if (o->reference && before > 0 && after > 0) {
        const double tol = log(1.10);
        double change = fabs(log(after / before)) / tol;
        double slow = usual > 0 && s->n_refs >= 5 ? log(sqrt(before * after) / usual) / tol : 0;
        if (change > bad)
            bad = change;
        if (slow > bad)
            bad = slow;
    }
    return bad;
}

/* Measures one network (with the references around it). An unsteady
 * measurement is taken again, up to o->remeasure more times, and the
 * steadiest attempt is kept: on a shared machine the reference showed
 * stretches at half speed, and networks measured across their edges are the
 * ones that no correction saves. */
static nas_status measure_one(const pred_calib_opts *o, pred_measure_fn fn, void *ctx, samples_t *s,
                              const space_spec *spec, const space_net *net, pred_measurement *best,
                              double *best_refm, int *remeasured, nas_err *err)
{
    nas_status st = NAS_OK;
    double best_bad = INFINITY;
    double usual_spread = s->n >= 10 ? median(s->lat_spread, s->n) : 0;
    *best_refm = 0;
    for (int attempt = 0; attempt <= o->remeasure; attempt++) {
        double before = 0, after = 0, usual = 0;
        if (o->reference) {
            if (s->ref_last == 0 && (st = measure_reference(o, fn, ctx, s, remeasured, err)) != NAS_OK)
                return st;
            before = s->ref_last;
            usual = median(s->refs, s->n_refs);
        }
        pred_measurement m;
        memset(&m, 0, sizeof m);
        if ((st = fn(ctx, spec, net, &m, err)) != NAS_OK)
            return st;
        if (!(m.latency_ms > 0) || !(m.energy_mj > 0) || !isfinite(m.latency_ms) || !isfinite(m.energy_mj))
            return nas_errf(err, NAS_EINVAL, "measured latency %g ms, energy %g mJ: both must be positive",
                            m.latency_ms, m.energy_mj);
        if (o->reference) {
            /* the reference after this network is the one before the next */
            if ((st = measure_reference(o, fn, ctx, s, remeasured, err)) != NAS_OK)
                return st;
            after = s->ref_last;
        }
        if (attempt > 0)
            (*remeasured)++;
        double bad = unsteadiness(o, s, &m, before, after, usual, usual_spread);
        if (bad < best_bad) {
            best_bad = bad;
            *best = m;
            *best_refm = o->reference ? sqrt(before * after) : 0;
        }
        if (bad <= 1)
            break;
    }
    return NAS_OK;
}

/* Measures genomes and appends them; duplicates of measured ones are skipped. */
static nas_status measure_batch(const pred_calib_opts *o, pred_measure_fn fn, void *ctx, samples_t *s,
                                const space_genome *gs, int ng, char *quality, char *source, int *remeasured,
                                nas_err *err)
{
    if (samples_reserve(s, s->n + ng) != 0)
        return nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
    for (int j = 0; j < ng; j++) {
        if (o->progress)
            o->progress(o->progress_ctx, "measure", j, ng);
        if (seen(s, &gs[j]))
            continue;
        space_spec spec;
        space_net net;
        pred_measurement m;
        char gtxt[256];
        space_genome_to_string(&gs[j], gtxt, sizeof gtxt);
        nas_status st = space_genome_to_spec(&o->space, &gs[j], &spec, err);
        if (st == NAS_OK)
            st = space_resolve(&spec, &net, err);
        double refm = 0;
        if (st == NAS_OK)
            st = measure_one(o, fn, ctx, s, &spec, &net, &m, &refm, remeasured, err);
        if (st != NAS_OK)
            return nas_errctx(err, "calibration: network %s", gtxt);
        if (!quality[0]) {
            snprintf(quality, 16, "%s", m.energy_quality[0] ? m.energy_quality : "estimated");
            snprintf(source, 64, "%s", m.energy_source[0] ? m.energy_source : "unknown");
        } else if (m.energy_quality[0] && strcmp(quality, m.energy_quality) != 0) {
            /* mixed qualities: the predictor is only as good as the worst */
            static const char *const order[] = {"measured", "sampled", "estimated"};
            int a = 0, b = 0;
            for (int q = 0; q < 3; q++) {
                if (!strcmp(quality, order[q])) a = q;
                if (!strcmp(m.energy_quality, order[q])) b = q;
            }
            snprintf(quality, 16, "%s", order[a > b ? a : b]);
        }
        st = pred_dataset_add(&s->d, &net, err);
        if (st != NAS_OK)
            return st;
        space_cost c;
        space_cost_of(&net, NULL, 0, &c);
        int i = s->n++;
        s->g[i] = gs[j];
        s->lat[i] = s->lat_raw[i] = m.latency_ms;
        s->en[i] = s->en_raw[i] = m.energy_mj;
        s->refm[i] = refm;
        s->lat_spread[i] = m.latency_spread;
        s->en_spread[i] = m.energy_spread;
        s->macs[i] = c.macs;
    }
    apply_reference(s);
    if (o->progress)
        o->progress(o->progress_ctx, "measure", ng, ng);
    return NAS_OK;
}

/* A kind is kept when it has more networks within 10%; MAPE breaks ties. */
static pred_kind better(const pred_metrics *cv)
{
    const pred_metrics *a = &cv[PRED_KIND_NET], *b = &cv[PRED_KIND_BLOCK];
    if (b->within10 > a->within10 + 1e-9)
        return PRED_KIND_BLOCK;
    if (a->within10 > b->within10 + 1e-9)
        return PRED_KIND_NET;
    return b->mape < a->mape ? PRED_KIND_BLOCK : PRED_KIND_NET;
}

nas_status pred_calibrate(const pred_calib_opts *o, pred_measure_fn measure, void *ctx,
                          pred_model **out, pred_calib_report *rep, nas_err *err)
{
    nas_status st = NAS_OK;
    samples_t s;
    memset(&s, 0, sizeof s);
    pred_dataset_init(&s.d);
    space_genome *gs = NULL;
    double *oof[2][2] = {{NULL, NULL}, {NULL, NULL}};
    double *worst = NULL;
    int *order = NULL;
    pred_model *m = NULL;
    char quality[16] = "", source[64] = "";
    *out = NULL;
    memset(rep, 0, sizeof *rep);

    if (o->folds < 2)
        return nas_errf(err, NAS_EINVAL, "calibration: folds %d: need at least 2", o->folds);
    if (o->samples < 4 * o->folds)
        return nas_errf(err, NAS_EINVAL, "calibration: %d samples are too few for %d-fold cross-validation "
                        "(need at least %d)", o->samples, o->folds, 4 * o->folds);
    int cap = o->max_samples > o->samples ? o->max_samples : o->samples;
    gs = nas_malloc(sizeof(space_genome) * (size_t)cap);
    worst = nas_malloc(sizeof(double) * (size_t)cap);
    order = nas_malloc(sizeof(int) * (size_t)cap);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++)
            oof[t][k] = nas_malloc(sizeof(double) * (size_t)cap);
    if (!gs || !worst || !order || !oof[0][0] || !oof[0][1] || !oof[1][0] || !oof[1][1]) {
        st = nas_errf(err, NAS_ENOMEM, "calibration: out of memory for %d samples", cap);
        goto cleanup;
    }

    nas_pcg32 rng;
    nas_pcg32_seed(&rng, o->seed, 0x63616c6962ULL);   /* "calib" */
    pred_sample_stratified(&o->space, o->samples, &rng, gs);
    if (o->reference) {
        /* the middle of the space: every gene at its middle choice */
        space_genome ref;
        memset(&ref, 0, sizeof ref);
        ref.n = space_genome_len(&o->space);
        for (int i = 0; i < ref.n; i++)
            ref.g[i] = (uint8_t)(space_gene_cardinality(&o->space, i) / 2);
        st = space_genome_to_spec(&o->space, &ref, &s.ref_spec, err);
        if (st == NAS_OK)
            st = space_resolve(&s.ref_spec, &s.ref_net, err);
        if (st != NAS_OK)
            goto cleanup;
    }
    double t0 = nas_now();
    st = measure_batch(o, measure, ctx, &s, gs, o->samples, quality, source, &rep->remeasured, err);
    rep->measure_seconds += nas_now() - t0;
    if (st != NAS_OK)
        goto cleanup;

    for (int round = 0;; round++) {
        const double *ys[2] = {s.lat, s.en};
        t0 = nas_now();
        for (int t = 0; t < 2; t++) {
            for (int k = 0; k < 2; k++) {
                if (o->progress)
                    o->progress(o->progress_ctx, "fit", 2 * t + k, 4);
                st = pred_crossval(&s.d, ys[t], (pred_kind)k, o->folds, &o->fit, oof[t][k], &rep->cv[t][k], err);
                if (st != NAS_OK) {
                    nas_errctx(err, "calibration: %s", t ? "energy" : "latency");
                    goto cleanup;
                }
            }
            rep->kept[t] = better(rep->cv[t]);
        }
        rep->fit_seconds += nas_now() - t0;
        rep->rounds = round + 1;
        if (round >= o->adaptive_rounds || s.n >= cap)
            break;
        /* networks whose held-out error (of the kept kind) is over 10% */
        int nbad = 0;
        for (int i = 0; i < s.n; i++) {
            double el = fabs(oof[0][rep->kept[0]][i] / s.lat[i] - 1);
            double ee = fabs(oof[1][rep->kept[1]][i] / s.en[i] - 1);
            worst[i] = el > ee ? el : ee;
            if (worst[i] > 0.10)
                order[nbad++] = i;
        }
        if (nbad == 0)
            break;
        /* worst first */
        for (int a = 1; a < nbad; a++)
            for (int b = a; b > 0 && worst[order[b]] > worst[order[b - 1]]; b--) {
                int tmp = order[b];
                order[b] = order[b - 1];
                order[b - 1] = tmp;
            }
        int want = 2 * nbad;
        if (want > cap - s.n)
            want = cap - s.n;
        for (int j = 0; j < want; j++) {
            gs[j] = s.g[order[j % nbad]];
            space_genome_mutate(&o->space, &rng, &gs[j], 1 + (int)nas_pcg32_bounded(&rng, 2));
        }
        int before = s.n;
        t0 = nas_now();
        st = measure_batch(o, measure, ctx, &s, gs, want, quality, source, &rep->remeasured, err);
        rep->measure_seconds += nas_now() - t0;
        if (st != NAS_OK)
            goto cleanup;
        rep->adaptive_added += s.n - before;
        if (s.n == before)
            break;
    }

    m = pred_model_new();
    if (!m) {
        st = nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
        goto cleanup;
    }
    t0 = nas_now();
    const double *ys[2] = {s.lat, s.en};
    for (int t = 0; t < 2; t++) {
        st = pred_regressor_fit(&s.d, ys[t], NULL, s.n, rep->kept[t], &o->fit, &m->target[t].reg, err);
        if (st != NAS_OK) {
            nas_errctx(err, "calibration: fitting %s", t ? "energy" : "latency");
            goto cleanup;
        }
        m->target[t].cv[0] = rep->cv[t][0];
        m->target[t].cv[1] = rep->cv[t][1];
    }
    rep->fit_seconds += nas_now() - t0;
    rep->samples = s.n;
    rep->median_latency_spread = median(s.lat_spread, s.n);
    rep->median_energy_spread = median(s.en_spread, s.n);
    if (s.n_refs > 0) {
        qsort(s.refs, (size_t)s.n_refs, sizeof(double), cmp_double);
        rep->reference_ms = median(s.refs, s.n_refs);
        rep->reference_drift = (s.refs[(int)(0.9 * (s.n_refs - 1))] - s.refs[(int)(0.1 * (s.n_refs - 1))]) /
                               rep->reference_ms;
        rep->references = s.n_refs;
    }

    pred_hw_here(&m->hw, o->threads, source, o->measure);
    m->space = o->space;
    m->samples = s.n;
    m->macs_min = INFINITY;
    m->macs_max = 0;
    for (int i = 0; i < s.n; i++) {
        if (s.macs[i] < m->macs_min)
            m->macs_min = s.macs[i];
        if (s.macs[i] > m->macs_max)
            m->macs_max = s.macs[i];
    }
    snprintf(m->energy_quality, sizeof m->energy_quality, "%s", quality);
    snprintf(m->energy_source, sizeof m->energy_source, "%s", source);
    m->latency_spread = rep->median_latency_spread;
    m->energy_spread = rep->median_energy_spread;
    m->reference_ms = rep->reference_ms;
    m->reference_drift = rep->reference_drift;
    *out = m;
    m = NULL;
cleanup:
    pred_free(m);
    samples_free(&s);
    nas_free(gs);
    nas_free(worst);
    nas_free(order);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++)
            nas_free(oof[t][k]);
    return st;
}
