/* test_store_weights.c — trained weights in their own table (schema step 4):
 * a store written by the schema before it (steps 1-3, with weights as rows of
 * the models table, exactly as the previous runs_weights_put wrote them) opens,
 * upgrades in one step and gives back the same bytes; a read-only open of it
 * says how to upgrade; damaged rows and blobs that are not NASW are refused. */
#include "testutil.h"

#include <sqlite3.h>

#include "runs/runs.h"

#include <math.h>

static char tmp[256];
static char dbpath[512];

static int setup(void **state)
{
    assert_non_null(tu_tmpdir(tmp, sizeof tmp));
    snprintf(dbpath, sizeof dbpath, "%s/runs.db", tmp);
    return 0;
}

static int teardown(void **state)
{
    tu_rmtree(tmp);
    return 0;
}

/* A NASW header (version 1) followed by n bytes that depend on tag. */
static size_t fake_weights(unsigned char *b, size_t n, unsigned tag)
{
    memcpy(b, "NASW\x01\0\0\0", 8);
    for (size_t i = 0; i < n; i++)
        b[8 + i] = (unsigned char)(i * 31 + tag);
    return 8 + n;
}

static void put_old_row(sqlite3 *raw, const char *name, const char *fp, const void *b, size_t n)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(raw, "INSERT INTO models (name, fingerprint, created, meta, blob)"
                                        " VALUES (?1, ?2, 1.7e9, '{\"candidate\": 1, \"format\": \"NASW1\"}', ?3)",
                                        -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, fp, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, b, (int)n, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
}

static int64_t count(sqlite3 *raw, const char *sql)
{
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static unsigned char first[4096], newest[4096], other[64];
static size_t first_n, newest_n, other_n;

/* Version 3 with run 1, candidates 1 and 2; candidate 1 was stored twice (the
 * newest must win), candidate 2 never; one predictor model beside them. */
static void make_old_store(void)
{
    nas_err err = {0};
    assert_int_equal(runs_create_at_version(dbpath, 3, &err), NAS_OK);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(dbpath, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "INSERT INTO runs (name, created, settings, seed, hardware, meter)"
                                  " VALUES ('old', 1.7e9, '{}', 7, 'hw', 'model:cpu-time');"
                                  "INSERT INTO candidates (run, seq, genome, status, accuracy)"
                                  " VALUES (1, 0, '1.2', 'done', 0.75), (1, 1, '2.1', 'done', 0.5);",
                                  NULL, NULL, NULL), SQLITE_OK);
    first_n = fake_weights(first, 3000, 1);
    newest_n = fake_weights(newest, 4000, 2);
    other_n = fake_weights(other, 40, 3);
    put_old_row(raw, "weights/1", "nas-weights", first, first_n);
    put_old_row(raw, "latency", "cpu|2 cpus", other, other_n);
    put_old_row(raw, "weights/1", "nas-weights", newest, newest_n);
    assert_int_equal(count(raw, "PRAGMA user_version"), 3);
    assert_int_not_equal(sqlite3_exec(raw, "SELECT * FROM weights", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
}

static void test_old_store_upgrades_and_reads_back(void **state)
{
    make_old_store();
    nas_err err = {0};
    runs_db *db = NULL;

    /* read-only: refused with what to do, and the file is left as it was */
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_READONLY, &db, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "open it once with write access"));
    assert_null(db);

    assert_int_equal(runs_open(dbpath, 0, &db, &err), NAS_OK);
    assert_int_equal(runs_db_version(db), runs_schema_version());
    assert_true(runs_schema_version() >= 4);
    sqlite3 *raw = runs_sqlite(db);
    assert_int_equal(count(raw, "SELECT count(*) FROM weights"), 1);
    assert_int_equal(count(raw, "SELECT bytes FROM weights WHERE candidate = 1"), (int64_t)newest_n);
    assert_int_equal(count(raw, "SELECT version FROM weights WHERE candidate = 1"), 1);
    /* the weights left models; the predictor model stayed */
    assert_int_equal(count(raw, "SELECT count(*) FROM models WHERE fingerprint = 'nas-weights'"), 0);
    assert_int_equal(count(raw, "SELECT count(*) FROM models WHERE name = 'latency'"), 1);
    assert_int_equal(count(raw, "SELECT count(*) FROM sqlite_temp_schema"), 0);

    void *blob = NULL;
    size_t len = 0;
    int found = 0;
    assert_int_equal(runs_weights_get(db, 1, &blob, &len, &found, &err), NAS_OK);
    assert_true(found);
    assert_int_equal(len, newest_n);
    assert_memory_equal(blob, newest, newest_n);
    nas_free(blob);
    assert_int_equal(runs_weights_get(db, 2, &blob, &len, &found, &err), NAS_OK);
    assert_false(found);
    assert_null(blob);
    assert_int_equal(runs_check(db, &err), NAS_OK);
    runs_close(db);

    /* upgraded once: a read-only open now works and reads the same bytes */
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_READONLY, &db, &err), NAS_OK);
    assert_int_equal(runs_weights_get(db, 1, &blob, &len, &found, &err), NAS_OK);
    assert_true(found);
    assert_int_equal(len, newest_n);
    assert_memory_equal(blob, newest, newest_n);
    nas_free(blob);
    assert_int_equal(runs_check(db, &err), NAS_OK);
    runs_close(db);
}

