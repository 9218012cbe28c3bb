/* loop.c — the search loop: ask the strategy, screen with the predictor, check
 * the budget, evaluate, score, tell, record. It knows the evaluator, the
 * predictor and the run store only as callbacks, so it runs as well on a
 * synthetic objective in a test as on real training in cli/cmd_search.c.
 *
 * Order of a proposal's life, and why:
 *   1. budget check first: a candidate that could cross a budget is never asked
 *      for, so the strategy's state never holds a proposal that will not run;
 *   2. predict and screen: a genome predicted far over a hard target is told
 *      back as screened and costs no joules;
 *   3. a genome evaluated before is not trained again (its result is reused and
 *      costs nothing); many such proposals in a row mean the strategy has
 *      converged or the target screens out all it proposes: the loop stops;
 *   4. evaluate (synchronously, or submitted to one of `slots` workers), then
 *      score with the objective, update the front and the best feasible, tell
 *      the strategy, and call on_result with the state complete, so that a save
 *      made there resumes exactly after this candidate.
 */
#include "search/internal.h"

#include <math.h>
#include <string.h>

#define LOOP_VERSION 1
#define OVER_BUDGET_TRIES 200   /* proposals in a row too dear for what is left: the budget is spent */

typedef struct {
    long id;
    space_genome g;
    search_prediction pred;
    double allow_j, est_s, t_start;   /* allow_j: joules reserved for it (inf: no joule budget) */
    double hint;                      /* its cost hint (0: none) */
} flight_t;

struct search_loop {
    search_space space;
    search_loop_opts opts;
    search_strategy *strat;
    search_budget budget;
    search_front front;
    int n_res, cap_res;
    search_result *res;
    int best;                  /* index into res, -1: none */
    long proposals, screened, cached, over_budget;
    int stall;
    int over_stall;            /* of those, over the joule budget in a row (not saved: a resumed
                                  search counts them afresh) */
    double max_energy;         /* for the hypervolume reference when none is set */
    int n_fl, cap_fl;
    flight_t *fl;
    /* measurements after training, and the predictor's error on them */
    long next_measure_at;      /* evaluations at which the best are measured next */
    int n_checked_mj, n_checked_ms, within10_mj;
    double ape_mj, ape_ms;     /* sums of absolute percentage errors */
    /* while search_run runs: its clock's origin and the seconds spent before it */
    double run_t0, run_base;
};

void search_loop_opts_default(search_loop_opts *o, search_kind kind, long budget_evals)
{
    memset(o, 0, sizeof *o);
    search_opts_default(&o->strategy, kind, budget_evals);
    search_objective_init(&o->objective, SEARCH_TARGET_NONE, 0, 0);
    o->limits.evals = budget_evals;
    o->limits.sigmas = 2.0;
    o->screen_factor = 1.5;
    o->reuse_seen = 1;
    o->stall_limit = 1000;
    o->measure_every = 10;
    o->measure_top = 3;
}

static nas_status loop_alloc(const search_space *space, const search_loop_opts *opts, search_loop **out,
                             nas_err *err)
{
    *out = NULL;
    if (opts->limits.joules < 0 || opts->limits.evals < 0 || opts->limits.seconds < 0 ||
        !isfinite(opts->limits.joules) || !isfinite(opts->limits.seconds))
        return nas_errf(err, NAS_EINVAL, "search: budgets must be finite and >= 0 (0: no limit)");
    if (opts->objective.target != SEARCH_TARGET_NONE && !(opts->objective.t > 0 && isfinite(opts->objective.t)))
        return nas_errf(err, NAS_EINVAL, "search: target %g must be > 0", opts->objective.t);
    if (opts->stall_limit < 1)
        return nas_errf(err, NAS_EINVAL, "search: stall_limit %d (>= 1 allowed)", opts->stall_limit);
    if (opts->measure_every < 0 || opts->measure_top < 0)
        return nas_errf(err, NAS_EINVAL, "search: measure_every %d / measure_top %d must be >= 0",
                        opts->measure_every, opts->measure_top);
    search_loop *l = nas_calloc(1, sizeof *l);
    if (!l)
        return nas_errf(err, NAS_ENOMEM, "search: out of memory");
    l->space = *space;
    l->opts = *opts;
    l->best = -1;
    l->next_measure_at = opts->measure_every;
    search_budget_init(&l->budget, &opts->limits);
    search_front_init(&l->front);
    *out = l;
    return NAS_OK;
}

nas_status search_loop_new(const search_space *space, const search_loop_opts *opts, search_loop **out,
                           nas_err *err)
{
    search_loop *l;
    nas_status st = loop_alloc(space, opts, &l, err);
    if (st)
        return st;
    if ((st = search_strategy_new(space, &opts->strategy, &l->strat, err))) {
        search_loop_free(l);
        return st;
    }
    *out = l;
    return NAS_OK;
}

void search_loop_free(search_loop *l)
{
    if (!l)
        return;
    search_strategy_free(l->strat);
    search_front_free(&l->front);
    nas_free(l->res);
    nas_free(l->fl);
    nas_free(l);
}

const search_budget *search_loop_budget(const search_loop *l) { return &l->budget; }
const search_front *search_loop_front(const search_loop *l) { return &l->front; }
const search_strategy *search_loop_strategy(const search_loop *l) { return l->strat; }
int search_loop_n_results(const search_loop *l) { return l->n_res; }
const search_result *search_loop_result(const search_loop *l, int i)
{
    return i >= 0 && i < l->n_res ? &l->res[i] : NULL;
}
const search_result *search_loop_best(const search_loop *l) { return l->best >= 0 ? &l->res[l->best] : NULL; }

