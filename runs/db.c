/* db.c — the run store's connection helpers: the table of prepared statements,
 * errors, transactions, and values in and out of SQL.
 *
 * Values only ever reach SQL through bound parameters of the statements in the
 * table below, each prepared once per connection (SQLITE_PREPARE_PERSISTENT)
 * and reset on reuse. Every write that belongs together runs in one BEGIN
 * IMMEDIATE transaction, so a kill -9 leaves all of it or none of it. SQLite's
 * errors become nas_err messages that name the store file and what failed,
 * with advice where the user can act (a full disk, a damaged file).
 */
#include "runs/store_int.h"

#include <math.h>
#include <string.h>
#include <time.h>

/* ---- prepared statements ------------------------------------------------- */

/* ---- prepared statements ------------------------------------------------- */

#define CAND_COLS                                                                              \
    "id, run, seq, genome, spec, status, attempts, accuracy,"                                  \
    " pred_latency_ms, pred_latency_ms_src, pred_latency_ms_q,"                                \
    " pred_energy_mj, pred_energy_mj_src, pred_energy_mj_q,"                                   \
    " latency_ms, latency_ms_src, latency_ms_q, energy_mj, energy_mj_src, energy_mj_q,"        \
    " joules, joules_src, joules_q, params, macs, wall_s, reward, finished, error, rung, parent"

#define RUN_COLS                                                                               \
    "r.id, r.name, r.created, r.settings, r.seed, r.hardware, r.meter, r.status,"              \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id),"                                 \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status = 'done'),"           \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status IN ('failed','diverged')),"\
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status = 'queued'),"         \
    " (SELECT count(*) FROM candidates c WHERE c.run = r.id AND c.status = 'running'),"        \
    " (SELECT max(accuracy) FROM candidates c WHERE c.run = r.id AND c.status = 'done'),"      \
    " (SELECT max(reward) FROM candidates c WHERE c.run = r.id AND c.status = 'done')"

