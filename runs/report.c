/* report.c — what a run found: the leaderboard, the Pareto front of accuracy
 * against energy per inference, and the search's own energy (optionally as
 * CO2e), as text, JSON, CSV and an SVG plot.
 *
 * Honesty rules, as everywhere in nas: every energy figure is printed with
 * what it is (measured by a counter, estimated by a model, predicted by the
 * predictor), joules of different qualities are never added together, and a
 * candidate is plotted at its benchmarked energy when it has one, else at its
 * predicted energy, drawn differently so the reader can tell.
 */
#define _GNU_SOURCE   /* qsort_r */
#include "runs/runs.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double runs_cand_energy(const runs_cand *c, const char **source, const char **quality)
{
    const runs_fig *f = runs_fig_known(&c->energy_mj)        ? &c->energy_mj
                        : runs_fig_known(&c->pred_energy_mj) ? &c->pred_energy_mj
                                                             : NULL;
    if (source)
        *source = f ? f->source : "";
    if (quality)
        *quality = f ? f->quality : "";
    return f ? f->value : NAN;
}

double runs_co2e_grams(double joules, double grid_gco2_kwh)
{
    return joules / 3.6e6 * grid_gco2_kwh;
}

void runs_report_opts_default(runs_report_opts *o)
{
    o->grid_gco2_kwh = NAN;
    o->top = 20;
    o->color = 0;
}

/* ---- building ------------------------------------------------------------- */

static int ranked(const runs_cand *c)
{
    return c->status == RUNS_DONE && isfinite(c->accuracy);
}

/* Leaderboard order: ranked first, by reward (or accuracy where no reward),
 * then by seq; the rest by seq. */
static int cmp_board(const void *pa, const void *pb)
{
    const runs_cand *a = pa, *b = pb;
    int ra = ranked(a), rb = ranked(b);
    if (ra != rb)
        return rb - ra;
    if (ra) {
        double xa = isfinite(a->reward) ? a->reward : -INFINITY;
        double xb = isfinite(b->reward) ? b->reward : -INFINITY;
        if (xa != xb)
            return xa > xb ? -1 : 1;
        if (a->accuracy != b->accuracy)
            return a->accuracy > b->accuracy ? -1 : 1;
    }
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* By energy ascending, then accuracy descending: the sweep order of the front. */
static int cmp_front(const void *pa, const void *pb, void *base)
{
    const runs_cand *cands = base;
    const runs_cand *a = &cands[*(const int *)pa], *b = &cands[*(const int *)pb];
    double ea = runs_cand_energy(a, NULL, NULL), eb = runs_cand_energy(b, NULL, NULL);
    if (ea != eb)
        return ea < eb ? -1 : 1;
    if (a->accuracy != b->accuracy)
        return a->accuracy > b->accuracy ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* The finally trained candidates; the one final training chose is the run's chosen model. */
static nas_status report_finals(runs_db *db, runs_report *rep, nas_err *err)
{
    rep->finals = nas_calloc((size_t)rep->n + 1, sizeof *rep->finals);
    rep->final_of = nas_calloc((size_t)rep->n + 1, sizeof *rep->final_of);
    if (!rep->finals || !rep->final_of)
        return nas_errf(err, NAS_ENOMEM, "out of memory building the report");
    for (int i = 0; i < rep->n; i++) {
        int found = 0;
        rep->final_of[i] = -1;
        nas_status st = runs_final_get(db, rep->cands[i].id, &rep->finals[rep->n_finals], NULL, NULL, &found, err);
        if (st)
            return st;
        if (!found)
            continue;
        if (rep->finals[rep->n_finals].chosen)
            rep->chosen = i;
        rep->final_of[i] = rep->n_finals++;
    }
    return NAS_OK;
}

nas_status runs_report_build(runs_db *db, int64_t run, runs_report *rep, nas_err *err)
{
    memset(rep, 0, sizeof *rep);
    rep->chosen = -1;
    int *order = NULL;
    nas_status st = runs_run_get(db, run, &rep->run, err);
    if (st)
        goto cleanup;
    if ((st = runs_cand_list(db, run, ~0u, &rep->cands, &rep->n, err)))
        goto cleanup;
    if ((st = runs_run_energy(db, run, rep->energy, 8, &rep->n_energy, err)))
        goto cleanup;
    int n = rep->n;
    rep->rank = nas_calloc((size_t)n + 1, sizeof *rep->rank);
    rep->front = nas_calloc((size_t)n + 1, sizeof *rep->front);
    order = nas_calloc((size_t)n + 1, sizeof *order);
    if (!rep->rank || !rep->front || !order) {
        st = nas_errf(err, NAS_ENOMEM, "out of memory building the report");
        goto cleanup;
    }
    if (n > 1)
        qsort(rep->cands, (size_t)n, sizeof *rep->cands, cmp_board);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!ranked(&rep->cands[i]))
            continue;
        rep->rank[i] = i + 1;
        if (rep->chosen < 0)
            rep->chosen = i;
        if (isfinite(runs_cand_energy(&rep->cands[i], NULL, NULL)))
            order[m++] = i;
    }
    /* Sweep in energy order; a point is on the front when it is more
     * accurate than every point that costs no more. */
    qsort_r(order, (size_t)m, sizeof *order, cmp_front, rep->cands);
    double best = -INFINITY;
    for (int k = 0; k < m; k++) {
        const runs_cand *c = &rep->cands[order[k]];
        if (c->accuracy > best) {
            rep->front[order[k]] = 1;
            best = c->accuracy;
        }
    }
    st = report_finals(db, rep, err);
cleanup:
    nas_free(order);
    if (st)
        runs_report_free(rep);
    return st;
}

