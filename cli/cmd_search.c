/* cmd_search.c — `nas search`: flags into settings, the search session
 * (app/search.c) run on them, and its results on stdout: a leaderboard, the
 * Pareto front and the chosen spec, or one JSON object with --json. Progress
 * and the status line go to stderr, from the session. */
#include "app/app.h"
#include "cli/cli.h"
#include "cli/search_cli.h"
#include "evaluator/ev.h"
#include "runs/runs.h"
#include "search/search.h"
#include "space/space.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "search";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas search --data mnist|fashion-mnist|idx:DIR|cifar10:DIR [budgets] [target] [options]\n\n"
            "Searches MobileNet/EfficientNet-style networks for the best accuracy for the energy\n"
            "(or latency) they cost per inference, within a budget of the energy the search itself\n"
            "spends, as the meter reports it. Each candidate is trained briefly (the proxy task);\n"
            "one whose estimated cost would cross a budget is not started. Whichever budget is\n"
            "reached first stops the search; at least one is required.\n\n");
    app_settings_help(f, APP_SEARCH);
    fprintf(f, "\nexample:\n  %s\n", "nas search --data mnist --budget-joules 2000 --budget-evals 24 --target-mj 2 --name my-search");
}

/* ---- output ------------------------------------------------------------------ */

static void print_stopped_early(const search_loop *l, const int *idx, int n)
{
    int any = 0;
    for (int i = 0; i < n; i++) {
        const search_result *r = search_loop_result(l, idx[i]);
        if (!r->eval.stopped_early)
            continue;
        printf("%s #%ld", any ? "" : "stopped early at their joule allowance (accuracy as trained then):", r->id);
        any = 1;
    }
    if (any)
        printf("\n");
}

static void print_text(const app_settings *s, const app_search *c, const search_loop *l, search_stop why, int top)
{
    search_progress p;
    search_loop_progress(l, &p);
    const search_budget *b = search_loop_budget(l);
    printf("search: %s, %ld evaluations (+%ld screened, %ld seen before), %.0f s; stopped: %s\n",
           search_kind_name(search_strategy_kind(search_loop_strategy(l))), p.evals, p.screened, p.cached,
           p.seconds, search_stop_name(why));
    printf("energy spent by the search: %.1f J", b->joules);
    if (b->lim.joules > 0)
        printf(" of %.0f J (%.1f J counting the meter's uncertainty)", b->lim.joules, b->joules_hi);
    if (b->meter[0])
        printf(", %s, %s\n", b->meter, search_budget_quality(b));
    else   /* nothing was charged: the run's own meter says what it would have been */
        printf(", %s, %s\n", ev_meter_source(app_search_meter(c)), ev_quality_name(ev_meter_quality(app_search_meter(c))));
    if (b->calib_joules > 0)
        printf("  of it, calibrating the predictor for this machine: %.1f J\n", b->calib_joules);
    if (app_settings_int8(s))
        printf("energy and latency per inference below are of the int8 model, in nas's int8 engine (--deploy int8)\n");
    if (p.n_checked)
        printf("predictor on %d measured candidates: energy MAPE %.1f%% (%.0f%% within 10%%), latency MAPE %.1f%%\n",
               p.n_checked, p.pred_mape_mj, 100 * p.pred_within10_mj, p.pred_mape_ms);
    int *idx = nas_malloc((size_t)(top > 0 ? top : 1) * sizeof *idx);
    int n = idx ? search_loop_leaderboard(l, idx, top) : 0;
    printf("\nleaderboard (feasible candidates, by reward; energy_mJ benchmarked by %s, its quality beside it):\n",
           ev_meter_source(app_search_meter(c)));
    printf("%4s %6s %8s %10s %10s %-9s %10s %10s %9s %8s %8s\n", "rank", "id", "accuracy", "pred_mJ", "energy_mJ",
           "quality", "pred_ms", "meas_ms", "params", "MMACs", "reward");
    for (int i = 0; i < n; i++) {
        const search_result *r = search_loop_result(l, idx[i]);
        double params, macs;
        app_search_figures(c, &r->genome, &params, &macs, NULL);
        printf("%4d %6ld %8.4f %10.4g %10.4g %-9s %10.4g %10.4g %9.0f %8.2f %8.4f\n", i + 1, r->id, r->eval.accuracy,
               r->pred.energy_mj > 0 ? r->pred.energy_mj : NAN, r->eval.energy_mj > 0 ? r->eval.energy_mj : NAN,
               r->eval.energy_mj > 0 ? search_eval_quality(&r->eval) : "-", r->pred.latency_ms > 0 ? r->pred.latency_ms : NAN, r->eval.latency_ms > 0 ? r->eval.latency_ms : NAN,
               params, macs / 1e6, r->reward);
    }
    print_stopped_early(l, idx, n);
    nas_free(idx);
    const search_front *f = search_loop_front(l);
    printf("\nPareto front (accuracy against energy per inference), hypervolume %.4g (reference 0 accuracy, %.4g mJ):\n",
           p.hypervolume, search_loop_hv_ref(l));
    for (int i = 0; i < f->n; i++)
        printf("  #%-5ld accuracy %.4f  %.4g mJ\n", f->p[i].id, f->p[i].accuracy, f->p[i].energy_mj);
    const search_result *best = search_loop_best(l);
    if (best) {
        double params, macs;
        char *js;
        app_search_figures(c, &best->genome, &params, &macs, &js);
        printf("\nchosen: #%ld (accuracy %.4f, %.4g mJ, %.4g ms, %.0f params, %.2f MMACs):\n%s\n", best->id,
               best->eval.accuracy, best->energy_mj, best->latency_ms, params, macs / 1e6, js ? js : "?");
        nas_free(js);
    } else {
        printf("\nno candidate met the target\n");
    }
}

