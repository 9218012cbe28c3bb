/* test_deploy_cli.c — `--deploy int8`: the search measures and ranks its
 * candidates as int8 models (nas's int8 engine), says so in its report and
 * exports the chosen one as int8 too; `nas calibrate --deploy int8` fits a
 * predictor of int8 inference, and a predictor fit on the other kind is
 * refused by name rather than silently ranking the wrong models. */
#include "tests/testutil.h"
#include "base/nas.h"

#include <jansson.h>
#include <math.h>

#define SMALL "--data mnist --subset 200 --val-count 200 --epochs 1 --stages 1 --max-width 0.25 --threads 1 " \
              "--bench-seconds 0.02 --seed 4 --final-top 0"

static double num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static json_t *search_json(const char *args)
{
    char *out = NULL;
    int rc = tu_run_nas(args, &out);
    if (rc != 0) {
        print_message("nas %s: exit %d\n%s\n", args, rc, out ? out : "");
        free(out);
        return NULL;
    }
    json_t *a = json_loads(out, 0, NULL);
    free(out);
    return a;
}

/* Every candidate benchmarked (no predictor) as its int8 model; the report
 * labels the figures; the chosen model comes out as float32 and int8 ONNX. */
static void an_int8_search_measures_and_exports_int8(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], args[1024], path[256];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    char *out = NULL;
    snprintf(args, sizeof args, "search " SMALL " --budget-evals 2 --predictor none --deploy int8 --db %s/r.db "
             "--name d8 --export-dir %s/out 2>/dev/null", dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "are of the int8 model"));
    assert_non_null(strstr(out, "exported the chosen model"));
    free(out);
    snprintf(args, sizeof args, "report d8 --db %s/r.db --json --no-files", dir);
    json_t *a = search_json(args);
    assert_non_null(a);
    json_t *lb = json_object_get(a, "leaderboard");
    assert_true(json_array_size(lb) >= 1);
    for (size_t i = 0; i < json_array_size(lb); i++) {   /* each benchmarked, as its int8 model */
        json_t *lat = json_object_get(json_array_get(lb, i), "latency_ms");
        assert_true(num(lat, "value") > 0);
        assert_string_equal(json_string_value(json_object_get(lat, "quality")), "measured");
    }
    json_decref(a);
    /* the search's own export at its end wrote the int8 model beside the float one */
    snprintf(path, sizeof path, "ls %s/out/d8-c*.int8.onnx >/dev/null 2>&1 && ls %s/out/d8-c*[0-9].onnx >/dev/null 2>&1",
             dir, dir);
    assert_int_equal(system(path), 0);
    snprintf(args, sizeof args, "report d8 --db %s/r.db --no-files", dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "per int8 inference"));
    free(out);
    /* the same search without --deploy is a float32 one, and says so */
    snprintf(args, sizeof args, "search " SMALL " --budget-evals 1 --predictor none --no-db --json 2>/dev/null");
    a = search_json(args);
    assert_non_null(a);
    assert_string_equal(json_string_value(json_object_get(a, "deploy")), "float32");
    json_decref(a);
    tu_rmtree(dir);
}

/* A predictor records which inference it was fit on; a search takes only one
 * of its own kind, and --deploy int8 with an external measuring command is
 * refused (the command measures whatever it runs). */
static void predictors_are_of_one_kind_of_inference(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], args[1024];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    char *out = NULL;
    snprintf(args, sizeof args, "calibrate --deploy int8 --samples 12 --folds 2 --adaptive-rounds 0 --repeats 2 "
             "--min-seconds 0.01 --max-width 0.25 --out %s/p8.json 2>&1", dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    free(out);
    snprintf(args, sizeof args, "%s/p8.json", dir);
    json_t *p = json_load_file(args, 0, NULL);
    assert_non_null(p);
    char *txt = json_dumps(p, JSON_COMPACT);
    assert_non_null(strstr(txt, ":int8\""));
    free(txt);
    json_decref(p);

    snprintf(args, sizeof args, "search " SMALL " --budget-evals 1 --predictor %s/p8.json --no-db 2>&1", dir);
    assert_int_equal(tu_run_nas(args, &out), 2);
    assert_non_null(strstr(out, "fit on int8 inference"));
    free(out);
    snprintf(args, sizeof args, "search " SMALL " --budget-evals 1 --deploy int8 --predictor %s/p8.json --no-db "
             "--json 2>/dev/null", dir);
    json_t *a = search_json(args);
    assert_non_null(a);
    assert_string_equal(json_string_value(json_object_get(a, "deploy")), "int8");
    json_decref(a);

    assert_int_equal(tu_run_nas("calibrate --deploy int8 --measure-cmd 'echo {spec}' --samples 12 --folds 2 2>&1",
                                &out), 2);
    assert_non_null(strstr(out, "--measure-cmd"));
    free(out);
    assert_int_equal(tu_run_nas("search " SMALL " --budget-evals 1 --deploy int4 --no-db 2>&1", &out), 2);
    assert_non_null(strstr(out, "int4"));
    free(out);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_int8_search_measures_and_exports_int8),
        cmocka_unit_test(predictors_are_of_one_kind_of_inference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
