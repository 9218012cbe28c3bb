/* store_int.h — what the run store's files share and nobody else sees.
 *
 * runs.h is the store's public face; this header is private to runs/ (no other
 * module includes it). It holds the connection struct, the one table of cached
 * prepared statements (db.c) and the helpers every store file uses to step
 * them, bind values and report SQLite's errors as nas_err. The schema and its
 * migrations are schema.c's alone.
 */
#ifndef NAS_RUNS_STORE_INT_H
#define NAS_RUNS_STORE_INT_H

#include "runs/runs.h"

#include <sqlite3.h>

/* Every statement the store prepares once per connection and reuses; the SQL
 * of each is in db.c's table. */
typedef enum {
    S_RUN_INSERT, S_RUN_NAME, S_RUN_GET, S_RUN_BY_NAME, S_RUN_LIST, S_RUN_STATUS, S_RUN_ENERGY, S_RUN_OVERHEAD,
    S_CAND_INSERT, S_CAND_BY_SEQ, S_CAND_NEXT_SEQ, S_CAND_START, S_CAND_STATE, S_CAND_FINISH,
    S_CAND_GET, S_CAND_LIST, S_CAND_NEXT_QUEUED, S_CAND_COUNTS, S_RESUME_FAIL, S_RESUME_REQUEUE, S_RESUME_LOST, S_CAND_PARTIAL, S_RUN_LOST,
    S_STOP_LOST, S_STOP_REQUEUE,
    S_MEAS_DELETE, S_MEAS_INSERT, S_MEAS_GET, S_STRAT_PUT, S_STRAT_GET, S_MODEL_PUT,
    S_MODEL_GET, S_MODEL_GET_FP, S_WEIGHTS_PUT, S_WEIGHTS_GET,
    S_FINAL_PUT, S_FINAL_GET, S_FINAL_CHOOSE, S_FINAL_CHOSEN, S_COUNT
} runs_stmt_id;

struct runs_db {
    sqlite3 *db;
    char path[1024];
    int readonly;
    int version;
    sqlite3_stmt *st[S_COUNT];
};

/* Fills err from the connection's last SQLite error; `what` says what was being done. */
NAS_MUST_USE nas_status runs_db_fail(runs_db *d, nas_err *err, const char *what);
/* The status a failed runs_stmt() left in err. */
NAS_MUST_USE nas_status runs_err_code(const nas_err *err);
/* The cached statement `id`, reset with its bindings cleared; NULL (err filled) if it cannot be prepared. */
sqlite3_stmt *runs_stmt(runs_db *d, runs_stmt_id id, nas_err *err);
/* Steps a statement that returns no rows, then resets it. */
NAS_MUST_USE nas_status runs_step_done(runs_db *d, sqlite3_stmt *s, nas_err *err, const char *what);
NAS_MUST_USE nas_status runs_exec(runs_db *d, const char *sql, nas_err *err, const char *what);
/* BEGIN IMMEDIATE (refused on a read-only store), COMMIT, and a ROLLBACK that is safe to call twice. */
NAS_MUST_USE nas_status runs_tx_begin(runs_db *d, nas_err *err);
NAS_MUST_USE nas_status runs_tx_commit(runs_db *d, nas_err *err);
void runs_tx_rollback(runs_db *d);
double runs_wall_clock(void);

/* Values in and out; a figure is three columns (value, source, quality), all NULL when unknown. */
void runs_bind_text(sqlite3_stmt *s, int i, const char *t);
void runs_bind_real(sqlite3_stmt *s, int i, double v);
void runs_bind_fig(sqlite3_stmt *s, int i, const runs_fig *f);
double runs_col_real(sqlite3_stmt *s, int i);
void runs_col_str(sqlite3_stmt *s, int i, char *buf, size_t n);
runs_fig runs_col_fig(sqlite3_stmt *s, int i);
/* A figure with a value must name its source and an allowed quality. */
NAS_MUST_USE nas_status runs_check_fig(const runs_fig *f, const char *name, int predicted, nas_err *err);

/* A candidate's status, attempts, run and seq, read inside the caller's transaction (cand.c). */
NAS_MUST_USE nas_status runs_cand_state(runs_db *d, int64_t id, int *status, int *attempts, int64_t *run, int *seq,
                           nas_err *err);

/* The strategy state written inside the caller's transaction (blob.c). */
NAS_MUST_USE nas_status runs_strategy_write(runs_db *d, int64_t run, int seq, const char *state, nas_err *err);

/* nas_crc32(blob) and nas_weights_version(blob) (the NASW header's version, NULL
 * when the blob is not NASW) on a connection, for migration 4 (weights.c). */
int runs_weights_sql_functions(sqlite3 *db);

#endif
