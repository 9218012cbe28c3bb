/* test_pred_fit.c — the XGBoost side of the predictor: fits on a synthetic
 * hardware model reach a tight error, both kinds; fits are deterministic;
 * save/load round trips predict identically; damaged files are refused with
 * errors that name the field; calibration with a synthetic measuring
 * function ends with a predictor that meets the +-10% goal. */
#include "tests/testutil.h"
#include "predictor/pred.h"
#include "tests/pred_synth.h"

#include <math.h>

/* n sampled networks of the default 28x28 space and their true latencies. */
static void synth_dataset(int n, uint64_t seed, pred_dataset *d, double *lat, double *en)
{
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 1);
    space_genome *g = malloc(sizeof(space_genome) * (size_t)n);
    assert_non_null(g);
    pred_sample_stratified(&cfg, n, &rng, g);
    pred_dataset_init(d);
    for (int i = 0; i < n; i++) {
        space_spec spec;
        static space_net net;
        nas_err err;
        assert_int_equal(space_genome_to_spec(&cfg, &g[i], &spec, &err), NAS_OK);
        assert_int_equal(space_resolve(&spec, &net, &err), NAS_OK);
        assert_int_equal(pred_dataset_add(d, &net, &err), NAS_OK);
        synth_truth(&net, &lat[i], &en[i]);
    }
    free(g);
}

static void fast_opts(pred_fit_opts *o)
{
    pred_fit_opts_default(o);
    o->max_rounds = 300;
}

static void both_kinds_fit_a_synthetic_cpu_tightly(void **state)
{
    (void)state;
    enum { NTR = 150, NTE = 60 };
    pred_dataset dtr, dte;
    static double ltr[NTR], etr[NTR], lte[NTE], ete[NTE], p[NTE];
    synth_dataset(NTR, 11, &dtr, ltr, etr);
    synth_dataset(NTE, 12, &dte, lte, ete);
    pred_fit_opts o;
    fast_opts(&o);
    for (int k = 0; k < 2; k++) {
        pred_regressor *r = NULL;
        nas_err err;
        double t0 = nas_now();
        assert_int_equal(pred_regressor_fit(&dtr, ltr, NULL, NTR, (pred_kind)k, &o, &r, &err), NAS_OK);
        double secs = nas_now() - t0;
        assert_int_equal(pred_regressor_kind(r), k);
        assert_int_equal(pred_regressor_predict(r, &dte, NULL, NTE, p, &err), NAS_OK);
        pred_metrics m;
        pred_metrics_compute(p, lte, NTE, &m);
        printf("# %s-level on unseen nets: within10 %.3f within5 %.3f MAPE %.4f tau %.3f, %d rounds, %.2f s\n",
               pred_kind_name((pred_kind)k), m.within10, m.within5, m.mape, m.kendall_tau,
               pred_regressor_rounds(r), secs);
        assert_true(m.within10 >= 0.95);
        assert_true(m.mape < 0.05);
        assert_true(m.kendall_tau > 0.9);
        pred_regressor_free(r);
    }
    pred_dataset_free(&dtr);
    pred_dataset_free(&dte);
}

static void fits_are_deterministic(void **state)
{
    (void)state;
    enum { N = 60 };
    pred_dataset d;
    static double lat[N], en[N], p1[N], p2[N];
    synth_dataset(N, 5, &d, lat, en);
    pred_fit_opts o;
    fast_opts(&o);
    o.max_rounds = 80;
    for (int k = 0; k < 2; k++) {
        pred_regressor *a = NULL, *b = NULL;
        nas_err err;
        assert_int_equal(pred_regressor_fit(&d, en, NULL, N, (pred_kind)k, &o, &a, &err), NAS_OK);
        assert_int_equal(pred_regressor_fit(&d, en, NULL, N, (pred_kind)k, &o, &b, &err), NAS_OK);
        assert_int_equal(pred_regressor_predict(a, &d, NULL, N, p1, &err), NAS_OK);
        assert_int_equal(pred_regressor_predict(b, &d, NULL, N, p2, &err), NAS_OK);
        assert_memory_equal(p1, p2, sizeof p1);
        pred_regressor_free(a);
        pred_regressor_free(b);
    }
    pred_dataset_free(&d);
}

