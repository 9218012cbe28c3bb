/* test_signal.c — SIGINT and SIGTERM (base/sig.c, and what `nas search` and
 * `nas resume` do with them).
 *
 * The handler: the first signal is acknowledged on stderr at once and only
 * sets the flag; a second ends the process with 128 + the signal.
 *
 * A real search on the MNIST sample is stopped mid-candidate twice: SIGTERM
 * while candidate 1 trains (its first heartbeat in the store says so: no fixed
 * sleep), then SIGINT while candidate 2 trains in the resumed run. Each time:
 * exit 143 / 130, the store sound, the finished candidates kept, the cut-short
 * attempt's joules recorded as a lost attempt and its row queued again; the
 * last resume ends with the same candidates and accuracies as an
 * uninterrupted run with the same seed. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <time.h>

#include <sqlite3.h>

#include "base/nas.h"
#include "runs/runs.h"

/* ---- the handler ---------------------------------------------------------- */

static void first_signal_sets_the_flag_and_is_acknowledged(void **state)
{
    (void)state;
    nas_sig_install("test", "the test");
    assert_int_equal(nas_sig_caught(), 0);
    assert_int_equal(nas_sig_exit_code(), 0);
    raise(SIGINT);   /* the process lives on */
    assert_int_equal(nas_sig_caught(), SIGINT);
    assert_int_equal(nas_sig_exit_code(), 130);
    assert_int_equal(nas_exit_code(NAS_EINTR), 130);
    nas_sig_install("test", "the test");   /* a new install starts clean */
    assert_int_equal(nas_sig_caught(), 0);
    raise(SIGTERM);
    assert_int_equal(nas_sig_caught(), SIGTERM);
    assert_int_equal(nas_exit_code(NAS_EINTR), 143);
    nas_sig_uninstall();
    assert_string_equal(nas_sig_name(SIGTERM), "SIGTERM");
}

static void second_signal_exits_at_once(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        nas_sig_install("test", "the test");
        raise(SIGTERM);
        if (nas_sig_caught() != SIGTERM)
            _exit(3);
        raise(SIGINT);   /* the second: gone with 128 + SIGINT */
        _exit(4);
    }
    close(fds[1]);
    char buf[1024];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int ws;
    assert_int_equal(waitpid(p, &ws, 0), p);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 130);
    assert_non_null(strstr(buf, "nas test: SIGTERM: stopping the test (Ctrl-C again to abort at once)"));
    assert_non_null(strstr(buf, "nas test: SIGINT again: aborting now"));
}

/* ---- the store's side: a stopped candidate ------------------------------ */

