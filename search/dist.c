/* dist.c — distributed candidate evaluation over Open MPI (see dist.h).
 *
 * Shape: rank 0 keeps the whole search loop and gives it a transport (the
 * loop's submit/collect pair with one slot per worker); workers run a small
 * serve loop: wait for work, evaluate, send the result. Messages are fixed
 * structs sent as bytes (every rank runs the same binary):
 *   WORK   0 -> w   {id, allowance, genome, payload length}: evaluate (train) it;
 *                   PAYLOAD 0 -> w right after it when the length is not 0 (a
 *                   promotion's weights, give_payload)
 *   MEASURE 0 -> w  the same: measure a trained candidate (the loop's measure)
 *   RESULT w -> 0   {id, status, search_eval, seconds, error message, payload length}
 *   PAYLOAD w -> 0  the result's opaque bytes (take_payload), right after it when
 *                   the length is not 0: one message, so at most INT_MAX bytes
 *   TEXT   0 -> w   settings, before the search
 *   STOP   0 -> w   {int32 hung}: return from search_dist_run; hung > 0: that
 *                   rank hung, so this one must not finalise either (see
 *                   search_dist_finish) 
 *
 * Why polling with sleeps instead of MPI_Recv/MPI_Waitany: Open MPI's
 * blocking calls spin a core while they wait. An idle worker or a waiting
 * rank 0 would burn a core of the machine the search is meant to measure,
 * and the joules it is charged for. MPI_Iprobe plus a sleep that backs off
 * from 50 us to poll_max (5 ms) costs nothing measurable and keeps dispatch
 * latency far below any candidate's training time. It also lets rank 0 check
 * the worker timeout while it waits.
 *
 * Without a launcher none of the MPI calls below is ever reached.
 */
#define _GNU_SOURCE
#include "search/dist.h"

#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

enum { TAG_WORK = 11, TAG_RESULT = 12, TAG_STOP = 13, TAG_TEXT = 14, TAG_MEASURE = 15, TAG_PAYLOAD = 16 };

#define HOST_MAX 64

typedef struct {
    long id;
    double allowance;
    space_genome g;
    uint64_t payload_len;      /* bytes of the PAYLOAD message that follows; 0: none */
    int32_t rung;              /* multi-fidelity: the rung it trains to */
} wire_work;

typedef struct {
    long id;
    int32_t code;              /* nas_status of the worker's evaluate */
    int32_t rank;
    search_eval ev;
    double seconds;            /* wall time on the worker */
    char msg[sizeof(((nas_err *)0)->msg)];
    uint64_t payload_len;      /* bytes of the PAYLOAD message that follows; 0: none */
} wire_result;

typedef struct {
    int busy, done;
    long id;
    space_genome g;
    double t_start, t_done, t_idle;
    long done_seq;
    wire_result res;
    void *payload;             /* received with res, until collected */
} worker_slot;

typedef struct {
    long id;
    space_genome g;
    double allowance;
} local_job;

struct search_dist {
    int mpi, rank, size, local_size, root_local, threads;
    char (*hosts)[HOST_MAX];
    int stopped;               /* rank 0: workers told to stop; worker: stop received */
    /* rank 0, during a run */
    const search_dist_opts *o;
    const search_callbacks *user;
    worker_slot *w;            /* w[r - 1] is rank r */
    long done_seq;
    double own_start, own_last, t_start;
    int result_rank;
    /* one process, sync reference: FIFO of submitted jobs */
    local_job *q;
    int q_head, q_n, q_cap;
    search_dist_stats st;
    /* worker, during evaluate: what rank 0 sent with the job */
    void *job_payload;
    size_t job_len;
    int job_rung;
};

/* The run in progress on this process. The loop hands submit, collect and
 * on_result the caller's ctx (every callback shares one), so these find the
 * transport here instead; MPI is one per process anyway. Keeping the
 * caller's ctx means every other callback — including ones search_callbacks
 * gains later — passes through untouched. */
static search_dist *g_active;

/* ---- environment, threads ----------------------------------------------- */

int search_dist_launched(void)
{
    const char *no = getenv("NAS_NO_MPI");
    if (no && *no && strcmp(no, "0") != 0)
        return 0;
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return 1;
    }
    return 0;
}

int search_dist_plan_threads(int host_cpus, int affinity_cpus, int local_size, int root_local,
                             int is_root, int size)
{
    if (size > 1 && is_root)
        return 1;   /* rank 0 coordinates; its core goes to the workers beside it */
    int evaluators = size > 1 ? local_size - (root_local ? 1 : 0) : 1;
    if (evaluators < 1)
        evaluators = 1;
    int t = host_cpus > 0 ? host_cpus / evaluators : 1;
    if (affinity_cpus > 0 && t > affinity_cpus)
        t = affinity_cpus;
    return t < 1 ? 1 : t;
}

static int affinity_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    return CPU_COUNT(&set);
}