static void test_weights_replace_and_refuse(void **state)
{
    nas_err err = {0};
    runs_db *db = NULL;
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_CREATE, &db, &err), NAS_OK);
    runs_new_run r = {.name = "r", .settings_json = "{}", .seed = 1, .hardware = "hw", .meter = "m"};
    int64_t run = 0, cand = 0;
    assert_int_equal(runs_run_create(db, &r, &run, &err), NAS_OK);
    runs_new_cand c = {.seq = 0, .genome = "1.2", .pred_latency_ms = runs_fig_none(),
                       .pred_energy_mj = runs_fig_none(), .params = 1, .macs = 1};
    assert_int_equal(runs_cand_add(db, run, &c, &cand, NULL, NULL, &err), NAS_OK);

    first_n = fake_weights(first, 100, 7);
    newest_n = fake_weights(newest, 50, 8);
    assert_int_equal(runs_weights_put(db, cand, first, first_n, &err), NAS_OK);
    assert_int_equal(runs_weights_put(db, cand, newest, newest_n, &err), NAS_OK);   /* replaces */
    assert_int_equal(count(runs_sqlite(db), "SELECT count(*) FROM weights"), 1);
    void *blob = NULL;
    size_t len = 0;
    int found = 0;
    assert_int_equal(runs_weights_get(db, cand, &blob, &len, &found, &err), NAS_OK);
    assert_int_equal(len, newest_n);
    assert_memory_equal(blob, newest, newest_n);
    nas_free(blob);

    /* not a NASW blob; a candidate that does not exist */
    assert_int_equal(runs_weights_put(db, cand, "hello world", 11, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "not a NASW blob"));
    assert_int_not_equal(runs_weights_put(db, cand + 100, newest, newest_n, &err), NAS_OK);
    assert_non_null(strstr(err.msg, "candidate"));

    /* a flipped byte (same length) fails the checksum, naming the candidate */
    sqlite3_blob *b = NULL;
    assert_int_equal(sqlite3_blob_open(runs_sqlite(db), "main", "weights", "blob", cand, 1, &b), SQLITE_OK);
    unsigned char flipped = (unsigned char)~newest[20];
    assert_int_equal(sqlite3_blob_write(b, &flipped, 1, 20), SQLITE_OK);
    assert_int_equal(sqlite3_blob_close(b), SQLITE_OK);
    assert_int_equal(runs_weights_get(db, cand, &blob, &len, &found, &err), NAS_EIO);
    assert_non_null(strstr(err.msg, "damaged"));
    assert_false(found);
    assert_null(blob);
    runs_close(db);
}

/* Schema step 5: final models with their figures and weights; one chosen per
 * run; a damaged row refused; a version-4 store upgrades to an empty table. */
