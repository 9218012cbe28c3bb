/* cmd_search.c — `nas search`: the search loop wired to the real parts. The
 * strategy proposes genomes of the space sized to the data; the predictor
 * (when given) screens them against a hard target and scores them; the
 * evaluator trains each briefly on the data (the proxy task: few epochs, a
 * subset) and its meter says what that cost in joules; the best are
 * benchmarked for real energy and latency per inference. The loop's state is
 * saved after every candidate (--state FILE), so a killed search resumes and
 * ends where it would have.
 *
 * What goes where: progress on stderr (a line per candidate, and a status
 * line from base/progress.h: redrawn in place on a terminal, a plain line every
 * few seconds elsewhere), results on stdout (a leaderboard, the Pareto front,
 * the chosen spec), or one JSON object with --json.
 *
 * The predictor is optional at build time: until predictor/ is in the tree,
 * `--predictor` says it is not in this build, and every candidate is
 * benchmarked instead. */
#include "base/progress.h"
#include "cli/cli.h"
#include "cli/final_train.h"
#include "cli/search_cli.h"
#include "evaluator/ev.h"
#include "runs/runs.h"
#include "search/search.h"
#include "space/space.h"

#if __has_include("predictor/pred.h")
#include "predictor/pred.h"
#define HAVE_PREDICTOR 1
#else
#define HAVE_PREDICTOR 0
typedef struct pred_model pred_model;
#endif

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *CMD = "search";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas search --data mnist|fashion-mnist|idx:DIR|cifar10:DIR [budgets] [target] [options]\n\n"
            "Searches MobileNet/EfficientNet-style networks for the best accuracy for the energy\n"
            "(or latency) they cost per inference, within a budget of the energy the search itself\n"
            "spends, as the meter reports it. Each candidate is trained briefly (the proxy task);\n"
            "one whose estimated cost would cross a budget is not started. Whichever budget is\n"
            "reached first stops the search; at least one is required.\n\n");
    app_settings_help(f, APP_SEARCH);
    fprintf(f, "\nexample:\n  %s\n", "nas search --data mnist --budget-joules 2000 --budget-evals 24 --target-mj 2 --name my-search");
}

/* ---- the wiring ------------------------------------------------------------ */

typedef struct {
    space_config cfg;
    ev_data data;
    ev_meter *meter;
    pred_model *pred;
    int epochs, batch, threads;
    double lr, bench_seconds;
    uint64_t seed;
    const char *state_path;
    /* the status line on stderr (rank 0): in place on a terminal, a plain line
     * every few seconds elsewhere; the loop's last progress, and when it came */
    int show;
    nas_progress prog;
    search_progress snap;
    double snap_t;
    long eval_limit;           /* --budget-evals, for "candidate k of N" */
    int steps_total;           /* training steps of one candidate */
    int bench_each;            /* no predictor: benchmark every candidate */
    search_loop *loop;
    const char *pred_source;   /* the predictor file, the source of predicted figures */
    long n_outside;            /* candidates outside what the predictor was fit on */
    char outside_why[256];
    /* the run store (db NULL: none); cand[seq] is the candidate's row id */
    runs_db *db;
    int64_t run;
    int64_t *cand;
    long n_cand;
    /* Trained weights, packed where the candidate was trained (every rank knows
     * whether the run has a store; only rank 0 opens it) and handed to
     * search_dist, which brings them to rank 0's put_weights with the result. */
    int keep_weights;
    void *weights;
    size_t weights_len;
    search_dist *dist;         /* a worker's training stops when rank 0 stops the job */
} run_ctx;

static nas_status genome_net(const run_ctx *c, const space_genome *g, space_spec *spec, space_net *net, nas_err *err)
{
    nas_status st = space_genome_to_spec(&c->cfg, g, spec, err);
    if (!st)
        st = space_resolve(spec, net, err);
    return st;
}

#if HAVE_PREDICTOR
static nas_status cb_predict(void *ctx, const space_genome *g, search_prediction *out, nas_err *err)
{
    run_ctx *c = ctx;
    static space_net net;
    space_spec spec;
    nas_status st = genome_net(c, g, &spec, &net, err);
    if (st)
        return st;
    pred_estimate e;
    if ((st = pred_predict(c->pred, &net, &e, err)))
        return st;
    char why[256];
    if (pred_model_outside(c->pred, &net, why, sizeof why) && c->n_outside++ == 0)
        snprintf(c->outside_why, sizeof c->outside_why, "%s", why);
    out->latency_ms = e.latency_ms;
    out->energy_mj = e.energy_mj;
    return NAS_OK;
}

/* A hard target under every prediction for networks of the space is said at
 * the start, not found out from an empty leaderboard at the end. */
static void warn_unreachable(const char *cmd, run_ctx *c, const search_space *sp, const search_objective *obj)
{
    enum { N = 200 };
    double lo;
    long outside = c->n_outside;   /* these samples are no candidates */
    nas_err e = {0};
    if (search_target_floor(sp, obj, cb_predict, c, N, c->seed, &lo, &e))
        fprintf(stderr, "nas %s: warning: the target could not be checked: %s\n", cmd, e.msg);
    else if (lo > obj->t)
        fprintf(stderr, "nas %s: warning: the hard target %g %s is below the lowest prediction for %d networks "
                "sampled from the space (%.3g %s): nearly every candidate will be screened out\n", cmd, obj->t,
                obj->target == SEARCH_TARGET_MJ ? "mJ" : "ms", N, lo, obj->target == SEARCH_TARGET_MJ ? "mJ" : "ms");
    c->n_outside = outside;
}
#endif

/* Training and validating cost grows with the network's MACs per image: the
 * loop estimates each candidate's joules from it. */
static double cb_cost_hint(void *ctx, const space_genome *g)
{
    run_ctx *c = ctx;
    static space_net net;
    space_spec spec;
    if (genome_net(c, g, &spec, &net, NULL))
        return 0;
    space_cost cost;
    space_cost_of(&net, NULL, 0, &cost);
    return cost.macs;
}

typedef struct {
    ev_meter *meter;
    double j0, allowance, unc;
    int over;
    /* The stop must leave room for what follows it: the rest of the step in
     * progress, the validation pass, the benchmark. Both are sized from the
     * dearest step seen so far (its joules, and joules per second). */
    double last_j, last_t, step_j, watts;   /* last_*: the window's start */
    int win_steps;
    double setup_j;            /* what the candidate cost up to its first step (building the net) */
    double j_train;            /* the meter when training began (after the net was built) */
    double j_first, j_last;    /* the meter after the first step, and after the latest */
    int step_guess;            /* step_j is the first step's cost, until a window closes */
    int seen_step;
    double val_steps;          /* validation passes cost about this many training steps */
    double bench_s;            /* seconds the benchmark after training runs (0: none) */
    /* the heartbeat: joules so far into the store after the first step, then
     * every HEARTBEAT_S, so that a crash mid-training loses at most that much
     * from the budget's count */
    runs_db *db;
    int64_t cand;              /* its row (-1: none) */
    double last_beat;
    run_ctx *c;                /* for the status line: which candidate, which step */
    long id;
    int step;
    nas_status st;             /* a failed heartbeat write stops training with this */
    nas_err err;
    search_dist *dist;
    int stopped;               /* SIGINT/SIGTERM here, or rank 0 stopped the job: cut short */
} epoch_watch;

#define HEARTBEAT_S 2.0

/* The status line while a candidate trains: which one, how far, and the
 * search as of its last result (its clock moved on since). */
