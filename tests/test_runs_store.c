/* test_runs_store.c — the run store: records, resume, migration, injected
 * faults, and a writer killed with SIGKILL at random moments. */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runs/runs.h"

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

static runs_db *open_new(void)
{
    runs_db *db = NULL;
    nas_err err = {0};
    nas_status st = runs_open(dbpath, RUNS_OPEN_CREATE, &db, &err);
    if (st)
        fail_msg("open: %s", err.msg);
    return db;
}

static int64_t new_run(runs_db *db, const char *name)
{
    runs_new_run r = {.name = name, .settings_json = "{\"strategy\":\"evolution\"}", .seed = 42,
                      .hardware = "test-cpu", .meter = "model:cpu-time"};
    int64_t id = 0;
    nas_err err = {0};
    if (runs_run_create(db, &r, &id, &err))
        fail_msg("create run: %s", err.msg);
    return id;
}

static int64_t add_cand(runs_db *db, int64_t run, int seq, const char *genome)
{
    runs_new_cand c = {.seq = seq, .genome = genome, .spec_json = "{\"resolution\":28}",
                       .pred_latency_ms = runs_fig_make(1.5, "xgboost", "predicted"),
                       .pred_energy_mj = runs_fig_make(2.5, "xgboost", "predicted"),
                       .params = 1000, .macs = 20000};
    int64_t id = 0;
    nas_err err = {0};
    if (runs_cand_add(db, run, &c, &id, NULL, NULL, &err))
        fail_msg("add: %s", err.msg);
    return id;
}

static void finish_ok(runs_db *db, int64_t id, double acc, const char *state)
{
    runs_result r;
    runs_result_init(&r);
    r.accuracy = acc;
    r.latency_ms = runs_fig_make(1.2, "clock", "measured");
    r.energy_mj = runs_fig_make(3.0, "model:cpu-time", "estimated");
    r.joules = runs_fig_make(40.0, "model:cpu-time", "estimated");
    r.reward = acc * 0.9;
    r.wall_s = 2.0;
    runs_measurement m[3] = {
        {"latency_ms", 0, 1.1, "clock", "measured"},
        {"latency_ms", 1, 1.2, "clock", "measured"},
        {"latency_ms", 2, 1.3, "clock", "measured"},
    };
    r.meas = m;
    r.n_meas = 3;
    nas_err err = {0};
    if (runs_cand_finish(db, id, &r, state, &err))
        fail_msg("finish: %s", err.msg);
}

/* ---- records --------------------------------------------------------------- */

/* A finished candidate measured again: new figures on the row, the first ones
 * kept as measurements, joules summed only within one source and quality, the
 * strategy state saved in the same transaction; refused for an unfinished one
 * and for a figure without its quality, with nothing changed. */
