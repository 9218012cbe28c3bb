/* search.h — the search loop: strategies that propose genomes, the objective
 * that scores what was evaluated, the budget that stops the search, and the
 * loop that drives them through callbacks.
 *
 * Layers, bottom up:
 *   search_space     the genome as a strategy sees it: n categorical genes with
 *                    given cardinalities, plus optional sample/mutate operators
 *                    (space/'s, through search_space_from_config);
 *   search_strategy  evolution | rl | random behind one ask/tell interface,
 *                    asynchronous (many asks may be in flight, tells come back
 *                    in any order) and serialisable to JSON for exact resume;
 *   objective        MnasNet's reward, the Pareto front of accuracy against
 *                    energy per inference and its hypervolume;
 *   search_budget    joules (as the meter reports them, with their uncertainty),
 *                    evaluations and seconds, checked before a candidate starts;
 *   search_loop      asks, screens with the predictor, evaluates, tells, keeps the
 *                    front and the best, reports through callbacks.
 * search/ includes no evaluator, predictor or run-store header: cli/cmd_search.c
 * wires those in through the callbacks.
 */
#ifndef SEARCH_H
#define SEARCH_H

#include "base/nas.h"
#include "space/space.h"

/* ---- the genome as strategies see it ------------------------------------ */

typedef struct {
    int n_genes;
    int card[SPACE_MAX_GENES];     /* choices per gene, 1..255 */
    /* Optional operators; NULL: uniform per gene, and "n distinct genes each to
     * a different value". They must draw only from the rng they are given, so
     * that a strategy's saved rng state determines what comes next. */
    void (*sample)(void *ctx, nas_pcg32 *rng, space_genome *out);
    void (*mutate)(void *ctx, nas_pcg32 *rng, space_genome *g, int n_mutations);
    void *ctx;
} search_space;

/* A space of n genes with the given cardinalities and the built-in operators. */
NAS_MUST_USE nas_status search_space_init(search_space *s, int n_genes, const int *card, nas_err *err);
/* space/'s genome (cfg must outlive s): its cardinalities and its sample/mutate. */
NAS_MUST_USE nas_status search_space_from_config(search_space *s, const space_config *cfg, nas_err *err);
void search_space_sample(const search_space *s, nas_pcg32 *rng, space_genome *out);
void search_space_mutate(const search_space *s, nas_pcg32 *rng, space_genome *g, int n_mutations);
int  search_genome_equal(const space_genome *a, const space_genome *b);

/* ---- strategies ---------------------------------------------------------- */

typedef enum { SEARCH_EVOLUTION, SEARCH_RL, SEARCH_RANDOM } search_kind;

const char *search_kind_name(search_kind k);
int search_kind_from_name(const char *s);   /* -1 when unknown */

typedef struct {
    search_kind kind;
    uint64_t seed;
    /* Regularized (aging) evolution, Real et al. 2019 (arXiv:1802.01548):
     * keep the `population` most recent models; a child is a mutation of the
     * best of `sample_size` members drawn at random (with replacement, as in the
     * paper's reference code); the oldest dies. The first `population` asks are
     * random samples. The paper's P=100, S=25 suit ~20,000 evaluations; for a
     * small budget search_opts_default scales them: P = clamp(evals / 8, 8, 100),
     * S = max(2, P / 4), so a 100-evaluation search runs P=12, S=3 and still
     * spends most of its budget on evolution rather than on the random start. */
    int population;
    int sample_size;
    int n_mutations;          /* genes changed per child (paper: 1) */
    /* RL controller: independent categorical policies per gene (softmax over
     * logits), REINFORCE with a moving-average baseline (Williams 1992), the
     * advantage divided by a moving standard deviation of rewards so that the
     * learning rate does not depend on the reward's scale, and entropy
     * regularisation. With ppo_epochs > 0 it is PPO (Schulman et al. 2017):
     * batches of `batch` results, ppo_epochs passes of the clipped surrogate.
     * A batch averages its gradients, so lr should grow with it: 0.15 suits
     * batch 1 (the default), about 1.0 suits PPO with batch 8 and 4 epochs. */
    double lr;
    double baseline_decay;    /* b <- decay*b + (1-decay)*r */
    double entropy_coef;
    int batch;                /* results per update (REINFORCE: 1 = every tell) */
    int ppo_epochs;           /* 0: REINFORCE */
    double ppo_clip;
} search_opts;

