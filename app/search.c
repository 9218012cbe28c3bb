/* search.c — a search session: the search loop wired to the real parts. The
 * strategy proposes genomes of the space sized to the data; the predictor
 * (when given) screens them against a hard target and scores them; the
 * evaluator trains each briefly on the data (the proxy task: few epochs, a
 * subset) and its meter says what that cost in joules; the best are
 * benchmarked for real energy and latency per inference. Every candidate goes
 * into the run store as it ends, with the loop's state, so a killed search
 * resumes and ends where it would have.
 *
 * Progress goes to stderr (a line per candidate, and a status line from
 * base/progress.h: redrawn in place on a terminal, a plain line every few
 * seconds elsewhere); the results are the caller's to print (cli/cmd_search.c). */
#include "app/app.h"
#include "base/progress.h"
#include "evaluator/ev.h"
#include "predictor/pred.h"
#include "runs/runs.h"
#include "search/dist.h"
#include "search/search.h"
#include "space/space.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct app_search run_ctx;

/* ---- the wiring ------------------------------------------------------------ */

struct app_search {
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
    int bench_each;            /* no predictor and no rungs: evaluate benchmarks every candidate */
    double bench_s_max;        /* the longest benchmark on this rank so far (0: none yet) */
    search_loop *loop;
    const char *pred_source;   /* the predictor file, the source of predicted figures */
    int auto_pred, live;       /* --predictor auto (one process), and progress on a terminal */
    char auto_path[512];       /* the cached predictor it found or fit */
    double calib_j;            /* joules the calibration cost (0: none was needed) */
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
    /* the session: its settings, the loop's options and what it holds */
    const app_settings *s;
    const char *cmd, *db_path, *run_name, *pred_path;
    int root, kind, data_loaded, have_final, sig;
    search_space sp;
    search_loop_opts o;
    ev_data_opts dopts;
    app_final_report fin;
    char *saved;
};

static nas_status genome_net(const run_ctx *c, const space_genome *g, space_spec *spec, space_net *net, nas_err *err)
{
    nas_status st = space_genome_to_spec(&c->cfg, g, spec, err);
    if (!st)
        st = space_resolve(spec, net, err);
    return st;
}

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
    double avg_watts;          /* over all of its training so far */
    int win_steps;
    double setup_j;            /* what the candidate cost up to its first step (building the net) */
    double j_train, t_train;   /* the meter and the clock when training began (after the net was built) */
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
    int steps_total;           /* of this candidate's training (a promotion trains longer) */
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
                      w->step, w->steps_total, line, b ? b->joules_hi : NAN);
}

/* The power the benchmark after training is costed at: the dearest window's,
 * or, before a window has closed, the training's so far. Left at 0, a
 * candidate too short for a window had its benchmark look free (a 12 J mpirun
 * search under load: 1.0 J of benchmark after the stop, past the allowance). */
static double bench_watts(const epoch_watch *w)
{
    return w->watts > 0 ? w->watts : w->avg_watts > 0 ? w->avg_watts : 0;
}

