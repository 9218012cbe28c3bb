/* measure.c — the measuring callback for `nas calibrate` and
 * `nas predict --measure`: the evaluator's inference benchmark at batch 1
 * with its energy meter, or the user's measuring command (given {spec}, and
 * {onnx}: the network exported with untrained seeded weights, which is all a
 * latency or energy measurement needs).
 *
 * Built-in measuring builds the network for inference only (no gradients or
 * optimizer state), runs ev_bench_infer (warm-up, repeats, median and spread),
 * and passes on the meter's source and quality with the energy, so a
 * predictor fit on the model meter says its energy is estimated. */
#include "app/app.h"
#include "evaluator/ev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void app_measure_init(app_measure_ctx *ctx, const char *cmd, int threads)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->cmd = cmd;
    ctx->threads = threads > 0 ? threads : 1;
    ctx->repeats = 5;
    ctx->min_seconds = 0.05;
    ctx->meter = "auto";
    ctx->cmd_timeout = 600;
}

const char *app_measure_stat(const app_measure_ctx *ctx)
{
    return ctx->cmd ? "cmd" : ctx->p10 ? "p10" : "median";
}

nas_status app_measure_ready(app_measure_ctx *ctx, nas_err *err)
{
    if (ctx->cmd || ctx->m)
        return NAS_OK;
    ev_meter_opts mo;
    ev_meter_opts_default(&mo);
    mo.kind = ctx->meter;
    if (ctx->watts > 0)
        mo.watts_per_core = ctx->watts;
    nas_status st = ev_meter_open(&mo, (ev_meter **)&ctx->m, err);
    if (st != NAS_OK)
        return nas_errctx(err, "opening the energy meter");
    return NAS_OK;
}

void app_measure_close(app_measure_ctx *ctx)
{
    if (ctx->m)
        ev_meter_close((ev_meter *)ctx->m);
    ctx->m = NULL;
}

static nas_status build(const app_measure_ctx *ctx, const space_net *net, ev_net **en, nas_err *err)
{
    ev_net_opts no;
    memset(&no, 0, sizeof no);
    no.batch = 1;
    no.training = 0;
    no.threads = ctx->threads;
    no.seed = 1;   /* seeded weights: speed does not depend on their values */
    nas_status st = ev_net_create(net, &no, en, err);
    return st == NAS_OK ? st : nas_errctx(err, "building the network to measure");
}

/* The measuring command, with an ONNX export of the network (untrained,
 * seeded weights) in a temporary folder when the template asks for {onnx}. */
static nas_status measure_cmd(const app_measure_ctx *ctx, const space_spec *spec, const space_net *net,
                              pred_measurement *m, nas_err *err)
{
    if (!strstr(ctx->cmd, "{onnx}"))
        return pred_measure_cmd(ctx->cmd, spec, NULL, ctx->cmd_timeout, m, err);
    char dir[] = "/tmp/nas-onnx-XXXXXX", path[64], spec_path[64], card_path[64];
    if (!mkdtemp(dir))
        return nas_errf(err, NAS_EIO, "measure command: cannot make a folder for the ONNX model: %s",
                        strerror(errno));
    snprintf(path, sizeof path, "%s/net.onnx", dir);
    ev_net *en = NULL;
    nas_status st = build(ctx, net, &en, err);
    if (st == NAS_OK) {
        ev_export_opts eo;
        ev_export_opts_default(&eo);
        eo.spec = spec;
        eo.force = 1;
        eo.sidecars = 0;
        st = ev_export_onnx(en, &eo, path, err);
        if (st != NAS_OK)
            nas_errctx(err, "measure command: exporting the network to ONNX");
    }
    ev_net_free(en);
    if (st == NAS_OK)
        st = pred_measure_cmd(ctx->cmd, spec, path, ctx->cmd_timeout, m, err);
    ev_export_sidecar_paths(path, spec_path, card_path, sizeof spec_path);
    unlink(path);
    unlink(spec_path);
    unlink(card_path);
    rmdir(dir);
    return st;
}