static void plan(search_dist *d)
{
    long host = sysconf(_SC_NPROCESSORS_ONLN);
    d->threads = search_dist_plan_threads(host > 0 ? (int)host : 1, affinity_cpus(), d->local_size,
                                          d->root_local, d->rank == 0, d->size);
    const char *env = getenv("NAS_THREADS");
    if (env && atoi(env) > 0)
        d->threads = atoi(env);
}

/* ---- init / finish ------------------------------------------------------ */

typedef struct {
    char host[HOST_MAX];
    uint32_t fp;
} rank_info;

/* Ranks exchange raw structs, so they must agree on the build: the version
 * and the sizes of what travels (FNV-1a over them). NAS_TEST_DIST_SKEW=R
 * makes rank R differ, to test the check. */
static uint32_t build_fingerprint(int rank)
{
    char text[128];
    snprintf(text, sizeof text, "%s/%zu/%zu/%zu/%d", NAS_VERSION, sizeof(wire_work), sizeof(wire_result),
             sizeof(search_eval), SPACE_MAX_GENES);
    uint32_t h = 2166136261u;
    for (const char *p = text; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    const char *skew = getenv("NAS_TEST_DIST_SKEW");
    if (skew && *skew && atoi(skew) == rank)
        h ^= 1;
    return h;
}

static void stats_reset(search_dist *d)
{
    memset(&d->st, 0, sizeof d->st);
    d->st.hung_rank = -1;
    d->st.hung_id = -1;
    d->st.workers = d->size - 1;
}

nas_status search_dist_init(int *argc, char ***argv, search_dist **out, nas_err *err)
{
    *out = NULL;
    search_dist *d = nas_calloc(1, sizeof *d);
    if (!d)
        return nas_errf(err, NAS_ENOMEM, "distributed search: out of memory");
    d->size = d->local_size = d->root_local = 1;
    d->result_rank = -1;
    stats_reset(d);   /* hung_rank -1 before anything can call search_dist_finish */
    if (search_dist_launched()) {
        int inited = 0, provided = 0;
        MPI_Initialized(&inited);
        if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            nas_free(d);
            return nas_errf(err, NAS_EINTERNAL, "distributed search: MPI_Init_thread failed");
        }
        d->mpi = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
        /* Ranks on this host (works under any launcher, unlike OMPI_COMM_WORLD_LOCAL_SIZE),
         * and whether rank 0 is one of them. */
        MPI_Comm node;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
        MPI_Comm_size(node, &d->local_size);
        int is0 = d->rank == 0;
        MPI_Allreduce(&is0, &d->root_local, 1, MPI_INT, MPI_MAX, node);
        MPI_Comm_free(&node);
    }
    d->hosts = nas_calloc((size_t)d->size, HOST_MAX);
    if (!d->hosts) {
        search_dist_finish(d);
        return nas_errf(err, NAS_ENOMEM, "distributed search: out of memory for %d host names", d->size);
    }
    rank_info me;
    memset(&me, 0, sizeof me);
    snprintf(me.host, sizeof me.host, "localhost");
    gethostname(me.host, sizeof me.host - 1);
    me.fp = build_fingerprint(d->rank);
    if (d->mpi) {
        rank_info *all = nas_calloc((size_t)d->size, sizeof *all);
        if (!all) {
            search_dist_finish(d);
            return nas_errf(err, NAS_ENOMEM, "distributed search: out of memory for %d ranks", d->size);
        }
        MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, MPI_COMM_WORLD);
        int bad = -1;
        for (int r = 0; r < d->size; r++) {
            memcpy(d->hosts[r], all[r].host, HOST_MAX);
            if (bad < 0 && all[r].fp != all[0].fp)
                bad = r;
        }
        nas_free(all);
        if (bad >= 0) {   /* every rank sees it: all finalise and fail together */
            nas_status st = nas_errf(err, NAS_EINVAL,
                                     "distributed search: rank %d (host %s) runs a different nas build than "
                                     "rank 0 (host %s); every rank needs the same one",
                                     bad, d->hosts[bad], d->hosts[0]);
            search_dist_finish(d);
            return st;
        }
    } else {
        memcpy(d->hosts[0], me.host, HOST_MAX);
    }
    plan(d);
    stats_reset(d);
    *out = d;
    return NAS_OK;
}