/* The joules that must stay unspent when training stops (with uncertainty). */
static double watch_tail(const epoch_watch *w)
{
    /* setup_j: what came before the first step (building the network, its
     * first touch of the data) comes again in kind after the last (the
     * weights packed, the inference net built for the benchmark); on a slow
     * build or machine it is no small share (ASan: a 12 J mpirun search
     * counted 18 J without it) */
    return (w->step_j * (2 + w->val_steps) + bench_watts(w) * w->bench_s + w->setup_j) * (1 + w->unc);
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
    if (t > w->t_train)
        w->avg_watts = (*j - w->j_train) / (t - w->t_train);
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
    return (j - w->j0) * (1 + w->unc) + bench_watts(w) * w->bench_s * (1 + w->unc) < w->allowance;
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

/* About how long bench() runs: half as long again as the longest one so far
 * on this rank (its time is mostly the repeats' min_seconds, whatever the
 * network), or before any, its repeats plus a margin for the warm-up, the
 * inference net's build and a slow network's last call past min_seconds. */
static double bench_seconds(const run_ctx *c)
{
    return c->bench_s_max > 0 ? 1.5 * c->bench_s_max : 1.5 * BENCH_REPEATS * c->bench_seconds + 0.2;
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
    nas_status st = app_settings_int8(c->s)
                        ? ev_bench_infer_int8(net, &c->data.train, EV_BENCH_INT8_CALIB, c->meter, &bo, &br, err)
                        : ev_bench_infer(net, c->meter, &bo, &br, err);
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

/* Every candidate's first steps: its network, and the meter before it. */
static nas_status cand_begin(run_ctx *c, const space_genome *g, space_net *arch, double *j0, nas_err *err)
{
    space_spec spec;
    nas_status st = genome_net(c, g, &spec, arch, err);
    if (st)
        return st;
    *j0 = 0;
    return ev_meter_read(c->meter, j0, err);
}

/* The watch on candidate id's training (epochs of it), and the training options it hooks. */
static void cand_watch(run_ctx *c, long id, double j0, double allowance, uint64_t seed, int epochs, epoch_watch *w,
                       ev_train_opts *to)
{
    *w = (epoch_watch){.meter = c->meter, .j0 = j0, .allowance = allowance, .unc = ev_meter_uncertainty(c->meter),
                       .last_j = j0, .last_t = nas_now(), .bench_s = c->bench_each ? bench_seconds(c) : 0,
                       /* a forward pass costs about a third of a training step; half, to be safe */
                       .val_steps = 0.5 * ceil((double)c->data.val.n / (c->batch > 0 ? c->batch : 1)),
                       .db = c->db, .cand = c->db && id < c->n_cand ? c->cand[id] : -1, .last_beat = -HUGE_VAL,
                       .c = c, .id = id, .dist = c->dist,
                       .steps_total = c->steps_total / (c->epochs > 0 ? c->epochs : 1) * epochs};
    ev_train_opts_default(to);
    to->epochs = epochs;
    to->batch = c->batch;
    to->lr = c->lr;
    to->threads = c->threads;
    to->seed = seed;
    to->on_epoch = watch_epoch;
    to->on_step = watch_step;
    to->val_count = watch_val_count;
    to->ctx = w;
}

/* What a candidate that trained to its end (or to its allowance, when it
 * still yields the accuracy it had reached) gives: its accuracy, its
 * benchmark when that fits the allowance, and its weights. */
static nas_status cand_trained(run_ctx *c, long id, ev_net *net, epoch_watch *w, const ev_train_result *r,
                               search_eval *out, nas_err *err)
{
    out->status = SEARCH_EVAL_OK;
    out->stopped_early = w->over;
    out->accuracy = c->data.val.n > 0 ? r->val_acc : r->train_acc;
    int fits = w->bench_s > 0 && watch_bench_fits(w);   /* bench_s 0: no benchmark (a predictor, a promotion) */
    if (w->st)
        return nas_errf(err, w->st, "candidate %ld: %s", id, w->err.msg);
    if (fits) {
        double t = nas_now();
        if (bench(c, net, out, err))
            return nas_errctx(err, "benchmarking candidate %ld", id);
        c->bench_s_max = fmax(c->bench_s_max, nas_now() - t);
    }
    /* Every trained candidate's weights go to the store (a small MNIST net's blob is
     * ~150 KB), so that `nas export` writes the network whose accuracy was recorded,
     * whichever ends up chosen. Packed here, on the rank that trained it; stored by
     * put_weights on rank 0 (under Open MPI they travel with the result). */
    if (c->keep_weights && ev_net_weights_pack(net, &c->weights, &c->weights_len, err))
        return nas_errctx(err, "candidate %ld", id);
    return NAS_OK;
}

static nas_status store_add(run_ctx *c, long id, const space_genome *g, const search_prediction *p, int rung,
                            long parent, nas_err *err);

/* A promotion's start on rank 0: the weights its parent ended with, from the
 * run store (nas_malloc'd into *blob). */
static nas_status parent_blob(run_ctx *c, long id, long parent, void **blob, size_t *len, nas_err *err)
{
    *blob = NULL;
    *len = 0;
    if (!c->db || parent < 0)
        return nas_errf(err, NAS_EINTERNAL, "candidate %ld: the weights of #%ld it trains on from are not in the "
                        "run store", id, parent);
    nas_status st;
    if (parent >= c->n_cand || c->cand[parent] < 0) {   /* it finished before a resume: find its row */
        const search_result *p = NULL;
        for (int i = 0; i < search_loop_n_results(c->loop) && !p; i++)
            if (search_loop_result(c->loop, i)->id == parent)
                p = search_loop_result(c->loop, i);
        if (!p)
            return nas_errf(err, NAS_EINTERNAL, "candidate %ld: #%ld, which it trains on from, is not a result",
                            id, parent);
        if ((st = store_add(c, parent, &p->genome, &p->pred, p->rung, p->parent, err)))
            return st;
    }
    int found = 0;
    st = runs_weights_get(c->db, c->cand[parent], blob, len, &found, err);
    if (!st && !found)
        st = nas_errf(err, NAS_EINTERNAL, "candidate %ld: #%ld, which it trains on from, has no stored weights", id,
                      parent);
    return st;
}

/* search_dist's give_payload (rank 0): a promotion's rung and its parent's weights go with its work. */
static nas_status give_start(void *ctx, long id, int *rung, void **bytes, size_t *len, nas_err *err)
{
    run_ctx *c = ctx;
    long parent;
    *bytes = NULL;
    *len = 0;
    *rung = search_loop_lineage(c->loop, id, &parent);
    return *rung > 0 ? parent_blob(c, id, parent, bytes, len, err) : NAS_OK;
}

/* Candidate id's rung, and for a promotion its parent's weights loaded into
 * net: on rank 0 (and in one process) from the loop and the store, on a
 * worker from what rank 0 sent with the work. */
static nas_status cand_start(run_ctx *c, long id, ev_net *net, int *rung, nas_err *err)
{
    const void *sent = NULL;
    void *blob = NULL;
    size_t len = 0;
    nas_status st = NAS_OK;
    if (c->root) {
        long parent;
        *rung = search_loop_lineage(c->loop, id, &parent);
        if (*rung > 0 && (st = parent_blob(c, id, parent, &blob, &len, err)))
            return st;
        sent = blob;
    } else {
        *rung = search_dist_job(c->dist, &sent, &len);
        if (*rung > 0 && !sent)
            return nas_errf(err, NAS_ENOMEM, "candidate %ld: rank 0 sent no weights to train on from", id);
    }
    if (*rung > 0 && (st = ev_net_weights_unpack(net, sent, len, err)))
        nas_errctx(err, "candidate %ld: the weights of the rung below", id);
    nas_free(blob);
    return st;
}

static nas_status cb_evaluate(void *ctx, long id, const space_genome *g, double allowance, search_eval *out,
                              nas_err *err)
{
    run_ctx *c = ctx;
    space_net arch;   /* ~6 KB: fine on the stack, and reentrant */
    ev_net *net = NULL;
    double j0;
    drop_weights(c);   /* only this candidate's may travel with its result */
    nas_status st = cand_begin(c, g, &arch, &j0, err);
    if (st)
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
    /* a promotion (multi-fidelity) trains on from the weights its rung below ended with */
    int rung = 0;
    if ((st = cand_start(c, id, net, &rung, err))) {
        ev_net_free(net);
        return st;
    }
    double work = search_rung_work(rung, c->o.eta);
    epoch_watch w;
    ev_train_opts to;
    cand_watch(c, id, j0, allowance, no.seed, (int)(c->epochs * work + 0.5), &w, &to);
    if (rung > 0)
        w.bench_s = 0;   /* a promotion is not benchmarked again: the loop gives it its parent's figures */
    ev_train_result r;
    if ((st = ev_meter_read(c->meter, &w.j_train, err))) {
        ev_net_free(net);
        return nas_errctx(err, "candidate %ld", id);
    }
    w.last_j = w.j_train;   /* the first window times steps, not the net's creation */
    w.last_t = w.t_train = nas_now();
    st = ev_train(net, &c->data, &to, &r, &local);
    if (w.st) {
        st = nas_errf(err, w.st, "candidate %ld: %s", id, w.err.msg);
    } else if (w.stopped) {
        ev_net_free(net);
        return cut_short(c, id, j0, out, err);
    } else if (st == NAS_EDIVERGED) {
        out->status = SEARCH_EVAL_DIVERGED;
        st = NAS_OK;
    } else if (st) {
        st = nas_errf(err, st, "candidate %ld: %s", id, local.msg);
    } else {
        st = cand_trained(c, id, net, &w, &r, out, err);
    }
    ev_net_free(net);
    if (st)
        return st;
    if (meter_into(c, j0, out, err))
        return nas_errctx(err, "candidate %ld", id);
    /* had it stopped after its first step, the steps between would not have been spent */
    out->floor_joules = (out->joules - (w.seen_step ? w.j_last - w.j_first : 0)) * (1 + w.unc);
    return NAS_OK;
}

static nas_status cb_measure(void *ctx, long id, const space_genome *g, double allowance, search_eval *out,
                             nas_err *err)
{
    (void)allowance;
    run_ctx *c = ctx;
    space_net arch;   /* ~6 KB: fine on the stack, and reentrant */
    ev_net *net = NULL;
    double j0;
    nas_status st = cand_begin(c, g, &arch, &j0, err);
    if (st)
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

/* Evolution's population when only joules bound the search: the default for
 * the evaluations the budget is expected to pay for (the loop's estimate
 * before any is measured, averaged over sampled genomes), where that is fewer
 * than --budget-evals'. Sized by
 * --budget-evals 1000, a 1,500 J search of ~20 evaluations never got past its
 * random start. Not with rungs: there rung 0 is cheap, many more evaluations
 * fit, and bench-search's multi-fidelity did worse with a population of 8
 * (README, "Does the search save joules?"). */
static void scale_population(const run_ctx *c, search_loop_opts *o)
{
    const app_settings *s = c->s;
    if (c->kind != SEARCH_EVOLUTION || s->population >= 2 || !(s->budget_j > 0) || s->rungs > 1)
        return;
    enum { N = 64 };
    search_budget fresh;   /* what the loop will estimate for its first candidates */
    search_budget_init(&fresh, &o->limits);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, (uint64_t)s->seed, 0x9097a7);   /* its own stream: the search's is untouched */
    double sum = 0;
    int n = 0;
    for (int i = 0; i < N; i++) {
        space_genome g;
        search_space_sample(&c->sp, &rng, &g);
        double m = cb_cost_hint((void *)c, &g);
        if (m > 0 && isfinite(m)) {
            sum += search_budget_estimate_joules(&fresh, m);
            n++;
        }
    }
    if (n == 0 || !(sum > 0))
        return;
    double evals = s->budget_j / (sum / n);
    if (s->budget_evals > 0 && evals >= (double)s->budget_evals)
        return;
    search_opts d;
    search_opts_default(&d, SEARCH_EVOLUTION, evals < 1 ? 1 : (long)evals);
    o->strategy.population = d.population;
    o->strategy.sample_size = s->sample >= 1 ? (int)s->sample : d.sample_size;
    if (o->strategy.sample_size > o->strategy.population)
        o->strategy.sample_size = o->strategy.population;
}

/* ---- the run store --------------------------------------------------------- */

static nas_status store_add(run_ctx *c, long id, const space_genome *g, const search_prediction *p, int rung,
                            long parent, nas_err *err)
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
                        .macs = cost.macs, .rung = rung, .parent = (int)parent};
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
    long parent;
    int rung = search_loop_lineage(c->loop, id, &parent);
    nas_status st = store_add(c, id, g, p, rung, parent, err);
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
            if ((st = store_add(c, r->id, &r->genome, &r->pred, r->rung, r->parent, err)))
                goto cleanup;
        }
        st = runs_cand_add_measurement(c->db, c->cand[r->id], &lat, &en, &j, state, err);
        goto cleanup;
    }
    if (r->screened && (st = store_add(c, r->id, &r->genome, &r->pred, r->rung, r->parent, err)))
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
    res.error = r->over_budget ? APP_OVER_BUDGET_MSG
              : e->status == SEARCH_EVAL_OK && e->stopped_early ? APP_STOPPED_EARLY_MSG
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