/* Indices of the k best evaluated results by reward (ties: lower id first). */
static int top_k(const search_loop *l, int *idx, int k, int feasible_only)
{
    /* insertion into a short sorted list: k is a leaderboard's length */
    int n = 0;
    for (int i = 0; i < l->n_res; i++) {
        const search_result *r = &l->res[i];
        if (r->screened || r->cached || r->eval.status != SEARCH_EVAL_OK || (feasible_only && !r->feasible))
            continue;
        int j = n < k ? n++ : k;
        while (j > 0) {
            const search_result *q = &l->res[idx[j - 1]];
            if (q->reward > r->reward || (q->reward == r->reward && q->id < r->id))
                break;
            if (j < k)
                idx[j] = idx[j - 1];
            j--;
        }
        if (j < k)
            idx[j] = i;
    }
    return n;
}

int search_loop_leaderboard(const search_loop *l, int *idx, int k)
{
    return top_k(l, idx, k, 1);
}

/* The hypervolume's reference energy: the objective's, else twice an energy
 * target, else 1.1 x the dearest energy seen (run-relative: not comparable
 * across runs; set ref_energy_mj to compare). */
double search_loop_hv_ref(const search_loop *l)
{
    const search_objective *o = &l->opts.objective;
    if (o->ref_energy_mj > 0)
        return o->ref_energy_mj;
    if (o->target == SEARCH_TARGET_MJ && o->t > 0)
        return 2 * o->t;
    return 1.1 * l->max_energy;
}

void search_loop_charge_lost(search_loop *l, double total_lost, double rel_unc, const char *meter, int estimated)
{
    search_budget_charge_lost(&l->budget, total_lost, rel_unc, meter, estimated);
}

void search_loop_progress(const search_loop *l, search_progress *p)
{
    memset(p, 0, sizeof *p);
    p->proposals = l->proposals;
    p->evals = l->budget.evals;
    p->screened = l->screened;
    p->cached = l->cached;
    p->over_budget = l->over_budget;
    p->best_reward = l->best >= 0 ? l->res[l->best].reward : NAN;
    p->best_id = l->best >= 0 ? l->res[l->best].id : -1;
    p->front_size = l->front.n;
    p->hypervolume = search_front_hypervolume(&l->front, search_loop_hv_ref(l));
    p->joules = l->budget.joules;
    p->joules_budget = l->budget.lim.joules;
    p->seconds = l->budget.seconds;
    double f = search_budget_fraction(&l->budget);
    p->eta_seconds = f > 0 ? l->budget.seconds * (1 - f) / f : NAN;
    p->meter = l->budget.meter;
    p->estimated = l->budget.estimated;
    p->n_checked = l->n_checked_mj > l->n_checked_ms ? l->n_checked_mj : l->n_checked_ms;
    p->pred_mape_mj = l->n_checked_mj ? 100 * l->ape_mj / l->n_checked_mj : NAN;
    p->pred_mape_ms = l->n_checked_ms ? 100 * l->ape_ms / l->n_checked_ms : NAN;
    p->pred_within10_mj = l->n_checked_mj ? (double)l->within10_mj / l->n_checked_mj : NAN;
}

nas_status search_loop_set_limits(search_loop *l, const search_limits *lim, nas_err *err)
{
    if (lim->joules < 0 || lim->evals < 0 || lim->seconds < 0 || !isfinite(lim->joules) || !isfinite(lim->seconds))
        return nas_errf(err, NAS_EINVAL, "search: budgets must be finite and >= 0 (0: no limit)");
    l->opts.limits = *lim;
    double sigmas = l->budget.lim.sigmas;
    l->budget.lim = *lim;
    if (!(l->budget.lim.sigmas >= 0))
        l->budget.lim.sigmas = sigmas;
    return NAS_OK;
}

static nas_status push_result(search_loop *l, const search_result *r, nas_err *err)
{
    if (l->n_res == l->cap_res) {
        int cap = l->cap_res ? l->cap_res * 2 : 64;
        search_result *nr = nas_realloc(l->res, (size_t)cap * sizeof *nr);
        if (!nr)
            return nas_errf(err, NAS_ENOMEM, "search: out of memory for results");
        l->res = nr;
        l->cap_res = cap;
    }
    l->res[l->n_res++] = *r;
    return NAS_OK;
}

static int default_screen(const search_loop *l, const search_prediction *p)
{
    const search_objective *o = &l->opts.objective;
    if (!o->hard || o->target == SEARCH_TARGET_NONE || !(o->t > 0))
        return 0;
    double x = o->target == SEARCH_TARGET_MJ ? p->energy_mj : p->latency_ms;
    return x > 0 && x > l->opts.screen_factor * o->t;
}

static const search_result *find_seen(const search_loop *l, const space_genome *g)
{
    for (int i = 0; i < l->n_res; i++)
        if (!l->res[i].screened && !l->res[i].cached && search_genome_equal(&l->res[i].genome, g))
            return &l->res[i];
    return NULL;
}

static double clock_now(const search_callbacks *cb)
{
    return cb->now ? cb->now(cb->ctx) : nas_now();
}

/* Elapsed seconds, kept current so that a state saved in on_result holds them. */
static void tick(search_loop *l, const search_callbacks *cb)
{
    l->budget.seconds = l->run_base + clock_now(cb) - l->run_t0;
}

