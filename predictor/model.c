/* model.c — the predictor as a whole: a latency and an energy regressor, the
 * hardware and space they were fit on, and their cross-validated accuracy,
 * kept in one JSON file.
 *
 * The file says where its numbers come from: the CPU, core and thread count,
 * the energy meter (and so whether its energy is measured or estimated), the
 * measuring command if one was used, and the space. A predictor used on
 * other hardware still answers, but callers are told (pred_hw_differs), since
 * latency learned on one CPU says little about another.
 */
#include "predictor/pred_int.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FORMAT_NAME "nas-predictor"
#define FORMAT_VERSION 1

static const char *const target_key[2] = {"latency_ms", "energy_mj"};

/* ---- hardware fingerprint ----------------------------------------------- */

void pred_hw_here(pred_hw *hw, int threads, const char *meter, const char *measure)
{
    memset(hw, 0, sizeof *hw);
    nas_cpu_model(hw->cpu_model, sizeof hw->cpu_model, "unknown");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    hw->cores = cores > 0 ? (int)cores : 0;
    hw->threads = threads;
    snprintf(hw->meter, sizeof hw->meter, "%s", meter ? meter : "");
    snprintf(hw->measure, sizeof hw->measure, "%s", measure ? measure : "builtin");
}

int pred_hw_differs(const pred_hw *a, const pred_hw *b, char *why, size_t n)
{
    char buf[1024] = "";
    size_t len = 0;
#define ADD(...) do { if (len < sizeof buf) len += (size_t)snprintf(buf + len, sizeof buf - len, __VA_ARGS__); } while (0)
    if (strcmp(a->cpu_model, b->cpu_model) != 0)
        ADD("%sCPU '%s' vs '%s'", len ? "; " : "", a->cpu_model, b->cpu_model);
    if (a->cores != b->cores)
        ADD("%s%d vs %d cores", len ? "; " : "", a->cores, b->cores);
    if (a->threads != b->threads)
        ADD("%s%d vs %d threads", len ? "; " : "", a->threads, b->threads);
    if (strcmp(a->meter, b->meter) != 0)
        ADD("%smeter '%s' vs '%s'", len ? "; " : "", a->meter, b->meter);
    if (strcmp(a->measure, b->measure) != 0)
        ADD("%smeasured by '%s' vs '%s'", len ? "; " : "", a->measure, b->measure);
#undef ADD
    if (why && n)
        snprintf(why, n, "%s", buf);
    return len > 0;
}

/* ---- the model ---------------------------------------------------------- */

pred_model *pred_model_new(void)
{
    pred_model *m = nas_calloc(1, sizeof *m);
    return m;
}

void pred_free(pred_model *m)
{
    if (!m)
        return;
    for (int t = 0; t < 2; t++)
        pred_regressor_free(m->target[t].reg);
    nas_free(m->rows);
    nas_free(m);
}

const pred_hw *pred_model_hw(const pred_model *m) { return &m->hw; }
const space_config *pred_model_space(const pred_model *m) { return &m->space; }
int pred_model_samples(const pred_model *m) { return m->samples; }
const char *pred_model_latency_stat(const pred_model *m) { return m->latency_stat[0] ? m->latency_stat : "median"; }

const pred_sample *pred_model_measurements(const pred_model *m, int *n)
{
    *n = m->n_rows;
    return m->n_rows > 0 ? m->rows : NULL;
}

pred_kind pred_model_kind(const pred_model *m, int target)
{
    return m->target[target].reg ? m->target[target].reg->kind : PRED_KIND_NET;
}

const pred_metrics *pred_model_cv(const pred_model *m, int target, pred_kind kind)
{
    return &m->target[target].cv[kind];
}

