/* test_resume.c — `nas resume` after kill -9 at random moments: a real
 * `nas search --db --name` is killed (SIGKILL) 20 times at random points
 * (starting up, training, benchmarking, committing) and resumed with `nas
 * resume` each time. After every kill the store passes PRAGMA integrity_check,
 * no finished candidate is lost or changed (a finished row is written once, and
 * its finish time never moves), and at the end the run's candidates and
 * leaderboard equal those of an uninterrupted run with the same seed.
 *
 * The store fails a candidate that was killed twice while it ran (poison
 * protection, RUNS_MAX_ATTEMPTS); a random kill that would hit the same
 * candidate a second time is held until that candidate has finished, so the
 * comparison with the uninterrupted run stays exact; a candidate killed twice
 * is tested apart: failed, and the resume goes on. */
#include "testutil.h"

#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include "base/nas.h"
#include "runs/runs.h"

#include <sqlite3.h>

#define EVALS 24
#define ARGS "--data", "mnist", "--budget-evals", "24", "--subset", "200", "--val-count", "100", "--test-limit", "100", "--epochs", "1", "--threads", "1", \
             "--stages", "1", "--max-width", "0.25", "--bench-seconds", "0.02", "--seed", "5", "--no-export", \
             "--final-top", "0"

static pid_t spawn(char *const argv[])
{
    return tu_spawn(argv, NULL, NULL, NULL);
}

