/* test_autopred.c — the predictor in the loop by default (--predictor auto):
 * a search with no predictor calibrates one for this machine and space,
 * charges its joules to the budget, caches it, and ranks with it; the next
 * search on the same space finds it cached and pays nothing; a cached file
 * fit on other hardware is not trusted but fit again; --predictor none and a
 * cache that is off go without. Each search runs `nas` in a child process
 * with NAS_CACHE_DIR naming a fresh folder. */
#include "tests/testutil.h"
#include "base/nas.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>

#define SEARCH "search --data mnist --subset 64 --epochs 1 --stages 1 --max-width 0.25 --threads 1 " \
                    "--final-top 0 --bench-seconds 0.02 --seed 3 --json --budget-evals 2 "

/* db NULL: --no-db */
static json_t *search_db_json(const char *db, const char *extra, char **log)
{
    char cmd[1024], *out = NULL;
    char errp[] = "/tmp/nas-autopred-err-XXXXXX";
    int fd = mkstemp(errp);
    assert_true(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, SEARCH "%s%s %s 2>%s", db ? "--db " : "--no-db", db ? db : "", extra, errp);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(j);
    size_t len = 0;
    FILE *f = fopen(errp, "r");
    assert_non_null(f);
    *log = calloc(1, 1 << 16);
    len = fread(*log, 1, (1 << 16) - 1, f);
    (*log)[len] = '\0';
    fclose(f);
    unlink(errp);
    return j;
}

static json_t *search_json(const char *extra, char **log) { return search_db_json(NULL, extra, log); }

static double energy_field(json_t *j, const char *k)
{
    return json_real_value(json_object_get(json_object_get(j, "energy"), k));
}

/* The predicted energy of the best candidate: there only when a predictor ranked. */
static int best_was_predicted(json_t *j)
{
    return json_is_real(json_object_get(json_object_get(j, "best"), "pred_energy_mj"));
}

/* The one predictor file in dir (path filled); fails when there are none or several. */
static void only_file(const char *dir, char *path, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "predictor-", 10)) {
            snprintf(path, n, "%s/%s", dir, e->d_name);
            count++;
        }
    closedir(d);
    assert_int_equal(count, 1);
}

static void calibrates_once_then_uses_the_cache(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[256], file[512], *log = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    setenv("NAS_CACHE_DIR", dir, 1);

    /* first: calibrated, charged (the budget holds it), cached, used, and
     * recorded in the run store, whose report counts it in the search energy */
    char db[512], cmd[1024], *out = NULL;
    snprintf(db, sizeof db, "%s/runs.db", dir);
    json_t *a = search_db_json(db, "--name calib --budget-joules 5000", &log);
    assert_non_null(strstr(log, "calibrated for this machine and space"));
    double calib = energy_field(a, "calibration_joules");
    assert_true(calib > 0);
    assert_true(energy_field(a, "joules") > calib);   /* the candidates cost something besides */
    assert_true(energy_field(a, "joules_with_uncertainty") <= 5000);
    assert_true(best_was_predicted(a));
    snprintf(cmd, sizeof cmd, "report calib --db %s --no-files --json", db);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    json_t *r = json_loads(out, 0, NULL);
    free(out);
    json_t *line = json_array_get(json_object_get(r, "search_energy"), 0);
    assert_int_equal(json_array_size(json_object_get(r, "search_energy")), 1);
    assert_true(fabs(json_real_value(json_object_get(line, "calibration_joules")) - calib) <= 1e-6 * calib);
    assert_true(fabs(json_real_value(json_object_get(line, "joules")) - energy_field(a, "joules")) <=
                1e-6 * energy_field(a, "joules"));
    json_decref(r);
    snprintf(cmd, sizeof cmd, "report calib --db %s --no-files", db);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    assert_non_null(strstr(out, "J calibrating the predictor"));
    free(out);
    only_file(dir, file, sizeof file);
    json_decref(a);
    free(log);

    /* second, on the same space: found, nothing charged */
    json_t *b = search_json("", &log);
    assert_non_null(strstr(log, "(cached for this machine and space)"));
    assert_null(strstr(log, "calibrated for"));
    assert_true(energy_field(b, "calibration_joules") == 0);
    assert_true(best_was_predicted(b));
    json_decref(b);
    free(log);

    /* a cached file fit on another CPU is fit again, in its place */
    char *text = NULL;
    size_t len = 0;
    nas_err err;
    assert_int_equal(nas_read_file(file, &text, &len, &err), NAS_OK);
    json_t *p = json_loads(text, 0, NULL);
    nas_free(text);
    assert_non_null(p);
    json_t *hw = json_object_get(p, "hardware");
    assert_non_null(hw);
    json_object_set_new(hw, "cpu_model", json_string("Some Other CPU 9000"));
    assert_int_equal(json_dump_file(p, file, 0), 0);
    json_decref(p);
    json_t *c = search_json("", &log);
    assert_non_null(strstr(log, "does not hold here"));
    assert_non_null(strstr(log, "calibrated for this machine and space"));
    assert_true(energy_field(c, "calibration_joules") > 0);
    json_decref(c);
    free(log);
    char again[512];
    only_file(dir, again, sizeof again);
    assert_string_equal(again, file);
    assert_int_equal(nas_read_file(file, &text, &len, &err), NAS_OK);
    assert_null(strstr(text, "Some Other CPU"));
    nas_free(text);
    tu_rmtree(dir);
    setenv("NAS_CACHE_DIR", "off", 1);
}

static void none_and_off_go_without(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[256], *log = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    setenv("NAS_CACHE_DIR", dir, 1);
    json_t *a = search_json("--predictor none", &log);
    assert_non_null(strstr(log, "no predictor: every candidate is benchmarked"));
    assert_false(best_was_predicted(a));
    assert_true(energy_field(a, "calibration_joules") == 0);
    json_decref(a);
    free(log);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        assert_true(strncmp(e->d_name, "predictor-", 10) != 0);   /* nothing was cached */
    closedir(d);
    setenv("NAS_CACHE_DIR", "off", 1);
    json_t *b = search_json("", &log);
    assert_non_null(strstr(log, "no predictor: every candidate is benchmarked"));
    assert_false(best_was_predicted(b));
    json_decref(b);
    free(log);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calibrates_once_then_uses_the_cache),
        cmocka_unit_test(none_and_off_go_without),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