static void test_finals_store_choose_and_refuse(void **state)
{
    nas_err err = {0};
    runs_db *db = NULL;
    assert_int_equal(runs_create_at_version(dbpath, 4, &err), NAS_OK);
    assert_int_equal(runs_open(dbpath, 0, &db, &err), NAS_OK);
    assert_true(runs_db_version(db) >= 5);
    assert_int_equal(count(runs_sqlite(db), "SELECT count(*) FROM finals"), 0);
    runs_new_run r = {.name = "r", .settings_json = "{}", .seed = 1, .hardware = "hw", .meter = "m"};
    int64_t run = 0, other_run = 0, cand[3] = {0};
    assert_int_equal(runs_run_create(db, &r, &run, &err), NAS_OK);
    r.name = "other";
    assert_int_equal(runs_run_create(db, &r, &other_run, &err), NAS_OK);
    for (int i = 0; i < 3; i++) {
        runs_new_cand c = {.seq = i, .genome = "1.2", .pred_latency_ms = runs_fig_none(),
                           .pred_energy_mj = runs_fig_none(), .params = 1, .macs = 1};
        assert_int_equal(runs_cand_add(db, i < 2 ? run : other_run, &c, &cand[i], NULL, NULL, &err), NAS_OK);
    }
    first_n = fake_weights(first, 200, 4);
    newest_n = fake_weights(newest, 300, 5);
    runs_final f = {.cand = cand[0], .epochs = 10, .train_images = 54000, .test_images = 10000, .val_acc = 0.92,
                    .test_acc = 0.9134, .seconds = 120, .chosen = 1 /* ignored: put never chooses */};
    f.joules = runs_fig_make(3627.5, "model:cpu-time", "estimated");
    assert_int_equal(runs_final_put(db, &f, first, first_n, &err), NAS_OK);
    f.cand = cand[1];
    f.test_acc = NAN;
    assert_int_equal(runs_final_put(db, &f, newest, newest_n, &err), NAS_OK);
    f.cand = cand[2];
    assert_int_equal(runs_final_put(db, &f, newest, newest_n, &err), NAS_OK);

    int64_t chosen = 0;
    int found = 1;
    assert_int_equal(runs_final_chosen(db, run, &chosen, &found, &err), NAS_OK);
    assert_false(found);
    assert_int_equal(runs_final_choose(db, run, cand[1], &err), NAS_OK);
    assert_int_equal(runs_final_choose(db, other_run, cand[2], &err), NAS_OK);
    assert_int_equal(runs_final_choose(db, run, cand[0], &err), NAS_OK);   /* chosen again: one per run */
    assert_int_equal(runs_final_chosen(db, run, &chosen, &found, &err), NAS_OK);
    assert_true(found);
    assert_int_equal(chosen, cand[0]);
    assert_int_equal(count(runs_sqlite(db), "SELECT count(*) FROM finals WHERE chosen = 1"), 2);

    runs_final g;
    void *blob = NULL;
    size_t len = 0;
    assert_int_equal(runs_final_get(db, cand[0], &g, &blob, &len, &found, &err), NAS_OK);
    assert_true(found);
    assert_int_equal(g.epochs, 10);
    assert_int_equal(g.train_images, 54000);
    assert_int_equal(g.test_images, 10000);
    assert_float_equal(g.val_acc, 0.92, 1e-12);
    assert_float_equal(g.test_acc, 0.9134, 1e-12);
    assert_float_equal(g.joules.value, 3627.5, 1e-9);
    assert_string_equal(g.joules.source, "model:cpu-time");
    assert_string_equal(g.joules.quality, "estimated");
    assert_true(g.chosen);
    assert_int_equal(len, first_n);
    assert_memory_equal(blob, first, first_n);
    nas_free(blob);
    assert_int_equal(runs_final_get(db, cand[1], &g, NULL, NULL, &found, &err), NAS_OK);   /* figures only */
    assert_true(found);
    assert_true(isnan(g.test_acc));
    assert_false(g.chosen);
    /* the proxy weights are another table: untouched */
    assert_int_equal(runs_weights_get(db, cand[0], &blob, &len, &found, &err), NAS_OK);
    assert_false(found);

    /* refused: not NASW; an energy without its meter */
    assert_int_equal(runs_final_put(db, &f, "hello", 5, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "not a NASW blob"));
    f.joules = runs_fig_make(1.0, "", "");
    assert_int_not_equal(runs_final_put(db, &f, newest, newest_n, &err), NAS_OK);

    /* a flipped byte: refused as damaged, naming the candidate */
    sqlite3_blob *b = NULL;
    assert_int_equal(sqlite3_blob_open(runs_sqlite(db), "main", "finals", "blob", cand[0], 1, &b), SQLITE_OK);
    unsigned char flipped = (unsigned char)~first[30];
    assert_int_equal(sqlite3_blob_write(b, &flipped, 1, 30), SQLITE_OK);
    assert_int_equal(sqlite3_blob_close(b), SQLITE_OK);
    assert_int_equal(runs_final_get(db, cand[0], &g, &blob, &len, &found, &err), NAS_EIO);
    assert_non_null(strstr(err.msg, "damaged"));
    assert_false(found);
    assert_int_equal(runs_check(db, &err), NAS_OK);
    runs_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_old_store_upgrades_and_reads_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weights_replace_and_refuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finals_store_choose_and_refuse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