static int wait_exit(pid_t p)
{
    return tu_wait(p);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

typedef struct {
    int n;
    runs_cand *c;
    int found;             /* the run exists */
} snap;

static void snap_take(const char *db_path, snap *s)
{
    memset(s, 0, sizeof *s);
    struct stat sb;
    if (stat(db_path, &sb) != 0)
        return;
    runs_db *db = NULL;
    nas_err err = {0};
    if (runs_open(db_path, 0, &db, &err) != NAS_OK)
        fail_msg("opening the killed run's store: %s", err.msg);
    if (runs_check(db, &err) != NAS_OK)   /* PRAGMA integrity_check and the store's invariants */
        fail_msg("checking the killed run's store: %s", err.msg);
    int64_t run;
    nas_err ferr = {0};
    if (runs_run_find(db, "r", &run, &ferr) == NAS_OK) {
        s->found = 1;
        assert_int_equal(runs_cand_list(db, run, ~0u, &s->c, &s->n, &err), NAS_OK);
    }
    runs_close(db);
}

static const runs_cand *by_seq(const snap *s, int seq)
{
    for (int i = 0; i < s->n; i++)
        if (s->c[i].seq == seq)
            return &s->c[i];
    return NULL;
}

static int finished(const runs_cand *c)
{
    return c && (RUNS_FINISHED_MASK & RUNS_MASK(c->status));
}

/* A candidate a kill interrupted (unfinished, started before the kill) that
 * has not finished yet: a second kill would fail it. */
static int retry_pending(const char *db_path, const snap *at_kill)
{
    snap s;
    snap_take(db_path, &s);
    int pending = 0;
    for (int i = 0; i < at_kill->n; i++) {
        const runs_cand *k = &at_kill->c[i];
        pending |= !finished(k) && k->attempts >= 1 && !finished(by_seq(&s, k->seq));
    }
    runs_cands_free(s.c, s.n);
    return pending;
}

/* Every candidate finished in `before` is in `after`, unchanged. */
static void assert_kept(const snap *before, const snap *after)
{
    for (int i = 0; i < before->n; i++) {
        const runs_cand *a = &before->c[i];
        if (!finished(a))
            continue;
        const runs_cand *b = by_seq(after, a->seq);
        assert_non_null(b);
        assert_int_equal(b->status, a->status);
        assert_string_equal(b->genome, a->genome);
        assert_true(b->accuracy == a->accuracy || (isnan(b->accuracy) && isnan(a->accuracy)));
        assert_true(b->finished == a->finished);   /* never finished a second time */
    }
}

static void killed_20_times_ends_as_an_uninterrupted_run(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], ref_db[128], db[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(ref_db, sizeof ref_db, "%s/ref.db", dir);
    snprintf(db, sizeof db, "%s/k.db", dir);
    char *bin = (char *)tu_nas_bin();
    double t0 = nas_now();

    char *ref_argv[] = {bin, "search", ARGS, "--db", ref_db, "--name", "r", NULL};
    assert_int_equal(wait_exit(spawn(ref_argv)), 0);
    double ref_s = nas_now() - t0;
    snap ref;
    snap_take(ref_db, &ref);
    assert_true(ref.found);
    assert_int_equal(ref.n, EVALS);

    char *search_argv[] = {bin, "search", ARGS, "--db", db, "--name", "r", NULL};
    char *resume_argv[] = {bin, "resume", "r", "--db", db, NULL};
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 20261126, 7);
    snap prev = {0};
    int kills = 0, done = 0, held = 0;
    while (kills < 20 && !done) {
        pid_t p = spawn(prev.found ? resume_argv : search_argv);
        /* a random point within about one candidate's time: in start-up, training,
         * benchmarking or a commit */
        sleep_s(nas_pcg32_double(&rng) * 0.6 * ref_s / EVALS);
        int status, exited = 0;
        while (!(exited = waitpid(p, &status, WNOHANG) == p) && retry_pending(db, &prev)) {
            held = 1;
            sleep_s(0.05);
        }
        if (exited) {
            done = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            assert_true(done);
        } else {
            kill(p, SIGKILL);
            waitpid(p, &status, 0);
            kills++;
        }
        snap now;
        snap_take(db, &now);
        assert_kept(&prev, &now);
        runs_cands_free(prev.c, prev.n);
        prev = now;
    }
    if (!done)
        assert_int_equal(wait_exit(spawn(resume_argv)), 0);
    print_message("%d kills (%s held back from a second kill of one candidate), uninterrupted run %.1f s, "
                  "all %.0f s\n", kills, held ? "some" : "none", ref_s, nas_now() - t0);
    /* 20 when the machine's load stays as it was during the reference run; the
     * kill points are scaled by that run's pace, so a machine that got faster
     * since lets the run finish in fewer (a load that lifts is no failure) */
    assert_true(kills >= 10);

    snap fin;
    snap_take(db, &fin);
    assert_kept(&prev, &fin);
    /* the same candidates, proposals and results as the uninterrupted run */
    assert_int_equal(fin.n, EVALS);
    for (int i = 0; i < ref.n; i++) {
        const runs_cand *a = &ref.c[i], *b = by_seq(&fin, a->seq);
        assert_non_null(b);
        assert_int_equal(b->status, RUNS_DONE);
        assert_int_equal(a->status, RUNS_DONE);
        assert_string_equal(b->genome, a->genome);
        assert_true(b->accuracy == a->accuracy);
        for (int j = 0; j < i; j++)   /* no genome evaluated twice */
            assert_string_not_equal(fin.c[j].genome, fin.c[i].genome);
    }
    /* and the same leaderboard */
    runs_db *d1 = NULL, *d2 = NULL;
    nas_err err = {0};
    assert_int_equal(runs_open(ref_db, RUNS_OPEN_READONLY, &d1, &err), NAS_OK);
    assert_int_equal(runs_open(db, RUNS_OPEN_READONLY, &d2, &err), NAS_OK);
    int64_t r1, r2;
    assert_int_equal(runs_run_find(d1, "r", &r1, &err), NAS_OK);
    assert_int_equal(runs_run_find(d2, "r", &r2, &err), NAS_OK);
    runs_report a, b;
    assert_int_equal(runs_report_build(d1, r1, &a, &err), NAS_OK);
    assert_int_equal(runs_report_build(d2, r2, &b, &err), NAS_OK);
    assert_int_equal(a.n, b.n);
    for (int i = 0; i < a.n; i++) {
        assert_int_equal(a.cands[i].seq, b.cands[i].seq);
        assert_int_equal(a.rank[i], b.rank[i]);
        assert_true(a.cands[i].accuracy == b.cands[i].accuracy);
    }
    assert_true(a.chosen >= 0);
    assert_int_equal(a.cands[a.chosen].seq, b.cands[b.chosen].seq);
    assert_string_equal(b.run.status, "done");
    runs_report_free(&a);
    runs_report_free(&b);
    runs_close(d1);
    runs_close(d2);
    runs_cands_free(ref.c, ref.n);
    runs_cands_free(prev.c, prev.n);
    runs_cands_free(fin.c, fin.n);
    tu_rmtree(dir);
}

