/* cand.c — candidates: adding one to a run (idempotent per genome and seq),
 * starting an attempt, recording its result, and reading candidates back.
 *
 * A finished evaluation (its figures, its status and the strategy state that
 * follows from it) is committed in one transaction: after a crash the store
 * holds either the whole result or the candidate still queued or running.
 */
#include "runs/store_int.h"

#include <math.h>
#include <string.h>

/* ---- status names -------------------------------------------------------- */

static const char *const status_names[RUNS_NSTATUS] = {
    "queued", "running", "done", "failed", "diverged", "screened",
};

const char *runs_status_name(runs_status s)
{
    return (unsigned)s < RUNS_NSTATUS ? status_names[s] : "?";
}

int runs_status_from_name(const char *s)
{
    for (int i = 0; s && i < RUNS_NSTATUS; i++)
        if (!strcmp(s, status_names[i]))
            return i;
    return -1;
}

/* ---- candidates ------------------------------------------------------------ */

nas_status runs_cand_add(runs_db *d, int64_t run, const runs_new_cand *c, int64_t *id, int *seq,
                         int *existed, nas_err *err)
{
    int dummy_seq, dummy_existed;
    if (!seq)
        seq = &dummy_seq;
    if (!existed)
        existed = &dummy_existed;
    *existed = 0;
    if (!c->genome || !*c->genome)
        return nas_errf(err, NAS_EINVAL, "candidate: empty genome");
    if (strlen(c->genome) >= sizeof(((runs_cand *)0)->genome))
        return nas_errf(err, NAS_EINVAL, "candidate: genome too long (%zu characters)",
                        strlen(c->genome));
    nas_status st = runs_check_fig(&c->pred_latency_ms, "pred_latency_ms", 1, err);
    if (!st)
        st = runs_check_fig(&c->pred_energy_mj, "pred_energy_mj", 1, err);
    if (st)
        return st;
    if ((st = runs_tx_begin(d, err)))
        return st;
    sqlite3_stmt *s;
    int k = c->seq;
    if (k < 0) {
        if (!(s = runs_stmt(d, S_CAND_NEXT_SEQ, err))) {
            st = runs_err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, run);
        if (sqlite3_step(s) != SQLITE_ROW) {
            st = runs_db_fail(d, err, "numbering a candidate");
            sqlite3_reset(s);
            goto cleanup;
        }
        k = sqlite3_column_int(s, 0);
        sqlite3_reset(s);
    } else {
        if (!(s = runs_stmt(d, S_CAND_BY_SEQ, err))) {
            st = runs_err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, run);
        sqlite3_bind_int(s, 2, k);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const char *g = (const char *)sqlite3_column_text(s, 1);
            int same = g && !strcmp(g, c->genome);
            *id = sqlite3_column_int64(s, 0);
            if (!same)
                st = nas_errf(err, NAS_EINVAL,
                              "run %lld candidate %d: the store holds genome %s, the search "
                              "proposed %s (the replay diverged from the record)",
                              (long long)run, k, g ? g : "?", c->genome);
            sqlite3_reset(s);
            *existed = same;
            *seq = k;
            if (!st)
                st = runs_tx_commit(d, err);   /* nothing written: ends the read */
            goto cleanup;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            st = runs_db_fail(d, err, "looking up a candidate");
            goto cleanup;
        }
    }
    if (!(s = runs_stmt(d, S_CAND_INSERT, err))) {
        st = runs_err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, run);
    sqlite3_bind_int(s, 2, k);
    runs_bind_text(s, 3, c->genome);
    runs_bind_text(s, 4, c->spec_json);
    runs_bind_fig(s, 5, &c->pred_latency_ms);
    runs_bind_fig(s, 8, &c->pred_energy_mj);
    runs_bind_real(s, 11, c->params);
    runs_bind_real(s, 12, c->macs);
    sqlite3_bind_int(s, 13, c->rung > 0 ? c->rung : 0);
    if (c->rung > 0 && c->parent >= 0)
        sqlite3_bind_int(s, 14, c->parent);
    else
        sqlite3_bind_null(s, 14);
    if (sqlite3_step(s) != SQLITE_DONE) {
        sqlite3_reset(s);
        if ((sqlite3_extended_errcode(d->db) & 0xff) == SQLITE_CONSTRAINT)
            st = nas_errf(err, NAS_EINVAL, "run %lld: cannot add candidate %d: %s", (long long)run,
                          k, sqlite3_errmsg(d->db));
        else
            st = runs_db_fail(d, err, "adding a candidate");
        goto cleanup;
    }
    sqlite3_reset(s);
    *id = sqlite3_last_insert_rowid(d->db);
    *seq = k;
    st = runs_tx_commit(d, err);
