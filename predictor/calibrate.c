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
    o->passes = 1;
    o->max_failed = 0.1;
    snprintf(o->measure, sizeof o->measure, "builtin");
    snprintf(o->latency_stat, sizeof o->latency_stat, "median");
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
    pred_sample *row;
    double *lat, *en;            /* what the models fit (row[i].latency_ms, .energy_mj), as arrays */
    double *macs;
    pred_dataset d;
    /* the reference network, measured between networks when o->reference */
    space_spec ref_spec;
    space_net ref_net;
    double ref_last;             /* the latest reference measurement, 0 before the first */
    double *refs;                /* every reference measurement */
    int n_refs, refs_cap;
    int attempted, failed;       /* networks whose measuring was tried, and failed */
} samples_t;

static void samples_free(samples_t *s)
{
    nas_free(s->row);
    nas_free(s->lat);
    nas_free(s->en);
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
    GROW(row, pred_sample)
    GROW(lat, double)
    GROW(en, double)
    GROW(macs, double)
#undef GROW
    s->cap = cap;
    return 0;
}

static int seen(const samples_t *s, const space_genome *g)
{
    for (int i = 0; i < s->n; i++)
        if (s->row[i].genome.n == g->n && memcmp(s->row[i].genome.g, g->g, (size_t)g->n) == 0)
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

static double min_of(const double *v, int n)
{
    double m = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++)
        m = fmin(m, v[i]);
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

/* The targets the models fit: per pass, with a reference, the measurement
 * scaled by (median reference) / (reference around it) (a machine that runs
 * slower for a while slows the reference alike, and the ratio cancels it);
 * then the fastest pass. Neighbours only ever slow a measurement down, so the
 * fastest of measurements minutes apart is the network's own speed; the
 * measurement noise proper is a percent or two (test-retest), so taking the
 * smallest of two or three biases it by well under that. */
static void row_target(pred_sample *r, double ref_median)
{
    double l[PRED_MAX_PASSES], e[PRED_MAX_PASSES];
    for (int p = 0; p < r->passes; p++) {
        double f = r->reference_pass[p] > 0 && ref_median > 0 ? ref_median / r->reference_pass[p] : 1.0;
        l[p] = r->latency_pass[p] * f;
        e[p] = r->energy_pass[p] * f;
    }
    r->latency_ms = min_of(l, r->passes);
    r->energy_mj = min_of(e, r->passes);
}

static void apply_reference(samples_t *s)
{
    double r = s->n_refs > 0 ? median(s->refs, s->n_refs) : 0;
    for (int i = 0; i < s->n; i++) {
        row_target(&s->row[i], r);
        s->lat[i] = s->row[i].latency_ms;
        s->en[i] = s->row[i].energy_mj;
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

static double usual_spread(const samples_t *s)
{
    if (s->n < 10)
        return 0;
    double v[64];
    int n = 0;
    for (int i = s->n - 1; i >= 0 && n < 64; i--)   /* the latest: the machine as it is now */
        v[n++] = s->row[i].latency_spread;
    return median(v, n);
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
    double usual = usual_spread(s);
    *best_refm = 0;
    for (int attempt = 0; attempt <= o->remeasure; attempt++) {
        double before = 0, after = 0, ref_usual = 0;
        if (o->reference) {
            if (s->ref_last == 0 && (st = measure_reference(o, fn, ctx, s, remeasured, err)) != NAS_OK)
                return st;
            before = s->ref_last;
            ref_usual = median(s->refs, s->n_refs);
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
        double bad = unsteadiness(o, s, &m, before, after, ref_usual, usual);
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

/* The predictor is only as good as the worst quality of energy among its data. */
static void note_quality(const pred_measurement *m, char *quality, char *source)
{
    if (!quality[0]) {
        snprintf(quality, 16, "%s", m->energy_quality[0] ? m->energy_quality : "estimated");
        snprintf(source, 64, "%s", m->energy_source[0] ? m->energy_source : "unknown");
        return;
    }
    if (!m->energy_quality[0] || !strcmp(quality, m->energy_quality))
        return;
    static const char *const order[] = {"measured", "sampled", "estimated"};
    int a = 0, b = 0;
    for (int q = 0; q < 3; q++) {
        if (!strcmp(quality, order[q])) a = q;
        if (!strcmp(m->energy_quality, order[q])) b = q;
    }
    snprintf(quality, 16, "%s", order[a > b ? a : b]);
}

/* A failed measurement is skipped (a target device that drops one network
 * should not cost the hour spent on the others) until failures pass
 * o->max_failed of the networks tried; out of memory and a stop on request
 * always stop. */
static nas_status tolerate(const pred_calib_opts *o, samples_t *s, pred_calib_report *rep, nas_status st,
                           const char *gtxt, nas_err *err)
{
    if (st == NAS_EINTR)   /* stopped on request (SIGINT, SIGTERM): not the network's failure */
        return st;
    s->failed++;
    if (!rep->first_failure[0])
        snprintf(rep->first_failure, sizeof rep->first_failure, "network %.100s: %.140s", gtxt,
                 err ? err->msg : "(no error text: the caller passed none)");
    if (st == NAS_ENOMEM || (s->failed > 5 && s->failed > o->max_failed * s->attempted)) {
        /* the measuring's own status: nas_errctx would say "internal" without an err to read */
        nas_errctx(err, "calibration: network %s (%d of %d networks failed to measure)", gtxt, s->failed,
                   s->attempted);
        return st;
    }
    if (o->progress)
        o->progress(o->progress_ctx, "skipped", s->failed, s->attempted);
    return NAS_OK;
}

/* One pass's measurement of row i into its next pass slot. */
static nas_status measure_row(const pred_calib_opts *o, pred_measure_fn fn, void *ctx, samples_t *s,
                              pred_sample *r, pred_measurement *m, int *remeasured, nas_err *err)
{
    space_spec spec;
    space_net net;
    double refm = 0;
    nas_status st = space_genome_to_spec(&o->space, &r->genome, &spec, err);
    if (st == NAS_OK)
        st = space_resolve(&spec, &net, err);
    if (st == NAS_OK)
        st = measure_one(o, fn, ctx, s, &spec, &net, m, &refm, remeasured, err);
    if (st != NAS_OK)
        return st;
    int p = r->passes++;
    r->latency_pass[p] = m->latency_ms;
    r->energy_pass[p] = m->energy_mj;
    r->reference_pass[p] = refm;
    if (p == 0 || m->latency_spread < r->latency_spread) {
        r->latency_spread = m->latency_spread;
        r->energy_spread = m->energy_spread;
    }
    return NAS_OK;
}

/* Drops row i (a later pass failed): the rows after it move down. */
static void drop_row(samples_t *s, int i)
{
    memmove(&s->row[i], &s->row[i + 1], sizeof s->row[0] * (size_t)(s->n - i - 1));
    memmove(&s->macs[i], &s->macs[i + 1], sizeof s->macs[0] * (size_t)(s->n - i - 1));
    s->n--;
}

/* Measures genomes in o->passes passes and appends them; duplicates of
 * measured ones are skipped. The data set's features are added at the end,
 * for the rows that survived every pass. */
static nas_status measure_batch(const pred_calib_opts *o, pred_measure_fn fn, void *ctx, samples_t *s,
                                const space_genome *gs, int ng, char *quality, char *source,
                                pred_calib_report *rep, nas_err *err)
{
    if (samples_reserve(s, s->n + ng) != 0)
        return nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
    const int first = s->n, passes = o->passes < 1 ? 1 : o->passes > PRED_MAX_PASSES ? PRED_MAX_PASSES : o->passes;
    char gtxt[256];
    nas_status st;
    for (int j = 0; j < ng; j++) {
        if (o->progress)
            o->progress(o->progress_ctx, "measure", j, ng * passes);
        if (seen(s, &gs[j]))
            continue;
        pred_sample *r = &s->row[s->n];
        memset(r, 0, sizeof *r);
        r->genome = gs[j];
        pred_measurement m;
        s->attempted++;
        if ((st = measure_row(o, fn, ctx, s, r, &m, &rep->remeasured, err)) != NAS_OK) {
            space_genome_to_string(&gs[j], gtxt, sizeof gtxt);
            if ((st = tolerate(o, s, rep, st, gtxt, err)) != NAS_OK)
                return st;
            continue;
        }
        note_quality(&m, quality, source);
        s->macs[s->n++] = 0;
    }
    /* later passes, each after the whole batch, so one network's are far apart */
    for (int p = 1; p < passes; p++) {
        for (int i = first; i < s->n; i++) {
            if (o->progress)
                o->progress(o->progress_ctx, "measure", p * ng + i - first, ng * passes);
            pred_sample *r = &s->row[i];
            pred_measurement m;
            if ((st = measure_row(o, fn, ctx, s, r, &m, &rep->remeasured, err)) != NAS_OK) {
                space_genome_to_string(&r->genome, gtxt, sizeof gtxt);
                if ((st = tolerate(o, s, rep, st, gtxt, err)) != NAS_OK)
                    return st;
                drop_row(s, i--);
                continue;
            }
            note_quality(&m, quality, source);
        }
    }
    for (int i = first; i < s->n; i++) {
        space_spec spec;
        space_net net;
        if ((st = space_genome_to_spec(&o->space, &s->row[i].genome, &spec, err)) != NAS_OK ||
            (st = space_resolve(&spec, &net, err)) != NAS_OK ||
            (st = pred_dataset_add(&s->d, &net, err)) != NAS_OK)
            return st;
        space_cost c;
        space_cost_of(&net, NULL, 0, &c);
        s->macs[i] = c.macs;
    }
    apply_reference(s);
    if (o->progress)
        o->progress(o->progress_ctx, "measure", ng * passes, ng * passes);
    return NAS_OK;
}

/* Rows recorded in a predictor file, for a refit that measures nothing. */
static nas_status load_rows(const pred_model *from, samples_t *s, nas_err *err)
{
    if (from->n_rows < 1)
        return nas_errf(err, NAS_EINVAL, "refit: the predictor keeps no measurements (calibrated by an older nas)");
    if (samples_reserve(s, from->n_rows) != 0)
        return nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
    for (int i = 0; i < from->n_rows; i++) {
        space_spec spec;
        space_net net;
        char gtxt[256];
        nas_status st = space_genome_to_spec(&from->space, &from->rows[i].genome, &spec, err);
        if (st == NAS_OK)
            st = space_resolve(&spec, &net, err);
        if (st == NAS_OK)
            st = pred_dataset_add(&s->d, &net, err);
        if (st != NAS_OK) {
            space_genome_to_string(&from->rows[i].genome, gtxt, sizeof gtxt);
            return nas_errctx(err, "refit: measurement %d (network %s)", i, gtxt);
        }
        space_cost c;
        space_cost_of(&net, NULL, 0, &c);
        s->row[i] = from->rows[i];
        row_target(&s->row[i], from->reference_ms);   /* by this nas's rule, from the passes */
        s->macs[i] = c.macs;
        s->lat[i] = s->row[i].latency_ms;
        s->en[i] = s->row[i].energy_mj;
    }
    s->n = from->n_rows;
    return NAS_OK;
}

/* The first two passes of every network against each other. */
static void retest(const samples_t *s, pred_metrics *m)
{
    memset(m, 0, sizeof *m);
    double *a = nas_malloc(sizeof(double) * (size_t)(s->n > 0 ? s->n : 1));
    double *b = nas_malloc(sizeof(double) * (size_t)(s->n > 0 ? s->n : 1));
    int n = 0;
    for (int i = 0; a && b && i < s->n; i++)
        if (s->row[i].passes >= 2) {
            a[n] = s->row[i].latency_pass[1];
            b[n++] = s->row[i].latency_pass[0];
        }
    if (n > 0)
        pred_metrics_compute(a, b, n, m);
    nas_free(a);
    nas_free(b);
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

/* k-fold cross-validation of both kinds for both targets; the better kind of each is kept. */
static nas_status cross_validate(const pred_calib_opts *o, samples_t *s, double *oof[2][2],
                                 pred_calib_report *rep, nas_err *err)
{
    const double *ys[2] = {s->lat, s->en};
    double t0 = nas_now();
    for (int t = 0; t < 2; t++) {
        for (int k = 0; k < 2; k++) {
            if (o->progress)
                o->progress(o->progress_ctx, "fit", 2 * t + k, 4);
            nas_status st = pred_crossval(&s->d, ys[t], (pred_kind)k, o->folds, &o->fit, oof[t][k],
                                          &rep->cv[t][k], err);
            if (st != NAS_OK)
                return nas_errctx(err, "calibration: %s", t ? "energy" : "latency");
        }
        rep->kept[t] = better(rep->cv[t]);
    }
    rep->fit_seconds += nas_now() - t0;
    return NAS_OK;
}

/* Measures the first round and refines it adaptively, leaving the
 * cross-validation of the last round in rep. */
static nas_status gather(const pred_calib_opts *o, pred_measure_fn measure, void *ctx, samples_t *s,
                         double *oof[2][2], char *quality, char *source, pred_calib_report *rep, nas_err *err)
{
    nas_status st;
    int cap = o->max_samples > o->samples ? o->max_samples : o->samples;
    space_genome *gs = nas_malloc(sizeof(space_genome) * (size_t)cap);
    double *worst = nas_malloc(sizeof(double) * (size_t)cap);
    int *order = nas_malloc(sizeof(int) * (size_t)cap);
    if (!gs || !worst || !order) {
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
        st = space_genome_to_spec(&o->space, &ref, &s->ref_spec, err);
        if (st == NAS_OK)
            st = space_resolve(&s->ref_spec, &s->ref_net, err);
        if (st != NAS_OK)
            goto cleanup;
    }
    double t0 = nas_now();
    st = measure_batch(o, measure, ctx, s, gs, o->samples, quality, source, rep, err);
    rep->measure_seconds += nas_now() - t0;
    for (int round = 0; st == NAS_OK; round++) {
        if (s->n < 4 * o->folds) {
            st = nas_errf(err, NAS_EINVAL, "calibration: %d networks measured, too few for %d folds%s%s", s->n,
                          o->folds, rep->first_failure[0] ? "; the first failure: " : "", rep->first_failure);
            break;
        }
        if ((st = cross_validate(o, s, oof, rep, err)) != NAS_OK)
            break;
        rep->rounds = round + 1;
        if (round >= o->adaptive_rounds || s->n >= cap)
            break;
        /* networks whose held-out error (of the kept kind) is over 10% */
        int nbad = 0;
        for (int i = 0; i < s->n; i++) {
            double el = fabs(oof[0][rep->kept[0]][i] / s->lat[i] - 1);
            double ee = fabs(oof[1][rep->kept[1]][i] / s->en[i] - 1);
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
        if (want > cap - s->n)
            want = cap - s->n;
        for (int j = 0; j < want; j++) {
            gs[j] = s->row[order[j % nbad]].genome;
            space_genome_mutate(&o->space, &rng, &gs[j], 1 + (int)nas_pcg32_bounded(&rng, 2));
        }
        int before = s->n;
        t0 = nas_now();
        st = measure_batch(o, measure, ctx, s, gs, want, quality, source, rep, err);
        rep->measure_seconds += nas_now() - t0;
        rep->adaptive_added += s->n - before;
        if (st != NAS_OK || s->n == before)
            break;
    }
cleanup:
    nas_free(gs);
    nas_free(worst);
    nas_free(order);
    return st;
}

/* Fits the kept kinds on every row and records where the data came from. */
static nas_status finish(const pred_calib_opts *o, samples_t *s, const char *quality, const char *source,
                         pred_calib_report *rep, pred_model **out, nas_err *err)
{
    nas_status st = NAS_OK;
    pred_model *m = pred_model_new();
    if (!m || !(m->rows = nas_malloc(sizeof(pred_sample) * (size_t)s->n))) {
        pred_free(m);
        return nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
    }
    double t0 = nas_now();
    const double *ys[2] = {s->lat, s->en};
    for (int t = 0; t < 2 && st == NAS_OK; t++) {
        st = pred_regressor_fit(&s->d, ys[t], NULL, s->n, rep->kept[t], &o->fit, &m->target[t].reg, err);
        if (st != NAS_OK)
            nas_errctx(err, "calibration: fitting %s", t ? "energy" : "latency");
        m->target[t].cv[0] = rep->cv[t][0];
        m->target[t].cv[1] = rep->cv[t][1];
    }
    if (st != NAS_OK) {
        pred_free(m);
        return st;
    }
    rep->fit_seconds += nas_now() - t0;
    rep->samples = s->n;
    double *v = s->lat;   /* free to reuse: the fits are done */
    for (int i = 0; i < s->n; i++)
        v[i] = s->row[i].latency_spread;
    rep->median_latency_spread = median(v, s->n);
    for (int i = 0; i < s->n; i++)
        v[i] = s->row[i].energy_spread;
    rep->median_energy_spread = median(v, s->n);
    retest(s, &rep->retest);

    memcpy(m->rows, s->row, sizeof(pred_sample) * (size_t)s->n);
    m->n_rows = s->n;
    pred_hw_here(&m->hw, o->threads, source, o->measure);
    m->space = o->space;
    m->samples = s->n;
    m->macs_min = INFINITY;
    m->macs_max = 0;
    for (int i = 0; i < s->n; i++) {
        m->macs_min = fmin(m->macs_min, s->macs[i]);
        m->macs_max = fmax(m->macs_max, s->macs[i]);
    }
    snprintf(m->energy_quality, sizeof m->energy_quality, "%s", quality);
    snprintf(m->energy_source, sizeof m->energy_source, "%s", source);
    snprintf(m->latency_stat, sizeof m->latency_stat, "%s", o->latency_stat[0] ? o->latency_stat : "median");
    m->latency_spread = rep->median_latency_spread;
    m->energy_spread = rep->median_energy_spread;
    m->reference_ms = rep->reference_ms;
    m->reference_drift = rep->reference_drift;
    *out = m;
    return NAS_OK;
}

/* Networks never used in fitting or cross-validation, sampled uniformly
 * (not stratified) with a seed of their own and measured as the others were:
 * the final model's accuracy on them. */
static nas_status holdout(const pred_calib_opts *o, pred_measure_fn measure, void *ctx, const samples_t *s,
                          const pred_model *m, pred_calib_report *rep, nas_err *err)
{
    samples_t h;
    memset(&h, 0, sizeof h);
    pred_dataset_init(&h.d);
    h.ref_spec = s->ref_spec;
    h.ref_net = s->ref_net;
    char quality[16] = "", source[64] = "";
    double *pred = NULL;
    space_genome *gs = nas_malloc(sizeof(space_genome) * (size_t)o->holdout);
    nas_status st = gs ? NAS_OK : nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, o->seed, 0x686f6c646f7574ULL);   /* "holdout" */
    int n = 0;
    for (int tries = 0; st == NAS_OK && n < o->holdout && tries < 100 * o->holdout; tries++) {
        space_genome_sample(&o->space, &rng, &gs[n]);
        n += !seen(s, &gs[n]);
    }
    double t0 = nas_now();
    if (st == NAS_OK)
        st = measure_batch(o, measure, ctx, &h, gs, n, quality, source, rep, err);
    rep->measure_seconds += nas_now() - t0;
    if (st == NAS_OK && h.n > 0 && !(pred = nas_malloc(sizeof(double) * (size_t)h.n)))
        st = nas_errf(err, NAS_ENOMEM, "calibration: out of memory");
    const double *ys[2] = {h.lat, h.en};
    for (int t = 0; st == NAS_OK && h.n > 0 && t < 2; t++) {
        st = pred_regressor_predict(m->target[t].reg, &h.d, NULL, h.n, pred, err);
        if (st == NAS_OK)
            pred_metrics_compute(pred, ys[t], h.n, &rep->holdout[t]);
    }
    rep->failed += h.failed;
    nas_free(pred);
    nas_free(gs);
    samples_free(&h);
    return st == NAS_OK ? st : nas_errctx(err, "calibration: the hold-out networks");
}

nas_status pred_calibrate(const pred_calib_opts *o, pred_measure_fn measure, void *ctx,
                          pred_model **out, pred_calib_report *rep, nas_err *err)
{
    nas_status st = NAS_OK;
    samples_t s;
    memset(&s, 0, sizeof s);
    pred_dataset_init(&s.d);
    double *oof[2][2] = {{NULL, NULL}, {NULL, NULL}};
    char quality[16] = "", source[64] = "";
    *out = NULL;
    memset(rep, 0, sizeof *rep);

    if (o->folds < 2)
        return nas_errf(err, NAS_EINVAL, "calibration: folds %d: need at least 2", o->folds);
    if (!o->refit && o->samples < 4 * o->folds)
        return nas_errf(err, NAS_EINVAL, "calibration: %d samples are too few for %d-fold cross-validation "
                        "(need at least %d)", o->samples, o->folds, 4 * o->folds);
    if (o->refit && o->refit->n_rows < 4 * o->folds)
        return nas_errf(err, NAS_EINVAL, "refit: %d recorded measurements are too few for %d folds",
                        o->refit->n_rows, o->folds);
    int cap = o->refit ? o->refit->n_rows : o->max_samples > o->samples ? o->max_samples : o->samples;
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++)
            if (!(oof[t][k] = nas_malloc(sizeof(double) * (size_t)cap)))
                st = nas_errf(err, NAS_ENOMEM, "calibration: out of memory for %d samples", cap);
    if (st != NAS_OK)
        goto cleanup;

    pred_calib_opts eff = *o;
    if (o->refit) {
        /* the recorded data keep their space, hardware and energy labels */
        const pred_model *f = o->refit;
        eff.space = f->space;
        eff.threads = f->hw.threads;
        snprintf(eff.measure, sizeof eff.measure, "%s", f->hw.measure);
        snprintf(eff.latency_stat, sizeof eff.latency_stat, "%s", f->latency_stat);
        snprintf(quality, sizeof quality, "%s", f->energy_quality);
        snprintf(source, sizeof source, "%s", f->energy_source);
        rep->reference_ms = f->reference_ms;
        rep->reference_drift = f->reference_drift;
        if ((st = load_rows(f, &s, err)) == NAS_OK && (st = cross_validate(&eff, &s, oof, rep, err)) == NAS_OK)
            rep->rounds = 1;
    } else {
        st = gather(o, measure, ctx, &s, oof, quality, source, rep, err);
        if (st == NAS_OK && s.n_refs > 0) {
            qsort(s.refs, (size_t)s.n_refs, sizeof(double), cmp_double);
            rep->reference_ms = median(s.refs, s.n_refs);
            rep->reference_drift = (s.refs[(int)(0.9 * (s.n_refs - 1))] - s.refs[(int)(0.1 * (s.n_refs - 1))]) /
                                   rep->reference_ms;
            rep->references = s.n_refs;
        }
    }
    rep->failed = s.failed;
    if (st == NAS_OK)
        st = finish(&eff, &s, quality, source, rep, out, err);
    if (st == NAS_OK && !o->refit && o->holdout > 0 && (st = holdout(o, measure, ctx, &s, *out, rep, err)) != NAS_OK) {
        pred_free(*out);
        *out = NULL;
    }
cleanup:
    samples_free(&s);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++)
            nas_free(oof[t][k]);
    return st;
}
