/* dist.h — the search spread over Open MPI ranks.
 *
 * ======== search: distributed evaluation (one block; may move into search.h) ========
 *
 * `mpirun -np N nas search ...`: rank 0 runs the search loop (strategy, predictor
 * screening, budget, run store, all through search_callbacks as in a
 * single-process run); ranks 1..N-1 only evaluate. Rank 0 hands a genome to
 * whichever worker is free the moment one is (asynchronous: the loop's
 * submit/collect with N-1 slots), and the worker's result (accuracy, measured
 * energy/latency with their sources, the joules its own meter counted, with
 * source and quality, status) is scored, told to the strategy and passed to
 * on_result — where cli/ commits it to the store — the moment it arrives.
 * A result may carry opaque bytes (take_payload/put_payload below; cli/ sends
 * the trained weights that way, so rank 0 stores them as a single process
 * does and the chosen model can be exported after an MPI run too).
 *
 * Without a launcher nothing here touches MPI: search_dist_init sees no
 * OMPI_COMM_WORLD_SIZE / PMIX_RANK / PMI_RANK in the environment, never calls
 * MPI_Init, and search_dist_run is search_run. One binary either way.
 *
 * Guarantees and limits:
 *   - Each proposal is evaluated at most once per job (exactly once unless the
 *     job ends while it is in flight); a result reaches on_result at most once.
 *   - Sync mode (o->sync): collect returns results in ticket order, so the loop
 *     calls the strategy in the order  ask 0..S-1, then (tell k, ask k+S) for
 *     k = 0, 1, ...  with S = N-1 slots — independent of timing. A single
 *     process running search_dist_run with sync = 1 and local_slots = S makes
 *     the same calls. With the same seed, options and an evaluator whose
 *     results depend only on (id, genome), both give the same tickets,
 *     genomes, accuracies, rewards, tell order and strategy state. Not
 *     guaranteed equal: wall-clock figures; joules from real meters (and so
 *     the point where a joule budget stops, which also depends on rank 0's own
 *     joules, charged under MPI only); anything governed by a seconds budget;
 *     and accuracies from an engine that is not deterministic across thread
 *     counts (ranks usually get fewer threads than a single process). With
 *     S = 1 (np 2) it is the plain synchronous loop's order.
 *   - Joules: each result carries its worker's joules; rank 0's own joules
 *     (own_joules) are charged onto the next result collected, so the loop's
 *     budget — which reserves an allowance for every candidate in flight
 *     before starting another — sums every rank. The allowance a worker gets
 *     is the loop's less twice rank 0's expected share of that candidate, so
 *     the worker's spending plus the charge stays within the reservation.
 *     Ranks that share a host and a package-wide meter (RAPL) each count the
 *     whole package: an overcount, never an undercount.
 *   - Payloads: an evaluated candidate's bytes reach put_payload at most once,
 *     intact, when its result is collected and before on_result sees it; the
 *     bytes of a result that comes back after the loop ended are dropped. One
 *     message each, so at most INT_MAX bytes (more is the candidate's error).
 *   - cb->measure (a trained candidate's energy and latency) runs on a free
 *     worker as well: figures come from the hardware that evaluates.
 *   - Failure: Open MPI 4.1 cannot survive a dead rank (mpirun aborts the
 *     job); results committed in on_result survive, and the loop state saved
 *     there resumes the run under mpirun. A worker running one candidate past
 *     worker_timeout is reported (rank, host, candidate, genome) the next time
 *     rank 0 waits for a result, and the search ends with an error (results
 *     other workers had ready are taken first); search_dist_finish then ends rank 0
 *     (and the workers that answered, told which rank hung) with exit status 1
 *     without finalising, which makes mpirun kill the job: the only way to end
 *     a hung rank (MPI_Abort can leave Debian's mpirun hanging). A worker also
 *     ends itself (exit 1) when one evaluation passes twice worker_timeout
 *     (at least timeout + 10 s), should rank 0's report or mpirun's kill
 *     never reach it.
 *   - All ranks run the same nas build (messages are raw structs): ranks
 *     compare a fingerprint at init and a mixed job is refused.
 */
#ifndef SEARCH_DIST_H
#define SEARCH_DIST_H

#include "search/search.h"

typedef struct search_dist search_dist;

/* 1 when started by an MPI launcher (mpirun, srun with PMIx/PMI), from the
 * environment alone. NAS_NO_MPI=1 forces 0. */
int search_dist_launched(void);

/* Under a launcher: MPI_Init_thread (funneled), the node's ranks and host
 * names; all ranks must call it, at start-up. Otherwise a one-rank context
 * that never touches MPI. Free with search_dist_finish. */
NAS_MUST_USE nas_status search_dist_init(int *argc, char ***argv, search_dist **out, nas_err *err);

int search_dist_rank(const search_dist *d);        /* 0 without MPI */
int search_dist_size(const search_dist *d);        /* 1 without MPI */
int search_dist_mpi(const search_dist *d);         /* 1 when MPI was initialised */
const char *search_dist_host(const search_dist *d, int rank);
/* Threads this rank's engine should use: the cores of this host shared by its
 * evaluating ranks (rank 0 only coordinates when there are workers, and gets
 * 1), never more than this rank's CPU affinity (mpirun binds each rank to one
 * core for np <= 2 unless told --bind-to none). NAS_THREADS overrides. */
int search_dist_threads(const search_dist *d);
/* The rule, for tests: host_cpus online, affinity_cpus this rank may use,
 * local_size ranks on this host, root_local 1 when rank 0 is among them. */