void runs_report_free(runs_report *rep)
{
    runs_run_free(&rep->run);
    runs_cands_free(rep->cands, rep->n);
    nas_free(rep->rank);
    nas_free(rep->front);
    nas_free(rep->finals);
    nas_free(rep->final_of);
    rep->finals = NULL;
    rep->final_of = NULL;
    rep->n_finals = 0;
    rep->cands = NULL;
    rep->rank = rep->front = NULL;
    rep->n = 0;
}

/* The run's energy target per inference (mJ), NAN when it had none. */
static double energy_target(const runs_report *rep)
{
    double t = runs_settings_number(rep->run.settings_json, "target-mj");
    return t > 0 ? t : NAN;
}

/* Benchmarked (or else predicted) energy over the run's target. */
static int over_target(const runs_cand *c, double target)
{
    return isfinite(target) && runs_cand_energy(c, NULL, NULL) > target;
}

/* ---- text ------------------------------------------------------------------- */

static const char *qual_short(const char *q)
{
    if (!strcmp(q, "measured"))
        return "meas";
    if (!strcmp(q, "sampled"))
        return "samp";
    if (!strcmp(q, "estimated"))
        return "est";
    if (!strcmp(q, "predicted"))
        return "pred";
    return "";
}

static void fmt_num(char *buf, size_t n, double v, int decimals, const char *suffix)
{
    if (isfinite(v))
        snprintf(buf, n, "%.*f%s", decimals, v, suffix);
    else
        snprintf(buf, n, "-");
}

static void fmt_fig(char *buf, size_t n, const runs_fig *f)
{
    if (runs_fig_known(f))
        snprintf(buf, n, "%.3g %s", f->value, qual_short(f->quality));
    else
        snprintf(buf, n, "-");
}

static void fmt_count(char *buf, size_t n, double v)
{
    if (!isfinite(v))
        snprintf(buf, n, "-");
    else if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

/* Adds a source to a small set of distinct (source, quality) pairs. */
typedef struct {
    const char *what[12];
    char src[12][RUNS_SRC_MAX];
    char q[12][16];
    int n;
} src_set;

static void src_add(src_set *s, const char *what, const runs_fig *f)
{
    if (!runs_fig_known(f))
        return;
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->what[i], what) && !strcmp(s->src[i], f->source) &&
            !strcmp(s->q[i], f->quality))
            return;
    if (s->n < 12) {
        s->what[s->n] = what;
        snprintf(s->src[s->n], RUNS_SRC_MAX, "%s", f->source);
        snprintf(s->q[s->n], 16, "%s", f->quality);
        s->n++;
    }
}

static void print_energy(const runs_report *rep, const runs_report_opts *o, FILE *f)
{
    if (rep->n_energy == 0) {
        fprintf(f, "search energy: none recorded\n");
        return;
    }
    for (int i = 0; i < rep->n_energy; i++) {
        const runs_energy_line *l = &rep->energy[i];
        int meas = runs_quality_is_measured(l->quality);
        fprintf(f, "search energy: %s%.1f J %s by %s, over %d candidate%s", meas ? "" : "~",
                l->joules, meas ? "measured" : l->quality, l->source, l->n, l->n == 1 ? "" : "s");
        if (l->interrupted > 0)
            fprintf(f, " and %d attempt%s cut short by a crash", l->interrupted, l->interrupted == 1 ? "" : "s");
        if (l->calibration_j > 0)
            fprintf(f, ", and %s%.1f J calibrating the predictor", meas ? "" : "~", l->calibration_j);
        if (isfinite(o->grid_gco2_kwh))
            fprintf(f, " = %s%.3g gCO2e at %g gCO2e/kWh", meas ? "" : "~",
                    runs_co2e_grams(l->joules, o->grid_gco2_kwh), o->grid_gco2_kwh);
        fputc('\n', f);
    }
    if (rep->n_energy > 1)
        fprintf(f, "(figures of different quality are listed apart, never added)\n");
}

/* Final training: proxy, final validation and test accuracy side by side. */
static void print_finals(const runs_report *rep, const runs_report_opts *o, FILE *f)
{
    if (!rep->n_finals)
        return;
    const char *bold = o->color ? "\033[1m" : "", *off = o->color ? "\033[0m" : "";
    fprintf(f, "\n%sfinal training%s (trained again on the training split, tested once on the test split)\n", bold,
            off);
    fprintf(f, "%5s %8s %8s %8s %7s %8s %12s %8s\n", "seq", "proxy", "val", "test", "epochs", "images", "joules",
            "seconds");
    for (int i = 0; i < rep->n; i++) {
        int k = rep->final_of[i];
        if (k < 0)
            continue;
        const runs_final *fi = &rep->finals[k];
        char acc[3][16], j[24];
        fmt_num(acc[0], sizeof acc[0], rep->cands[i].accuracy * 100, 2, "%");
        fmt_num(acc[1], sizeof acc[1], fi->val_acc * 100, 2, "%");
        fmt_num(acc[2], sizeof acc[2], fi->test_acc * 100, 2, "%");
        fmt_fig(j, sizeof j, &fi->joules);
        fprintf(f, "%5d %8s %8s %8s %7d %8d %12s %8.0f%s\n", rep->cands[i].seq, acc[0], acc[1], acc[2], fi->epochs,
                fi->train_images, j, fi->seconds, i == rep->chosen ? "  chosen" : "");
    }
    if (rep->n_finals)
        fprintf(f, "  joules: %s, %s; not counted in the search's budget\n", rep->finals[0].joules.source,
                rep->finals[0].joules.quality);
}

