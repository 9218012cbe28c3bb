/* cmd_predict.c — `nas predict SPEC.json|PRESET`: latency and energy per
 * inference from a calibrated predictor, with where the figures come from;
 * with --measure, the measured values beside them. */
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
    fprintf(f,
            "usage: nas predict SPEC.json|PRESET [--predictor FILE] [--measure] [--measure-cmd CMD] [--json]\n\n"
            "Predicted latency (ms) and energy (mJ) per inference at batch 1, from a predictor\n"
            "made by 'nas calibrate'. Energy is labelled with the quality of the data the\n"
            "predictor was fit on (a predictor fit on the model meter predicts estimated energy).\n"
            "Warns when the predictor was fit on other hardware or the network lies outside\n"
            "the space it was fit on.\n\n"
            "  --predictor FILE   default $NAS_PREDICTOR, else predictor.json\n"
            "  --measure          also measure the network (built-in, or --measure-cmd)\n"
            "  --measure-cmd CMD  measuring command, as for 'nas calibrate' (implies --measure)\n"
            "  --measure-timeout S  seconds the command may take (default 600; 0: no limit)\n");
    fprintf(f, "\nexample:\n  %s\n", "nas predict mobilenetv2 --predictor predictor.json");
}

typedef struct {
    const char *arg, *path, *mcmd;
    int json, measure;
    double timeout;
} predict_args;

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, predict_args *t)
{
    const char *cmd = "predict";
    const char *arg = NULL, *path = getenv("NAS_PREDICTOR"), *mcmd = NULL;
    int json = 0, measure = 0;
    double timeout = 600;
    if (!path || !*path)
        path = "predictor.json";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--measure")) {
            measure = 1;
        } else if (!strcmp(a, "--predictor") || !strcmp(a, "--measure-cmd")) {
            if (!v || !*v)
                return cli_usage_error(cmd, "%s needs a value", a);
            if (a[2] == 'p') {
                path = v;
            } else {
                if (!strstr(v, "{spec}") && !strstr(v, "{onnx}"))
                    return cli_usage_error(cmd, "--measure-cmd '%s' has no {spec} or {onnx} to receive the network", v);
                mcmd = v;
                measure = 1;
            }
            i++;
        } else if (!strcmp(a, "--measure-timeout")) {
            if (cli_parse_double(v, 0, 86400, &timeout))
                return cli_usage_error(cmd, "--measure-timeout needs seconds (0..86400), got '%s'", v ? v : "");
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (arg) {
            return cli_usage_error(cmd, "one spec at a time ('%s' and '%s')", arg, a);
        } else {
            arg = a;
        }
    }
    if (!arg)
        return cli_usage_error(cmd, "which network? give a spec file or a preset name");
    *t = (predict_args){.arg = arg, .path = path, .mcmd = mcmd, .json = json, .measure = measure,
                        .timeout = timeout};
    return -1;
}

/* A predictor of int8 inference (calibrated with --deploy int8) is checked
 * and measured against the int8 engine. */
static int fit_on_int8(const pred_hw *hw) { return app_measure_int8(hw->measure); }

/* Where the predictor came from against where we are. */
typedef struct {
    char hw_why[1024], space_why[512];
    int other_hw, outside;
} pred_origin;

static void check_origin(const pred_model *m, const space_net *net, const char *path, pred_origin *w)
{
    memset(w, 0, sizeof *w);
    const pred_hw *fit_hw = pred_model_hw(m);
    if (!strncmp(fit_hw->measure, "builtin", 7)) {
        pred_hw here;
        char builtin[64];
        snprintf(builtin, sizeof builtin, "builtin:%s%s", ev_kernels(), fit_on_int8(fit_hw) ? APP_INT8_MEASURE : "");
        pred_hw_here(&here, fit_hw->threads, fit_hw->meter, builtin);
        w->other_hw = pred_hw_differs(fit_hw, &here, w->hw_why, sizeof w->hw_why);
        if (w->other_hw)
            fprintf(stderr, "nas predict: warning: %s was fit on other hardware (%s; predictor vs here); "
                            "its figures may not hold here: calibrate on this machine\n", path, w->hw_why);
    }
    w->outside = pred_model_outside(m, net, w->space_why, sizeof w->space_why);
    if (w->outside)
        fprintf(stderr, "nas predict: warning: the network lies outside what %s was fit on: %s\n", path,
                w->space_why);
}

