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

#include <float.h>
#include <math.h>
#include <string.h>

/* The saved state's forms: 1 holds the whole history (every result), 2 only
 * what the history does not tell (search_loop_save_state), at a size that
 * does not grow with the search. */
#define LOOP_VERSION 1
#define LOOP_VERSION_NO_HISTORY 2
#define OVER_BUDGET_TRIES 200   /* proposals in a row too dear for what is left: the budget is spent */

typedef struct {
    long id;
    space_genome g;
    search_prediction pred;
    double allow_j, est_s, t_start;   /* allow_j: joules reserved for it (inf: no joule budget) */
    double hint;                      /* its cost hint (0: none), times its rung's work */
    int rung;                         /* multi-fidelity: its rung, and the id it trains on from */
    long parent;
} flight_t;

struct search_loop {
    search_space space;
    search_loop_opts opts;
    search_strategy *strat;
    search_budget budget;
    search_front front;
    int n_res, cap_res;
    search_result *res;
    int n_cached_res;          /* of them, seen before (no run-store row holds them) */
    /* the evaluated ones by genome, for reuse_seen: open addressing, indices
     * into res (-1: empty), so that a proposal is looked up at once rather than
     * by a scan of every result (quadratic over a long search) */
    int *seen;
    int cap_seen, n_seen;
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
    const flight_t *cur;       /* the candidate being started or evaluated synchronously */
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
    o->rungs = 1;
    o->eta = 3;
}

