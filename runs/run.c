/* run.c — the runs table: creating a run, finding it by name or id, listing
 * runs with their candidate counts, a run's status and the energy it spent.
 *
 * A run without a name is named run-<id> in the transaction that creates it,
 * so a name always names one run.
 */
#include "runs/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- runs ----------------------------------------------------------------- */

nas_status runs_run_create(runs_db *d, const runs_new_run *r, int64_t *id, nas_err *err)
{
    nas_status st = runs_tx_begin(d, err);
    if (st)
        return st;
    sqlite3_stmt *s = runs_stmt(d, S_RUN_INSERT, err);
    if (!s) {
        st = runs_err_code(err);
        goto cleanup;
    }
    /* A temporary unique name until the id is known. */
    char tmp[64];
    snprintf(tmp, sizeof tmp, "\x01pending-%ld-%.0f", (long)getpid(), runs_wall_clock() * 1e6);
    runs_bind_text(s, 1, r->name && *r->name ? r->name : tmp);
    sqlite3_bind_double(s, 2, runs_wall_clock());
    runs_bind_text(s, 3, r->settings_json && *r->settings_json ? r->settings_json : "{}");
    sqlite3_bind_int64(s, 4, (int64_t)r->seed);
    runs_bind_text(s, 5, r->hardware ? r->hardware : "");
    runs_bind_text(s, 6, r->meter ? r->meter : "");
    if (sqlite3_step(s) != SQLITE_DONE) {
        if ((sqlite3_extended_errcode(d->db) & 0xff) == SQLITE_CONSTRAINT) {
            st = nas_errf(err, NAS_EINVAL, "%s: cannot create run '%s': %s", d->path,
                          r->name ? r->name : "", sqlite3_errmsg(d->db));
        } else {
            st = runs_db_fail(d, err, "creating a run");
        }
        sqlite3_reset(s);
        goto cleanup;
    }
    sqlite3_reset(s);
    *id = sqlite3_last_insert_rowid(d->db);
    if (!(r->name && *r->name)) {
        if (!(s = runs_stmt(d, S_RUN_NAME, err))) {
            st = runs_err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, *id);
        if ((st = runs_step_done(d, s, err, "naming a run")))
            goto cleanup;
    }
    st = runs_tx_commit(d, err);
cleanup:
    if (st)
        runs_tx_rollback(d);
    return st;
}

static void read_run(sqlite3_stmt *s, runs_run *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(s, 0);
    runs_col_str(s, 1, r->name, sizeof r->name);
    r->created = sqlite3_column_double(s, 2);
    const char *settings = (const char *)sqlite3_column_text(s, 3);
    r->settings_json = nas_strdup(settings ? settings : "{}");
    r->seed = (uint64_t)sqlite3_column_int64(s, 4);
    runs_col_str(s, 5, r->hardware, sizeof r->hardware);
    runs_col_str(s, 6, r->meter, sizeof r->meter);
    runs_col_str(s, 7, r->status, sizeof r->status);
    r->n_cands = sqlite3_column_int(s, 8);
    r->n_done = sqlite3_column_int(s, 9);
    r->n_failed = sqlite3_column_int(s, 10);
    r->n_queued = sqlite3_column_int(s, 11);
    r->n_running = sqlite3_column_int(s, 12);
    r->best_accuracy = runs_col_real(s, 13);
    r->best_reward = runs_col_real(s, 14);
}