static void test_runs_later_measurement(void **state)
{
    (void)state;
    runs_db *db = open_new();
    int64_t run = new_run(db, "later");
    int64_t a = add_cand(db, run, 0, "g-a"), b = add_cand(db, run, 1, "g-b");
    nas_err err = {0};
    int att;
    assert_int_equal(runs_cand_start(db, a, &att, &err), NAS_OK);
    finish_ok(db, a, 0.9, "{\"s\":0}");
    runs_fig lat = runs_fig_make(0.8, "clock", "measured");
    runs_fig en = runs_fig_make(2.2, "rapl:package-0", "measured");
    runs_fig j = runs_fig_make(5.0, "model:cpu-time", "estimated");
    assert_int_equal(runs_cand_add_measurement(db, a, &lat, &en, &j, "{\"s\":1}", &err), NAS_OK);
    runs_cand c;
    assert_int_equal(runs_cand_get(db, a, &c, &err), NAS_OK);
    assert_true(c.latency_ms.value == 0.8);
    assert_true(c.energy_mj.value == 2.2);
    assert_string_equal(c.energy_mj.source, "rapl:package-0");
    assert_string_equal(c.energy_mj.quality, "measured");
    assert_true(c.joules.value == 45.0);   /* 40 + 5, same meter */
    assert_true(c.accuracy == 0.9);        /* the rest of the row is untouched */
    assert_int_equal(c.status, RUNS_DONE);
    runs_cand_free(&c);
    double v[8];
    int n;
    /* energy: the first figure (estimated 3.0) at rep 0, the new one after it */
    assert_int_equal(runs_measurements(db, a, "energy_mj", v, 8, &n, &err), NAS_OK);
    assert_int_equal(n, 2);
    assert_true(v[0] == 3.0 && v[1] == 2.2);
    /* latency: the raw repeats of the result stay, the new figure follows them */
    assert_int_equal(runs_measurements(db, a, "latency_ms", v, 8, &n, &err), NAS_OK);
    assert_int_equal(n, 4);
    assert_true(v[0] == 1.1 && v[3] == 0.8);
    assert_int_equal(runs_measurements(db, a, "measure_joules", v, 8, &n, &err), NAS_OK);
    assert_int_equal(n, 1);
    char *st = NULL;
    int seq;
    assert_int_equal(runs_strategy_get(db, run, &st, &seq, &err), NAS_OK);
    assert_string_equal(st, "{\"s\":1}");
    nas_free(st);

    /* joules of another meter are recorded, never added */
    runs_fig j2 = runs_fig_make(7.0, "rapl:package-0", "measured");
    assert_int_equal(runs_cand_add_measurement(db, a, NULL, &en, &j2, NULL, &err), NAS_OK);
    assert_int_equal(runs_cand_get(db, a, &c, &err), NAS_OK);
    assert_true(c.joules.value == 45.0);
    runs_cand_free(&c);

    /* an unfinished candidate, and a figure without a quality: errors, nothing written */
    assert_int_equal(runs_cand_add_measurement(db, b, &lat, &en, NULL, NULL, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "queued"));
    runs_fig bad = runs_fig_make(1.0, "clock", "");
    assert_int_equal(runs_cand_add_measurement(db, a, &bad, &en, NULL, NULL, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "latency_ms"));
    assert_int_equal(runs_measurements(db, a, "energy_mj", v, 8, &n, &err), NAS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(runs_check(db, &err), NAS_OK);
    runs_close(db);
}

static void test_runs_create_list_find(void **state)
{
    runs_db *db = open_new();
    assert_int_equal(runs_db_version(db), runs_schema_version());
    int64_t a = new_run(db, NULL), b = new_run(db, "mnist-small");
    assert_true(b > a);
    nas_err err = {0};
    runs_new_run dup = {.name = "mnist-small", .settings_json = "{}"};
    int64_t id;
    assert_int_equal(runs_run_create(db, &dup, &id, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "mnist-small"));
    runs_new_run badjson = {.name = "x", .settings_json = "{not json"};
    assert_int_equal(runs_run_create(db, &badjson, &id, &err), NAS_EINVAL);

    int64_t found = 0;
    assert_int_equal(runs_run_find(db, "mnist-small", &found, &err), NAS_OK);
    assert_int_equal(found, b);
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)a);
    assert_int_equal(runs_run_find(db, num, &found, &err), NAS_OK);
    assert_int_equal(found, a);
    assert_int_equal(runs_run_find(db, "nope", &found, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "'nope'"));
    assert_int_equal(runs_run_find(db, "999", &found, &err), NAS_EINVAL);

    runs_run *list;
    int n;
    assert_int_equal(runs_run_list(db, &list, &n, &err), NAS_OK);
    assert_int_equal(n, 2);
    char want[32];
    snprintf(want, sizeof want, "run-%lld", (long long)a);
    assert_string_equal(list[0].name, want);
    assert_string_equal(list[1].name, "mnist-small");
    assert_int_equal(list[1].seed, 42);
    assert_string_equal(list[1].meter, "model:cpu-time");
    assert_string_equal(list[1].status, "running");
    assert_string_equal(list[1].settings_json, "{\"strategy\":\"evolution\"}");
    assert_true(list[1].created > 1.6e9);
    runs_runs_free(list, n);
    assert_int_equal(runs_run_set_status(db, b, "done", &err), NAS_OK);
    assert_int_equal(runs_run_set_status(db, b, "bogus", &err), NAS_EINVAL);
    runs_run r;
    assert_int_equal(runs_run_get(db, b, &r, &err), NAS_OK);
    assert_string_equal(r.status, "done");
    runs_run_free(&r);
    /* no status is an error, and the run it was meant for is not left running */
    assert_int_equal(runs_run_set_status(db, a, NULL, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "no status given"));
    assert_int_equal(runs_run_get(db, a, &r, &err), NAS_OK);
    assert_string_equal(r.status, "failed");
    runs_run_free(&r);
    runs_close(db);
}