/* Defaults for kind; budget_evals (0: unknown) scales the evolution sizes. */
void search_opts_default(search_opts *o, search_kind kind, long budget_evals);

typedef struct search_strategy search_strategy;

/* How a proposal ended, as the strategy needs to know it. */
typedef enum {
    SEARCH_TELL_OK,        /* evaluated; reward is meaningful */
    SEARCH_TELL_FAILED,    /* evaluated but diverged or failed: reward is taken as 0 */
    SEARCH_TELL_SCREENED,  /* rejected before training (cost nothing): evolution drops
                              it, RL learns from reward 0 */
} search_tell_kind;

NAS_MUST_USE nas_status search_strategy_new(const search_space *space, const search_opts *opts,
                                            search_strategy **out, nas_err *err);
void search_strategy_free(search_strategy *s);
search_kind search_strategy_kind(const search_strategy *s);
/* The next genome to evaluate, with a ticket (0, 1, 2, ... in ask order). */
NAS_MUST_USE nas_status search_ask(search_strategy *s, space_genome *g, long *ticket, nas_err *err);
/* The result of an earlier ask, in any order. Unknown tickets are an error.
 * cost is what the network costs in any unit the caller keeps to (the loop
 * gives its cost hint, MACs in nas: deterministic, where a measured figure
 * would make a same-seed rerun diverge), NAN when it has none: evolution's
 * tournament prefers members no other one beats on both reward and cost. */
NAS_MUST_USE nas_status search_tell(search_strategy *s, long ticket, const space_genome *g, double reward,
                                    double cost, search_tell_kind kind, nas_err *err);
/* Tickets asked and not yet told. */
int search_strategy_pending(const search_strategy *s);
/* JSON of the whole state (options, rng, population or policy, pending tickets);
 * nas_malloc'd, NULL when out of memory or a value cannot be written (never a
 * state with a key left out). Restoring it into the same space gives a
 * strategy that continues exactly as the saved one would have; loading checks
 * every field against its range. */
char *search_strategy_save(const search_strategy *s);
NAS_MUST_USE nas_status search_strategy_load(const search_space *space, const char *json, search_strategy **out,
                                             nas_err *err);
/* RL only: the policy's probability of `choice` at `gene` (tests, reports). -1 otherwise. */
double search_rl_prob(const search_strategy *s, int gene, int choice);

/* ---- objective ----------------------------------------------------------- */

typedef enum {
    SEARCH_TARGET_NONE,   /* reward = accuracy */
    SEARCH_TARGET_MJ,     /* energy per inference, millijoules */
    SEARCH_TARGET_MS,     /* latency per inference, milliseconds */
} search_target;

/* MnasNet (Tan et al. 2019, eq. 2): reward = ACC * (X/T)^w, w = alpha when
 * X <= T, beta otherwise. Soft constraint: alpha = beta = -0.07; hard: alpha = 0,
 * beta = -1. */
typedef struct {
    search_target target;
    double t;                  /* T, in the target's unit */
    int hard;
    double alpha, beta;        /* set by search_objective_init from `hard` */
    double ref_energy_mj;      /* hypervolume reference energy (mJ). 0: twice an energy target, else
                                  1.1 x the dearest energy seen, which is run-relative: set it to
                                  compare hypervolumes across runs or strategies */
} search_objective;