static void show_training(epoch_watch *w)
{
    run_ctx *c = w->c;
    if (!c || !c->show || !nas_progress_due(&c->prog))
        return;
    search_progress p = c->snap;
    if (!p.meter || !*p.meter) {   /* no result yet: the loop has not seen the meter, the run has */
        p.meter = ev_meter_source(c->meter);
        p.estimated = ev_meter_quality(c->meter) == EV_ESTIMATED;
    }
    double since = nas_now() - c->snap_t;
    p.seconds += since;
    p.eta_seconds = p.eta_seconds > since ? p.eta_seconds - since : p.eta_seconds;
    char line[512], of[48] = "";
    search_progress_line(&p, line, sizeof line);
    if (c->eval_limit > 0)
        snprintf(of, sizeof of, " (%ld of %ld)", p.evals + 1, c->eval_limit);
    const search_budget *b = c->loop ? search_loop_budget(c->loop) : NULL;
    nas_progress_show(&c->prog, "candidate #%ld%s: step %d/%d | %s | %.1f J with the meter's uncertainty", w->id, of,
                      w->step, c->steps_total, line, b ? b->joules_hi : NAN);
}

/* The joules that must stay unspent when training stops (with uncertainty). */
static double watch_tail(const epoch_watch *w)
{
    /* setup_j: what came before the first step (building the network, its
     * first touch of the data) comes again in kind after the last (the
     * weights packed, the inference net built for the benchmark); on a slow
     * build or machine it is no small share (ASan: a 12 J mpirun search
     * counted 18 J without it) */
    return (w->step_j * (2 + w->val_steps) + w->watts * w->bench_s + w->setup_j) * (1 + w->unc);
}

/* Reads the meter after a step (or after an epoch's validation, which is no
 * step): the dearest step so far, and whether training must stop now to stay
 * inside the allowance. Costs are averaged over windows of WINDOW_S or more,
 * as a CPU-time meter ticks too coarsely to time one short step. */
#define WINDOW_S 0.1
static int watch_sample(epoch_watch *w, int step, double *j)
{
    double t = nas_now();
    /* A failed read stops training with that error (kept in w->st, which
     * nothing after it overwrites): read as "not over", the candidate would
     * train on uncounted, past its allowance. */
    if (w->st)
        return 1;
    if ((w->st = ev_meter_read(w->meter, j, &w->err)))
        return 1;
    double dj = *j - w->last_j, dt = t - w->last_t;
    if (step && !w->seen_step) {
        w->seen_step = 1;
        w->setup_j = *j - w->j0;
        w->j_first = *j;
        /* until a window closes, the first step (with the data's first touch) stands for a step */
        if (!(w->step_j > 0)) {
            w->step_j = *j - w->j_train;
            w->step_guess = 1;
        }
    }
    if (step)
        w->j_last = *j;
    w->win_steps += step;
    if (!step || dt >= WINDOW_S) {
        if (step && (w->step_guess || dj / w->win_steps > w->step_j)) {
            w->step_j = dj / w->win_steps;
            w->step_guess = 0;
        }
        if (dt >= WINDOW_S && dj / dt > w->watts)
            w->watts = dj / dt;
        w->last_j = *j;
        w->last_t = t;
        w->win_steps = 0;
    }
    w->over = isfinite(w->allowance) && (*j - w->j0) * (1 + w->unc) + watch_tail(w) >= w->allowance;
    return w->over;
}

/* After every training step: a signal or rank 0's stop cuts the candidate
 * short; the meter is read (so training stops before its allowance, mid-epoch:
 * an epoch of a large network can cost more than what is left of a budget),
 * and the joules so far go to the store the first time, then at most every
 * HEARTBEAT_S. */
static int watch_step(void *ctx)
{
    epoch_watch *w = ctx;
    if (nas_sig_caught() || search_dist_stop_pending(w->dist)) {
        w->stopped = 1;
        return 1;
    }
    w->step++;
    show_training(w);
    double j;
    int stop = watch_sample(w, 1, &j);
    double t = nas_now();
    if (w->st || t - w->last_beat < HEARTBEAT_S || !w->db || w->cand < 0)
        return stop;
    w->last_beat = t;
    runs_fig f = runs_fig_make(j - w->j0, ev_meter_source(w->meter), ev_quality_name(ev_meter_quality(w->meter)));
    if ((w->st = runs_cand_progress(w->db, w->cand, &f, &w->err)))
        return 1;
    return stop;
}

/* Before validation: all of it, unless training stopped at the allowance; then
 * the images the rest of the allowance pays for after what follows (as
 * watch_tail counts it), one batch at least. A candidate stopped after its
 * first step would otherwise spend a whole validation past its allowance. */
static int watch_val_count(void *ctx, int n)
{
    epoch_watch *w = ctx;
    double j;
    if (!w->over || !(w->step_j > 0) || ev_meter_read(w->meter, &j, NULL))
        return n;
    int batch = w->c && w->c->batch > 0 ? w->c->batch : 1;
    double per_image = 0.5 * w->step_j / batch * (1 + w->unc);   /* a forward pass: half a step, as val_steps */
    double left = w->allowance - (j - w->j0 + w->setup_j) * (1 + w->unc);
    double k = left / per_image;
    return k >= n ? n : k > batch ? (int)k : batch;
}

static int watch_epoch(void *ctx, int epoch, double loss, double train_acc, double val_acc, double ips)
{
    epoch_watch *w = ctx;
    double j;
    return watch_sample(w, 0, &j);
}

/* Whether the benchmark still fits in the allowance after training (a failed
 * read: no, and the error is in w->st). */
static int watch_bench_fits(epoch_watch *w)
{
    double j;
    if (!isfinite(w->allowance))
        return 1;
    if ((w->st = ev_meter_read(w->meter, &j, &w->err)))
        return 0;
    return (j - w->j0) * (1 + w->unc) + w->watts * w->bench_s * (1 + w->unc) < w->allowance;
}

/* Where measured latencies come from: the clock, 10th percentile of single inferences. */
#define LATENCY_SOURCE "clock:p10"

/* The meter's kind, in the search's terms. */
static search_quality meter_q(const ev_meter *m)
{
    ev_quality q = ev_meter_quality(m);
    return q == EV_ESTIMATED ? SEARCH_Q_ESTIMATED : q == EV_SAMPLED ? SEARCH_Q_SAMPLED : SEARCH_Q_MEASURED;
}

/* What the evaluation cost by the meter. A failed read is an error: taken
 * as 0 J, it would let the search spend past its budget unseen. */
static nas_status meter_into(const run_ctx *c, double j0, search_eval *out, nas_err *err)
{
    nas_status st = ev_meter_spent(c->meter, j0, &out->joules, err);
    out->joules_rel_unc = ev_meter_uncertainty(c->meter);
    out->joules_estimated = meter_q(c->meter) == SEARCH_Q_ESTIMATED;
    out->joules_sampled = meter_q(c->meter) == SEARCH_Q_SAMPLED;
    snprintf(out->meter, sizeof out->meter, "%s", ev_meter_source(c->meter));
    return st;
}

#define BENCH_WARMUP 2
#define BENCH_REPEATS 3

/* About how long bench() runs: its repeats, plus a margin for the warm-up
 * and a slow network's last call past min_seconds. */
static double bench_seconds(const run_ctx *c)
{
    return 1.5 * BENCH_REPEATS * c->bench_seconds + 0.2;
}

static nas_status bench(const run_ctx *c, ev_net *net, search_eval *out, nas_err *err)
{
    ev_bench_opts bo;
    ev_bench_opts_default(&bo);
    bo.batch = 1;
    bo.warmup = BENCH_WARMUP;
    bo.repeats = BENCH_REPEATS;
    bo.min_seconds = c->bench_seconds;
    bo.threads = c->threads;
    ev_bench_result br;
    nas_status st = ev_bench_infer(net, c->meter, &bo, &br, err);
    if (st)
        return st;
    /* the steady latency, as `nas calibrate` measures and predicts it by default:
     * neighbours on a shared machine slow stretches of calls, not the fast tenth */
    out->latency_ms = br.latency_ms_p10;
    out->energy_mj = br.energy_mj_median;
    return NAS_OK;
}

static void drop_weights(run_ctx *c)
{
    nas_free(c->weights);
    c->weights = NULL;
    c->weights_len = 0;
}