/* Called for every candidate that ends, evaluated or not: record, tell, report. */
static nas_status finish_candidate(search_loop *l, search_result *r, const search_callbacks *cb, nas_err *err)
{
    tick(l, cb);
    search_tell_kind kind = r->screened ? SEARCH_TELL_SCREENED
                          : r->eval.status == SEARCH_EVAL_OK ? SEARCH_TELL_OK : SEARCH_TELL_FAILED;
    nas_status st = search_tell(l->strat, r->id, &r->genome, r->reward, kind, err);
    if (st)
        return st;
    if ((st = push_result(l, r, err)))
        return st;
    if (r->is_best)
        l->best = l->n_res - 1;
    if (cb->on_result && (st = cb->on_result(cb->ctx, &l->res[l->n_res - 1], l, err)))
        return st;
    if (cb->progress) {
        search_progress p;
        search_loop_progress(l, &p);
        cb->progress(cb->ctx, &p);
    }
    return NAS_OK;
}

/* Scores an evaluated candidate and updates budget, front and best. */
static nas_status finish_eval(search_loop *l, const flight_t *f, search_eval *ev, double seconds,
                              const search_callbacks *cb, nas_err *err)
{
    search_result r;
    memset(&r, 0, sizeof r);
    r.id = f->id;
    r.genome = f->g;
    r.pred = f->pred;
    if (!(ev->seconds > 0))
        ev->seconds = seconds;
    r.eval = *ev;
    search_budget_finish(&l->budget, f->allow_j, f->est_s, ev->joules, ev->joules_rel_unc, ev->seconds, ev->meter,
                         ev->joules_estimated, f->hint);
    l->over_stall = 0;   /* its reservation is free again, and the estimates have learnt */
    /* measured figures when there are, predicted otherwise */
    r.energy_mj = ev->energy_mj > 0 ? ev->energy_mj : f->pred.energy_mj > 0 ? f->pred.energy_mj : NAN;
    r.latency_ms = ev->latency_ms > 0 ? ev->latency_ms : f->pred.latency_ms > 0 ? f->pred.latency_ms : NAN;
    const search_objective *o = &l->opts.objective;
    if (ev->status == SEARCH_EVAL_OK && isfinite(ev->accuracy)) {
        r.reward = search_reward(o, ev->accuracy, r.energy_mj, r.latency_ms);
        r.feasible = search_feasible(o, r.energy_mj, r.latency_ms);
        if (isfinite(r.energy_mj)) {
            if (r.energy_mj > l->max_energy)
                l->max_energy = r.energy_mj;
            int added = search_front_add(&l->front, r.id, ev->accuracy, r.energy_mj);
            if (added < 0)
                return nas_errf(err, NAS_ENOMEM, "search: out of memory for the Pareto front");
            r.on_front = added;
        }
        r.is_best = r.feasible && (l->best < 0 || r.reward > l->res[l->best].reward);
    } else {
        r.eval.status = ev->status == SEARCH_EVAL_OK ? SEARCH_EVAL_FAILED : ev->status;
        r.reward = 0;
        r.feasible = 0;
    }
    return finish_candidate(l, &r, cb, err);
}

static int flight_push(search_loop *l, const flight_t *f)
{
    if (l->n_fl == l->cap_fl) {
        int cap = l->cap_fl ? l->cap_fl * 2 : 8;
        flight_t *nf = nas_realloc(l->fl, (size_t)cap * sizeof *nf);
        if (!nf)
            return -1;
        l->fl = nf;
        l->cap_fl = cap;
    }
    l->fl[l->n_fl++] = *f;
    return 0;
}

/* Starts an admitted candidate: synchronously evaluates it, or submits it. */
static nas_status launch(search_loop *l, flight_t *f, const search_callbacks *cb, nas_err *err)
{
    nas_status st;
    if (cb->on_start && (st = cb->on_start(cb->ctx, f->id, &f->g, &f->pred, err)))
        return st;
    f->t_start = clock_now(cb);
    if (!cb->submit) {
        search_eval ev;
        memset(&ev, 0, sizeof ev);
        if ((st = cb->evaluate(cb->ctx, f->id, &f->g, f->allow_j, &ev, err)))
            return st;
        return finish_eval(l, f, &ev, clock_now(cb) - f->t_start, cb, err);
    }
    if (flight_push(l, f))
        return nas_errf(err, NAS_ENOMEM, "search: out of memory");
    if ((st = cb->submit(cb->ctx, f->id, &f->g, f->allow_j, err))) {
        l->n_fl--;
        return st;
    }
    return NAS_OK;
}

static nas_status collect_one(search_loop *l, const search_callbacks *cb, nas_err *err)
{
    long id = -1;
    search_eval ev;
    memset(&ev, 0, sizeof ev);
    nas_status st = cb->collect(cb->ctx, &id, &ev, err);
    if (st)
        return st;
    int i = 0;
    while (i < l->n_fl && l->fl[i].id != id)
        i++;
    if (i == l->n_fl)
        return nas_errf(err, NAS_EINTERNAL, "search: collect returned candidate %ld, which is not in flight", id);
    flight_t f = l->fl[i];
    memmove(l->fl + i, l->fl + i + 1, (size_t)(l->n_fl - i - 1) * sizeof *l->fl);
    l->n_fl--;
    return finish_eval(l, &f, &ev, clock_now(cb) - f.t_start, cb, err);
}

/* The estimate a candidate is admitted on before it is proposed: with cost
 * hints, the cheapest evaluation so far (a dearer proposal is checked again on
 * its own hint); without, the estimate for any candidate. */
static double estimate_before_asking(const search_loop *l, const search_callbacks *cb)
{
    const search_budget *b = &l->budget;
    double cheapest = cb->cost_hint ? search_budget_cheapest_joules(b) : 0;
    if (cheapest > 0)
        return cheapest;
    return cb->cost_hint && b->n_hint >= 3 ? b->j_min : search_budget_next_joules(b);
}