void runs_report_print(const runs_report *rep, const runs_report_opts *o, FILE *f)
{
    const runs_run *r = &rep->run;
    const char *bold = o->color ? "\033[1m" : "", *green = o->color ? "\033[32m" : "",
               *dim = o->color ? "\033[2m" : "", *off = o->color ? "\033[0m" : "";
    char when[32];
    time_t t = (time_t)r->created;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
    int counts[RUNS_NSTATUS] = {0};
    for (int i = 0; i < rep->n; i++)
        counts[rep->cands[i].status]++;
    fprintf(f, "%srun %lld '%s'%s  %s  started %s  seed %llu\n", bold, (long long)r->id, r->name,
            off, r->status, when, (unsigned long long)r->seed);
    fprintf(f, "hardware: %s  meter: %s\n", r->hardware[0] ? r->hardware : "-",
            r->meter[0] ? r->meter : "-");
    fprintf(f, "candidates: %d (", rep->n);
    int first = 1;
    for (int s = 0; s < RUNS_NSTATUS; s++)
        if (counts[s]) {
            fprintf(f, "%s%s %d", first ? "" : ", ", runs_status_name((runs_status)s), counts[s]);
            first = 0;
        }
    fprintf(f, "%s)\n", first ? "none" : "");
    print_energy(rep, o, f);
    double target = energy_target(rep);
    if (isfinite(target))
        fprintf(f, "target: %g mJ per inference (%s constraint)\n", target,
                runs_settings_number(r->settings_json, "hard") > 0 ? "hard" : "soft");

    int shown = 0, n_unbenched = 0;
    src_set srcs = {0};
    char deploy[16] = "";
    int int8 = runs_settings_string(r->settings_json, "deploy", deploy, sizeof deploy) && !strcmp(deploy, "int8");
    fprintf(f, "\n%sleaderboard%s (per %sinference: energy in mJ, latency in ms; "
               "meas = hardware counter, est = modelled, pred = predictor)\n", bold, off,
            int8 ? "int8 " : "");
    if (int8)
        fprintf(f, "  (--deploy int8: each figure is of the int8 model, in nas's int8 engine on one thread)\n");
    fprintf(f, "%4s %5s %8s %8s %11s %11s %10s %10s %8s %8s  %s\n", "rank", "seq", "accuracy",
            "reward", "energy", "pred.energy", "latency", "pred.lat", "params", "MACs", "");
    for (int i = 0; i < rep->n; i++) {
        const runs_cand *c = &rep->cands[i];
        if (!rep->rank[i])
            continue;
        if (o->top > 0 && shown >= o->top)
            break;
        shown++;
        char acc[16], rew[16], e[24], pe[24], l[24], pl[24], par[16], mac[16];
        fmt_num(acc, sizeof acc, c->accuracy * 100, 2, "%");
        fmt_num(rew, sizeof rew, c->reward, 4, "");
        fmt_fig(e, sizeof e, &c->energy_mj);
        fmt_fig(pe, sizeof pe, &c->pred_energy_mj);
        fmt_fig(l, sizeof l, &c->latency_ms);
        fmt_fig(pl, sizeof pl, &c->pred_latency_ms);
        fmt_count(par, sizeof par, c->params);
        fmt_count(mac, sizeof mac, c->macs);
        src_add(&srcs, "energy", &c->energy_mj);
        src_add(&srcs, "energy", &c->pred_energy_mj);
        src_add(&srcs, "latency", &c->latency_ms);
        src_add(&srcs, "latency", &c->pred_latency_ms);
        int chosen = i == rep->chosen;
        char rung[48] = "";   /* multi-fidelity: where a row stands among its candidate's trainings */
        if (c->rung > 0)
            snprintf(rung, sizeof rung, " rung %d (on from %d)", c->rung, c->parent);
        for (int j = 0; j < rep->n; j++)
            if (rep->cands[j].rung > 0 && rep->cands[j].parent == c->seq)
                snprintf(rung + strlen(rung), sizeof rung - strlen(rung), " promoted to %d", rep->cands[j].seq);
        int unbenched = !runs_fig_known(&c->energy_mj) && !runs_fig_known(&c->pred_energy_mj) &&
                        !runs_fig_known(&c->latency_ms) && !runs_fig_known(&c->pred_latency_ms);
        n_unbenched += unbenched;
        fprintf(f, "%s%4d %5d %8s %8s %11s %11s %10s %10s %8s %8s  %s%s%s%s%s%s\n",
                chosen ? green : "", rep->rank[i], c->seq, acc, rew, e, pe, l, pl, par, mac,
                rep->front[i] ? "front" : "", chosen ? " chosen" : "",
                over_target(c, target) ? " over-target" : "", unbenched ? " not-benchmarked" : "", rung,
                chosen ? off : "");
    }
    if (!shown)
        fprintf(f, "%s  (no finished candidates yet)%s\n", dim, off);
    int ranked_total = 0;
    for (int i = 0; i < rep->n; i++)
        ranked_total += rep->rank[i] != 0;
    if (shown < ranked_total)
        fprintf(f, "%s  ... %d more (--top N shows more; the CSV and JSON hold all)%s\n", dim,
                ranked_total - shown, off);
    for (int i = 0; i < srcs.n; i++)
        fprintf(f, "%s  %s %s: %s%s\n", dim, srcs.what[i], srcs.q[i], srcs.src[i], off);
    if (isfinite(target))
        fprintf(f, "%s  over-target: energy per inference above the %g mJ target%s\n", dim, target, off);
    if (n_unbenched)
        fprintf(f, "%s  not-benchmarked: no figure yet (with --rungs and no predictor, a candidate is benchmarked "
                "before its promotion)%s\n", dim, off);

    fprintf(f, "\n%sPareto front%s (accuracy against energy per inference, cheapest first)\n",
            bold, off);
    int nf = 0;
    const runs_cand **front = nas_calloc((size_t)rep->n + 1, sizeof *front);
    for (int i = 0; front && i < rep->n; i++)
        if (rep->front[i])
            front[nf++] = &rep->cands[i];
    /* Insertion sort by energy: the front is short. */
    for (int i = 1; i < nf; i++)
        for (int k = i; k > 0 && runs_cand_energy(front[k], NULL, NULL) <
                                     runs_cand_energy(front[k - 1], NULL, NULL); k--) {
            const runs_cand *tmp = front[k];
            front[k] = front[k - 1];
            front[k - 1] = tmp;
        }
    fprintf(f, "%5s %8s %13s  %s\n", "seq", "accuracy", "energy mJ", "genome");
    for (int i = 0; i < nf; i++) {
        const char *q;
        double e = runs_cand_energy(front[i], NULL, &q);
        fprintf(f, "%5d %7.2f%% %8.4g %-4s  %s\n", front[i]->seq, front[i]->accuracy * 100, e,
                qual_short(q), front[i]->genome);
    }
    if (!nf)
        fprintf(f, "%s  (empty: no finished candidate has an energy figure)%s\n", dim, off);
    nas_free(front);
    print_finals(rep, o, f);
    if (rep->chosen >= 0) {
        const runs_cand *c = &rep->cands[rep->chosen];
        int k = rep->final_of ? rep->final_of[rep->chosen] : -1;
        if (k >= 0)
            fprintf(f, "\nchosen: seq %d, test accuracy %.2f%% after final training (proxy %.2f%%), genome %s\n",
                    c->seq, rep->finals[k].test_acc * 100, c->accuracy * 100, c->genome);
        else
            fprintf(f, "\nchosen: seq %d, accuracy %.2f%%, genome %s\n", c->seq, c->accuracy * 100, c->genome);
    }
}

