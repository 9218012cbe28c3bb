/* blob.c — opaque text and bytes the store keeps for other modules: the
 * search strategy's state per run and the predictor's fitted models.
 *
 * The store does not read them; it keeps the newest one of each, committed
 * in its own transaction (or the caller's: runs_strategy_write).
 */
#include "runs/store_int.h"

#include <string.h>

nas_status runs_strategy_write(runs_db *d, int64_t run, int seq, const char *state, nas_err *err)
{
    sqlite3_stmt *s = runs_stmt(d, S_STRAT_PUT, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int(s, 2, seq);
    runs_bind_text(s, 3, state);
    sqlite3_bind_double(s, 4, runs_wall_clock());
    return runs_step_done(d, s, err, "saving the strategy state");
}

/* ---- strategy state ---------------------------------------------------------- */

nas_status runs_strategy_get(runs_db *d, int64_t run, char **state, int *seq, nas_err *err)
{
    *state = NULL;
    *seq = -1;
    sqlite3_stmt *s = runs_stmt(d, S_STRAT_GET, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        *seq = sqlite3_column_int(s, 1);
        if (!(*state = nas_strdup(t ? t : "")))
            st = nas_errf(err, NAS_ENOMEM, "out of memory reading the strategy state");
    } else if (rc != SQLITE_DONE) {
        st = runs_db_fail(d, err, "reading the strategy state");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_strategy_put(runs_db *d, int64_t run, int seq, const char *state, nas_err *err)
{
    nas_status st = runs_tx_begin(d, err);
    if (st)
        return st;
    if (!(st = runs_strategy_write(d, run, seq, state, err)))
        st = runs_tx_commit(d, err);
    if (st)
        runs_tx_rollback(d);
    return st;
}

/* ---- predictor models --------------------------------------------------------- */

nas_status runs_model_put(runs_db *d, const char *name, const char *fingerprint,
                          const char *meta_json, const void *blob, size_t len, int64_t *id,
                          nas_err *err)
{
    if (!name || !*name || !fingerprint)
        return nas_errf(err, NAS_EINVAL, "model: a name and a fingerprint are needed");
    nas_status st = runs_tx_begin(d, err);
    if (st)
        return st;
    sqlite3_stmt *s = runs_stmt(d, S_MODEL_PUT, err);
    if (!s) {
        st = runs_err_code(err);
        goto cleanup;
    }
    runs_bind_text(s, 1, name);
    runs_bind_text(s, 2, fingerprint);
    sqlite3_bind_double(s, 3, runs_wall_clock());
    runs_bind_text(s, 4, meta_json);
    sqlite3_bind_blob64(s, 5, len ? blob : "", len, SQLITE_TRANSIENT);
    if ((st = runs_step_done(d, s, err, "saving a model")))
        goto cleanup;
    if (id)
        *id = sqlite3_last_insert_rowid(d->db);
    st = runs_tx_commit(d, err);
cleanup:
    if (st)
        runs_tx_rollback(d);
    return st;
}

nas_status runs_model_get(runs_db *d, const char *name, const char *fingerprint, void **blob,
                          size_t *len, char **meta_json, char fingerprint_out[128], int *found,
                          nas_err *err)
{
    *found = 0;
    *blob = NULL;
    *len = 0;
    if (meta_json)
        *meta_json = NULL;
    sqlite3_stmt *s = runs_stmt(d, fingerprint ? S_MODEL_GET_FP : S_MODEL_GET, err);
    if (!s)
        return runs_err_code(err);
    runs_bind_text(s, 1, name);
    if (fingerprint)
        runs_bind_text(s, 2, fingerprint);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        const void *b = sqlite3_column_blob(s, 0);
        const char *meta = (const char *)sqlite3_column_text(s, 1);
        *blob = nas_malloc(n ? n : 1);
        if (!*blob) {
            st = nas_errf(err, NAS_ENOMEM, "out of memory reading model '%s'", name);
        } else {
            if (n)
                memcpy(*blob, b, n);
            *len = n;
            if (meta_json && meta && !(*meta_json = nas_strdup(meta))) {
                nas_free(*blob);
                *blob = NULL;
                st = nas_errf(err, NAS_ENOMEM, "out of memory reading model '%s'", name);
            }
            if (!st && fingerprint_out)
                runs_col_str(s, 2, fingerprint_out, 128);
            *found = !st;
        }
    } else if (rc != SQLITE_DONE) {
        st = runs_db_fail(d, err, "reading a model");
    }
    sqlite3_reset(s);
    return st;
}