/* A proposal too dear for what is left: skipped when the cheapest candidate
 * of the space still fits (the strategy may propose one), else the end. */
static int cheapest_still_fits(const search_loop *l, int free_slots)
{
    double cheapest = search_budget_cheapest_joules(&l->budget);
    return cheapest > 0 && search_budget_check(&l->budget, free_slots, cheapest) == SEARCH_STOP_NONE;
}

/* Proposes one candidate and sees it through screening, reuse and its own
 * cost estimate; returns with *launched set when it went to evaluation, and
 * *stop set when it would have crossed the joule budget. */
static nas_status propose(search_loop *l, const search_callbacks *cb, int free_slots, int *launched,
                          search_stop *stop, nas_err *err)
{
    *launched = 0;
    flight_t f;
    memset(&f, 0, sizeof f);
    nas_status st = search_ask(l->strat, &f.g, &f.id, err);
    if (st)
        return st;
    l->proposals++;
    if (cb->predict && (st = cb->predict(cb->ctx, &f.g, &f.pred, err)))
        return nas_errctx(err, "predicting candidate %ld", f.id);
    int reject = cb->screen ? cb->screen(cb->ctx, &f.g, &f.pred) : default_screen(l, &f.pred);
    const search_result *seen = !reject && l->opts.reuse_seen ? find_seen(l, &f.g) : NULL;
    double est = 0;
    int over = 0;
    if (!reject && !seen) {
        f.hint = cb->cost_hint ? cb->cost_hint(cb->ctx, &f.g) : 0;
        if (!(f.hint > 0) || !isfinite(f.hint))
            f.hint = 0;
        est = cb->cost_hint ? search_budget_estimate_joules(&l->budget, f.hint) : search_budget_next_joules(&l->budget);
        over = l->budget.lim.joules > 0 && search_budget_check(&l->budget, free_slots, est) == SEARCH_STOP_JOULES;
    }
    if (reject || over) {
        search_result r;
        memset(&r, 0, sizeof r);
        r.id = f.id;
        r.genome = f.g;
        r.pred = f.pred;
        r.screened = 1;
        r.over_budget = over;
        r.eval.joules = over ? est : 0;   /* what it would have cost; nothing was spent */
        r.energy_mj = f.pred.energy_mj > 0 ? f.pred.energy_mj : NAN;
        r.latency_ms = f.pred.latency_ms > 0 ? f.pred.latency_ms : NAN;
        if (over) {
            l->over_budget++;
            /* what is left may still fit the cheapest, but after this many dear
             * proposals in a row it is the budget, not the strategy, that ends it */
            if (cheapest_still_fits(l, free_slots) && ++l->over_stall < OVER_BUDGET_TRIES)
                l->stall++;
            else
                *stop = SEARCH_STOP_JOULES;
        } else {
            l->screened++;
            l->stall++;
            l->over_stall = 0;
        }
        return finish_candidate(l, &r, cb, err);
    }
    if (seen) {
        search_result r = *seen;
        r.id = f.id;
        r.pred = f.pred;
        r.cached = 1;
        r.on_front = r.is_best = 0;
        r.eval.joules = 0;
        l->cached++;
        l->stall++;
        l->over_stall = 0;
        return finish_candidate(l, &r, cb, err);
    }
    l->stall = l->over_stall = 0;
    f.allow_j = search_budget_allowance(&l->budget, free_slots, est);
    f.est_s = search_budget_next_seconds(&l->budget);
    search_budget_start(&l->budget, f.allow_j, f.est_s);
    *launched = 1;
    return launch(l, &f, cb, err);
}

static int eligible_for_front(const search_result *r)
{
    return !r->screened && !r->cached && r->eval.status == SEARCH_EVAL_OK && isfinite(r->energy_mj);
}

/* After a figure changed: the front and the best, rebuilt from the results in
 * their order (the same order gives the same front). */
static nas_status rescore(search_loop *l, nas_err *err)
{
    l->front.n = 0;
    l->best = -1;
    for (int i = 0; i < l->n_res; i++) {
        const search_result *r = &l->res[i];
        if (eligible_for_front(r) && search_front_add(&l->front, r->id, r->eval.accuracy, r->energy_mj) < 0)
            return nas_errf(err, NAS_ENOMEM, "search: out of memory for the Pareto front");
        if (!r->screened && !r->cached && r->eval.status == SEARCH_EVAL_OK && r->feasible &&
            (l->best < 0 || r->reward > l->res[l->best].reward))
            l->best = i;
    }
    return NAS_OK;
}

/* Measures the measure_top best candidates that have no measured figures yet,
 * while the budget allows; records the predictor's error on each. */