/* ---- JSON ------------------------------------------------------------------- */

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *jfig(const runs_fig *f)
{
    if (!runs_fig_known(f))
        return json_null();
    return json_pack("{s:f, s:s, s:s}", "value", f->value, "source", f->source, "quality",
                     f->quality);
}

static json_t *jcand(const runs_report *rep, int i, double target)
{
    const runs_cand *c = &rep->cands[i];
    json_t *o = json_object();
    json_object_set_new(o, "rank", rep->rank[i] ? json_integer(rep->rank[i]) : json_null());
    /* seq, the number every output and `nas export --candidate` use; the
     * store's row id stays inside the store */
    json_object_set_new(o, "seq", json_integer(c->seq));
    json_object_set_new(o, "status", json_string(runs_status_name(c->status)));
    json_object_set_new(o, "genome", json_string(c->genome));
    json_object_set_new(o, "accuracy", jnum(c->accuracy));
    json_object_set_new(o, "reward", jnum(c->reward));
    json_object_set_new(o, "energy_mj", jfig(&c->energy_mj));
    json_object_set_new(o, "pred_energy_mj", jfig(&c->pred_energy_mj));
    json_object_set_new(o, "latency_ms", jfig(&c->latency_ms));
    json_object_set_new(o, "pred_latency_ms", jfig(&c->pred_latency_ms));
    json_object_set_new(o, "joules", jfig(&c->joules));
    json_object_set_new(o, "params", jnum(c->params));
    json_object_set_new(o, "macs", jnum(c->macs));
    json_object_set_new(o, "wall_s", jnum(c->wall_s));
    json_object_set_new(o, "attempts", json_integer(c->attempts));
    json_object_set_new(o, "rung", json_integer(c->rung));
    json_object_set_new(o, "parent", c->rung > 0 ? json_integer(c->parent) : json_null());
    json_object_set_new(o, "front", json_boolean(rep->front[i]));
    json_object_set_new(o, "chosen", json_boolean(i == rep->chosen));
    if (isfinite(target))
        json_object_set_new(o, "over_target", json_boolean(over_target(c, target)));
    if (c->error[0])
        json_object_set_new(o, "error", json_string(c->error));
    if (c->spec_json && i == rep->chosen) {
        json_t *spec = nas_json_load(c->spec_json, c->spec_json ? strlen(c->spec_json) : 0, 0, NULL, NULL);
        if (spec)
            json_object_set_new(o, "spec", spec);
    }
    return o;
}

