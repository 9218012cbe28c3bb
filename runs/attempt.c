/* attempt.c — the life of an attempt that does not finish: the joules a
 * running candidate has spent so far (a heartbeat), a candidate stopped and
 * queued again, and the resume sweep after a crash.
 *
 * What an interrupted attempt spent is kept in the lost table, so a resumed
 * search still counts it against its budget and reports it; a candidate cut
 * short RUNS_MAX_ATTEMPTS times is failed instead of retried for ever.
 */
#include "runs/store_int.h"

#include <math.h>

nas_status runs_resume(runs_db *d, int64_t run, int *requeued, int *failed, nas_err *err)
{
    nas_status st = runs_tx_begin(d, err);
    if (st)
        return st;
    /* first what the interrupted attempts spent, before their rows change */
    sqlite3_stmt *s = runs_stmt(d, S_RESUME_LOST, err);
    if (!s) {
        st = runs_err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    if ((st = runs_step_done(d, s, err, "counting the joules of interrupted candidates")))
        goto cleanup;
    if (!(s = runs_stmt(d, S_RESUME_FAIL, err))) {
        st = runs_err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int(s, 2, RUNS_MAX_ATTEMPTS);
    sqlite3_bind_double(s, 3, runs_wall_clock());
    if ((st = runs_step_done(d, s, err, "failing twice-interrupted candidates")))
        goto cleanup;
    int nf = sqlite3_changes(d->db);
    if (!(s = runs_stmt(d, S_RESUME_REQUEUE, err))) {
        st = runs_err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    if ((st = runs_step_done(d, s, err, "re-queueing interrupted candidates")))
        goto cleanup;
    int nq = sqlite3_changes(d->db);
    if ((st = runs_tx_commit(d, err)))
        goto cleanup;
    if (requeued)
        *requeued = nq;
    if (failed)
        *failed = nf;
cleanup:
    if (st)
        runs_tx_rollback(d);
    return st;
}

nas_status runs_cand_progress(runs_db *d, int64_t id, const runs_fig *joules, nas_err *err)
{
    if (!(joules->value >= 0) || !isfinite(joules->value) || !joules->source[0] || !joules->quality[0])
        return nas_errf(err, NAS_EINVAL, "candidate %lld: %g joules spent so far (source '%s', quality '%s')",
                        (long long)id, joules->value, joules->source, joules->quality);
    sqlite3_stmt *s = runs_stmt(d, S_CAND_PARTIAL, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, joules->value);
    sqlite3_bind_text(s, 3, joules->source, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, joules->quality, -1, SQLITE_TRANSIENT);
    return runs_step_done(d, s, err, "recording a running candidate's joules");
}

nas_status runs_lost_joules(runs_db *d, int64_t run, double *joules, nas_err *err)
{
    *joules = 0;
    sqlite3_stmt *s = runs_stmt(d, S_RUN_LOST, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *joules = sqlite3_column_double(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return nas_errf(err, NAS_EIO, "%s: reading run %lld's lost joules: %s", d->path, (long long)run,
                        sqlite3_errmsg(d->db));
    return NAS_OK;
}

/* A prepared statement whose ?1 is a row id and, with f, ?2..?4 a figure. */
static nas_status step_id(runs_db *d, runs_stmt_id which, int64_t id, const runs_fig *f, const char *what, nas_err *err)
{
    sqlite3_stmt *s = runs_stmt(d, which, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, id);
    if (f)
        runs_bind_fig(s, 2, f);
    return runs_step_done(d, s, err, what);
}

nas_status runs_cand_stopped(runs_db *d, int64_t id, const runs_fig *joules, nas_err *err)
{
    int known = runs_fig_known(joules);
    if (known && (!(joules->value >= 0) || !joules->source[0] || !joules->quality[0]))
        return nas_errf(err, NAS_EINVAL, "candidate %lld: %g joules spent before it was stopped (source '%s', "
                        "quality '%s')", (long long)id, joules->value, joules->source, joules->quality);
    nas_status st = runs_tx_begin(d, err);
    if (!st && known)
        st = step_id(d, S_STOP_LOST, id, joules, "recording a stopped candidate's joules", err);
    if (!st)
        st = step_id(d, S_STOP_REQUEUE, id, NULL, "queueing a stopped candidate again", err);
    if (!st)
        st = runs_tx_commit(d, err);
    if (st)
        runs_tx_rollback(d);
    return st;
}