nas_status app_measure(void *ctxp, const space_spec *spec, const space_net *net, pred_measurement *m,
                       nas_err *err)
{
    app_measure_ctx *ctx = ctxp;
    if (nas_sig_caught())   /* SIGINT/SIGTERM: stop between networks */
        return nas_errf(err, NAS_EINTR, "stopped by %s", nas_sig_name(nas_sig_caught()));
    if (ctx->cmd)
        return measure_cmd(ctx, spec, net, m, err);
    nas_status st = app_measure_ready(ctx, err);
    if (st != NAS_OK)
        return st;
    ev_net *en = NULL;
    st = build(ctx, net, &en, err);
    if (st != NAS_OK)
        return st;
    ev_bench_opts bo;
    ev_bench_opts_default(&bo);
    bo.batch = 1;
    bo.threads = ctx->threads;
    bo.repeats = ctx->repeats;
    bo.min_seconds = ctx->min_seconds;
    bo.warmup = 3;
    ev_bench_result r;
    if (ctx->int8)
        st = ev_bench_infer_int8(en, NULL, 0, (ev_meter *)ctx->m, &bo, &r, err);
    else
        st = ev_bench_infer(en, (ev_meter *)ctx->m, &bo, &r, err);
    ev_net_free(en);
    if (st != NAS_OK)
        return nas_errctx(err, "benchmarking the network");
    memset(m, 0, sizeof *m);
    m->latency_ms = ctx->p10 ? r.latency_ms_p10 : r.latency_ms_median;
    m->latency_spread = r.latency_ms_median > 0 ? (r.latency_ms_p90 - r.latency_ms_p10) / r.latency_ms_median : 0;
    m->energy_mj = r.energy_mj_median;
    m->energy_spread = r.energy_mj_spread;
    snprintf(m->energy_source, sizeof m->energy_source, "%s", r.energy_source);
    snprintf(m->energy_quality, sizeof m->energy_quality, "%s", ev_quality_name(r.energy_quality));
    return NAS_OK;
}

int app_measure_int8(const char *measure)
{
    size_t n = strlen(measure), k = strlen(APP_INT8_MEASURE);
    return n >= k && !strcmp(measure + n - k, APP_INT8_MEASURE);
}

/* The calibration's options and the measuring context from the settings. */
void app_calib_setup(const app_settings *s, pred_calib_opts *o, app_measure_ctx *mctx)
{
    pred_calib_opts_default(o);
    o->reference = (int)s->cal_reference;
    o->max_spread = s->cal_max_spread;
    long samples = s->cal_samples, folds = s->cal_folds, seed = s->seed, threads = s->threads > 0 ? s->threads : 1;
    long max_samples = s->cal_max_samples > 0 ? s->cal_max_samples : samples + samples / 2;
    const char *mcmd = s->cal_command[0] ? s->cal_command : NULL;
    space_config_default(&o->space, s->resolution > 0 ? (int)s->resolution : 28, (int)s->in_channels, (int)s->classes);
    o->space.max_width = s->max_width;
    o->samples = (int)samples;
    o->max_samples = (int)max_samples;
    o->folds = (int)folds;
    o->adaptive_rounds = (int)s->cal_rounds;
    o->seed = (uint64_t)seed;
    o->fit.seed = (uint64_t)seed;
    o->threads = (int)threads;
    o->passes = (int)s->cal_passes;
    o->holdout = (int)s->cal_holdout;
    /* builtin measurements are of this engine's kernels: a predictor fit on
     * AVX-512 kernels does not hold for AVX2 ones, so the level is recorded */
    if (mcmd)
        snprintf(o->measure, sizeof o->measure, "%s", mcmd);
    else
        snprintf(o->measure, sizeof o->measure, "builtin:%s%s", ev_kernels(), app_settings_int8(s) ? APP_INT8_MEASURE : "");
    app_measure_init(mctx, mcmd, (int)threads);
    mctx->int8 = !mcmd && app_settings_int8(s);
    mctx->repeats = (int)s->cal_repeats;
    mctx->min_seconds = s->cal_min_seconds;
    mctx->meter = s->meter;
    mctx->watts = s->watts;
    mctx->p10 = !strcmp(s->cal_stat, "p10");
    mctx->cmd_timeout = s->cal_timeout;
    snprintf(o->latency_stat, sizeof o->latency_stat, "%s", app_measure_stat(mctx));
}
