/* cmd_calibrate.c — `nas calibrate`: measure sampled networks on this machine
 * (or through an external command on a target device), fit the latency and
 * energy predictor, report its cross-validated accuracy, save it. */
#include "base/progress.h"
#include "cli/cli.h"
#include "app/app.h"
#include "evaluator/ev.h"
#include "predictor/pred.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: nas calibrate [options]\n\n"
               "Samples N networks that cover the search space (stratified over every choice),\n"
               "measures latency and energy per inference of each, fits whole-network and\n"
               "block-level XGBoost models, keeps the more accurate by k-fold cross-validation,\n"
               "then measures more networks near those predicted worse than +-10%% (up to\n"
               "--max-samples) and refits. Prints the cross-validated accuracy: share of held-out\n"
               "networks within +-5%% and +-10%%, MAPE, RMSE, Kendall tau. The same settings\n"
               "make a job file's calibrate: section ('nas run').\n\n");
    app_settings_help(f, APP_CALIBRATE);
    fprintf(f, "\nexample:\n  %s\n", "nas calibrate --samples 60 --out predictor.json");
}

/* The status line: which phase, network k of N, elapsed and ETA of the phase. */
typedef struct {
    nas_progress line;
    char phase[16];
} calib_progress;

static void progress(void *ctx, const char *phase, int done, int total)
{
    calib_progress *cp = ctx;
    if (!strcmp(phase, "skipped"))   /* the failures are reported at the end */
        return;
    if (strcmp(phase, cp->phase)) {   /* a new phase times itself */
        snprintf(cp->phase, sizeof cp->phase, "%s", phase);
        cp->line.t0 = cp->line.now();
        cp->line.last = -HUGE_VAL;
    }
    char el[32], eta[32];
    nas_progress_duration(nas_progress_elapsed(&cp->line), el, sizeof el);
    nas_progress_duration(nas_progress_eta(&cp->line, total > 0 ? (double)done / total : NAN), eta, sizeof eta);
    nas_progress_show(&cp->line, "calibrate: %s %d of %d%s | %s, ETA %s", !strcmp(phase, "fit") ? "fitting model" : phase,
                      done, total, !strcmp(phase, "fit") ? "" : " networks", el, eta);
    if (done == total)
        nas_progress_clear(&cp->line);
}

static json_t *metrics_json(const pred_metrics *m)
{
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "n", m->n, "within5", m->within5, "within10",
                     m->within10, "mape", m->mape, "rmse", m->rmse, "max_rel", m->max_rel, "kendall_tau",
                     m->kendall_tau);
}

int cmd_calibrate(int argc, char **argv)
{
    app_settings s;
    app_settings_defaults(&s);
    int rc = cli_flags_parse("calibrate", APP_CALIBRATE, argc, argv, &s, usage);
    if (rc < 0)
        rc = cli_calibrate_run(&s);
    return rc;
}


static int print_json(const pred_calib_opts *o, const pred_calib_report *rep, const pred_model *m, const char *out,
                       double secs)
{
    static const char *const tname[2] = {"latency_ms", "energy_mj"};
    const pred_hw *hw = pred_model_hw(m);
    json_t *root = json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:{s:s, s:i, s:i, s:s, s:s}, s:f, s:f}",
                             "predictor", out, "samples", rep->samples, "adaptive_added", rep->adaptive_added,
                             "rounds", rep->rounds, "remeasured", rep->remeasured, "reference_drift", rep->reference_drift, "seconds", secs, "measure_seconds", rep->measure_seconds,
                             "fit_seconds", rep->fit_seconds, "hardware", "cpu_model", hw->cpu_model, "cores",
                             hw->cores, "threads", hw->threads, "meter", hw->meter, "measure", hw->measure,
                             "median_latency_spread", rep->median_latency_spread, "median_energy_spread",
                             rep->median_energy_spread);
    if (root) {
        json_object_set_new(root, "latency_stat", json_string(pred_model_latency_stat(m)));
        json_object_set_new(root, "passes", json_integer(o->refit ? 0 : o->passes));
        json_object_set_new(root, "failed", json_integer(rep->failed));
        if (rep->retest.n > 0)
            json_object_set_new(root, "retest", metrics_json(&rep->retest));
        if (rep->holdout[0].n > 0)
            json_object_set_new(root, "holdout", json_pack("{s:o, s:o}", "latency_ms", metrics_json(&rep->holdout[0]),
                                                           "energy_mj", metrics_json(&rep->holdout[1])));
    }
    for (int t = 0; root && t < 2; t++)
        json_object_set_new(root, tname[t],
                            json_pack("{s:s, s:o, s:o}", "kept", pred_kind_name(rep->kept[t]), "net",
                                      metrics_json(&rep->cv[t][PRED_KIND_NET]), "block",
                                      metrics_json(&rep->cv[t][PRED_KIND_BLOCK])));
    return cli_print_json(root, JSON_PRESERVE_ORDER);
}