int pred_model_outside(const pred_model *m, const space_net *net, char *why, size_t n)
{
    space_cost c;
    space_cost_of(net, NULL, 0, &c);
    if (net->resolution != m->space.resolution && !m->space.scale_resolution) {
        snprintf(why, n, "input %dx%d, but the predictor was fit on %dx%d inputs", net->resolution,
                 net->resolution, m->space.resolution, m->space.resolution);
        return 1;
    }
    if (net->in_ch != m->space.in_ch) {
        snprintf(why, n, "%d input channels, but the predictor was fit on %d", net->in_ch, m->space.in_ch);
        return 1;
    }
    /* a little slack: trees answer at the edge of what they saw, not past it */
    if (c.macs < m->macs_min / 1.5 || c.macs > m->macs_max * 1.5) {
        snprintf(why, n, "%.3g MMACs, outside the %.3g-%.3g MMACs the predictor was fit on", c.macs / 1e6,
                 m->macs_min / 1e6, m->macs_max / 1e6);
        return 1;
    }
    if (why && n)
        why[0] = '\0';
    return 0;
}

nas_status pred_predict(const pred_model *m, const space_net *net, pred_estimate *out, nas_err *err)
{
    pred_dataset d;
    pred_dataset_init(&d);
    nas_status st = pred_dataset_add(&d, net, err);
    double v[2] = {NAN, NAN};
    for (int t = 0; st == NAS_OK && t < 2; t++) {
        if (!m->target[t].reg) {
            st = nas_errf(err, NAS_EINVAL, "predictor has no %s model", target_key[t]);
            break;
        }
        st = pred_regressor_predict(m->target[t].reg, &d, NULL, 1, &v[t], err);
    }
    pred_dataset_free(&d);
    out->latency_ms = v[0];
    out->energy_mj = v[1];
    out->energy_quality = m->energy_quality;
    out->energy_source = m->energy_source;
    return st;
}

/* ---- JSON file ---------------------------------------------------------- */

static json_t *metrics_json(const pred_metrics *x)
{
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "n", x->n, "within5", x->within5, "within10",
                     x->within10, "mape", x->mape, "rmse", x->rmse, "max_rel", x->max_rel, "kendall_tau",
                     x->kendall_tau);
}

/* The measurements, a row per network: passes as measured, and the figure fit.
 * NULL when any value fails to go in. */