int search_dist_stop_pending(search_dist *d)
{
    if (!d || !d->mpi || d->rank == 0)
        return 0;
    int flag = 0;
    MPI_Iprobe(0, TAG_STOP, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    return flag;
}

int search_dist_rank(const search_dist *d) { return d->rank; }
int search_dist_size(const search_dist *d) { return d->size; }
int search_dist_mpi(const search_dist *d) { return d->mpi; }
int search_dist_threads(const search_dist *d) { return d->threads; }
int search_dist_result_rank(const search_dist *d) { return d->result_rank; }
void search_dist_get_stats(const search_dist *d, search_dist_stats *s) { *s = d->st; }

const char *search_dist_host(const search_dist *d, int rank)
{
    return rank >= 0 && rank < d->size ? d->hosts[rank] : "?";
}

void search_dist_opts_default(search_dist_opts *o)
{
    memset(o, 0, sizeof *o);
    o->poll_max = 0.005;
}

static void nap(double *s, double max)
{
    struct timespec ts = {(time_t)*s, (long)((*s - (time_t)*s) * 1e9)};
    nanosleep(&ts, NULL);
    *s = fmin(*s * 2, max > 0 ? max : 0.005);
}

static void send_stop_all(search_dist *d)
{
    if (d->stopped)
        return;   /* once: a second STOP would never be received */
    int32_t hung = d->st.hung_rank > 0 ? d->st.hung_rank : 0;
    for (int r = 1; r < d->size; r++)
        MPI_Send(&hung, 1, MPI_INT32_T, r, TAG_STOP, MPI_COMM_WORLD);
    d->stopped = 1;
}

/* A worker takes the STOP that is waiting: a hung rank named in it means
 * that MPI_Finalize would wait for that rank forever, so this one ends
 * without it too (search_dist_finish). */
static void recv_stop(search_dist *d)
{
    int32_t hung = 0;
    MPI_Recv(&hung, 1, MPI_INT32_T, 0, TAG_STOP, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (hung > 0)
        d->st.hung_rank = hung;
    d->stopped = 1;
}

void search_dist_finish(search_dist *d)
{
    if (!d)
        return;
    if (d->mpi) {
        if (d->st.hung_rank >= 0) {
            /* A rank stuck inside an evaluation never reaches MPI_Finalize, and
             * Open MPI 4.1 cannot finalise without it: the job has to be ended
             * by mpirun. Not with MPI_Abort: Debian's 4.1 (external PMIx and
             * libevent) leaves mpirun hanging after it now and then, with every
             * rank already dead (open-mpi/ompi#5528 is the same symptom). A
             * rank that exits non-zero without finalising makes mpirun kill the
             * job every time. The workers that still answer were stopped first
             * and told which rank hung: they end here too, as their
             * MPI_Finalize would wait for it, and the hung one ends itself at
             * its watchdog if mpirun's kill never reaches it. */
            fflush(stdout);
            fflush(stderr);
            _exit(1);
        }
        if (d->rank == 0 && !d->stopped)
            send_stop_all(d);
        MPI_Finalize();
    }
    nas_free(d->hosts);
    for (int i = 0; d->w && i < d->size - 1; i++)
        nas_free(d->w[i].payload);
    nas_free(d->w);
    nas_free(d->q);
    nas_free(d->job_payload);
    nas_free(d);
}

/* ---- worker side -------------------------------------------------------- */

/* Waits for rank 0's next message without spinning a core. */
static void wait_root(const search_dist *d, double poll_max, MPI_Status *s)
{
    double sl = 50e-6;
    for (;;) {
        int flag = 0;
        MPI_Iprobe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, s);
        if (flag)
            return;
        nap(&sl, poll_max);
    }
}

nas_status search_dist_bcast(search_dist *d, char **text, nas_err *err)
{
    if (!d->mpi || d->size == 1)
        return NAS_OK;
    if (d->rank == 0) {
        int n = (int)strlen(*text) + 1;
        for (int r = 1; r < d->size; r++)
            MPI_Send(*text, n, MPI_CHAR, r, TAG_TEXT, MPI_COMM_WORLD);
        return NAS_OK;
    }
    MPI_Status s;
    wait_root(d, 0.005, &s);
    if (s.MPI_TAG == TAG_STOP) {
        recv_stop(d);
        return nas_errf(err, NAS_EINVAL, "rank %d: rank 0 stopped the job before sending the settings", d->rank);
    }
    if (s.MPI_TAG != TAG_TEXT)
        return nas_errf(err, NAS_EINTERNAL, "rank %d: expected the settings from rank 0, got message tag %d",
                        d->rank, s.MPI_TAG);
    int n = 0;
    MPI_Get_count(&s, MPI_CHAR, &n);
    char *buf = nas_malloc((size_t)n + 1);
    if (!buf)
        return nas_errf(err, NAS_ENOMEM, "rank %d: out of memory for %d bytes of settings", d->rank, n);
    MPI_Recv(buf, n, MPI_CHAR, 0, TAG_TEXT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    buf[n] = '\0';
    *text = buf;
    return NAS_OK;
}

/* The payload after its result. Isend and a polled wait, not MPI_Send: a
 * large message waits until rank 0 receives it, and a blocking send would
 * spin a core meanwhile. If rank 0 stops the job instead (it had no memory
 * for the bytes), the send is cancelled and the stop is left for the caller. */
static void send_payload(const void *bytes, int len, double poll_max)
{
    MPI_Request req;
    MPI_Isend(bytes, len, MPI_BYTE, 0, TAG_PAYLOAD, MPI_COMM_WORLD, &req);
    double sl = 50e-6;
    for (;;) {
        int done = 0, stop = 0;
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        MPI_Iprobe(0, TAG_STOP, MPI_COMM_WORLD, &stop, MPI_STATUS_IGNORE);
        if (stop) {
            MPI_Cancel(&req);
            MPI_Wait(&req, MPI_STATUS_IGNORE);
            return;
        }
        nap(&sl, poll_max);
    }
}

/* The worker's own deadline for one evaluation, past which it ends itself:
 * rank 0 reports a hung worker at worker_timeout and ends the job, but the
 * job must end even if that report or mpirun's kill never reaches this rank
 * (it may be stuck anywhere, in a system call, in a lock). SIGALRM after
 * twice the timeout (at least 10 s more: rank 0 must get to tell first), and
 * a handler that only write(2)s and _exit(2)s; exiting without MPI_Finalize
 * makes mpirun end the job. */
static char watchdog_msg[320];

static void on_watchdog(int sig)
{
    ssize_t n = write(STDERR_FILENO, watchdog_msg, strlen(watchdog_msg));
    (void)n;
    _exit(1);
}

static void watchdog_arm(const search_dist *d, double timeout, long id)
{
    if (!(timeout > 0))
        return;
    double after = timeout + fmax(timeout, 10.0);
    snprintf(watchdog_msg, sizeof watchdog_msg,
             "rank %d (host %s): candidate %ld has run %.0f s, past twice the worker timeout of %g s: this rank "
             "ends itself\n", d->rank, d->hosts[d->rank], id, after, timeout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_watchdog;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = (time_t)after;
    it.it_value.tv_usec = (suseconds_t)((after - (double)(time_t)after) * 1e6);
    setitimer(ITIMER_REAL, &it, NULL);
}

static void watchdog_disarm(double timeout)
{
    if (!(timeout > 0))
        return;
    struct itimerval it;
    memset(&it, 0, sizeof it);
    setitimer(ITIMER_REAL, &it, NULL);
}

static nas_status worker_serve(search_dist *d, const search_dist_opts *o, const search_callbacks *cb, nas_err *err)
{
    if (!cb->evaluate)
        return nas_errf(err, NAS_EINVAL, "rank %d: no evaluate callback for a worker", d->rank);
    while (!d->stopped) {
        MPI_Status s;
        wait_root(d, o->poll_max, &s);
        if (s.MPI_TAG == TAG_STOP) {
            recv_stop(d);
            break;
        }
        if (s.MPI_TAG != TAG_WORK && s.MPI_TAG != TAG_MEASURE)
            return nas_errf(err, NAS_EINTERNAL, "rank %d: unexpected message tag %d from rank 0", d->rank,
                            s.MPI_TAG);
        int measure = s.MPI_TAG == TAG_MEASURE;
        wire_work wk;
        MPI_Recv(&wk, (int)sizeof wk, MPI_BYTE, 0, s.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        wire_result r;
        memset(&r, 0, sizeof r);
        r.id = wk.id;
        r.rank = d->rank;
        nas_err e;
        nas_err_clear(&e);
        nas_free(d->job_payload);
        d->job_payload = NULL;
        d->job_len = 0;
        d->job_rung = wk.rung;
        if (wk.payload_len > 0) {   /* always received, so the next message is the next job's */
            void *buf = nas_malloc(wk.payload_len);
            MPI_Recv(buf ? buf : &r, buf ? (int)wk.payload_len : 0, MPI_BYTE, 0, TAG_PAYLOAD, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
            d->job_payload = buf;
            d->job_len = buf ? (size_t)wk.payload_len : 0;
        }
        double t0 = nas_now();
        watchdog_arm(d, o->worker_timeout, wk.id);
        nas_status st = !measure ? cb->evaluate(cb->ctx, wk.id, &wk.g, wk.allowance, &r.ev, &e)
                      : cb->measure ? cb->measure(cb->ctx, wk.id, &wk.g, wk.allowance, &r.ev, &e)
                      : nas_errf(&e, NAS_EINVAL, "rank %d: asked to measure with no measure callback", d->rank);
        watchdog_disarm(o->worker_timeout);
        r.seconds = nas_now() - t0;
        if (!(r.ev.seconds > 0))
            r.ev.seconds = r.seconds;   /* the worker's clock, not rank 0's round trip */
        void *payload = NULL;
        size_t plen = 0;
        if (!measure && o->take_payload)
            o->take_payload(o->ctx, wk.id, &payload, &plen);
        if (!st && payload && plen > INT_MAX)
            st = nas_errf(&e, NAS_EINVAL, "rank %d, candidate %ld: %zu bytes to send with the result, more than "
                          "one MPI message holds (%d)", d->rank, wk.id, plen, INT_MAX);
        r.payload_len = !st && payload ? plen : 0;
        r.code = (int32_t)st;
        if (st)
            snprintf(r.msg, sizeof r.msg, "%s", e.msg[0] ? e.msg : nas_status_name(st));
        d->st.dispatched++;
        d->st.worker_joules += isfinite(r.ev.joules) && r.ev.joules > 0 ? r.ev.joules : 0;
        d->st.busy_seconds += r.seconds;
        MPI_Send(&r, (int)sizeof r, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD);
        if (r.payload_len)
            send_payload(payload, (int)r.payload_len, o->poll_max);
        nas_free(payload);
    }
    return NAS_OK;
}

/* ---- rank 0: the transport the loop drives ------------------------------ */

static nas_status receive_result(search_dist *d, int src, nas_err *err)
{
    if (src < 1 || src >= d->size)
        return nas_errf(err, NAS_EINTERNAL, "distributed search: result from rank %d, which is no worker", src);
    worker_slot *w = &d->w[src - 1];
    wire_result r;
    MPI_Recv(&r, (int)sizeof r, MPI_BYTE, src, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    void *payload = NULL;
    if (r.payload_len > 0 && (payload = nas_malloc(r.payload_len)))
        MPI_Recv(payload, (int)r.payload_len, MPI_BYTE, src, TAG_PAYLOAD, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (!w->busy || w->done || r.id != w->id) {
        nas_free(payload);
        return nas_errf(err, NAS_EINTERNAL,
                        "distributed search: rank %d sent a result for candidate %ld, but %s", src, r.id,
                        w->busy && !w->done ? "it was given another" : "it had none to run");
    }
    if (r.payload_len > 0 && !payload) {   /* a failed result; the worker cancels its send at the stop */
        r.code = NAS_ENOMEM;
        snprintf(r.msg, sizeof r.msg, "rank 0 had no memory for the %llu bytes sent with the result",
                 (unsigned long long)r.payload_len);
    }
    w->res = r;
    w->payload = payload;
    w->done = 1;
    w->t_done = nas_now();
    w->done_seq = ++d->done_seq;
    return NAS_OK;
}

/* The slot whose result collect should return now, or -1. Async: the first to
 * finish. Sync: the lowest ticket in flight, once it is done. */
static int ready_slot(const search_dist *d, int sync)
{
    int pick = -1;
    for (int i = 0; i < d->size - 1; i++) {
        const worker_slot *w = &d->w[i];
        if (!w->busy)
            continue;
        if (sync) {
            if (pick < 0 || w->id < d->w[pick].id)
                pick = i;
        } else if (w->done && (pick < 0 || w->done_seq < d->w[pick].done_seq)) {
            pick = i;
        }
    }
    return pick >= 0 && d->w[pick].done ? pick : -1;
}

static nas_status hung(search_dist *d, int i, double now, nas_err *err)
{
    worker_slot *w = &d->w[i];
    char gs[SPACE_MAX_GENES * 4 + 8];
    space_genome_to_string(&w->g, gs, sizeof gs);
    d->st.hung_rank = i + 1;
    d->st.hung_id = w->id;
    return nas_errf(err, NAS_EIO,
                    "worker rank %d (host %s) has run candidate %ld (genome %s) for %.1f s, past the worker "
                    "timeout of %g s; stopping the search (finished results are kept; resume the run to go on)",
                    i + 1, d->hosts[i + 1], w->id, gs, now - w->t_start, d->o->worker_timeout);
}

/* Waits until `want` (a slot index, or -1: whatever ready_slot picks) is done. */
static nas_status root_wait(search_dist *d, int want, int sync, int *slot, nas_err *err)
{
    double sl = 50e-6;
    for (;;) {
        int pick = want >= 0 ? (d->w[want].done ? want : -1) : ready_slot(d, sync);
        if (pick >= 0) {
            *slot = pick;
            return NAS_OK;
        }
        int flag = 0;
        MPI_Status s;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &flag, &s);
        if (flag) {
            nas_status st = receive_result(d, s.MPI_SOURCE, err);
            if (st)
                return st;
            sl = 50e-6;
            continue;
        }
        if (nas_sig_caught())
            send_stop_all(d);   /* SIGINT/SIGTERM here: every worker cuts its candidate short */
        double now = nas_now();
        int busy = 0;
        for (int i = 0; i < d->size - 1; i++) {
            worker_slot *w = &d->w[i];
            if (!w->busy || w->done || (want >= 0 && i != want))
                continue;
            busy++;
            if (d->o->worker_timeout > 0 && now - w->t_start > d->o->worker_timeout)
                return hung(d, i, now, err);
        }
        if (!busy)
            return nas_errf(err, NAS_EINTERNAL, "distributed search: collect with no candidate in flight");
        nap(&sl, d->o->poll_max);
    }
}

/* The part of a candidate's joule allowance held back for rank 0: each result
 * is charged rank 0's joules since the result before (charge_own), about its
 * power x a candidate's duration / workers; twice that, raised by rank 0's
 * meter uncertainty, so that the worker's spending plus its charge stays
 * within what the loop reserved for the candidate. 0 until something is known. */
static double root_share(search_dist *d)
{
    const search_dist_opts *o = d->o;
    double now;
    if (!o->own_joules || d->st.collected == 0 || o->own_joules(o->ctx, &now, NULL))
        return 0;   /* (a failed read stops the search at the next result: charge_own) */
    double t = nas_now() - d->t_start, j = now - d->own_start;
    if (!(t > 0) || !(j > 0) || !isfinite(j))
        return 0;
    double mean_s = d->st.busy_seconds / d->st.collected;
    double ou = o->own_rel_unc > 0 ? o->own_rel_unc : 0;
    return 2 * (j / t) * mean_s / (d->size - 1) * (1 + ou);
}

int search_dist_job(const search_dist *d, const void **bytes, size_t *len)
{
    *bytes = d ? d->job_payload : NULL;
    *len = d ? d->job_len : 0;
    return d ? d->job_rung : 0;
}

static nas_status send_job(search_dist *d, int tag, long id, const space_genome *g, double allowance, int *slot,
                           nas_err *err)
{
    int pick = -1;
    for (int i = 0; i < d->size - 1; i++)   /* the worker idle the longest */
        if (!d->w[i].busy && (pick < 0 || d->w[i].t_idle < d->w[pick].t_idle))
            pick = i;
    if (pick < 0)
        return nas_errf(err, NAS_EINTERNAL, "distributed search: candidate %ld sent out with every worker busy", id);
    if (d->stopped)   /* the workers were told to stop: none would receive it */
        return nas_errf(err, NAS_EINTR, "distributed search: candidate %ld not sent out: the job is stopping", id);
    wire_work wk;
    memset(&wk, 0, sizeof wk);
    wk.id = id;
    /* before the first result rank 0's power is unknown: a quarter is held back for it */
    double hold = d->st.collected == 0 && d->o->own_joules && isfinite(allowance) ? 0.25 * allowance : root_share(d);
    wk.allowance = allowance - hold;
    if (!(wk.allowance > 0))
        wk.allowance = 0;
    wk.g = *g;
    void *payload = NULL;
    size_t plen = 0;
    int rung = 0;
    nas_status st = tag == TAG_WORK && d->o->give_payload
                        ? d->o->give_payload(d->o->ctx, id, &rung, &payload, &plen, err) : NAS_OK;
    if (st)
        return st;
    if (payload && plen > INT_MAX) {
        nas_free(payload);
        return nas_errf(err, NAS_EINVAL, "distributed search: candidate %ld: %zu bytes to send with its work, more "
                        "than one MPI message holds", id, plen);
    }
    wk.payload_len = payload ? plen : 0;
    wk.rung = rung;
    MPI_Send(&wk, (int)sizeof wk, MPI_BYTE, pick + 1, tag, MPI_COMM_WORLD);
    if (wk.payload_len)   /* the worker receives it right after the work */
        MPI_Send(payload, (int)wk.payload_len, MPI_BYTE, pick + 1, TAG_PAYLOAD, MPI_COMM_WORLD);
    nas_free(payload);
    worker_slot *w = &d->w[pick];
    w->busy = 1;
    w->done = 0;
    w->id = id;
    w->g = *g;
    w->t_start = nas_now();
    *slot = pick;
    return NAS_OK;
}

static nas_status root_submit(void *ctx, long id, const space_genome *g, double allowance, nas_err *err)
{
    search_dist *d = g_active;
    int i;
    nas_status st = send_job(d, TAG_WORK, id, g, allowance, &i, err);
    if (st)
        return st;
    d->st.dispatched++;
    if (d->o->on_assign)
        d->o->on_assign(d->o->ctx, id, g, i + 1);
    return NAS_OK;
}

/* Rank 0's own joules since the last charge go onto this result, with the
 * uncertainty weighted so that joules x (1 + unc) is the sum of both parts. */
static nas_status charge_own(search_dist *d, search_eval *ev, nas_err *err)
{
    const search_dist_opts *o = d->o;
    if (!o->own_joules)
        return NAS_OK;
    double now;
    nas_status st = o->own_joules(o->ctx, &now, err);
    if (st)
        return nas_errctx(err, "distributed search: rank 0's own meter");
    if (!isfinite(now))
        return nas_errf(err, NAS_EIO, "distributed search: rank 0's own meter read %g J", now);
    d->st.root_joules = now - d->own_start;
    double delta = now - d->own_last;
    if (!(delta > 0))
        return NAS_OK;
    double j = isfinite(ev->joules) && ev->joules > 0 ? ev->joules : 0;
    double u = isfinite(ev->joules_rel_unc) && ev->joules_rel_unc > 0 ? ev->joules_rel_unc : 0;
    double ou = o->own_rel_unc > 0 ? o->own_rel_unc : 0;
    ev->joules = j + delta;
    ev->joules_rel_unc = (j * u + delta * ou) / (j + delta);
    ev->joules_estimated |= o->own_estimated;
    d->own_last = now;
    d->st.root_charged += delta;
    return NAS_OK;
}

/* A result that never reaches on_result: counted, and its joules handed on. */
static void abandon(search_dist *d, const wire_result *r)
{
    d->st.abandoned++;
    if (isfinite(r->ev.joules) && r->ev.joules > 0)
        d->st.abandoned_joules += r->ev.joules;
    if (d->o->on_abandoned)
        d->o->on_abandoned(d->o->ctx, r->id, &r->ev);
}

static nas_status root_collect(void *ctx, long *id, search_eval *out, nas_err *err)
{
    search_dist *d = g_active;
    int i;
    nas_status st = root_wait(d, -1, d->o->sync, &i, err);
    if (st)
        return st;
    worker_slot *w = &d->w[i];
    w->busy = w->done = 0;
    w->t_idle = nas_now();
    d->st.collected++;
    d->st.busy_seconds += w->res.seconds;
    d->result_rank = i + 1;
    void *payload = w->payload;
    w->payload = NULL;
    if (w->res.code == NAS_EINTR)
        abandon(d, &w->res);
    if (w->res.code != NAS_OK) {
        nas_free(payload);
        return nas_errf(err, (nas_status)w->res.code, "rank %d (host %s), candidate %ld: %s", i + 1,
                        d->hosts[i + 1], w->res.id, w->res.msg);
    }
    *id = w->res.id;
    *out = w->res.ev;
    if (isfinite(out->joules) && out->joules > 0)
        d->st.worker_joules += out->joules;
    if ((st = charge_own(d, out, err))) {
        nas_free(payload);
        return st;
    }
    if (payload && d->o->put_payload)
        st = d->o->put_payload(d->o->ctx, *id, payload, (size_t)w->res.payload_len, err);
    nas_free(payload);
    return st;
}

/* The loop's measure (a trained candidate's energy and latency per inference)
 * runs on a worker too, so figures come from the hardware that evaluates and
 * rank 0 keeps coordinating. The loop measures only with a slot free, so a
 * worker is idle; the call waits for that worker alone (results of the others
 * that arrive meanwhile wait in their slots for collect). */
static nas_status root_measure(void *ctx, long id, const space_genome *g, double allowance, search_eval *out,
                               nas_err *err)
{
    search_dist *d = g_active;
    int i, got;
    nas_status st = send_job(d, TAG_MEASURE, id, g, allowance, &i, err);
    if (st || (st = root_wait(d, i, 0, &got, err)))
        return st;
    worker_slot *w = &d->w[i];
    w->busy = w->done = 0;
    w->t_idle = nas_now();
    nas_free(w->payload);   /* a measure sends none; never keep one */
    w->payload = NULL;
    d->st.busy_seconds += w->res.seconds;
    if (w->res.code != NAS_OK)
        return nas_errf(err, (nas_status)w->res.code, "rank %d (host %s), measuring candidate %ld: %s", i + 1,
                        d->hosts[i + 1], w->res.id, w->res.msg);
    *out = w->res.ev;
    d->st.measured++;
    if (isfinite(out->joules) && out->joules > 0)
        d->st.worker_joules += out->joules;
    return charge_own(d, out, err);
}

/* After the loop: results still out are received (and counted as abandoned),
 * then every worker is told to stop. A worker past its timeout is not waited for. */
static nas_status root_stop(search_dist *d, nas_err *err)
{
    nas_status st = NAS_OK;
    for (int i = 0; i < d->size - 1 && !st; i++) {
        worker_slot *w = &d->w[i];
        if (!w->busy || d->st.hung_rank == i + 1)
            continue;
        int got;
        nas_err e2;
        if (root_wait(d, i, 0, &got, &e2)) {
            if (d->st.hung_rank < 0) {   /* an internal error, not a timeout */
                st = NAS_EINTERNAL;
                *err = e2;
            }
            continue;
        }
        w->busy = w->done = 0;
        nas_free(w->payload);   /* its result never reaches on_result: nor do its bytes */
        w->payload = NULL;
        abandon(d, &w->res);
    }
    send_stop_all(d);
    return st;
}

/* ---- one process, sync reference: S slots served in ticket order -------- */

static nas_status local_submit(void *ctx, long id, const space_genome *g, double allowance, nas_err *err)
{
    search_dist *d = g_active;
    if (d->q_n == d->q_cap)
        return nas_errf(err, NAS_EINTERNAL, "distributed search: more than %d candidates submitted", d->q_cap);
    local_job *j = &d->q[(d->q_head + d->q_n++) % d->q_cap];
    j->id = id;
    j->g = *g;
    j->allowance = allowance;
    d->st.dispatched++;
    return NAS_OK;
}

/* One process: evaluate, then its payload straight from take_payload to put_payload. */
static nas_status local_evaluate(void *ctx, long id, const space_genome *g, double allowance, search_eval *out,
                                 nas_err *err)
{
    search_dist *d = g_active;
    const search_dist_opts *o = d->o;
    nas_status st = d->user->evaluate(ctx, id, g, allowance, out, err);
    void *bytes = NULL;
    size_t len = 0;
    if (o->take_payload)
        o->take_payload(o->ctx, id, &bytes, &len);
    if (!st && bytes && len > 0 && o->put_payload)
        st = o->put_payload(o->ctx, id, bytes, len, err);
    nas_free(bytes);
    return st;
}

static nas_status local_collect(void *ctx, long *id, search_eval *out, nas_err *err)
{
    search_dist *d = g_active;
    if (d->q_n == 0)
        return nas_errf(err, NAS_EINTERNAL, "distributed search: collect with no candidate in flight");
    local_job j = d->q[d->q_head];
    d->q_head = (d->q_head + 1) % d->q_cap;
    d->q_n--;
    double t0 = nas_now();
    nas_status st = local_evaluate(d->user->ctx, j.id, &j.g, j.allowance, out, err);
    if (st)
        return st;
    if (!(out->seconds > 0))
        out->seconds = nas_now() - t0;
    *id = j.id;
    d->st.collected++;
    return NAS_OK;
}

/* ---- the run ------------------------------------------------------------ */

static nas_status wrap_on_result(void *ctx, const search_result *r, const search_loop *l, nas_err *err)
{
    search_dist *d = g_active;
    if (r->screened || r->cached)
        d->result_rank = -1;
    nas_status st = d->user->on_result ? d->user->on_result(ctx, r, l, err) : NAS_OK;
    d->result_rank = -1;
    return st;
}

nas_status search_dist_run(search_dist *d, const search_dist_opts *o, search_loop *loop,
                           const search_callbacks *cb, search_stop *why, nas_err *err)
{
    search_dist_opts dflt;
    if (!o) {
        search_dist_opts_default(&dflt);
        o = &dflt;
    }
    if (why)
        *why = SEARCH_STOP_NONE;
    if (cb->submit || cb->collect)
        return nas_errf(err, NAS_EINVAL, "distributed search: submit/collect are supplied by search_dist_run");
    if (o->worker_timeout < 0 || !isfinite(o->worker_timeout))
        return nas_errf(err, NAS_EINVAL, "distributed search: worker timeout %g s is not a positive number",
                        o->worker_timeout);
    if (g_active)
        return nas_errf(err, NAS_EINVAL, "distributed search: one search_dist_run at a time per process");
    stats_reset(d);
    d->o = o;
    d->user = cb;
    d->result_rank = -1;
    if (d->rank != 0)
        return worker_serve(d, o, cb, err);
    if (!loop)
        return nas_errf(err, NAS_EINVAL, "distributed search: rank 0 needs the search loop");

    nas_status st = NAS_OK;
    int local = d->size == 1;
    d->t_start = nas_now();
    search_callbacks c = *cb;
    c.on_result = wrap_on_result;
    g_active = d;
    if (local && !(o->sync && o->local_slots > 1)) {   /* plain: search_run, payloads handed on at once */
        if (cb->evaluate)
            c.evaluate = local_evaluate;
        st = search_run(loop, &c, why, err);
        goto cleanup;
    }
    if (local) {
        if (!cb->evaluate) {
            st = nas_errf(err, NAS_EINVAL, "distributed search: no evaluate callback");
            goto cleanup;
        }
        nas_free(d->q);
        if (!(d->q = nas_calloc((size_t)o->local_slots, sizeof *d->q))) {
            st = nas_errf(err, NAS_ENOMEM, "distributed search: out of memory");
            goto cleanup;
        }
        d->q_cap = o->local_slots;
        d->q_head = d->q_n = 0;
        c.submit = local_submit;
        c.collect = local_collect;
        c.slots = o->local_slots;
        st = search_run(loop, &c, why, err);
        goto cleanup;
    }
    nas_free(d->w);
    if (!(d->w = nas_calloc((size_t)(d->size - 1), sizeof *d->w))) {
        st = nas_errf(err, NAS_ENOMEM, "distributed search: out of memory for %d workers", d->size - 1);
        goto cleanup;   /* search_dist_finish still stops the workers */
    }
    d->done_seq = 0;
    d->own_last = 0;
    if (o->own_joules && (st = o->own_joules(o->ctx, &d->own_last, err))) {
        st = nas_errctx(err, "distributed search: rank 0's own meter");
        goto cleanup;   /* search_dist_finish still stops the workers */
    }
    if (!isfinite(d->own_last))
        d->own_last = 0;
    d->own_start = d->own_last;
    c.submit = root_submit;
    c.collect = root_collect;
    c.slots = d->size - 1;
    if (cb->measure)
        c.measure = root_measure;
    st = search_run(loop, &c, why, err);
    nas_err e2;
    nas_err_clear(&e2);
    nas_status st2 = root_stop(d, &e2);
    if (!st && st2) {
        st = st2;
        *err = e2;
    }
    double j;
    if (o->own_joules && o->own_joules(o->ctx, &j, st ? NULL : err) == NAS_OK) {
        if (isfinite(j))
            d->st.root_joules = j - d->own_start;
    } else if (o->own_joules && !st) {
        st = nas_errctx(err, "distributed search: rank 0's own meter, at the end");
    }
cleanup:
    g_active = NULL;
    d->st.wall_seconds = nas_now() - d->t_start;
    return st;
}