void search_objective_init(search_objective *o, search_target target, double t, int hard);
/* energy_mj / latency_ms: the figure the target is in (<= 0 or NaN: unknown,
 * which gives reward = accuracy and counts as infeasible under a hard target). */
double search_reward(const search_objective *o, double accuracy, double energy_mj, double latency_ms);
/* Meets a hard target (always 1 for soft or no target). */
int search_feasible(const search_objective *o, double energy_mj, double latency_ms);

/* The Pareto front of (accuracy up, energy per inference down), kept
 * incrementally, sorted by energy ascending (so accuracy ascending too). */
typedef struct {
    long id;
    double accuracy, energy_mj;
} search_point;

typedef struct {
    int n, cap;
    search_point *p;
} search_front;

void search_front_init(search_front *f);
void search_front_free(search_front *f);
/* Adds the point unless an existing one weakly dominates it (>= accuracy and
 * <= energy); removes the points it dominates. Returns 1 if it joined, 0 if not,
 * -1 out of memory. Points with a non-finite or negative energy never join. */
int search_front_add(search_front *f, long id, double accuracy, double energy_mj);
/* Area dominated by the front inside [0, ref] in energy and [0, 1] in accuracy:
 * the reference point is (accuracy 0, energy ref_mj); points at or above ref_mj
 * add nothing. */
double search_front_hypervolume(const search_front *f, double ref_mj);

/* ---- budget ------------------------------------------------------------- */

typedef struct {
    double joules;             /* 0: no limit */
    long evals;                /* 0: no limit */
    double seconds;            /* 0: no limit */
    /* Cost the first candidate is assumed to have before any was measured
     * (0: unknown; then the first candidate starts whenever the budget is not
     * spent, and its evaluator is given the allowance to stop within). */
    double first_joules;
    double sigmas;             /* safety margin on the per-evaluation estimate (default 2) */
    /* With cost hints: what the caller expects a candidate to cost before any
     * was measured, prior_j0 + prior_j_per_hint x hint joules (counted with the
     * meter's uncertainty; 0 and 0: no prior). Each measured candidate refines
     * it (scaled by measured / expected so far) until the least-squares line of
     * search_budget_estimate_joules takes over. */
    double prior_j0, prior_j_per_hint;
    /* The smallest cost hint a candidate of the space can have (0: unknown).
     * With it, a proposal too dear for what is left is skipped (reported
     * over_budget) and the search goes on while the cheapest candidate of the
     * space still fits; without it the first such proposal ends the search. */
    double min_hint;
    /* What one measurement (search_callbacks.measure) is assumed to cost
     * before any was made, counted with the meter's uncertainty (0: the
     * cheapest evaluation stands in, which undercounts a benchmark dearer than
     * a short training); then the dearest measurement so far. */
    double measure_joules;
} search_limits;

/* Per-evaluation costs are tracked as running mean and variance (Welford). The
 * joules counted against the budget are the meter's figure raised by its stated
 * relative uncertainty, so an under-reading meter cannot let the search overrun. */
typedef struct {
    search_limits lim;
    double joules;             /* reported by the meters */
    double joules_hi;          /* reported + uncertainty: what the budget is checked against */
    long evals;                /* finished evaluations (screened candidates are not evaluations) */
    double seconds;            /* elapsed, carried across resumes */
    long n_cost;               /* cost statistics over finished evaluations */
    double j_mean, j_m2, s_mean, s_m2;
    /* in flight: each candidate holds a reservation of joules (its allowance),
     * reservations never overlap, so evaluators that stop within their
     * allowance cannot together cross the budget */
    int in_flight;
    double reserved_joules, flight_seconds;
    long n_meas;               /* measurements after training (measure callback) */
    double m_max_j, m_max_s;   /* the dearest one so far: the next is assumed to cost as much */
    /* with a cost hint per candidate (e.g. its MACs): a least-squares line of
     * joules on hint, kept as running means and co-moments (Welford) */
    long n_hint;
    double h_mean, hj_mean, c_hh, c_hj, c_jj;
    double j_min;              /* the cheapest evaluation so far (joules, with uncertainty) */
    char meter[32];            /* the source of the last figure ("rapl:package-0", "model:cpu-time") */
    int estimated;             /* 1 if any figure was estimated rather than measured */
    int sampled;               /* 1 if any figure was sampled (power x time); see search_budget_quality */
    double lost_joules;        /* of attempts a crash cut short, charged so far (in joules) */
    double calib_joules;       /* of calibrating the predictor the search ranks with (in joules) */
    double prior_sum, meas_sum;   /* over hinted evaluations: the prior's joules, and what they cost */
    /* The floor: what a started candidate costs however early it is stopped
     * (set-up, a first step, validation). The dearest floor seen, and the
     * dearest per unit of hint, bound every estimate from below. */
    double floor_max, floor_per_hint;
} search_budget;

