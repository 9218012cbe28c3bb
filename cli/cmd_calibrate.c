/* cmd_calibrate.c — `nas calibrate`: measure sampled networks on this machine
 * (or through an external command on a target device), fit the latency and
 * energy predictor, report its cross-validated accuracy, save it. */
#include "base/progress.h"
#include "cli/cli.h"
#include "cli/measure.h"
#include "evaluator/ev.h"
#include "predictor/pred.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas calibrate [--samples N] [--max-samples N] [--out FILE] [--measure-cmd CMD [--measure-timeout S]]\n"
            "                     [--threads T] [--repeats N] [--min-seconds S] [--folds K]\n"
            "                     [--passes P] [--latency-stat p10|median] [--max-spread X] [--reference]\n"
            "                     [--adaptive-rounds R] [--seed S] [--holdout N] [--refit FILE]\n"
            "                     [--resolution R] [--in-channels C] [--classes K] [--max-width W] [--json]\n\n"
            "Samples N networks that cover the search space (stratified over every choice),\n"
            "measures latency and energy per inference of each, fits whole-network and\n"
            "block-level XGBoost models, keeps the more accurate by k-fold cross-validation,\n"
            "then measures more networks near those predicted worse than +-10%% (up to\n"
            "--max-samples) and refits. Prints the cross-validated accuracy: share of held-out\n"
            "networks within +-5%% and +-10%%, MAPE, RMSE, Kendall tau.\n\n"
            "  --samples N        networks of the first round (default 300)\n"
            "  --max-samples N    cap including adaptive rounds (default 1.5 x samples)\n"
            "  --out FILE         predictor file to write (default predictor.json)\n"
            "  --measure-cmd CMD  measure with a command instead of this machine: run by /bin/sh\n"
            "                     per network, '{spec}' replaced by the path of the spec's JSON\n"
            "                     and '{onnx}' by an ONNX export of the network (seeded weights);\n"
            "                     it prints 'latency_ms=<ms>' and 'energy_mj=<mJ>' lines (optional:\n"
            "                     latency_spread=, energy_spread= (p90-p10)/median, energy_source=,\n"
            "                     energy_quality=measured|sampled|estimated)\n"
            "  --measure-timeout S  seconds the command may take per network before it is killed\n"
            "                     and the network skipped (default 600; 0: no limit)\n"
            "  --threads T        threads the built-in benchmark uses (default 1); recorded\n"
            "  --repeats N        built-in benchmark: timed repeats per network (default 5)\n"
            "  --min-seconds S    built-in benchmark: each repeat loops at least S s (default 0.05;\n"
            "                     with a RAPL or perf meter 0.5 or more gives steadier energy)\n"
            "  --passes P         measure every network P times (1-3, default 2), each pass after\n"
            "                     the whole batch of networks, so a network's measurements are\n"
            "                     minutes apart; the fastest is fit (neighbours on the machine only\n"
            "                     ever slow a measurement down). The first two passes against each\n"
            "                     other are printed as test-retest agreement\n"
            "  --latency-stat S   built-in benchmark: the latency figure measured and predicted:\n"
            "                     p10 (default), the 10th percentile of single inferences, or median.\n"
            "                     On a shared machine neighbours slow whole stretches of calls; the\n"
            "                     fast tenth is the network's own speed and repeats far better\n"
            "                     (in calibrations on this project's 2-core VM, the test-retest\n"
            "                     agreement within 10%% was 86-96%% with p10 and 72%% with the median)\n"
            "  --max-spread X     measure a network again (twice at most) when its latency spread\n"
            "                     (p90-p10)/median is over X (default 0.15; 0: never)\n"
            "  --reference        measure a reference network before and after each network, scale\n"
            "                     each measurement by how fast the machine ran around it, and take\n"
            "                     again one taken while the machine ran unsteadily or slower than\n"
            "                     usual: for a machine whose speed drifts for minutes at a time.\n"
            "                     It doubles the measuring time (--no-reference: off, the default)\n"
            "  --holdout N        after fitting, measure N fresh networks (sampled uniformly, never\n"
            "                     fit on) and print the predictor's accuracy on them (default 0)\n"
            "  --refit FILE       fit again on the measurements recorded in the predictor FILE,\n"
            "                     measuring nothing (its space, hardware and labels are kept)\n"
            "  --folds K          cross-validation folds (default 5)\n"
            "  --adaptive-rounds R  refinement rounds at most (default 2)\n"
            "  --resolution R --in-channels C --classes K --max-width W\n"
            "                     the space to calibrate (default 28, 1, 10, 1.0: MNIST)\n");
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
    const char *cmd = "calibrate";
    pred_calib_opts o;
    pred_calib_opts_default(&o);
    o.reference = 0;
    o.passes = 2;
    long samples = 300, max_samples = -1, threads = 1, folds = 5, rounds = 2, seed = 1;
    long res = 28, in_ch = 1, classes = 10;
    double max_w = 1.0, min_s = -1, timeout = 600;
    long repeats = -1, passes = 2, hold = 0;
    const char *stat = "p10", *refit = NULL;
    const char *out = "predictor.json", *mcmd = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--no-reference") || !strcmp(a, "--reference")) {
            o.reference = !strcmp(a, "--reference");
            continue;
        }
        int bad = 1;
        if (!strcmp(a, "--samples"))
            bad = cli_parse_int(v, 20, 100000, &samples);
        else if (!strcmp(a, "--max-samples"))
            bad = cli_parse_int(v, 20, 100000, &max_samples);
        else if (!strcmp(a, "--threads"))
            bad = cli_parse_int(v, 1, 1024, &threads);
        else if (!strcmp(a, "--folds"))
            bad = cli_parse_int(v, 2, 20, &folds);
        else if (!strcmp(a, "--adaptive-rounds"))
            bad = cli_parse_int(v, 0, 20, &rounds);
        else if (!strcmp(a, "--seed"))
            bad = cli_parse_int(v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "--resolution"))
            bad = cli_parse_int(v, 8, 1024, &res);
        else if (!strcmp(a, "--in-channels"))
            bad = cli_parse_int(v, 1, 4, &in_ch);
        else if (!strcmp(a, "--classes"))
            bad = cli_parse_int(v, 2, 100000, &classes);
        else if (!strcmp(a, "--max-width"))
            bad = cli_parse_double(v, 0.25, 1.25, &max_w);
        else if (!strcmp(a, "--repeats"))
            bad = cli_parse_int(v, 1, 1000, &repeats);
        else if (!strcmp(a, "--measure-timeout"))
            bad = cli_parse_double(v, 0, 86400, &timeout);
        else if (!strcmp(a, "--min-seconds"))
            bad = cli_parse_double(v, 0.001, 60, &min_s);
        else if (!strcmp(a, "--holdout"))
            bad = cli_parse_int(v, 0, 100000, &hold);
        else if (!strcmp(a, "--passes"))
            bad = cli_parse_int(v, 1, PRED_MAX_PASSES, &passes);
        else if (!strcmp(a, "--latency-stat")) {
            bad = !v || (strcmp(v, "p10") != 0 && strcmp(v, "median") != 0);
            if (!bad)
                stat = v;
        } else if (!strcmp(a, "--refit")) {
            bad = !v || !*v;
            refit = v;
        } else if (!strcmp(a, "--max-spread"))
            bad = cli_parse_double(v, 0, 100, &o.max_spread);
        else if (!strcmp(a, "--out")) {
            bad = !v || !*v;
            out = v;
        } else if (!strcmp(a, "--measure-cmd")) {
            bad = !v || !*v || (!strstr(v, "{spec}") && !strstr(v, "{onnx}"));
            if (v && *v && bad)
                return cli_usage_error(cmd, "--measure-cmd '%s' has no {spec} or {onnx} to receive the network", v);
            mcmd = v;
        } else
            return cli_usage_error(cmd, "unknown option '%s'", a);
        if (bad)
            return cli_usage_error(cmd, "%s needs a value in range, got '%s'", a, v ? v : "");
        i++;
    }
    if (samples < 4 * folds)
        return cli_usage_error(cmd, "--samples %ld is too few for %ld folds (need %ld)", samples, folds, 4 * folds);
    if (max_samples < 0)
        max_samples = samples + samples / 2;
    if (max_samples < samples)
        return cli_usage_error(cmd, "--max-samples %ld is below --samples %ld", max_samples, samples);

    space_config_default(&o.space, (int)res, (int)in_ch, (int)classes);
    o.space.max_width = max_w;
    o.samples = (int)samples;
    o.max_samples = (int)max_samples;
    o.folds = (int)folds;
    o.adaptive_rounds = (int)rounds;
    o.seed = (uint64_t)seed;
    o.fit.seed = (uint64_t)seed;
    o.threads = (int)threads;
    o.passes = (int)passes;
    o.holdout = (int)hold;
    /* builtin measurements are of this engine's kernels: a predictor fit on
     * AVX-512 kernels does not hold for AVX2 ones, so the level is recorded */
    if (mcmd)
        snprintf(o.measure, sizeof o.measure, "%s", mcmd);
    else
        snprintf(o.measure, sizeof o.measure, "builtin:%s", ev_kernels());
    calib_progress cprog = {.phase = ""};   /* on stderr, on a terminal or not */
    nas_progress_init(&cprog.line, stderr, cli_progress_enabled(), 5.0);
    o.progress = progress;
    o.progress_ctx = &cprog;
    cli_measure_ctx mctx;
    cli_measure_init(&mctx, mcmd, (int)threads);
    if (repeats > 0)
        mctx.repeats = (int)repeats;
    if (min_s > 0)
        mctx.min_seconds = min_s;
    mctx.p10 = !strcmp(stat, "p10");
    mctx.cmd_timeout = timeout;
    snprintf(o.latency_stat, sizeof o.latency_stat, "%s", cli_measure_stat(&mctx));

    nas_err err;
    nas_err_clear(&err);
    pred_model *from = NULL;
    if (refit) {
        nas_status lst = pred_load_measurements(refit, &from, &err);
        if (lst != NAS_OK)
            return cli_fail(cmd, lst, &err);
        o.refit = from;
    } else {
        nas_status ready = cli_measure_ready(&mctx, &err);
        if (ready != NAS_OK)
            return cli_fail(cmd, ready, &err);
    }
    pred_model *m = NULL;
    pred_calib_report rep;
    double t0 = nas_now();
    /* a signal stops measuring after the network in hand; nothing is written,
     * as there is no partial predictor to keep (run it again, or --refit one) */
    nas_sig_install(cmd, "after the network being measured (nothing will be written)");
    nas_status st = pred_calibrate(&o, cli_measure, &mctx, &m, &rep, &err);
    cli_measure_close(&mctx);
    pred_free(from);
    if (st == NAS_EINTR) {   /* (a signal during the fit lets it finish and write) */
        int rc = nas_exit_code(st);
        fprintf(stderr, "nas %s: stopped by %s after %.1f s; %s was not written\n", cmd,
                nas_sig_name(nas_sig_caught()), nas_now() - t0, out);
        nas_sig_uninstall();
        return rc;
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
    static const char *const tname[2] = {"latency_ms", "energy_mj"};
    const pred_hw *hw = pred_model_hw(m);
    if (json) {
        json_t *root = json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:{s:s, s:i, s:i, s:s, s:s}, s:f, s:f}",
                                 "predictor", out, "samples", rep.samples, "adaptive_added", rep.adaptive_added,
                                 "rounds", rep.rounds, "remeasured", rep.remeasured, "reference_drift", rep.reference_drift, "seconds", secs, "measure_seconds", rep.measure_seconds,
                                 "fit_seconds", rep.fit_seconds, "hardware", "cpu_model", hw->cpu_model, "cores",
                                 hw->cores, "threads", hw->threads, "meter", hw->meter, "measure", hw->measure,
                                 "median_latency_spread", rep.median_latency_spread, "median_energy_spread",
                                 rep.median_energy_spread);
        if (root) {
            json_object_set_new(root, "latency_stat", json_string(pred_model_latency_stat(m)));
            json_object_set_new(root, "passes", json_integer(o.refit ? 0 : o.passes));
            json_object_set_new(root, "failed", json_integer(rep.failed));
            if (rep.retest.n > 0)
                json_object_set_new(root, "retest", metrics_json(&rep.retest));
            if (rep.holdout[0].n > 0)
                json_object_set_new(root, "holdout", json_pack("{s:o, s:o}", "latency_ms", metrics_json(&rep.holdout[0]),
                                                               "energy_mj", metrics_json(&rep.holdout[1])));
        }
        for (int t = 0; root && t < 2; t++)
            json_object_set_new(root, tname[t],
                                json_pack("{s:s, s:o, s:o}", "kept", pred_kind_name(rep.kept[t]), "net",
                                          metrics_json(&rep.cv[t][PRED_KIND_NET]), "block",
                                          metrics_json(&rep.cv[t][PRED_KIND_BLOCK])));
        char *s = root ? json_dumps(root, JSON_PRESERVE_ORDER) : NULL;
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(root);
    } else {
        printf("%s on %d networks (%d added where held-out error was over 10%%, %d rounds) in %.1f s\n"
               "  (measuring %.1f s, fitting %.1f s)\n",
               o.refit ? "refit" : "calibrated", rep.samples, rep.adaptive_added, rep.rounds, secs,
               rep.measure_seconds, rep.fit_seconds);
        printf("hardware: %s, %d cores, %d threads; energy from %s\n", hw->cpu_model, hw->cores, hw->threads,
               hw->meter);
        printf("measurement spread (median (p90-p10)/median): latency %.1f%%, energy %.1f%%; "
               "%d measurements taken again as unsteady\n",
               100 * rep.median_latency_spread, 100 * rep.median_energy_spread, rep.remeasured);
        printf("latency figure: %s%s\n", pred_model_latency_stat(m),
               !strcmp(pred_model_latency_stat(m), "p10") ? " (10th percentile of single inferences)"
               : !strcmp(pred_model_latency_stat(m), "median") ? " (median of single inferences)"
                                                              : " (as the measuring command reports it)");
        if (rep.retest.n > 0)
            printf("test-retest (two measurements of each of %d networks, minutes apart): %.1f%% agree within 10%%, "
                   "%.1f%% within 5%%, mean difference %.2f%%\n",
                   rep.retest.n, 100 * rep.retest.within10, 100 * rep.retest.within5, 100 * rep.retest.mape);
        if (rep.references > 0)
            printf("reference network: median %.4g ms over %d measurements, drift (p90-p10)/median %.1f%%\n",
                   rep.reference_ms, rep.references, 100 * rep.reference_drift);
        printf("%d-fold cross-validated accuracy on held-out networks:\n", o.folds);
        printf("  %-10s %-6s %8s %8s %7s %10s %7s\n", "target", "model", "+-5%", "+-10%", "MAPE", "RMSE", "tau");
        for (int t = 0; t < 2; t++)
            for (int k = 0; k < 2; k++) {
                const pred_metrics *x = &rep.cv[t][k];
                printf("  %-10s %-6s %7.1f%% %7.1f%% %6.2f%% %10.4g %7.3f%s\n", tname[t],
                       pred_kind_name((pred_kind)k), 100 * x->within5, 100 * x->within10, 100 * x->mape,
                       x->rmse, x->kendall_tau, rep.kept[t] == (pred_kind)k ? "  (kept)" : "");
            }
        if (rep.holdout[0].n > 0)
            for (int t = 0; t < 2; t++)
                printf("hold-out: %d fresh networks, never fit on: %s %.1f%% within +-10%%, %.1f%% within +-5%%, "
                       "MAPE %.2f%%, tau %.3f\n", rep.holdout[t].n, tname[t], 100 * rep.holdout[t].within10,
                       100 * rep.holdout[t].within5, 100 * rep.holdout[t].mape, rep.holdout[t].kendall_tau);
        printf("predictor written to %s\n", out);
    }
    pred_free(m);
    return 0;
}