static json_t *rows_json(const pred_model *m)
{
    json_t *a = json_array();
    for (int i = 0; a && i < m->n_rows; i++) {
        const pred_sample *r = &m->rows[i];
        char g[256];
        space_genome_to_string(&r->genome, g, sizeof g);
        json_t *l = json_array(), *e = json_array(), *ref = json_array();
        int bad = !l || !e || !ref;
        for (int p = 0; !bad && p < r->passes; p++)
            bad = json_array_append_new(l, json_real(r->latency_pass[p])) ||
                  json_array_append_new(e, json_real(r->energy_pass[p])) ||
                  json_array_append_new(ref, json_real(r->reference_pass[p]));
        if (bad) {
            json_decref(l);
            json_decref(e);
            json_decref(ref);
            json_decref(a);
            return NULL;
        }
        json_t *row = json_pack("{s:s, s:f, s:f, s:o, s:o, s:o, s:f, s:f}", "genome", g, "latency_ms",
                                r->latency_ms, "energy_mj", r->energy_mj, "latency_passes", l, "energy_passes", e,
                                "reference_passes", ref, "latency_spread", r->latency_spread, "energy_spread",
                                r->energy_spread);
        if (!row || json_array_append_new(a, row) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* jansson refuses NaN, infinities and text that is not UTF-8 as it refuses a
 * failed allocation: by returning NULL. */
static nas_status build_failed(const char *path, nas_err *err)
{
    return nas_errf(err, NAS_ENOMEM, "%s: cannot build the predictor's JSON (out of memory, a value JSON "
                    "cannot hold, or text that is not UTF-8)", path);
}

/* The predictor as JSON text (nas_malloc'd): every value goes in, or the
 * whole fails, since a dropped key is a file that does not load back. */
static nas_status to_text(const pred_model *m, const char *path, char **out, nas_err *err)
{
    nas_status st = NAS_OK;
    char *text = NULL;
    *out = NULL;
    json_t *root = json_pack(
        "{s:s, s:i, s:i, s:s, s:{s:s, s:i, s:i, s:s, s:s}, s:{s:i, s:i, s:i, s:i, s:i, s:b, s:f},"
        " s:i, s:[f, f], s:{s:s, s:s}, s:{s:f, s:f, s:f, s:f}}",
        "format", FORMAT_NAME, "version", FORMAT_VERSION, "feature_version", PRED_FEATURE_VERSION,
        "nas_version", NAS_VERSION,
        "hardware", "cpu_model", m->hw.cpu_model, "cores", m->hw.cores, "threads", m->hw.threads,
        "meter", m->hw.meter, "measure", m->hw.measure,
        "space", "resolution", m->space.resolution, "in_ch", m->space.in_ch, "num_classes",
        m->space.num_classes, "n_stages", m->space.n_stages, "min_side", m->space.min_side,
        "scale_resolution", m->space.scale_resolution, "max_width", m->space.max_width,
        "samples", m->samples, "macs_range", m->macs_min, m->macs_max,
        "energy", "quality", m->energy_quality, "source", m->energy_source,
        "noise", "latency_spread", m->latency_spread, "energy_spread", m->energy_spread, "reference_ms",
        m->reference_ms, "reference_drift", m->reference_drift);
    if (!root)
        return build_failed(path, err);
    for (int t = 0; t < 2; t++) {
        const pred_target *tg = &m->target[t];
        if (!tg->reg) {
            st = nas_errf(err, NAS_EINVAL, "%s: the predictor has no %s model to save", path, target_key[t]);
            goto cleanup;
        }
        nas_err rerr = {0};
        json_t *model = pred_regressor_to_json(tg->reg, &rerr);
        if (!model) {
            st = rerr.code != NAS_OK ? nas_errf(err, rerr.code, "%s: %s", path, rerr.msg) : build_failed(path, err);
            goto cleanup;
        }
        json_t *t_obj = json_pack("{s:s, s:{s:o, s:o}, s:o}", "kind", pred_kind_name(tg->reg->kind), "cv",
                                  "net", metrics_json(&tg->cv[PRED_KIND_NET]), "block",
                                  metrics_json(&tg->cv[PRED_KIND_BLOCK]), "model", model);
        if (!t_obj || json_object_set_new(root, target_key[t], t_obj) != 0) {
            st = build_failed(path, err);
            goto cleanup;
        }
    }
    json_t *rows = rows_json(m);
    if (!rows || json_object_set_new(root, "measurements", rows) != 0 ||
        json_object_set_new(root, "latency_stat", json_string(pred_model_latency_stat(m))) != 0) {
        st = build_failed(path, err);
        goto cleanup;
    }
    text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (!text || !(*out = nas_strdup(text)))
        st = nas_errf(err, NAS_ENOMEM, "%s: out of memory writing the predictor", path);
cleanup:
    nas_free(text);
    json_decref(root);
    return st;
}

char *pred_to_json(const pred_model *m, nas_err *err)
{
    char *text;
    return to_text(m, "predictor", &text, err) == NAS_OK ? text : NULL;
}

nas_status pred_save(const pred_model *m, const char *path, nas_err *err)
{
    char *text;
    nas_status st = to_text(m, path, &text, err);
    if (st == NAS_OK)
        st = nas_write_file_atomic(path, text, strlen(text), err);
    nas_free(text);
    return st;
}

/* Field readers that name the file and the field on failure. */
static nas_status get_obj(const json_t *o, const char *key, const char *path, const char *ctx,
                          const json_t **out, nas_err *err)
{
    *out = json_object_get(o, key);
    if (!json_is_object(*out))
        return nas_errf(err, NAS_EINVAL, "%s: %s%s%s: missing or not an object", path, ctx, *ctx ? "." : "",
                        key);
    return NAS_OK;
}

static nas_status get_num(const json_t *o, const char *key, const char *path, const char *ctx, double *out,
                          nas_err *err)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return nas_errf(err, NAS_EINVAL, "%s: %s%s%s: missing or not a number", path, ctx, *ctx ? "." : "", key);
    *out = json_number_value(v);
    return NAS_OK;
}

/* A number in [lo, hi]: what the code can hold and what makes sense. */
static nas_status get_range(const json_t *o, const char *key, const char *path, const char *ctx, double lo,
                            double hi, double *out, nas_err *err)
{
    nas_status st = get_num(o, key, path, ctx, out, err);
    if (st == NAS_OK && !(*out >= lo && *out <= hi))
        st = nas_errf(err, NAS_EINVAL, "%s: %s%s%s: %g is out of range (%g to %g)", path, ctx, *ctx ? "." : "", key,
                      *out, lo, hi);
    return st;
}

/* A whole number in [lo, hi], checked before it becomes an int. */
static nas_status get_int(const json_t *o, const char *key, const char *path, const char *ctx, int lo, int hi,
                          int *out, nas_err *err)
{
    double v;
    nas_status st = get_range(o, key, path, ctx, lo, hi, &v, err);
    if (st == NAS_OK && floor(v) != v)
        st = nas_errf(err, NAS_EINVAL, "%s: %s%s%s: %g is not a whole number", path, ctx, *ctx ? "." : "", key, v);
    if (st == NAS_OK)
        *out = (int)v;
    return st;
}

/* A string that fits out (never cut: a cut could split a UTF-8 character, and
 * the file would then not save again) and, when choices is given ("a|b"), is one of them. */
static nas_status get_str(const json_t *o, const char *key, const char *path, const char *ctx, const char *choices,
                          char *out, size_t n, nas_err *err)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return nas_errf(err, NAS_EINVAL, "%s: %s%s%s: missing or not a string", path, ctx, *ctx ? "." : "", key);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len >= n || strlen(s) != len)
        return nas_errf(err, NAS_EINVAL, "%s: %s%s%s: longer than %zu bytes, or holds a NUL", path, ctx,
                        *ctx ? "." : "", key, n - 1);
    if (choices) {
        int found = 0;
        for (const char *p = choices; *p && !found;) {
            size_t k = strcspn(p, "|");
            found = k == len && !strncmp(p, s, k);
            p += k + (p[k] == '|');
        }
        if (!found)
            return nas_errf(err, NAS_EINVAL, "%s: %s%s%s: '%s' is not one of %s", path, ctx, *ctx ? "." : "", key, s,
                            choices);
    }
    memcpy(out, s, len + 1);
    return NAS_OK;
}