static void test_runs_candidate_life(void **state)
{
    runs_db *db = open_new();
    int64_t run = new_run(db, "life");
    nas_err err = {0};
    int64_t c0 = add_cand(db, run, -1, "1.2.3");
    int64_t c1 = add_cand(db, run, -1, "0.0.1");
    runs_cand c;
    assert_int_equal(runs_cand_get(db, c1, &c, &err), NAS_OK);
    assert_int_equal(c.seq, 1);
    assert_int_equal(c.status, RUNS_QUEUED);
    assert_int_equal(c.attempts, 0);
    assert_string_equal(c.genome, "0.0.1");
    assert_string_equal(c.spec_json, "{\"resolution\":28}");
    assert_true(fabs(c.pred_energy_mj.value - 2.5) < 1e-12);
    assert_string_equal(c.pred_energy_mj.quality, "predicted");
    assert_true(isnan(c.accuracy));
    assert_false(runs_fig_known(&c.energy_mj));
    runs_cand_free(&c);

    /* Re-proposing a seq: same genome finds the row, another genome is refused. */
    runs_new_cand again = {.seq = 0, .genome = "1.2.3", .params = NAN, .macs = NAN,
                           .pred_latency_ms = runs_fig_none(), .pred_energy_mj = runs_fig_none()};
    int64_t id;
    int seq, existed;
    assert_int_equal(runs_cand_add(db, run, &again, &id, &seq, &existed, &err), NAS_OK);
    assert_int_equal(id, c0);
    assert_int_equal(existed, 1);
    again.genome = "2.2.2";
    assert_int_equal(runs_cand_add(db, run, &again, &id, &seq, &existed, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "diverged"));

    int attempts = 0;
    runs_cand q;
    int found;
    assert_int_equal(runs_cand_next_queued(db, run, &q, &found, &err), NAS_OK);
    assert_true(found);
    assert_int_equal(q.id, c0);
    runs_cand_free(&q);
    assert_int_equal(runs_cand_start(db, c0, &attempts, &err), NAS_OK);
    assert_int_equal(attempts, 1);
    assert_int_equal(runs_cand_start(db, c0, &attempts, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "running, not queued"));
    finish_ok(db, c0, 0.91, "{\"gen\":1}");

    runs_result r;
    runs_result_init(&r);
    r.accuracy = 0.5;
    assert_int_equal(runs_cand_finish(db, c0, &r, NULL, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "never recorded twice"));

    assert_int_equal(runs_cand_get(db, c0, &c, &err), NAS_OK);
    assert_int_equal(c.status, RUNS_DONE);
    assert_true(fabs(c.accuracy - 0.91) < 1e-12);
    assert_string_equal(c.energy_mj.source, "model:cpu-time");
    assert_string_equal(c.energy_mj.quality, "estimated");
    assert_string_equal(c.latency_ms.quality, "measured");
    assert_true(fabs(c.pred_latency_ms.value - 1.5) < 1e-12);   /* kept from add() */
    assert_true(fabs(c.params - 1000) < 1e-9);
    assert_true(c.finished > 1.6e9);
    runs_cand_free(&c);
    double v[8];
    int n;
    assert_int_equal(runs_measurements(db, c0, "latency_ms", v, 8, &n, &err), NAS_OK);
    assert_int_equal(n, 3);
    assert_true(fabs(v[2] - 1.3) < 1e-12);

    char *st;
    int st_seq;
    assert_int_equal(runs_strategy_get(db, run, &st, &st_seq, &err), NAS_OK);
    assert_string_equal(st, "{\"gen\":1}");
    assert_int_equal(st_seq, 0);
    nas_free(st);

    /* A screened candidate: no training, no joules. */
    runs_result_init(&r);
    r.status = RUNS_SCREENED;
    r.error = "predicted 9.1 mJ, over the hard target 2 mJ";
    assert_int_equal(runs_cand_finish(db, c1, &r, "{\"gen\":2}", &err), NAS_OK);
    int counts[RUNS_NSTATUS];
    assert_int_equal(runs_cand_counts(db, run, counts, &err), NAS_OK);
    assert_int_equal(counts[RUNS_DONE], 1);
    assert_int_equal(counts[RUNS_SCREENED], 1);
    runs_cand *list;
    assert_int_equal(runs_cand_list(db, run, RUNS_FINISHED_MASK, &list, &n, &err), NAS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].seq, 0);
    assert_int_equal(list[1].seq, 1);
    assert_string_equal(list[1].error, "predicted 9.1 mJ, over the hard target 2 mJ");
    runs_cands_free(list, n);
    assert_int_equal(runs_cand_list(db, run, RUNS_MASK(RUNS_QUEUED), &list, &n, &err), NAS_OK);
    assert_int_equal(n, 0);
    runs_cands_free(list, n);
    assert_int_equal(runs_check(db, &err), NAS_OK);
    runs_close(db);
}

