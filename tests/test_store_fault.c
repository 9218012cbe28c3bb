/* test_store_fault.c — the run store on a disk that fills (ENOSPC) or fails
 * (EIO), through the store's fault-injecting VFS (runs/fault.c).
 *
 * In process: a commit of a finished candidate is failed at each of its
 * writes in turn, both ways. Each time the call fails with an error that names
 * the store and what failed; after the fault is gone the store passes
 * PRAGMA integrity_check, the candidates committed before are unchanged, the
 * failed one is still unfinished with the state from before, and finishing it
 * again works.
 *
 * A real `nas search` on the MNIST sample, with NAS_FAULT_WRITE=N:ENOSPC or
 * N:EIO at several N: it stops with exit 1 and that error, the store is sound
 * with every finished candidate as in an uninterrupted run, and `nas resume`
 * without the fault ends where the uninterrupted run ended. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "base/nas.h"
#include "runs/runs.h"

static void unlink_store(const char *path)
{
    char p[256];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static void copy_file(const char *from, const char *to)
{
    char *text = NULL;
    size_t len = 0;
    nas_err err = {0};
    if (nas_read_file(from, &text, &len, &err))
        fail_msg("%s", err.msg);
    if (nas_write_file_atomic(to, text, len, &err))
        fail_msg("%s", err.msg);
    nas_free(text);
}

static void finish(runs_db *db, int64_t id, double acc, const char *state, nas_status want, const char *path,
                   const char *fault_text)
{
    runs_result r;
    runs_result_init(&r);
    r.accuracy = acc;
    r.joules = runs_fig_make(40.0 + acc, "model:cpu-time", "estimated");
    r.reward = acc;
    r.wall_s = 1.0;
    runs_measurement m[2] = {{"latency_ms", 0, 1.1, "clock", "measured"}, {"latency_ms", 1, 1.2, "clock", "measured"}};
    r.meas = m;
    r.n_meas = 2;
    nas_err err = {0};
    nas_status st = runs_cand_finish(db, id, &r, state, &err);
    if (st != want)
        fail_msg("finishing candidate %lld: status %d, not %d (%s)", (long long)id, st, want, err.msg);
    if (want != NAS_OK) {
        assert_non_null(strstr(err.msg, path));         /* names the store ... */
        assert_true(strstr(err.msg, ": committing: ") || strstr(err.msg, ": recording a result: "));   /* ... the step ... */
        if (!strstr(err.msg, fault_text))                /* ... and what failed */
            fail_msg("'%s' does not say '%s'", err.msg, fault_text);
    }
}

/* A 100 kB state: the commit spans many pages, so it has many writes to fail. */
static char *big_state(int seq)
{
    size_t n = 100000;
    char *s = nas_malloc(n + 32);
    int k = snprintf(s, 32, "{\"after\":%d,\"pad\":\"", seq);
    for (size_t i = 0; i < n; i++)
        s[k + i] = (char)('a' + (i * 7 + (size_t)seq) % 26);
    strcpy(s + k + n, "\"}");
    return s;
}