static nas_status get_metrics(const json_t *o, const char *path, const char *ctx, pred_metrics *x,
                              nas_err *err)
{
    nas_status st;
    if ((st = get_int(o, "n", path, ctx, 0, 1000000, &x->n, err)) ||
        (st = get_range(o, "within5", path, ctx, 0, 1, &x->within5, err)) ||
        (st = get_range(o, "within10", path, ctx, 0, 1, &x->within10, err)) ||
        (st = get_range(o, "mape", path, ctx, 0, DBL_MAX, &x->mape, err)) ||
        (st = get_range(o, "rmse", path, ctx, 0, DBL_MAX, &x->rmse, err)) ||
        (st = get_range(o, "max_rel", path, ctx, 0, DBL_MAX, &x->max_rel, err)) ||
        (st = get_range(o, "kendall_tau", path, ctx, -1, 1, &x->kendall_tau, err)))
        return st;
    return NAS_OK;
}

/* Passes of one measured row: 1..PRED_MAX_PASSES numbers in (0, hi] (or, for
 * references, 0 where none was measured). */
static nas_status get_passes(const json_t *row, const char *key, const char *path, int i, int want, int zero_ok,
                             double hi, double *out, int *n, nas_err *err)
{
    const json_t *a = json_object_get(row, key);
    size_t len = json_is_array(a) ? json_array_size(a) : 0;
    if (len < 1 || len > PRED_MAX_PASSES || (want > 0 && (int)len != want))
        return nas_errf(err, NAS_EINVAL, "%s: measurements[%d].%s: must be an array of %s%d numbers", path, i,
                        key, want > 0 ? "" : "1 to ", want > 0 ? want : PRED_MAX_PASSES);
    for (size_t p = 0; p < len; p++) {
        const json_t *v = json_array_get(a, p);
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(x >= 0 && x <= hi) || (x == 0 && !zero_ok))
            return nas_errf(err, NAS_EINVAL, "%s: measurements[%d].%s[%zu]: not a number in %s0 to %g", path, i, key,
                            p, zero_ok ? "[" : "(", hi);
        out[p] = x;
    }
    *n = (int)len;
    return NAS_OK;
}