static nas_status measure_best(search_loop *l, const search_callbacks *cb, int free_slots, nas_err *err)
{
    int k = l->opts.measure_top, idx[64];
    if (!cb->measure || k < 1)
        return NAS_OK;
    if (k > 64)
        k = 64;
    int n = top_k(l, idx, k, 0);
    for (int j = 0; j < n; j++) {
        search_result *r = &l->res[idx[j]];
        if (r->measured_later || r->eval.energy_mj > 0)
            continue;
        if (search_budget_check_measure(&l->budget, free_slots))
            break;
        search_eval m;
        memset(&m, 0, sizeof m);
        double t = clock_now(cb);
        double allowance = search_budget_allowance(&l->budget, free_slots, l->budget.m_max_j);
        nas_status st = cb->measure(cb->ctx, r->id, &r->genome, allowance, &m, err);
        if (st)
            return nas_errctx(err, "measuring candidate %ld", r->id);
        search_budget_measured(&l->budget, m.joules, m.joules_rel_unc, m.seconds > 0 ? m.seconds : clock_now(cb) - t,
                               m.meter, m.joules_estimated);
        tick(l, cb);
        r->measured_later = 1;
        if (m.energy_mj > 0) {
            if (r->pred.energy_mj > 0) {
                double ape = fabs(r->pred.energy_mj - m.energy_mj) / m.energy_mj;
                l->ape_mj += ape;
                l->within10_mj += ape <= 0.10;
                l->n_checked_mj++;
            }
            r->eval.energy_mj = r->energy_mj = m.energy_mj;
            if (m.energy_mj > l->max_energy)
                l->max_energy = m.energy_mj;
        }
        if (m.latency_ms > 0) {
            if (r->pred.latency_ms > 0) {
                l->ape_ms += fabs(r->pred.latency_ms - m.latency_ms) / m.latency_ms;
                l->n_checked_ms++;
            }
            r->eval.latency_ms = r->latency_ms = m.latency_ms;
        }
        const search_objective *o = &l->opts.objective;
        r->reward = search_reward(o, r->eval.accuracy, r->energy_mj, r->latency_ms);
        r->feasible = search_feasible(o, r->energy_mj, r->latency_ms);
        if ((st = rescore(l, err)))
            return st;
        r->is_best = l->best == idx[j];
        r->on_front = 0;
        for (int i = 0; i < l->front.n; i++)
            r->on_front |= l->front.p[i].id == r->id;
        if (cb->on_result && (st = cb->on_result(cb->ctx, r, l, err)))
            return st;
        if (cb->progress) {
            search_progress p;
            search_loop_progress(l, &p);
            cb->progress(cb->ctx, &p);
        }
    }
    return NAS_OK;
}

nas_status search_run(search_loop *l, const search_callbacks *cb, search_stop *why, nas_err *err)
{
    nas_status st = NAS_OK;
    search_stop stop = SEARCH_STOP_NONE;
    if (!cb->evaluate && !(cb->submit && cb->collect))
        return nas_errf(err, NAS_EINVAL, "search: no evaluate (or submit and collect) callback");
    int slots = cb->submit ? (cb->slots > 0 ? cb->slots : 1) : 1;
    l->run_t0 = clock_now(cb);
    l->run_base = l->budget.seconds;

    /* Candidates in flight when the state was saved go first, under their own ids. */
    if (l->n_fl > 0) {
        int n = l->n_fl;
        flight_t *old = l->fl;
        l->fl = NULL;
        l->n_fl = l->cap_fl = 0;
        for (int i = 0; i < n && !st; i++) {
            /* their reservations were restored with them */
            while (!st && cb->submit && l->n_fl >= slots)
                st = collect_one(l, cb, err);
            if (!st)
                st = launch(l, &old[i], cb, err);
            tick(l, cb);
        }
        nas_free(old);
        if (st)
            return st;
    }

    /* A budget that says "not now" is asked again after each result: with
     * several in flight, a finished one frees its reservation. Stalls and
     * requests end the search at once. */
    int final = 0;
    for (;;) {
        tick(l, cb);
        stop = SEARCH_STOP_NONE;
        while (l->n_fl < slots) {
            if (cb->should_stop && cb->should_stop(cb->ctx)) {
                stop = SEARCH_STOP_REQUESTED;   /* in flight stays in the state, resumable */
                final = 1;
                break;
            }
            if (l->opts.measure_every > 0 && l->budget.evals >= l->next_measure_at) {
                /* due: before the next proposal, so a resumed run measures at the same point */
                l->next_measure_at = l->budget.evals + l->opts.measure_every;
                if ((st = measure_best(l, cb, slots - l->n_fl, err)))
                    return st;
            }
            if ((stop = search_budget_check(&l->budget, slots - l->n_fl, estimate_before_asking(l, cb))))
                break;
            if (l->stall >= l->opts.stall_limit) {
                stop = SEARCH_STOP_STALLED;
                final = 1;
                break;
            }
            int launched;
            if ((st = propose(l, cb, slots - l->n_fl, &launched, &stop, err)))
                return st;
            if (stop)
                break;   /* this one would have crossed the joule budget */
            tick(l, cb);
        }
        if (l->n_fl == 0 || final)
            break;
        if ((st = collect_one(l, cb, err)))
            return st;
    }
    /* the final leaderboard gets measured figures where the budget allows */
    if (stop != SEARCH_STOP_REQUESTED && (st = measure_best(l, cb, slots, err)))
        return st;
    tick(l, cb);
    if (why)
        *why = stop;
    return NAS_OK;
}

/* ---- save and load ------------------------------------------------------ */

static json_t *result_json(const search_result *r)
{
    const search_eval *e = &r->eval;
    return json_pack("{s:I,s:o,s:o,s:o,s:i,s:i,s:i,s:o,s:o,s:o,s:o,s:o,s:i,s:s,s:o,s:o,s:o,s:o,s:i,s:i,s:i,s:i,s:i,s:i}",
                     "id", (json_int_t)r->id, "genome", search_json_genome(&r->genome),
                     "pred_ms", search_json_num(r->pred.latency_ms), "pred_mj", search_json_num(r->pred.energy_mj),
                     "screened", r->screened, "cached", r->cached, "status", (int)e->status,
                     "acc", search_json_num(e->accuracy), "meas_mj", search_json_num(e->energy_mj),
                     "meas_ms", search_json_num(e->latency_ms), "joules", search_json_num(e->joules),
                     "unc", search_json_num(e->joules_rel_unc), "est", e->joules_estimated, "meter", e->meter,
                     "seconds", search_json_num(e->seconds), "mj", search_json_num(r->energy_mj),
                     "ms", search_json_num(r->latency_ms), "reward", search_json_num(r->reward),
                     "feasible", r->feasible, "on_front", r->on_front, "is_best", r->is_best,
                     "late", r->measured_later, "ob", r->over_budget, "early", e->stopped_early);
}