static void test_runs_figures_keep_their_quality(void **state)
{
    runs_db *db = open_new();
    int64_t run = new_run(db, "q");
    nas_err err = {0};
    int64_t id = add_cand(db, run, -1, "1");
    runs_result r;
    runs_result_init(&r);
    r.energy_mj = runs_fig_make(2.0, "rapl:package-0", "");
    assert_int_equal(runs_cand_finish(db, id, &r, NULL, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "energy_mj"));
    r.energy_mj = runs_fig_make(2.0, "", "measured");
    assert_int_equal(runs_cand_finish(db, id, &r, NULL, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "no source"));
    r.energy_mj = runs_fig_make(2.0, "xgboost", "predicted");   /* not a measured slot */
    assert_int_equal(runs_cand_finish(db, id, &r, NULL, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "quality 'predicted'"));
    runs_cand c;
    assert_int_equal(runs_cand_get(db, id, &c, &err), NAS_OK);
    assert_int_equal(c.status, RUNS_QUEUED);   /* nothing half-written */
    runs_cand_free(&c);

    /* The schema itself refuses a figure without its quality. */
    sqlite3 *raw = runs_sqlite(db);
    int rc = sqlite3_exec(raw, "UPDATE candidates SET joules = 5 WHERE id = 1", NULL, NULL, NULL);
    assert_int_equal(rc & 0xff, SQLITE_CONSTRAINT);

    /* Joules of different qualities are reported apart, never summed. */
    int64_t a = add_cand(db, run, -1, "2"), b = add_cand(db, run, -1, "3");
    runs_result_init(&r);
    r.joules = runs_fig_make(100, "rapl:package-0", "measured");
    assert_int_equal(runs_cand_finish(db, a, &r, NULL, &err), NAS_OK);
    r.joules = runs_fig_make(30, "model:cpu-time", "estimated");
    assert_int_equal(runs_cand_finish(db, b, &r, NULL, &err), NAS_OK);
    runs_energy_line lines[4];
    int n;
    assert_int_equal(runs_run_energy(db, run, lines, 4, &n, &err), NAS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(lines[0].quality, "estimated");
    assert_true(fabs(lines[0].joules - 30) < 1e-9);
    assert_string_equal(lines[1].quality, "measured");
    assert_string_equal(lines[1].source, "rapl:package-0");
    assert_true(fabs(lines[1].joules - 100) < 1e-9);
    assert_true(lines[0].calibration_j == 0 && lines[1].calibration_j == 0);
    /* a predictor's calibration counts in its meter's line, and says so */
    runs_fig cal = runs_fig_make(12.5, "model:cpu-time", "estimated");
    assert_int_equal(runs_run_add_overhead(db, run, "calibration", &cal, &err), NAS_OK);
    assert_int_equal(runs_run_energy(db, run, lines, 4, &n, &err), NAS_OK);
    assert_int_equal(n, 2);
    assert_true(fabs(lines[0].joules - 42.5) < 1e-9);
    assert_true(fabs(lines[0].calibration_j - 12.5) < 1e-9);
    assert_true(lines[1].calibration_j == 0);
    /* figures without a value or a source are refused, nothing recorded */
    runs_fig bad = runs_fig_make(NAN, "model:cpu-time", "estimated");
    assert_int_equal(runs_run_add_overhead(db, run, "calibration", &bad, &err), NAS_EINVAL);
    bad = runs_fig_make(3, "", "estimated");
    assert_int_equal(runs_run_add_overhead(db, run, "calibration", &bad, &err), NAS_EINVAL);
    assert_int_equal(runs_run_energy(db, run, lines, 4, &n, &err), NAS_OK);
    assert_true(fabs(lines[0].joules - 42.5) < 1e-9);
    runs_close(db);
}

#define EST(j) (&(runs_fig){(j), "model:cpu-time", "estimated"})

/* What interrupted attempts spent (their last heartbeat) moves to the run's
 * lost attempts at resume, once; a finished candidate's heartbeat is not lost. */
static void test_runs_interrupted_joules_are_counted_once(void **state)
{
    (void)state;
    runs_db *db = open_new();
    int64_t run = new_run(db, "lost");
    nas_err err = {0};
    int64_t done = add_cand(db, run, -1, "1"), cut = add_cand(db, run, -1, "2");
    int att;
    double lost = -1;
    assert_int_equal(runs_lost_joules(db, run, &lost, &err), NAS_OK);
    assert_true(lost == 0);
    assert_int_equal(runs_cand_progress(db, done, EST(5.0), &err), NAS_OK);   /* not running: ignored */
    assert_int_equal(runs_cand_start(db, done, &att, &err), NAS_OK);
    assert_int_equal(runs_cand_progress(db, done, EST(3.0), &err), NAS_OK);
    finish_ok(db, done, 0.8, "{}");
    assert_int_equal(runs_cand_start(db, cut, &att, &err), NAS_OK);
    assert_int_equal(runs_cand_progress(db, cut, EST(7.0), &err), NAS_OK);
    assert_int_equal(runs_cand_progress(db, cut, EST(12.5), &err), NAS_OK);   /* the latest counts */
    assert_int_equal(runs_cand_progress(db, cut, EST(NAN), &err), NAS_EINVAL);
    /* ... the process dies ... */
    assert_int_equal(runs_resume(db, run, NULL, NULL, &err), NAS_OK);
    assert_int_equal(runs_lost_joules(db, run, &lost, &err), NAS_OK);
    assert_true(lost == 12.5);
    /* a resume with nothing running adds nothing */
    assert_int_equal(runs_resume(db, run, NULL, NULL, &err), NAS_OK);
    assert_int_equal(runs_lost_joules(db, run, &lost, &err), NAS_OK);
    assert_true(lost == 12.5);
    /* the retry dies too: its own heartbeat adds, and the candidate fails */
    assert_int_equal(runs_cand_start(db, cut, &att, &err), NAS_OK);
    assert_int_equal(runs_cand_progress(db, cut, EST(2.0), &err), NAS_OK);
    int requeued, failed;
    assert_int_equal(runs_resume(db, run, &requeued, &failed, &err), NAS_OK);
    assert_int_equal(failed, 1);
    assert_int_equal(runs_lost_joules(db, run, &lost, &err), NAS_OK);
    assert_true(lost == 14.5);
    /* the report keeps them with their source and quality, and says what they are */
    runs_energy_line lines[4];
    int n;
    assert_int_equal(runs_run_energy(db, run, lines, 4, &n, &err), NAS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(lines[0].source, "model:cpu-time");
    assert_int_equal(lines[0].interrupted, 2);
    assert_int_equal(lines[0].n, 1);   /* the finished one */
    /* a figure without a source is refused */
    assert_int_equal(runs_cand_progress(db, cut, &(runs_fig){1, "", "estimated"}, &err), NAS_EINVAL);
    runs_close(db);
}

/* Several processes creating the same new store at once each end with a
 * store at the current version: no schema step runs twice. */
static void test_runs_concurrent_creation(void **state)
{
    (void)state;
    enum { ROUNDS = 15, PROCS = 4 };
    int failures = 0;
    for (int r = 0; r < ROUNDS; r++) {
        char path[600];
        snprintf(path, sizeof path, "%s/c%d.db", tmp, r);
        int go[2];
        assert_int_equal(pipe(go), 0);
        pid_t kids[PROCS];
        for (int k = 0; k < PROCS; k++) {
            kids[k] = fork();
            if (kids[k] == 0) {
                char c;
                close(go[1]);
                if (read(go[0], &c, 1) < 0)   /* all start together: the pipe closes */
                    _exit(3);
                runs_db *db = NULL;
                nas_err err = {0};
                if (runs_open(path, RUNS_OPEN_CREATE, &db, &err) != NAS_OK) {
                    fprintf(stderr, "child %d: %s\n", k, err.msg);
                    _exit(1);
                }
                int ok = runs_db_version(db) == runs_schema_version();
                runs_close(db);
                _exit(ok ? 0 : 2);
            }
        }
        close(go[0]);
        close(go[1]);
        for (int k = 0; k < PROCS; k++) {
            int st;
            waitpid(kids[k], &st, 0);
            failures += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
    }
    assert_int_equal(failures, 0);
}

static void test_runs_resume_requeues_then_fails_poison(void **state)
{
    runs_db *db = open_new();
    int64_t run = new_run(db, "resume");
    nas_err err = {0};
    int64_t good = add_cand(db, run, -1, "1"), poison = add_cand(db, run, -1, "2");
    int att, requeued = -1, failed = -1;
    assert_int_equal(runs_cand_start(db, good, &att, &err), NAS_OK);
    finish_ok(db, good, 0.8, "{}");
    assert_int_equal(runs_cand_start(db, poison, &att, &err), NAS_OK);
    /* ... the process dies here ... */
    assert_int_equal(runs_resume(db, run, &requeued, &failed, &err), NAS_OK);
    assert_int_equal(requeued, 1);
    assert_int_equal(failed, 0);
    runs_cand c;
    assert_int_equal(runs_cand_get(db, poison, &c, &err), NAS_OK);
    assert_int_equal(c.status, RUNS_QUEUED);
    assert_int_equal(c.attempts, 1);
    runs_cand_free(&c);
    assert_int_equal(runs_cand_start(db, poison, &att, &err), NAS_OK);
    assert_int_equal(att, 2);
    /* ... and dies again on the same candidate. */
    assert_int_equal(runs_resume(db, run, &requeued, &failed, &err), NAS_OK);
    assert_int_equal(requeued, 0);
    assert_int_equal(failed, 1);
    assert_int_equal(runs_cand_get(db, poison, &c, &err), NAS_OK);
    assert_int_equal(c.status, RUNS_FAILED);
    assert_non_null(strstr(c.error, "interrupted 2 times"));
    runs_cand_free(&c);
    int found;
    assert_int_equal(runs_cand_next_queued(db, run, &c, &found, &err), NAS_OK);
    assert_false(found);
    /* The finished one is untouched. */
    assert_int_equal(runs_cand_get(db, good, &c, &err), NAS_OK);
    assert_int_equal(c.status, RUNS_DONE);
    assert_int_equal(c.attempts, 1);
    runs_cand_free(&c);
    runs_close(db);
}

static void test_runs_models(void **state)
{
    runs_db *db = open_new();
    nas_err err = {0};
    unsigned char blob1[300], blob2[10];
    for (int i = 0; i < 300; i++)
        blob1[i] = (unsigned char)(i * 7);
    memset(blob2, 0xab, sizeof blob2);
    assert_int_equal(runs_model_put(db, "energy", "cpu-a|rapl", "{\"cv_mape\":0.08}", blob1,
                                    sizeof blob1, NULL, &err), NAS_OK);
    assert_int_equal(runs_model_put(db, "energy", "cpu-b|model", NULL, blob2, sizeof blob2, NULL,
                                    &err), NAS_OK);
    void *b;
    size_t len;
    char *meta;
    char fp[128];
    int found;
    assert_int_equal(runs_model_get(db, "energy", "cpu-a|rapl", &b, &len, &meta, fp, &found, &err),
                     NAS_OK);
    assert_true(found);
    assert_int_equal(len, 300);
    assert_memory_equal(b, blob1, 300);
    assert_string_equal(meta, "{\"cv_mape\":0.08}");
    assert_string_equal(fp, "cpu-a|rapl");
    nas_free(b);
    nas_free(meta);
    assert_int_equal(runs_model_get(db, "energy", NULL, &b, &len, &meta, fp, &found, &err), NAS_OK);
    assert_true(found);
    assert_string_equal(fp, "cpu-b|model");   /* the newest */
    assert_null(meta);
    nas_free(b);
    assert_int_equal(runs_model_get(db, "latency", NULL, &b, &len, NULL, NULL, &found, &err), NAS_OK);
    assert_false(found);
    runs_close(db);
}

/* ---- schema versions ------------------------------------------------------------ */

static void test_runs_migrates_old_store(void **state)
{
    nas_err err = {0};
    assert_int_equal(runs_create_at_version(dbpath, 1, &err), NAS_OK);
    sqlite3 *raw;
    assert_int_equal(sqlite3_open(dbpath, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw,
                                  "INSERT INTO runs (name, created, settings, seed, hardware, meter)"
                                  " VALUES ('old', 1.7e9, '{}', 7, 'hw', 'rapl:package-0');"
                                  "INSERT INTO candidates (run, seq, genome, status, accuracy)"
                                  " VALUES (1, 0, '1.2', 'done', 0.75);",
                                  NULL, NULL, NULL), SQLITE_OK);
    int v = -1;
    sqlite3_stmt *s;
    sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &s, NULL);
    sqlite3_step(s);
    v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    assert_int_equal(v, 1);
    /* Version 1 has no strategy table: the test starts from a real old schema. */
    assert_int_not_equal(sqlite3_exec(raw, "SELECT * FROM strategy", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);

    /* Read-only opens never migrate; they say what to do. */
    runs_db *db;
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_READONLY, &db, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "older"));

    assert_int_equal(runs_open(dbpath, 0, &db, &err), NAS_OK);
    assert_int_equal(runs_db_version(db), runs_schema_version());
    int64_t run;
    assert_int_equal(runs_run_find(db, "old", &run, &err), NAS_OK);
    runs_cand *list;
    int n;
    assert_int_equal(runs_cand_list(db, run, RUNS_FINISHED_MASK, &list, &n, &err), NAS_OK);
    assert_int_equal(n, 1);
    assert_true(fabs(list[0].accuracy - 0.75) < 1e-12);
    assert_string_equal(list[0].error, "");
    runs_cands_free(list, n);
    assert_int_equal(runs_strategy_put(db, run, 0, "{\"k\":1}", &err), NAS_OK);
    assert_int_equal(runs_check(db, &err), NAS_OK);
    runs_close(db);

    /* A store from a newer nas is refused, not damaged. */
    assert_int_equal(sqlite3_open(dbpath, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    assert_int_equal(runs_open(dbpath, 0, &db, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "newer"));
}

/* ---- injected faults ---------------------------------------------------------- */

static void test_runs_missing_folder_and_file(void **state)
{
    runs_db *db;
    nas_err err = {0};
    char p[600];
    snprintf(p, sizeof p, "%s/no/such/folder/runs.db", tmp);
    assert_int_equal(runs_open(p, RUNS_OPEN_CREATE, &db, &err), NAS_EIO);
    assert_null(db);
    assert_non_null(strstr(err.msg, "does not exist"));
    assert_non_null(strstr(err.msg, "no/such/folder"));
    assert_int_equal(runs_open(dbpath, 0, &db, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "no run store"));
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_READONLY, &db, &err), NAS_EINVAL);
    assert_int_equal(access(dbpath, F_OK), -1);   /* read-only open created nothing */
    assert_int_equal(runs_open(tmp, RUNS_OPEN_CREATE, &db, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "folder"));
}

static void test_runs_readonly_folder(void **state)
{
    char ro[600], p[700];
    snprintf(ro, sizeof ro, "%s/ro", tmp);
    assert_int_equal(chmod(tmp, 0755), 0);
    assert_int_equal(mkdir(ro, 0555), 0);
    assert_int_equal(chmod(ro, 0555), 0);
    snprintf(p, sizeof p, "%s/runs.db", ro);
    /* root ignores folder permissions: check as an unprivileged user then. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        runs_db *db = NULL;
        nas_err err = {0};
        nas_status st = runs_open(p, RUNS_OPEN_CREATE, &db, &err);
        if (st != NAS_EIO || db)
            _exit(11);
        if (!strstr(err.msg, "not writable") || !strstr(err.msg, "/ro"))
            _exit(12);
        _exit(0);
    }
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
}

static void write_bytes(const char *path, long off, const void *data, size_t n)
{
    FILE *f = fopen(path, off < 0 ? "wb" : "r+b");
    assert_non_null(f);
    if (off > 0)
        fseek(f, off, SEEK_SET);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_runs_corrupt_files_reported(void **state)
{
    runs_db *db;
    nas_err err = {0};
    /* Not a database at all. */
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 31 + 7);
    write_bytes(dbpath, -1, junk, sizeof junk);
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_CREATE, &db, &err), NAS_EIO);
    assert_null(db);
    assert_non_null(strstr(err.msg, dbpath));
    assert_non_null(strstr(err.msg, "not a database"));
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_READONLY, &db, &err), NAS_EIO);

    /* An empty file is a new, empty database: fine. */
    write_bytes(dbpath, -1, "", 0);
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_CREATE, &db, &err), NAS_OK);
    runs_close(db);
    unlink(dbpath);

    /* Another program's database. */
    sqlite3 *raw;
    sqlite3_open(dbpath, &raw);
    sqlite3_exec(raw, "CREATE TABLE photos(x)", NULL, NULL, NULL);
    sqlite3_close(raw);
    assert_int_equal(runs_open(dbpath, RUNS_OPEN_CREATE, &db, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "not a nas run store"));
    unlink(dbpath);

    /* A real store whose pages were overwritten. */
    db = open_new();
    int64_t run = new_run(db, "c");
    char g[32];
    for (int i = 0; i < 300; i++) {
        snprintf(g, sizeof g, "%d.%d.%d", i, i % 7, i % 3);
        add_cand(db, run, -1, g);
    }
    runs_close(db);   /* checkpoints the WAL into the main file */
    struct stat sb;
    assert_int_equal(stat(dbpath, &sb), 0);
    assert_true(sb.st_size > 4 * 4096);
    char garbage[2048];
    memset(garbage, 0x5a, sizeof garbage);
    write_bytes(dbpath, 2 * 4096 + 100, garbage, sizeof garbage);
    write_bytes(dbpath, 4 * 4096 + 8, garbage, sizeof garbage);
    nas_status st = runs_open(dbpath, 0, &db, &err);
    assert_int_equal(st, NAS_EIO);
    assert_null(db);
    assert_non_null(strstr(err.msg, "damaged"));
}