static int print_json(const app_settings *s, const app_search *c, const search_loop *l, search_stop why, int top,
                      void *final, json_t *prune)
{
    char *rep = search_loop_report_json(l, why, top);
    json_t *root = rep ? nas_json_load(rep, strlen(rep), 0, NULL, NULL) : NULL;
    nas_free(rep);
    if (!root)
        return -1;
    /* what every energy_mj and latency_ms of the report are per inference of */
    json_object_set_new(root, "deploy", json_string(app_settings_int8(s) ? "int8" : "float32"));
    const search_result *best = search_loop_best(l);
    if (best) {
        double params, macs;
        char *js;
        app_search_figures(c, &best->genome, &params, &macs, &js);
        json_t *spec = js ? nas_json_load(js, strlen(js), 0, NULL, NULL) : NULL;
        nas_free(js);
        json_object_set_new(root, "chosen_spec", spec ? spec : json_null());
        json_object_set_new(json_object_get(root, "best"), "params", json_real(params));
        json_object_set_new(json_object_get(root, "best"), "macs", json_real(macs));
    }
    if (final)
        json_object_set_new(root, "final", final);
    if (prune)
        json_object_set_new(root, "prune", prune);
    return cli_print_json(root, JSON_COMPACT);
}

/* The chosen model as ONNX into the run's export folder: the finally trained
 * one when there is one, else the search's own (weights from the store). */
static void export_chosen(const app_settings *s, const app_search *c)
{
    char path[800], name[80], dir[600];
    nas_err err = {0};
    fflush(stdout);
    if (app_search_final(c)) {
        if (app_search_export(c, path, sizeof path, &err) == NAS_OK)
            printf("exported the finally trained model to %s\n", path);
        else
            fprintf(stderr, "nas search: the finally trained model was not exported: %s\n", err.msg);
        return;
    }
    if (app_search_run_name(c, name, sizeof name, &err)) {
        fprintf(stderr, "nas search: the chosen model was not exported: %s\n", err.msg);
        return;
    }
    if (s->export_dir[0])
        snprintf(dir, sizeof dir, "%s", s->export_dir);
    else
        snprintf(dir, sizeof dir, "out/%s", name);
    ev_quant_opts q;
    app_settings_quant(s, &q);
    if (cli_export_top(name, app_search_db(c), dir, app_settings_int8_export(s) ? &q : NULL) == 0)
        printf("exported the chosen model to %s/\n", dir);
    else
        fprintf(stderr, "nas search: the chosen model was not exported (above: why)\n");
}