static int print_json(const char *arg, const char *path, const pred_model *m, const pred_estimate *e,
                       const pred_measurement *meas, int measure, const pred_origin *w)
{
    const pred_metrics *cvl = pred_model_cv(m, 0, pred_model_kind(m, 0));
    const pred_metrics *cve = pred_model_cv(m, 1, pred_model_kind(m, 1));
    json_t *root = json_pack("{s:s, s:f, s:f, s:s, s:s, s:s, s:{s:s, s:f, s:f}, s:{s:s, s:f, s:f}, s:b, s:b}",
                             "spec", arg, "latency_ms", e->latency_ms, "energy_mj", e->energy_mj,
                             "energy_quality", e->energy_quality, "energy_source", e->energy_source,
                             "predictor", path, "latency_model", "kind",
                             pred_kind_name(pred_model_kind(m, 0)), "cv_within10", cvl->within10, "cv_mape",
                             cvl->mape, "energy_model", "kind", pred_kind_name(pred_model_kind(m, 1)),
                             "cv_within10", cve->within10, "cv_mape", cve->mape, "other_hardware",
                             w->other_hw, "outside_space", w->outside);
    if (root)
        json_object_set_new(root, "latency_stat", json_string(pred_model_latency_stat(m)));
    if (root)
        json_object_set_new(root, "deploy", json_string(fit_on_int8(pred_model_hw(m)) ? "int8" : "float32"));
    if (root && w->other_hw)
        json_object_set_new(root, "hardware_warning", json_string(w->hw_why));
    if (root && w->outside)
        json_object_set_new(root, "space_warning", json_string(w->space_why));
    if (root && measure)
        json_object_set_new(root, "measured",
                            json_pack("{s:f, s:f, s:f, s:f, s:s, s:s}", "latency_ms", meas->latency_ms,
                                      "latency_spread", meas->latency_spread, "energy_mj", meas->energy_mj,
                                      "energy_spread", meas->energy_spread, "energy_source",
                                      meas->energy_source, "energy_quality", meas->energy_quality));
    return cli_print_json(root, JSON_PRESERVE_ORDER);
}

static void print_text(const char *arg, const pred_model *m, const pred_estimate *e, const pred_measurement *meas,
                       int measure)
{
    const pred_metrics *cvl = pred_model_cv(m, 0, pred_model_kind(m, 0));
    const pred_metrics *cve = pred_model_cv(m, 1, pred_model_kind(m, 1));
    printf("%s: per %sinference, batch 1\n", arg, fit_on_int8(pred_model_hw(m)) ? "int8 " : "");
    printf("  latency  %10.4g ms  predicted, %s (%s-level model, %.0f%% of held-out networks within 10%%)\n",
           e->latency_ms, pred_model_latency_stat(m), pred_kind_name(pred_model_kind(m, 0)),
           100 * cvl->within10);
    printf("  energy   %10.4g mJ  predicted, %s (fit on %s data; %.0f%% within 10%%)\n", e->energy_mj,
           e->energy_quality, e->energy_source, 100 * cve->within10);
    if (measure) {
        printf("  latency  %10.4g ms  measured (spread %.1f%%), predicted %+.1f%%\n", meas->latency_ms,
               100 * meas->latency_spread, 100 * (e->latency_ms / meas->latency_ms - 1));
        printf("  energy   %10.4g mJ  %s by %s (spread %.1f%%), predicted %+.1f%%\n", meas->energy_mj,
               meas->energy_quality, meas->energy_source, 100 * meas->energy_spread,
               100 * (e->energy_mj / meas->energy_mj - 1));
    }
}

int cmd_predict(int argc, char **argv)
{
    const char *cmd = "predict";
    predict_args t = {0};
    int prc = parse_args(argc, argv, &t);
    if (prc >= 0)
        return prc;
    const char *arg = t.arg, *path = t.path;

    nas_err err;
    nas_err_clear(&err);
    space_spec spec;
    static space_net net;
    nas_status st = space_spec_from_arg(arg, &spec, &err);
    if (st == NAS_OK)
        st = space_resolve(&spec, &net, &err);
    if (st != NAS_OK)
        return cli_fail(cmd, st, &err);
    pred_model *m = NULL;
    st = pred_load(path, &m, &err);
    if (st != NAS_OK) {
        if (strstr(err.msg, "No such file"))
            nas_errctx(&err, "no predictor (make one with 'nas calibrate --out %s')", path);
        return cli_fail(cmd, st, &err);
    }

    pred_origin w;
    const pred_hw *fit_hw = pred_model_hw(m);
    check_origin(m, &net, path, &w);

    pred_estimate e;
    st = pred_predict(m, &net, &e, &err);
    if (st != NAS_OK) {
        pred_free(m);
        return cli_fail(cmd, st, &err);
    }
    pred_measurement meas;
    if (t.measure) {
        app_measure_ctx mctx;
        app_measure_init(&mctx, t.mcmd, fit_hw->threads);
        mctx.p10 = !strcmp(pred_model_latency_stat(m), "p10");   /* the figure the predictor predicts */
        mctx.cmd_timeout = t.timeout;
        mctx.int8 = !t.mcmd && fit_on_int8(fit_hw);
        st = app_measure_ready(&mctx, &err);
        if (st == NAS_OK)
            st = app_measure(&mctx, &spec, &net, &meas, &err);
        app_measure_close(&mctx);
        if (st != NAS_OK) {
            pred_free(m);
            return cli_fail(cmd, st, &err);
        }
    }
    int bad = 0;
    if (t.json)
        bad = print_json(arg, path, m, &e, &meas, t.measure, &w);
    else
        print_text(arg, m, &e, &meas, t.measure);
    pred_free(m);
    if (bad)
        return cli_fail(cmd, NAS_ENOMEM, &(nas_err){.msg = "out of memory writing the JSON report"});
    return 0;
}
