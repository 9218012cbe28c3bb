/* history.c — a resumed search's history, read back from the run
 * store's candidate rows, where every finished evaluation already lives.
 *
 * The state saved with each result holds no history (search_loop_save_state:
 * with it, every result would write all the ones before it again, megabytes
 * per result in a long search), so a resume hands the loop its past results
 * from the store: this is the inverse of what cmd_search.c's store_result
 * writes. The loop's decisions rest on what the rows keep exactly (genome,
 * status, accuracy, measured and predicted figures, whether a candidate was
 * measured after training); the loop scores them again itself. Figures only
 * reported (seconds, joules, meter) come back as recorded.
 */
#include "app/app.h"

#include <math.h>
#include <string.h>

static double known_or_zero(const runs_fig *f)
{
    return runs_fig_known(f) ? f->value : 0;
}

/* Measured again after its result (runs_cand_add_measurement): it left later
 * figures or what measuring cost in the measurements table. */
static nas_status measured_later(runs_db *db, const runs_cand *c, int *later, double *measure_j, nas_err *err)
{
    static const char *const kinds[] = {"measure_joules", "energy_mj", "latency_ms"};
    double v[16];
    *later = 0;
    *measure_j = 0;
    for (int k = 0; k < 3; k++) {
        int n = 0;
        nas_status st = runs_measurements(db, c->id, kinds[k], v, 16, &n, err);
        if (st)
            return st;
        *later |= n > 0;
        for (int i = 0; k == 0 && i < n && i < 16; i++)
            *measure_j += v[i];
    }
    return NAS_OK;
}

static nas_status result_of(runs_db *db, const runs_cand *c, search_result *r, nas_err *err)
{
    memset(r, 0, sizeof *r);
    r->id = c->seq;
    r->rung = c->rung;
    r->parent = c->rung > 0 ? c->parent : -1;
    nas_status st = space_genome_from_string(c->genome, &r->genome, err);
    if (st)
        return nas_errctx(err, "candidate %d of the run store", c->seq);
    r->pred.latency_ms = known_or_zero(&c->pred_latency_ms);
    r->pred.energy_mj = known_or_zero(&c->pred_energy_mj);
    search_eval *e = &r->eval;
    r->screened = c->status == RUNS_SCREENED;
    if (r->screened) {
        r->over_budget = !strcmp(c->error, APP_OVER_BUDGET_MSG);
        return NAS_OK;
    }
    e->status = c->status == RUNS_DONE ? SEARCH_EVAL_OK : c->status == RUNS_DIVERGED ? SEARCH_EVAL_DIVERGED
                                                                                      : SEARCH_EVAL_FAILED;
    e->accuracy = c->accuracy;
    e->energy_mj = known_or_zero(&c->energy_mj);
    e->latency_ms = known_or_zero(&c->latency_ms);
    double measure_j = 0;
    if (c->status == RUNS_DONE && (st = measured_later(db, c, &r->measured_later, &measure_j, err)))
        return st;
    /* the store adds what measuring cost to the candidate's joules; the loop keeps the evaluation's */
    e->joules = runs_fig_known(&c->joules) ? c->joules.value - measure_j : 0;
    r->measure_joules = measure_j;
    e->joules_estimated = runs_fig_known(&c->joules) && !strcmp(c->joules.quality, "estimated");
    e->joules_sampled = runs_fig_known(&c->joules) && !strcmp(c->joules.quality, "sampled");
    if (runs_fig_known(&c->joules)) {   /* the meter's name it was written from: it fits */
        size_t k = strnlen(c->joules.source, sizeof e->meter - 1);
        memcpy(e->meter, c->joules.source, k);
        e->meter[k] = 0;
    }
    e->seconds = isfinite(c->wall_s) ? c->wall_s : 0;
    e->stopped_early = !strcmp(c->error, APP_STOPPED_EARLY_MSG);
    return NAS_OK;
}

nas_status app_search_history(runs_db *db, int64_t run, search_result **out, int *n, nas_err *err)
{
    *out = NULL;
    *n = 0;
    runs_cand *c = NULL;
    int nc = 0;
    nas_status st = runs_cand_list(db, run, RUNS_FINISHED_MASK, &c, &nc, err);
    if (st)
        return st;
    search_result *r = nc > 0 ? nas_malloc((size_t)nc * sizeof *r) : NULL;
    if (nc > 0 && !r)
        st = nas_errf(err, NAS_ENOMEM, "reading the run's results: out of memory");
    for (int i = 0; i < nc && !st; i++)
        st = result_of(db, &c[i], &r[i], err);
    runs_cands_free(c, nc);
    if (st) {
        nas_free(r);
        return st;
    }
    *out = r;
    *n = nc;
    return NAS_OK;
}

nas_status app_search_restore(runs_db *db, int64_t run, const search_space *sp, const char *state, search_loop **out,
                              nas_err *err)
{
    search_result *past = NULL;
    int n = 0;
    nas_status st = app_search_history(db, run, &past, &n, err);
    if (!st)
        st = search_loop_restore(sp, state, past, n, out, err);
    nas_free(past);
    return st;
}