int search_dist_plan_threads(int host_cpus, int affinity_cpus, int local_size, int root_local,
                             int is_root, int size);

/* Rank 0's text (settings JSON) to every rank: on rank 0 *text is sent, on the
 * others it is replaced by a nas_malloc'd copy. A worker told to stop before
 * the text came gets NAS_EINVAL. Point-to-point, so a worker never spins in a
 * collective while rank 0 is failing. */
NAS_MUST_USE nas_status search_dist_bcast(search_dist *d, char **text, nas_err *err);

typedef struct {
    int sync;                  /* --mpi-sync: results told in ticket order */
    int local_slots;           /* one process, sync: S slots evaluated in FIFO order (the
                                  reference for an N = S+1 rank sync run); <= 1: plain loop */
    double worker_timeout;     /* seconds one candidate may run on a worker; 0: no limit */
    double poll_max;           /* longest sleep between polls, seconds (default 0.005) */
    /* Rank 0's own meter: joules since it opened, its relative uncertainty and
     * whether it is estimated. NULL: rank 0 is not metered. A failed read is
     * an error that stops the search (uncounted, rank 0's joules would let it
     * spend past its budget). */
    nas_status (*own_joules)(void *ctx, double *joules, nas_err *err);
    double own_rel_unc;
    int own_estimated;
    /* Rank 0, optional: a candidate was sent to a worker rank. */
    void (*on_assign)(void *ctx, long id, const space_genome *g, int rank);
    /* Optional bytes that travel with an evaluated candidate's result (cli/:
     * its trained weights), opaque here. take_payload runs where evaluate ran,
     * right after it (whatever it returned): it hands over a nas_malloc'd
     * buffer, or *bytes NULL for none, and search_dist frees it. put_payload
     * runs on rank 0 when that result is collected, before on_result sees it,
     * only if the evaluation succeeded; its error ends the search. One process:
     * the same two calls, one after the other. Not for measure. */
    void (*take_payload)(void *ctx, long id, void **bytes, size_t *len);
    nas_status (*put_payload)(void *ctx, long id, const void *bytes, size_t len, nas_err *err);
    /* Rank 0, optional: what a candidate's evaluation starts from, sent with
     * its work: its rung (multi-fidelity) and bytes (a promotion: the weights
     * of the rung below), a nas_malloc'd buffer search_dist frees, or *bytes
     * NULL for none. The worker's evaluate finds them with search_dist_job. */
    nas_status (*give_payload)(void *ctx, long id, int *rung, void **bytes, size_t *len, nas_err *err);
    /* Rank 0, optional: a worker's candidate that never reaches on_result,
     * with what it spent: cut short by a stop (its evaluate returned
     * NAS_EINTR), or finished after the loop had ended. */
    void (*on_abandoned)(void *ctx, long id, const search_eval *ev);
    void *ctx;
} search_dist_opts;

void search_dist_opts_default(search_dist_opts *o);

/* On a worker, during its evaluate: the rung and bytes rank 0's give_payload
 * sent with this candidate (0, NULL and 0: none). Returns the rung. */
int search_dist_job(const search_dist *d, const void **bytes, size_t *len);

/* Every rank calls it, with the same callbacks. Rank 0 runs search_run(loop,
 * cb, why) with cb's submit, collect and slots supplied here (cb must leave
 * them NULL/0) and cb->measure, when set, sent to a worker too; then it stops
 * the workers. Every other callback runs on rank 0 with cb->ctx, untouched.
 * The other ranks ignore loop and why, run cb->evaluate (and cb->measure) on
 * what rank 0 sends until it says stop, and return NAS_OK. One rank: search_run itself
 * (or the FIFO reference when sync with local_slots > 1). An evaluate error on a
 * worker ends the search with that error, naming the rank and candidate. */
NAS_MUST_USE nas_status search_dist_run(search_dist *d, const search_dist_opts *o, search_loop *loop,
                                        const search_callbacks *cb, search_stop *why, nas_err *err);

/* On a worker, inside evaluate: 1 when rank 0 has told this rank to stop (a
 * SIGINT or SIGTERM reached rank 0, which tells every worker at once), so a
 * long evaluation can be cut short: it returns NAS_EINTR with the joules
 * spent so far in its search_eval. 0 on rank 0, without MPI, or for NULL. */
int search_dist_stop_pending(search_dist *d);

/* Inside on_result on rank 0: the worker rank that evaluated the candidate
 * just collected; -1 when screened, cached or evaluated in this process. */
int search_dist_result_rank(const search_dist *d);

typedef struct {
    int workers;
    long dispatched, collected;
    long measured;             /* measure calls run on workers */
    long abandoned;            /* results that came back after the loop had ended */
    double worker_joules;      /* reported with collected results */
    double abandoned_joules;   /* reported with abandoned ones: spent, not in the loop's budget */
    double root_joules;        /* rank 0's own meter over the run */
    double root_charged;       /* of which charged onto results (in the loop's budget) */
    double busy_seconds;       /* summed over workers */
    double wall_seconds;
    int hung_rank;             /* -1: none */
    long hung_id;
} search_dist_stats;

void search_dist_get_stats(const search_dist *d, search_dist_stats *s);

/* Ends the MPI job (MPI_Finalize) and frees d; NULL is fine. Call it last,
 * after the store is closed: when a worker hung, rank 0 exits with status 1
 * here (mpirun then kills every rank) and it does not return. Rank 0 stops
 * workers still waiting (e.g. when rank 0 failed before search_dist_run). */
void search_dist_finish(search_dist *d);

/* ======== end of search: distributed evaluation ======== */

#endif