/* The joules a candidate spent before a crash killed it mid-training: its
 * heartbeat in the store becomes a lost attempt at the resume, counted in the
 * run's energy and charged to the resumed search's budget. */
/* Polls the store until `sql` gives a row, then kills the search (SIGKILL);
 * no time limit but the search's own end (a loaded machine may take long to
 * get there). Returns the row's first column. */
static double kill_at_row(pid_t p, const char *db, const char *sql, const char *what)
{
    sqlite3 *raw = NULL;
    int seen = 0, ended = 0, ws;
    double v = 0;
    while (!seen && !(ended = waitpid(p, &ws, WNOHANG) == p)) {
        sleep_s(0.02);
        if (!raw && sqlite3_open_v2(db, &raw, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            sqlite3_close(raw);
            raw = NULL;
            continue;
        }
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(raw, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
            seen = 1;
            v = sqlite3_column_double(st, 0);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(raw);
    if (ended)
        fail_msg("the search ended (status %d) before %s", ws, what);
    kill(p, SIGKILL);
    wait_exit(p);
    return v;
}

static void a_crash_mid_training_still_counts_its_joules(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], db[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(db, sizeof db, "%s/c.db", dir);
    char *argv[] = {(char *)tu_nas_bin(), "search", "--data", "mnist", "--budget-evals", "1", "--subset", "3000",
                    "--epochs", "3", "--threads", "1", "--stages", "1", "--max-width", "0.25", "--bench-seconds",
                    "0.02", "--seed", "5", "--no-export", "--final-top", "0", "--db", db, "--name", "c", NULL};
    double beat = kill_at_row(spawn(argv), db, "SELECT partial_j FROM candidates WHERE partial_j > 0",
                              "candidate 0's first heartbeat");
    print_message("killed after a heartbeat of %.3g J\n", beat);
    assert_true(beat > 0);
    /* the same command again resumes the run and finishes it */
    assert_int_equal(wait_exit(spawn(argv)), 0);
    runs_db *d = NULL;
    nas_err err = {0};
    int64_t run;
    double lost = 0;
    assert_int_equal(runs_open(db, RUNS_OPEN_READONLY, &d, &err), NAS_OK);
    assert_int_equal(runs_run_find(d, "c", &run, &err), NAS_OK);
    assert_int_equal(runs_lost_joules(d, run, &lost, &err), NAS_OK);
    print_message("lost %.3g J\n", lost);
    assert_true(lost >= beat);   /* its last heartbeat, which may be later than the one seen */
    runs_energy_line lines[4];
    int n;
    assert_int_equal(runs_run_energy(d, run, lines, 4, &n, &err), NAS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(lines[0].interrupted, 1);
    assert_int_equal(lines[0].n, 1);
    runs_cand *c = NULL;
    int nc = 0;
    assert_int_equal(runs_cand_list(d, run, RUNS_FINISHED_MASK, &c, &nc, &err), NAS_OK);
    assert_int_equal(nc, 1);
    assert_true(lines[0].joules > c[0].joules.value + lost * 0.999);   /* both are in the run's energy */
    runs_cands_free(c, nc);
    runs_close(d);
    tu_rmtree(dir);
}

/* Waits until candidate `seq` is running its attempt-th attempt, then kills
 * the search. */
static void kill_when_running(pid_t p, const char *db, int seq, int attempt)
{
    char sql[128], what[64];
    snprintf(sql, sizeof sql, "SELECT attempts FROM candidates WHERE seq = %d AND status = 'running' AND "
             "attempts = %d", seq, attempt);
    snprintf(what, sizeof what, "candidate %d's attempt %d", seq, attempt);
    kill_at_row(p, db, sql, what);
}

/* A candidate killed in both of its attempts is failed by the store (poison
 * protection); the next resume records it as failed, without starting it a
 * third time, and finishes the run. It used to stop at "is failed, not queued". */
static void killed_twice_in_one_candidate_fails_it_and_goes_on(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], db[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(db, sizeof db, "%s/p.db", dir);
    char *bin = (char *)tu_nas_bin();
    char *search_argv[] = {bin, "search", "--data", "mnist", "--budget-evals", "4", "--subset", "200", "--val-count",
                           "100", "--epochs", "1", "--threads", "1", "--stages", "1", "--max-width", "0.25",
                           "--bench-seconds", "0.02", "--seed", "5", "--no-export", "--final-top", "0", "--db", db,
                           "--name", "r", NULL};
    char *resume_argv[] = {bin, "resume", "r", "--db", db, NULL};
    kill_when_running(spawn(search_argv), db, 1, 1);
    kill_when_running(spawn(resume_argv), db, 1, 2);
    assert_int_equal(wait_exit(spawn(resume_argv)), 0);
    snap s;
    snap_take(db, &s);   /* integrity and the store's invariants too */
    assert_true(s.found);
    assert_int_equal(s.n, 4);
    for (int i = 0; i < s.n; i++) {
        const runs_cand *c = &s.c[i];
        if (c->seq == 1) {
            assert_int_equal(c->status, RUNS_FAILED);
            assert_int_equal(c->attempts, RUNS_MAX_ATTEMPTS);
            assert_non_null(strstr(c->error, "interrupted"));
        } else {
            assert_int_equal(c->status, RUNS_DONE);
            assert_int_equal(c->attempts, 1);
        }
    }
    runs_cands_free(s.c, s.n);
    /* and it is done: a resume has nothing left to do */
    assert_int_equal(wait_exit(spawn(resume_argv)), 0);
    snap_take(db, &s);
    assert_int_equal(s.n, 4);
    runs_cands_free(s.c, s.n);
    tu_rmtree(dir);
}

/* Multi-fidelity: a search killed (SIGKILL) while a promoted candidate
 * trains on from its parent's weights resumes to the end an uninterrupted run
 * reaches: the same rows, rungs, parents, genomes and accuracies. */
#define MF_ARGS "--data", "mnist", "--budget-evals", "10", "--subset", "200", "--val-count", "100", "--test-limit", \
                "100", "--epochs", "1", "--threads", "1", "--stages", "1", "--max-width", "0.25", "--bench-seconds", \
                "0.02", "--seed", "5", "--no-export", "--final-top", "0", "--rungs", "3", "--eta", "2"

static void killed_mid_rung_resumes_to_the_same_end(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], ref_db[128], db[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(ref_db, sizeof ref_db, "%s/ref.db", dir);
    snprintf(db, sizeof db, "%s/k.db", dir);
    char *bin = (char *)tu_nas_bin();
    char *ref_argv[] = {bin, "search", MF_ARGS, "--db", ref_db, "--name", "r", NULL};
    assert_int_equal(wait_exit(spawn(ref_argv)), 0);
    char *search_argv[] = {bin, "search", MF_ARGS, "--db", db, "--name", "r", NULL};   /* snap_take reads run "r" */
    char *resume_argv[] = {bin, "resume", "r", "--db", db, NULL};
    kill_at_row(spawn(search_argv), db, "SELECT 1 FROM candidates WHERE rung = 1 AND status = 'running'",
                "a rung-1 candidate started");
    kill_at_row(spawn(resume_argv), db, "SELECT 1 FROM candidates WHERE rung = 2 AND status = 'running'",
                "a rung-2 candidate started");
    assert_int_equal(wait_exit(spawn(resume_argv)), 0);
    snap ref, fin;
    snap_take(ref_db, &ref);
    snap_take(db, &fin);
    assert_true(ref.found && fin.found);
    assert_int_equal(fin.n, ref.n);
    int promoted = 0;
    for (int i = 0; i < ref.n; i++) {
        const runs_cand *a = &ref.c[i], *b = by_seq(&fin, a->seq);
        assert_non_null(b);
        assert_int_equal(b->status, a->status);
        assert_int_equal(b->rung, a->rung);
        assert_int_equal(b->parent, a->parent);
        assert_string_equal(b->genome, a->genome);
        assert_true(b->accuracy == a->accuracy);
        promoted += a->rung > 0;
    }
    assert_true(promoted >= 2);
    runs_cands_free(ref.c, ref.n);
    runs_cands_free(fin.c, fin.n);
    tu_rmtree(dir);
}

static void resume_errors(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_run_nas("resume 2>&1", &out), 2);
    assert_non_null(strstr(out, "which run"));
    free(out);
    assert_int_equal(tu_run_nas("resume nosuchrun --db /nonexistent/x.db 2>&1", &out), 1);
    assert_non_null(strstr(out, "/nonexistent/x.db"));
    free(out);
}

/* A run whose settings are not a search's is refused by name; one saved with
 * its flags ("args", as runs were before settings were kept whole) has them
 * parsed as flags again, so a flag nas no longer knows is named. */
static void resume_reads_saved_settings(void **state)
{
    (void)state;
    char dir[256], db_path[320], cmd[512];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(db_path, sizeof db_path, "%s/r.db", dir);
    runs_db *db = NULL;
    nas_err err = {0};
    int64_t id;
    assert_int_equal(runs_open(db_path, 1, &db, &err), NAS_OK);
    runs_new_run bad = {.name = "not-a-search", .settings_json = "{\"command\":\"train\",\"settings\":{}}",
                        .seed = 1, .hardware = "x", .meter = "model:cpu-time"};
    assert_int_equal(runs_run_create(db, &bad, &id, &err), NAS_OK);
    runs_new_run old = {.name = "saved-flags", .seed = 1, .hardware = "x", .meter = "model:cpu-time",
                        .settings_json = "{\"command\":\"search\",\"args\":[\"--data\",\"mnist\","
                                         "\"--budget-evals\",\"0\",\"--bogus-flag\"]}"};
    assert_int_equal(runs_run_create(db, &old, &id, &err), NAS_OK);
    runs_close(db);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "resume not-a-search --db %s 2>&1", db_path);
    assert_int_equal(tu_run_nas(cmd, &out), 2);   /* bad input, not a failure of the machine */
    assert_non_null(strstr(out, "not-a-search"));
    assert_non_null(strstr(out, "not a search's"));
    free(out);
    /* the legacy flags are parsed as flags: an unknown one is named */
    snprintf(cmd, sizeof cmd, "resume saved-flags --db %s 2>&1", db_path);
    assert_int_not_equal(tu_run_nas(cmd, &out), 0);
    assert_non_null(strstr(out, "--bogus-flag"));
    free(out);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(resume_errors),
        cmocka_unit_test(resume_reads_saved_settings),
        cmocka_unit_test(killed_mid_rung_resumes_to_the_same_end),
        cmocka_unit_test(killed_20_times_ends_as_an_uninterrupted_run),
        cmocka_unit_test(a_crash_mid_training_still_counts_its_joules),
        cmocka_unit_test(killed_twice_in_one_candidate_fails_it_and_goes_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