char *runs_report_json(const runs_report *rep, const runs_report_opts *o)
{
    const runs_run *r = &rep->run;
    json_t *root = json_object();
    json_t *settings = nas_json_load(r->settings_json ? r->settings_json : "{}", r->settings_json ? strlen(r->settings_json) : 2, 0, NULL, NULL);
    json_object_set_new(root, "run",
                        json_pack("{s:I, s:s, s:f, s:s, s:I, s:s, s:s, s:o}", "id",
                                  (json_int_t)r->id, "name", r->name, "created", r->created,
                                  "status", r->status, "seed", (json_int_t)r->seed, "hardware",
                                  r->hardware, "meter", r->meter, "settings",
                                  settings ? settings : json_object()));
    json_t *board = json_array(), *front = json_array(), *others = json_array();
    double target = energy_target(rep);
    json_object_set_new(root, "target_mj", jnum(target));
    for (int i = 0; i < rep->n; i++) {
        json_array_append_new(rep->rank[i] ? board : others, jcand(rep, i, target));
        if (rep->front[i])
            json_array_append_new(front, json_integer(rep->cands[i].seq));
    }
    json_object_set_new(root, "leaderboard", board);
    json_object_set_new(root, "unranked", others);
    json_object_set_new(root, "front_seqs", front);
    json_t *finals = json_array();
    for (int i = 0; i < rep->n; i++) {
        int k = rep->final_of ? rep->final_of[i] : -1;
        if (k < 0)
            continue;
        const runs_final *fi = &rep->finals[k];
        json_array_append_new(finals, json_pack("{s:i, s:o, s:o, s:o, s:i, s:i, s:i, s:o, s:o, s:b}", "seq",
                                                rep->cands[i].seq, "proxy_accuracy", jnum(rep->cands[i].accuracy),
                                                "val_accuracy", jnum(fi->val_acc), "test_accuracy",
                                                jnum(fi->test_acc), "epochs", fi->epochs, "train_images",
                                                fi->train_images, "test_images", fi->test_images, "joules",
                                                jfig(&fi->joules), "seconds", jnum(fi->seconds), "chosen",
                                                i == rep->chosen));
    }
    json_object_set_new(root, "final", finals);
    json_object_set_new(root, "chosen_seq",
                        rep->chosen >= 0 ? json_integer(rep->cands[rep->chosen].seq) : json_null());
    json_t *energy = json_array();
    for (int i = 0; i < rep->n_energy; i++) {
        const runs_energy_line *l = &rep->energy[i];
        json_t *e = json_pack("{s:s, s:s, s:f, s:i, s:f}", "source", l->source, "quality", l->quality,
                              "joules", l->joules, "candidates", l->n, "calibration_joules", l->calibration_j);
        if (isfinite(o->grid_gco2_kwh))
            json_object_set_new(e, "co2e_g", json_real(runs_co2e_grams(l->joules,
                                                                       o->grid_gco2_kwh)));
        json_array_append_new(energy, e);
    }
    json_object_set_new(root, "search_energy", energy);
    json_object_set_new(root, "grid_gco2_kwh", jnum(o->grid_gco2_kwh));
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!s)
        return NULL;
    char *out = nas_strdup(s);
    nas_free(s);
    return out;
}

/* ---- CSV ---------------------------------------------------------------------- */

/* A growable text buffer for the file writers; sticky out-of-memory flag. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *np = nas_realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

static void csv_str(sbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        sb_printf(b, "%s", s);
        return;
    }
    sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"')
            sb_printf(b, "\"\"");
        else
            sb_printf(b, "%c", *s);
    }
    sb_printf(b, "\"");
}

static void csv_num(sbuf *b, double v)
{
    if (isfinite(v))
        sb_printf(b, "%.10g", v);
}

static void csv_fig(sbuf *b, const runs_fig *f)
{
    if (runs_fig_known(f)) {
        csv_num(b, f->value);
        sb_printf(b, ",");
        csv_str(b, f->source);
        sb_printf(b, ",%s", f->quality);
    } else {
        sb_printf(b, ",,");
    }
}

static nas_status sb_write(sbuf *b, const char *path, nas_err *err)
{
    nas_status st = b->oom ? nas_errf(err, NAS_ENOMEM, "%s: out of memory", path)
                           : nas_write_file_atomic(path, b->p ? b->p : "", b->len, err);
    nas_free(b->p);
    return st;
}

nas_status runs_report_write_csv(const runs_report *rep, const char *path, nas_err *err)
{
    sbuf b = {0};
    sb_printf(&b, "rank,seq,status,genome,accuracy,reward,"
                  "energy_mj,energy_source,energy_quality,"
                  "pred_energy_mj,pred_energy_source,pred_energy_quality,"
                  "latency_ms,latency_source,latency_quality,"
                  "pred_latency_ms,pred_latency_source,pred_latency_quality,"
                  "params,macs,joules,joules_source,joules_quality,wall_s,attempts,front,chosen\n");
    for (int i = 0; i < rep->n; i++) {
        const runs_cand *c = &rep->cands[i];
        if (rep->rank[i])
            sb_printf(&b, "%d", rep->rank[i]);
        sb_printf(&b, ",%d,%s,", c->seq, runs_status_name(c->status));
        csv_str(&b, c->genome);
        sb_printf(&b, ",");
        csv_num(&b, c->accuracy);
        sb_printf(&b, ",");
        csv_num(&b, c->reward);
        const runs_fig *figs[] = {&c->energy_mj, &c->pred_energy_mj, &c->latency_ms,
                                  &c->pred_latency_ms};
        for (int k = 0; k < 4; k++) {
            sb_printf(&b, ",");
            csv_fig(&b, figs[k]);
        }
        sb_printf(&b, ",");
        csv_num(&b, c->params);
        sb_printf(&b, ",");
        csv_num(&b, c->macs);
        sb_printf(&b, ",");
        csv_fig(&b, &c->joules);
        sb_printf(&b, ",");
        csv_num(&b, c->wall_s);
        sb_printf(&b, ",%d,%d,%d\n", c->attempts, rep->front[i], i == rep->chosen);
    }
    return sb_write(&b, path, err);
}

/* ---- SVG ----------------------------------------------------------------------- */