typedef enum {
    SEARCH_STOP_NONE,
    SEARCH_STOP_EVALS,
    SEARCH_STOP_JOULES,
    SEARCH_STOP_SECONDS,
    SEARCH_STOP_STALLED,       /* many proposals in a row screened or already seen */
    SEARCH_STOP_REQUESTED,     /* should_stop() said so (e.g. Ctrl-C) */
} search_stop;

const char *search_stop_name(search_stop s);

/* What a figure of joules is, as the meter that gave it says (ev_quality's
 * kinds); 0 and 1 are what an "estimated" flag says. */
typedef enum { SEARCH_Q_MEASURED = 0, SEARCH_Q_ESTIMATED = 1, SEARCH_Q_SAMPLED = 2 } search_quality;
const char *search_quality_name(search_quality q);   /* "measured", "estimated", "sampled" */

void search_budget_init(search_budget *b, const search_limits *lim);
/* The word for all the budget has counted: "estimated" if any figure was,
 * else "sampled" if any was, else "measured". */
const char *search_budget_quality(const search_budget *b);
/* Estimated cost of one more evaluation: mean + sigmas * sd of what they cost so far. */
double search_budget_next_joules(const search_budget *b);
double search_budget_next_seconds(const search_budget *b);
/* The same for a candidate with a cost hint (> 0; e.g. its MACs): the line
 * joules = a + b * hint fit by least squares to the evaluations so far, plus
 * sigmas standard errors of a prediction there (which widen away from the
 * hints seen); the generic estimate until three evaluations with hints exist
 * (not all equal), or when the fit slopes down. Evaluations cost a fixed part
 * (data, validation, benchmarking) plus one that grows with the network, so a
 * line fits where a ratio (joules per MAC) would overcharge large networks for
 * small ones' overhead. */
double search_budget_estimate_joules(const search_budget *b, double hint);
/* The estimate for the cheapest candidate of the space (limits.min_hint;
 * 0 when it or a prior is unknown): a joule budget below it cannot train any. */
double search_budget_cheapest_joules(const search_budget *b);
/* Whether a candidate expected to cost est_j may start now, with free_slots
 * evaluation slots free (1 when evaluating one at a time); if not, which budget
 * stops it. */
search_stop search_budget_check(const search_budget *b, int free_slots, double est_j);
/* The joules a candidate starting now may spend (inf: no joule limit): the
 * unreserved rest shared among the free slots, but at least est_j when that
 * much is unreserved, and at most ALLOWANCE_FACTOR (2) x est_j when there is
 * an estimate, so that one candidate dearer than expected is stopped early
 * (and still yields a result) rather than eating what others would use. The
 * evaluator must stop before its spending, raised by its meter's uncertainty,
 * crosses it. */
double search_budget_allowance(const search_budget *b, int free_slots, double est_j);
void search_budget_start(search_budget *b, double allowance_j, double est_seconds);
/* A finished evaluation: what it cost, its meter, and the meter's relative
 * uncertainty (0.05 = +-5%). allowance_j / est_seconds: what start was given;
 * hint: the candidate's cost hint (0: none). */