/* search_dist's take_payload: the weights cb_evaluate packed go with the result. */
static void take_weights(void *ctx, long id, void **bytes, size_t *len)
{
    run_ctx *c = ctx;
    *bytes = c->weights;
    *len = c->weights_len;
    c->weights = NULL;
    c->weights_len = 0;
}

/* search_dist's put_payload, on rank 0 before on_result: into the candidate's
 * row, started by on_start. Stored before the result: a crash in between
 * leaves weights that the retry replaces. */
static nas_status put_weights(void *ctx, long id, const void *bytes, size_t len, nas_err *err)
{
    run_ctx *c = ctx;
    if (!c->db || id >= c->n_cand || c->cand[id] < 0)
        return NAS_OK;
    nas_status st = runs_weights_put(c->db, c->cand[id], bytes, len, err);
    return st ? nas_errctx(err, "candidate %ld", id) : NAS_OK;
}

/* Whatever stopped the job stopped this candidate mid-training: what it
 * spent is in out (a worker sends it to rank 0 with the NAS_EINTR); with a
 * store here, it goes in as a lost attempt and the row is queued again, so
 * the budget counts it and a resume retries the candidate. */
static nas_status cut_short(run_ctx *c, long id, double j0, search_eval *out, nas_err *err)
{
    nas_status mst = meter_into(c, j0, out, err);
    if (mst)
        return nas_errctx(err, "candidate %ld", id);
    if (c->db && id < c->n_cand && c->cand[id] >= 0) {
        runs_fig f = runs_fig_make(out->joules, ev_meter_source(c->meter), ev_quality_name(ev_meter_quality(c->meter)));
        nas_status st = runs_cand_stopped(c->db, c->cand[id], &f, err);
        if (st)
            return st;
    }
    int sig = nas_sig_caught();
    return nas_errf(err, NAS_EINTR, "candidate %ld stopped by %s after %.3g J (recorded; it is retried on resume)",
                    id, sig ? nas_sig_name(sig) : "rank 0", out->joules);
}

static nas_status cb_evaluate(void *ctx, long id, const space_genome *g, double allowance, search_eval *out,
                              nas_err *err)
{
    run_ctx *c = ctx;
    space_net arch;   /* ~6 KB: fine on the stack, and reentrant */
    space_spec spec;
    ev_net *net = NULL;
    drop_weights(c);   /* only this candidate's may travel with its result */
    nas_status st = genome_net(c, g, &spec, &arch, err);
    if (st)
        return st;
    double j0 = 0;
    if ((st = ev_meter_read(c->meter, &j0, err)))
        return st;
    ev_net_opts no = {.batch = c->batch, .training = 1, .threads = c->threads, .seed = c->seed * 1000003u + (uint64_t)id};
    nas_err local = {0};
    st = ev_net_create(&arch, &no, &net, &local);
    if (st == NAS_ENOMEM) {   /* too big for this machine: a failed candidate, not a failed search */
        out->status = SEARCH_EVAL_FAILED;
        return meter_into(c, j0, out, err) ? nas_errctx(err, "candidate %ld", id) : NAS_OK;
    }
    if (st)
        return nas_errf(err, st, "candidate %ld: %s", id, local.msg);
    epoch_watch w = {.meter = c->meter, .j0 = j0, .allowance = allowance, .unc = ev_meter_uncertainty(c->meter),
                     .last_j = j0, .last_t = nas_now(), .bench_s = c->bench_each ? bench_seconds(c) : 0,
                     /* a forward pass costs about a third of a training step; half, to be safe */
                     .val_steps = 0.5 * ceil((double)c->data.val.n / (c->batch > 0 ? c->batch : 1)),
                     .db = c->db, .cand = c->db && id < c->n_cand ? c->cand[id] : -1, .last_beat = -HUGE_VAL,
                     .c = c, .id = id, .dist = c->dist};
    ev_train_opts to;
    ev_train_opts_default(&to);
    to.epochs = c->epochs;
    to.batch = c->batch;
    to.lr = c->lr;
    to.threads = c->threads;
    to.seed = no.seed;
    to.on_epoch = watch_epoch;
    to.on_step = watch_step;
    to.val_count = watch_val_count;
    to.ctx = &w;
    ev_train_result r;
    if ((st = ev_meter_read(c->meter, &w.j_train, err))) {
        ev_net_free(net);
        return nas_errctx(err, "candidate %ld", id);
    }
    w.last_j = w.j_train;   /* the first window times steps, not the net's creation */
    w.last_t = nas_now();
    st = ev_train(net, &c->data, &to, &r, &local);
    if (w.st) {
        ev_net_free(net);
        return nas_errf(err, w.st, "candidate %ld: %s", id, w.err.msg);
    }
    if (w.stopped) {
        ev_net_free(net);
        return cut_short(c, id, j0, out, err);
    }
    if (st == NAS_EDIVERGED) {
        out->status = SEARCH_EVAL_DIVERGED;
    } else if (st) {
        ev_net_free(net);
        return nas_errf(err, st, "candidate %ld: %s", id, local.msg);
    } else {
        /* stopped at its allowance, it still yields the accuracy it had reached */
        out->status = SEARCH_EVAL_OK;
        out->stopped_early = w.over;
        out->accuracy = c->data.val.n > 0 ? r.val_acc : r.train_acc;
        int fits = c->bench_each && watch_bench_fits(&w);
        if (w.st) {
            ev_net_free(net);
            return nas_errf(err, w.st, "candidate %ld: %s", id, w.err.msg);
        }
        if (fits && (st = bench(c, net, out, err))) {
            ev_net_free(net);
            return nas_errctx(err, "benchmarking candidate %ld", id);
        }
        /* Every trained candidate's weights go to the store (a small MNIST net's blob is
         * ~150 KB), so that `nas export` writes the network whose accuracy was recorded,
         * whichever ends up chosen. Packed here, on the rank that trained it; stored by
         * put_weights on rank 0 (under Open MPI they travel with the result). */
        if (c->keep_weights && (st = ev_net_weights_pack(net, &c->weights, &c->weights_len, err))) {
            ev_net_free(net);
            return nas_errctx(err, "candidate %ld", id);
        }
    }
    ev_net_free(net);
    if (meter_into(c, j0, out, err))
        return nas_errctx(err, "candidate %ld", id);
    /* had it stopped after its first step, the steps between would not have been spent */
    out->floor_joules = (out->joules - (w.seen_step ? w.j_last - w.j_first : 0)) * (1 + w.unc);
    return NAS_OK;
}

static nas_status cb_measure(void *ctx, long id, const space_genome *g, double allowance, search_eval *out,
                             nas_err *err)
{
    run_ctx *c = ctx;
    space_net arch;   /* ~6 KB: fine on the stack, and reentrant */
    space_spec spec;
    ev_net *net = NULL;
    nas_status st = genome_net(c, g, &spec, &arch, err);
    if (st)
        return st;
    double j0 = 0;
    if ((st = ev_meter_read(c->meter, &j0, err)))
        return st;
    /* energy and latency per inference do not depend on the weights: an untrained copy will do */
    ev_net_opts no = {.batch = 1, .training = 0, .threads = c->threads, .seed = 1};
    if ((st = ev_net_create(&arch, &no, &net, err)))
        return nas_errctx(err, "measuring candidate %ld", id);
    st = bench(c, net, out, err);
    ev_net_free(net);
    if (!st && meter_into(c, j0, out, err))
        st = nas_errctx(err, "measuring candidate %ld", id);
    return st;
}

/* ---- what a candidate is expected to cost ---------------------------------- */

/* The engine's training rate on these small networks, per core, for the
 * estimate made before any candidate was measured: MACs per second, and the
 * fixed cost per image (data, batch norm, loss, optimizer). Measured on this
 * project's 2-core EPYC VM (see README, "A budget that holds"); the first
 * measured candidates correct them (search_budget_estimate_joules). */