cleanup:
    if (st)
        runs_tx_rollback(d);
    return st;
}

/* The status and attempts of a candidate (inside a transaction or not). */
nas_status runs_cand_state(runs_db *d, int64_t id, int *status, int *attempts, int64_t *run,
                           int *seq, nas_err *err)
{
    sqlite3_stmt *s = runs_stmt(d, S_CAND_STATE, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        *status = runs_status_from_name((const char *)sqlite3_column_text(s, 0));
        *attempts = sqlite3_column_int(s, 1);
        *run = sqlite3_column_int64(s, 2);
        *seq = sqlite3_column_int(s, 3);
    } else if (rc == SQLITE_DONE) {
        st = nas_errf(err, NAS_EINVAL, "%s: no candidate %lld", d->path, (long long)id);
    } else {
        st = runs_db_fail(d, err, "reading a candidate");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_cand_start(runs_db *d, int64_t id, int *attempts, nas_err *err)
{
    nas_status st = runs_tx_begin(d, err);
    if (st)
        return st;
    int status = -1, att = 0, seq = 0;
    int64_t run = 0;
    if ((st = runs_cand_state(d, id, &status, &att, &run, &seq, err)))
        goto cleanup;
    if (status != RUNS_QUEUED) {
        st = nas_errf(err, NAS_EINVAL, "candidate %lld (run %lld, #%d) is %s, not queued",
                      (long long)id, (long long)run, seq, runs_status_name((runs_status)status));
        goto cleanup;
    }
    sqlite3_stmt *s = runs_stmt(d, S_CAND_START, err);
    if (!s) {
        st = runs_err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, id);
    if ((st = runs_step_done(d, s, err, "starting a candidate")))
        goto cleanup;
    if ((st = runs_tx_commit(d, err)))
        goto cleanup;
    if (attempts)
        *attempts = att + 1;
cleanup:
    if (st)
        runs_tx_rollback(d);
    return st;
}

void runs_result_init(runs_result *r)
{
    memset(r, 0, sizeof *r);
    r->status = RUNS_DONE;
    r->accuracy = r->params = r->macs = r->wall_s = r->reward = NAN;
    r->latency_ms = r->energy_mj = r->joules = runs_fig_none();
    r->pred_latency_ms = r->pred_energy_mj = runs_fig_none();
}

nas_status runs_cand_finish(runs_db *d, int64_t id, const runs_result *res,
                            const char *strategy_state, nas_err *err)
{
    if (res->status != RUNS_DONE && res->status != RUNS_FAILED && res->status != RUNS_DIVERGED &&
        res->status != RUNS_SCREENED)
        return nas_errf(err, NAS_EINVAL, "candidate %lld: '%s' is not a finished status",
                        (long long)id, runs_status_name(res->status));
    nas_status st = NAS_OK;
    static const char *const names[] = {"latency_ms", "energy_mj", "joules", "pred_latency_ms",
                                        "pred_energy_mj"};
    const runs_fig *figs[] = {&res->latency_ms, &res->energy_mj, &res->joules,
                              &res->pred_latency_ms, &res->pred_energy_mj};
    for (int i = 0; i < 5 && !st; i++)
        st = runs_check_fig(figs[i], names[i], i >= 3, err);
    for (int i = 0; i < res->n_meas && !st; i++) {
        const runs_measurement *m = &res->meas[i];
        runs_fig f = runs_fig_make(m->value, m->source, m->quality);
        if (!m->kind || !*m->kind)
            st = nas_errf(err, NAS_EINVAL, "measurement %d: no kind", i);
        else if (!isfinite(m->value))
            st = nas_errf(err, NAS_EINVAL, "measurement %d (%s): value is not finite", i, m->kind);
        else
            st = runs_check_fig(&f, m->kind, 0, err);
    }
    if (st)
        return st;
    if ((st = runs_tx_begin(d, err)))
        return st;
    int status = -1, att = 0, seq = 0;
    int64_t run = 0;
    if ((st = runs_cand_state(d, id, &status, &att, &run, &seq, err)))
        goto cleanup;
    if (status != RUNS_QUEUED && status != RUNS_RUNNING) {
        st = nas_errf(err, NAS_EINVAL,
                      "candidate %lld (run %lld, #%d) is %s already: a finished evaluation is "
                      "never recorded twice", (long long)id, (long long)run, seq,
                      runs_status_name((runs_status)status));
        goto cleanup;
    }
    sqlite3_stmt *s = runs_stmt(d, S_CAND_FINISH, err);
    if (!s) {
        st = runs_err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, id);
    runs_bind_text(s, 2, runs_status_name(res->status));
    runs_bind_real(s, 3, res->accuracy);
    runs_bind_fig(s, 4, &res->latency_ms);
    runs_bind_fig(s, 7, &res->energy_mj);
    runs_bind_fig(s, 10, &res->joules);
    runs_bind_fig(s, 13, &res->pred_latency_ms);
    runs_bind_fig(s, 16, &res->pred_energy_mj);
    runs_bind_real(s, 19, res->params);
    runs_bind_real(s, 20, res->macs);
    runs_bind_real(s, 21, res->wall_s);
    runs_bind_real(s, 22, res->reward);
    sqlite3_bind_double(s, 23, runs_wall_clock());
    runs_bind_text(s, 24, res->error && *res->error ? res->error : NULL);
    if ((st = runs_step_done(d, s, err, "recording a result")))
        goto cleanup;
    /* Measurements of an earlier, interrupted attempt never reached a commit,
     * so there are none; the delete keeps the promise even if a caller
     * recorded some outside this function. */
    if (!(s = runs_stmt(d, S_MEAS_DELETE, err))) {
        st = runs_err_code(err);
        goto cleanup;
    }
    sqlite3_bind_int64(s, 1, id);
    if ((st = runs_step_done(d, s, err, "clearing measurements")))
        goto cleanup;
    for (int i = 0; i < res->n_meas; i++) {
        const runs_measurement *m = &res->meas[i];
        if (!(s = runs_stmt(d, S_MEAS_INSERT, err))) {
            st = runs_err_code(err);
            goto cleanup;
        }
        sqlite3_bind_int64(s, 1, id);
        runs_bind_text(s, 2, m->kind);
        sqlite3_bind_int(s, 3, m->rep);
        sqlite3_bind_double(s, 4, m->value);
        runs_bind_text(s, 5, m->source);
        runs_bind_text(s, 6, m->quality);
        if ((st = runs_step_done(d, s, err, "recording a measurement")))
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


static nas_status read_cand(sqlite3_stmt *s, runs_cand *c, nas_err *err)
{
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(s, 0);
    c->run = sqlite3_column_int64(s, 1);
    c->seq = sqlite3_column_int(s, 2);
    runs_col_str(s, 3, c->genome, sizeof c->genome);
    const char *spec = (const char *)sqlite3_column_text(s, 4);
    if (spec && !(c->spec_json = nas_strdup(spec)))
        return nas_errf(err, NAS_ENOMEM, "out of memory reading candidate %lld", (long long)c->id);
    int status = runs_status_from_name((const char *)sqlite3_column_text(s, 5));
    c->status = status < 0 ? RUNS_FAILED : (runs_status)status;
    c->attempts = sqlite3_column_int(s, 6);
    c->accuracy = runs_col_real(s, 7);
    c->pred_latency_ms = runs_col_fig(s, 8);
    c->pred_energy_mj = runs_col_fig(s, 11);
    c->latency_ms = runs_col_fig(s, 14);
    c->energy_mj = runs_col_fig(s, 17);
    c->joules = runs_col_fig(s, 20);
    c->params = runs_col_real(s, 23);
    c->macs = runs_col_real(s, 24);
    c->wall_s = runs_col_real(s, 25);
    c->reward = runs_col_real(s, 26);
    c->finished = sqlite3_column_double(s, 27);
    runs_col_str(s, 28, c->error, sizeof c->error);
    c->rung = sqlite3_column_int(s, 29);
    c->parent = sqlite3_column_type(s, 30) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 30);
    return NAS_OK;
}

nas_status runs_cand_get(runs_db *d, int64_t id, runs_cand *out, nas_err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = runs_stmt(d, S_CAND_GET, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    nas_status st;
    if (rc == SQLITE_ROW)
        st = read_cand(s, out, err);
    else if (rc == SQLITE_DONE)
        st = nas_errf(err, NAS_EINVAL, "%s: no candidate %lld", d->path, (long long)id);
    else
        st = runs_db_fail(d, err, "reading a candidate");
    sqlite3_reset(s);
    return st;
}

nas_status runs_cand_list(runs_db *d, int64_t run, unsigned mask, runs_cand **out, int *n,
                          nas_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = runs_stmt(d, S_CAND_LIST, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    runs_cand *list = NULL;
    int cap = 0, count = 0, rc;
    nas_status st = NAS_OK;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int status = runs_status_from_name((const char *)sqlite3_column_text(s, 5));
        if (status < 0 || !(mask & RUNS_MASK(status)))
            continue;
        if (count == cap) {
            int ncap = cap ? cap * 2 : 64;
            runs_cand *bigger = nas_realloc(list, (size_t)ncap * sizeof *list);
            if (!bigger) {
                st = nas_errf(err, NAS_ENOMEM, "out of memory listing candidates");
                goto cleanup;
            }
            list = bigger;
            cap = ncap;
        }
        if ((st = read_cand(s, &list[count++], err)))
            goto cleanup;
    }
    if (rc != SQLITE_DONE)
        st = runs_db_fail(d, err, "listing candidates");
cleanup:
    sqlite3_reset(s);
    if (st) {
        runs_cands_free(list, count);
        return st;
    }
    *out = list;
    *n = count;
    return NAS_OK;
}

nas_status runs_cand_next_queued(runs_db *d, int64_t run, runs_cand *out, int *found, nas_err *err)
{
    *found = 0;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = runs_stmt(d, S_CAND_NEXT_QUEUED, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc = sqlite3_step(s);
    nas_status st = NAS_OK;
    if (rc == SQLITE_ROW) {
        st = read_cand(s, out, err);
        *found = !st;
    } else if (rc != SQLITE_DONE) {
        st = runs_db_fail(d, err, "reading the queue");
    }
    sqlite3_reset(s);
    return st;
}

nas_status runs_cand_counts(runs_db *d, int64_t run, int counts[RUNS_NSTATUS], nas_err *err)
{
    memset(counts, 0, RUNS_NSTATUS * sizeof counts[0]);
    sqlite3_stmt *s = runs_stmt(d, S_CAND_COUNTS, err);
    if (!s)
        return runs_err_code(err);
    sqlite3_bind_int64(s, 1, run);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int status = runs_status_from_name((const char *)sqlite3_column_text(s, 0));
        if (status >= 0)
            counts[status] = sqlite3_column_int(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? NAS_OK : runs_db_fail(d, err, "counting candidates");
}

void runs_cand_free(runs_cand *c)
{
    if (c) {
        nas_free(c->spec_json);
        c->spec_json = NULL;
    }
}

void runs_cands_free(runs_cand *c, int n)
{
    for (int i = 0; c && i < n; i++)
        runs_cand_free(&c[i]);
    nas_free(c);
}