void search_budget_finish(search_budget *b, double allowance_j, double est_seconds, double joules,
                          double rel_unc, double seconds, const char *meter, search_quality q, double hint);
/* An evaluation that ended outside the loop (search_callbacks.on_start): its
 * reservation is freed and it counts as an evaluation, but what it cost is
 * charged apart (search_budget_charge_lost) and teaches the estimates nothing. */
void search_budget_abandon(search_budget *b, double allowance_j, double est_seconds);
/* A finished evaluation's floor (search_eval.floor_joules, with uncertainty;
 * <= 0: unknown) and its hint: from then on no estimate is below
 * max(floor_max, floor_per_hint x hint), as no allowance below the floor can be
 * kept (the first check comes after the first step, and validation follows). */
void search_budget_floor(search_budget *b, double floor_hi, double hint);
/* Measurements of trained candidates: admitted like evaluations (but not
 * counted as ones), with search_budget_measure_estimate as the estimate. */
search_stop search_budget_check_measure(const search_budget *b, int free_slots);
double search_budget_measure_estimate(const search_budget *b);   /* joules, with the uncertainty */
void search_budget_measured(search_budget *b, double joules, double rel_unc, double seconds, const char *meter,
                            search_quality q);
/* Joules spent by attempts that a crash cut short (the run store's running
 * total over every resume): what total adds beyond what was charged before is
 * spent now, so each lost joule is charged once however often the search
 * resumes. */
void search_budget_charge_lost(search_budget *b, double total_lost, double rel_unc, const char *meter,
                               search_quality q);
/* Joules spent calibrating the predictor before the search (its cost is the
 * search's: it ranks with that predictor), charged now and shown apart. */
void search_budget_charge_calibration(search_budget *b, double joules, double rel_unc, const char *meter,
                                      search_quality q);
/* Fraction of the tightest budget used, 0..1 (0 when there is no limit). */
double search_budget_fraction(const search_budget *b);

/* ---- the loop ------------------------------------------------------------ */

typedef struct {
    double latency_ms, energy_mj;   /* predicted per inference; <= 0: unknown */
} search_prediction;

/* Before any training: the lowest predicted energy (target in mJ) or latency
 * (ms) per inference over n networks sampled from sp with seed (search/target.c).
 * A hard target below it is one the search can hardly meet, and the caller
 * says so at the start. *lowest is NAN without a target, a predictor or any
 * positive prediction; a failed prediction is the error. */
NAS_MUST_USE nas_status search_target_floor(const search_space *sp, const search_objective *obj,
                                            nas_status (*predict)(void *ctx, const space_genome *g,
                                            search_prediction *out, nas_err *err),
                                            void *ctx, int n, uint64_t seed, double *lowest, nas_err *err);

typedef enum { SEARCH_EVAL_OK, SEARCH_EVAL_DIVERGED, SEARCH_EVAL_FAILED } search_eval_status;

typedef struct {
    search_eval_status status;
    double accuracy;           /* 0..1 */
    double energy_mj;          /* measured per inference; <= 0: not measured */
    double latency_ms;         /* measured per inference; <= 0: not measured */
    double joules;             /* what the evaluation cost (training and measuring) */
    double joules_rel_unc;     /* the meter's relative uncertainty */
    int joules_estimated;      /* 1: modelled (e.g. model:cpu-time), 0: measured */
    int joules_sampled;        /* 1 (joules_estimated 0): power samples integrated over time
                                  (NVML by power), not an energy counter; see search_eval_quality */
    char meter[32];            /* the meter's source string */
    double seconds;            /* <= 0: the loop times the call itself */
    int stopped_early;         /* status OK, but training stopped at its joule allowance: accuracy
                                  is that of the network as trained when it stopped */
    int recorded;              /* not evaluated: it ended outside the loop (search_callbacks.on_start),
                                  and its end is recorded there already; status FAILED */
    double floor_joules;       /* what it would have cost had it stopped after its first step (set-up,
                                  one step, and what follows the last: validation, weights), with
                                  uncertainty: no allowance below it can be kept; 0: not known */
} search_eval;