/* A job's prune: section, after the export. A failure here leaves the run
 * and its export as they are (the search succeeded) but exits 1. With --json
 * it runs before the report, which then carries its figures (*pj). */
static int prune_exported(const char *cmd, const app_settings *s, const app_search *c, json_t **pj)
{
    app_prune_result r;
    nas_err err = {0};
    fflush(stdout);
    if (app_search_prune(c, &r, &err)) {
        fprintf(stderr, "nas %s: the finally trained model was not pruned: %s (the run and its export are kept)\n",
                cmd, err.msg);
        if (pj)
            *pj = json_pack("{s:s}", "error", err.msg);
        return 1;
    }
    if (pj)
        *pj = cli_prune_json(&r);
    else
        cli_prune_print(&r);
    return 0;
}

/* Rank 0 prints; every rank runs. */
static int report(const app_settings *s, const app_search *c, search_stop why, json_t *prune, nas_err *err)
{
    const app_final_report *fin = app_search_final(c);
    const search_loop *l = app_search_loop(c);
    if (s->json ? print_json(s, c, l, why, (int)s->top, fin ? app_final_json(fin) : NULL, prune)
                : (print_text(s, c, l, why, (int)s->top), 0))
        return nas_errf(err, NAS_ENOMEM, "out of memory writing the report");
    if (fin && !s->json)
        app_final_print(fin, stdout);
    if (app_search_db(c) && !s->json && !s->no_export && search_loop_best(l) && why != SEARCH_STOP_REQUESTED)
        export_chosen(s, c);
    return NAS_OK;
}

int cli_search_execute(const char *cmd, const app_settings *s, search_dist *d)
{
    app_search *c = NULL;
    nas_err err = {0};
    int root = search_dist_rank(d) == 0, final_failed = 0;
    search_stop why = SEARCH_STOP_NONE;
    nas_status st = app_search_open(cmd, s, d, cli_progress_enabled(), &c, &err);
    if (!st)
        st = app_search_run(c, &why, &final_failed, &err);
    int rc = 0, prune = !st && root && app_search_final(c) && app_search_wants_prune(s) && why != SEARCH_STOP_REQUESTED;
    json_t *pj = NULL;
    if (prune && s->json)
        rc = prune_exported(cmd, s, c, &pj);
    if (!st && root)
        st = report(s, c, why, pj, &err);
    else
        json_decref(pj);
    if (prune && !s->json)
        rc = prune_exported(cmd, s, c, NULL);
    if (st) {
        rc = root ? cli_fail(cmd, st, &err) : 1;
        if (!final_failed)
            app_search_failed(c);
    } else if (why == SEARCH_STOP_REQUESTED) {
        int sig = app_search_signal(c);
        rc = sig ? 128 + sig : 1;
    }
    app_search_close(c);
    return rc;
}

int cmd_search(int argc, char **argv)
{
    search_dist *d = NULL;
    nas_err err = {0};
    nas_status st = search_dist_init(&argc, &argv, &d, &err);
    if (st)
        return cli_fail(CMD, st, &err);
    if (search_dist_rank(d) != 0) {   /* workers print nothing: rank 0 tells */
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
    }
    app_settings s;
    app_settings_defaults(&s);
    int rc = cli_flags_parse(CMD, APP_SEARCH, argc, argv, &s, usage);
    if (rc < 0)
        rc = cli_settings_check(CMD, APP_SEARCH, &s);
    /* workers print nothing: usage errors are rank 0's to tell */
    if (rc < 0)
        rc = cli_search_execute(CMD, &s, d);
    search_dist_finish(d);
    return rc;
}