/* The measurements (absent in files of older versions: none). */
static nas_status load_rows(const json_t *root, const char *path, pred_model *m, nas_err *err)
{
    const json_t *a = json_object_get(root, "measurements");
    if (!a)
        return NAS_OK;
    if (!json_is_array(a))
        return nas_errf(err, NAS_EINVAL, "%s: measurements: not an array", path);
    size_t n = json_array_size(a);
    if (n == 0)
        return NAS_OK;
    if (n > 1000000)
        return nas_errf(err, NAS_EINVAL, "%s: measurements: %zu rows, at most 1000000", path, n);
    if (!(m->rows = nas_calloc(n, sizeof *m->rows)))
        return nas_errf(err, NAS_ENOMEM, "%s: out of memory for %zu measurements", path, n);
    for (size_t i = 0; i < n; i++) {
        const json_t *row = json_array_get(a, i);
        pred_sample *r = &m->rows[i];
        char ctx[48], g[256];
        snprintf(ctx, sizeof ctx, "measurements[%zu]", i);
        nas_status st;
        int np = 0;
        if ((st = get_str(row, "genome", path, ctx, NULL, g, sizeof g, err)) != NAS_OK)
            return st;
        if (space_genome_from_string(g, &r->genome, err) != NAS_OK ||
            space_genome_check(&m->space, &r->genome, err) != NAS_OK)
            return nas_errctx(err, "%s: %s.genome", path, ctx);
        if ((st = get_passes(row, "latency_passes", path, (int)i, 0, 0, PRED_MAX_MS, r->latency_pass, &np, err)) ||
            (st = get_passes(row, "energy_passes", path, (int)i, np, 0, PRED_MAX_MJ, r->energy_pass, &np, err)) ||
            (st = get_passes(row, "reference_passes", path, (int)i, np, 1, PRED_MAX_MS, r->reference_pass, &np, err)))
            return st;
        r->passes = np;
        if ((st = get_range(row, "latency_ms", path, ctx, DBL_MIN, PRED_MAX_MS, &r->latency_ms, err)) ||
            (st = get_range(row, "energy_mj", path, ctx, DBL_MIN, PRED_MAX_MJ, &r->energy_mj, err)) ||
            (st = get_range(row, "latency_spread", path, ctx, 0, PRED_MAX_SPREAD, &r->latency_spread, err)) ||
            (st = get_range(row, "energy_spread", path, ctx, 0, PRED_MAX_SPREAD, &r->energy_spread, err)))
            return st;
        m->n_rows = (int)i + 1;
    }
    return NAS_OK;
}

/* The space a predictor was fit on, in the ranges `nas calibrate` and the
 * search accept (space_genome_check and the features then hold). */