/* The quality word of an evaluation's joules and of the energy figures its
 * meter gave: "estimated", "sampled" or "measured" (ev_quality's names). The
 * one definition that output and storage take it from. */
const char *search_eval_quality(const search_eval *e);
search_quality search_eval_q(const search_eval *e);

/* One candidate: proposed, screened or evaluated, and scored. */
typedef struct {
    long id;                   /* the strategy's ticket: proposals numbered from 0 */
    space_genome genome;
    search_prediction pred;
    int screened;              /* rejected before training; eval is empty */
    int cached;                /* a genome evaluated before: its result reused, no cost */
    search_eval eval;
    double energy_mj, latency_ms;   /* what the objective used: measured, else predicted */
    double reward;
    int feasible;              /* meets the hard target */
    int on_front;              /* joined the Pareto front */
    int is_best;               /* became the best feasible candidate */
    int over_budget;           /* not started: its estimated cost would cross the joule budget
                                  (reported like a screened one; the search stops) */
    int measured_later;        /* energy/latency measured after training by measure(): on_result
                                  is called again for this id, with reward and feasibility redone */
    double measure_joules;     /* what that measuring cost (its meter's figure; eval.joules stays
                                  what training cost) */
    int rung;                  /* multi-fidelity: 0, the first (shortest) training; k, promoted k
                                  times, each time trained on from the weights of the rung below */
    long parent;               /* rung > 0: the id of the result it trained on from; -1 otherwise */
} search_result;

typedef struct {
    long proposals, evals, screened, cached;
    long over_budget;          /* proposals not started because they would cross the joule budget */
    double best_reward;        /* NaN until a feasible candidate */
    long best_id;
    int front_size;
    double hypervolume;
    double joules, joules_budget;   /* spent (as reported) and limit (0: none) */
    double seconds, eta_seconds;    /* eta NaN when unknown */
    const char *meter;
    int estimated;
    /* the predictor against measurements (candidates measured with a prediction) */
    int n_checked;
    double pred_mape_mj, pred_mape_ms;      /* mean absolute percentage error, NaN when none */
    double pred_within10_mj;                /* share within +-10% (nn-Meter's yardstick) */
} search_progress;

typedef struct search_loop search_loop;