#define PRIOR_MACS_PER_CORE_S 5e9
#define PRIOR_S_PER_IMAGE 1e-4
#define PRIOR_FIXED_S 0.05

/* The smallest MACs a genome of the space can have: each gene in turn set to
 * its cheapest choice, until a sweep changes nothing (the genes interact a
 * little: a stage's repeats and width multiply). */
static double cheapest_macs(const run_ctx *c, const search_space *sp)
{
    space_genome g;
    memset(&g, 0, sizeof g);
    g.n = sp->n_genes;
    double best = cb_cost_hint((void *)c, &g);
    for (int sweep = 0, changed = 1; changed && sweep < 8; sweep++) {
        changed = 0;
        for (int i = 0; i < sp->n_genes; i++) {
            int keep = g.g[i];
            for (int v = 0; v < sp->card[i]; v++) {
                g.g[i] = (uint8_t)v;
                double m = cb_cost_hint((void *)c, &g);
                if (m > 0 && (m < best || !(best > 0))) {
                    best = m;
                    keep = v;
                    changed = 1;
                }
            }
            g.g[i] = (uint8_t)keep;
        }
    }
    return best;
}

/* Joules a candidate of `macs` MACs is expected to cost, as prior_j0 +
 * prior_j_per_hint x macs, counted as the budget counts them (raised by the
 * meter's uncertainty): training runs ~3x the forward MACs per image
 * (forward, and backward for inputs and weights), validation 1x; the
 * benchmark runs on every thread. The power is the model meter's stated
 * watts per core, an assumption for the other meters until a candidate
 * is measured. */
static void cost_prior(const run_ctx *c, double watts_per_core, double *j0, double *j_per_mac)
{
    double w = watts_per_core * (1 + ev_meter_uncertainty(c->meter));
    double train = (double)c->epochs * c->data.train.n, val = c->data.val.n;
    int threads = c->threads > 0 ? c->threads : 1;
    *j_per_mac = w * (3 * train + val) / PRIOR_MACS_PER_CORE_S;
    *j0 = w * ((train + val / 3) * PRIOR_S_PER_IMAGE + PRIOR_FIXED_S +
               (c->bench_each ? BENCH_REPEATS * c->bench_seconds * threads : 0));
}

/* ---- the run store --------------------------------------------------------- */

static nas_status store_add(run_ctx *c, long id, const space_genome *g, const search_prediction *p, nas_err *err)
{
    static space_net net;
    space_spec spec;
    char genome[320];
    space_genome_to_string(g, genome, sizeof genome);
    nas_status st = genome_net(c, g, &spec, &net, err);
    if (st)
        return st;
    space_cost cost;
    space_cost_of(&net, NULL, 0, &cost);
    char *spec_json = space_spec_to_json(&spec, 0);
    runs_new_cand nc = {.seq = (int)id, .genome = genome, .spec_json = spec_json, .params = cost.params,
                        .macs = cost.macs};
    nc.pred_latency_ms = p->latency_ms > 0 ? runs_fig_make(p->latency_ms, c->pred_source, "predicted") : runs_fig_none();
    nc.pred_energy_mj = p->energy_mj > 0 ? runs_fig_make(p->energy_mj, c->pred_source, "predicted") : runs_fig_none();
    if (id >= c->n_cand) {
        long n = c->n_cand ? c->n_cand : 64;
        while (n <= id)
            n *= 2;
        int64_t *nc_ids = nas_realloc(c->cand, (size_t)n * sizeof *nc_ids);
        if (!nc_ids) {
            nas_free(spec_json);
            return nas_errf(err, NAS_ENOMEM, "out of memory");
        }
        for (long i = c->n_cand; i < n; i++)
            nc_ids[i] = -1;
        c->cand = nc_ids;
        c->n_cand = n;
    }
    int seq, existed;
    st = runs_cand_add(c->db, c->run, &nc, &c->cand[id], &seq, &existed, err);
    nas_free(spec_json);
    return st;
}

/* The candidate's row, running. A row the store failed after
 * RUNS_MAX_ATTEMPTS crashes, before this resume, ended: started again it
 * would crash a third time, and runs_cand_start refuses it. */
static nas_status cb_on_start(void *ctx, long id, const space_genome *g, const search_prediction *p, int *ended,
                              nas_err *err)
{
    run_ctx *c = ctx;
    if (!c->db)
        return NAS_OK;
    nas_status st = store_add(c, id, g, p, err);
    runs_cand row;
    if (!st && !(st = runs_cand_get(c->db, c->cand[id], &row, err))) {
        if (row.status == RUNS_FAILED) {
            *ended = 1;
            fprintf(stderr, "#%ld failed before this resume (%s): not started again\n", id, row.error);
        }
        runs_cand_free(&row);
    }
    int attempts;
    if (!st && !*ended)
        st = runs_cand_start(c->db, c->cand[id], &attempts, err);
    return st;
}

/* One finished candidate, with the search's state after it, in one transaction.
 * A genome seen before is not a new evaluation: only the state is saved. A
 * measurement after training is attached to the finished row
 * (runs_cand_add_measurement), never a second finish. */
static nas_status store_result(run_ctx *c, const search_result *r, const search_loop *l, nas_err *err)
{
    char *state = search_loop_save_state(l);   /* the history is the store's rows */
    if (!state)
        return nas_errf(err, NAS_ENOMEM, "saving the search state: out of memory");
    nas_status st = NAS_OK;
    if (r->cached || r->eval.recorded) {   /* the row holds its end already */
        st = runs_strategy_put(c->db, c->run, (int)r->id, state, err);
        goto cleanup;
    }
    if (r->measured_later) {
        /* the benchmark of a trained candidate: its figures join its finished row
         * (the first ones stay in the measurements table), with the state, at once */
        const search_eval *e = &r->eval;
        const char *quality = search_eval_quality(e);
        runs_fig lat = e->latency_ms > 0 ? runs_fig_make(e->latency_ms, LATENCY_SOURCE, "measured") : runs_fig_none();
        runs_fig en = e->energy_mj > 0 ? runs_fig_make(e->energy_mj, e->meter, quality) : runs_fig_none();
        /* what measuring cost, not what training did (that is on the row already) */
        runs_fig j = r->measure_joules > 0 ? runs_fig_make(r->measure_joules, e->meter, quality) : runs_fig_none();
        if (r->id >= c->n_cand || c->cand[r->id] < 0) {   /* finished before a resume: find its row */
            if ((st = store_add(c, r->id, &r->genome, &r->pred, err)))
                goto cleanup;
        }
        st = runs_cand_add_measurement(c->db, c->cand[r->id], &lat, &en, &j, state, err);
        goto cleanup;
    }
    if (r->screened && (st = store_add(c, r->id, &r->genome, &r->pred, err)))
        goto cleanup;
    const search_eval *e = &r->eval;
    const char *quality = search_eval_quality(e);
    runs_result res;
    runs_result_init(&res);
    res.status = r->screened ? RUNS_SCREENED : e->status == SEARCH_EVAL_OK ? RUNS_DONE
               : e->status == SEARCH_EVAL_DIVERGED ? RUNS_DIVERGED : RUNS_FAILED;
    res.accuracy = r->screened || e->status != SEARCH_EVAL_OK ? NAN : e->accuracy;
    if (e->energy_mj > 0)
        res.energy_mj = runs_fig_make(e->energy_mj, e->meter, quality);
    if (e->latency_ms > 0)
        res.latency_ms = runs_fig_make(e->latency_ms, LATENCY_SOURCE, "measured");
    if (!r->screened)   /* (an over-budget one's joules are an estimate of what it would cost) */
        res.joules = runs_fig_make(e->joules, e->meter, quality);
    res.wall_s = r->screened ? NAN : e->seconds;
    res.reward = r->screened ? NAN : r->reward;
    res.error = r->over_budget ? CLI_OVER_BUDGET_MSG
              : e->status == SEARCH_EVAL_OK && e->stopped_early ? CLI_STOPPED_EARLY_MSG
              : r->screened ? "predicted over the hard target" : e->status == SEARCH_EVAL_DIVERGED ? "loss diverged"
              : e->status == SEARCH_EVAL_FAILED ? "too big for this machine" : NULL;
    st = runs_cand_finish(c->db, c->cand[r->id], &res, state, err);
cleanup:
    nas_free(state);
    return st;
}