char *search_loop_save(const search_loop *l)
{
    const search_loop_opts *o = &l->opts;
    const search_budget *b = &l->budget;
    json_t *root = json_object();
    if (!root)
        return NULL;
    json_object_set_new(root, "version", json_integer(LOOP_VERSION));
    json_object_set_new(root, "strategy", search_strategy_to_json(l->strat));
    json_object_set_new(root, "objective",
                        json_pack("{s:i,s:o,s:i,s:o,s:o,s:o}", "target", (int)o->objective.target, "t",
                                  search_json_num(o->objective.t), "hard", o->objective.hard, "alpha",
                                  search_json_num(o->objective.alpha), "beta", search_json_num(o->objective.beta),
                                  "ref_mj", search_json_num(o->objective.ref_energy_mj)));
    json_object_set_new(root, "limits",
                        json_pack("{s:o,s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "joules", search_json_num(o->limits.joules),
                                  "evals", (json_int_t)o->limits.evals, "seconds", search_json_num(o->limits.seconds),
                                  "first_joules", search_json_num(o->limits.first_joules), "sigmas",
                                  search_json_num(b->lim.sigmas), "prior_j0", search_json_num(o->limits.prior_j0),
                                  "prior_j_per_hint", search_json_num(o->limits.prior_j_per_hint), "min_hint",
                                  search_json_num(o->limits.min_hint)));
    json_object_set_new(root, "screen_factor", search_json_num(o->screen_factor));
    json_object_set_new(root, "reuse_seen", json_integer(o->reuse_seen));
    json_object_set_new(root, "stall_limit", json_integer(o->stall_limit));
    json_object_set_new(root, "measure", json_pack("{s:i,s:i}", "every", o->measure_every, "top", o->measure_top));
    json_object_set_new(root, "checks",
                        json_pack("{s:I,s:i,s:i,s:i,s:o,s:o,s:I,s:o,s:o}", "next_at", (json_int_t)l->next_measure_at,
                                  "n_mj", l->n_checked_mj, "n_ms", l->n_checked_ms, "within10_mj", l->within10_mj,
                                  "ape_mj", search_json_num(l->ape_mj), "ape_ms", search_json_num(l->ape_ms),
                                  "n_meas", (json_int_t)b->n_meas, "m_max_j", search_json_num(b->m_max_j),
                                  "m_max_s", search_json_num(b->m_max_s)));
    json_object_set_new(root, "cost_fit",
                        json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:I}", "n", (json_int_t)b->n_hint, "h_mean",
                                  search_json_num(b->h_mean), "j_mean", search_json_num(b->hj_mean), "c_hh",
                                  search_json_num(b->c_hh), "c_hj", search_json_num(b->c_hj), "c_jj",
                                  search_json_num(b->c_jj), "j_min", search_json_num(b->j_min), "over_budget",
                                  (json_int_t)l->over_budget));
    json_object_set_new(root, "budget",
                        json_pack("{s:o,s:o,s:I,s:o,s:I,s:o,s:o,s:o,s:o,s:s,s:i}", "joules", search_json_num(b->joules),
                                  "joules_hi", search_json_num(b->joules_hi), "evals", (json_int_t)b->evals, "seconds",
                                  search_json_num(b->seconds), "n_cost", (json_int_t)b->n_cost, "j_mean",
                                  search_json_num(b->j_mean), "j_m2", search_json_num(b->j_m2), "s_mean",
                                  search_json_num(b->s_mean), "s_m2", search_json_num(b->s_m2), "meter", b->meter,
                                  "estimated", b->estimated));
    json_object_set_new(json_object_get(root, "budget"), "lost_j", search_json_num(b->lost_joules));
    json_object_set_new(json_object_get(root, "cost_fit"), "prior_sum", search_json_num(b->prior_sum));
    json_object_set_new(json_object_get(root, "cost_fit"), "meas_sum", search_json_num(b->meas_sum));
    json_object_set_new(root, "counts",
                        json_pack("{s:I,s:I,s:I,s:i,s:i,s:o}", "proposals", (json_int_t)l->proposals, "screened",
                                  (json_int_t)l->screened, "cached", (json_int_t)l->cached, "stall", l->stall, "best",
                                  l->best, "max_mj", search_json_num(l->max_energy)));
    json_t *res = json_array(), *fl = json_array();
    for (int i = 0; res && i < l->n_res; i++)
        json_array_append_new(res, result_json(&l->res[i]));
    for (int i = 0; fl && i < l->n_fl; i++) {
        const flight_t *f = &l->fl[i];
        json_array_append_new(fl, json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "id", (json_int_t)f->id, "hint",
                                            search_json_num(f->hint), "genome",
                                            search_json_genome(&f->g), "pred_ms", search_json_num(f->pred.latency_ms),
                                            "pred_mj", search_json_num(f->pred.energy_mj), "allow_j",
                                            search_json_num(f->allow_j), "est_s", search_json_num(f->est_s)));
    }
    json_object_set_new(root, "results", res);
    json_object_set_new(root, "in_flight", fl);
    char *out = search_json_dump(root);
    json_decref(root);
    return out;
}

static double num(const json_t *obj, const char *key, int *bad)
{
    double v;
    if (search_json_get_num(obj, key, &v))
        *bad = 1;
    return v;
}