double search_rung_work(int rung, int eta)
{
    return rung <= 0 ? 1.0 : pow(eta, rung) - pow(eta, rung - 1);
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
    if (opts->rungs > SEARCH_MAX_RUNGS || (opts->rungs > 1 && (opts->eta < 2 || opts->eta > 100)))
        return nas_errf(err, NAS_EINVAL, "search: rungs %d (1..%d) with eta %d (2..100)", opts->rungs,
                        SEARCH_MAX_RUNGS, opts->eta);
    search_loop *l = nas_calloc(1, sizeof *l);
    if (!l)
        return nas_errf(err, NAS_ENOMEM, "search: out of memory");
    l->space = *space;
    l->opts = *opts;
    if (l->opts.rungs < 1)   /* options zeroed rather than defaulted: no rungs */
        l->opts.rungs = 1;
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
    nas_free(l->seen);
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

/* A result a promotion of it has bettered the training of (its child finished):
 * the candidate stands at its highest rung in the leaderboard and the best. */
static int superseded(const search_loop *l, int i)
{
    if (l->opts.rungs <= 1)
        return 0;
    for (int j = i + 1; j < l->n_res; j++)
        if (l->res[j].parent == l->res[i].id && l->res[j].eval.status == SEARCH_EVAL_OK)
            return 1;
    return 0;
}

/* Whether result i was promoted (its child finished, failed or is in flight). */
static int promoted(const search_loop *l, int i)
{
    long id = l->res[i].id;
    for (int j = i + 1; j < l->n_res; j++)
        if (l->res[j].parent == id)
            return 1;
    for (int k = 0; k < l->n_fl; k++)
        if (l->fl[k].parent == id && l->fl[k].rung > 0)
            return 1;
    return l->cur && l->cur->rung > 0 && l->cur->parent == id;
}

/* The result with this id (NULL: none). */
static const search_result *result_of(const search_loop *l, long id)
{
    for (int i = 0; i < l->n_res; i++)
        if (l->res[i].id == id)
            return &l->res[i];
    return NULL;
}

int search_loop_lineage(const search_loop *l, long id, long *parent)
{
    *parent = -1;
    const flight_t *f = l->cur && l->cur->id == id ? l->cur : NULL;
    for (int k = 0; !f && k < l->n_fl; k++)
        if (l->fl[k].id == id)
            f = &l->fl[k];
    if (f) {
        *parent = f->rung > 0 ? f->parent : -1;
        return f->rung;
    }
    const search_result *r = result_of(l, id);
    if (r)
        *parent = r->parent;
    return r ? r->rung : 0;
}

/* Indices of the k best evaluated results by reward (ties: lower id first). */
static int top_k(const search_loop *l, int *idx, int k, int feasible_only)
{
    /* insertion into a short sorted list: k is a leaderboard's length */
    int n = 0;
    for (int i = 0; i < l->n_res; i++) {
        const search_result *r = &l->res[i];
        if (r->screened || r->cached || r->eval.status != SEARCH_EVAL_OK || (feasible_only && !r->feasible) ||
            superseded(l, i))
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

void search_loop_charge_lost(search_loop *l, double total_lost, double rel_unc, const char *meter, search_quality q)
{
    search_budget_charge_lost(&l->budget, total_lost, rel_unc, meter, q);
}

void search_loop_charge_calibration(search_loop *l, double joules, double rel_unc, const char *meter,
                                    search_quality q)
{
    search_budget_charge_calibration(&l->budget, joules, rel_unc, meter, q);
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

static uint64_t genome_hash(const space_genome *g)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (int i = 0; i < g->n; i++)
        h = (h ^ g->g[i]) * 1099511628211ULL;
    return h;
}

static int seen_eligible(const search_result *r)
{
    return !r->screened && !r->cached && r->rung == 0;
}


/* res[i] into the table (the first of equal genomes stays: a scan in result
 * order would find it first); -1 when out of memory. */
static int seen_put(int *tab, int cap, const search_result *res, int i)
{
    size_t mask = (size_t)cap - 1, k = (size_t)genome_hash(&res[i].genome) & mask;
    for (; tab[k] >= 0; k = (k + 1) & mask)
        if (search_genome_equal(&res[tab[k]].genome, &res[i].genome))
            return 0;
    tab[k] = i;
    return 1;
}

static int seen_add(search_loop *l, int i)
{
    if (2 * (l->n_seen + 1) > l->cap_seen) {
        int cap = l->cap_seen ? 2 * l->cap_seen : 256;
        int *tab = nas_malloc((size_t)cap * sizeof *tab);
        if (!tab)
            return -1;
        for (int k = 0; k < cap; k++)
            tab[k] = -1;
        for (int k = 0; k < l->cap_seen; k++)
            if (l->seen[k] >= 0)
                seen_put(tab, cap, l->res, l->seen[k]);
        nas_free(l->seen);
        l->seen = tab;
        l->cap_seen = cap;
    }
    l->n_seen += seen_put(l->seen, l->cap_seen, l->res, i);
    return 0;
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
    l->n_cached_res += r->cached != 0;
    if (seen_eligible(r) && seen_add(l, l->n_res - 1)) {
        l->n_res--;
        l->n_cached_res -= r->cached != 0;
        return nas_errf(err, NAS_ENOMEM, "search: out of memory for results");
    }
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

/* The first result evaluated with genome g (NULL: none). */
static const search_result *find_seen(const search_loop *l, const space_genome *g)
{
    if (!l->cap_seen)
        return NULL;
    size_t mask = (size_t)l->cap_seen - 1;
    for (size_t k = (size_t)genome_hash(g) & mask; l->seen[k] >= 0; k = (k + 1) & mask)
        if (search_genome_equal(&l->res[l->seen[k]].genome, g))
            return &l->res[l->seen[k]];
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

static nas_status rescore(search_loop *l, nas_err *err);

/* A result's end (or its later measurement) to the caller: recorded, then shown. */
static nas_status report(const search_loop *l, const search_result *r, const search_callbacks *cb, nas_err *err)
{
    nas_status st;
    if (cb->on_result && (st = cb->on_result(cb->ctx, r, l, err)))
        return st;
    if (cb->progress) {
        search_progress p;
        search_loop_progress(l, &p);
        cb->progress(cb->ctx, &p);
    }
    return NAS_OK;
}

/* Called for every candidate that ends, evaluated or not: record, tell, report.
 * hint is its cost hint (0: none), what the strategy weighs its reward against. */
static nas_status finish_candidate(search_loop *l, search_result *r, double hint, const search_callbacks *cb,
                                   nas_err *err)
{
    tick(l, cb);
    search_tell_kind kind = r->screened ? SEARCH_TELL_SCREENED
                          : r->eval.status == SEARCH_EVAL_OK ? SEARCH_TELL_OK : SEARCH_TELL_FAILED;
    nas_status st = search_tell(l->strat, r->id, &r->genome, r->reward, hint > 0 ? hint : NAN, kind, err);
    if (st)
        return st;
    if ((st = push_result(l, r, err)))
        return st;
    if (r->is_best)
        l->best = l->n_res - 1;
    if (r->rung > 0) {   /* the parent stands down: the best is the candidates' at their highest rungs */
        if ((st = rescore(l, err)))
            return st;
        l->res[l->n_res - 1].is_best = l->best == l->n_res - 1;
    }
    return report(l, &l->res[l->n_res - 1], cb, err);
}

/* What the objective uses: measured figures when there are, predicted otherwise. */
static void objective_figures(search_result *r)
{
    r->energy_mj = r->eval.energy_mj > 0 ? r->eval.energy_mj : r->pred.energy_mj > 0 ? r->pred.energy_mj : NAN;
    r->latency_ms = r->eval.latency_ms > 0 ? r->eval.latency_ms : r->pred.latency_ms > 0 ? r->pred.latency_ms : NAN;
}

/* Scores an evaluated candidate and updates budget, front and best. */
static nas_status finish_eval(search_loop *l, const flight_t *f, search_eval *ev, double seconds,
                              const search_callbacks *cb, nas_err *err)
{
    /* A promotion is its parent's network trained on: what one inference costs
     * has not changed, so an evaluator need not measure it again (a benchmark
     * is as dear as a short rung's training) and it has its parent's figures. */
    const search_result *p = f->rung > 0 && !(ev->energy_mj > 0) && !(ev->latency_ms > 0)
                                 ? result_of(l, f->parent) : NULL;
    if (p && ev->status == SEARCH_EVAL_OK) {
        ev->energy_mj = p->eval.energy_mj;
        ev->latency_ms = p->eval.latency_ms;
    }
    search_result r;
    memset(&r, 0, sizeof r);
    r.id = f->id;
    r.genome = f->g;
    r.pred = f->pred;
    r.rung = f->rung;
    r.parent = f->rung > 0 ? f->parent : -1;
    if (!(ev->seconds > 0))
        ev->seconds = seconds;
    r.eval = *ev;
    search_budget_finish(&l->budget, f->allow_j, f->est_s, ev->joules, ev->joules_rel_unc, ev->seconds, ev->meter,
                         search_eval_q(ev), f->hint);
    search_budget_floor(&l->budget, ev->floor_joules, f->hint);
    l->over_stall = 0;   /* its reservation is free again, and the estimates have learnt */
    objective_figures(&r);
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
    return finish_candidate(l, &r, f->hint, cb, err);
}

/* A candidate that on_start says ended outside the loop before this resume:
 * a failed result, as it was recorded, without an evaluation. */
static nas_status finish_ended(search_loop *l, const flight_t *f, const search_callbacks *cb, nas_err *err)
{
    search_result r;
    memset(&r, 0, sizeof r);
    r.id = f->id;
    r.genome = f->g;
    r.pred = f->pred;
    r.eval.status = SEARCH_EVAL_FAILED;
    r.eval.recorded = 1;
    r.eval.accuracy = NAN;
    r.rung = f->rung;
    r.parent = f->rung > 0 ? f->parent : -1;
    search_budget_abandon(&l->budget, f->allow_j, f->est_s);
    objective_figures(&r);
    return finish_candidate(l, &r, f->hint, cb, err);
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
    int ended = 0;
    l->cur = f;   /* for search_loop_lineage while it starts and, synchronously, runs */
    st = cb->on_start ? cb->on_start(cb->ctx, f->id, &f->g, &f->pred, &ended, err) : NAS_OK;
    l->cur = NULL;
    if (st)
        return st;
    if (ended)
        return finish_ended(l, f, cb, err);
    f->t_start = clock_now(cb);
    if (!cb->submit) {
        search_eval ev;
        memset(&ev, 0, sizeof ev);
        l->cur = f;
        st = cb->evaluate(cb->ctx, f->id, &f->g, f->allow_j, &ev, err);
        l->cur = NULL;
        if (st)
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

typedef struct {
    double reward;
    long id;
    int i;
} ranked_t;

/* By reward, best first; ties to the lower id. */
static int by_rank(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->reward != y->reward)
        return x->reward > y->reward ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int in_rung(const search_result *r, int k)
{
    return r->rung == k && !r->screened && !r->cached && r->eval.status == SEARCH_EVAL_OK;
}

/* Whether result i was measured over a hard target: it can never be chosen,
 * so training it on would only buy a point on the front. (A predicted
 * figure does not rule a candidate out: the prediction may be wrong.) */
static int measured_out(const search_loop *l, int i)
{
    const search_result *r = &l->res[i];
    const search_objective *o = &l->opts.objective;
    return o->hard && o->target != SEARCH_TARGET_NONE && !r->feasible &&
           (r->eval.energy_mj > 0 || r->eval.latency_ms > 0);
}

/* The promotion ASHA makes next (highest rung first): a result of a rung below
 * the top that ranks within its rung's best 1/eta (by reward, ties to the
 * lower id), was not promoted and was not measured over a hard target. -1
 * when there is none (or no memory to rank: then nothing is promoted this
 * time). */
static int next_promotion(const search_loop *l)
{
    ranked_t *v = l->n_res > 0 ? nas_malloc((size_t)l->n_res * sizeof *v) : NULL;
    if (!v)
        return -1;
    int pick = -1;
    for (int k = l->opts.rungs - 2; k >= 0 && pick < 0; k--) {
        int n = 0;
        for (int i = 0; i < l->n_res; i++)
            if (in_rung(&l->res[i], k))
                v[n++] = (ranked_t){l->res[i].reward, l->res[i].id, i};
        qsort(v, (size_t)n, sizeof *v, by_rank);
        int quota = n / l->opts.eta;
        for (int r = 0; r < quota && pick < 0; r++)
            if (!promoted(l, v[r].i) && !measured_out(l, v[r].i))
                pick = v[r].i;
    }
    nas_free(v);
    return pick;
}

/* Starts the promotion of result pi when its estimated cost fits the budget
 * (*launched set); else leaves it for later and the strategy is asked. */
static nas_status promote(search_loop *l, const search_callbacks *cb, int free_slots, int pi, int *launched,
                          nas_err *err)
{
    *launched = 0;
    const search_result *p = &l->res[pi];
    flight_t f;
    memset(&f, 0, sizeof f);
    f.g = p->genome;
    f.pred = p->pred;
    f.rung = p->rung + 1;
    f.parent = p->id;
    double work = search_rung_work(f.rung, l->opts.eta);
    double base = cb->cost_hint ? cb->cost_hint(cb->ctx, &f.g) : 0;
    f.hint = base > 0 && isfinite(base) ? base * work : 0;
    double est = cb->cost_hint ? search_budget_estimate_joules(&l->budget, f.hint)
                               : search_budget_next_joules(&l->budget) * work;
    if (l->budget.lim.joules > 0 && search_budget_check(&l->budget, free_slots, est) == SEARCH_STOP_JOULES)
        return NAS_OK;
    nas_status st = search_reserve(l->strat, &f.id, err);
    if (st)
        return st;
    f.allow_j = search_budget_allowance(&l->budget, free_slots, est);
    f.est_s = search_budget_next_seconds(&l->budget) * work;
    search_budget_start(&l->budget, f.allow_j, f.est_s);
    l->stall = l->over_stall = 0;
    *launched = 1;
    return launch(l, &f, cb, err);
}

static nas_status measure_one(search_loop *l, const search_callbacks *cb, int free_slots, int i, int *done,
                              nas_err *err);

/* Whether result i has neither measured nor predicted figures, and could be measured. */
static int unmeasured(const search_loop *l, const search_callbacks *cb, int i)
{
    const search_result *r = &l->res[i];
    return cb->measure && !r->measured_later && !(r->energy_mj > 0) && !(r->latency_ms > 0);
}

/* Proposes one candidate and sees it through screening, reuse and its own
 * cost estimate; returns with *launched set when it went to evaluation, and
 * *stop set when it would have crossed the joule budget. */
static nas_status propose(search_loop *l, const search_callbacks *cb, int free_slots, int *launched,
                          search_stop *stop, nas_err *err)
{
    *launched = 0;
    nas_status st;
    int pi = l->opts.rungs > 1 ? next_promotion(l) : -1;
    /* A candidate with no figures at all (no predictor, and its rung skipped
     * the benchmark) ranked by accuracy alone; it is measured before it is
     * promoted, and ranked again with its cost. Each is measured once, so
     * this ends; a budget with no room for a benchmark promotes nothing. */
    while (pi >= 0 && unmeasured(l, cb, pi)) {
        int done;
        if ((st = measure_one(l, cb, free_slots, pi, &done, err)))
            return st;
        pi = done ? next_promotion(l) : -1;
    }
    if (pi >= 0 && ((st = promote(l, cb, free_slots, pi, launched, err)) || *launched))
        return st;
    flight_t f;
    memset(&f, 0, sizeof f);
    f.parent = -1;
    if ((st = search_ask(l->strat, &f.g, &f.id, err)))
        return st;
    l->proposals++;
    if (cb->predict && (st = cb->predict(cb->ctx, &f.g, &f.pred, err)))
        return nas_errctx(err, "predicting candidate %ld", f.id);
    int reject = cb->screen ? cb->screen(cb->ctx, &f.g, &f.pred) : default_screen(l, &f.pred);
    const search_result *seen = !reject && l->opts.reuse_seen ? find_seen(l, &f.g) : NULL;
    double est = 0;
    int over = 0;
    if (!reject) {
        f.hint = cb->cost_hint ? cb->cost_hint(cb->ctx, &f.g) : 0;
        if (!(f.hint > 0) || !isfinite(f.hint))
            f.hint = 0;
    }
    if (!reject && !seen) {
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
        return finish_candidate(l, &r, f.hint, cb, err);
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
        return finish_candidate(l, &r, f.hint, cb, err);
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
        if (!r->screened && !r->cached && r->eval.status == SEARCH_EVAL_OK && r->feasible && !superseded(l, i) &&
            (l->best < 0 || r->reward > l->res[l->best].reward))
            l->best = i;
    }
    return NAS_OK;
}

/* Measures result i (a trained candidate with no measured figures) when the
 * budget has room (*done set; else left as it is), records the predictor's
 * error on it, rescores and reports it. */
static nas_status measure_one(search_loop *l, const search_callbacks *cb, int free_slots, int i, int *done,
                              nas_err *err)
{
    search_result *r = &l->res[i];
    *done = 0;
    if (search_budget_check_measure(&l->budget, free_slots))
        return NAS_OK;
    search_eval m;
    memset(&m, 0, sizeof m);
    double t = clock_now(cb);
    double allowance = search_budget_allowance(&l->budget, free_slots, search_budget_measure_estimate(&l->budget));
    nas_status st = cb->measure(cb->ctx, r->id, &r->genome, allowance, &m, err);
    if (st)
        return nas_errctx(err, "measuring candidate %ld", r->id);
    search_budget_measured(&l->budget, m.joules, m.joules_rel_unc, m.seconds > 0 ? m.seconds : clock_now(cb) - t,
                           m.meter, search_eval_q(&m));
    tick(l, cb);
    *done = 1;
    r->measured_later = 1;
    r->measure_joules = isfinite(m.joules) && m.joules > 0 ? m.joules : 0;
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
    r->is_best = l->best == i;
    r->on_front = 0;
    for (int k = 0; k < l->front.n; k++)
        r->on_front |= l->front.p[k].id == r->id;
    return report(l, r, cb, err);
}

/* Measures the measure_top best candidates that have no measured figures yet,
 * while the budget allows. */
static nas_status measure_best(search_loop *l, const search_callbacks *cb, int free_slots, nas_err *err)
{
    int k = l->opts.measure_top, idx[64];
    if (!cb->measure || k < 1)
        return NAS_OK;
    if (k > 64)
        k = 64;
    int n = top_k(l, idx, k, 0);
    for (int j = 0; j < n; j++) {
        const search_result *r = &l->res[idx[j]];
        if (r->measured_later || r->eval.energy_mj > 0)
            continue;
        int done;
        nas_status st = measure_one(l, cb, free_slots, idx[j], &done, err);
        if (st || !done)
            return st;
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
    return json_pack("{s:I,s:o,s:o,s:o,s:i,s:i,s:i,s:o,s:o,s:o,s:o,s:o,s:i,s:i,s:s,s:o,s:o,s:o,s:o,s:i,s:i,s:i,s:i,s:i,s:i}",
                     "id", (json_int_t)r->id, "genome", search_json_genome(&r->genome),
                     "pred_ms", search_json_num(r->pred.latency_ms), "pred_mj", search_json_num(r->pred.energy_mj),
                     "screened", r->screened, "cached", r->cached, "status", (int)e->status,
                     "acc", search_json_num(e->accuracy), "meas_mj", search_json_num(e->energy_mj),
                     "meas_ms", search_json_num(e->latency_ms), "joules", search_json_num(e->joules),
                     "unc", search_json_num(e->joules_rel_unc), "est", e->joules_estimated, "smp", e->joules_sampled, "meter", e->meter,
                     "seconds", search_json_num(e->seconds), "mj", search_json_num(r->energy_mj),
                     "ms", search_json_num(r->latency_ms), "reward", search_json_num(r->reward),
                     "feasible", r->feasible, "on_front", r->on_front, "is_best", r->is_best,
                     "late", r->measured_later, "ob", r->over_budget, "early", e->stopped_early);
}

/* A result's or flight's rung and parent, written only for a promotion (so a
 * search without rungs saves what it always did). */
static void lineage_json(json_t *j, int rung, long parent, int *bad)
{
    if (rung <= 0 || !j)
        return;
    search_json_set(j, "rung", json_integer(rung), bad);
    search_json_set(j, "parent", json_integer(parent), bad);
}


/* The results a state without its history stands for: every one but those
 * seen before (which the run store keeps no row for). */
static long n_kept(const search_loop *l)
{
    return l->n_res - l->n_cached_res;
}

static char *loop_save(const search_loop *l, int with_history)
{
    const search_loop_opts *o = &l->opts;
    const search_budget *b = &l->budget;
    int bad = 0;
    json_t *root = json_object();
    search_json_set(root, "version", json_integer(with_history ? LOOP_VERSION : LOOP_VERSION_NO_HISTORY), &bad);
    search_json_set(root, "strategy", search_strategy_to_json(l->strat), &bad);
    search_json_set(root, "objective",
                    json_pack("{s:i,s:o,s:i,s:o,s:o,s:o}", "target", (int)o->objective.target, "t",
                              search_json_num(o->objective.t), "hard", o->objective.hard, "alpha",
                              search_json_num(o->objective.alpha), "beta", search_json_num(o->objective.beta),
                              "ref_mj", search_json_num(o->objective.ref_energy_mj)), &bad);
    search_json_set(root, "limits",
                    json_pack("{s:o,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "joules", search_json_num(o->limits.joules),
                              "evals", (json_int_t)o->limits.evals, "seconds", search_json_num(o->limits.seconds),
                              "first_joules", search_json_num(o->limits.first_joules), "sigmas",
                              search_json_num(b->lim.sigmas), "prior_j0", search_json_num(o->limits.prior_j0),
                              "prior_j_per_hint", search_json_num(o->limits.prior_j_per_hint), "min_hint",
                              search_json_num(o->limits.min_hint), "measure_joules",
                              search_json_num(o->limits.measure_joules)), &bad);
    search_json_set(root, "screen_factor", search_json_num(o->screen_factor), &bad);
    search_json_set(root, "reuse_seen", json_integer(o->reuse_seen), &bad);
    search_json_set(root, "stall_limit", json_integer(o->stall_limit), &bad);
    search_json_set(root, "measure", json_pack("{s:i,s:i}", "every", o->measure_every, "top", o->measure_top), &bad);
    search_json_set(root, "rungs", json_pack("{s:i,s:i}", "n", o->rungs, "eta", o->eta), &bad);
    search_json_set(root, "checks",
                    json_pack("{s:I,s:i,s:i,s:i,s:o,s:o,s:I,s:o,s:o}", "next_at", (json_int_t)l->next_measure_at,
                              "n_mj", l->n_checked_mj, "n_ms", l->n_checked_ms, "within10_mj", l->within10_mj,
                              "ape_mj", search_json_num(l->ape_mj), "ape_ms", search_json_num(l->ape_ms),
                              "n_meas", (json_int_t)b->n_meas, "m_max_j", search_json_num(b->m_max_j),
                              "m_max_s", search_json_num(b->m_max_s)), &bad);
    search_json_set(root, "cost_fit",
                    json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:I}", "n", (json_int_t)b->n_hint, "h_mean",
                              search_json_num(b->h_mean), "j_mean", search_json_num(b->hj_mean), "c_hh",
                              search_json_num(b->c_hh), "c_hj", search_json_num(b->c_hj), "c_jj",
                              search_json_num(b->c_jj), "j_min", search_json_num(b->j_min), "over_budget",
                              (json_int_t)l->over_budget), &bad);
    search_json_set(root, "budget",
                    json_pack("{s:o,s:o,s:I,s:o,s:I,s:o,s:o,s:o,s:o,s:s,s:i}", "joules", search_json_num(b->joules),
                              "joules_hi", search_json_num(b->joules_hi), "evals", (json_int_t)b->evals, "seconds",
                              search_json_num(b->seconds), "n_cost", (json_int_t)b->n_cost, "j_mean",
                              search_json_num(b->j_mean), "j_m2", search_json_num(b->j_m2), "s_mean",
                              search_json_num(b->s_mean), "s_m2", search_json_num(b->s_m2), "meter", b->meter,
                              "estimated", b->estimated), &bad);
    search_json_set(json_object_get(root, "budget"), "sampled", json_integer(b->sampled), &bad);
    search_json_set(json_object_get(root, "budget"), "lost_j", search_json_num(b->lost_joules), &bad);
    search_json_set(json_object_get(root, "budget"), "calib_j", search_json_num(b->calib_joules), &bad);
    search_json_set(json_object_get(root, "cost_fit"), "prior_sum", search_json_num(b->prior_sum), &bad);
    search_json_set(json_object_get(root, "cost_fit"), "meas_sum", search_json_num(b->meas_sum), &bad);
    search_json_set(json_object_get(root, "cost_fit"), "floor_max", search_json_num(b->floor_max), &bad);
    search_json_set(json_object_get(root, "cost_fit"), "floor_per_hint", search_json_num(b->floor_per_hint), &bad);
    search_json_set(root, "counts",
                    json_pack("{s:I,s:I,s:I,s:i,s:o}", "proposals", (json_int_t)l->proposals, "screened",
                              (json_int_t)l->screened, "cached", (json_int_t)l->cached, "stall", l->stall,
                              "max_mj", search_json_num(l->max_energy)), &bad);
    json_t *fl = json_array();
    if (with_history) {
        /* the best is an index into the results, which only this form holds */
        search_json_set(json_object_get(root, "counts"), "best", json_integer(l->best), &bad);
        json_t *res = json_array();
        for (int i = 0; i < l->n_res; i++) {
            json_t *jr = result_json(&l->res[i]);
            lineage_json(jr, l->res[i].rung, l->res[i].parent, &bad);
            search_json_append(res, jr, &bad);
        }
        search_json_set(root, "results", res, &bad);
    } else {
        search_json_set(root, "history", json_pack("{s:I}", "n", (json_int_t)n_kept(l)), &bad);
    }
    for (int i = 0; i < l->n_fl; i++) {
        const flight_t *f = &l->fl[i];
        json_t *jf = json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "id", (json_int_t)f->id, "hint",
                               search_json_num(f->hint), "genome",
                               search_json_genome(&f->g), "pred_ms", search_json_num(f->pred.latency_ms),
                               "pred_mj", search_json_num(f->pred.energy_mj), "allow_j",
                               search_json_num(f->allow_j), "est_s", search_json_num(f->est_s));
        lineage_json(jf, f->rung, f->parent, &bad);
        search_json_append(fl, jf, &bad);
    }
    search_json_set(root, "in_flight", fl, &bad);
    char *out = bad ? NULL : search_json_dump(root);
    json_decref(root);
    return out;
}

char *search_loop_save(const search_loop *l)
{
    return loop_save(l, 1);
}

char *search_loop_save_state(const search_loop *l)
{
    return loop_save(l, 0);
}

/* What a saved figure may be, so that a state that loads also runs and saves
 * again: counters within what the tables can index, figures finite and within
 * what any search spends (a petajoule, 30,000 years), the budget's own sums
 * never negative (a negative or NaN one never lets the budget bind, and the
 * search runs on without end). */
#define WHAT "search state"
#define MAX_J 1e15
#define MAX_S 1e12
#define MAX_N SEARCH_MAX_TICKETS
#define TRY(x) do { if ((st = (x)) != NAS_OK) goto cleanup; } while (0)

static nas_status bad_field(nas_err *err, const char *field)
{
    return nas_errf(err, NAS_EINVAL, WHAT ": field '%s' missing or invalid", field);
}

/* An int field in [lo, hi]. */
static nas_status get_i(const json_t *obj, const char *field, long lo, long hi, int *v, nas_err *err)
{
    long x;
    nas_status st = search_json_int(obj, WHAT, field, lo, hi, &x, err);
    if (st == NAS_OK)
        *v = (int)x;
    return st;
}

/* A string that fits n bytes as it is (a cut one could split a UTF-8 character). */
static nas_status get_s(const json_t *obj, const char *field, char *out, size_t n, nas_err *err)
{
    const char *key = strrchr(field, '.') ? strrchr(field, '.') + 1 : field;
    json_t *j = json_object_get(obj, key);
    if (!json_is_string(j) || json_string_length(j) >= n || strlen(json_string_value(j)) != json_string_length(j))
        return nas_errf(err, NAS_EINVAL, WHAT ": field '%s' missing, not a string or longer than %zu bytes", field,
                        n - 1);
    memcpy(out, json_string_value(j), json_string_length(j) + 1);
    return NAS_OK;
}

/* A number in [0, hi] that a state saved by an older build may lack: 0 then. */
static nas_status opt_real(const json_t *obj, const char *field, double hi, double *v, nas_err *err)
{
    *v = 0;
    const char *key = strrchr(field, '.') ? strrchr(field, '.') + 1 : field;
    return json_object_get(obj, key) ? search_json_real(obj, WHAT, field, 0, hi, 0, v, err) : NAS_OK;
}

static nas_status lineage_from_json(const json_t *j, const char *what_rung, const char *what_parent, long id,
                                    int *rung, long *parent, nas_err *err)
{
    nas_status st = NAS_OK;
    *rung = 0;
    *parent = -1;
    if (json_object_get(j, "rung")) {
        TRY(get_i(j, what_rung, 1, SEARCH_MAX_RUNGS - 1, rung, err));
        TRY(search_json_int(j, WHAT, what_parent, 0, id - 1, parent, err));
    }
cleanup:
    return st;
}

static nas_status result_from_json(const json_t *j, const search_space *space, long next_ticket, search_result *r,
                                   nas_err *err)
{
    memset(r, 0, sizeof r[0]);
    if (!json_is_object(j))
        return nas_errf(err, NAS_EINVAL, WHAT ": results: not an object");
    nas_status st;
    search_eval *e = &r->eval;
    int status;
    TRY(search_json_get_genome(json_object_get(j, "genome"), space, &r->genome, WHAT ": results[].genome", err));
    TRY(search_json_int(j, WHAT, "results[].id", 0, next_ticket - 1, &r->id, err));
    TRY(search_json_real(j, WHAT, "results[].pred_ms", -MAX_S, MAX_S, 1, &r->pred.latency_ms, err));
    TRY(search_json_real(j, WHAT, "results[].pred_mj", -MAX_J, MAX_J, 1, &r->pred.energy_mj, err));
    TRY(get_i(j, "results[].screened", 0, 1, &r->screened, err));
    TRY(get_i(j, "results[].cached", 0, 1, &r->cached, err));
    TRY(get_i(j, "results[].status", SEARCH_EVAL_OK, SEARCH_EVAL_FAILED, &status, err));
    e->status = (search_eval_status)status;
    TRY(search_json_real(j, WHAT, "results[].acc", 0, 1, 1, &e->accuracy, err));
    TRY(search_json_real(j, WHAT, "results[].meas_mj", -MAX_J, MAX_J, 1, &e->energy_mj, err));
    TRY(search_json_real(j, WHAT, "results[].meas_ms", -MAX_S, MAX_S, 1, &e->latency_ms, err));
    TRY(search_json_real(j, WHAT, "results[].joules", -MAX_J, MAX_J, 1, &e->joules, err));
    TRY(search_json_real(j, WHAT, "results[].unc", -MAX_J, MAX_J, 1, &e->joules_rel_unc, err));
    TRY(get_i(j, "results[].est", 0, 1, &e->joules_estimated, err));
    TRY(get_s(j, "results[].meter", e->meter, sizeof e->meter, err));
    TRY(search_json_real(j, WHAT, "results[].seconds", -MAX_S, MAX_S, 1, &e->seconds, err));
    TRY(search_json_real(j, WHAT, "results[].mj", -MAX_J, MAX_J, 1, &r->energy_mj, err));
    TRY(search_json_real(j, WHAT, "results[].ms", -MAX_S, MAX_S, 1, &r->latency_ms, err));
    TRY(search_json_real(j, WHAT, "results[].reward", -DBL_MAX, DBL_MAX, 1, &r->reward, err));
    TRY(get_i(j, "results[].feasible", 0, 1, &r->feasible, err));
    TRY(get_i(j, "results[].on_front", 0, 1, &r->on_front, err));
    TRY(get_i(j, "results[].is_best", 0, 1, &r->is_best, err));
    TRY(get_i(j, "results[].late", 0, 1, &r->measured_later, err));
    TRY(get_i(j, "results[].ob", 0, 1, &r->over_budget, err));
    e->stopped_early = e->joules_sampled = 0;   /* absent in states saved before they existed */
    if (json_object_get(j, "early"))
        TRY(get_i(j, "results[].early", 0, 1, &e->stopped_early, err));
    if (json_object_get(j, "smp"))
        TRY(get_i(j, "results[].smp", 0, 1, &e->joules_sampled, err));
    TRY(lineage_from_json(j, "results[].rung", "results[].parent", r->id, &r->rung, &r->parent, err));
cleanup:
    return st;
}

static nas_status flight_from_json(const json_t *jf, const search_space *space, long next_ticket, flight_t *f,
                                   nas_err *err)
{
    nas_status st;
    memset(f, 0, sizeof *f);
    TRY(search_json_get_genome(json_object_get(jf, "genome"), space, &f->g, WHAT ": in_flight[].genome", err));
    TRY(search_json_int(jf, WHAT, "in_flight[].id", 0, next_ticket - 1, &f->id, err));
    TRY(search_json_real(jf, WHAT, "in_flight[].pred_ms", -MAX_S, MAX_S, 1, &f->pred.latency_ms, err));
    TRY(search_json_real(jf, WHAT, "in_flight[].pred_mj", -MAX_J, MAX_J, 1, &f->pred.energy_mj, err));
    TRY(search_json_real(jf, WHAT, "in_flight[].allow_j", 0, MAX_J, 1, &f->allow_j, err));
    if (isnan(f->allow_j))
        f->allow_j = INFINITY;   /* saved as null: no joule budget */
    TRY(search_json_real(jf, WHAT, "in_flight[].est_s", 0, MAX_S, 0, &f->est_s, err));
    TRY(search_json_real(jf, WHAT, "in_flight[].hint", 0, DBL_MAX, 0, &f->hint, err));
    TRY(lineage_from_json(jf, "in_flight[].rung", "in_flight[].parent", f->id, &f->rung, &f->parent, err));
cleanup:
    return st;
}

/* The options of the loop (the strategy's come with the strategy). */
static nas_status opts_from_json(const json_t *root, search_loop_opts *o, nas_err *err)
{
    nas_status st;
    int target;
    memset(o, 0, sizeof *o);
    json_t *jo = json_object_get(root, "objective"), *jl = json_object_get(root, "limits");
    json_t *jm = json_object_get(root, "measure");
    if (!json_is_object(jo))
        return bad_field(err, "objective");
    TRY(get_i(jo, "objective.target", SEARCH_TARGET_NONE, SEARCH_TARGET_MS, &target, err));
    o->objective.target = (search_target)target;
    TRY(search_json_real(jo, WHAT, "objective.t", 0, 1e12, 1, &o->objective.t, err));
    TRY(get_i(jo, "objective.hard", 0, 1, &o->objective.hard, err));
    TRY(search_json_real(jo, WHAT, "objective.alpha", -10, 0, 0, &o->objective.alpha, err));
    TRY(search_json_real(jo, WHAT, "objective.beta", -10, 0, 0, &o->objective.beta, err));
    TRY(search_json_real(jo, WHAT, "objective.ref_mj", 0, MAX_J, 0, &o->objective.ref_energy_mj, err));
    if (!json_is_object(jl))
        return bad_field(err, "limits");
    TRY(search_json_real(jl, WHAT, "limits.joules", 0, MAX_J, 0, &o->limits.joules, err));
    TRY(search_json_int(jl, WHAT, "limits.evals", 0, MAX_N, &o->limits.evals, err));
    TRY(search_json_real(jl, WHAT, "limits.seconds", 0, MAX_S, 0, &o->limits.seconds, err));
    TRY(search_json_real(jl, WHAT, "limits.first_joules", 0, MAX_J, 0, &o->limits.first_joules, err));
    TRY(search_json_real(jl, WHAT, "limits.sigmas", 0, 100, 0, &o->limits.sigmas, err));
    /* absent in states saved before the budget's prior existed: none */
    TRY(opt_real(jl, "limits.prior_j0", MAX_J, &o->limits.prior_j0, err));
    TRY(opt_real(jl, "limits.prior_j_per_hint", MAX_J, &o->limits.prior_j_per_hint, err));
    TRY(opt_real(jl, "limits.min_hint", DBL_MAX, &o->limits.min_hint, err));
    TRY(opt_real(jl, "limits.measure_joules", MAX_J, &o->limits.measure_joules, err));   /* absent before 2026-12-07 */
    TRY(search_json_real(root, WHAT, "screen_factor", 0, 1e6, 0, &o->screen_factor, err));
    TRY(get_i(root, "reuse_seen", 0, 1, &o->reuse_seen, err));
    /* a proposal that is screened or seen before costs a save of the state: a
     * limit of millions would be hours of them */
    TRY(get_i(root, "stall_limit", 1, 100000, &o->stall_limit, err));
    if (!json_is_object(jm))
        return bad_field(err, "measure");
    TRY(get_i(jm, "measure.every", 0, 100000000, &o->measure_every, err));
    TRY(get_i(jm, "measure.top", 0, 64, &o->measure_top, err));
    o->rungs = 1;   /* absent in states saved before multi-fidelity: off */
    o->eta = 3;
    json_t *jr = json_object_get(root, "rungs");
    if (jr) {
        TRY(get_i(jr, "rungs.n", 1, SEARCH_MAX_RUNGS, &o->rungs, err));
        TRY(get_i(jr, "rungs.eta", 2, 100, &o->eta, err));
    }
cleanup:
    return st;
}

/* What the budget has counted: spent, the cost statistics, measurements and the cost line. */
static nas_status budget_from_json(const json_t *root, search_loop *l, nas_err *err)
{
    nas_status st;
    search_budget *b = &l->budget;
    json_t *jb = json_object_get(root, "budget"), *jk = json_object_get(root, "checks");
    json_t *jr = json_object_get(root, "cost_fit");
    if (!json_is_object(jb))
        return bad_field(err, "budget");
    TRY(search_json_real(jb, WHAT, "budget.joules", 0, MAX_J, 0, &b->joules, err));
    TRY(search_json_real(jb, WHAT, "budget.joules_hi", 0, MAX_J, 0, &b->joules_hi, err));
    TRY(search_json_int(jb, WHAT, "budget.evals", 0, MAX_N, &b->evals, err));
    TRY(search_json_real(jb, WHAT, "budget.seconds", 0, MAX_S, 0, &b->seconds, err));
    TRY(search_json_int(jb, WHAT, "budget.n_cost", 0, MAX_N, &b->n_cost, err));
    TRY(search_json_real(jb, WHAT, "budget.j_mean", 0, MAX_J, 0, &b->j_mean, err));
    TRY(search_json_real(jb, WHAT, "budget.j_m2", 0, DBL_MAX, 0, &b->j_m2, err));
    TRY(search_json_real(jb, WHAT, "budget.s_mean", 0, MAX_S, 0, &b->s_mean, err));
    TRY(search_json_real(jb, WHAT, "budget.s_m2", 0, DBL_MAX, 0, &b->s_m2, err));
    TRY(get_i(jb, "budget.estimated", 0, 1, &b->estimated, err));
    b->sampled = 0;   /* absent in states saved before it existed */
    if (json_object_get(jb, "sampled"))
        TRY(get_i(jb, "budget.sampled", 0, 1, &b->sampled, err));
    b->lost_joules = 0;   /* absent in states saved before it existed */
    if (json_object_get(jb, "lost_j"))
        TRY(search_json_real(jb, WHAT, "budget.lost_j", 0, MAX_J, 0, &b->lost_joules, err));
    b->calib_joules = 0;
    if (json_object_get(jb, "calib_j"))
        TRY(search_json_real(jb, WHAT, "budget.calib_j", 0, MAX_J, 0, &b->calib_joules, err));
    TRY(get_s(jb, "budget.meter", b->meter, sizeof b->meter, err));
    if (!json_is_object(jk))
        return bad_field(err, "checks");
    TRY(search_json_int(jk, WHAT, "checks.next_at", 0, 2 * MAX_N, &l->next_measure_at, err));
    TRY(get_i(jk, "checks.n_mj", 0, MAX_N, &l->n_checked_mj, err));
    TRY(get_i(jk, "checks.n_ms", 0, MAX_N, &l->n_checked_ms, err));
    TRY(get_i(jk, "checks.within10_mj", 0, l->n_checked_mj, &l->within10_mj, err));
    TRY(search_json_real(jk, WHAT, "checks.ape_mj", 0, DBL_MAX, 0, &l->ape_mj, err));
    TRY(search_json_real(jk, WHAT, "checks.ape_ms", 0, DBL_MAX, 0, &l->ape_ms, err));
    TRY(search_json_int(jk, WHAT, "checks.n_meas", 0, MAX_N, &b->n_meas, err));
    TRY(search_json_real(jk, WHAT, "checks.m_max_j", 0, MAX_J, 0, &b->m_max_j, err));
    TRY(search_json_real(jk, WHAT, "checks.m_max_s", 0, MAX_S, 0, &b->m_max_s, err));
    if (!json_is_object(jr))
        return bad_field(err, "cost_fit");
    TRY(search_json_int(jr, WHAT, "cost_fit.n", 0, MAX_N, &b->n_hint, err));
    TRY(search_json_real(jr, WHAT, "cost_fit.h_mean", 0, DBL_MAX, 0, &b->h_mean, err));
    TRY(search_json_real(jr, WHAT, "cost_fit.j_mean", 0, MAX_J, 0, &b->hj_mean, err));
    TRY(search_json_real(jr, WHAT, "cost_fit.c_hh", 0, DBL_MAX, 0, &b->c_hh, err));
    TRY(search_json_real(jr, WHAT, "cost_fit.c_hj", -DBL_MAX, DBL_MAX, 0, &b->c_hj, err));
    TRY(search_json_real(jr, WHAT, "cost_fit.c_jj", 0, DBL_MAX, 0, &b->c_jj, err));
    TRY(search_json_real(jr, WHAT, "cost_fit.j_min", 0, MAX_J, 0, &b->j_min, err));
    TRY(search_json_int(jr, WHAT, "cost_fit.over_budget", 0, MAX_N, &l->over_budget, err));
    TRY(opt_real(jr, "cost_fit.prior_sum", MAX_J, &b->prior_sum, err));
    TRY(opt_real(jr, "cost_fit.meas_sum", MAX_J, &b->meas_sum, err));
    TRY(opt_real(jr, "cost_fit.floor_max", MAX_J, &b->floor_max, err));
    TRY(opt_real(jr, "cost_fit.floor_per_hint", MAX_J, &b->floor_per_hint, err));
cleanup:
    return st;
}

/* Results are handed back in id order: the order they ended in, for a loop
 * that evaluates one at a time. */
static int by_id(const void *a, const void *b)
{
    long x = ((const search_result *)a)->id, y = ((const search_result *)b)->id;
    return (x > y) - (x < y);
}

static int strategy_has_pending(const search_strategy *s, long id)
{
    for (int i = 0; i < s->n_pending; i++)
        if (s->pending[i].ticket == id)
            return 1;
    return 0;
}

static nas_status check_genome(const search_space *space, const search_result *r, nas_err *err)
{
    if (r->genome.n != space->n_genes)
        return nas_errf(err, NAS_EINVAL, WHAT ": the result of candidate %ld has %d genes, the space %d", r->id,
                        r->genome.n, space->n_genes);
    for (int g = 0; g < space->n_genes; g++)
        if (r->genome.g[g] >= space->card[g])
            return nas_errf(err, NAS_EINVAL, WHAT ": the result of candidate %ld: gene %d out of range (0..%d)",
                            r->id, g, space->card[g] - 1);
    return NAS_OK;
}

/* A past result scored again as the loop scored it (the caller's copy need
 * not carry the score: a run store's reward predates later measurements). */
static search_result *rescored(const search_loop *l, search_result *r)
{
    const search_objective *o = &l->opts.objective;
    objective_figures(r);
    int ok = !r->screened && r->eval.status == SEARCH_EVAL_OK && isfinite(r->eval.accuracy);
    r->reward = ok ? search_reward(o, r->eval.accuracy, r->energy_mj, r->latency_ms) : 0;
    r->feasible = ok && search_feasible(o, r->energy_mj, r->latency_ms);
    r->on_front = r->is_best = 0;   /* as of the moment it ended, which a restore does not replay */
    return r;
}

/* The history of a state saved without it: the results that ended before the
 * save, evaluated or screened, taken from the caller (the run store's rows).
 * A result of a candidate the state does not know as ended (asked after the
 * save, or still in flight in it: a row a crash failed later) is not part of
 * it and is left out; the rest must be exactly what the state counted. */
static nas_status history_from_past(search_loop *l, const json_t *root, const search_result *past, int n_past,
                                    nas_err *err)
{
    nas_status st = NAS_OK;
    long want;
    json_t *jh = json_object_get(root, "history");
    if (!json_is_object(jh))
        return bad_field(err, "history");
    if ((st = search_json_int(jh, WHAT, "history.n", 0, l->strat->next_ticket, &want, err)))
        return st;
    search_result *keep = n_past > 0 ? nas_malloc((size_t)n_past * sizeof *keep) : NULL;
    if (n_past > 0 && !keep)
        return nas_errf(err, NAS_ENOMEM, WHAT ": out of memory");
    long n = 0;
    for (int i = 0; i < n_past; i++)
        if (past[i].id >= 0 && past[i].id < l->strat->next_ticket && !strategy_has_pending(l->strat, past[i].id))
            keep[n++] = past[i];
    if (n != want) {
        st = nas_errf(err, NAS_EINVAL, WHAT ": saved after %ld results (evaluated or screened), but %ld of "
                      "them were handed back: the results and the state are not of the same run", want, n);
        goto cleanup;
    }
    if (n > 1)   /* keep is NULL when nothing was handed back, and qsort must not see NULL */
        qsort(keep, (size_t)n, sizeof *keep, by_id);
    for (long i = 0; i < n && !st; i++) {
        if (i > 0 && keep[i].id == keep[i - 1].id)
            st = nas_errf(err, NAS_EINVAL, WHAT ": candidate %ld's result was handed back twice", keep[i].id);
        else if (keep[i].cached)
            st = nas_errf(err, NAS_EINVAL, WHAT ": candidate %ld: a result seen before is not part of the "
                          "history", keep[i].id);
        else if (!(st = check_genome(&l->space, &keep[i], err)))
            st = push_result(l, rescored(l, &keep[i]), err);
    }
    if (!st)
        st = rescore(l, err);
cleanup:
    nas_free(keep);
    return st;
}

/* A full state's results as the store would hand them back: each id once,
 * none of them still in flight. A state that broke this loaded, but once
 * saved without its history it no longer restored (found by fuzzing). */
static nas_status history_ids_check(const search_loop *l, nas_err *err)
{
    if (l->n_res == 0)
        return NAS_OK;
    search_result *ids = nas_malloc((size_t)l->n_res * sizeof *ids);
    if (!ids)
        return nas_errf(err, NAS_ENOMEM, WHAT ": out of memory");
    memcpy(ids, l->res, (size_t)l->n_res * sizeof *ids);
    if (l->n_res > 1)
        qsort(ids, (size_t)l->n_res, sizeof *ids, by_id);
    nas_status st = NAS_OK;
    for (int i = 0; i < l->n_res && !st; i++) {
        if (i > 0 && ids[i].id == ids[i - 1].id)
            st = nas_errf(err, NAS_EINVAL, WHAT ": results: candidate %ld has two results", ids[i].id);
        else if (strategy_has_pending(l->strat, ids[i].id))
            st = nas_errf(err, NAS_EINVAL, WHAT ": results: candidate %ld has a result but is still in flight",
                          ids[i].id);
    }
    nas_free(ids);
    return st;
}

/* The history a full state holds: its results, in the order they ended. */
static nas_status history_from_json(search_loop *l, const json_t *root, nas_err *err)
{
    nas_status st = NAS_OK;
    json_t *jc = json_object_get(root, "counts"), *res = json_object_get(root, "results");
    long next_ticket = l->strat->next_ticket;
    if ((st = get_i(jc, "counts.best", -1, MAX_N, &l->best, err)))
        return st;
    if (!json_is_array(res) || (long)json_array_size(res) > next_ticket)
        return bad_field(err, "results");
    for (size_t i = 0; i < json_array_size(res); i++) {
        search_result r;
        TRY(result_from_json(json_array_get(res, i), &l->space, next_ticket, &r, err));
        TRY(push_result(l, &r, err));
        /* the front is rebuilt by adding the same points in the same order */
        if (!r.screened && !r.cached && r.eval.status == SEARCH_EVAL_OK && isfinite(r.energy_mj) &&
            search_front_add(&l->front, r.id, r.eval.accuracy, r.energy_mj) < 0)
            return nas_errf(err, NAS_ENOMEM, WHAT ": out of memory");
    }
    if (l->best >= l->n_res)
        return bad_field(err, "counts.best");
    st = history_ids_check(l, err);
cleanup:
    return st;
}

nas_status search_loop_restore(const search_space *space, const char *json, const search_result *past,
                               int n_past, search_loop **out, nas_err *err)
{
    nas_status st = NAS_OK;
    search_loop *l = NULL;
    *out = NULL;
    json_error_t je;
    json_t *root = nas_json_load(json, json ? strlen(json) : 0, 0, &je, &st);
    if (!root)
        return nas_errf(err, st, WHAT ": line %d: %s", je.line, je.text);
    long version;
    if (search_json_int(root, WHAT, "version", LOOP_VERSION, LOOP_VERSION_NO_HISTORY, &version, NULL)) {
        st = nas_errf(err, NAS_EINVAL, WHAT ": field 'version' must be %d (with its history) or %d (without)",
                      LOOP_VERSION, LOOP_VERSION_NO_HISTORY);
        goto cleanup;
    }
    search_loop_opts o;
    TRY(opts_from_json(root, &o, err));
    TRY(loop_alloc(space, &o, &l, err));
    TRY(search_strategy_from_json(space, json_object_get(root, "strategy"), &l->strat, err));
    l->opts.strategy = l->strat->opts;
    TRY(budget_from_json(root, l, err));
    json_t *jc = json_object_get(root, "counts");
    if (!json_is_object(jc)) {
        st = bad_field(err, "counts");
        goto cleanup;
    }
    TRY(search_json_int(jc, WHAT, "counts.proposals", 0, MAX_N, &l->proposals, err));
    TRY(search_json_int(jc, WHAT, "counts.screened", 0, l->proposals, &l->screened, err));
    TRY(search_json_int(jc, WHAT, "counts.cached", 0, l->proposals, &l->cached, err));
    TRY(get_i(jc, "counts.stall", 0, MAX_N, &l->stall, err));
    TRY(search_json_real(jc, WHAT, "counts.max_mj", 0, MAX_J, 0, &l->max_energy, err));
    json_t *fl = json_object_get(root, "in_flight");
    long next_ticket = l->strat->next_ticket;
    if (!json_is_array(fl) || (long)json_array_size(fl) > search_strategy_pending(l->strat)) {
        st = bad_field(err, "in_flight");
        goto cleanup;
    }
    if (version == LOOP_VERSION)
        TRY(history_from_json(l, root, err));
    else
        TRY(history_from_past(l, root, past, n_past, err));
    for (size_t i = 0; i < json_array_size(fl); i++) {
        flight_t f;
        TRY(flight_from_json(json_array_get(fl, i), space, next_ticket, &f, err));
        if (flight_push(l, &f)) {
            st = nas_errf(err, NAS_ENOMEM, WHAT ": out of memory");
            goto cleanup;
        }
        search_budget_start(&l->budget, f.allow_j, f.est_s);
    }
    *out = l;
    l = NULL;
cleanup:
    search_loop_free(l);
    json_decref(root);
    return st;
}

nas_status search_loop_load(const search_space *space, const char *json, search_loop **out, nas_err *err)
{
    return search_loop_restore(space, json, NULL, 0, out, err);
}
