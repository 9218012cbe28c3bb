/* test_runs_job.c — job files: the examples in jobs/ parse to what they say;
 * every kind of mistake gets an error naming the key and its line. */
#include "testutil.h"

#include <glob.h>
#include <jansson.h>
#include <math.h>

#include "runs/runs.h"

static void test_job_examples_parse(void **state)
{
    runs_job j;
    nas_err err = {0};
    if (runs_job_load("jobs/mnist-small.yaml", &j, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(j.kind, RUNS_JOB_SEARCH);
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
    assert_true(fabs(j.budget_joules - 5000) < 1e-9);
    assert_int_equal(j.budget_evals, 24);
    assert_int_equal(j.subset, 4000);
    assert_int_equal(j.batch, 32);
    assert_string_equal(j.db, "runs.db");
    assert_string_equal(j.export_dir, "out/mnist-small");

    if (runs_job_load("jobs/cifar10.yaml", &j, &err))
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

    if (runs_job_load("jobs/calibrate.yaml", &j, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(j.kind, RUNS_JOB_CALIBRATE);
    assert_int_equal(j.cal_samples, 60);
    assert_int_equal(j.cal_folds, 5);
    assert_int_equal(j.threads, 1);
    assert_true(fabs(j.watts_per_core - 15) < 1e-12);
    assert_int_equal(j.cal_passes, 2);
    assert_int_equal(j.cal_latency_stat, 0);   /* p10 */
    assert_true(j.cal_timeout == 600);         /* the default */
}

/* Every example in jobs/, present or future, parses and round-trips to JSON. */
static void test_job_every_example_parses(void **state)
{
    glob_t g;
    assert_int_equal(glob("jobs/*.yaml", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 3);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        runs_job j;
        nas_err err = {0};
        if (runs_job_load(g.gl_pathv[i], &j, &err))
            fail_msg("%s", err.msg);
        char *js = runs_job_to_json(&j);
        assert_non_null(js);
        json_t *o = json_loads(js, 0, NULL);
        assert_non_null(o);
        json_decref(o);
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
    runs_job a, b;
    nas_err err = {0};
    if (runs_job_parse(yaml, strlen(yaml), "a.yaml", &a, &err))
        fail_msg("%s", err.msg);
    if (runs_job_parse(json, strlen(json), "a.json", &b, &err))
        fail_msg("%s", err.msg);
    char *ja = runs_job_to_json(&a), *jb = runs_job_to_json(&b);
    assert_non_null(ja);
    assert_string_equal(ja, jb);
    assert_string_equal(a.data, "idx:/d/fm");
    /* The settings JSON is valid JSON and carries the values. */
    json_error_t je;
    json_t *o = json_loads(ja, 0, &je);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "seed")), 9);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "strategy"), "kind")),
                        "random");
    json_decref(o);
    nas_free(ja);
    nas_free(jb);
}

/* Parses text that must fail; checks the message holds every needle. */
static void expect_error(const char *text, const char *where, const char *n1, const char *n2,
                         const char *n3)
{
    runs_job j;
    nas_err err = {0};
    nas_status st = runs_job_parse(text, strlen(text), where, &j, &err);
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
    runs_job j;
    nas_err err = {0};
    assert_int_equal(runs_job_load("jobs/no-such-job.yaml", &j, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "no-such-job.yaml"));
    /* Defaults stay usable after a failure. */
    assert_string_equal(j.db, "runs.db");
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
        runs_job j;
        nas_status st = runs_job_parse(buf, len, "fuzz.yaml", &j, &err);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job_examples_parse),
        cmocka_unit_test(test_job_every_example_parses),
        cmocka_unit_test(test_job_json_same_as_yaml),
        cmocka_unit_test(test_job_errors_name_key_and_line),
        cmocka_unit_test(test_job_missing_file),
        cmocka_unit_test(test_job_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