static void bad_targets_are_refused(void **state)
{
    (void)state;
    enum { N = 30 };
    pred_dataset d;
    static double lat[N], en[N];
    synth_dataset(N, 6, &d, lat, en);
    lat[7] = -1;
    pred_fit_opts o;
    fast_opts(&o);
    pred_regressor *r = NULL;
    nas_err err;
    assert_int_equal(pred_regressor_fit(&d, lat, NULL, N, PRED_KIND_NET, &o, &r, &err), NAS_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err.msg, "network 7"));
    pred_dataset_free(&d);
}

static void allocation_failures_are_reported_not_crashes(void **state)
{
    (void)state;
    enum { N = 24 };
    static double lat[N], en[N], p[N];
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    static space_net nets[N];
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 8, 8);
    for (int i = 0; i < N; i++) {
        space_genome g;
        space_spec spec;
        nas_err err;
        space_genome_sample(&cfg, &rng, &g);
        assert_int_equal(space_genome_to_spec(&cfg, &g, &spec, &err), NAS_OK);
        assert_int_equal(space_resolve(&spec, &nets[i], &err), NAS_OK);
        synth_truth(&nets[i], &lat[i], &en[i]);
    }
    pred_fit_opts o;
    fast_opts(&o);
    o.max_rounds = 5;
    size_t live = nas_alloc_live();
    int failures = 0;
    for (long k = 1;; k++) {
        pred_dataset d;
        pred_dataset_init(&d);
        pred_regressor *r = NULL;
        nas_err err;
        nas_err_clear(&err);
        nas_alloc_fail_at(k);
        nas_status st = NAS_OK;
        for (int i = 0; st == NAS_OK && i < N; i++)
            st = pred_dataset_add(&d, &nets[i], &err);
        for (int kind = 0; st == NAS_OK && kind < 2; kind++) {
            st = pred_regressor_fit(&d, lat, NULL, N, (pred_kind)kind, &o, &r, &err);
            if (st == NAS_OK)
                st = pred_regressor_predict(r, &d, NULL, N, p, &err);
            pred_regressor_free(r);
            r = NULL;
        }
        nas_alloc_fail_at(0);
        pred_dataset_free(&d);
        assert_int_equal(nas_alloc_live(), live);   /* nothing leaked on any path */
        if (st == NAS_OK)
            break;
        assert_int_equal(st, NAS_ENOMEM);
        assert_non_null(strstr(err.msg, "out of memory"));
        failures++;
    }
    assert_true(failures >= 10);
}

/* A one-round calibration of n networks, small enough for a unit test. */
static void small_calib(pred_calib_opts *o, int n)
{
    pred_calib_opts_default(o);
    o->samples = n;
    o->max_samples = n;
    o->adaptive_rounds = 0;
    o->folds = 4;
    o->fit.max_rounds = 50;
}

/* A machine whose speed wanders by +-30% and whose every 10th measurement is
 * disturbed: re-measuring fixes the disturbed ones, and the reference
 * network cancels the drift. */
static void calibration_survives_a_drifting_machine(void **state)
{
    (void)state;
    pred_calib_opts o;
    small_calib(&o, 80);
    o.fit.max_rounds = 200;
    pred_calib_report plain, ref;
    pred_model *m = NULL;
    nas_err err;
    synth_ctx ctx = {.noise = 0.01, .drift = 0.3, .disturb = 10};
    nas_pcg32_seed(&ctx.rng, 5, 1);
    o.max_spread = 0;   /* neither re-measuring nor reference */
    assert_int_equal(pred_calibrate(&o, synth_measure, &ctx, &m, &plain, &err), NAS_OK);
    pred_free(m);
    assert_int_equal(plain.remeasured, 0);
    assert_int_equal(plain.references, 0);

    synth_ctx ctx2 = {.noise = 0.01, .drift = 0.3, .disturb = 10};
    nas_pcg32_seed(&ctx2.rng, 5, 1);
    o.max_spread = 0.15;
    o.reference = 1;
    assert_int_equal(pred_calibrate(&o, synth_measure, &ctx2, &m, &ref, &err), NAS_OK);
    /* one reference before the first network and one after each measurement
     * of a network, first or repeated */
    assert_true(ref.references >= ref.samples + 1 && ref.references <= ref.samples + 1 + ref.remeasured);
    assert_true(ref.remeasured >= 14);   /* every 10th of about 160 calls, nets and references */
    assert_true(ref.reference_drift > 0.3);   /* the drift is seen ... */
    printf("# drifting machine: within10 %.3f plain, %.3f with re-measuring and reference (drift %.2f, "
           "%d measurements again)\n", plain.cv[0][plain.kept[0]].within10, ref.cv[0][ref.kept[0]].within10,
           ref.reference_drift, ref.remeasured);
    assert_true(plain.cv[0][plain.kept[0]].within10 < 0.6);   /* ... and ruins a plain calibration */
    assert_true(ref.cv[0][ref.kept[0]].within10 >= 0.9);      /* ... but not this one */
    pred_free(m);
}