/* A result's energy and latency as its line shows them: benchmarked (with the
 * meter's quality word), else predicted, else neither (a candidate stopped at
 * its allowance before its benchmark, with no predictor). */
static const char *cost_text(const search_result *r, char *buf, size_t n)
{
    if (r->energy_mj > 0 || r->latency_ms > 0)
        snprintf(buf, n, "%.3g mJ (%s)  %.3g ms", r->energy_mj,
                 r->eval.energy_mj > 0 ? search_eval_quality(&r->eval) : "predicted", r->latency_ms);
    else
        snprintf(buf, n, "not benchmarked");
    return buf;
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
        char pred[80] = "";
        if (r->pred.energy_mj > 0 || r->pred.latency_ms > 0)
            snprintf(pred, sizeof pred, " (predicted %.3g mJ, %.3g ms)", r->pred.energy_mj, r->pred.latency_ms);
        fprintf(stderr, "#%ld benchmarked: %.3g mJ (%s)  %.3g ms%s  reward %.4f%s%s\n", r->id, r->eval.energy_mj,
                search_eval_quality(&r->eval), r->eval.latency_ms, pred, r->reward,
                r->feasible ? "" : "  [over the target]", r->is_best ? "  [best]" : "");
    } else if (!r->cached && !r->eval.recorded) {   /* (on_start said why a recorded one ended) */
        const search_eval *e = &r->eval;
        char rung[64] = "", cost[96];
        if (r->rung > 0)
            snprintf(rung, sizeof rung, " (rung %d, on from #%ld)", r->rung, r->parent);
        if (e->status == SEARCH_EVAL_OK)
            fprintf(stderr, "#%ld%s acc %.4f  %s  reward %.4f%s%s%s  %.1f J  %.1f s\n", r->id,
                    rung, e->accuracy, cost_text(r, cost, sizeof cost), r->reward, r->on_front ? "  [front]" : "",
                    r->is_best ? "  [best]" : "",
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


/* ---- what the caller reads ---------------------------------------------------- */

void app_search_figures(const app_search *c, const space_genome *g, double *params, double *macs, char **spec_json)
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


/* ---- running it ---------------------------------------------------------------- */

static nas_status own_joules(void *ctx, double *j, nas_err *err)
{
    run_ctx *c = ctx;
    return ev_meter_read(c->meter, j, err);
}

/* A finally trained model into the run store as soon as it is trained: its
 * figures and weights (runs_final_put), so `nas report`, `nas prune RUN` and
 * `nas export RUN` find it and a failure later loses none. */
static nas_status store_final(void *ctx, const app_final_model *m, const ev_net *net, const ev_data *data,
                              nas_err *err)
{
    run_ctx *c = ctx;
    if (!c->db || m->id >= c->n_cand || c->cand[m->id] < 0)
        return NAS_OK;
    void *blob = NULL;
    size_t len = 0;
    nas_status st = ev_net_weights_pack(net, &blob, &len, err);
    runs_final f = {.cand = c->cand[m->id], .epochs = m->epochs_done, .train_images = data->train.n,
                    .test_images = data->test.n, .val_acc = m->val_acc, .test_acc = m->test_acc,
                    .seconds = m->seconds};
    f.joules = runs_fig_make(m->joules, ev_meter_source(c->meter), ev_quality_name(ev_meter_quality(c->meter)));
    if (!st)
        st = runs_final_put(c->db, &f, blob, len, err);
    nas_free(blob);
    return st;
}

/* The top of the leaderboard trained again at full fidelity and tested. */
/* final-distill's teacher: the search's most accurate candidate, when that
 * is not the student itself (NULL then, and said). */
static const search_result *final_teacher(const search_loop *l, const search_result *student)
{
    const search_result *best = NULL;
    for (int i = 0; i < search_loop_n_results(l); i++) {
        const search_result *r = search_loop_result(l, i);
        if (!r->screened && r->eval.status == SEARCH_EVAL_OK && !r->eval.stopped_early && (!best || r->eval.accuracy > best->eval.accuracy))
            best = r;
    }
    if (!best || best == student || !(best->eval.accuracy > student->eval.accuracy)) {
        fprintf(stderr, "final training: no distillation: the most accurate candidate is #%ld itself\n",
                student->id);
        return NULL;
    }
    return best;
}

static nas_status final_training(const app_settings *s, run_ctx *c, const search_loop *l,
                                 const search_objective *obj, const ev_data_opts *dopts, app_final_report *fin,
                                 nas_err *err)
{
    int idx[APP_FINAL_MAX];
    int n = search_loop_leaderboard(l, idx, (int)s->final_top);
    const search_result *cands[APP_FINAL_MAX];
    nas_status st = NAS_OK;
    for (int i = 0; i < n && !st; i++) {
        const search_result *r = cands[i] = search_loop_result(l, idx[i]);
        if (c->db && (r->id >= c->n_cand || c->cand[r->id] < 0))   /* finished before a resume */
            st = store_add(c, r->id, &r->genome, &r->pred, r->rung, r->parent, err);
    }
    app_final_opts fo = {.top = (int)s->final_top, .epochs = (int)s->final_epochs, .batch = (int)s->final_batch,
                         .subset = s->final_subset, .lr = s->final_lr, .threads = c->threads,
                         .seed = (uint64_t)s->seed, .on_model = store_final, .ctx = c,
                         .kd_alpha = s->kd_alpha, .kd_temperature = s->kd_temp};
    if (s->final_distill && n > 0)
        fo.teacher = final_teacher(l, cands[0]);
    nas_progress_clear(&c->prog);
    if (!st)
        st = app_final_train(&fo, &c->cfg, s->data, dopts, c->meter, obj, cands, n, fin, err);
    if (!st && c->db && fin->chosen >= 0)
        st = runs_final_choose(c->db, c->run, c->cand[fin->models[fin->chosen].id], err);
    return st;
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


/* The data, and the space sized to it. */
static nas_status load_data(run_ctx *c, nas_err *err)
{
    const app_settings *s = c->s;
    if (s->data_dir[0])   /* where the loader looks for mnist and fashion-mnist */
        setenv("NAS_DATA_DIR", s->data_dir, 1);
    ev_data_opts_default(&c->dopts);
    c->dopts.train_limit = (int)s->subset;
    if (s->val_count >= 0)
        c->dopts.val_count = (int)s->val_count;
    c->dopts.test_limit = (int)s->test_limit;
    c->dopts.seed = (uint64_t)s->seed;
    c->dopts.skip_test = 1;   /* the search ranks on validation only: it never reads the test split */
    nas_status st = ev_data_load(s->data, &c->dopts, &c->data, err);
    if (st)
        return st;
    c->data_loaded = 1;
    if (c->batch > c->data.train.n)
        c->batch = c->data.train.n;
    c->steps_total = c->epochs * (c->data.train.n / c->batch > 0 ? c->data.train.n / c->batch : 1);
    if (s->resolution > 0 && s->resolution != c->data.train.h)
        return nas_errf(err, NAS_EINVAL, "resolution %ld: the data's images are %dx%d (the space takes the data's)",
                        s->resolution, c->data.train.h, c->data.train.w);
    space_config_default(&c->cfg, c->data.train.h, c->data.train.c, c->data.num_classes);
    c->cfg.max_width = s->max_width;
    c->cfg.n_stages = (int)s->stages;
    if (s->min_side > 0)
        c->cfg.min_side = (int)s->min_side;
    c->cfg.scale_resolution = (int)s->scale_resolution;
    return search_space_from_config(&c->sp, &c->cfg, err);
}

/* --predictor auto: the cached predictor of this machine and space, else a
 * small calibration first, whose joules the search is charged. Without a
 * cache (NAS_CACHE_DIR=off) the search goes without, as with none. */
static nas_status auto_predictor(run_ctx *c, nas_err *err)
{
    double j0 = 0, j1 = 0, t0 = nas_now();
    int calibrated = 0;
    nas_status st = ev_meter_read(c->meter, &j0, err);
    if (st)
        return st;
    st = app_auto_predictor(c->s, &c->cfg, c->threads, ev_meter_source(c->meter), c->live, &c->pred, c->auto_path,
                            sizeof c->auto_path, &calibrated, err);
    if (st == NAS_EUNSUPP)
        return NAS_OK;
    if (st || (st = ev_meter_read(c->meter, &j1, err)))
        return st;
    c->pred_path = c->auto_path;
    if (!calibrated) {
        fprintf(stderr, "nas %s: predictor: %s (cached for this machine and space)\n", c->cmd, c->auto_path);
        return NAS_OK;
    }
    c->calib_j = j1 > j0 ? j1 - j0 : 0;
    fprintf(stderr, "nas %s: predictor: calibrated for this machine and space on %d networks in %.0f s, %.4g J "
            "(%s, %s), charged to the search's budget; cached as %s\n", c->cmd, pred_model_samples(c->pred),
            nas_now() - t0, c->calib_j, ev_meter_source(c->meter), ev_quality_name(ev_meter_quality(c->meter)),
            c->auto_path);
    return NAS_OK;
}

/* A predictor of float32 inference does not rank int8 models, nor the other
 * way round: its fingerprint's measure ends in ":int8" when it was fit on
 * int8 inference (app_calib_setup). */
static nas_status pred_deploys(const run_ctx *c, nas_err *err)
{
    const char *m = pred_model_hw(c->pred)->measure;
    int fit_int8 = app_measure_int8(m), want = app_settings_int8(c->s);
    if (fit_int8 == want)
        return NAS_OK;
    return nas_errf(err, NAS_EINVAL, "the predictor %s was fit on %s inference (measure '%s') and this search "
                    "deploys %s: calibrate one with%s --deploy int8", c->pred_path ? c->pred_path : c->auto_path,
                    fit_int8 ? "int8" : "float32", m, want ? "int8" : "float32", want ? "" : "out");
}

/* The meter, and the predictor where one is given (rank 0 only). */
static nas_status open_parts(run_ctx *c, nas_err *err)
{
    const app_settings *s = c->s;
    ev_meter_opts mo;
    ev_meter_opts_default(&mo);
    mo.kind = s->meter;
    if (s->watts > 0)
        mo.watts_per_core = s->watts;
    nas_status st = ev_meter_open(&mo, &c->meter, err);
    if (st)
        return st;
    if (c->root && c->pred_path && (st = pred_load(c->pred_path, &c->pred, err)))
        return st;
    if (c->root && c->auto_pred && (st = auto_predictor(c, err)))
        return st;
    if (c->pred && (st = pred_deploys(c, err)))
        return st;
    if (c->pred && strcmp(pred_model_latency_stat(c->pred), "p10") != 0)
        fprintf(stderr, "nas %s: warning: %s predicts %s latency; candidates are measured at the 10th "
                "percentile of single inferences, so predicted and measured latency differ by the machine's "
                "jitter (calibrate with --latency-stat p10 to match)\n", c->cmd, c->pred_path,
                pred_model_latency_stat(c->pred));
    /* Every rank must agree on whether evaluate benchmarks: workers have no
     * predictor loaded. With no predictor but rungs, rung 0 skips the
     * benchmark (it costs as much as a short rung's training, and most of
     * rung 0 stops there): the loop measures a candidate before it promotes it. */
    c->bench_each = c->pred_path == NULL && c->s->rungs <= 1;
    c->pred_source = c->pred_path ? c->pred_path : "none";
    return NAS_OK;
}

/* The loop's options from the settings: strategy, objective, limits. */
static void loop_options(run_ctx *c)
{
    const app_settings *s = c->s;
    search_loop_opts *o = &c->o;
    search_loop_opts_default(o, (search_kind)c->kind, s->budget_evals);
    o->strategy.seed = (uint64_t)s->seed;
    /* population and sample 0: search_loop_opts_default's, scaled to the evals */
    if (s->population >= 2) {   /* and the tournament its quarter, as the help says, unless given */
        o->strategy.population = (int)s->population;
        o->strategy.sample_size = o->strategy.population / 4 < 2 ? 2 : o->strategy.population / 4;
    }
    if (s->sample >= 1) o->strategy.sample_size = (int)s->sample;
    o->strategy.n_mutations = (int)s->mutations;
    o->strategy.lr = s->rl_lr;
    o->strategy.entropy_coef = s->entropy;
    o->strategy.baseline_decay = s->baseline_decay;
    o->strategy.batch = (int)s->rl_batch;
    o->strategy.ppo_epochs = (int)s->ppo_epochs;
    if (o->strategy.sample_size > o->strategy.population)
        o->strategy.sample_size = o->strategy.population;
    search_target target = s->target_mj > 0 ? SEARCH_TARGET_MJ : s->target_ms > 0 ? SEARCH_TARGET_MS
                                                                                   : SEARCH_TARGET_NONE;
    search_objective_init(&o->objective, target, s->target_mj > 0 ? s->target_mj : s->target_ms, (int)s->hard);
    if (!s->hard)
        o->objective.alpha = o->objective.beta = s->w;
    o->objective.ref_energy_mj = s->hv_ref;
    o->limits.joules = s->budget_j;
    o->limits.evals = s->budget_evals;
    o->limits.seconds = s->budget_s;
    o->measure_every = (int)s->measure_every;
    o->measure_top = (int)s->measure_top;
    o->rungs = (int)s->rungs;
    o->eta = (int)s->eta;
    o->limits.min_hint = cheapest_macs(c, &c->sp);
    double watts = s->watts > 0 ? s->watts : EV_DEFAULT_WATTS_PER_CORE;
    cost_prior(c, watts, &o->limits.prior_j0, &o->limits.prior_j_per_hint);
    /* A benchmark after training, before the first is measured: its time bound
     * at the prior's power on every thread (with rungs and no predictor it can
     * cost more than the cheapest rung-0 training, the loop's stand-in). */
    o->limits.measure_joules =
        bench_seconds(c) * watts * (c->threads > 0 ? c->threads : 1) * (1 + ev_meter_uncertainty(c->meter));
    scale_population(c, o);   /* from the limits, all set now */
}

/* A new run's row: everything `nas resume` needs to run it again, and the
 * input normalisation its networks train with, for every export. */
static nas_status create_run(run_ctx *c, nas_err *err)
{
    char hw[256];
    runs_hw_fingerprint(hw, sizeof hw);
    /* the engine's kernels are part of what the latencies were measured on */
    size_t hl = strlen(hw);
    snprintf(hw + hl, sizeof hw - hl, "|kernels %s", ev_kernels());
    char *settings = app_settings_to_json(c->s);
    json_t *sj = settings ? nas_json_load(settings, strlen(settings), 0, NULL, NULL) : NULL;
    nas_free(settings);
    json_t *all = sj ? json_pack("{s:s,s:o}", "command", "search", "settings", sj) : NULL;
    char *txt = all ? json_dumps(all, JSON_COMPACT) : NULL;
    json_decref(all);
    runs_norm nm = {.channels = c->data.train.c < 3 ? c->data.train.c : 3};
    for (int ch = 0; ch < nm.channels; ch++) {
        nm.mean[ch] = c->data.mean[ch];
        nm.std[ch] = c->data.std[ch];
    }
    char *full = txt ? runs_settings_with_norm(txt, &nm) : NULL;
    nas_free(txt);
    if (!full)
        return nas_errf(err, NAS_ENOMEM, "saving the run's settings: out of memory");
    runs_new_run nr = {.name = c->run_name, .settings_json = full, .seed = (uint64_t)c->s->seed,
                       .hardware = hw, .meter = ev_meter_source(c->meter)};
    nas_status st = runs_run_create(c->db, &nr, &c->run, err);
    nas_free(full);
    return st;
}

/* The run store: a run of this name resumes from its saved state, else a new
 * run is created. *resumed says which; l is the restored loop. */
static nas_status open_run(run_ctx *c, search_loop **l, int *resumed, nas_err *err)
{
    nas_status st = runs_open(c->db_path, RUNS_OPEN_CREATE, &c->db, err);
    if (st)
        return st;
    int64_t found = -1;
    nas_err ferr = {0};
    if (!c->run_name || runs_run_find(c->db, c->run_name, &found, &ferr) != NAS_OK)
        return create_run(c, err);
    int requeued = 0, failed = 0, seq = -1;
    c->run = found;
    if ((st = runs_resume(c->db, c->run, &requeued, &failed, err)) ||
        (st = runs_strategy_get(c->db, c->run, &c->saved, &seq, err)))
        return st;
    if (c->saved) {
        if ((st = app_search_restore(c->db, c->run, &c->sp, c->saved, l, err)))
            return nas_errctx(err, "resuming run '%s' from %s", c->run_name, c->db_path), st;
        *resumed = 1;
        fprintf(stderr, "nas %s: resuming run '%s' of %s after candidate %d (%d re-queued)\n", c->cmd,
                c->run_name, c->db_path, seq, requeued);
    }
    return runs_run_set_status(c->db, c->run, "running", err);
}

/* Rank 0's loop: restored from the store or the state file, or new; the
 * budgets given now rule (a resumed search may be given more). */
static nas_status start_loop(run_ctx *c, nas_err *err)
{
    int resumed = 0;
    size_t len;
    search_loop *l = NULL;
    const char *state_path = c->state_path;
    nas_status st = NAS_OK;
    if (c->db_path && (st = open_run(c, &l, &resumed, err)))
        return search_loop_free(l), st;
    if (!resumed && state_path && access(state_path, F_OK) == 0) {
        if ((st = nas_read_file(state_path, &c->saved, &len, err)) ||
            (st = search_loop_load(&c->sp, c->saved, &l, err)))
            return nas_errctx(err, "resuming from %s", state_path), st;
        resumed = 1;
        fprintf(stderr, "nas %s: resuming from %s (%d candidates done)\n", c->cmd, state_path,
                search_loop_n_results(l));
    }
    c->loop = l;
    if (resumed)
        st = search_loop_set_limits(l, &c->o.limits, err);
    else
        st = search_loop_new(&c->sp, &c->o, &c->loop, err);
    if (st)
        return st;
    if (c->calib_j > 0) {
        search_loop_charge_calibration(c->loop, c->calib_j, ev_meter_uncertainty(c->meter), ev_meter_source(c->meter),
                                       meter_q(c->meter));
        /* in the store too, so that the report's search energy counts it */
        runs_fig f = runs_fig_make(c->calib_j, ev_meter_source(c->meter), ev_quality_name(ev_meter_quality(c->meter)));
        if (c->db && (st = runs_run_add_overhead(c->db, c->run, "calibration", &f, err)))
            return st;
    }
    if ((st = check_budget_fits(c->loop, c, c->o.limits.min_hint, err)))
        return st;
    if (!c->db)
        return NAS_OK;
    /* what attempts cut short by crashes spent, once: the state saved after the
     * last finished candidate does not know of them */
    double lost = 0;
    if ((st = runs_lost_joules(c->db, c->run, &lost, err)))
        return st;
    if (lost > 0) {
        search_loop_charge_lost(c->loop, lost, ev_meter_uncertainty(c->meter), ev_meter_source(c->meter),
                                meter_q(c->meter));
        fprintf(stderr, "nas %s: %.4g J spent by interrupted candidates count against the budget\n", c->cmd, lost);
    }
    return NAS_OK;
}

nas_status app_search_open(const char *cmd, const app_settings *s, search_dist *d, int live, app_search **out,
                           nas_err *err)
{
    run_ctx *c = nas_calloc(1, sizeof *c);
    *out = c;
    if (!c)
        return nas_errf(err, NAS_ENOMEM, "out of memory");
    c->s = s;
    c->cmd = cmd;
    c->dist = d;
    c->root = search_dist_rank(d) == 0;
    c->kind = search_kind_from_name(s->strategy);
    /* "" (runs saved before auto existed) and "none": no predictor; auto needs
     * one process (the workers of an mpirun could not know what rank 0 found) */
    int named = s->predictor[0] && strcmp(s->predictor, "none") && strcmp(s->predictor, "auto");
    c->pred_path = named ? s->predictor : NULL;
    c->auto_pred = !strcmp(s->predictor, "auto") && search_dist_size(d) == 1;
    c->live = live;
    c->state_path = s->state[0] && c->root ? s->state : NULL;
    c->db_path = c->root ? app_settings_db(s) : NULL;
    c->run_name = s->name[0] ? s->name : NULL;
    c->epochs = (int)s->epochs;
    c->batch = (int)s->batch;
    c->threads = (int)(s->threads > 0 ? s->threads : search_dist_threads(d));
    c->lr = s->lr;
    c->seed = (uint64_t)s->seed;
    c->bench_seconds = s->bench_s;
    c->keep_weights = app_settings_db(s) != NULL;   /* on every rank: workers pack what rank 0 stores */
    c->show = c->root;   /* on stderr, with --json too: stdout stays the JSON */
    nas_progress_init(&c->prog, stderr, live, 5.0);
    c->snap.best_reward = c->snap.eta_seconds = NAN;
    c->snap_t = nas_now();
    c->eval_limit = s->budget_evals;
    /* from here on a signal stops the search at its next safe point (a worker's
     * training stops too; rank 0 then tells the others) */
    nas_sig_install(cmd, "the current candidate, recording its joules and saving the run");
    nas_status st;
    if ((st = load_data(c, err)) || (st = open_parts(c, err)))
        return st;
    loop_options(c);
    if (c->root && (st = start_loop(c, err)))
        return st;
    if (c->root) {   /* a resumed loop's status line starts where it stopped, not at candidate 1 */
        search_loop_progress(c->loop, &c->snap);
        c->snap_t = nas_now();
    }
    char pop[64] = "";
    if (c->kind == SEARCH_EVOLUTION)
        snprintf(pop, sizeof pop, " (population %d, tournament %d)", c->o.strategy.population,
                 c->o.strategy.sample_size);
    if (c->root)
        fprintf(stderr, "nas %s: %s%s on %s (%d train, %d val images, %dx%dx%d), %d genes; meter %s (%s)%s; "
                "%d ranks, %d threads each, kernels %s; energy and latency per inference of the %s\n", cmd,
                search_kind_name((search_kind)c->kind), pop, c->data.name, c->data.train.n, c->data.val.n,
                c->data.train.h, c->data.train.w, c->data.train.c, c->sp.n_genes, ev_meter_source(c->meter),
                ev_quality_name(ev_meter_quality(c->meter)),
                c->pred         ? ""
                : c->bench_each ? "; no predictor: every candidate is benchmarked"
                                : "; no predictor: a candidate is benchmarked before it is promoted, the best at the end",
                search_dist_size(d), c->threads,
                ev_kernels(), app_settings_int8(c->s) ? "int8 model (nas's int8 engine, 1 thread)" : "float32 model");
    return NAS_OK;
}

/* The loop on every rank; a stop on request (a signal, or rank 0 stopping
 * the job) is no error: what finished is committed, the cut-short candidate
 * recorded. */
static nas_status run_loop(run_ctx *c, search_stop *why, nas_err *err)
{
    search_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = c;
    cb.predict = c->pred ? cb_predict : NULL;
    cb.evaluate = cb_evaluate;
    cb.measure = c->bench_each ? NULL : cb_measure;
    cb.on_start = cb_on_start;
    cb.cost_hint = cb_cost_hint;
    cb.on_result = cb_on_result;
    cb.progress = cb_progress;
    cb.should_stop = cb_should_stop;
    if (c->root && c->pred && c->s->hard)
        warn_unreachable(c->cmd, c, &c->sp, &c->o.objective);
    search_dist_opts dopt;
    search_dist_opts_default(&dopt);
    dopt.sync = (int)c->s->mpi_sync;
    dopt.local_slots = (int)c->s->slots;
    dopt.worker_timeout = c->s->worker_timeout;
    dopt.own_joules = own_joules;
    dopt.own_rel_unc = ev_meter_uncertainty(c->meter);
    dopt.own_estimated = ev_meter_quality(c->meter) == EV_ESTIMATED;
    dopt.take_payload = take_weights;
    dopt.put_payload = put_weights;
    dopt.give_payload = give_start;
    dopt.on_abandoned = abandoned;
    dopt.ctx = c;
    *why = SEARCH_STOP_NONE;
    nas_status st = search_dist_run(c->dist, &dopt, c->loop, &cb, why, err);
    c->sig = nas_sig_caught();
    if (c->root && (st == NAS_EINTR || (st == NAS_OK && *why == SEARCH_STOP_REQUESTED))) {
        if (st)
            fprintf(stderr, "nas %s: %s\n", c->cmd, err->msg);
        st = NAS_OK;
        *why = SEARCH_STOP_REQUESTED;
    }
    return st;
}

/* What a stopped search says on stderr: how to go on. */
static void tell_stopped(const run_ctx *c)
{
    if (c->db) {
        char rn[96];
        if (c->run_name)
            snprintf(rn, sizeof rn, "%s", c->run_name);
        else
            snprintf(rn, sizeof rn, "run-%lld", (long long)c->run);
        fprintf(stderr, "nas %s: stopped by %s after %d results; the run is saved: 'nas resume %s --db %s' "
                "continues it\n", c->cmd, nas_sig_name(c->sig), search_loop_n_results(c->loop), rn, c->db_path);
    } else {
        fprintf(stderr, "nas %s: stopped by %s%s\n", c->cmd, nas_sig_name(c->sig),
                c->state_path ? "; run the same command to resume" : "");
    }
}

nas_status app_search_run(app_search *c, search_stop *why, int *final_failed, nas_err *err)
{
    *final_failed = 0;
    nas_status st = run_loop(c, why, err);
    if (!c->root || st)
        return st;
    nas_progress_clear(&c->prog);
    if (*why == SEARCH_STOP_REQUESTED)
        tell_stopped(c);
    if (c->n_outside)
        fprintf(stderr, "nas %s: warning: %ld candidates lay outside what %s was fit on (first: %s); "
                "its figures for them are extrapolations\n", c->cmd, c->n_outside, c->pred_path, c->outside_why);
    if (c->s->final_top > 0 && *why != SEARCH_STOP_REQUESTED && search_loop_best(c->loop)) {
        /* the search is over and recorded, whatever final training does */
        if (c->db && (st = runs_run_set_status(c->db, c->run, "done", err)))
            return st;
        st = final_training(c->s, c, c->loop, &c->o.objective, &c->dopts, &c->fin, err);
        c->have_final = 1;   /* freed at the end, even when it failed half-way */
        if (st) {
            *final_failed = 1;
            nas_errctx(err, "the search's results are recorded; final training failed");
            return st;
        }
    }
    const search_result *best = search_loop_best(c->loop);
    if (best && best->eval.accuracy <= 1.5 / c->data.num_classes)
        fprintf(stderr, "nas %s: warning: the chosen model's accuracy, %.1f%%, is at chance for %d classes: it "
                "learned nothing (more --epochs, a larger --subset or another --lr may help)\n", c->cmd,
                100 * best->eval.accuracy, c->data.num_classes);
    if (c->db)   /* a status that cannot be written would leave the run marked running */
        st = runs_run_set_status(c->db, c->run, *why == SEARCH_STOP_REQUESTED ? "stopped" : "done", err);
    return st;
}

void app_search_failed(app_search *c)
{
    nas_err err = {0};
    if (c && c->db && c->run > 0 && runs_run_set_status(c->db, c->run, "failed", &err))
        fprintf(stderr, "nas %s: the run could not be marked failed either: %s\n", c->cmd, err.msg);
}

/* The run's name and export folder (--export-dir, else out/<run>). */
static nas_status export_dir(const app_search *c, char *dir, size_t dn, char *name, size_t nn, nas_err *err)
{
    runs_run run;
    nas_status st = runs_run_get(c->db, c->run, &run, err);
    if (st)
        return st;
    if (c->s->export_dir[0])
        snprintf(dir, dn, "%s", c->s->export_dir);
    else
        snprintf(dir, dn, "out/%s", run.name);
    snprintf(name, nn, "%s", run.name);
    runs_run_free(&run);
    return NAS_OK;
}

int app_search_wants_prune(const app_settings *s)
{
    return s->prune_keep > 0 || s->prune_target_macs > 0 || s->prune_target_mj > 0;
}

nas_status app_search_prune(const app_search *c, app_prune_result *r, nas_err *err)
{
    const app_settings *s = c->s;
    char dir[600], name[80], out[700];
    if (!c->db || !c->have_final)
        return nas_errf(err, NAS_EINVAL, "no finally trained model to prune");
    nas_status st = export_dir(c, dir, sizeof dir, name, sizeof name, err);
    if (st)
        return st;
    snprintf(out, sizeof out, "%s/pruned", dir);
    app_prune_opts o;
    app_prune_opts_default(&o);
    o.run = name, o.db = c->db_path, o.out_dir = out, o.force = 1;
    o.keep = s->prune_keep > 0 ? s->prune_keep : NAN;
    o.target_macs = s->prune_target_macs > 0 ? s->prune_target_macs : NAN;
    o.target_mj = s->prune_target_mj > 0 ? s->prune_target_mj : NAN;
    o.epochs = (int)s->prune_epochs, o.epochs_given = 1;
    o.distill = (int)s->prune_distill, o.kd_alpha = s->kd_alpha, o.kd_temperature = s->kd_temp;
    o.threads = c->threads, o.seed = (uint64_t)s->seed;
    if ((st = app_prune_check(&o, err)))
        return st;
    return app_prune(&o, r, err);
}

nas_status app_search_export(const app_search *c, char *path, size_t n, nas_err *err)
{
    const app_settings *s = c->s;
    if (!c->db || !c->have_final)
        return nas_errf(err, NAS_EINVAL, "no finally trained model to export");
    char dir[600], name[80];
    nas_status st = export_dir(c, dir, sizeof dir, name, sizeof name, err);
    if (st)
        return st;
    ev_quant_opts q;
    app_settings_quant(s, &q);
    app_final_opts fo = {.epochs = (int)s->final_epochs, .batch = (int)s->final_batch, .lr = s->final_lr,
                         .threads = c->threads, .seed = (uint64_t)s->seed, .int8 = app_settings_int8_export(s) ? &q : NULL};
    return app_final_export(&c->fin, &fo, dir, name, path, n, err);
}

nas_status app_search_run_name(const app_search *c, char *name, size_t n, nas_err *err)
{
    runs_run run;
    if (!c->db)
        return nas_errf(err, NAS_EINVAL, "the search recorded no run");
    nas_status st = runs_run_get(c->db, c->run, &run, err);
    if (st)
        return st;
    snprintf(name, n, "%s", run.name);
    runs_run_free(&run);
    return NAS_OK;
}

const search_loop *app_search_loop(const app_search *c) { return c->loop; }
const ev_meter *app_search_meter(const app_search *c) { return c->meter; }
const app_final_report *app_search_final(const app_search *c) { return c->have_final ? &c->fin : NULL; }
int app_search_signal(const app_search *c) { return c->sig; }
const char *app_search_db(const app_search *c) { return c->db ? c->db_path : NULL; }

void app_search_close(app_search *c)
{
    if (!c)
        return;
    nas_sig_uninstall();
    if (c->have_final)
        app_final_free(&c->fin);
    nas_free(c->saved);
    drop_weights(c);
    nas_free(c->cand);
    runs_close(c->db);
    search_loop_free(c->loop);
    pred_free(c->pred);
    ev_meter_close(c->meter);
    if (c->data_loaded)
        ev_data_free(&c->data);
    nas_free(c);
}
