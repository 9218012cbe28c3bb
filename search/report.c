/* report.c — what a search says while it runs and when it ends: the progress
 * line for a terminal and the final report as JSON. Energy figures carry
 * their meter and whether they were estimated, so a modelled figure is never
 * shown as a measured one. */
#include "search/internal.h"
#include "base/progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void search_progress_line(const search_progress *p, char *buf, size_t n)
{
    char best[48], joules[96], el[48], eta[48], extra[64] = "";
    if (p->screened || p->cached)
        snprintf(extra, sizeof extra, " (+%ld screened, %ld seen)", p->screened, p->cached);
    if (isfinite(p->best_reward))
        snprintf(best, sizeof best, "%.4f #%ld", p->best_reward, p->best_id);
    else
        snprintf(best, sizeof best, "none yet");
    const char *meter = p->meter && *p->meter ? p->meter : "no meter";
    if (p->joules_budget > 0)
        snprintf(joules, sizeof joules, "%.1f/%.0f J %s%s", p->joules, p->joules_budget, meter,
                 p->estimated ? " (estimated)" : "");
    else
        snprintf(joules, sizeof joules, "%.1f J %s%s", p->joules, meter, p->estimated ? " (estimated)" : "");
    nas_progress_duration(p->seconds, el, sizeof el);
    nas_progress_duration(p->eta_seconds, eta, sizeof eta);
    snprintf(buf, n, "evals %ld%s | best %s | front %d, hv %.4g | %s | %s, ETA %s", p->evals, extra, best,
             p->front_size, p->hypervolume, joules, el, eta);
}

search_quality search_eval_q(const search_eval *e)
{
    return e->joules_estimated ? SEARCH_Q_ESTIMATED : e->joules_sampled ? SEARCH_Q_SAMPLED : SEARCH_Q_MEASURED;
}

const char *search_quality_name(search_quality q)
{
    static const char *const name[] = {"measured", "estimated", "sampled"};
    return q >= SEARCH_Q_MEASURED && q <= SEARCH_Q_SAMPLED ? name[q] : "unknown";
}

const char *search_eval_quality(const search_eval *e) { return search_quality_name(search_eval_q(e)); }

static json_t *result_summary(const search_result *r)
{
    const search_eval *e = &r->eval;
    int benchmarked = e->energy_mj > 0;
    /* where the energy came from, and what it is: a model's joules are estimated */
    const char *quality = !benchmarked ? "predicted" : search_eval_quality(e);
    return json_pack("{s:I,s:o,s:s,s:o,s:o,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:b,s:o,s:s,s:b,s:b,s:i,s:I}", "id", (json_int_t)r->id,
                     "genome", search_json_genome(&r->genome), "status",
                     e->status == SEARCH_EVAL_OK ? "ok" : e->status == SEARCH_EVAL_DIVERGED ? "diverged" : "failed",
                     "accuracy", search_json_num(e->accuracy), "energy_mj", search_json_num(r->energy_mj),
                     "energy_from", benchmarked ? "benchmarked" : "predicted", "energy_quality", quality, "latency_ms", search_json_num(r->latency_ms),
                     "pred_energy_mj", search_json_num(r->pred.energy_mj > 0 ? r->pred.energy_mj : NAN),
                     "pred_latency_ms", search_json_num(r->pred.latency_ms > 0 ? r->pred.latency_ms : NAN),
                     "reward", search_json_num(r->reward), "joules", search_json_num(e->joules), "feasible",
                     r->feasible, "seconds", search_json_num(e->seconds), "meter", e->meter, "joules_estimated",
                     e->joules_estimated, "stopped_early", e->stopped_early, "rung", r->rung, "parent",
                     (json_int_t)(r->rung > 0 ? r->parent : -1));
}

char *search_loop_report_json(const search_loop *l, search_stop why, int top)
{
    search_progress p;
    search_loop_progress(l, &p);
    const search_budget *b = search_loop_budget(l);
    json_t *root = json_object();
    if (!root)
        return NULL;
    json_object_set_new(root, "strategy", json_string(search_kind_name(search_strategy_kind(search_loop_strategy(l)))));
    json_object_set_new(root, "stopped", json_string(search_stop_name(why)));
    json_object_set_new(root, "proposals", json_integer(p.proposals));
    json_object_set_new(root, "evals", json_integer(p.evals));
    json_object_set_new(root, "screened", json_integer(p.screened));
    json_object_set_new(root, "seen_before", json_integer(p.cached));
    json_object_set_new(root, "over_budget", json_integer(p.over_budget));
    json_object_set_new(root, "seconds", search_json_num(p.seconds));
    json_object_set_new(root, "energy",
                        json_pack("{s:o,s:o,s:o,s:s,s:s,s:I,s:o}", "joules", search_json_num(b->joules),
                                  "joules_with_uncertainty", search_json_num(b->joules_hi), "budget_joules",
                                  search_json_num(b->lim.joules > 0 ? b->lim.joules : NAN), "meter", b->meter,
                                  "quality", search_budget_quality(b), "measurements",
                                  (json_int_t)b->n_meas, "calibration_joules", search_json_num(b->calib_joules)));
    json_object_set_new(root, "predictor_check",
                        json_pack("{s:i,s:o,s:o,s:o}", "n", p.n_checked, "energy_mape_pct",
                                  search_json_num(p.pred_mape_mj), "latency_mape_pct", search_json_num(p.pred_mape_ms),
                                  "energy_within_10pct", search_json_num(p.pred_within10_mj)));
    const search_result *best = search_loop_best(l);
    json_object_set_new(root, "best", best ? result_summary(best) : json_null());
    json_t *lb = json_array();
    if (top > 0 && lb) {
        int *idx = nas_malloc((size_t)top * sizeof *idx);
        int n = idx ? search_loop_leaderboard(l, idx, top) : 0;
        for (int i = 0; i < n; i++)
            json_array_append_new(lb, result_summary(search_loop_result(l, idx[i])));
        nas_free(idx);
    }
    json_object_set_new(root, "leaderboard", lb);
    const search_front *f = search_loop_front(l);
    json_t *pts = json_array();
    for (int i = 0; pts && i < f->n; i++)
        json_array_append_new(pts, json_pack("{s:I,s:f,s:f}", "id", (json_int_t)f->p[i].id, "accuracy",
                                             f->p[i].accuracy, "energy_mj", f->p[i].energy_mj));
    json_object_set_new(root, "pareto",
                        json_pack("{s:o,s:o,s:o}", "points", pts, "hypervolume", search_json_num(p.hypervolume),
                                  "ref_energy_mj", search_json_num(search_loop_hv_ref(l))));
    char *out = search_json_dump(root);
    json_decref(root);
    return out;
}