static void each_write_of_a_commit_failed(int errno_value, const char *fault_text)
{
    char dir[64], tmpl[128], path[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(tmpl, sizeof tmpl, "%s/template.db", dir);
    snprintf(path, sizeof path, "%s/work.db", dir);
    nas_err err = {0};
    runs_db *db = NULL;
    assert_int_equal(runs_fault_set(0, 0, &err), NAS_OK);
    assert_int_equal(runs_open(tmpl, RUNS_OPEN_CREATE, &db, &err), NAS_OK);
    runs_new_run nr = {.name = "f", .settings_json = "{}", .seed = 1, .hardware = "test", .meter = "model:cpu-time"};
    int64_t run, ids[4];
    assert_int_equal(runs_run_create(db, &nr, &run, &err), NAS_OK);
    for (int k = 0; k < 4; k++) {
        char g[16];
        snprintf(g, sizeof g, "g%d", k);
        runs_new_cand c = {.seq = k, .genome = g, .params = NAN, .macs = NAN, .pred_latency_ms = runs_fig_none(),
                           .pred_energy_mj = runs_fig_none()};
        assert_int_equal(runs_cand_add(db, run, &c, &ids[k], NULL, NULL, &err), NAS_OK);
        assert_int_equal(runs_cand_start(db, ids[k], NULL, &err), NAS_OK);
        if (k < 3) {
            char *st = big_state(k);
            finish(db, ids[k], 0.5 + 0.1 * k, st, NAS_OK, NULL, NULL);
            nas_free(st);
        }
    }
    runs_cand before[3];
    for (int k = 0; k < 3; k++)
        assert_int_equal(runs_cand_get(db, ids[k], &before[k], &err), NAS_OK);
    runs_close(db);   /* the last connection: its WAL is checkpointed into the file */

    /* how many writes the commit of candidate 3 makes, counted by an armed
     * fault that never comes */
    char *st3 = big_state(3);
    unlink_store(path);
    copy_file(tmpl, path);
    assert_int_equal(runs_fault_set(LONG_MAX, errno_value, &err), NAS_OK);
    assert_int_equal(runs_open(path, 0, &db, &err), NAS_OK);
    long w_open = runs_fault_writes();
    finish(db, ids[3], 0.9, st3, NAS_OK, NULL, NULL);
    long w_end = runs_fault_writes();
    runs_close(db);
    print_message("%s: the commit makes writes %ld..%ld\n", fault_text, w_open + 1, w_end);
    assert_true(w_end - w_open >= 3);

    for (long n = w_open + 1; n <= w_end; n++) {
        unlink_store(path);
        copy_file(tmpl, path);
        assert_int_equal(runs_fault_set(n, errno_value, &err), NAS_OK);
        assert_int_equal(runs_open(path, 0, &db, &err), NAS_OK);
        finish(db, ids[3], 0.9, st3, NAS_EIO, path, fault_text);
        runs_close(db);
        /* the disk is fine again: nothing committed before is lost */
        assert_int_equal(runs_fault_set(0, 0, &err), NAS_OK);
        assert_int_equal(runs_open(path, 0, &db, &err), NAS_OK);
        if (runs_check(db, &err))
            fail_msg("after a fault at write %ld: %s", n, err.msg);
        for (int k = 0; k < 3; k++) {
            runs_cand c;
            assert_int_equal(runs_cand_get(db, ids[k], &c, &err), NAS_OK);
            assert_int_equal(c.status, RUNS_DONE);
            assert_true(c.accuracy == before[k].accuracy);
            assert_true(c.finished == before[k].finished);
            assert_true(c.joules.value == before[k].joules.value);
            runs_cand_free(&c);
            double v[4];
            int nm = 0;
            assert_int_equal(runs_measurements(db, ids[k], "latency_ms", v, 4, &nm, &err), NAS_OK);
            assert_int_equal(nm, 2);
        }
        runs_cand c;
        assert_int_equal(runs_cand_get(db, ids[3], &c, &err), NAS_OK);
        assert_int_equal(c.status, RUNS_RUNNING);   /* the failed commit left no trace */
        assert_true(c.finished == 0);
        runs_cand_free(&c);
        char *state = NULL;
        int seq = -1;
        assert_int_equal(runs_strategy_get(db, run, &state, &seq, &err), NAS_OK);
        assert_int_equal(seq, 2);
        assert_non_null(strstr(state, "{\"after\":2,"));
        nas_free(state);
        /* and the commit goes through now */
        finish(db, ids[3], 0.9, st3, NAS_OK, NULL, NULL);
        assert_int_equal(runs_strategy_get(db, run, &state, &seq, &err), NAS_OK);
        assert_int_equal(seq, 3);
        nas_free(state);
        runs_close(db);
    }
    for (int k = 0; k < 3; k++)
        runs_cand_free(&before[k]);
    nas_free(st3);
    tu_rmtree(dir);
}

static void enospc_at_each_write_of_a_commit(void **state)
{
    (void)state;
    each_write_of_a_commit_failed(ENOSPC, "the disk is full");
}

static void eio_at_each_write_of_a_commit(void **state)
{
    (void)state;
    each_write_of_a_commit_failed(EIO, "a write failed");
}

static void bad_fault_settings_are_refused(void **state)
{
    (void)state;
    nas_err err = {0};
    assert_int_equal(runs_fault_set(-1, ENOSPC, &err), NAS_EINVAL);
    assert_int_equal(runs_fault_set(3, EPERM, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "ENOSPC or EIO"));
    char *out = NULL;
    assert_int_equal(setenv("NAS_FAULT_WRITE", "3:EROFS", 1), 0);
    int rc = tu_run_nas("search --data mnist --budget-evals 1 --db /tmp/nas-fault-refused.db --name x 2>&1", &out);
    unsetenv("NAS_FAULT_WRITE");
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "NAS_FAULT_WRITE='3:EROFS': expected N:ENOSPC or N:EIO"));
    free(out);
    unlink("/tmp/nas-fault-refused.db");
}

/* ---- a real search -------------------------------------------------------- */

#define ARGS "--data", "mnist", "--budget-evals", "3", "--subset", "300", "--val-count", "100", "--test-limit", \
             "100", "--epochs", "1", "--threads", "1", "--stages", "1", "--max-width", "0.25", "--bench-seconds", \
             "0.02", "--seed", "11", "--no-export", "--final-top", "0"

static int run_nas(char *const argv[], const char *fault, const char *err_path)
{
    return tu_wait(tu_spawn(argv, err_path, "NAS_FAULT_WRITE", fault));
}