static nas_status save_state(const run_ctx *c, const search_loop *l, nas_err *err)
{
    if (!c->state_path)
        return NAS_OK;
    char *js = search_loop_save(l);
    if (!js)
        return nas_errf(err, NAS_ENOMEM, "saving the search state: out of memory");
    nas_status st = nas_write_file_atomic(c->state_path, js, strlen(js), err);
    nas_free(js);
    return st;
}

static nas_status cb_on_result(void *ctx, const search_result *r, const search_loop *l, nas_err *err)
{
    run_ctx *c = ctx;
    nas_progress_clear(&c->prog);
    if (r->over_budget) {
        fprintf(stderr, "#%ld not started: its estimated %.1f J would cross the joule budget\n", r->id,
                r->eval.joules);
    } else if (r->screened) {
        fprintf(stderr, "#%ld screened: predicted %.3g mJ, %.3g ms\n", r->id, r->pred.energy_mj, r->pred.latency_ms);
    } else if (r->measured_later) {
        fprintf(stderr, "#%ld benchmarked: %.3g mJ (%s)  %.3g ms (predicted %.3g mJ, %.3g ms)  reward %.4f%s%s\n", r->id,
                r->eval.energy_mj, search_eval_quality(&r->eval), r->eval.latency_ms, r->pred.energy_mj, r->pred.latency_ms, r->reward,
                r->feasible ? "" : "  [over the target]", r->is_best ? "  [best]" : "");
    } else if (!r->cached && !r->eval.recorded) {   /* (on_start said why a recorded one ended) */
        const search_eval *e = &r->eval;
        if (e->status == SEARCH_EVAL_OK)
            fprintf(stderr, "#%ld acc %.4f  %.3g mJ (%s)  %.3g ms  reward %.4f%s%s%s  %.1f J  %.1f s\n", r->id,
                    e->accuracy, r->energy_mj, e->energy_mj > 0 ? search_eval_quality(e) : "predicted", r->latency_ms,
                    r->reward, r->on_front ? "  [front]" : "", r->is_best ? "  [best]" : "",
                    e->stopped_early ? "  [stopped early at its joule allowance]" : "", e->joules, e->seconds);
        else
            fprintf(stderr, "#%ld %s  %.1f J  %.1f s\n", r->id,
                    e->status == SEARCH_EVAL_DIVERGED ? "diverged" : "failed (too big for this machine)",
                    e->joules, e->seconds);
    }
    nas_status st = c->db ? store_result(c, r, l, err) : NAS_OK;
    return st ? st : save_state(c, l, err);
}

static void cb_progress(void *ctx, const search_progress *p)
{
    run_ctx *c = ctx;
    c->snap = *p;
    c->snap_t = nas_now();
    if (!c->show)
        return;
    char line[512];
    search_progress_line(p, line, sizeof line);
    nas_progress_show(&c->prog, "%s", line);
}

static int cb_should_stop(void *ctx) { return nas_sig_caught() != 0; }

/* search_dist's on_abandoned, on rank 0: a worker's candidate that the job
 * stopped (or whose result came after the stop): its joules join the run as
 * a lost attempt and the row is queued again for the resume. */
static void abandoned(void *ctx, long id, const search_eval *ev)
{
    run_ctx *c = ctx;
    if (!c->db || id < 0 || id >= c->n_cand || c->cand[id] < 0)
        return;
    runs_fig f = ev->joules > 0 && isfinite(ev->joules)
               ? runs_fig_make(ev->joules, ev->meter[0] ? ev->meter : ev_meter_source(c->meter),
                               search_eval_quality(ev))
               : runs_fig_none();
    nas_err e = {0};
    if (runs_cand_stopped(c->db, c->cand[id], &f, &e))
        fprintf(stderr, "nas search: warning: candidate %ld's %.3g J were not recorded: %s\n", id, ev->joules, e.msg);
}

/* ---- output ------------------------------------------------------------------ */

static void figures(const run_ctx *c, const space_genome *g, double *params, double *macs, char **spec_json)
{
    static space_net net;
    space_spec spec;
    *params = *macs = NAN;
    if (spec_json)
        *spec_json = NULL;
    if (genome_net(c, g, &spec, &net, NULL))
        return;
    space_cost cost;
    space_cost_of(&net, NULL, 0, &cost);
    *params = cost.params;
    *macs = cost.macs;
    if (spec_json)
        *spec_json = space_spec_to_json(&spec, 1);
}

/* Which of the leaderboard stopped at their joule allowance, as a footnote. */
static void print_stopped_early(const search_loop *l, const int *idx, int n)
{
    int any = 0;
    for (int i = 0; i < n; i++) {
        const search_result *r = search_loop_result(l, idx[i]);
        if (!r->eval.stopped_early)
            continue;
        printf("%s #%ld", any ? "" : "stopped early at their joule allowance (accuracy as trained then):", r->id);
        any = 1;
    }
    if (any)
        printf("\n");
}

static void print_text(const run_ctx *c, const search_loop *l, search_stop why, int top)
{
    search_progress p;
    search_loop_progress(l, &p);
    const search_budget *b = search_loop_budget(l);
    printf("search: %s, %ld evaluations (+%ld screened, %ld seen before), %.0f s; stopped: %s\n",
           search_kind_name(search_strategy_kind(search_loop_strategy(l))), p.evals, p.screened, p.cached,
           p.seconds, search_stop_name(why));
    printf("energy spent by the search: %.1f J", b->joules);
    if (b->lim.joules > 0)
        printf(" of %.0f J (%.1f J counting the meter's uncertainty)", b->lim.joules, b->joules_hi);
    if (b->meter[0])
        printf(", %s, %s\n", b->meter, search_budget_quality(b));
    else   /* nothing was charged: the run's own meter says what it would have been */
        printf(", %s, %s\n", ev_meter_source(c->meter), ev_quality_name(ev_meter_quality(c->meter)));
    if (p.n_checked)
        printf("predictor on %d measured candidates: energy MAPE %.1f%% (%.0f%% within 10%%), latency MAPE %.1f%%\n",
               p.n_checked, p.pred_mape_mj, 100 * p.pred_within10_mj, p.pred_mape_ms);
    int *idx = nas_malloc((size_t)(top > 0 ? top : 1) * sizeof *idx);
    int n = idx ? search_loop_leaderboard(l, idx, top) : 0;
    printf("\nleaderboard (feasible candidates, by reward; energy_mJ benchmarked by %s, its quality beside it):\n",
           ev_meter_source(c->meter));
    printf("%4s %6s %8s %10s %10s %-9s %10s %10s %9s %8s %8s\n", "rank", "id", "accuracy", "pred_mJ", "energy_mJ",
           "quality", "pred_ms", "meas_ms", "params", "MMACs", "reward");
    for (int i = 0; i < n; i++) {
        const search_result *r = search_loop_result(l, idx[i]);
        double params, macs;
        figures(c, &r->genome, &params, &macs, NULL);
        printf("%4d %6ld %8.4f %10.4g %10.4g %-9s %10.4g %10.4g %9.0f %8.2f %8.4f\n", i + 1, r->id, r->eval.accuracy,
               r->pred.energy_mj > 0 ? r->pred.energy_mj : NAN, r->eval.energy_mj > 0 ? r->eval.energy_mj : NAN,
               r->eval.energy_mj > 0 ? search_eval_quality(&r->eval) : "-", r->pred.latency_ms > 0 ? r->pred.latency_ms : NAN, r->eval.latency_ms > 0 ? r->eval.latency_ms : NAN,
               params, macs / 1e6, r->reward);
    }
    print_stopped_early(l, idx, n);
    nas_free(idx);
    const search_front *f = search_loop_front(l);
    printf("\nPareto front (accuracy against energy per inference), hypervolume %.4g (reference 0 accuracy, %.4g mJ):\n",
           p.hypervolume, search_loop_hv_ref(l));
    for (int i = 0; i < f->n; i++)
        printf("  #%-5ld accuracy %.4f  %.4g mJ\n", f->p[i].id, f->p[i].accuracy, f->p[i].energy_mj);
    const search_result *best = search_loop_best(l);
    if (best) {
        double params, macs;
        char *js;
        figures(c, &best->genome, &params, &macs, &js);
        printf("\nchosen: #%ld (accuracy %.4f, %.4g mJ, %.4g ms, %.0f params, %.2f MMACs):\n%s\n", best->id,
               best->eval.accuracy, best->energy_mj, best->latency_ms, params, macs / 1e6, js ? js : "?");
        nas_free(js);
    } else {
        printf("\nno candidate met the target\n");
    }
}