/* Plot geometry (pixels). */
#define W 820
#define H 540
#define PL 78     /* plot area left */
#define PR 610    /* plot area right */
#define PT 62     /* plot area top */
#define PB 470    /* plot area bottom */

static void svg_text_escaped(sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '&': sb_printf(b, "&amp;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default:  sb_printf(b, "%c", *s);
        }
    }
}

typedef struct {
    double lo, hi;
    int log;
} axis;

static double ax_pos(const axis *a, double v, double p0, double p1)
{
    double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo))
                      : (v - a->lo) / (a->hi - a->lo);
    return p0 + t * (p1 - p0);
}

/* 1, 2 or 5 times a power of ten, near range/target. */
static double nice_step(double range, int target)
{
    double raw = range / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void tick_label(char *buf, size_t n, double v, double step)
{
    if (fabs(v) < 1e-12 * step)
        v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, n, "%.*f", dec > 6 ? 6 : dec, v);
}

nas_status runs_report_write_svg(const runs_report *rep, const char *path, nas_err *err)
{
    sbuf b = {0};
    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
    sb_printf(&b, "<text x=\"%d\" y=\"26\" font-size=\"17\" font-weight=\"bold\">Run ", PL);
    svg_text_escaped(&b, rep->run.name);
    sb_printf(&b, ": accuracy against energy per inference</text>\n");

    /* The points: ranked candidates with an energy figure. */
    double emin = INFINITY, emax = -INFINITY, amin = INFINITY, amax = -INFINITY;
    int npts = 0, nmeas = 0, nfront = 0;
    const char *esrc = NULL;
    for (int i = 0; i < rep->n; i++) {
        const char *q, *src;
        double e = runs_cand_energy(&rep->cands[i], &src, &q);
        if (!rep->rank[i] || !(e > 0))
            continue;
        npts++;
        nmeas += runs_quality_is_measured(q);
        nfront += rep->front[i];
        if (!esrc || runs_fig_known(&rep->cands[i].energy_mj))
            esrc = src;
        emin = fmin(emin, e);
        emax = fmax(emax, e);
        amin = fmin(amin, rep->cands[i].accuracy * 100);
        amax = fmax(amax, rep->cands[i].accuracy * 100);
    }
    double target = energy_target(rep);
    if (isfinite(target) && npts) {
        emin = fmin(emin, target);
        emax = fmax(emax, target);
    }
    sb_printf(&b, "<text x=\"%d\" y=\"46\" font-size=\"12\" fill=\"#555\">%d candidates plotted, "
                  "%d on the Pareto front; energy ", PL, npts, nfront);
    if (npts == 0)
        sb_printf(&b, "-");
    else if (nmeas == npts)
        sb_printf(&b, "measured");
    else if (nmeas == 0)
        sb_printf(&b, "estimated or predicted");
    else
        sb_printf(&b, "%d measured, %d estimated or predicted", nmeas, npts - nmeas);
    if (esrc && *esrc) {
        sb_printf(&b, " (");
        svg_text_escaped(&b, esrc);
        sb_printf(&b, ")");
    }
    sb_printf(&b, "</text>\n");

    if (npts == 0) {
        sb_printf(&b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                      "stroke=\"#999\"/>\n<text x=\"%d\" y=\"%d\" font-size=\"14\" "
                      "text-anchor=\"middle\" fill=\"#777\">no finished candidate with an "
                      "energy figure yet</text>\n</svg>\n",
                  PL, PT, PR - PL, PB - PT, (PL + PR) / 2, (PT + PB) / 2);
        return sb_write(&b, path, err);
    }

    /* Axes: log energy when it spans more than a factor of 20. */
    axis ax = {emin, emax, 0}, ay;
    if (emax / emin > 20) {
        /* Ends on the 1-2-5 ladder just outside the data, not whole decades. */
        static const double ladder[] = {1, 2, 5, 10};
        double dlo = pow(10, floor(log10(emin))), dhi = pow(10, floor(log10(emax)));
        ax.log = 1;
        ax.lo = dlo;
        for (int k = 0; k < 3; k++)
            if (dlo * ladder[k] <= emin * 0.97)
                ax.lo = dlo * ladder[k];
        ax.hi = dhi * 10;
        for (int k = 3; k >= 0; k--)
            if (dhi * ladder[k] >= emax * 1.03)
                ax.hi = dhi * ladder[k];
    } else {
        double span = emax - emin > 0 ? emax - emin : fmax(emax * 0.2, 1e-6);
        double step = nice_step(span * 1.1, 5);
        ax.lo = fmax(0, floor((emin - span * 0.05) / step) * step);
        ax.hi = ceil((emax + span * 0.05) / step) * step;
        if (ax.hi <= ax.lo)
            ax.hi = ax.lo + step;
    }
    double aspan = amax - amin > 0.5 ? amax - amin : 1.0;
    double astep = nice_step(aspan * 1.1, 6);
    ay.lo = fmax(0, floor((amin - aspan * 0.05) / astep) * astep);
    ay.hi = fmin(100, ceil((amax + aspan * 0.05) / astep) * astep);
    if (ay.hi <= ay.lo)
        ay.hi = ay.lo + astep;
    ay.log = 0;

    /* Grid, ticks and labels. */
    sb_printf(&b, "<g font-size=\"11\" fill=\"#333\">\n");
    for (double v = ay.lo; v <= ay.hi + astep * 1e-6; v += astep) {
        double y = ax_pos(&ay, v, PB, PT);
        char lab[32];
        tick_label(lab, sizeof lab, v, astep);
        sb_printf(&b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                      "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#333\"/>"
                      "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                  PL, y, PR, y, PL - 5, y, PL, y, PL - 8, y + 4, lab);
    }
    if (ax.log) {
        double decades = log10(ax.hi / ax.lo);
        for (double d = pow(10, floor(log10(ax.lo) + 1e-9)); d <= ax.hi * 1.0001; d *= 10) {
            static const double mult[] = {1, 2, 5};
            for (int k = 0; k < 3; k++) {
                double v = d * mult[k];
                if (v < ax.lo * 0.9999 || v > ax.hi * 1.0001 || (k > 0 && decades > 3.5))
                    continue;
                double x = ax_pos(&ax, v, PL, PR);
                char lab[32];
                snprintf(lab, sizeof lab, "%g", v);
                sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\"/>"
                              "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>"
                              "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                          x, PT, x, PB, k ? "#f0f0f0" : "#e4e4e4", x, PB, x, PB + 5, x, PB + 18,
                          lab);
            }
        }
    } else {
        double step = nice_step((ax.hi - ax.lo), 6);
        for (double v = ax.lo; v <= ax.hi + step * 1e-6; v += step) {
            double x = ax_pos(&ax, v, PL, PR);
            char lab[32];
            tick_label(lab, sizeof lab, v, step);
            sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e4e4e4\"/>"
                          "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>"
                          "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                      x, PT, x, PB, x, PB, x, PB + 5, x, PB + 18, lab);
        }
    }
    sb_printf(&b, "</g>\n<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                  "stroke=\"#333\"/>\n", PL, PT, PR - PL, PB - PT);
    sb_printf(&b, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">energy per "
                  "inference (mJ%s)</text>\n", (PL + PR) / 2, PB + 40, ax.log ? ", log scale" : "");
    sb_printf(&b, "<text x=\"22\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\" "
                  "transform=\"rotate(-90 22 %d)\">accuracy (%%)</text>\n", (PT + PB) / 2,
              (PT + PB) / 2);

    if (isfinite(target)) {
        double x = ax_pos(&ax, target, PL, PR);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#d62728\" "
                      "stroke-dasharray=\"6 4\"/><text x=\"%.1f\" y=\"%d\" font-size=\"11\" "
                      "fill=\"#d62728\" text-anchor=\"middle\">target %g mJ</text>\n",
                  x, PT, x, PB, x, PT - 4, target);
    }

    /* The front as a staircase: each point holds its accuracy until the next. */
    int *fr = nas_calloc((size_t)nfront + 1, sizeof *fr);
    int nf = 0;
    for (int i = 0; fr && i < rep->n; i++) {
        double e = runs_cand_energy(&rep->cands[i], NULL, NULL);
        if (rep->front[i] && e > 0)
            fr[nf++] = i;
    }
    for (int i = 1; i < nf; i++)
        for (int k = i; k > 0 && runs_cand_energy(&rep->cands[fr[k]], NULL, NULL) <
                                     runs_cand_energy(&rep->cands[fr[k - 1]], NULL, NULL); k--) {
            int t = fr[k];
            fr[k] = fr[k - 1];
            fr[k - 1] = t;
        }
    if (nf > 0) {
        sb_printf(&b, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.8\" points=\"");
        for (int k = 0; k < nf; k++) {
            const runs_cand *c = &rep->cands[fr[k]];
            double x = ax_pos(&ax, runs_cand_energy(c, NULL, NULL), PL, PR);
            double y = ax_pos(&ay, c->accuracy * 100, PB, PT);
            if (k > 0) {
                double yprev = ax_pos(&ay, rep->cands[fr[k - 1]].accuracy * 100, PB, PT);
                sb_printf(&b, "%.1f,%.1f ", x, yprev);
            }
            sb_printf(&b, "%.1f,%.1f ", x, y);
        }
        sb_printf(&b, "\"/>\n");
    }
    nas_free(fr);

    /* Points: others grey under the front; filled = measured, hollow = estimated. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < rep->n; i++) {
            const runs_cand *c = &rep->cands[i];
            const char *q;
            double e = runs_cand_energy(c, NULL, &q);
            if (!rep->rank[i] || !(e > 0) || rep->front[i] != pass)
                continue;
            double x = ax_pos(&ax, e, PL, PR), y = ax_pos(&ay, c->accuracy * 100, PB, PT);
            const char *col = pass ? "#1f77b4" : "#9a9a9a";
            int meas = runs_quality_is_measured(q);
            sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\" stroke=\"%s\" "
                          "stroke-width=\"1.5\"><title>#%d %s: %.2f%%, %.3g mJ (%s)</title>"
                          "</circle>\n",
                      x, y, pass ? 5 : 4, meas ? col : "white", col, c->seq, c->genome,
                      c->accuracy * 100, e, q);
        }
    }
    if (rep->chosen >= 0) {
        const runs_cand *c = &rep->cands[rep->chosen];
        double e = runs_cand_energy(c, NULL, NULL);
        if (e > 0) {
            double x = ax_pos(&ax, e, PL, PR), y = ax_pos(&ay, c->accuracy * 100, PB, PT);
            sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"10\" fill=\"none\" stroke=\"#d62728\" "
                          "stroke-width=\"2.2\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" "
                          "fill=\"#d62728\" font-weight=\"bold\" stroke=\"white\" "
                          "stroke-width=\"3\" paint-order=\"stroke\"%s>chosen #%d</text>\n",
                      x, y,
                      /* Straight above a front point is empty (a point there would
                       * dominate it), so the label goes there, inside the plot. */
                      fmin(fmax(x, PL + 40.0), PR - 40.0), y - 15,
                      " text-anchor=\"middle\"", c->seq);
        }
    }

    /* Legend, right of the plot. */
    int lx = PR + 24, ly = PT + 8;
    sb_printf(&b, "<g font-size=\"12\">\n"
                  "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">Legend</text>\n", lx, ly);
    ly += 22;
    sb_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1f77b4\" "
                  "stroke-width=\"1.8\"/><circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"#1f77b4\"/>"
                  "<text x=\"%d\" y=\"%d\">Pareto front</text>\n",
              lx, ly - 4, lx + 24, ly - 4, lx + 12, ly - 4, lx + 32, ly);
    ly += 22;
    sb_printf(&b, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"#9a9a9a\"/>"
                  "<text x=\"%d\" y=\"%d\">other candidates</text>\n", lx + 12, ly - 4, lx + 32, ly);
    ly += 22;
    sb_printf(&b, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"#555\" stroke=\"#555\"/>"
                  "<text x=\"%d\" y=\"%d\">energy measured</text>\n", lx + 12, ly - 4, lx + 32, ly);
    ly += 22;
    sb_printf(&b, "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"white\" stroke=\"#555\" "
                  "stroke-width=\"1.5\"/><text x=\"%d\" y=\"%d\">energy estimated</text>\n"
                  "<text x=\"%d\" y=\"%d\">or predicted</text>\n",
              lx + 12, ly - 4, lx + 32, ly, lx + 32, ly + 15);
    ly += 37;
    sb_printf(&b, "<circle cx=\"%d\" cy=\"%d\" r=\"9\" fill=\"none\" stroke=\"#d62728\" "
                  "stroke-width=\"2.2\"/><text x=\"%d\" y=\"%d\">chosen model</text>\n",
              lx + 12, ly - 4, lx + 32, ly);
    if (isfinite(target)) {
        ly += 22;
        sb_printf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#d62728\" "
                      "stroke-dasharray=\"6 4\"/><text x=\"%d\" y=\"%d\">energy target</text>\n",
                  lx, ly - 4, lx + 24, ly - 4, lx + 32, ly);
    }
    if (rep->chosen >= 0) {
        const runs_cand *c = &rep->cands[rep->chosen];
        const char *q;
        double e = runs_cand_energy(c, NULL, &q);
        ly += 36;
        sb_printf(&b, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">Chosen #%d</text>\n", lx, ly,
                  c->seq);
        sb_printf(&b, "<text x=\"%d\" y=\"%d\">accuracy %.2f%%</text>\n", lx, ly + 17,
                  c->accuracy * 100);
        if (isfinite(e))
            sb_printf(&b, "<text x=\"%d\" y=\"%d\">%.3g mJ (%s)</text>\n", lx, ly + 34, e, q);
        if (isfinite(c->params))
            sb_printf(&b, "<text x=\"%d\" y=\"%d\">%.3gk params</text>\n", lx, ly + 51,
                      c->params / 1e3);
    }
    sb_printf(&b, "</g>\n</svg>\n");
    return sb_write(&b, path, err);
}