/* On a machine where every measurement is wide, only the first ten (before a
 * usual spread is known) are taken again, not every one. */
static void a_uniformly_jittery_machine_is_not_measured_forever(void **state)
{
    (void)state;
    pred_calib_opts o;
    small_calib(&o, 40);
    pred_calib_report rep;
    pred_model *m = NULL;
    nas_err err;
    synth_ctx ctx = {.noise = 0.01, .wide = 1};
    nas_pcg32_seed(&ctx.rng, 5, 1);
    assert_int_equal(pred_calibrate(&o, synth_measure, &ctx, &m, &rep, &err), NAS_OK);
    assert_int_equal(rep.remeasured, 10 * o.remeasure);
    assert_int_equal(ctx.calls, 40 + 10 * o.remeasure);
    pred_free(m);
}

/* ---- calibration, save and load ----------------------------------------- */

static pred_model *calibrated;       /* shared by the tests below: one calibration */
static pred_calib_report calib_rep;
static int synth_calls;

static int calibrate_once(void **state)
{
    (void)state;
    pred_calib_opts o;
    pred_calib_opts_default(&o);
    o.samples = 160;
    o.max_samples = 220;
    o.adaptive_rounds = 1;
    o.folds = 4;
    o.threads = 2;
    o.fit.max_rounds = 300;
    o.holdout = 40;
    synth_ctx ctx = {.noise = 0.01};
    nas_pcg32_seed(&ctx.rng, 99, 1);
    nas_err err;
    double t0 = nas_now();
    nas_status st = pred_calibrate(&o, synth_measure, &ctx, &calibrated, &calib_rep, &err);
    if (st != NAS_OK) {
        fprintf(stderr, "calibration failed: %s\n", err.msg);
        return -1;
    }
    synth_calls = ctx.calls;
    printf("# calibration: %d samples (%d adaptive, %d rounds) in %.1f s (fit %.1f s)\n", calib_rep.samples,
           calib_rep.adaptive_added, calib_rep.rounds, nas_now() - t0, calib_rep.fit_seconds);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++)
            printf("#   %s %s-level CV: within10 %.3f within5 %.3f MAPE %.4f tau %.3f%s\n",
                   t ? "energy " : "latency", pred_kind_name((pred_kind)k), calib_rep.cv[t][k].within10,
                   calib_rep.cv[t][k].within5, calib_rep.cv[t][k].mape, calib_rep.cv[t][k].kendall_tau,
                   calib_rep.kept[t] == (pred_kind)k ? "  (kept)" : "");
    return 0;
}

static int free_calibrated(void **state)
{
    (void)state;
    pred_free(calibrated);
    return 0;
}