static void test_runs_alloc_failure_is_clean(void **state)
{
    runs_db *db = open_new();
    int64_t run = new_run(db, "oom");
    for (int i = 0; i < 3; i++) {
        char g[16];
        snprintf(g, sizeof g, "%d", i);
        add_cand(db, run, -1, g);
    }
    nas_err err = {0};
    size_t live = nas_alloc_live();
    for (int k = 1; k <= 4; k++) {
        runs_cand *list = NULL;
        int n = -1;
        nas_alloc_fail_at(k);
        nas_status st = runs_cand_list(db, run, ~0u, &list, &n, &err);
        nas_alloc_fail_at(0);
        if (st == NAS_OK) {
            assert_int_equal(n, 3);
            runs_cands_free(list, n);
        } else {
            assert_int_equal(st, NAS_ENOMEM);
            assert_null(list);
        }
        assert_int_equal(nas_alloc_live(), live);
    }
    runs_close(db);
}

/* ---- kill -9 ---------------------------------------------------------------------- */

#define CRASH_N 200

static double crash_acc(int k)
{
    return 0.5 + 0.4 * ((k * 37) % 101) / 101.0;
}

/* A small search: proposals 0..CRASH_N-1 in order, each evaluated (a short
 * busy wait) and recorded with a strategy state that sums the seqs it has
 * seen. Resumes whatever a killed predecessor left. Exit 0 when all done. */
