/* measure.c — later measurements of a finished candidate and the raw
 * repeats behind each figure (the measurements table).
 *
 * A figure measured again replaces the candidate's column, but the first
 * figure stays on record as the first measurement of its kind; joules spent
 * measuring join the candidate's joules only when meter and quality agree
 * (figures of different sources are never summed).
 */
#include "runs/store_int.h"

#include <stdio.h>
#include <string.h>

static nas_status cand_fig(runs_db *d, int64_t id, const char *col, runs_fig *out, nas_err *err)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s, %s_src, %s_q FROM candidates WHERE id = ?", col, col, col);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK)
        return runs_db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    nas_status st = NAS_OK;
    *out = runs_fig_none();
    if (sqlite3_step(s) == SQLITE_ROW)
        *out = runs_col_fig(s, 0);
    else
        st = runs_db_fail(d, err, "reading a figure");
    sqlite3_finalize(s);
    return st;
}

static nas_status run_sql(runs_db *d, const char *sql, int64_t id, const runs_fig *f, nas_err *err,
                          const char *what)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &s, NULL) != SQLITE_OK)
        return runs_db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    if (f)
        runs_bind_fig(s, 2, f);
    nas_status st = runs_step_done(d, s, err, what);
    sqlite3_finalize(s);
    return st;
}

/* A raw measurement at the next free rep of its kind. */
static nas_status meas_append(runs_db *d, int64_t id, const char *kind, const runs_fig *f, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db,
                           "INSERT INTO measurements (candidate, kind, rep, value, source, quality) "
                           "SELECT ?1, ?2, COALESCE(MAX(rep) + 1, 0), ?3, ?4, ?5 FROM measurements "
                           "WHERE candidate = ?1 AND kind = ?2", -1, &s, NULL) != SQLITE_OK)
        return runs_db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    runs_bind_text(s, 2, kind);
    runs_bind_fig(s, 3, f);
    nas_status st = runs_step_done(d, s, err, "recording a measurement");
    sqlite3_finalize(s);
    return st;
}

static nas_status meas_count(runs_db *d, int64_t id, const char *kind, int *n, nas_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT COUNT(*) FROM measurements WHERE candidate = ? AND kind = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return runs_db_fail(d, err, "preparing a statement");
    sqlite3_bind_int64(s, 1, id);
    runs_bind_text(s, 2, kind);
    nas_status st = NAS_OK;
    if (sqlite3_step(s) == SQLITE_ROW)
        *n = sqlite3_column_int(s, 0);
    else
        st = runs_db_fail(d, err, "counting measurements");
    sqlite3_finalize(s);
    return st;
}

nas_status runs_cand_add_measurement(runs_db *d, int64_t id, const runs_fig *latency_ms,
                                     const runs_fig *energy_mj, const runs_fig *joules,
                                     const char *strategy_state, nas_err *err)
{
    static const char *const names[] = {"latency_ms", "energy_mj"};
    const runs_fig none = runs_fig_none();
    const runs_fig *figs[] = {latency_ms ? latency_ms : &none, energy_mj ? energy_mj : &none};
    if (!joules)
        joules = &none;
    nas_status st = NAS_OK;
    for (int i = 0; i < 2 && !st; i++)
        st = runs_check_fig(figs[i], names[i], 0, err);
    if (!st)
        st = runs_check_fig(joules, "joules", 0, err);
    if (st)
        return st;
    if ((st = runs_tx_begin(d, err)))
        return st;
    int status = -1, att = 0, seq = 0;
    int64_t run = 0;
    if ((st = runs_cand_state(d, id, &status, &att, &run, &seq, err)))
        goto cleanup;
    if (status != RUNS_DONE) {
        st = nas_errf(err, NAS_EINVAL,
                      "candidate %lld (run %lld, #%d) is %s: only a finished evaluation (done) is "
                      "measured again", (long long)id, (long long)run, seq, runs_status_name((runs_status)status));
        goto cleanup;
    }
    for (int i = 0; i < 2; i++) {
        if (!runs_fig_known(figs[i]))
            continue;
        /* the figures it had first stay on record, as the first measurement of their kind */
        runs_fig old;
        int n = 0;
        if ((st = cand_fig(d, id, names[i], &old, err)) || (st = meas_count(d, id, names[i], &n, err)))
            goto cleanup;
        if (runs_fig_known(&old) && n == 0 && (st = meas_append(d, id, names[i], &old, err)))
            goto cleanup;
        if ((st = meas_append(d, id, names[i], figs[i], err)))
            goto cleanup;
        char sql[160];
        snprintf(sql, sizeof sql, "UPDATE candidates SET %s = ?2, %s_src = ?3, %s_q = ?4 WHERE id = ?1", names[i],
                 names[i], names[i]);
        if ((st = run_sql(d, sql, id, figs[i], err, "recording a later measurement")))
            goto cleanup;
    }
    if (runs_fig_known(joules)) {
        /* what measuring cost joins what the candidate cost, when the meter is the same one:
         * figures of different sources or qualities are never summed */
        runs_fig old;
        if ((st = cand_fig(d, id, "joules", &old, err)) || (st = meas_append(d, id, "measure_joules", joules, err)))
            goto cleanup;
        if (runs_fig_known(&old) && !strcmp(old.source, joules->source) && !strcmp(old.quality, joules->quality) &&
            (st = run_sql(d, "UPDATE candidates SET joules = joules + ?2 WHERE id = ?1 AND joules_src = ?3 "
                          "AND joules_q = ?4", id, joules, err, "adding the measuring's joules")))
            goto cleanup;
    }
    if (strategy_state && (st = runs_strategy_write(d, run, seq, strategy_state, err)))
        goto cleanup;
    st = runs_tx_commit(d, err);
cleanup:
    if (st)
        runs_tx_rollback(d);
    return st;
}

nas_status runs_measurements(runs_db *d, int64_t cand, const char *kind, double *values, int max,
                             int *n, nas_err *err)
{
    *n = 0;
    sqlite3_stmt *s = runs_stmt(d, S_MEAS_GET, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, cand);
    runs_bind_text(s, 2, kind);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n < max)
            values[*n] = sqlite3_column_double(s, 0);
        (*n)++;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? NAS_OK : runs_db_fail(d, err, "reading measurements");
}