/* A number a state saved by an older build may lack: 0 then. */
static double opt_num(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static long integer(const json_t *obj, const char *key, int *bad)
{
    json_t *j = json_object_get(obj, key);
    if (!json_is_integer(j)) {
        *bad = 1;
        return 0;
    }
    return (long)json_integer_value(j);
}

static nas_status result_from_json(const json_t *j, const search_space *space, search_result *r, nas_err *err)
{
    memset(r, 0, sizeof r[0]);
    int bad = !json_is_object(j);
    if (bad)
        return nas_errf(err, NAS_EINVAL, "search state: results: not an object");
    nas_status st = search_json_get_genome(json_object_get(j, "genome"), space, &r->genome,
                                           "search state: results[].genome", err);
    if (st)
        return st;
    search_eval *e = &r->eval;
    r->id = integer(j, "id", &bad);
    r->pred.latency_ms = num(j, "pred_ms", &bad);
    r->pred.energy_mj = num(j, "pred_mj", &bad);
    r->screened = (int)integer(j, "screened", &bad);
    r->cached = (int)integer(j, "cached", &bad);
    e->status = (search_eval_status)integer(j, "status", &bad);
    e->accuracy = num(j, "acc", &bad);
    e->energy_mj = num(j, "meas_mj", &bad);
    e->latency_ms = num(j, "meas_ms", &bad);
    e->joules = num(j, "joules", &bad);
    e->joules_rel_unc = num(j, "unc", &bad);
    e->joules_estimated = (int)integer(j, "est", &bad);
    const char *m = json_string_value(json_object_get(j, "meter"));
    if (!m)
        bad = 1;
    else
        snprintf(e->meter, sizeof e->meter, "%s", m);
    e->seconds = num(j, "seconds", &bad);
    r->energy_mj = num(j, "mj", &bad);
    r->latency_ms = num(j, "ms", &bad);
    r->reward = num(j, "reward", &bad);
    r->feasible = (int)integer(j, "feasible", &bad);
    r->on_front = (int)integer(j, "on_front", &bad);
    r->is_best = (int)integer(j, "is_best", &bad);
    r->measured_later = (int)integer(j, "late", &bad);
    r->over_budget = (int)integer(j, "ob", &bad);
    const json_t *early = json_object_get(j, "early");   /* absent in states saved before it existed */
    e->stopped_early = json_is_integer(early) ? (int)json_integer_value(early) : 0;
    if (bad || e->status < SEARCH_EVAL_OK || e->status > SEARCH_EVAL_FAILED)
        return nas_errf(err, NAS_EINVAL, "search state: results: candidate %ld has a missing or invalid field", r->id);
    return NAS_OK;
}

static nas_status bad_field(nas_err *err, const char *field)
{
    return nas_errf(err, NAS_EINVAL, "search state: field '%s' missing or invalid", field);
}

nas_status search_loop_load(const search_space *space, const char *json, search_loop **out, nas_err *err)
{
    nas_status st = NAS_OK;
    search_loop *l = NULL;
    *out = NULL;
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    if (!root)
        return nas_errf(err, NAS_EINVAL, "search state: line %d: %s", je.line, je.text);
    int bad = 0;
    if (integer(root, "version", &bad) != LOOP_VERSION || bad) {
        st = nas_errf(err, NAS_EINVAL, "search state: field 'version' must be %d", LOOP_VERSION);
        goto cleanup;
    }
    search_loop_opts o;
    memset(&o, 0, sizeof o);
    json_t *jo = json_object_get(root, "objective"), *jl = json_object_get(root, "limits");
    json_t *jb = json_object_get(root, "budget"), *jc = json_object_get(root, "counts");
    if (!json_is_object(jo)) { st = bad_field(err, "objective"); goto cleanup; }
    o.objective.target = (search_target)integer(jo, "target", &bad);
    o.objective.t = num(jo, "t", &bad);
    o.objective.hard = (int)integer(jo, "hard", &bad);
    o.objective.alpha = num(jo, "alpha", &bad);
    o.objective.beta = num(jo, "beta", &bad);
    o.objective.ref_energy_mj = num(jo, "ref_mj", &bad);
    if (bad || o.objective.target < SEARCH_TARGET_NONE || o.objective.target > SEARCH_TARGET_MS) {
        st = bad_field(err, "objective");
        goto cleanup;
    }
    if (!json_is_object(jl)) { st = bad_field(err, "limits"); goto cleanup; }
    o.limits.joules = num(jl, "joules", &bad);
    o.limits.evals = integer(jl, "evals", &bad);
    o.limits.seconds = num(jl, "seconds", &bad);
    o.limits.first_joules = num(jl, "first_joules", &bad);
    o.limits.sigmas = num(jl, "sigmas", &bad);
    if (bad) { st = bad_field(err, "limits"); goto cleanup; }
    /* absent in states saved before the prior existed: none */
    o.limits.prior_j0 = opt_num(jl, "prior_j0");
    o.limits.prior_j_per_hint = opt_num(jl, "prior_j_per_hint");
    o.limits.min_hint = opt_num(jl, "min_hint");
    o.screen_factor = num(root, "screen_factor", &bad);
    o.reuse_seen = (int)integer(root, "reuse_seen", &bad);
    o.stall_limit = (int)integer(root, "stall_limit", &bad);
    if (bad) { st = bad_field(err, "screen_factor/reuse_seen/stall_limit"); goto cleanup; }
    json_t *jm = json_object_get(root, "measure"), *jk = json_object_get(root, "checks");
    o.measure_every = (int)integer(jm, "every", &bad);
    o.measure_top = (int)integer(jm, "top", &bad);
    if (bad) { st = bad_field(err, "measure"); goto cleanup; }
    if ((st = loop_alloc(space, &o, &l, err)))
        goto cleanup;
    if ((st = search_strategy_from_json(space, json_object_get(root, "strategy"), &l->strat, err)))
        goto cleanup;
    l->opts.strategy = l->strat->opts;
    search_budget *b = &l->budget;
    if (!json_is_object(jb)) { st = bad_field(err, "budget"); goto cleanup; }
    b->joules = num(jb, "joules", &bad);
    b->joules_hi = num(jb, "joules_hi", &bad);
    b->evals = integer(jb, "evals", &bad);
    b->seconds = num(jb, "seconds", &bad);
    b->n_cost = integer(jb, "n_cost", &bad);
    b->j_mean = num(jb, "j_mean", &bad);
    b->j_m2 = num(jb, "j_m2", &bad);
    b->s_mean = num(jb, "s_mean", &bad);
    b->s_m2 = num(jb, "s_m2", &bad);
    b->estimated = (int)integer(jb, "estimated", &bad);
    const json_t *lost = json_object_get(jb, "lost_j");   /* absent in states saved before it existed */
    b->lost_joules = json_is_number(lost) ? json_number_value(lost) : 0;
    const char *m = json_string_value(json_object_get(jb, "meter"));
    if (bad || !m) { st = bad_field(err, "budget"); goto cleanup; }
    snprintf(b->meter, sizeof b->meter, "%s", m);
    if (!json_is_object(jc)) { st = bad_field(err, "counts"); goto cleanup; }
    l->proposals = integer(jc, "proposals", &bad);
    l->screened = integer(jc, "screened", &bad);
    l->cached = integer(jc, "cached", &bad);
    l->stall = (int)integer(jc, "stall", &bad);
    l->best = (int)integer(jc, "best", &bad);
    l->max_energy = num(jc, "max_mj", &bad);
    if (bad) { st = bad_field(err, "counts"); goto cleanup; }
    l->next_measure_at = integer(jk, "next_at", &bad);
    l->n_checked_mj = (int)integer(jk, "n_mj", &bad);
    l->n_checked_ms = (int)integer(jk, "n_ms", &bad);
    l->within10_mj = (int)integer(jk, "within10_mj", &bad);
    l->ape_mj = num(jk, "ape_mj", &bad);
    l->ape_ms = num(jk, "ape_ms", &bad);
    b->n_meas = integer(jk, "n_meas", &bad);
    b->m_max_j = num(jk, "m_max_j", &bad);
    b->m_max_s = num(jk, "m_max_s", &bad);
    if (bad) { st = bad_field(err, "checks"); goto cleanup; }
    json_t *jr = json_object_get(root, "cost_fit");
    b->n_hint = integer(jr, "n", &bad);
    b->h_mean = num(jr, "h_mean", &bad);
    b->hj_mean = num(jr, "j_mean", &bad);
    b->c_hh = num(jr, "c_hh", &bad);
    b->c_hj = num(jr, "c_hj", &bad);
    b->c_jj = num(jr, "c_jj", &bad);
    b->j_min = num(jr, "j_min", &bad);
    l->over_budget = integer(jr, "over_budget", &bad);
    b->prior_sum = opt_num(jr, "prior_sum");
    b->meas_sum = opt_num(jr, "meas_sum");
    if (bad) { st = bad_field(err, "cost_fit"); goto cleanup; }
    json_t *res = json_object_get(root, "results"), *fl = json_object_get(root, "in_flight");
    if (!json_is_array(res)) { st = bad_field(err, "results"); goto cleanup; }
    if (!json_is_array(fl)) { st = bad_field(err, "in_flight"); goto cleanup; }
    for (size_t i = 0; i < json_array_size(res); i++) {
        search_result r;
        if ((st = result_from_json(json_array_get(res, i), space, &r, err)) || (st = push_result(l, &r, err)))
            goto cleanup;
        /* the front is rebuilt by adding the same points in the same order */
        if (!r.screened && !r.cached && r.eval.status == SEARCH_EVAL_OK && isfinite(r.energy_mj) &&
            search_front_add(&l->front, r.id, r.eval.accuracy, r.energy_mj) < 0) {
            st = nas_errf(err, NAS_ENOMEM, "search state: out of memory");
            goto cleanup;
        }
    }
    if (l->best < -1 || l->best >= l->n_res) { st = bad_field(err, "counts.best"); goto cleanup; }
    for (size_t i = 0; i < json_array_size(fl); i++) {
        json_t *jf = json_array_get(fl, i);
        flight_t f;
        memset(&f, 0, sizeof f);
        if ((st = search_json_get_genome(json_object_get(jf, "genome"), space, &f.g, "search state: in_flight[].genome",
                                         err)))
            goto cleanup;
        f.id = integer(jf, "id", &bad);
        f.pred.latency_ms = num(jf, "pred_ms", &bad);
        f.pred.energy_mj = num(jf, "pred_mj", &bad);
        f.allow_j = num(jf, "allow_j", &bad);
        if (isnan(f.allow_j))
            f.allow_j = INFINITY;   /* saved as null: no joule budget */
        f.est_s = num(jf, "est_s", &bad);
        f.hint = num(jf, "hint", &bad);
        if (bad) { st = bad_field(err, "in_flight"); goto cleanup; }
        if (flight_push(l, &f)) {
            st = nas_errf(err, NAS_ENOMEM, "search state: out of memory");
            goto cleanup;
        }
        search_budget_start(b, f.allow_j, f.est_s);
    }
    *out = l;
    l = NULL;
cleanup:
    search_loop_free(l);
    json_decref(root);
    return st;
}