static void calibration_meets_the_goal_on_a_synthetic_cpu(void **state)
{
    (void)state;
    assert_non_null(calibrated);
    assert_int_equal(calib_rep.samples, pred_model_samples(calibrated));
    assert_true(calib_rep.samples >= 150 && calib_rep.samples <= 220);
    assert_int_equal(synth_calls, calib_rep.samples + 40);   /* duplicates are not measured twice */
    /* fresh networks measured after the fit: the final model on data it never saw */
    assert_int_equal(calib_rep.holdout[0].n, 40);
    assert_int_equal(calib_rep.holdout[1].n, 40);
    printf("# hold-out: latency within10 %.3f, energy %.3f\n", calib_rep.holdout[0].within10,
           calib_rep.holdout[1].within10);
    assert_true(calib_rep.holdout[0].within10 >= 0.95 && calib_rep.holdout[1].within10 >= 0.95);
    for (int t = 0; t < 2; t++) {
        const pred_metrics *kept = &calib_rep.cv[t][calib_rep.kept[t]];
        const pred_metrics *other = &calib_rep.cv[t][!calib_rep.kept[t]];
        assert_true(kept->within10 >= other->within10);   /* the more accurate one was kept */
        assert_int_equal(pred_model_kind(calibrated, t), calib_rep.kept[t]);
        assert_true(kept->n == calib_rep.samples);
    }
    assert_true(calib_rep.cv[0][calib_rep.kept[0]].within10 >= 0.95);
    assert_true(fabs(calib_rep.median_latency_spread - 0.0256) < 1e-12);

    /* fresh networks, never measured: predictions within 10% of the truth */
    enum { N = 50 };
    pred_dataset d;
    static double lat[N], en[N];
    synth_dataset(N, 4242, &d, lat, en);
    pred_dataset_free(&d);
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 4242, 1);
    static space_genome g[N];
    pred_sample_stratified(&cfg, N, &rng, g);
    int in10 = 0;
    for (int i = 0; i < N; i++) {
        space_spec spec;
        static space_net net;
        nas_err err;
        pred_estimate e;
        assert_int_equal(space_genome_to_spec(&cfg, &g[i], &spec, &err), NAS_OK);
        assert_int_equal(space_resolve(&spec, &net, &err), NAS_OK);
        assert_int_equal(pred_predict(calibrated, &net, &e, &err), NAS_OK);
        in10 += fabs(e.latency_ms / lat[i] - 1) <= 0.10;
        assert_string_equal(e.energy_quality, "estimated");
        assert_string_equal(e.energy_source, "synthetic");
    }
    printf("# unseen networks within 10%%: %d of %d\n", in10, N);
    assert_true(in10 >= 0.95 * N);
}

/* The shared calibration saved as dir/pred.json (dir a fresh temporary folder). */
static void save_calibrated(char dir[64], char path[128])
{
    nas_err err;
    assert_non_null(tu_tmpdir(dir, 64));
    snprintf(path, 128, "%s/pred.json", dir);
    assert_int_equal(pred_save(calibrated, path, &err), NAS_OK);
}

static void save_and_load_predict_identically(void **state)
{
    (void)state;
    char dir[64], path[128];
    nas_err err;
    save_calibrated(dir, path);
    pred_model *back = NULL;
    assert_int_equal(pred_load(path, &back, &err), NAS_OK);
    assert_int_equal(pred_model_samples(back), pred_model_samples(calibrated));
    assert_int_equal(pred_hw_differs(pred_model_hw(back), pred_model_hw(calibrated), NULL, 0), 0);
    assert_int_equal(pred_model_space(back)->resolution, 28);
    for (int t = 0; t < 2; t++) {
        assert_int_equal(pred_model_kind(back, t), pred_model_kind(calibrated, t));
        for (int k = 0; k < 2; k++)
            assert_true(fabs(pred_model_cv(back, t, k)->within10 - pred_model_cv(calibrated, t, k)->within10) < 1e-12);
    }
    for (int p = 0; p < 3; p++) {
        space_config cfg;
        space_config_default(&cfg, 28, 1, 10);
        nas_pcg32 rng;
        nas_pcg32_seed(&rng, 77, (uint64_t)p);
        space_genome g;
        space_genome_sample(&cfg, &rng, &g);
        space_spec spec;
        static space_net net;
        pred_estimate a, b;
        assert_int_equal(space_genome_to_spec(&cfg, &g, &spec, &err), NAS_OK);
        assert_int_equal(space_resolve(&spec, &net, &err), NAS_OK);
        assert_int_equal(pred_predict(calibrated, &net, &a, &err), NAS_OK);
        assert_int_equal(pred_predict(back, &net, &b, &err), NAS_OK);
        assert_true(a.latency_ms == b.latency_ms);   /* bit for bit */
        assert_true(a.energy_mj == b.energy_mj);
        assert_true(a.latency_ms > 0 && a.energy_mj > 0);
    }
    pred_free(back);
    tu_rmtree(dir);
}