static int crash_child(void)
{
    runs_db *db = NULL;
    nas_err err = {0};
    if (runs_open(dbpath, RUNS_OPEN_CREATE, &db, &err))
        return 20;
    int64_t run;
    if (runs_run_find(db, "crash", &run, &err)) {
        runs_new_run r = {.name = "crash", .settings_json = "{}", .seed = 1, .hardware = "h",
                          .meter = "m"};
        if (runs_run_create(db, &r, &run, &err))
            return 21;
    }
    if (runs_resume(db, run, NULL, NULL, &err))
        return 22;
    /* Restore: the state must agree with the finished results it claims. */
    char *state;
    int seq;
    if (runs_strategy_get(db, run, &state, &seq, &err))
        return 23;
    long sum = state ? atol(state) : 0;
    nas_free(state);
    runs_cand *done;
    int n;
    if (runs_cand_list(db, run, RUNS_MASK(RUNS_DONE), &done, &n, &err))
        return 24;
    long check = 0;
    for (int i = 0; i < n; i++)
        check += done[i].seq;
    if (n > 0 && done[n - 1].seq != seq)
        return 25;
    runs_cands_free(done, n);
    if (check != sum)
        return 26;
    for (int k = 0; k < CRASH_N; k++) {
        char g[32];
        snprintf(g, sizeof g, "%d.%d", k, (k * 7) % 5);
        runs_new_cand c = {.seq = k, .genome = g, .params = NAN, .macs = NAN,
                           .pred_latency_ms = runs_fig_none(), .pred_energy_mj = runs_fig_none()};
        int64_t id;
        if (runs_cand_add(db, run, &c, &id, NULL, NULL, &err))
            return 27;
        runs_cand cur;
        if (runs_cand_get(db, id, &cur, &err))
            return 28;
        runs_status s = cur.status;
        runs_cand_free(&cur);
        if (s != RUNS_QUEUED)
            continue;
        if (runs_cand_start(db, id, NULL, &err))
            return 29;
        double t0 = nas_now();
        while (nas_now() - t0 < 0.004) {
        }
        runs_result r;
        runs_result_init(&r);
        r.accuracy = crash_acc(k);
        r.joules = runs_fig_make(1.0 + k, "model:cpu-time", "estimated");
        runs_measurement m[2] = {{"energy_mj", 0, k, "model:cpu-time", "estimated"},
                                 {"energy_mj", 1, k + 0.5, "model:cpu-time", "estimated"}};
        r.meas = m;
        r.n_meas = 2;
        sum += k;
        char st[32];
        snprintf(st, sizeof st, "%ld", sum);
        if (runs_cand_finish(db, id, &r, st, &err))
            return 30;
    }
    runs_close(db);
    return 0;
}