static void a_stopped_candidate_is_a_lost_attempt_queued_again(void **state)
{
    (void)state;
    char dir[64], path[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/s.db", dir);
    runs_db *db = NULL;
    nas_err err = {0};
    assert_int_equal(runs_open(path, RUNS_OPEN_CREATE, &db, &err), NAS_OK);
    runs_new_run nr = {.name = "s", .settings_json = "{}", .seed = 1, .hardware = "test", .meter = "model:cpu-time"};
    int64_t run, id;
    assert_int_equal(runs_run_create(db, &nr, &run, &err), NAS_OK);
    runs_new_cand c = {.seq = 0, .genome = "g0", .params = NAN, .macs = NAN, .pred_latency_ms = runs_fig_none(),
                       .pred_energy_mj = runs_fig_none()};
    assert_int_equal(runs_cand_add(db, run, &c, &id, NULL, NULL, &err), NAS_OK);
    runs_fig bad = runs_fig_make(-1, "model:cpu-time", "estimated");
    for (int attempt = 1; attempt <= 3; attempt++) {   /* more stops than a crash is allowed */
        int att = 0;
        assert_int_equal(runs_cand_start(db, id, &att, &err), NAS_OK);
        assert_int_equal(att, attempt);
        runs_fig beat = runs_fig_make(1.0 * attempt, "model:cpu-time", "estimated");
        assert_int_equal(runs_cand_progress(db, id, &beat, &err), NAS_OK);
        assert_int_equal(runs_cand_stopped(db, id, &bad, &err), NAS_EINVAL);   /* refused, nothing changed */
        runs_fig spent = runs_fig_make(1.5 * attempt, "model:cpu-time", "estimated");
        assert_int_equal(runs_cand_stopped(db, id, &spent, &err), NAS_OK);
        runs_cand got;
        assert_int_equal(runs_cand_get(db, id, &got, &err), NAS_OK);
        assert_int_equal(got.status, RUNS_QUEUED);
        assert_int_equal(got.attempts, attempt);
        runs_cand_free(&got);
        int requeued = -1, failed = -1;   /* a resume finds nothing left running */
        assert_int_equal(runs_resume(db, run, &requeued, &failed, &err), NAS_OK);
        assert_int_equal(requeued, 0);
        assert_int_equal(failed, 0);
    }
    double lost = 0;
    assert_int_equal(runs_lost_joules(db, run, &lost, &err), NAS_OK);
    assert_true(fabs(lost - 1.5 * (1 + 2 + 3)) < 1e-12);   /* what each attempt spent, once */
    runs_fig none = runs_fig_none();   /* no figure: only queued again */
    assert_int_equal(runs_cand_start(db, id, NULL, &err), NAS_OK);
    assert_int_equal(runs_cand_stopped(db, id, &none, &err), NAS_OK);
    assert_int_equal(runs_lost_joules(db, run, &lost, &err), NAS_OK);
    assert_true(fabs(lost - 9.0) < 1e-12);
    assert_int_equal(runs_check(db, &err), NAS_OK);
    runs_close(db);
    tu_rmtree(dir);
}

/* ---- a real search, stopped and resumed --------------------------------- */

#define EVALS 3
#define ARGS "--data", "mnist", "--budget-evals", "3", "--subset", "1200", "--val-count", "100", "--test-limit", \
             "100", "--epochs", "2", "--threads", "1", "--stages", "1", "--max-width", "0.25", "--bench-seconds", \
             "0.02", "--seed", "7", "--no-export", "--final-top", "0"

static void nap(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* The joules of candidate `seq`'s heartbeat once it is training (and every
 * candidate before it finished); -1 when the search ended first. Polls the
 * store; the only bound is the process's own end. */
static double wait_training(const char *db, int seq, pid_t p)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT partial_j FROM candidates WHERE seq = %d AND status = 'running' AND partial_j IS NOT NULL"
             " AND (SELECT count(*) FROM candidates WHERE seq < %d AND status = 'done') = %d",
             seq, seq, seq);
    for (;;) {
        int ws;
        if (waitpid(p, &ws, WNOHANG) == p)
            return -1;
        sqlite3 *raw = NULL;
        double beat = -1;
        if (access(db, F_OK) == 0 && sqlite3_open_v2(db, &raw, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(raw, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                beat = sqlite3_column_double(st, 0);
            sqlite3_finalize(st);
        }
        sqlite3_close(raw);
        if (beat >= 0)
            return beat;
        nap();
    }
}

typedef struct {
    int n;
    runs_cand *c;
    runs_run run;
    double lost;
    int n_lost;
} snap;

static void snap_take(const char *db_path, snap *s)
{
    memset(s, 0, sizeof *s);
    runs_db *db = NULL;
    nas_err err = {0};
    if (runs_open(db_path, RUNS_OPEN_READONLY, &db, &err) != NAS_OK)
        fail_msg("opening %s: %s", db_path, err.msg);
    if (runs_check(db, &err) != NAS_OK)
        fail_msg("checking %s: %s", db_path, err.msg);
    int64_t run;
    assert_int_equal(runs_run_find(db, "r", &run, &err), NAS_OK);
    assert_int_equal(runs_run_get(db, run, &s->run, &err), NAS_OK);
    assert_int_equal(runs_cand_list(db, run, ~0u, &s->c, &s->n, &err), NAS_OK);
    assert_int_equal(runs_lost_joules(db, run, &s->lost, &err), NAS_OK);
    runs_energy_line lines[4];
    int nl = 0;
    assert_int_equal(runs_run_energy(db, run, lines, 4, &nl, &err), NAS_OK);
    for (int i = 0; i < nl; i++)
        s->n_lost += lines[i].interrupted;
    runs_close(db);
}

static void snap_free(snap *s)
{
    runs_cands_free(s->c, s->n);
    runs_run_free(&s->run);
}

static char *slurp(const char *path)
{
    char *t = NULL;
    return nas_read_file(path, &t, NULL, NULL) ? NULL : t;
}

/* After a stop while candidate `seq` trained: exit code, messages, store. */
static void check_stopped(const char *db, const char *err_path, int rc, int want_rc, const char *sig, int seq,
                          double beat, const snap *ref, int lost_attempts)
{
    char *msg = slurp(err_path);
    if (rc != want_rc)
        fail_msg("exit %d after %s, not %d; stderr:\n%s", rc, sig, want_rc, msg ? msg : "");
    char want[128];
    snprintf(want, sizeof want, "%s: stopping the current candidate", sig);
    assert_non_null(strstr(msg, want));   /* acknowledged at once ... */
    snprintf(want, sizeof want, "stopped by %s after %d results", sig, seq);
    assert_non_null(strstr(msg, want));   /* ... and said how it ended */
    assert_non_null(strstr(msg, "nas resume r --db"));
    nas_free(msg);
    snap s;
    snap_take(db, &s);
    assert_string_equal(s.run.status, "stopped");
    for (int i = 0; i < s.n; i++) {
        const runs_cand *c = &s.c[i];
        if (c->seq < seq) {   /* finished before the stop: as in the uninterrupted run */
            assert_int_equal(c->status, RUNS_DONE);
            assert_string_equal(c->genome, ref->c[c->seq].genome);
            assert_true(c->accuracy == ref->c[c->seq].accuracy);
        } else {              /* the one cut short: queued again, never finished */
            assert_int_equal(c->seq, seq);
            assert_int_equal(c->status, RUNS_QUEUED);
            assert_true(c->finished == 0);
        }
    }
    assert_int_equal(s.n, seq + 1);
    /* its joules so far: a lost attempt of the run, at least its last heartbeat */
    assert_int_equal(s.n_lost, lost_attempts);
    assert_true(s.lost >= beat);
    assert_true(s.lost > 0);
    snap_free(&s);
}

static void stopped_twice_mid_candidate_resumes_to_the_uninterrupted_end(void **state)
{
    (void)state;
    tu_need_mnist();
    tu_run_paths P;
    tu_run_paths_make(&P, "s.db");
    const char *db = P.db, *err_path = P.err;
    char *bin = (char *)tu_nas_bin(), *ref_db = P.ref_db;

    char *ref_argv[] = {bin, "search", ARGS, "--db", ref_db, "--name", "r", NULL};
    assert_int_equal(tu_wait(tu_spawn(ref_argv, NULL, NULL, NULL)), 0);
    snap ref;
    snap_take(ref_db, &ref);
    assert_int_equal(ref.n, EVALS);
    for (int i = 0; i < ref.n; i++) {
        assert_int_equal(ref.c[i].seq, i);
        assert_int_equal(ref.c[i].status, RUNS_DONE);
    }

    /* SIGTERM (what a batch scheduler sends) while candidate 1 trains */
    char *search_argv[] = {bin, "search", ARGS, "--db", P.db, "--name", "r", NULL};
    pid_t p = tu_spawn(search_argv, err_path, NULL, NULL);
    double beat = wait_training(db, 1, p);
    if (beat < 0)
        fail_msg("the search ended before candidate 1 trained: exit %d", tu_wait(p));
    kill(p, SIGTERM);
    check_stopped(db, err_path, tu_wait(p), 143, "SIGTERM", 1, beat, &ref, 1);

    /* SIGINT (Ctrl-C) while candidate 2 trains, in the resumed run */
    char *resume_argv[] = {bin, "resume", "r", "--db", P.db, NULL};
    p = tu_spawn(resume_argv, err_path, NULL, NULL);
    double beat2 = wait_training(db, 2, p);
    if (beat2 < 0)
        fail_msg("the resumed search ended before candidate 2 trained: exit %d", tu_wait(p));
    kill(p, SIGINT);
    check_stopped(db, err_path, tu_wait(p), 130, "SIGINT", 2, beat + beat2, &ref, 2);

    /* resumed again, it ends where the uninterrupted run ended */
    assert_int_equal(tu_wait(tu_spawn(resume_argv, err_path, NULL, NULL)), 0);
    snap fin;
    snap_take(db, &fin);
    assert_string_equal(fin.run.status, "done");
    assert_int_equal(fin.n, EVALS);
    for (int i = 0; i < fin.n; i++) {
        const runs_cand *a = &ref.c[i], *b = &fin.c[i];
        assert_int_equal(b->seq, a->seq);
        assert_int_equal(b->status, RUNS_DONE);
        assert_string_equal(b->genome, a->genome);
        assert_true(b->accuracy == a->accuracy);
        assert_int_equal(b->attempts, i == 0 ? 1 : 2);   /* the two cut short ran again, once */
    }
    assert_int_equal(fin.n_lost, 2);
    print_message("stopped at %.3g J and %.3g J into candidates 1 and 2; %.3g J recorded as lost\n", beat, beat2,
                  fin.lost);
    snap_free(&fin);
    snap_free(&ref);
    tu_rmtree(P.dir);
}

/* `nas calibrate` stops between networks: SIGTERM while the measuring
 * command runs (it leaves a file to say so), exit 143, no predictor written. */
static void calibrate_stops_between_networks(void **state)
{
    (void)state;
    char dir[64], cmd[512], out[128], started[128], err_path[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(out, sizeof out, "%s/p.json", dir);
    snprintf(started, sizeof started, "%s/started", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "test -f {spec} && touch %s && sleep 0.2 && echo latency_ms=1 && echo energy_mj=1",
             started);
    char *argv[] = {(char *)tu_nas_bin(), "calibrate", "--samples", "20", "--resolution", "28", "--in-channels", "1",
                    "--classes", "10", "--measure-cmd", cmd, "--out", out, NULL};
    pid_t p = tu_spawn(argv, err_path, NULL, NULL);
    int ws;
    while (access(started, F_OK) != 0) {   /* a network is being measured */
        if (waitpid(p, &ws, WNOHANG) == p)
            fail_msg("calibrate ended before measuring (status %d)", ws);
        nap();
    }
    kill(p, SIGTERM);
    int rc = tu_wait(p);
    char *msg = slurp(err_path);
    if (rc != 143)
        fail_msg("exit %d, not 143; stderr:\n%s", rc, msg ? msg : "");
    assert_non_null(strstr(msg, "nas calibrate: SIGTERM: stopping after the network being measured"));
    assert_non_null(strstr(msg, "was not written"));
    assert_int_not_equal(access(out, F_OK), 0);
    nas_free(msg);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_signal_sets_the_flag_and_is_acknowledged),
        cmocka_unit_test(second_signal_exits_at_once),
        cmocka_unit_test(a_stopped_candidate_is_a_lost_attempt_queued_again),
        cmocka_unit_test(calibrate_stops_between_networks),
        cmocka_unit_test(stopped_twice_mid_candidate_resumes_to_the_uninterrupted_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
