/* autopred.c — the predictor a search ranks with when the user names none.
 *
 * A predictor holds for one machine (CPU, cores, the threads and the energy
 * meter it was measured with, the engine's kernel level, the engine's own
 * source) and one search space (input shape, classes, stages, widths). The
 * cache keeps one file per such combination, named by a hash of all of it, so
 * a search on a space or machine seen before starts ranking at once, and a
 * new one pays for a small calibration (APP_AUTO_SAMPLES networks, one
 * measuring pass) before its first candidate. The file records the hardware it was fit on; one that
 * disagrees with this machine (a copied cache, a hash collision) is fit again
 * rather than trusted.
 */
#include "app/app.h"
#include "base/progress.h"
#include "evaluator/ev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *app_pred_cache_dir(char *buf, size_t n)
{
    const char *d = getenv("NAS_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (d && *d) {
        if (!strcmp(d, "off"))
            return NULL;
        snprintf(buf, n, "%s", d);
    } else if (xdg && *xdg) {
        snprintf(buf, n, "%s/nas", xdg);
    } else if (home && *home) {
        snprintf(buf, n, "%s/.cache/nas", home);
    } else {
        return NULL;
    }
    return buf;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* A checksum of evaluator/'s sources (the Makefile's): a faster kernel at the
 * same kernel level makes the latencies a cached predictor learnt too high, so
 * a changed engine is a new cache entry, not a stale one. */
#ifndef NAS_ENGINE_REV
#define NAS_ENGINE_REV "unknown"
#endif

/* Everything a predictor holds for, as one line (hashed into the file name). */
static void cache_key(const pred_hw *hw, const space_config *sp, const char *stat, char *buf, size_t n)
{
    snprintf(buf, n, "v1|engine %s|%s|%d cpus|%d threads|%s|%s|%s|%dx%dx%d|%d classes|%d stages|min side %d|"
             "scale res %d|max width %.6g", NAS_ENGINE_REV, hw->cpu_model, hw->cores, hw->threads, hw->meter,
             hw->measure, stat, sp->resolution, sp->resolution, sp->in_ch, sp->num_classes, sp->n_stages, sp->min_side,
             sp->scale_resolution, sp->max_width);
}

static int same_space(const space_config *a, const space_config *b)
{
    return a->resolution == b->resolution && a->in_ch == b->in_ch && a->num_classes == b->num_classes &&
           a->n_stages == b->n_stages && a->min_side == b->min_side && a->scale_resolution == b->scale_resolution &&
           a->max_width == b->max_width;
}

/* The cached predictor at path when it holds here (*m NULL when there is none
 * or it does not; a warning says why it is not used). */
static nas_status load_cached(const char *path, const pred_hw *here, const space_config *sp, pred_model **m,
                              nas_err *err)
{
    *m = NULL;
    if (access(path, F_OK) != 0)
        return NAS_OK;
    nas_err e = {0};
    nas_status st = pred_load(path, m, &e);
    if (st == NAS_ENOMEM)
        return nas_errf(err, st, "%s", e.msg);
    char why[sizeof e.msg] = "";
    if (st)
        memcpy(why, e.msg, sizeof why);
    else if (pred_hw_differs(pred_model_hw(*m), here, why, sizeof why))
        ;
    else if (!same_space(pred_model_space(*m), sp))
        snprintf(why, sizeof why, "it was fit on another search space");
    if (why[0]) {
        fprintf(stderr, "nas: warning: the cached predictor %s does not hold here (%s); calibrating a new one\n",
                path, why);
        pred_free(*m);
        *m = NULL;
    }
    return NAS_OK;
}

static void calib_progress(void *ctx, const char *phase, int done, int total)
{
    nas_progress *p = ctx;
    if (!strcmp(phase, "skipped"))
        return;
    nas_progress_show(p, "predictor for this machine: %s %d of %d", !strcmp(phase, "fit") ? "fitting" : phase, done,
                      total);
}

/* A small calibration over the search's own space; the model is saved at path. */
static nas_status calibrate(const app_settings *s, const space_config *sp, int threads, int live,
                            const char *path, pred_model **out, nas_err *err)
{
    app_settings cs = *s;
    cs.threads = threads;
    cs.cal_samples = APP_AUTO_SAMPLES;
    cs.cal_max_samples = APP_AUTO_SAMPLES + APP_AUTO_SAMPLES / 2;
    cs.cal_rounds = 1;
    cs.cal_passes = 1;
    cs.cal_holdout = 0;
    cs.cal_command[0] = '\0';   /* this machine, with the built-in benchmark */
    pred_calib_opts o;
    app_measure_ctx mctx;
    app_calib_setup(&cs, &o, &mctx);
    o.space = *sp;
    nas_progress line;
    nas_progress_init(&line, stderr, live, 5.0);
    o.progress = calib_progress;
    o.progress_ctx = &line;
    nas_status st = app_measure_ready(&mctx, err);
    pred_calib_report rep;
    if (!st)
        st = pred_calibrate(&o, app_measure, &mctx, out, &rep, err);
    app_measure_close(&mctx);
    nas_progress_clear(&line);
    if (st)
        return nas_errctx(err, "calibrating the predictor for this machine (--predictor none goes without)");
    if ((st = pred_save(*out, path, err))) {
        pred_free(*out);
        *out = NULL;
    }
    return st;
}

nas_status app_auto_predictor(const app_settings *s, const space_config *space, int threads, const char *meter,
                              int live, pred_model **out, char *path, size_t path_n, int *calibrated, nas_err *err)
{
    *out = NULL;
    *calibrated = 0;
    char dir[400], key[1024];
    if (!app_pred_cache_dir(dir, sizeof dir))
        return nas_errf(err, NAS_EUNSUPP, "no predictor cache (NAS_CACHE_DIR=off, or no HOME)");
    pred_calib_opts o;
    app_measure_ctx mctx;
    app_settings cs = *s;
    cs.threads = threads;
    cs.cal_command[0] = '\0';
    app_calib_setup(&cs, &o, &mctx);   /* what the fingerprint records */
    pred_hw here;
    pred_hw_here(&here, threads, meter, o.measure);
    cache_key(&here, space, o.latency_stat, key, sizeof key);
    snprintf(path, path_n, "%s/predictor-%016llx.json", dir, (unsigned long long)fnv1a(key));
    nas_status st = load_cached(path, &here, space, out, err);
    if (st || *out)
        return st;
    if ((st = nas_mkdirs(dir, err)))
        return nas_errctx(err, "the predictor cache");
    *calibrated = 1;
    return calibrate(s, space, threads, live, path, out, err);
}