typedef struct {
    void *ctx;
    /* Optional: predicted cost per inference (the predictor). */
    nas_status (*predict)(void *ctx, const space_genome *g, search_prediction *out, nas_err *err);
    /* Optional: a number the cost of evaluating g is roughly proportional to
     * (its MACs, say). With it, the joules a candidate is expected to cost are
     * estimated from its own size rather than from the average candidate, so a
     * large network near the end of the budget is not started on the strength
     * of the small ones before it; one that would not fit is reported with
     * over_budget set (not trained), and the search stops. */
    double (*cost_hint)(void *ctx, const space_genome *g);
    /* Optional: 1 to reject before training. NULL: rejected when a hard target
     * is set and the prediction exceeds screen_factor x T. */
    int (*screen)(void *ctx, const space_genome *g, const search_prediction *p);
    /* Synchronous evaluation (used when submit is NULL). allowance_j: joules the
     * evaluation may spend before it must give up (status FAILED) to keep the
     * budget; inf when there is no joule budget. A returned error stops the search.
     * A promotion (search_loop_lineage: rung > 0) left without energy and latency
     * gets its parent's: the same network, so it need not be measured again. */
    nas_status (*evaluate)(void *ctx, long id, const space_genome *g, double allowance_j,
                           search_eval *out, nas_err *err);
    /* Asynchronous evaluation (Open MPI ranks): submit starts one, collect waits
     * for any one to finish and says which. At most `slots` in flight. */
    nas_status (*submit)(void *ctx, long id, const space_genome *g, double allowance_j, nas_err *err);
    nas_status (*collect)(void *ctx, long *id, search_eval *out, nas_err *err);
    int slots;
    /* Optional: a candidate passed screening and is about to be trained (the run
     * store records it as running, so a crash leaves a trace to retry). *ended
     * (0 on entry) = 1: it ended outside the loop before a resume (the run
     * store fails a candidate that crashes cut short RUNS_MAX_ATTEMPTS times),
     * so it is not evaluated: it is a failed result with eval.recorded set,
     * and on_result has only the state to save. */
    nas_status (*on_start)(void *ctx, long id, const space_genome *g, const search_prediction *p, int *ended,
                           nas_err *err);
    /* Optional: after each candidate, with the loop's state up to date (so
     * search_loop_save here gives a resumable point). An error stops the search. */
    nas_status (*on_result)(void *ctx, const search_result *r, const search_loop *loop, nas_err *err);
    void (*progress)(void *ctx, const search_progress *p);
    int (*should_stop)(void *ctx);
    double (*now)(void *ctx);  /* clock in seconds; NULL: nas_now() */
    /* Optional: measures a trained candidate's energy and latency per inference
     * (energy_mj, latency_ms, joules and meter of out; the rest is ignored).
     * Called every measure_every evaluations on the measure_top best candidates
     * not yet measured, and at the end; with rungs, also on a candidate about to
     * be promoted that has neither measured nor predicted figures (evaluate
     * gave none), which is then ranked again. What it spends counts against
     * the budget (allowance_j as for evaluate). When evaluate measures every
     * candidate itself, leave it NULL. */
    nas_status (*measure)(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                          nas_err *err);
} search_callbacks;

typedef struct {
    search_opts strategy;
    search_objective objective;
    search_limits limits;
    double screen_factor;      /* default 1.5: screened when predicted > 1.5 x a hard target */
    int reuse_seen;            /* 1 (default): a genome evaluated before is not trained again (one
                                  still in flight may be: its result is not known yet) */
    int stall_limit;           /* stop after this many proposals in a row not evaluated (default 1000) */
    int measure_every;         /* evaluations between measurements of the best (default 10) */
    int measure_top;           /* how many of the best are measured (default 3) */
    /* Multi-fidelity (asynchronous successive halving, ASHA): a candidate
     * first trains for the evaluator's shortest training (rung 0); whenever a
     * result of rung k ranks within the best 1/eta of the rung's results (by
     * reward), has not been promoted and was not measured over a hard target,
     * it is promoted before anything new is asked: a result of rung k+1, under
     * an id of its own, trained on from its weights for search_rung_work(k+1)
     * more units. Strategies learn from rung-0 results only (comparable ones);
     * the leaderboard and the best hold each candidate at the highest rung it
     * finished. 1 (default): off. */
    int rungs;
    int eta;                   /* default 3 */
} search_loop_opts;

/* The training a result of rung r adds, in units of rung 0's: 1, then
 * eta^r - eta^(r-1) (rung r has had eta^r units in all). */
double search_rung_work(int rung, int eta);
#define SEARCH_MAX_RUNGS 8
/* Of a candidate the loop is starting, evaluating or holds: its rung, and
 * (rung > 0) the id it trains on from in *parent (-1 otherwise). The
 * evaluator asks this to know whether to start from scratch. */
int search_loop_lineage(const search_loop *l, long id, long *parent);

void search_loop_opts_default(search_loop_opts *o, search_kind kind, long budget_evals);

NAS_MUST_USE nas_status search_loop_new(const search_space *space, const search_loop_opts *opts, search_loop **out,
                                        nas_err *err);
/* From search_loop_save's JSON (search_loop_restore with no past results):
 * strategy, budget spent, front, results, pending candidates (submitted again
 * first, under their own ids). Every field is
 * checked against its range, with an error naming it: a state that loads
 * runs, ends (no budget counter that never binds) and saves again. */