static int print_json(const run_ctx *c, const search_loop *l, search_stop why, int top, void *final)
{
    char *rep = search_loop_report_json(l, why, top);
    json_t *root = rep ? nas_json_load(rep, strlen(rep), 0, NULL, NULL) : NULL;
    nas_free(rep);
    if (!root)
        return -1;
    const search_result *best = search_loop_best(l);
    if (best) {
        double params, macs;
        char *js;
        figures(c, &best->genome, &params, &macs, &js);
        json_t *spec = js ? nas_json_load(js, strlen(js), 0, NULL, NULL) : NULL;
        nas_free(js);
        json_object_set_new(root, "chosen_spec", spec ? spec : json_null());
        json_object_set_new(json_object_get(root, "best"), "params", json_real(params));
        json_object_set_new(json_object_get(root, "best"), "macs", json_real(macs));
    }
    if (final)
        json_object_set_new(root, "final", final);
    char *s = json_dumps(root, JSON_COMPACT);
    printf("%s\n", s ? s : "{}");
    nas_free(s);
    json_decref(root);
    return 0;
}

/* ---- running it ---------------------------------------------------------------- */

static nas_status own_joules(void *ctx, double *j, nas_err *err)
{
    run_ctx *c = ctx;
    return ev_meter_read(c->meter, j, err);
}

/* The top of the leaderboard trained again at full fidelity and tested. */
static nas_status final_training(const app_settings *s, run_ctx *c, const search_loop *l,
                                 const search_objective *obj, const ev_data_opts *dopts, cli_final_report *fin,
                                 nas_err *err)
{
    int idx[APP_FINAL_MAX];
    int n = search_loop_leaderboard(l, idx, (int)s->final_top);
    const search_result *cands[APP_FINAL_MAX];
    for (int i = 0; i < n; i++)
        cands[i] = search_loop_result(l, idx[i]);
    cli_final_opts fo = {.top = (int)s->final_top, .epochs = (int)s->final_epochs, .batch = (int)s->final_batch,
                         .subset = s->final_subset, .lr = s->final_lr, .threads = c->threads,
                         .seed = (uint64_t)s->seed};
    nas_progress_clear(&c->prog);
    return cli_final_train(&fo, &c->cfg, s->data, dopts, c->meter, obj, cands, n, fin, err);
}

static void export_final(const app_settings *s, const run_ctx *c, const cli_final_report *fin)
{
    runs_run run;
    if (runs_run_get(c->db, c->run, &run, NULL))
        return;
    char dir[600], name[80], path[800];
    if (s->export_dir[0])
        snprintf(dir, sizeof dir, "%s", s->export_dir);
    else
        snprintf(dir, sizeof dir, "out/%s", run.name);
    snprintf(name, sizeof name, "%s", run.name);
    runs_run_free(&run);
    cli_final_opts fo = {.epochs = (int)s->final_epochs, .batch = (int)s->final_batch, .lr = s->final_lr,
                         .threads = c->threads, .seed = (uint64_t)s->seed};
    nas_err err = {0};
    fflush(stdout);
    if (cli_final_export(fin, &fo, dir, name, path, sizeof path, &err) == NAS_OK)
        printf("exported the finally trained model to %s\n", path);
    else
        fprintf(stderr, "nas search: the finally trained model was not exported: %s\n", err.msg);
}

/* A joule budget that no candidate of the space fits is refused before
 * anything is spent, naming the smallest cost the space allows. */
static nas_status check_budget_fits(const search_loop *l, const run_ctx *c, double min_macs, nas_err *err)
{
    const search_budget *b = search_loop_budget(l);
    double cheapest = search_budget_cheapest_joules(b);
    if (!(b->lim.joules > 0) || !(cheapest > 0) || b->joules_hi + cheapest <= b->lim.joules)
        return NAS_OK;
    return nas_errf(err, NAS_EINVAL,
                    "--budget-joules %g: too small for any network of this space: the cheapest (%.3g MMACs) "
                    "is estimated at %.1f J with the meter's uncertainty (%s, +-%.0f%%)%s; give at least that, "
                    "or a smaller proxy (--subset, --epochs)", b->lim.joules, min_macs / 1e6, cheapest,
                    ev_meter_source(c->meter), 100 * ev_meter_uncertainty(c->meter),
                    b->joules_hi > 0 ? ", beside what this run has spent already" : "");
}

/* The chosen model, as ONNX, into the run's export folder. */
static void export_chosen(const app_settings *s, const run_ctx *c, const char *db_path)
{
    runs_run run;
    if (runs_run_get(c->db, c->run, &run, NULL))
        return;
    char dir[600];
    if (s->export_dir[0])
        snprintf(dir, sizeof dir, "%s", s->export_dir);
    else
        snprintf(dir, sizeof dir, "out/%s", run.name);
    char name[80];
    snprintf(name, sizeof name, "%s", run.name);
    runs_run_free(&run);
    char db[520];
    snprintf(db, sizeof db, "%s", db_path);
    char *args[] = {"export", name, "--db", db, "--top", "1", "--out", dir, "--force", NULL};
    fflush(stdout);
    if (cmd_export(9, args) == 0)
        printf("exported the chosen model to %s/\n", dir);
    else
        fprintf(stderr, "nas search: the chosen model was not exported (above: why)\n");
}