static nas_status load_space(const json_t *sp, const char *path, space_config *c, nas_err *err)
{
    nas_status st;
    if ((st = get_int(sp, "resolution", path, "space", 8, 1024, &c->resolution, err)) ||
        (st = get_int(sp, "in_ch", path, "space", 1, 4, &c->in_ch, err)) ||
        (st = get_int(sp, "num_classes", path, "space", 2, 100000, &c->num_classes, err)) ||
        (st = get_int(sp, "n_stages", path, "space", 1, 7, &c->n_stages, err)) ||
        (st = get_int(sp, "min_side", path, "space", 0, 4096, &c->min_side, err)) ||
        (st = get_range(sp, "max_width", path, "space", 0.1, 4, &c->max_width, err)))
        return st;
    const json_t *sr = json_object_get(sp, "scale_resolution");
    if (!json_is_boolean(sr))
        return nas_errf(err, NAS_EINVAL, "%s: space.scale_resolution: missing or not true/false", path);
    c->scale_resolution = json_is_true(sr);
    return NAS_OK;
}

static nas_status load_json(const json_t *root, const char *path, int models, pred_model *m, nas_err *err)
{
    nas_status st;
    const json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), FORMAT_NAME) != 0)
        return nas_errf(err, NAS_EINVAL, "%s: format: not \"%s\" (is this a predictor file?)", path, FORMAT_NAME);
    double version, fversion;
    if ((st = get_num(root, "version", path, "", &version, err)))
        return st;
    if (version != FORMAT_VERSION)
        return nas_errf(err, NAS_EINVAL, "%s: version: %g, this nas reads version %d", path, version, FORMAT_VERSION);
    if ((st = get_num(root, "feature_version", path, "", &fversion, err)))
        return st;
    if (models && fversion != PRED_FEATURE_VERSION)
        return nas_errf(err, NAS_EINVAL,
                        "%s: feature_version: %g, this nas computes version %d features (calibrate again)", path,
                        fversion, PRED_FEATURE_VERSION);
    const json_t *hw, *sp, *en, *noise;
    if ((st = get_obj(root, "hardware", path, "", &hw, err)) || (st = get_obj(root, "space", path, "", &sp, err)) ||
        (st = get_obj(root, "energy", path, "", &en, err)) || (st = get_obj(root, "noise", path, "", &noise, err)))
        return st;
    if ((st = get_str(hw, "cpu_model", path, "hardware", NULL, m->hw.cpu_model, sizeof m->hw.cpu_model, err)) ||
        (st = get_str(hw, "meter", path, "hardware", NULL, m->hw.meter, sizeof m->hw.meter, err)) ||
        (st = get_str(hw, "measure", path, "hardware", NULL, m->hw.measure, sizeof m->hw.measure, err)) ||
        (st = get_str(en, "quality", path, "energy", "measured|sampled|estimated", m->energy_quality,
                      sizeof m->energy_quality, err)) ||
        (st = get_str(en, "source", path, "energy", NULL, m->energy_source, sizeof m->energy_source, err)))
        return st;
    if ((st = get_int(hw, "cores", path, "hardware", 0, 1 << 20, &m->hw.cores, err)) ||
        (st = get_int(hw, "threads", path, "hardware", 0, 1 << 20, &m->hw.threads, err)) ||
        (st = load_space(sp, path, &m->space, err)) ||
        (st = get_int(root, "samples", path, "", 0, 1000000, &m->samples, err)) ||
        (st = get_range(noise, "latency_spread", path, "noise", 0, PRED_MAX_SPREAD, &m->latency_spread, err)) ||
        (st = get_range(noise, "energy_spread", path, "noise", 0, PRED_MAX_SPREAD, &m->energy_spread, err)) ||
        (st = get_range(noise, "reference_ms", path, "noise", 0, PRED_MAX_MS, &m->reference_ms, err)) ||
        (st = get_range(noise, "reference_drift", path, "noise", 0, PRED_MAX_SPREAD, &m->reference_drift, err)))
        return st;
    const json_t *range = json_object_get(root, "macs_range");
    double lo = json_number_value(json_array_get(range, 0)), hi = json_number_value(json_array_get(range, 1));
    if (!json_is_array(range) || json_array_size(range) != 2 || !json_is_number(json_array_get(range, 0)) ||
        !json_is_number(json_array_get(range, 1)) || !(lo >= 0 && lo <= hi && hi <= 1e15))
        return nas_errf(err, NAS_EINVAL, "%s: macs_range: must be [min, max] with 0 <= min <= max <= 1e15", path);
    m->macs_min = lo;
    m->macs_max = hi;
    for (int t = 0; models && t < 2; t++) {
        const json_t *tg, *cv, *mod, *cvk;
        char where[600];
        if ((st = get_obj(root, target_key[t], path, "", &tg, err)) ||
            (st = get_obj(tg, "cv", path, target_key[t], &cv, err)) ||
            (st = get_obj(tg, "model", path, target_key[t], &mod, err)))
            return st;
        for (int k = 0; k < 2; k++) {
            snprintf(where, sizeof where, "%s.cv", target_key[t]);
            if ((st = get_obj(cv, pred_kind_name((pred_kind)k), path, where, &cvk, err)))
                return st;
            snprintf(where, sizeof where, "%s.cv.%s", target_key[t], pred_kind_name((pred_kind)k));
            if ((st = get_metrics(cvk, path, where, &m->target[t].cv[k], err)))
                return st;
        }
        snprintf(where, sizeof where, "%s: %s.model", path, target_key[t]);
        if ((st = pred_regressor_from_json(mod, where, &m->target[t].reg, err)))
            return st;
    }
    if (json_object_get(root, "latency_stat") &&
        (st = get_str(root, "latency_stat", path, "", "p10|median|cmd", m->latency_stat, sizeof m->latency_stat, err)))
        return st;
    return load_rows(root, path, m, err);
}