NAS_MUST_USE nas_status search_loop_load(const search_space *space, const char *json, search_loop **out, nas_err *err);
/* nas_malloc'd JSON; NULL when out of memory or when a value cannot be written
 * (a NaN where a number must be): never a state with a key left out.
 * search_loop_save holds the whole history (every result: it grows by about
 * 500 bytes a candidate), for a state that is all there is (a --state file);
 * search_loop_save_state leaves the history out (its size does not grow with
 * the search), for a caller that keeps every result elsewhere, as the run
 * store does, and hands them back to search_loop_restore. */
char *search_loop_save(const search_loop *l);
char *search_loop_save_state(const search_loop *l);
/* From either form: with search_loop_save_state's, past[0..n_past) are the
 * results that had ended when it was saved, evaluated or screened, in any
 * order (those seen before, cached, are not among them: the run store keeps
 * no row for them, and the loop needs none); results of candidates the state
 * does not know as ended are left out, and the rest must be as many as the
 * state counted, or it is an error. The restored loop holds them in id order
 * (the order they ended in when evaluated one at a time) and continues exactly
 * as the saved one would have. With search_loop_save's form, past is unused. */
NAS_MUST_USE nas_status search_loop_restore(const search_space *space, const char *json, const search_result *past,
                                            int n_past, search_loop **out, nas_err *err);
/* New budgets for a loaded loop (a resumed search given more, or less): what
 * was spent stays spent. */
NAS_MUST_USE nas_status search_loop_set_limits(search_loop *l, const search_limits *lim, nas_err *err);
void search_loop_free(search_loop *l);
/* search_budget_charge_calibration on a loop before it runs. */
void search_loop_charge_calibration(search_loop *l, double joules, double rel_unc, const char *meter,
                                    search_quality q);
/* search_budget_charge_lost on a loaded loop, before it runs again. */
void search_loop_charge_lost(search_loop *l, double total_lost, double rel_unc, const char *meter, search_quality q);

/* Runs until a budget, a stall or should_stop ends it; *why says which. */
NAS_MUST_USE nas_status search_run(search_loop *l, const search_callbacks *cb, search_stop *why, nas_err *err);

void search_loop_progress(const search_loop *l, search_progress *p);
const search_budget *search_loop_budget(const search_loop *l);
const search_front *search_loop_front(const search_loop *l);
const search_strategy *search_loop_strategy(const search_loop *l);
/* Every candidate that ended (evaluated, screened or seen before), in the order
 * it ended (id order when evaluating one at a time; a loop restored from a
 * state without its history holds the past results it was handed, in id
 * order, and none of those seen before); the best feasible one (NULL if none). */
int search_loop_n_results(const search_loop *l);
const search_result *search_loop_result(const search_loop *l, int i);
const search_result *search_loop_best(const search_loop *l);
/* Indices of the k best feasible results by reward (ties: lower id first). Returns how many. */
int search_loop_leaderboard(const search_loop *l, int *idx, int k);

/* ---- reports -------------------------------------------------------------- */

/* One line for a terminal: "evals 12 (+3 screened, 1 seen) | best 0.9412 #7 |
 * front 5, hv 1.234 | 1234.5/5000 J model:cpu-time (estimated) | 2m05s, ETA 3m12s". */
void search_progress_line(const search_progress *p, char *buf, size_t n);
/* The end of a search as JSON (nas_malloc'd; NULL when out of memory): why it
 * stopped, counts, the search's own energy with its meter, the predictor's
 * error on measured candidates, the best, the `top` best feasible, and the
 * Pareto front with its hypervolume and reference energy. */
char *search_loop_report_json(const search_loop *l, search_stop why, int top);
/* The hypervolume's reference energy in use (see search_objective.ref_energy_mj). */
double search_loop_hv_ref(const search_loop *l);

#endif
