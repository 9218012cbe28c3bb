/* test_app.c — the one table of settings and job files: the examples in
 * jobs/ parse to what they say; every kind of mistake gets an error naming
 * the key and its line; a setting given as a flag, in a job file or in a
 * run's saved settings lands in the same place with the same default, and
 * the table's defaults are the modules' own. */
#include "testutil.h"

#include <glob.h>
#include <jansson.h>
#include <math.h>

#include "app/app.h"
#include "predictor/pred.h"
#include "search/dist.h"
#include "search/search.h"

static void test_job_examples_parse(void **state)
{
    app_settings j;
    nas_err err = {0};
    if (app_job_load("jobs/mnist-small.yaml", &j, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(j.job, "search");
    assert_string_equal(j.name, "mnist-small");
    assert_int_equal(j.seed, 42);
    assert_string_equal(j.data, "mnist");
    assert_int_equal(j.resolution, 28);
    assert_string_equal(j.strategy, "evolution");
    assert_int_equal(j.population, 8);
    assert_int_equal(j.sample, 3);
    assert_int_equal(j.val_count, 500);
    assert_int_equal(j.stages, 3);
    assert_true(fabs(j.target_mj - 2.0) < 1e-12);
    assert_true(fabs(j.w + 0.07) < 1e-12);
    assert_int_equal(j.hard, 0);
    assert_true(fabs(j.budget_j - 5000) < 1e-9);
    assert_int_equal(j.budget_evals, 24);
    assert_int_equal(j.subset, 4000);
    assert_int_equal(j.batch, 32);
    assert_string_equal(j.db, "runs.db");
    assert_string_equal(j.export_dir, "out/mnist-small");
    if (app_job_load("jobs/fashion-small.yaml", &j, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(j.int8, 1);   /* the main job ends with both exports */
    assert_int_equal(j.rungs, 2);  /* and searches with multi-fidelity */
    assert_int_equal(j.eta, 3);
    assert_int_equal(j.calib_images, 256);
    assert_string_equal(j.calib, "percentile");

    if (app_job_load("jobs/cifar10.yaml", &j, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(j.data, "cifar10:data/cifar-10-batches-bin");
    assert_int_equal(j.val_count, 5000);
    assert_string_equal(j.strategy, "rl");
    assert_true(fabs(j.rl_lr - 0.02) < 1e-12);
    assert_true(fabs(j.target_ms - 5.0) < 1e-12);
    assert_true(j.target_mj == 0);
    assert_int_equal(j.hard, 1);
    assert_int_equal(j.scale_resolution, 0);
    assert_true(fabs(j.max_width - 1.4) < 1e-12);

    if (app_job_load("jobs/calibrate.yaml", &j, &err))
        fail_msg("%s", err.msg);
    assert_string_equal(j.job, "calibrate");
    assert_int_equal(j.cal_samples, 60);
    assert_int_equal(j.cal_folds, 5);
    assert_int_equal(j.threads, 1);
    assert_true(fabs(j.watts - 15) < 1e-12);
    assert_int_equal(j.cal_passes, 2);
    assert_string_equal(j.cal_stat, "p10");
    assert_true(j.cal_timeout == 600);         /* the default */
}

/* Every example in jobs/, present or future, parses and round-trips to JSON. */
static void test_job_every_example_parses(void **state)
{
    glob_t g;
    assert_int_equal(glob("jobs/*.yaml", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 3);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        app_settings j;
        nas_err err = {0};
        if (app_job_load(g.gl_pathv[i], &j, &err))
            fail_msg("%s", err.msg);
        /* what a job says, a run's saved settings keep */
        char *js = app_settings_to_json(&j);
        assert_non_null(js);
        app_settings back;
        if (app_settings_from_json(js, &back, &err))
            fail_msg("%s: %s", g.gl_pathv[i], err.msg);
        char *again = app_settings_to_json(&back);
        assert_string_equal(js, again);
        nas_free(again);
        nas_free(js);
    }
    globfree(&g);
}

static void test_job_json_same_as_yaml(void **state)
{
    const char *yaml = "seed: 9\nstrategy:\n  kind: random\nobjective:\n  target_mj: 1.5\n"
                       "budget:\n  evals: 12\ndata:\n  set: fashion-mnist\n  dir: /d/fm\n";
    const char *json = "{\n  \"seed\": 9,\n  \"strategy\": {\"kind\": \"random\"},\n"
                       "  \"objective\": {\"target_mj\": 1.5},\n  \"budget\": {\"evals\": 12},\n"
                       "  \"data\": {\"set\":\"fashion-mnist\",\"dir\":\"/d/fm\"}\n}\n";
    app_settings a, b;
    nas_err err = {0};
    if (app_job_parse(yaml, strlen(yaml), "a.yaml", &a, &err))
        fail_msg("%s", err.msg);
    if (app_job_parse(json, strlen(json), "a.json", &b, &err))
        fail_msg("%s", err.msg);
    char *ja = app_settings_to_json(&a), *jb = app_settings_to_json(&b);
    assert_non_null(ja);
    assert_string_equal(ja, jb);
    assert_string_equal(a.data, "idx:/d/fm");
    /* The settings JSON is valid JSON and carries the values. */
    json_error_t je;
    json_t *o = json_loads(ja, 0, &je);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "seed")), 9);
    assert_string_equal(json_string_value(json_object_get(o, "strategy")), "random");
    json_decref(o);
    nas_free(ja);
    nas_free(jb);
}

/* Parses text that must fail; checks the message holds every needle. */
static void expect_error(const char *text, const char *where, const char *n1, const char *n2,
                         const char *n3)
{
    app_settings j;
    nas_err err = {0};
    nas_status st = app_job_parse(text, strlen(text), where, &j, &err);
    if (st != NAS_EINVAL)
        fail_msg("expected an error for:\n%s\ngot status %d (%s)", text, st, err.msg);
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(err.msg, needles[i]))
            fail_msg("error '%s' lacks '%s'", err.msg, needles[i]);
}

#define OBJ "objective:\n  target_mj: 2\n"

static void test_job_errors_name_key_and_line(void **state)
{
    /* unknown keys, top level and in a section */
    expect_error(OBJ "seeed: 3\n", "j.yaml", "j.yaml:3:", "'seeed'", "seed");
    expect_error(OBJ "strategy:\n  kind: evolution\n  popsize: 10\n", "j.yaml", "j.yaml:5:",
                 "'strategy.popsize'", "population");
    /* wrong types */
    expect_error(OBJ "seed: abc\n", "j.yaml", "j.yaml:3:", "seed", "whole number");
    expect_error(OBJ "proxy:\n  epochs: 2.5\n", "j.yaml", "j.yaml:4:", "proxy.epochs", "2.5");
    expect_error(OBJ "budget:\n  joules: \"5000\"\n", "j.yaml", "j.yaml:4:", "budget.joules",
                 "string");
    expect_error(OBJ "space:\n  scale_resolution: maybe\n", "j.yaml", "j.yaml:4:",
                 "space.scale_resolution", "true or false");
    expect_error(OBJ "data: mnist\n", "j.yaml", "j.yaml:3:", "data", "mapping");
    expect_error(OBJ "space:\n  stages: [1, 2]\n", "j.yaml", "j.yaml:4:", "space.stages", "a list");
    expect_error(OBJ "seed:\n", "j.yaml", "j.yaml:3:", "seed", "no value");
    /* out of range, and not one of the choices */
    expect_error(OBJ "strategy:\n  population: 0\n", "j.yaml", "j.yaml:4:",
                 "strategy.population", "out of range");
    expect_error(OBJ "space:\n  stages: 9\n", "j.yaml", "j.yaml:4:", "space.stages", "1..7");
    expect_error(OBJ "prune:\n  keep: 2\n", "j.yaml", "j.yaml:4:", "prune.keep", "out of range");
    expect_error(OBJ "prune:\n  distill: often\n", "j.yaml", "j.yaml:4:", "prune.distill", "true or false");
    expect_error(OBJ "final:\n  kd_alpha: 1.5\n", "j.yaml", "j.yaml:4:", "final.kd_alpha", "out of range");
    expect_error(OBJ "calibrate:\n  passes: 4\n", "j.yaml", "j.yaml:4:", "calibrate.passes", "1..3");
    expect_error(OBJ "calibrate:\n  latency_stat: mean\n", "j.yaml", "j.yaml:4:", "calibrate.latency_stat",
                 "p10");
    expect_error("objective:\n  target_mj: -1\n", "j.yaml", "j.yaml:2:", "objective.target_mj",
                 "out of range");
    expect_error(OBJ "  w: 0.5\n", "j.yaml", "j.yaml:3:", "objective.w", "out of range");
    expect_error(OBJ "strategy:\n  kind: genetic\n", "j.yaml", "j.yaml:4:", "strategy.kind",
                 "evolution|rl|random");
    expect_error(OBJ "seed: 99999999999999999999999\n", "j.yaml", "j.yaml:3:", "seed", NULL);
    /* duplicates and contradictions */
    expect_error(OBJ "seed: 1\nseed: 2\n", "j.yaml", "j.yaml:4:", "seed", "first on line 3");
    expect_error(OBJ "  target_ms: 3\n", "j.yaml", "j.yaml:3:", "not both", "line 2");
    expect_error("seed: 1\n", "j.yaml", "j.yaml", "target_mj", NULL);
    expect_error(OBJ "strategy:\n  kind: rl\n  population: 20\n", "j.yaml", "j.yaml:5:",
                 "strategy.population", "only for strategy kind evolution");
    expect_error(OBJ "strategy:\n  population: 4\n  sample: 8\n", "j.yaml", "j.yaml:5:",
                 "strategy.sample", "larger");
    expect_error(OBJ "data:\n  set: cifar10\n", "j.yaml", "j.yaml:4:", "data.dir", NULL);
    /* broken syntax: YAML and JSON both give a line */
    expect_error(OBJ "space:\n  stages: 3\n    max_width: 1\n", "j.yaml", "j.yaml:5:", NULL, NULL);
    expect_error("{\n  \"seed\": 1,\n  \"objective\": {\"target_mj\": 2,}\n}\n", "j.json",
                 "j.json:3:", NULL, NULL);
    expect_error("{\n \"objective\": {\"target_mj\": 2},\n \"proxy\": {\"epochs\": \"3\"}\n}",
                 "j.json", "j.json:3:", "proxy.epochs", "string");
    expect_error("{\"objective\": {\"target_mj\": 2}, \"seed\": 1, \"seed\": 2}", "j.json",
                 "j.json:1:", "seed", NULL);
    expect_error("", "e.yaml", "e.yaml", "empty", NULL);
    expect_error("- 1\n- 2\n", "l.yaml", "l.yaml:1:", "mapping", NULL);
}

static void test_job_missing_file(void **state)
{
    app_settings j;
    nas_err err = {0};
    assert_int_equal(app_job_load("jobs/no-such-job.yaml", &j, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "no-such-job.yaml"));
    /* Defaults stay usable after a failure. */
    assert_string_equal(app_settings_db(&j), "runs.db");
}

/* Random bytes and mutations of a good job never crash the parser. */
static void test_job_fuzz(void **state)
{
    char *good;
    size_t len;
    nas_err err = {0};
    assert_int_equal(nas_read_file("jobs/mnist-small.yaml", &good, &len, &err), NAS_OK);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 6, 6);
    char *buf = malloc(len + 1);
    int ok = 0, bad = 0;
    for (int it = 0; it < 2000; it++) {
        memcpy(buf, good, len + 1);
        int edits = 1 + (int)nas_pcg32_bounded(&rng, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = nas_pcg32_bounded(&rng, (uint32_t)len);
            static const char alphabet[] = ":-{}[]\"'# \n\t0123456789abcxyz.,&*!|>%@`";
            buf[at] = alphabet[nas_pcg32_bounded(&rng, sizeof alphabet - 1)];
        }
        app_settings j;
        nas_status st = app_job_parse(buf, len, "fuzz.yaml", &j, &err);
        if (st == NAS_OK) {
            ok++;
        } else {
            assert_int_equal(st, NAS_EINVAL);
            assert_non_null(strstr(err.msg, "fuzz.yaml"));
            bad++;
        }
    }
    free(buf);
    nas_free(good);
    assert_true(ok > 0 && bad > 0);
}

/* ---- the one table ---------------------------------------------------------- */

/* A valid value of row t other than its default, as text. */
static void other_value(const app_setting *t, char *buf, size_t n)
{
    switch (t->type) {
    case APP_LONG:
        snprintf(buf, n, "%ld", (long)(t->dflt != t->hi ? t->hi : t->lo));
        return;
    case APP_DBL:
        snprintf(buf, n, "%.17g", t->dflt != t->hi ? t->hi : t->lo);
        return;
    case APP_BOOL:
        snprintf(buf, n, "%s", t->choices ? strchr(t->choices, '|') + 1 : "true");
        return;
    case APP_CHOICE: {
        const char *last = strrchr(t->choices, '|');
        snprintf(buf, n, "%s", last ? last + 1 : t->choices);
        if (t->dflt_s && !strcmp(buf, t->dflt_s))
            snprintf(buf, n, "%.*s", (int)strcspn(t->choices, "|"), t->choices);
        return;
    }
    case APP_STR:
        snprintf(buf, n, "x%s", t->dflt_s ? t->dflt_s : "");
        return;
    }
}

/* Every row is whole: a type, a default in range (or, for a number, one
 * outside it that means "none"), help for a flag; no flag or job key twice. */
static void test_table_rows_are_whole(void **state)
{
    int n = app_settings_count();
    assert_true(n > 40);
    app_settings d;
    app_settings_defaults(&d);
    for (int i = 0; i < n; i++) {
        const app_setting *t = app_setting_at(i);
        assert_true(t->name || t->key);
        if (t->name) {
            assert_non_null(t->help);
            assert_non_null(t->group);
            assert_true(t->cmds != 0);
            assert_ptr_equal(app_setting_find(t->name, t->cmds & APP_SEARCH ? APP_SEARCH : APP_CALIBRATE), t);
        }
        for (int k = 0; k < i; k++) {
            const app_setting *u = app_setting_at(k);
            if (t->name && u->name && (t->cmds & u->cmds))
                assert_false(!strcmp(t->name, u->name));
            if (t->key && u->key && ((t->section == NULL) == (u->section == NULL)) &&
                (!t->section || !strcmp(t->section, u->section)))
                assert_false(!strcmp(t->key, u->key));
        }
        assert_true(t->off + t->size <= sizeof d);
        if (t->type == APP_CHOICE && t->dflt_s && *t->dflt_s)
            assert_non_null(strstr(t->choices, t->dflt_s));
    }
}

/* The same value given as a flag and as a job key lands in the same slot,
 * and a run's saved settings bring it back: for every row that is both. */
static void test_flag_job_and_saved_agree(void **state)
{
    for (int i = 0; i < app_settings_count(); i++) {
        const app_setting *t = app_setting_at(i);
        if (!t->name || !t->key || !(t->cmds & APP_SEARCH))
            continue;
        char v[600], text[1200];
        other_value(t, v, sizeof v);
        app_settings by_flag, by_job, saved;
        nas_err err = {0};
        app_settings_defaults(&by_flag);
        snprintf(by_flag.data, sizeof by_flag.data, "mnist");
        if (app_setting_parse(t, &by_flag, t->type == APP_BOOL ? NULL : v, &err))
            fail_msg("--%s %s: %s", t->name, v, err.msg);
        /* a job needs a target, and a strategy's own keys its strategy */
        int is_target = t->section && !strcmp(t->section, "objective") && strstr(t->key, "target");
        const char *target = is_target ? "" : "  target_mj: 2\n";
        if (!t->section)
            snprintf(text, sizeof text, "objective:\n%s%s: %s\n", target, t->key, v);
        else if (!strcmp(t->section, "objective"))
            snprintf(text, sizeof text, "objective:\n%s  %s: %s\n", target, t->key, v);
        else if (t->only_for)
            snprintf(text, sizeof text, "objective:\n%sstrategy:\n  kind: %s\n  %s: %s\n", target, t->only_for,
                     t->key, v);
        else
            snprintf(text, sizeof text, "objective:\n%s%s:\n  %s: %s\n", target, t->section, t->key, v);
        if (app_job_parse(text, strlen(text), "j.yaml", &by_job, &err))
            fail_msg("%s\n%s", text, err.msg);
        const char *a = (const char *)&by_flag + t->off, *b = (const char *)&by_job + t->off;
        if (memcmp(a, b, t->size) != 0)
            fail_msg("--%s and %s.%s differ", t->name, t->section ? t->section : "", t->key);
        char *js = app_settings_to_json(&by_job);
        assert_non_null(js);
        if (app_settings_from_json(js, &saved, &err))
            fail_msg("%s: %s", t->name, err.msg);
        assert_memory_equal(b, (const char *)&saved + t->off, t->size);
        nas_free(js);
    }
}

/* A run saved with no settings resumes with the table's defaults; one saved
 * by an older nas ("the strategy's own" as -1) with the same. */
static void test_saved_defaults_are_the_table_s(void **state)
{
    app_settings d, s;
    nas_err err = {0};
    app_settings_defaults(&d);
    assert_int_equal(app_settings_from_json("{}", &s, &err), NAS_OK);
    char *a = app_settings_to_json(&d), *b = app_settings_to_json(&s);
    assert_string_equal(a, b);
    nas_free(b);
    assert_int_equal(app_settings_from_json("{\"rl-lr\":-1,\"entropy\":-1,\"baseline-decay\":-1,\"ppo-epochs\":-1}",
                                            &s, &err), NAS_OK);
    b = app_settings_to_json(&s);
    assert_string_equal(a, b);
    nas_free(a);
    nas_free(b);
    assert_int_equal(app_settings_from_json("{\"strategy\":\"annealing\"}", &s, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "strategy"));
    assert_int_equal(app_settings_from_json("{\"batch\":0}", &s, &err), NAS_EINVAL);
    assert_int_equal(app_settings_from_json("{\"no-such\":1}", &s, &err), NAS_EINVAL);
}

/* Where a module has an option default of its own, the table's is the same. */
static void test_defaults_are_the_modules(void **state)
{
    app_settings d;
    app_settings_defaults(&d);
    search_opts rl;
    search_opts_default(&rl, SEARCH_RL, 0);
    assert_true(d.rl_lr == rl.lr);
    assert_true(d.entropy == rl.entropy_coef);
    assert_true(d.baseline_decay == rl.baseline_decay);
    assert_int_equal(d.rl_batch, rl.batch);
    assert_int_equal(d.ppo_epochs, rl.ppo_epochs);
    assert_int_equal(d.mutations, rl.n_mutations);
    assert_int_equal(d.seed, (long)rl.seed);
    search_loop_opts lo;
    search_loop_opts_default(&lo, SEARCH_EVOLUTION, 0);
    assert_int_equal(d.measure_every, lo.measure_every);
    assert_int_equal(d.measure_top, lo.measure_top);
    pred_calib_opts co;
    pred_calib_opts_default(&co);
    assert_int_equal(d.cal_samples, co.samples);
    assert_int_equal(d.cal_samples + d.cal_samples / 2, co.max_samples);
    assert_int_equal(d.cal_folds, co.folds);
    assert_int_equal(d.cal_rounds, co.adaptive_rounds);
    assert_true(d.cal_max_spread == co.max_spread);
    assert_int_equal(d.in_channels, co.space.in_ch);
    assert_int_equal(d.classes, co.space.num_classes);
    ev_quant_opts qo, qs;
    ev_quant_opts_default(&qo);
    app_settings_quant(&d, &qs);
    assert_int_equal(d.calib_images, qo.images);
    assert_int_equal(qs.images, qo.images);
    assert_int_equal(qs.method, qo.method);
    /* a job file and the flags start from the same place */
    app_settings j;
    nas_err err = {0};
    const char *job = "objective:\n  target_mj: 2\n";
    assert_int_equal(app_job_parse(job, strlen(job), "j.yaml", &j, &err), NAS_OK);
    assert_int_equal(j.batch, d.batch);
    assert_true(j.lr == d.lr);
    assert_int_equal(j.stages, d.stages);
    assert_true(j.max_width == d.max_width);
}

/* A flag is checked as its job key is, and --help lists it with its default. */
static void test_flags_checked_and_helped(void **state)
{
    app_settings s;
    nas_err err = {0};
    app_settings_defaults(&s);
    const app_setting *t = app_setting_find("--target-mj", APP_SEARCH);
    assert_non_null(t);
    assert_int_equal(app_setting_parse(t, &s, "0", &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "--target-mj"));
    assert_int_equal(app_setting_parse(t, &s, "nan", &err), NAS_EINVAL);
    assert_int_equal(app_setting_parse(app_setting_find("strategy", APP_SEARCH), &s, "genetic", &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "evolution|rl|random"));
    assert_null(app_setting_find("samples", APP_SEARCH));   /* calibrate's, not search's */
    assert_non_null(app_setting_find("samples", APP_CALIBRATE));
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    app_settings_help(f, APP_SEARCH);
    fclose(f);
    assert_non_null(strstr(out, "--batch B"));
    assert_non_null(strstr(out, "(default 32)"));
    assert_non_null(strstr(out, "--budget-joules J"));
    assert_null(strstr(out, "--samples"));
    free(out);
    /* cross-checks name what conflicts */
    snprintf(s.data, sizeof s.data, "mnist");
    s.budget_evals = 3;
    s.target_mj = 1;
    s.target_ms = 1;
    assert_int_equal(app_settings_check(&s, APP_SEARCH, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "one target at a time"));
}

/* A search session in-process: stopped at a budget of 2 candidates and
 * opened again under the same run name with 3, it resumes from the store and
 * ends where one uninterrupted session of 3 (no store) ends, candidate for
 * candidate. */
static void search_tiny(app_settings *s, const char *db, long evals)
{
    app_settings_defaults(s);
    snprintf(s->data, sizeof s->data, "mnist");
    s->budget_evals = evals;
    s->subset = 200, s->val_count = 100, s->test_limit = 100, s->epochs = 1, s->threads = 1;
    s->stages = 1, s->max_width = 0.25, s->bench_s = 0.02, s->seed = 5;
    s->no_export = 1, s->final_top = 0;
    if (db) {
        snprintf(s->db, sizeof s->db, "%s", db);
        snprintf(s->name, sizeof s->name, "inproc");
    } else {
        s->no_db = 1;
    }
}

/* Runs a session to its end; its first max results into r. Returns how many it holds. */
static int run_session(search_dist *d, const app_settings *s, search_result *r, int max)
{
    app_search *c = NULL;
    nas_err err = {0};
    search_stop why;
    int final_failed = 0;
    nas_status st = app_search_open("search", s, d, 0, &c, &err);
    if (!st)
        st = app_search_run(c, &why, &final_failed, &err);
    if (st)
        fail_msg("%s", err.msg);
    const search_loop *l = app_search_loop(c);
    int n = search_loop_n_results(l);
    for (int i = 0; i < n && i < max; i++)
        r[i] = *search_loop_result(l, i);
    app_search_close(c);
    return n;
}

static void test_search_session_resumes_in_process(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[256], db[300];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(db, sizeof db, "%s/runs.db", dir);
    int argc = 1;
    char *av[] = {"test_app", NULL}, **argv = av;
    search_dist *d = NULL;
    nas_err err = {0};
    assert_int_equal(search_dist_init(&argc, &argv, &d, &err), NAS_OK);
    app_settings s;
    search_result r[3], ref[3];
    search_tiny(&s, db, 2);
    assert_int_equal(run_session(d, &s, r, 3), 2);
    search_tiny(&s, db, 3);
    assert_int_equal(run_session(d, &s, r, 3), 3);
    search_tiny(&s, NULL, 3);
    assert_int_equal(run_session(d, &s, ref, 3), 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].id, ref[i].id);
        assert_true(r[i].eval.accuracy > 0 && r[i].eval.accuracy == ref[i].eval.accuracy);
    }
    search_dist_finish(d);
    tu_rmtree(dir);
}