/* Writes text to path, replacing the first occurrence of `from` in the saved
 * predictor by `to` (or truncating at `cut` bytes when from is NULL). */
static void damage(const char *src, const char *dst, const char *from, const char *to, long cut)
{
    char *text;
    size_t len;
    nas_err err;
    assert_int_equal(nas_read_file(src, &text, &len, &err), NAS_OK);
    FILE *f = fopen(dst, "w");
    assert_non_null(f);
    if (!from) {
        fwrite(text, 1, (size_t)cut, f);
    } else {
        char *hit = strstr(text, from);
        assert_non_null(hit);
        fwrite(text, 1, (size_t)(hit - text), f);
        fputs(to, f);
        fputs(hit + strlen(from), f);
    }
    fclose(f);
    nas_free(text);
}

static void damaged_files_give_clear_errors(void **state)
{
    (void)state;
    char dir[64], good[128], bad[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(good, sizeof good, "%s/pred.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    nas_err err;
    pred_model *m = NULL;
    assert_int_equal(pred_save(calibrated, good, &err), NAS_OK);

    damage(good, bad, NULL, NULL, 5000);   /* truncated */
    assert_int_equal(pred_load(bad, &m, &err), NAS_EINVAL);
    assert_null(m);
    assert_non_null(strstr(err.msg, "bad.json"));
    assert_non_null(strstr(err.msg, "JSON error at line"));

    char fv[48];
    snprintf(fv, sizeof fv, "\"feature_version\": %d", PRED_FEATURE_VERSION);
    damage(good, bad, fv, "\"feature_version\": 99", 0);
    assert_int_equal(pred_load(bad, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "feature_version: 99"));

    damage(good, bad, "\"threads\": 2", "\"threads\": \"two\"", 0);
    assert_int_equal(pred_load(bad, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "hardware.threads"));

    /* inside the XGBoost model: the loader's own complaint comes through */
    damage(good, bad, "\"tree_param\"", "\"tree_parameters\"", 0);
    assert_int_equal(pred_load(bad, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "latency_ms.model.xgboost"));
    printf("# damaged model: %s\n", err.msg);

    damage(good, bad, "\"format\": \"nas-predictor\"", "\"format\": \"something\"", 0);
    assert_int_equal(pred_load(bad, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "format"));

    assert_int_equal(pred_load("/nonexistent/pred.json", &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent/pred.json"));
    tu_rmtree(dir);
}

static void loading_under_allocation_failures(void **state)
{
    (void)state;
    char dir[64], path[128];
    nas_err err;
    save_calibrated(dir, path);
    size_t live = nas_alloc_live();
    int failures = 0;
    /* every one of the first allocations, then an eighth further each time:
     * the file's trees are thousands of JSON values, each one allocation */
    for (long k = 1;; k += k < 256 ? 1 : k / 8) {
        pred_model *m = NULL;
        nas_alloc_fail_at(k);
        nas_status st = pred_load(path, &m, &err);
        nas_alloc_fail_at(0);
        if (st == NAS_OK) {
            pred_free(m);
            assert_int_equal(nas_alloc_live(), live);
            break;
        }
        assert_null(m);
        assert_int_equal(st, NAS_ENOMEM);
        assert_int_equal(nas_alloc_live(), live);
        failures++;
    }
    assert_true(failures >= 2);
    tu_rmtree(dir);
}

/* Targets of a calibration's rows within 3% of the synthetic truth. */
static int rows_near_truth(const pred_model *m)
{
    int n, near = 0;
    const pred_sample *rows = pred_model_measurements(m, &n);
    const space_config *cfg = pred_model_space(m);
    for (int i = 0; i < n; i++) {
        space_spec spec;
        static space_net net;
        nas_err err;
        double lat, en;
        assert_int_equal(space_genome_to_spec(cfg, &rows[i].genome, &spec, &err), NAS_OK);
        assert_int_equal(space_resolve(&spec, &net, &err), NAS_OK);
        synth_truth(&net, &lat, &en);
        near += fabs(rows[i].latency_ms / lat - 1) <= 0.03;
    }
    return near;
}

/* A neighbour busy for stretches of calls slows a quarter of all
 * measurements without widening any: one pass keeps them, two passes minutes
 * apart give each network a fast measurement to keep, and the first two
 * passes against each other show the noise as test-retest agreement. */
static void passes_vote_out_slow_stretches(void **state)
{
    (void)state;
    pred_calib_opts o;
    small_calib(&o, 60);
    o.max_spread = 0;
    nas_err err;
    pred_calib_report one, two;
    pred_model *m1 = NULL, *m2 = NULL;
    synth_ctx c1 = {.noise = 0.002, .burst = 40};
    nas_pcg32_seed(&c1.rng, 8, 1);
    assert_int_equal(pred_calibrate(&o, synth_measure, &c1, &m1, &one, &err), NAS_OK);
    assert_int_equal(c1.calls, 60);
    assert_int_equal(one.retest.n, 0);   /* one pass: nothing to compare */

    o.passes = 2;
    synth_ctx c2 = {.noise = 0.002, .burst = 40};
    nas_pcg32_seed(&c2.rng, 8, 1);
    assert_int_equal(pred_calibrate(&o, synth_measure, &c2, &m2, &two, &err), NAS_OK);
    assert_int_equal(c2.calls, 120);
    assert_int_equal(two.retest.n, 60);
    printf("# test-retest within 10%%: %.3f\n", two.retest.within10);
    assert_true(two.retest.within10 > 0.3 && two.retest.within10 < 0.8);   /* the stretches show */
    int n;
    const pred_sample *rows = pred_model_measurements(m2, &n);
    assert_int_equal(n, 60);
    for (int i = 0; i < n; i++)
        assert_int_equal(rows[i].passes, 2);
    int near1 = rows_near_truth(m1), near2 = rows_near_truth(m2);
    printf("# slow stretches: %d of 60 targets within 3%% of the truth with one pass, %d with two\n", near1,
           near2);
    assert_true(near1 <= 50);
    assert_true(near2 >= 57);
    pred_free(m1);
    pred_free(m2);
}

/* A device that drops a network now and then costs that network, not the
 * calibration; one that drops most of them stops it with the reason. */
static void failed_measurements_are_skipped_then_fatal(void **state)
{
    (void)state;
    pred_calib_opts o;
    small_calib(&o, 60);
    o.max_spread = 0;
    nas_err err;
    pred_calib_report rep;
    pred_model *m = NULL;
    synth_ctx c = {.noise = 0.01, .fail_every = 20};
    nas_pcg32_seed(&c.rng, 3, 1);
    assert_int_equal(pred_calibrate(&o, synth_measure, &c, &m, &rep, &err), NAS_OK);
    assert_int_equal(rep.failed, 3);
    assert_int_equal(rep.samples, 57);
    assert_non_null(strstr(rep.first_failure, "dropped call 20"));
    pred_free(m);

    o.passes = 2;   /* a failure in the second pass drops the network's first measurement too */
    synth_ctx c2 = {.noise = 0.01, .fail_every = 25};
    nas_pcg32_seed(&c2.rng, 3, 1);
    assert_int_equal(pred_calibrate(&o, synth_measure, &c2, &m, &rep, &err), NAS_OK);
    int n;
    pred_model_measurements(m, &n);
    assert_int_equal(n, rep.samples);
    assert_int_equal(rep.samples, 60 - rep.failed);
    assert_true(rep.failed >= 4);
    pred_free(m);
    m = NULL;

    o.passes = 1;
    synth_ctx c3 = {.noise = 0.01, .fail_every = 2};
    nas_pcg32_seed(&c3.rng, 3, 1);
    assert_int_equal(pred_calibrate(&o, synth_measure, &c3, &m, &rep, &err), NAS_EIO);
    assert_null(m);
    assert_non_null(strstr(err.msg, "failed to measure"));
    assert_non_null(strstr(err.msg, "synthetic device dropped"));
    /* and without an error record to fill (err NULL), the same status, no crash */
    synth_ctx c4 = {.noise = 0.01, .fail_every = 2};
    nas_pcg32_seed(&c4.rng, 3, 1);
    assert_int_equal(pred_calibrate(&o, synth_measure, &c4, &m, &rep, NULL), NAS_EIO);
    assert_null(m);
}

/* The predictor file keeps its measurements; a refit on them measures
 * nothing and reproduces the calibration's fit exactly. */
static void refit_from_the_file_reproduces_the_fit(void **state)
{
    (void)state;
    char dir[64], path[128];
    nas_err err;
    save_calibrated(dir, path);
    pred_model *back = NULL, *again = NULL;
    assert_int_equal(pred_load(path, &back, &err), NAS_OK);
    int n0, n1;
    const pred_sample *r0 = pred_model_measurements(calibrated, &n0), *r1 = pred_model_measurements(back, &n1);
    assert_int_equal(n0, calib_rep.samples);
    assert_int_equal(n1, n0);
    for (int i = 0; i < n0; i++) {
        assert_memory_equal(r0[i].genome.g, r1[i].genome.g, (size_t)r0[i].genome.n);
        assert_int_equal(r0[i].passes, r1[i].passes);
        assert_true(r0[i].latency_ms == r1[i].latency_ms && r0[i].energy_pass[0] == r1[i].energy_pass[0]);
    }
    pred_calib_opts o;
    pred_calib_opts_default(&o);
    o.folds = 4;
    o.fit.max_rounds = 300;
    o.refit = back;
    pred_calib_report rep;
    synth_ctx never = {0};
    assert_int_equal(pred_calibrate(&o, synth_measure, &never, &again, &rep, &err), NAS_OK);
    assert_int_equal(never.calls, 0);
    assert_int_equal(rep.samples, n0);
    assert_string_equal(pred_model_hw(again)->meter, pred_model_hw(calibrated)->meter);
    assert_int_equal(pred_model_hw(again)->threads, 2);
    /* the last round of the calibration saw the same rows with the same options */
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++)
            assert_true(rep.cv[t][k].mape == calib_rep.cv[t][k].mape);
    pred_free(again);
    pred_free(back);

    /* a damaged row is named */
    char bad[128];
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    damage(path, bad, "\"latency_passes\": [", "\"latency_passes\": [-1, ", 0);
    assert_int_equal(pred_load(bad, &back, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "measurements[0].latency_passes"));
    tu_rmtree(dir);
}

static void networks_outside_the_fit_are_flagged(void **state)
{
    (void)state;
    space_spec spec;
    static space_net net;
    nas_err err;
    char why[256];
    assert_int_equal(space_preset("mobilenetv2", &spec, &err), NAS_OK);
    assert_int_equal(space_resolve(&spec, &net, &err), NAS_OK);
    assert_int_equal(pred_model_outside(calibrated, &net, why, sizeof why), 1);
    assert_non_null(strstr(why, "224x224"));
}

/* A copy of the saved predictor at dst with the value of the first "key": set
 * to `value` (text as it goes into the JSON). */
static void set_value(const char *src, const char *dst, const char *key, const char *value)
{
    char *text, from[64];
    size_t len;
    nas_err err;
    assert_int_equal(nas_read_file(src, &text, &len, &err), NAS_OK);
    snprintf(from, sizeof from, "\"%s\": ", key);
    char *hit = strstr(text, from);
    assert_non_null(hit);
    char *v = hit + strlen(from), *end = v + strcspn(v, ",\n}");
    FILE *f = fopen(dst, "w");
    assert_non_null(f);
    fwrite(text, 1, (size_t)(v - text), f);
    fputs(value, f);
    fputs(end, f);
    fclose(f);
    nas_free(text);
}

/* Numbers too large for their fields were undefined behaviour (a double
 * converted to int) and numbers outside what makes sense were taken as they
 * came: each is now an error naming the field and its range. */
static void numbers_out_of_range_name_the_field(void **state)
{
    (void)state;
    char dir[64], good[128], bad[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(good, sizeof good, "%s/pred.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    nas_err err;
    assert_int_equal(pred_save(calibrated, good, &err), NAS_OK);
    const struct {
        const char *key, *value, *field;
    } cases[] = {
        {"cores", "1e300", "hardware.cores: 1e+300 is out of range"},
        {"threads", "-3", "hardware.threads: -3 is out of range"},
        {"resolution", "1e10", "space.resolution: 1e+10 is out of range (8 to 1024)"},
        {"n_stages", "99", "space.n_stages: 99 is out of range (1 to 7)"},
        {"in_ch", "2.5", "space.in_ch: 2.5 is not a whole number"},
        {"samples", "-1e300", "samples: -1e+300 is out of range"},
        {"version", "1e300", "version: 1e+300"},
        {"n", "1e20", "latency_ms.cv.net.n: 1e+20 is out of range"},
        {"within10", "7", "latency_ms.cv.net.within10: 7 is out of range (0 to 1)"},
        {"kendall_tau", "-2", "latency_ms.cv.net.kendall_tau: -2 is out of range (-1 to 1)"},
        {"latency_spread", "1e300", "noise.latency_spread: 1e+300 is out of range"},
        {"quality", "\"guessed\"", "energy.quality: 'guessed' is not one of measured|sampled|estimated"},
        {"latency_stat", "\"mean\"", "latency_stat: 'mean' is not one of p10|median|cmd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pred_model *m = NULL;
        set_value(good, bad, cases[i].key, cases[i].value);
        nas_status st = pred_load(bad, &m, &err);
        if (st == NAS_OK)
            pred_free(m);
        assert_int_equal(st, NAS_EINVAL);
        assert_null(m);
        if (!strstr(err.msg, cases[i].field))
            fail_msg("%s = %s: '%s' does not say '%s'", cases[i].key, cases[i].value, err.msg, cases[i].field);
    }
    tu_rmtree(dir);
}

/* A file that loads saves again into one that loads back: a string cut to
 * its field's size could end inside a UTF-8 character, which JSON cannot
 * write (the file loaded, and then would not save), so it is refused; the
 * text of a loaded file saves unchanged. */
static void what_loads_saves_and_loads_back(void **state)
{
    (void)state;
    nas_err err;
    char *text = pred_to_json(calibrated, &err);
    assert_non_null(text);
    pred_model *back = NULL;
    assert_int_equal(pred_from_json(text, "memory", &back, &err), NAS_OK);
    char *again = pred_to_json(back, &err);
    assert_non_null(again);
    assert_string_equal(again, text);
    nas_free(again);
    pred_free(back);

    char dir[64], good[128], bad[128], model[400] = "\"";
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(good, sizeof good, "%s/pred.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    FILE *f = fopen(good, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    for (int i = 0; i < 100; i++)
        strcat(model, "\xc3\xa9");   /* 200 bytes: cut at 127, half an "é" */
    strcat(model, "\"");
    set_value(good, bad, "cpu_model", model);
    assert_int_equal(pred_load(bad, &back, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "hardware.cpu_model: longer than 127 bytes"));
    nas_free(text);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(both_kinds_fit_a_synthetic_cpu_tightly),
        cmocka_unit_test(fits_are_deterministic),
        cmocka_unit_test(bad_targets_are_refused),
        cmocka_unit_test(allocation_failures_are_reported_not_crashes),
        cmocka_unit_test(calibration_survives_a_drifting_machine),
        cmocka_unit_test(a_uniformly_jittery_machine_is_not_measured_forever),
        cmocka_unit_test(passes_vote_out_slow_stretches),
        cmocka_unit_test(failed_measurements_are_skipped_then_fatal),
    };
    const struct CMUnitTest calib_tests[] = {
        cmocka_unit_test(calibration_meets_the_goal_on_a_synthetic_cpu),
        cmocka_unit_test(save_and_load_predict_identically),
        cmocka_unit_test(damaged_files_give_clear_errors),
        cmocka_unit_test(numbers_out_of_range_name_the_field),
        cmocka_unit_test(what_loads_saves_and_loads_back),
        cmocka_unit_test(loading_under_allocation_failures),
        cmocka_unit_test(refit_from_the_file_reproduces_the_fit),
        cmocka_unit_test(networks_outside_the_fit_are_flagged),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("calibration", calib_tests, calibrate_once, free_calibrated);
    return failed;
}