int cli_search_execute(const char *cmd, const app_settings *s, search_dist *d)
{
    run_ctx c;
    memset(&c, 0, sizeof c);
    nas_err err = {0};
    nas_status st;
    int rc = 0, data_loaded = 0, sig = 0, have_final = 0;
    cli_final_report fin;
    int rank = search_dist_rank(d), root = rank == 0;
    int kind = search_kind_from_name(s->strategy);
    char *saved = NULL;
    search_loop *l = NULL;
    const char *pred_path = s->predictor[0] ? s->predictor : NULL;
    const char *state_path = s->state[0] && root ? s->state : NULL;
    const char *db_path = root ? app_settings_db(s) : NULL;
    const char *run_name = s->name[0] ? s->name : NULL;
    c.epochs = (int)s->epochs;
    c.batch = (int)s->batch;
    c.threads = (int)(s->threads > 0 ? s->threads : search_dist_threads(d));
    c.lr = s->lr;
    c.seed = (uint64_t)s->seed;
    c.bench_seconds = s->bench_s;
    c.state_path = state_path;
    c.keep_weights = app_settings_db(s) != NULL;   /* on every rank: workers pack what rank 0 stores */
    c.show = root;   /* on stderr, with --json too: stdout stays the JSON */
    nas_progress_init(&c.prog, stderr, cli_progress_enabled(), 5.0);
    c.snap.best_reward = c.snap.eta_seconds = NAN;
    c.snap_t = nas_now();
    c.eval_limit = s->budget_evals;
    /* from here on a signal stops the search at its next safe point (a worker's
     * training stops too; rank 0 then tells the others) */
    nas_sig_install(cmd, "the current candidate, recording its joules and saving the run");

    if (s->data_dir[0])   /* where the loader looks for mnist and fashion-mnist */
        setenv("NAS_DATA_DIR", s->data_dir, 1);
    ev_data_opts dopts;
    ev_data_opts_default(&dopts);
    dopts.train_limit = (int)s->subset;
    if (s->val_count >= 0)
        dopts.val_count = (int)s->val_count;
    dopts.test_limit = (int)s->test_limit;
    dopts.seed = (uint64_t)s->seed;
    dopts.skip_test = 1;   /* the search ranks on validation only: it never reads the test split */
    if ((st = ev_data_load(s->data, &dopts, &c.data, &err)))
        goto fail;
    data_loaded = 1;
    if (c.batch > c.data.train.n)
        c.batch = c.data.train.n;
    c.steps_total = c.epochs * (c.data.train.n / c.batch > 0 ? c.data.train.n / c.batch : 1);
    if (s->resolution > 0 && s->resolution != c.data.train.h) {
        st = nas_errf(&err, NAS_EINVAL, "resolution %ld: the data's images are %dx%d (the space takes the data's)",
                      s->resolution, c.data.train.h, c.data.train.w);
        goto fail;
    }
    space_config_default(&c.cfg, c.data.train.h, c.data.train.c, c.data.num_classes);
    c.cfg.max_width = s->max_width;
    c.cfg.n_stages = (int)s->stages;
    if (s->min_side > 0)
        c.cfg.min_side = (int)s->min_side;
    c.cfg.scale_resolution = (int)s->scale_resolution;

    ev_meter_opts mo;
    ev_meter_opts_default(&mo);
    mo.kind = s->meter;
    if (s->watts > 0)
        mo.watts_per_core = s->watts;
    if ((st = ev_meter_open(&mo, &c.meter, &err)))
        goto fail;
#if HAVE_PREDICTOR
    if (root && pred_path && (st = pred_load(pred_path, &c.pred, &err)))
        goto fail;
    if (c.pred && strcmp(pred_model_latency_stat(c.pred), "p10") != 0)
        fprintf(stderr, "nas search: warning: %s predicts %s latency; candidates are measured at the 10th "
                "percentile of single inferences, so predicted and measured latency differ by the machine's "
                "jitter (calibrate with --latency-stat p10 to match)\n", pred_path, pred_model_latency_stat(c.pred));
#else
    if (pred_path) {
        st = nas_errf(&err, NAS_EUNSUPP, "--predictor: the predictor is not in this build");
        goto fail;
    }
#endif
    /* every rank must agree on whether evaluate benchmarks: workers have no predictor loaded */
    c.bench_each = pred_path == NULL;
    c.pred_source = pred_path ? pred_path : "none";

    search_space sp;
    if ((st = search_space_from_config(&sp, &c.cfg, &err)))
        goto fail;
    search_loop_opts o;
    search_loop_opts_default(&o, (search_kind)kind, s->budget_evals);
    o.strategy.seed = (uint64_t)s->seed;
    /* population and sample 0: search_loop_opts_default's, scaled to the evals */
    if (s->population >= 2) o.strategy.population = (int)s->population;
    if (s->sample >= 1) o.strategy.sample_size = (int)s->sample;
    o.strategy.n_mutations = (int)s->mutations;
    o.strategy.lr = s->rl_lr;
    o.strategy.entropy_coef = s->entropy;
    o.strategy.baseline_decay = s->baseline_decay;
    o.strategy.batch = (int)s->rl_batch;
    o.strategy.ppo_epochs = (int)s->ppo_epochs;
    if (o.strategy.sample_size > o.strategy.population)
        o.strategy.sample_size = o.strategy.population;
    search_objective_init(&o.objective, s->target_mj > 0 ? SEARCH_TARGET_MJ : s->target_ms > 0 ? SEARCH_TARGET_MS
                                                                                              : SEARCH_TARGET_NONE,
                          s->target_mj > 0 ? s->target_mj : s->target_ms, (int)s->hard);
    if (!s->hard)
        o.objective.alpha = o.objective.beta = s->w;
    o.objective.ref_energy_mj = s->hv_ref;
    o.limits.joules = s->budget_j;
    o.limits.evals = s->budget_evals;
    o.limits.seconds = s->budget_s;
    o.measure_every = (int)s->measure_every;
    o.measure_top = (int)s->measure_top;
    o.limits.min_hint = cheapest_macs(&c, &sp);
    cost_prior(&c, s->watts > 0 ? s->watts : EV_DEFAULT_WATTS_PER_CORE, &o.limits.prior_j0,
               &o.limits.prior_j_per_hint);

    size_t len;
    int resumed = 0;
    if (db_path) {
        if ((st = runs_open(db_path, RUNS_OPEN_CREATE, &c.db, &err)))
            goto fail;
        int64_t found = -1;
        nas_err ferr = {0};
        if (run_name && runs_run_find(c.db, run_name, &found, &ferr) == NAS_OK) {
            int requeued = 0, failed = 0, seq = -1;
            c.run = found;
            if ((st = runs_resume(c.db, c.run, &requeued, &failed, &err)) ||
                (st = runs_strategy_get(c.db, c.run, &saved, &seq, &err)))
                goto fail;
            if (saved) {
                if ((st = cli_search_restore(c.db, c.run, &sp, saved, &l, &err))) {
                    nas_errctx(&err, "resuming run '%s' from %s", run_name, db_path);
                    goto fail;
                }
                resumed = 1;
                fprintf(stderr, "nas %s: resuming run '%s' of %s after candidate %d (%d re-queued)\n", cmd,
                        run_name, db_path, seq, requeued);
            }
            if ((st = runs_run_set_status(c.db, c.run, "running", &err)))
                goto fail;
        } else {
            char hw[256];
            runs_hw_fingerprint(hw, sizeof hw);
            /* the engine's kernels are part of what the latencies were measured on */
            size_t hl = strlen(hw);
            snprintf(hw + hl, sizeof hw - hl, "|kernels %s", ev_kernels());
            /* everything `nas resume` needs to run it again */
            char *settings = app_settings_to_json(s);
            json_t *sj = settings ? nas_json_load(settings, strlen(settings), 0, NULL, NULL) : NULL;
            nas_free(settings);
            json_t *all = sj ? json_pack("{s:s,s:o}", "command", "search", "settings", sj) : NULL;
            char *txt = all ? json_dumps(all, JSON_COMPACT) : NULL;
            json_decref(all);
            /* and the input normalisation its networks train with, for every export */
            runs_norm nm = {.channels = c.data.train.c < 3 ? c.data.train.c : 3};
            for (int ch = 0; ch < nm.channels; ch++) {
                nm.mean[ch] = c.data.mean[ch];
                nm.std[ch] = c.data.std[ch];
            }
            char *full = txt ? runs_settings_with_norm(txt, &nm) : NULL;
            nas_free(txt);
            if (!full) {
                st = nas_errf(&err, NAS_ENOMEM, "saving the run's settings: out of memory");
                goto fail;
            }
            runs_new_run nr = {.name = run_name, .settings_json = full, .seed = (uint64_t)s->seed,
                               .hardware = hw, .meter = ev_meter_source(c.meter)};
            st = runs_run_create(c.db, &nr, &c.run, &err);
            nas_free(full);
            if (st)
                goto fail;
        }
    }
    if (root && !resumed && state_path && access(state_path, F_OK) == 0) {
        if ((st = nas_read_file(state_path, &saved, &len, &err)) ||
            (st = search_loop_load(&sp, saved, &l, &err))) {
            nas_errctx(&err, "resuming from %s", state_path);
            goto fail;
        }
        resumed = 1;
        fprintf(stderr, "nas %s: resuming from %s (%d candidates done)\n", cmd, state_path, search_loop_n_results(l));
    }
    if (!root) {
        /* a worker: evaluates what rank 0 sends */
    } else if (resumed) {
        /* the budgets given now rule: a resumed search may be given more */
        if ((st = search_loop_set_limits(l, &o.limits, &err)))
            goto fail;
    } else if ((st = search_loop_new(&sp, &o, &l, &err))) {
        goto fail;
    }
    c.loop = l;
    if (root && (st = check_budget_fits(l, &c, o.limits.min_hint, &err)))
        goto fail;
    if (root && c.db) {
        /* what attempts cut short by crashes spent, once: the state saved after the
         * last finished candidate does not know of them */
        double lost = 0;
        if ((st = runs_lost_joules(c.db, c.run, &lost, &err)))
            goto fail;
        if (lost > 0) {
            search_loop_charge_lost(l, lost, ev_meter_uncertainty(c.meter), ev_meter_source(c.meter),
                                    meter_q(c.meter));
            fprintf(stderr, "nas %s: %.4g J spent by interrupted candidates count against the budget\n", cmd, lost);
        }
    }
    if (root)
        fprintf(stderr, "nas %s: %s on %s (%d train, %d val images, %dx%dx%d), %d genes; meter %s (%s)%s; "
                "%d ranks, %d threads each, kernels %s\n", cmd,
                search_kind_name((search_kind)kind), c.data.name, c.data.train.n, c.data.val.n, c.data.train.h,
                c.data.train.w, c.data.train.c, sp.n_genes, ev_meter_source(c.meter),
                ev_quality_name(ev_meter_quality(c.meter)),
                c.pred ? "" : "; no predictor: every candidate is benchmarked", search_dist_size(d), c.threads,
                ev_kernels());

    search_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = &c;
#if HAVE_PREDICTOR
    cb.predict = c.pred ? cb_predict : NULL;
#endif
    cb.evaluate = cb_evaluate;
    cb.measure = pred_path ? cb_measure : NULL;
    cb.on_start = cb_on_start;
    cb.cost_hint = cb_cost_hint;
    cb.on_result = cb_on_result;
    cb.progress = cb_progress;
    cb.should_stop = cb_should_stop;
#if HAVE_PREDICTOR
    if (root && c.pred && s->hard)
        warn_unreachable(cmd, &c, &sp, &o.objective);
#endif
    search_dist_opts dopt;
    search_dist_opts_default(&dopt);
    dopt.sync = (int)s->mpi_sync;
    dopt.local_slots = (int)s->slots;
    dopt.worker_timeout = s->worker_timeout;
    dopt.own_joules = own_joules;
    dopt.own_rel_unc = ev_meter_uncertainty(c.meter);
    dopt.own_estimated = ev_meter_quality(c.meter) == EV_ESTIMATED;
    dopt.take_payload = take_weights;
    dopt.put_payload = put_weights;
    dopt.on_abandoned = abandoned;
    dopt.ctx = &c;
    c.dist = d;
    search_stop why = SEARCH_STOP_NONE;
    st = search_dist_run(d, &dopt, l, &cb, &why, &err);
    sig = nas_sig_caught();
    if (root && (st == NAS_EINTR || (st == NAS_OK && why == SEARCH_STOP_REQUESTED))) {
        /* a stop on request: what finished is committed, the cut-short candidate
         * recorded (a search that had ended by then just ends) */
        if (st)
            fprintf(stderr, "nas %s: %s\n", cmd, err.msg);
        st = NAS_OK;
        why = SEARCH_STOP_REQUESTED;
    }
    if (!root) {
        if (st)
            goto fail;
        goto done;
    }
    nas_progress_clear(&c.prog);
    if (st)
        goto fail;
    if (why == SEARCH_STOP_REQUESTED && c.db) {
        char rn[96];
        if (run_name)
            snprintf(rn, sizeof rn, "%s", run_name);
        else
            snprintf(rn, sizeof rn, "run-%lld", (long long)c.run);
        fprintf(stderr, "nas %s: stopped by %s after %d results; the run is saved: 'nas resume %s --db %s' "
                "continues it\n", cmd, nas_sig_name(sig), search_loop_n_results(l), rn, db_path);
    }
    else if (why == SEARCH_STOP_REQUESTED)
        fprintf(stderr, "nas %s: stopped by %s%s\n", cmd, nas_sig_name(sig),
                state_path ? "; run the same command to resume" : "");
    if (c.n_outside)
        fprintf(stderr, "nas %s: warning: %ld candidates lay outside what %s was fit on (first: %s); "
                "its figures for them are extrapolations\n", cmd, c.n_outside, pred_path, c.outside_why);
    if (s->final_top > 0 && why != SEARCH_STOP_REQUESTED && search_loop_best(l)) {
        /* the search is over and recorded, whatever final training does */
        if (c.db && (st = runs_run_set_status(c.db, c.run, "done", &err)))
            goto fail;
        st = final_training(s, &c, l, &o.objective, &dopts, &fin, &err);
        have_final = 1;   /* freed at the end, even when it failed half-way */
        if (st) {
            nas_errctx(&err, "the search's results are recorded; final training failed");
            goto fail_final;
        }
    }
    if (s->json ? print_json(&c, l, why, (int)s->top, have_final ? cli_final_json(&fin) : NULL)
                : (print_text(&c, l, why, (int)s->top), 0)) {
        st = nas_errf(&err, NAS_ENOMEM, "out of memory writing the report");
        goto fail;
    }
    if (have_final && !s->json)
        cli_final_print(&fin, stdout);
    rc = why == SEARCH_STOP_REQUESTED ? (sig ? 128 + sig : 1) : 0;
    const search_result *best = search_loop_best(l);
    if (best && best->eval.accuracy <= 1.5 / c.data.num_classes)
        fprintf(stderr, "nas %s: warning: the chosen model's accuracy, %.1f%%, is at chance for %d classes: it "
                "learned nothing (more --epochs, a larger --subset or another --lr may help)\n", cmd,
                100 * best->eval.accuracy, c.data.num_classes);
    if (c.db) {
        /* a status that cannot be written would leave the run marked running */
        if ((st = runs_run_set_status(c.db, c.run, why == SEARCH_STOP_REQUESTED ? "stopped" : "done", &err)))
            goto fail;
        if (!s->json && !s->no_export && best && why != SEARCH_STOP_REQUESTED)
            have_final ? export_final(s, &c, &fin) : export_chosen(s, &c, db_path);
    }
    goto done;
fail:
    rc = root ? cli_fail(cmd, st, &err) : 1;
    if (c.db && c.run > 0 && runs_run_set_status(c.db, c.run, "failed", &err))
        fprintf(stderr, "nas %s: the run could not be marked failed either: %s\n", cmd, err.msg);
    goto done;
fail_final:   /* the search is recorded as done: only final training failed */
    rc = root ? cli_fail(cmd, st, &err) : 1;
done:
    nas_sig_uninstall();
    if (have_final)
        cli_final_free(&fin);
    nas_free(saved);
    drop_weights(&c);
    nas_free(c.cand);
    runs_close(c.db);
    search_loop_free(l);
#if HAVE_PREDICTOR
    pred_free(c.pred);
#endif
    ev_meter_close(c.meter);
    if (data_loaded)
        ev_data_free(&c.data);
    return rc;
}

int cmd_search(int argc, char **argv)
{
    search_dist *d = NULL;
    nas_err err = {0};
    nas_status st = search_dist_init(&argc, &argv, &d, &err);
    if (st)
        return cli_fail(CMD, st, &err);
    if (search_dist_rank(d) != 0) {   /* workers print nothing: rank 0 tells */
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
    }
    app_settings s;
    app_settings_defaults(&s);
    int rc = cli_flags_parse(CMD, APP_SEARCH, argc, argv, &s, usage);
    if (rc < 0)
        rc = cli_settings_check(CMD, APP_SEARCH, &s);
    /* workers print nothing: usage errors are rank 0's to tell */
    if (rc < 0)
        rc = cli_search_execute(CMD, &s, d);
    search_dist_finish(d);
    return rc;
}