/* Multi-fidelity in a real session: with rungs 3 and eta 2 the best half of
 * each rung trains on from its stored weights; a session stopped at 4
 * evaluations and resumed to 7 ends where one uninterrupted session of 7
 * (another store) ends, rung for rung. */
static void rung_settings(app_settings *s, const char *db, long evals)
{
    search_tiny(s, db, evals);
    snprintf(s->name, sizeof s->name, "mf");
    s->rungs = 3;
    s->eta = 2;
    s->subset = 400;
}

static void test_search_session_with_rungs_resumes(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[256], db1[300], db2[300];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(db1, sizeof db1, "%s/a.db", dir);
    snprintf(db2, sizeof db2, "%s/b.db", dir);
    int argc = 1;
    char *av[] = {"test_app", NULL}, **argv = av;
    search_dist *d = NULL;
    nas_err err = {0};
    assert_int_equal(search_dist_init(&argc, &argv, &d, &err), NAS_OK);
    search_result r[8], ref[8];
    app_settings s;
    rung_settings(&s, db1, 4);
    assert_int_equal(run_session(d, &s, r, 8), 4);
    rung_settings(&s, db1, 7);
    assert_int_equal(run_session(d, &s, r, 8), 7);
    rung_settings(&s, db2, 7);
    assert_int_equal(run_session(d, &s, ref, 8), 7);
    int promoted = 0;
    for (int i = 0; i < 7; i++) {
        assert_int_equal(r[i].id, ref[i].id);
        assert_int_equal(r[i].rung, ref[i].rung);
        assert_int_equal(r[i].parent, ref[i].parent);
        assert_true(r[i].eval.accuracy == ref[i].eval.accuracy);
        if (r[i].rung > 0) {
            promoted++;
            int found = 0;
            for (int j = 0; j < i; j++)
                if (r[j].id == r[i].parent) {
                    assert_int_equal(r[j].rung, r[i].rung - 1);
                    found = 1;
                }
            assert_true(found);   /* its parent finished before it */
        }
    }
    assert_true(promoted >= 2);
    search_dist_finish(d);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_examples_parse),
        cmocka_unit_test(test_job_every_example_parses),
        cmocka_unit_test(test_job_json_same_as_yaml),
        cmocka_unit_test(test_job_errors_name_key_and_line),
        cmocka_unit_test(test_job_missing_file),
        cmocka_unit_test(test_job_fuzz),
        cmocka_unit_test(test_table_rows_are_whole),
        cmocka_unit_test(test_flag_job_and_saved_agree),
        cmocka_unit_test(test_saved_defaults_are_the_table_s),
        cmocka_unit_test(test_defaults_are_the_modules),
        cmocka_unit_test(test_flags_checked_and_helped),
        cmocka_unit_test(test_search_session_resumes_in_process),
        cmocka_unit_test(test_search_session_with_rungs_resumes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