static void test_runs_survives_sigkill(void **state)
{
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 2026, 6);
    int kills = 0, rounds = 0, finished = 0;
    while (!finished && rounds < 200) {
        rounds++;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(crash_child());
        /* 25 kills at random moments 1..60 ms into a child's life, then let it end. */
        if (kills < 25) {
            struct timespec ts = {0, (long)(1 + nas_pcg32_bounded(&rng, 60)) * 1000000L};
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
        }
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        if (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL)
            kills++;
        if (WIFEXITED(ws)) {
            if (WEXITSTATUS(ws) != 0)
                fail_msg("crash child exited with %d (round %d)", WEXITSTATUS(ws), rounds);
            finished = 1;
        } else {
            assert_true(WIFSIGNALED(ws));
        }
        /* After every kill: the store opens, is sound, and holds at most one
         * candidate in flight. */
        runs_db *db;
        nas_err err = {0};
        if (access(dbpath, F_OK) != 0)
            continue;
        if (runs_open(dbpath, 0, &db, &err))
            fail_msg("reopen after kill %d: %s", kills, err.msg);
        if (runs_check(db, &err))
            fail_msg("integrity after kill %d: %s", kills, err.msg);
        int64_t run;
        if (runs_run_find(db, "crash", &run, &err) == NAS_OK) {
            int counts[RUNS_NSTATUS];
            assert_int_equal(runs_cand_counts(db, run, counts, &err), NAS_OK);
            assert_true(counts[RUNS_RUNNING] <= 1);
            assert_true(counts[RUNS_QUEUED] <= 1);
        }
        runs_close(db);
    }
    assert_true(finished);
    assert_true(kills >= 20);

    runs_db *db;
    nas_err err = {0};
    assert_int_equal(runs_open(dbpath, 0, &db, &err), NAS_OK);
    int64_t run;
    assert_int_equal(runs_run_find(db, "crash", &run, &err), NAS_OK);
    runs_cand *all;
    int n;
    assert_int_equal(runs_cand_list(db, run, ~0u, &all, &n, &err), NAS_OK);
    assert_int_equal(n, CRASH_N);   /* one row per proposal: none lost, none twice */
    long sum = 0;
    int n_failed = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(all[i].seq, i);
        if (all[i].status == RUNS_FAILED) {
            assert_true(all[i].attempts >= RUNS_MAX_ATTEMPTS);
            n_failed++;
            continue;
        }
        assert_int_equal(all[i].status, RUNS_DONE);
        assert_true(all[i].attempts >= 1 && all[i].attempts <= RUNS_MAX_ATTEMPTS);
        assert_true(fabs(all[i].accuracy - crash_acc(i)) < 1e-12);
        double v[4];
        int nm;
        assert_int_equal(runs_measurements(db, all[i].id, "energy_mj", v, 4, &nm, &err), NAS_OK);
        assert_int_equal(nm, 2);
        sum += i;
    }
    char *st;
    int seq;
    assert_int_equal(runs_strategy_get(db, run, &st, &seq, &err), NAS_OK);
    assert_non_null(st);
    assert_int_equal(atol(st), sum);
    nas_free(st);
    runs_cands_free(all, n);
    runs_close(db);
    fprintf(stderr, "sigkill: %d kills over %d rounds, %d poison candidates failed\n", kills,
            rounds, n_failed);
}

static void test_runs_hw_fingerprint(void **state)
{
    char fp[256];
    runs_hw_fingerprint(fp, sizeof fp);
    char cpus[32];
    snprintf(cpus, sizeof cpus, "|%ld cpus", sysconf(_SC_NPROCESSORS_ONLN));
    assert_non_null(strstr(fp, cpus));
    assert_int_equal(fp[strlen(fp) - 1], 's');
    char again[256];
    runs_hw_fingerprint(again, sizeof again);
    assert_string_equal(fp, again);
    char tiny[8];
    runs_hw_fingerprint(tiny, sizeof tiny);   /* truncates, never overflows */
    assert_int_equal(strlen(tiny), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs_create_list_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_candidate_life, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_figures_keep_their_quality, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_resume_requeues_then_fails_poison, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_interrupted_joules_are_counted_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_concurrent_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_models, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_migrates_old_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_missing_folder_and_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_readonly_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_corrupt_files_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_alloc_failure_is_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_survives_sigkill, setup, teardown),
        cmocka_unit_test(test_runs_hw_fingerprint),
        cmocka_unit_test_setup_teardown(test_runs_later_measurement, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