static void print_text(const pred_calib_opts *o, const pred_calib_report *rep, const pred_model *m, const char *out,
                       double secs)
{
    static const char *const tname[2] = {"latency_ms", "energy_mj"};
    const pred_hw *hw = pred_model_hw(m);
    printf("%s on %d networks (%d added where held-out error was over 10%%, %d rounds) in %.1f s\n"
           "  (measuring %.1f s, fitting %.1f s)\n",
           o->refit ? "refit" : "calibrated", rep->samples, rep->adaptive_added, rep->rounds, secs,
           rep->measure_seconds, rep->fit_seconds);
    printf("hardware: %s, %d cores, %d threads; energy from %s\n", hw->cpu_model, hw->cores, hw->threads,
           hw->meter);
    printf("measurement spread (median (p90-p10)/median): latency %.1f%%, energy %.1f%%; "
           "%d measurements taken again as unsteady\n",
           100 * rep->median_latency_spread, 100 * rep->median_energy_spread, rep->remeasured);
    printf("latency figure: %s%s\n", pred_model_latency_stat(m),
           !strcmp(pred_model_latency_stat(m), "p10") ? " (10th percentile of single inferences)"
           : !strcmp(pred_model_latency_stat(m), "median") ? " (median of single inferences)"
                                                          : " (as the measuring command reports it)");
    if (rep->retest.n > 0)
        printf("test-retest (two measurements of each of %d networks, minutes apart): %.1f%% agree within 10%%, "
               "%.1f%% within 5%%, mean difference %.2f%%\n",
               rep->retest.n, 100 * rep->retest.within10, 100 * rep->retest.within5, 100 * rep->retest.mape);
    if (rep->references > 0)
        printf("reference network: median %.4g ms over %d measurements, drift (p90-p10)/median %.1f%%\n",
               rep->reference_ms, rep->references, 100 * rep->reference_drift);
    printf("%d-fold cross-validated accuracy on held-out networks:\n", o->folds);
    printf("  %-10s %-6s %8s %8s %7s %10s %7s\n", "target", "model", "+-5%", "+-10%", "MAPE", "RMSE", "tau");
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++) {
            const pred_metrics *x = &rep->cv[t][k];
            printf("  %-10s %-6s %7.1f%% %7.1f%% %6.2f%% %10.4g %7.3f%s\n", tname[t],
                   pred_kind_name((pred_kind)k), 100 * x->within5, 100 * x->within10, 100 * x->mape,
                   x->rmse, x->kendall_tau, rep->kept[t] == (pred_kind)k ? "  (kept)" : "");
        }
    if (rep->holdout[0].n > 0)
        for (int t = 0; t < 2; t++)
            printf("hold-out: %d fresh networks, never fit on: %s %.1f%% within +-10%%, %.1f%% within +-5%%, "
                   "MAPE %.2f%%, tau %.3f\n", rep->holdout[t].n, tname[t], 100 * rep->holdout[t].within10,
                   100 * rep->holdout[t].within5, 100 * rep->holdout[t].mape, rep->holdout[t].kendall_tau);
    printf("predictor written to %s\n", out);
}

int cli_calibrate_run(const app_settings *s)
{
    const char *cmd = "calibrate";
    int rc = cli_settings_check(cmd, APP_CALIBRATE, s);
    if (rc >= 0)
        return rc;
    pred_calib_opts o;
    app_measure_ctx mctx;
    app_calib_setup(s, &o, &mctx);
    const char *out = s->cal_out;
    const char *refit = s->cal_refit[0] ? s->cal_refit : NULL;
    calib_progress cprog = {.phase = ""};   /* on stderr, on a terminal or not */
    nas_progress_init(&cprog.line, stderr, cli_progress_enabled(), 5.0);
    o.progress = progress;
    o.progress_ctx = &cprog;
    nas_err err;
    nas_err_clear(&err);
    pred_model *from = NULL;
    if (refit) {
        nas_status lst = pred_load_measurements(refit, &from, &err);
        if (lst != NAS_OK)
            return cli_fail(cmd, lst, &err);
        o.refit = from;
    } else {
        nas_status ready = app_measure_ready(&mctx, &err);
        if (ready != NAS_OK)
            return cli_fail(cmd, ready, &err);
    }
    pred_model *m = NULL;
    pred_calib_report rep;
    double t0 = nas_now();
    /* a signal stops measuring after the network in hand; nothing is written,
     * as there is no partial predictor to keep (run it again, or --refit one) */
    nas_sig_install(cmd, "after the network being measured (nothing will be written)");
    nas_status st = pred_calibrate(&o, app_measure, &mctx, &m, &rep, &err);
    app_measure_close(&mctx);
    pred_free(from);
    if (st == NAS_EINTR) {   /* (a signal during the fit lets it finish and write) */
        int code = nas_exit_code(st);
        fprintf(stderr, "nas %s: stopped by %s after %.1f s; %s was not written\n", cmd,
                nas_sig_name(nas_sig_caught()), nas_now() - t0, out);
        nas_sig_uninstall();
        return code;
    }
    nas_sig_uninstall();
    if (st != NAS_OK)
        return cli_fail(cmd, st, &err);
    if (rep.failed > 0)
        fprintf(stderr, "nas calibrate: warning: %d network(s) could not be measured and were left out; the "
                "first: %s\n", rep.failed, rep.first_failure);
    double secs = nas_now() - t0;
    st = pred_save(m, out, &err);
    if (st != NAS_OK) {
        pred_free(m);
        return cli_fail(cmd, st, &err);
    }
    int bad = 0;
    if (s->json)
        bad = print_json(&o, &rep, m, out, secs);
    else
        print_text(&o, &rep, m, out, secs);
    pred_free(m);
    if (bad)
        return cli_fail(cmd, NAS_ENOMEM, &(nas_err){.msg = "out of memory writing the JSON report"});
    return 0;
}