nas_status runs_run_get(runs_db *d, int64_t id, runs_run *out, nas_err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = runs_stmt(d, S_RUN_GET, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        read_run(s, out);
        if (!out->settings_json)
            st = nas_errf(err, NAS_ENOMEM, "out of memory reading run %lld", (long long)id);
    } else if (rc == SQLITE_DONE) {
        st = nas_errf(err, NAS_EINVAL, "%s: no run %lld", d->path, (long long)id);
    } else {
        st = runs_db_fail(d, err, "reading a run");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_run_find(runs_db *d, const char *name_or_id, int64_t *id, nas_err *err)
{
    sqlite3_stmt *s = runs_stmt(d, S_RUN_BY_NAME, err);
    if (!s)
        return runs_err_code(err);
    runs_bind_text(s, 1, name_or_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        return NAS_OK;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return runs_db_fail(d, err, "finding a run");
    char *end;
    errno = 0;
    long long v = strtoll(name_or_id, &end, 10);
    if (*name_or_id && !*end && !errno && v > 0) {
        runs_run r;
        nas_status st = runs_run_get(d, v, &r, err);
        runs_run_free(&r);
        if (st)
            return st;
        *id = v;
        return NAS_OK;
    }
    return nas_errf(err, NAS_EINVAL, "%s: no run named '%s' (see 'nas ls')", d->path, name_or_id);
}

nas_status runs_run_list(runs_db *d, runs_run **out, int *n, nas_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = runs_stmt(d, S_RUN_LIST, err);
    if (!s)
        return runs_err_code(err);
    runs_run *list = NULL;
    int cap = 0, count = 0, rc;
    nas_status st = NAS_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            int ncap = cap ? cap * 2 : 16;
            runs_run *bigger = nas_realloc(list, (size_t)ncap * sizeof *list);
            if (!bigger) {
                st = nas_errf(err, NAS_ENOMEM, "out of memory listing runs");
                goto cleanup;
            }
            list = bigger;
            cap = ncap;
        }
        read_run(s, &list[count]);
        if (!list[count++].settings_json) {
            st = nas_errf(err, NAS_ENOMEM, "out of memory listing runs");
            goto cleanup;
        }
    }
    if (rc != SQLITE_DONE)
        st = runs_db_fail(d, err, "listing runs");
cleanup:
    sqlite3_reset(s);
    if (st) {
        runs_runs_free(list, count);
        return st;
    }
    *out = list;
    *n = count;
    return NAS_OK;
}

/* No status (a caller's bug) marks the run failed and is still an error: a
 * run left "running" would look alive to `nas ls` and to resume. */
nas_status runs_run_set_status(runs_db *d, int64_t id, const char *status, nas_err *err)
{
    sqlite3_stmt *s = runs_stmt(d, S_RUN_STATUS, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, id);
    runs_bind_text(s, 2, status ? status : "failed");
    nas_status st = runs_step_done(d, s, err, "setting a run's status");
    if (!st && sqlite3_changes(d->db) == 0)
        st = nas_errf(err, NAS_EINVAL, "%s: no run %lld", d->path, (long long)id);
    if (!st && !status)
        st = nas_errf(err, NAS_EINVAL, "%s: run %lld: no status given (running, done, stopped or failed); marked "
                      "failed", d->path, (long long)id);
    return st;
}

void runs_run_free(runs_run *r)
{
    if (r) {
        nas_free(r->settings_json);
        r->settings_json = NULL;
    }
}

void runs_runs_free(runs_run *r, int n)
{
    for (int i = 0; r && i < n; i++)
        runs_run_free(&r[i]);
    nas_free(r);
}

nas_status runs_run_add_overhead(runs_db *d, int64_t run, const char *what, const runs_fig *joules,
                                 nas_err *err)
{
    if (!runs_fig_known(joules) || joules->value < 0 || !joules->source[0])
        return nas_errf(err, NAS_EINVAL, "%s: run %lld: a %s's joules need a value >= 0 and a source", d->path,
                        (long long)run, what);
    sqlite3_stmt *s = runs_stmt(d, S_RUN_OVERHEAD, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    runs_bind_text(s, 2, what);
    sqlite3_bind_double(s, 3, joules->value);
    runs_bind_text(s, 4, joules->source);
    runs_bind_text(s, 5, joules->quality);
    sqlite3_bind_double(s, 6, runs_wall_clock());
    return runs_step_done(d, s, err, "recording a run's calibration energy");
}

nas_status runs_run_energy(runs_db *d, int64_t run, runs_energy_line *out, int max, int *n,
                           nas_err *err)
{
    *n = 0;
    sqlite3_stmt *s = runs_stmt(d, S_RUN_ENERGY, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n >= max)
            continue;
        runs_energy_line *l = &out[(*n)++];
        runs_col_str(s, 0, l->source, sizeof l->source);
        runs_col_str(s, 1, l->quality, sizeof l->quality);
        l->joules = sqlite3_column_double(s, 2);
        l->n = sqlite3_column_int(s, 3);
        l->interrupted = sqlite3_column_int(s, 4);
        l->calibration_j = sqlite3_column_double(s, 5);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? NAS_OK : runs_db_fail(d, err, "summing a run's energy");
}
