/* test_cli_ux.c — what a new user meets at the command line: energy labelled
 * by its quality (an estimate is never called measured), targets refused when
 * they mean nothing, every search recorded in ./runs.db unless --no-db, the
 * chosen model exported under out/RUN/, a warning when the best learned
 * nothing, an export path honoured as typed, a run store's status that cannot
 * be written reported (not left "running"), and the small things: one hint,
 * an example in every --help, an empty store file explained. Each search runs
 * in a folder of its own under /tmp, so the checkout gets no files. */
#include "tests/testutil.h"

#include <limits.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "base/nas.h"
#include "runs/runs.h"

static char repo[256];

static int setup(void **state)
{
    (void)state;
    return getcwd(repo, sizeof repo) ? 0 : -1;
}

/* `nas ARGS` run in folder dir, stdout and stderr both into *out. */
static int nas_in(const char *dir, const char *args, char **out)
{
    char cmd[8192];
    const char *bin = tu_nas_bin();
    char abs_bin[1024];
    snprintf(abs_bin, sizeof abs_bin, "%s%s%.700s", bin[0] == '/' ? "" : repo, bin[0] == '/' ? "" : "/", bin);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", dir, abs_bin, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 1 << 16, len = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0;
}

#define TINY "search --data mnist --subset 64 --epochs 1 --stages 1 --max-width 0.25 --threads 1 " \
             "--bench-seconds 0.02 --seed 3 --meter model --final-top 0"

static void targets_must_mean_something(void **state)
{
    (void)state;
    const char *bad[] = {"--target-mj 0", "--target-mj -1", "--target-mj nan", "--target-ms 0"};
    for (int i = 0; i < 4; i++) {
        char args[256], *out = NULL;
        snprintf(args, sizeof args, "search --data mnist --budget-evals 1 --no-db %s 2>&1", bad[i]);
        assert_int_equal(tu_run_nas(args, &out), 2);
        char flag[16];
        snprintf(flag, sizeof flag, "%.11s", bad[i]);
        assert_non_null(strstr(out, flag));
        free(out);
    }
}

/* Without --db: ./runs.db holds the run (nas ls finds it), the chosen model
 * goes to out/RUN/, every energy figure of the model meter says estimated,
 * and a best at chance accuracy (a learning rate too small to learn) is
 * warned about. With --no-db: no file at all. */
static void search_records_by_default_and_labels_estimates(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], args[2048], *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, TINY " --budget-evals 2 --lr 1e-8 --data-dir '%s/data' --name tiny", repo);
    assert_int_equal(nas_in(dir, args, &out), 0);
    assert_true(exists(dir, "runs.db"));
    assert_true(exists(dir, "out/tiny/tiny-c0.onnx") || exists(dir, "out/tiny/tiny-c1.onnx"));
    assert_null(strstr(out, "(measured)"));
    assert_null(strstr(out, "meas_mJ"));
    assert_non_null(strstr(out, "mJ (estimated)"));
    assert_non_null(strstr(out, "chance"));
    free(out);
    assert_int_equal(nas_in(dir, "ls --db runs.db", &out), 0);
    assert_non_null(strstr(out, "tiny"));
    assert_non_null(strstr(out, "evolution"));
    free(out);
    tu_rmtree(dir);

    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, TINY " --budget-evals 1 --no-db --data-dir '%s/data'", repo);
    assert_int_equal(nas_in(dir, args, &out), 0);
    free(out);
    assert_false(exists(dir, "runs.db"));
    assert_false(exists(dir, "out"));
    snprintf(args, sizeof args, TINY " --budget-evals 1 --no-db --name x");
    assert_int_equal(nas_in(dir, args, &out), 2);
    assert_non_null(strstr(out, "--no-db"));
    free(out);
    tu_rmtree(dir);
}

/* A store whose run status cannot be written (a trigger refuses it): the
 * search says so and fails, rather than leaving the run marked running. */
static void a_status_that_cannot_be_written_is_an_error(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], db_path[128], args[2048], *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(db_path, sizeof db_path, "%s/s.db", dir);
    runs_db *db = NULL;
    nas_err e = {0};
    assert_int_equal(runs_open(db_path, RUNS_OPEN_CREATE, &db, &e), NAS_OK);
    assert_int_equal(sqlite3_exec(runs_sqlite(db),
                                  "CREATE TRIGGER frozen BEFORE UPDATE OF status ON runs "
                                  "BEGIN SELECT RAISE(ABORT, 'status frozen by the test'); END",
                                  NULL, NULL, NULL), SQLITE_OK);
    runs_close(db);
    snprintf(args, sizeof args, TINY " --budget-evals 1 --no-export --db '%s' --name s --data-dir '%s/data'",
             db_path, repo);
    assert_int_not_equal(nas_in(dir, args, &out), 0);
    assert_non_null(strstr(out, "status frozen by the test"));
    free(out);
    tu_rmtree(dir);
}

static void train_export_writes_where_asked(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], spec[128], args[1024], *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(spec, sizeof spec, "%s/s.json", dir);
    FILE *f = fopen(spec, "w");
    assert_non_null(f);
    fputs("{\"resolution\":28,\"in_channels\":1,\"num_classes\":10,\"stem\":{\"channels\":8,\"stride\":2},"
          "\"stages\":[{\"channels\":8,\"expand\":1,\"repeats\":1}],\"head\":{\"channels\":32}}", f);
    fclose(f);
    snprintf(args, sizeof args, "train %s --data mnist --epochs 1 --subset 64 --threads 1 --export %s/a/b/m.onnx 2>&1",
             spec, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    free(out);
    assert_true(exists(dir, "a/b/m.onnx") && exists(dir, "a/b/m.model-card.md"));
    assert_int_equal(tu_run_nas(args, &out), 2);
    assert_non_null(strstr(out, "exists"));
    free(out);
    snprintf(args, sizeof args, "train %s --data mnist --epochs 1 --subset 64 --threads 1 --export %s/a/b/m.onnx "
             "--force 2>&1", spec, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    free(out);
    tu_rmtree(dir);
}

static void small_things(void **state)
{
    (void)state;
    char *out = NULL;
    /* one hint, not two */
    assert_int_equal(tu_run_nas("run 2>&1", &out), 2);
    const char *h = strstr(out, "--help");
    assert_non_null(h);
    assert_null(strstr(h + 1, "--help"));
    free(out);
    /* every command's help shows an example */
    const char *cmds[] = {"search", "run", "resume", "calibrate", "predict", "train", "export", "report", "ls",
                          "space"};
    for (int i = 0; i < 10; i++) {
        char args[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        assert_int_equal(tu_run_nas(args, &out), 0);
        if (!strstr(out, "example"))
            fail_msg("'nas %s --help' shows no example", cmds[i]);
        free(out);
    }
    assert_int_equal(tu_run_nas("search --help", &out), 0);
    assert_non_null(strstr(out, "NAS_DATA_DIR"));
    assert_non_null(strstr(out, "runs.db"));
    free(out);
    /* an empty file where a store should be: said plainly */
    char dir[64], args[256];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "ls --db %s/empty.db 2>&1", dir);
    char path[128];
    snprintf(path, sizeof path, "%s/empty.db", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_not_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "empty"));
    assert_null(strstr(out, "upgrade"));
    free(out);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(targets_must_mean_something),
        cmocka_unit_test(search_records_by_default_and_labels_estimates),
        cmocka_unit_test(a_status_that_cannot_be_written_is_an_error),
        cmocka_unit_test(train_export_writes_where_asked),
        cmocka_unit_test(small_things),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