static const char *const stmt_sql[S_COUNT] = {
    [S_RUN_INSERT] = "INSERT INTO runs (name, created, settings, seed, hardware, meter)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_RUN_NAME] = "UPDATE runs SET name = 'run-' || id WHERE id = ?1",
    [S_RUN_GET] = "SELECT " RUN_COLS " FROM runs r WHERE r.id = ?1",
    [S_RUN_BY_NAME] = "SELECT id FROM runs WHERE name = ?1",
    [S_RUN_LIST] = "SELECT " RUN_COLS " FROM runs r ORDER BY r.id",
    [S_RUN_STATUS] = "UPDATE runs SET status = ?2 WHERE id = ?1",
    /* kind 0: a candidate's joules, 1: a lost attempt's, 2: an overhead's */
    [S_RUN_ENERGY] = "SELECT src, q, sum(j), sum(kind = 0), sum(kind = 1),"
                     " sum(CASE WHEN kind = 2 THEN j ELSE 0 END) FROM ("
                     "  SELECT joules_src AS src, joules_q AS q, joules AS j, 0 AS kind FROM candidates"
                     "  WHERE run = ?1 AND joules IS NOT NULL"
                     "  UNION ALL SELECT src, q, joules, 1 FROM lost WHERE run = ?1"
                     "  UNION ALL SELECT src, q, joules, 2 FROM overheads WHERE run = ?1)"
                     " GROUP BY src, q ORDER BY q, src",
    [S_RUN_OVERHEAD] = "INSERT INTO overheads (run, what, joules, src, q, created)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_CAND_INSERT] = "INSERT INTO candidates (run, seq, genome, spec,"
                      " pred_latency_ms, pred_latency_ms_src, pred_latency_ms_q,"
                      " pred_energy_mj, pred_energy_mj_src, pred_energy_mj_q, params, macs, rung, parent)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    [S_CAND_BY_SEQ] = "SELECT id, genome FROM candidates WHERE run = ?1 AND seq = ?2",
    [S_CAND_NEXT_SEQ] = "SELECT coalesce(max(seq) + 1, 0) FROM candidates WHERE run = ?1",
    [S_CAND_START] = "UPDATE candidates SET status = 'running', attempts = attempts + 1"
                     " WHERE id = ?1 AND status = 'queued'",
    [S_CAND_STATE] = "SELECT status, attempts, run, seq FROM candidates WHERE id = ?1",
    [S_CAND_FINISH] =
        "UPDATE candidates SET status = ?2, accuracy = ?3,"
        " latency_ms = ?4, latency_ms_src = ?5, latency_ms_q = ?6,"
        " energy_mj = ?7, energy_mj_src = ?8, energy_mj_q = ?9,"
        " joules = ?10, joules_src = ?11, joules_q = ?12,"
        " pred_latency_ms = coalesce(?13, pred_latency_ms),"
        " pred_latency_ms_src = CASE WHEN ?13 IS NULL THEN pred_latency_ms_src ELSE ?14 END,"
        " pred_latency_ms_q = CASE WHEN ?13 IS NULL THEN pred_latency_ms_q ELSE ?15 END,"
        " pred_energy_mj = coalesce(?16, pred_energy_mj),"
        " pred_energy_mj_src = CASE WHEN ?16 IS NULL THEN pred_energy_mj_src ELSE ?17 END,"
        " pred_energy_mj_q = CASE WHEN ?16 IS NULL THEN pred_energy_mj_q ELSE ?18 END,"
        " params = coalesce(?19, params), macs = coalesce(?20, macs),"
        " wall_s = ?21, reward = ?22, finished = ?23, error = ?24"
        " WHERE id = ?1 AND status IN ('queued','running')",
    [S_CAND_GET] = "SELECT " CAND_COLS " FROM candidates WHERE id = ?1",
    [S_CAND_LIST] = "SELECT " CAND_COLS " FROM candidates WHERE run = ?1 ORDER BY seq",
    [S_CAND_NEXT_QUEUED] = "SELECT " CAND_COLS " FROM candidates"
                           " WHERE run = ?1 AND status = 'queued' ORDER BY seq LIMIT 1",
    [S_CAND_COUNTS] = "SELECT status, count(*) FROM candidates WHERE run = ?1 GROUP BY status",
    [S_RESUME_FAIL] = "UPDATE candidates SET status = 'failed', finished = ?3, partial_j = NULL,"
                      " error = 'its evaluation was interrupted ' || attempts || ' times'"
                      " WHERE run = ?1 AND status = 'running' AND attempts >= ?2",
    [S_RESUME_REQUEUE] = "UPDATE candidates SET status = 'queued', partial_j = NULL"
                         " WHERE run = ?1 AND status = 'running'",
    [S_RESUME_LOST] = "INSERT OR IGNORE INTO lost (candidate, run, attempt, joules, src, q)"
                      " SELECT id, run, attempts, partial_j, partial_j_src, partial_j_q FROM candidates"
                      " WHERE run = ?1 AND status = 'running' AND partial_j IS NOT NULL",
    [S_CAND_PARTIAL] = "UPDATE candidates SET partial_j = ?2, partial_j_src = ?3, partial_j_q = ?4"
                       " WHERE id = ?1 AND status = 'running'",
    [S_RUN_LOST] = "SELECT COALESCE(SUM(joules), 0) FROM lost WHERE run = ?1",
    [S_STOP_LOST] = "INSERT OR IGNORE INTO lost (candidate, run, attempt, joules, src, q)"
                    " SELECT id, run, attempts, ?2, ?3, ?4 FROM candidates WHERE id = ?1 AND status = 'running'",
    [S_STOP_REQUEUE] = "UPDATE candidates SET status = 'queued', partial_j = NULL WHERE id = ?1 AND status = 'running'",
    [S_MEAS_DELETE] = "DELETE FROM measurements WHERE candidate = ?1",
    [S_MEAS_INSERT] = "INSERT INTO measurements (candidate, kind, rep, value, source, quality)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_MEAS_GET] = "SELECT value FROM measurements WHERE candidate = ?1 AND kind = ?2 ORDER BY rep",
    [S_STRAT_PUT] = "INSERT INTO strategy (run, seq, state, updated) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT (run) DO UPDATE SET seq = excluded.seq,"
                    " state = excluded.state, updated = excluded.updated",
    [S_STRAT_GET] = "SELECT state, seq FROM strategy WHERE run = ?1",
    [S_MODEL_PUT] = "INSERT INTO models (name, fingerprint, created, meta, blob)"
                    " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_MODEL_GET] = "SELECT blob, meta, fingerprint FROM models WHERE name = ?1"
                    " ORDER BY id DESC LIMIT 1",
    [S_MODEL_GET_FP] = "SELECT blob, meta, fingerprint FROM models WHERE name = ?1"
                       " AND fingerprint = ?2 ORDER BY id DESC LIMIT 1",
    [S_WEIGHTS_PUT] = "INSERT INTO weights (candidate, format, version, bytes, crc32, created, blob)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (candidate) DO UPDATE SET"
                      " format = excluded.format, version = excluded.version, bytes = excluded.bytes,"
                      " crc32 = excluded.crc32, created = excluded.created, blob = excluded.blob",
    [S_WEIGHTS_GET] = "SELECT format, version, bytes, crc32, blob FROM weights WHERE candidate = ?1",
    [S_FINAL_PUT] = "INSERT INTO finals (candidate, epochs, train_images, test_images, val_acc, test_acc,"
                    " joules, joules_source, joules_quality, seconds, chosen, format, version, bytes, crc32,"
                    " created, blob) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?12, ?13, ?14,"
                    " ?15, ?16) ON CONFLICT (candidate) DO UPDATE SET epochs = excluded.epochs,"
                    " train_images = excluded.train_images, test_images = excluded.test_images,"
                    " val_acc = excluded.val_acc, test_acc = excluded.test_acc, joules = excluded.joules,"
                    " joules_source = excluded.joules_source, joules_quality = excluded.joules_quality,"
                    " seconds = excluded.seconds, chosen = 0, format = excluded.format,"
                    " version = excluded.version, bytes = excluded.bytes, crc32 = excluded.crc32,"
                    " created = excluded.created, blob = excluded.blob",
    [S_FINAL_GET] = "SELECT format, version, bytes, crc32, blob, epochs, train_images, test_images, val_acc,"
                    " test_acc, joules, joules_source, joules_quality, seconds, chosen"
                    " FROM finals WHERE candidate = ?1",
    [S_FINAL_CHOOSE] = "UPDATE finals SET chosen = (candidate = ?2)"
                       " WHERE candidate IN (SELECT id FROM candidates WHERE run = ?1)",
    [S_FINAL_CHOSEN] = "SELECT f.candidate FROM finals f JOIN candidates c ON c.id = f.candidate"
                       " WHERE c.run = ?1 AND f.chosen = 1",
};

/* ---- errors -------------------------------------------------------------- */

nas_status runs_db_fail(runs_db *d, nas_err *err, const char *what)
{
    int rc = sqlite3_extended_errcode(d->db);
    int prim = rc & 0xff;
    nas_status code = NAS_EINTERNAL;
    if (prim == SQLITE_NOTADB || prim == SQLITE_CORRUPT)
        return nas_errf(err, NAS_EIO, "%s: the run store is damaged or not a database (%s, while %s)",
                        d->path, sqlite3_errmsg(d->db), what);
    if (prim == SQLITE_FULL || prim == SQLITE_IOERR)   /* the transaction is undone; the ones before stay */
        return nas_errf(err, NAS_EIO, "%s: %s: %s (%s; everything committed before is kept: %s, then resume)",
                        d->path, what, sqlite3_errmsg(d->db), prim == SQLITE_FULL ? "the disk is full" : "a write failed",
                        prim == SQLITE_FULL ? "free some space" : "check the disk");
    if (prim == SQLITE_READONLY || prim == SQLITE_CANTOPEN || prim == SQLITE_PERM)
        code = NAS_EIO;
    else if (prim == SQLITE_CONSTRAINT)
        code = NAS_EINVAL;
    else if (prim == SQLITE_NOMEM)
        code = NAS_ENOMEM;
    return nas_errf(err, code, "%s: %s: %s", d->path, what, sqlite3_errmsg(d->db));
}

/* The status a failed runs_stmt() left in err (it always fills it when given one). */
nas_status runs_err_code(const nas_err *err)
{
    return err && err->code ? err->code : NAS_EINTERNAL;
}

sqlite3_stmt *runs_stmt(runs_db *d, runs_stmt_id id, nas_err *err)
{
    if (!d->st[id]) {
        if (sqlite3_prepare_v3(d->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &d->st[id],
                               NULL) != SQLITE_OK) {
            if (runs_db_fail(d, err, "preparing a statement") != NAS_OK)
                return NULL;   /* err says why; runs_err_code(err) is its status */
        }
    } else {
        sqlite3_reset(d->st[id]);
        sqlite3_clear_bindings(d->st[id]);
    }
    return d->st[id];
}

/* Runs a statement that returns no rows. */
nas_status runs_step_done(runs_db *d, sqlite3_stmt *s, nas_err *err, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return runs_db_fail(d, err, what);
    return NAS_OK;
}

nas_status runs_exec(runs_db *d, const char *sql, nas_err *err, const char *what)
{
    if (sqlite3_exec(d->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return runs_db_fail(d, err, what);
    return NAS_OK;
}

nas_status runs_tx_begin(runs_db *d, nas_err *err)
{
    if (d->readonly)
        return nas_errf(err, NAS_EINVAL, "%s: opened read-only", d->path);
    return runs_exec(d, "BEGIN IMMEDIATE", err, "starting a transaction");
}

nas_status runs_tx_commit(runs_db *d, nas_err *err)
{
    return runs_exec(d, "COMMIT", err, "committing");
}

void runs_tx_rollback(runs_db *d)
{
    if (!sqlite3_get_autocommit(d->db))
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
}

double runs_wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- figures --------------------------------------------------------------- */

runs_fig runs_fig_none(void)
{
    runs_fig f;
    memset(&f, 0, sizeof f);
    f.value = NAN;
    return f;
}

runs_fig runs_fig_make(double value, const char *source, const char *quality)
{
    runs_fig f = runs_fig_none();
    f.value = value;
    snprintf(f.source, sizeof f.source, "%s", source ? source : "");
    snprintf(f.quality, sizeof f.quality, "%s", quality ? quality : "");
    return f;
}

int runs_fig_known(const runs_fig *f)
{
    return f && isfinite(f->value);
}

int runs_quality_is_measured(const char *q)
{
    return q && !strcmp(q, "measured");
}

void runs_bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

void runs_bind_real(sqlite3_stmt *s, int i, double v)
{
    if (isfinite(v))
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

/* A figure is three columns: value, source, quality (all NULL when unknown). */
void runs_bind_fig(sqlite3_stmt *s, int i, const runs_fig *f)
{
    if (!runs_fig_known(f)) {
        sqlite3_bind_null(s, i);
        sqlite3_bind_null(s, i + 1);
        sqlite3_bind_null(s, i + 2);
        return;
    }
    sqlite3_bind_double(s, i, f->value);
    runs_bind_text(s, i + 1, f->source[0] ? f->source : NULL);
    runs_bind_text(s, i + 2, f->quality[0] ? f->quality : NULL);
}

double runs_col_real(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

void runs_col_str(sqlite3_stmt *s, int i, char *buf, size_t n)
{
    const char *t = (const char *)sqlite3_column_text(s, i);
    snprintf(buf, n, "%s", t ? t : "");
}

runs_fig runs_col_fig(sqlite3_stmt *s, int i)
{
    runs_fig f = runs_fig_none();
    f.value = runs_col_real(s, i);
    runs_col_str(s, i + 1, f.source, sizeof f.source);
    runs_col_str(s, i + 2, f.quality, sizeof f.quality);
    return f;
}

/* A figure with a value must say where it came from and how good it is. */
nas_status runs_check_fig(const runs_fig *f, const char *name, int predicted, nas_err *err)
{
    if (!runs_fig_known(f))
        return NAS_OK;
    if (!f->source[0])
        return nas_errf(err, NAS_EINVAL, "%s = %g: no source given", name, f->value);
    int ok = predicted ? !strcmp(f->quality, "predicted")
                       : (!strcmp(f->quality, "measured") || !strcmp(f->quality, "sampled") ||
                          !strcmp(f->quality, "estimated"));
    if (!ok)
        return nas_errf(err, NAS_EINVAL, "%s = %g: quality '%s' is not allowed (%s)", name, f->value,
                        f->quality, predicted ? "predicted" : "measured, sampled or estimated");
    return NAS_OK;
}