/* Text of a predictor file into a model; where names it in messages. */
static nas_status from_text(const char *text, const char *where, int models, pred_model **out, nas_err *err)
{
    *out = NULL;
    json_error_t je;
    nas_status st;
    json_t *root = nas_json_load(text, strlen(text), 0, &je, &st);
    if (!root)
        return nas_errf(err, st, "%s: not a predictor file: JSON error at line %d, column %d: %s", where, je.line,
                        je.column, je.text);
    pred_model *m = pred_model_new();
    if (!m)
        st = nas_errf(err, NAS_ENOMEM, "%s: out of memory", where);
    else
        st = load_json(root, where, models, m, err);
    json_decref(root);
    if (st != NAS_OK) {
        pred_free(m);
        return st;
    }
    *out = m;
    return NAS_OK;
}

static nas_status load(const char *path, int models, pred_model **out, nas_err *err)
{
    char *text = NULL;
    *out = NULL;
    nas_status st = nas_read_file(path, &text, NULL, err);
    if (st != NAS_OK)
        return nas_errctx(err, "reading the predictor");
    st = from_text(text, path, models, out, err);
    nas_free(text);
    return st;
}

nas_status pred_from_json(const char *text, const char *where, pred_model **out, nas_err *err)
{
    return from_text(text, where, 1, out, err);
}

nas_status pred_load(const char *path, pred_model **out, nas_err *err)
{
    return load(path, 1, out, err);
}

nas_status pred_load_measurements(const char *path, pred_model **out, nas_err *err)
{
    nas_status st = load(path, 0, out, err);
    if (st == NAS_OK && (*out)->n_rows == 0) {
        pred_free(*out);
        *out = NULL;
        return nas_errf(err, NAS_EINVAL, "%s: keeps no measurements (written by a nas before they were kept)",
                        path);
    }
    return st;
}