static void cands(const char *db_path, runs_cand **c, int *n)
{
    runs_db *db = NULL;
    nas_err err = {0};
    if (runs_open(db_path, RUNS_OPEN_READONLY, &db, &err))
        fail_msg("%s", err.msg);
    if (runs_check(db, &err))
        fail_msg("%s", err.msg);
    int64_t run;
    assert_int_equal(runs_run_find(db, "r", &run, &err), NAS_OK);
    assert_int_equal(runs_cand_list(db, run, ~0u, c, n, &err), NAS_OK);
    runs_close(db);
}

/* The store a fault stopped: sound (integrity_check on the raw file, which
 * may hold no run yet), and what finished as in the uninterrupted run.
 * Returns how many had finished. */
static int check_after_fault(const char *db_path, const runs_cand *ref)
{
    struct stat sb;
    if (stat(db_path, &sb) != 0)
        return 0;
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open_v2(db_path, &raw, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    int n = 0;
    if (sqlite3_prepare_v2(raw, "SELECT seq, genome, accuracy FROM candidates WHERE status = 'done'", -1, &q,
                           NULL) == SQLITE_OK) {   /* (no such table when the fault came first) */
        while (sqlite3_step(q) == SQLITE_ROW) {
            int seq = sqlite3_column_int(q, 0);
            assert_true(seq >= 0 && seq < 3);
            assert_string_equal((const char *)sqlite3_column_text(q, 1), ref[seq].genome);
            assert_true(sqlite3_column_double(q, 2) == ref[seq].accuracy);
            n++;
        }
    }
    sqlite3_finalize(q);
    sqlite3_close(raw);
    return n;
}

static void search_on_a_failing_disk_stops_and_resumes(void **state)
{
    (void)state;
    tu_need_mnist();
    tu_run_paths P;
    tu_run_paths_make(&P, "f.db");
    const char *db = P.db, *err_path = P.err;
    char *bin = (char *)tu_nas_bin();
    char *ref_argv[] = {bin, "search", ARGS, "--db", P.ref_db, "--name", "r", NULL};
    assert_int_equal(run_nas(ref_argv, NULL, err_path), 0);
    runs_cand *ref = NULL;
    int nref = 0;
    cands(P.ref_db, &ref, &nref);
    assert_int_equal(nref, 3);

    /* early (creating the run), and later: among the candidates' commits */
    static const char *const faults[] = {"4:ENOSPC", "60:EIO", "125:ENOSPC", "150:EIO"};
    int done_at_fault[4];
    for (int f = 0; f < 4; f++) {
        unlink_store(db);
        char *search_argv[] = {bin, "search", ARGS, "--db", P.db, "--name", "r", NULL};
        int rc = run_nas(search_argv, faults[f], err_path);
        char *msg = NULL;
        assert_int_equal(nas_read_file(err_path, &msg, NULL, NULL), NAS_OK);
        if (rc != 1)
            fail_msg("NAS_FAULT_WRITE=%s: exit %d, not 1; stderr:\n%s", faults[f], rc, msg ? msg : "");
        assert_non_null(strstr(msg, db));   /* names the store and what failed */
        assert_non_null(strstr(msg, strstr(faults[f], "ENOSPC") ? "the disk is full" : "a write failed"));
        nas_free(msg);
        done_at_fault[f] = check_after_fault(db, ref);
        /* the disk is fine again: the same command resumes and ends as the uninterrupted run */
        rc = run_nas(search_argv, NULL, err_path);
        if (rc != 0) {
            if (nas_read_file(err_path, &msg, NULL, NULL) != NAS_OK)
                msg = NULL;   /* the failure below is reported with or without its stderr */
            fail_msg("resuming after NAS_FAULT_WRITE=%s: exit %d; stderr:\n%s", faults[f], rc, msg ? msg : "");
        }
        runs_cand *c = NULL;
        int n = 0;
        cands(db, &c, &n);
        assert_int_equal(n, nref);
        for (int i = 0; i < n; i++) {
            assert_int_equal(c[i].seq, ref[i].seq);
            assert_int_equal(c[i].status, RUNS_DONE);
            assert_string_equal(c[i].genome, ref[i].genome);
            assert_true(c[i].accuracy == ref[i].accuracy);
        }
        runs_cands_free(c, n);
    }
    print_message("candidates finished when the fault came: %d, %d, %d, %d\n", done_at_fault[0], done_at_fault[1],
                  done_at_fault[2], done_at_fault[3]);
    runs_cands_free(ref, nref);
    tu_rmtree(P.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_fault_settings_are_refused),
        cmocka_unit_test(enospc_at_each_write_of_a_commit),
        cmocka_unit_test(eio_at_each_write_of_a_commit),
        cmocka_unit_test(search_on_a_failing_disk_stops_and_resumes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
