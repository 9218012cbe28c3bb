/* test_mpi.c — distributed evaluation on Open MPI (search/dist.h).
 *
 * One binary, two roles. Run plainly (make test) it is a cmocka suite whose
 * tests launch this same binary under `mpirun -np 3` with `--mpi DIR key=value
 * ...`; run that way, every rank plays one scenario: rank 0 drives a real
 * search loop (evolution) through search_dist_run, ranks 1..2 evaluate with a
 * synthetic evaluator (a deterministic function of the genome, a few ms of
 * sleep that vary by genome and rank, joules from a fake meter). The ranks
 * leave logs in DIR that the suite then checks:
 *   assign.log     rank 0: "id rank genome" for every candidate sent out
 *   worker-R.log   rank R: "id genome joules" for every evaluation it finished
 *   results.log    rank 0, from on_result: "id genome acc reward joules | rank"
 *   state.json     rank 0, from on_result: the loop state (the resumable point)
 *   done           rank 0: how the run ended, and search_dist's stats
 *   pid-R          rank R: its process id (to tell which rank outlived a job)
 *   payload.log    rank 0, from put_payload (payload=1): "id bytes genome" for
 *                  every payload that arrived intact (a bad one fails the run)
 *   abandoned.log  rank 0, from on_abandoned: "id joules" of every candidate
 *                  that never reached on_result (stop_at=K: rank 0 raises
 *                  SIGTERM when it sends out candidate K; candidates from
 *                  long_from on run until rank 0 stops the job)
 * on_result writes state.json before appending to results.log, so every
 * logged result is in the saved state even if the job dies in between.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <time.h>

#include <jansson.h>
#include <mpi.h>

#include "runs/runs.h"
#include "search/dist.h"

/* ======================= the scenario (runs under mpirun) ================ */

typedef struct {
    const char *dir;
    int sync, slots, resume, rank, measure, bcast;
    long evals;
    uint64_t seed;
    double budget_j, first_j, own_watts, timeout;
    int kill_rank, kill_at, hang_rank, hang_at, fail_rank, fail_at, slow_rank, payload, stop_at, long_from;
    double slow, scale;
    /* running */
    int n_eval;
    void *blob;                /* payload=1: bytes evaluate made, until take_payload */
    size_t blob_len;
    double t0;
    search_dist *d;
} scen;

static const int CARD[8] = {4, 4, 4, 4, 3, 3, 5, 2};

static uint32_t ghash(const space_genome *g)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < g->n; i++)
        h = (h ^ g->g[i]) * 16777619u;
    return h;
}

static void append(const char *dir, const char *name, const char *line)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return;
    ssize_t n = write(fd, line, strlen(line));
    (void)n;
    close(fd);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* payload=1: what evaluate attaches to candidate id: {id, genome, bytes from
 * a generator seeded by both, FNV-1a of all that}; none for every 4th id.
 * Sizes 1 kB (an eager MPI message) to 200 kB (a rendezvous). */
typedef struct {
    long id;
    space_genome g;
} blob_head;

static uint32_t fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void make_blob(scen *s, long id, const space_genome *g)
{
    if (id % 4 == 3)
        return;
    size_t n = sizeof(blob_head) + 1000 + (ghash(g) % 3) * 100000 + (size_t)id, len = n + sizeof(uint32_t);
    uint8_t *b = nas_malloc(len);
    if (!b)
        return;
    blob_head h;
    memset(&h, 0, sizeof h);
    h.id = id;
    h.g = *g;
    memcpy(b, &h, sizeof h);
    uint64_t x = ghash(g) * 0x9E3779B97F4A7C15ull + (uint64_t)id + 1;
    for (size_t i = sizeof h; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    uint32_t sum = fnv(b, n);
    memcpy(b + n, &sum, sizeof sum);
    s->blob = b;
    s->blob_len = len;
}

static void take_payload(void *ctx, long id, void **bytes, size_t *len)
{
    scen *s = ctx;
    *bytes = s->blob;
    *len = s->blob_len;
    s->blob = NULL;
    s->blob_len = 0;
}

/* On rank 0: the bytes must be the ones made for this id, whole. */
static nas_status put_payload(void *ctx, long id, const void *bytes, size_t len, nas_err *err)
{
    scen *s = ctx;
    const uint8_t *b = bytes;
    blob_head h;
    uint32_t sum;
    if (len < sizeof h + sizeof sum)
        return nas_errf(err, NAS_EINVAL, "payload of candidate %ld: %zu bytes, too short", id, len);
    memcpy(&h, b, sizeof h);
    memcpy(&sum, b + len - sizeof sum, sizeof sum);
    if (h.id != id || fnv(b, len - sizeof sum) != sum)
        return nas_errf(err, NAS_EINVAL, "payload of candidate %ld: corrupt (made for %ld)", id, h.id);
    char gs[300], line[400];
    space_genome_to_string(&h.g, gs, sizeof gs);
    snprintf(line, sizeof line, "%ld %zu %s\n", id, len, gs);
    append(s->dir, "payload.log", line);
    return NAS_OK;
}

/* A long evaluation that stops only when rank 0 stops the job, as training
 * does (cli/'s step callback asks search_dist_stop_pending), and says what it
 * spent so far; after 120 s (past run_mpi's kill) it gives up. */
static nas_status until_stopped(scen *s, long id, search_eval *out, nas_err *err)
{
    double t0 = nas_now();
    while (!search_dist_stop_pending(s->d) && nas_now() - t0 < 120)
        sleep_s(0.002);
    memset(out, 0, sizeof *out);
    out->status = SEARCH_EVAL_FAILED;
    out->joules = 0.5;
    out->joules_rel_unc = 0.05;
    snprintf(out->meter, sizeof out->meter, "test:rank%d", s->rank);
    return nas_errf(err, NAS_EINTR, "synthetic evaluator: candidate %ld stopped by rank 0", id);
}

/* Accuracy rises with the gene values (so evolution has something to climb);
 * joules 1.0..2.5 by hash; results depend on the genome only, never the rank. */
static nas_status synth_eval(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                             nas_err *err)
{
    scen *s = ctx;
    uint32_t h = ghash(g);
    s->n_eval++;
    if (s->rank == s->kill_rank && s->n_eval == s->kill_at) {
        sleep_s(0.005);
        raise(SIGKILL);   /* mid-evaluation: nothing of it reaches rank 0 */
    }
    if (s->rank == s->hang_rank && s->n_eval == s->hang_at)
        sleep_s(3600);   /* far longer than run_mpi's kill: only the timeout logic can end it */
    if (s->long_from > 0 && id >= s->long_from)
        return until_stopped(s, id, out, err);
    if (s->rank == s->fail_rank && s->n_eval == s->fail_at)
        return nas_errf(err, NAS_EIO, "synthetic evaluator: disk full while training candidate %ld", id);
    double v = 0;
    for (int i = 0; i < g->n; i++)
        v += (double)g->g[i] / (CARD[i] - 1);
    memset(out, 0, sizeof *out);
    out->status = SEARCH_EVAL_OK;
    out->accuracy = 0.3 + 0.6 * v / g->n;
    if (!s->measure) {   /* else measured later, by synth_measure */
        out->energy_mj = 1.0 + 0.25 * v;
        out->latency_ms = 2.0 + v;
    }
    out->joules = 1.0 + 0.5 * (h % 4);
    out->joules_rel_unc = 0.05;
    if (out->joules * 1.05 > allowance_j) {   /* as the engine does: give up within the allowance */
        out->joules = allowance_j / 1.05;
        out->status = SEARCH_EVAL_FAILED;
    }
    snprintf(out->meter, sizeof out->meter, "test:rank%d", s->rank);
    if (s->payload)
        make_blob(s, id, g);
    double nap = (0.004 + 0.003 * (h % 5)) * s->scale;
    if (s->rank == s->slow_rank)
        nap *= s->slow;
    sleep_s(nap);
    char gs[300], line[512];
    space_genome_to_string(g, gs, sizeof gs);
    snprintf(line, sizeof line, "%ld %s %.6f\n", id, gs, out->joules);
    char name[64];
    snprintf(name, sizeof name, "worker-%d.log", s->rank);
    append(s->dir, name, line);
    return NAS_OK;
}

/* The loop's measure: figures of a trained candidate, logged by the rank that ran it. */
static nas_status synth_measure(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                                nas_err *err)
{
    scen *s = ctx;
    double v = 0;
    for (int i = 0; i < g->n; i++)
        v += (double)g->g[i] / (CARD[i] - 1);
    memset(out, 0, sizeof *out);
    out->energy_mj = 1.0 + 0.25 * v;
    out->latency_ms = 2.0 + v;
    out->joules = 0.25;
    out->joules_rel_unc = 0.05;
    snprintf(out->meter, sizeof out->meter, "test:rank%d", s->rank);
    sleep_s(0.003);
    char line[64], name[64];
    snprintf(line, sizeof line, "%ld\n", id);
    snprintf(name, sizeof name, "measure-%d.log", s->rank);
    append(s->dir, name, line);
    return NAS_OK;
}

static nas_status on_result(void *ctx, const search_result *r, const search_loop *l, nas_err *err)
{
    scen *s = ctx;
    char *state = search_loop_save(l);
    if (!state)
        return nas_errf(err, NAS_ENOMEM, "out of memory saving the state");
    char path[512];
    snprintf(path, sizeof path, "%s/state.json", s->dir);
    nas_status st = nas_write_file_atomic(path, state, strlen(state), err);
    nas_free(state);
    if (st)
        return st;
    char gs[300], line[600];
    space_genome_to_string(&r->genome, gs, sizeof gs);
    snprintf(line, sizeof line, "%ld %s %.9f %.9f %.6f %d%d | %d\n", r->id, gs, r->eval.accuracy, r->reward,
             r->eval.joules, r->screened, r->cached, search_dist_result_rank(s->d));
    append(s->dir, "results.log", line);
    return NAS_OK;
}

static void on_abandoned(void *ctx, long id, const search_eval *ev)
{
    scen *s = ctx;
    char line[128];
    snprintf(line, sizeof line, "%ld %.6f\n", id, ev->joules);
    append(s->dir, "abandoned.log", line);
}

static void on_assign(void *ctx, long id, const space_genome *g, int rank)
{
    scen *s = ctx;
    static int raised;
    if (s->stop_at > 0 && id >= s->stop_at && !raised++)
        raise(SIGTERM);   /* as Slurm would, to rank 0; acknowledged on stderr, the job stops */
    char gs[300], line[400];
    space_genome_to_string(g, gs, sizeof gs);
    snprintf(line, sizeof line, "%ld %d %s\n", id, rank, gs);
    append(s->dir, "assign.log", line);
}

/* Rank 0's "meter": a stated power times wall time, as the model meter would. */
static nas_status own_joules(void *ctx, double *j, nas_err *err)
{
    scen *s = ctx;
    *j = s->own_watts * (nas_now() - s->t0);
    return NAS_OK;
}

static int scen_parse(int argc, char **argv, scen *s)
{
    memset(s, 0, sizeof *s);
    s->kill_rank = s->hang_rank = s->fail_rank = s->slow_rank = -1;
    s->evals = 20;
    s->seed = 1;
    s->slow = 1;
    s->scale = 1;
    for (int i = 0; i < argc; i++) {
        char k[32];
        double v;
        if (sscanf(argv[i], "%31[^=]=%lf", k, &v) != 2)
            return -1;
#define KEY(name, field) else if (!strcmp(k, name)) s->field = v
        if (0) {
        }
        KEY("sync", sync); KEY("slots", slots); KEY("resume", resume); KEY("evals", evals);
        KEY("seed", seed); KEY("budget_j", budget_j); KEY("first_j", first_j); KEY("own_watts", own_watts);
        KEY("timeout", timeout); KEY("kill_rank", kill_rank); KEY("kill_at", kill_at);
        KEY("hang_rank", hang_rank); KEY("hang_at", hang_at); KEY("fail_rank", fail_rank);
        KEY("fail_at", fail_at); KEY("slow_rank", slow_rank); KEY("slow", slow); KEY("scale", scale); KEY("measure", measure); KEY("bcast", bcast);
        KEY("payload", payload); KEY("stop_at", stop_at); KEY("long_from", long_from);
        else return -1;
#undef KEY
    }
    return 0;
}

/* Plays one scenario on this rank; returns the process exit code. d may
 * belong to an MPI job or be the one-process context. */
static int scen_run(search_dist *d, scen *s)
{
    nas_err err;
    nas_err_clear(&err);
    s->d = d;
    s->rank = search_dist_rank(d);
    s->t0 = nas_now();
    char pidname[32], pidline[32];
    snprintf(pidname, sizeof pidname, "pid-%d", s->rank);
    snprintf(pidline, sizeof pidline, "%ld\n", (long)getpid());
    append(s->dir, pidname, pidline);
    if (s->bcast) {
        /* settings from rank 0 (200 kB: past the eager limit, so a rendezvous
         * send); bcast=2: rank 0 fails before sending them */
        char *text = NULL;
        if (s->rank == 0 && s->bcast == 2)
            return 1;   /* main still calls search_dist_finish, which stops the workers */
        if (s->rank == 0) {
            text = malloc(200001);
            for (int i = 0; i < 200000; i++)
                text[i] = (char)('a' + (i * 7 + (int)s->seed) % 26);
            text[200000] = '\0';
        }
        nas_status bst = search_dist_bcast(d, &text, &err);
        if (bst) {
            fprintf(stderr, "rank %d: %s\n", s->rank, err.msg);
            return 1;
        }
        char name[64];
        snprintf(name, sizeof name, "%s/bcast-%d.txt", s->dir, s->rank);
        nas_status wst = nas_write_file_atomic(name, text, strlen(text), &err);
        if (s->rank == 0)
            free(text);
        else
            nas_free(text);
        if (wst)
            fprintf(stderr, "rank %d: %s\n", s->rank, err.msg);
        return wst ? 1 : 0;
    }
    search_space space;
    search_loop *loop = NULL;
    nas_status st = search_space_init(&space, 8, CARD, &err);
    char path[512], *text = NULL;
    if (!st && s->rank == 0) {
        if (s->resume) {
            snprintf(path, sizeof path, "%s/state.json", s->dir);
            if (!(st = nas_read_file(path, &text, NULL, &err)))
                st = search_loop_load(&space, text, &loop, &err);
            nas_free(text);
        } else {
            search_loop_opts lo;
            search_loop_opts_default(&lo, SEARCH_EVOLUTION, s->evals);
            lo.strategy.seed = s->seed;
            lo.strategy.population = 6;
            lo.strategy.sample_size = 2;
            lo.limits.joules = s->budget_j;
            lo.limits.first_joules = s->first_j;
            lo.measure_every = 5;
            st = search_loop_new(&space, &lo, &loop, &err);
        }
    }
    search_dist_opts o;
    search_dist_opts_default(&o);
    o.sync = s->sync;
    o.local_slots = s->slots;
    o.worker_timeout = s->timeout;
    o.poll_max = 0.001;
    o.on_assign = on_assign;
    o.on_abandoned = on_abandoned;
    if (s->stop_at > 0 && s->rank == 0)
        nas_sig_install("test_mpi", "the scenario");
    o.own_joules = s->own_watts > 0 ? own_joules : NULL;
    o.own_rel_unc = 0.1;
    o.own_estimated = 1;
    if (s->payload) {
        o.take_payload = take_payload;
        o.put_payload = put_payload;
    }
    o.ctx = s;
    search_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = s;
    cb.evaluate = synth_eval;
    cb.on_result = on_result;
    cb.measure = s->measure ? synth_measure : NULL;
    search_stop why = SEARCH_STOP_NONE;
    if (!st)
        st = search_dist_run(d, &o, loop, &cb, &why, &err);
    if (s->rank == 0) {
        search_dist_stats ds;
        search_dist_get_stats(d, &ds);
        char line[2048];
        snprintf(line, sizeof line,
                 "status %d\nwhy %d\nroot_joules %.9f\nroot_charged %.9f\nworker_joules %.9f\n"
                 "abandoned %ld\nabandoned_joules %.9f\nhung_rank %d\nhung_id %ld\nbudget_joules %.9f\n"
                 "budget_joules_hi %.9f\nmeasured %ld\nmsg %s\n",
                 (int)st, (int)why, ds.root_joules, ds.root_charged, ds.worker_joules, ds.abandoned,
                 ds.abandoned_joules, ds.hung_rank, ds.hung_id, loop ? search_loop_budget(loop)->joules : NAN,
                 loop ? search_loop_budget(loop)->joules_hi : NAN, ds.measured, st ? err.msg : "");
        append(s->dir, "done", line);
        if (loop) {
            char *js = search_strategy_save(search_loop_strategy(loop));
            if (js) {
                snprintf(path, sizeof path, "%s/strategy.json", s->dir);
                nas_err werr = {0};
                if (nas_write_file_atomic(path, js, strlen(js), &werr) && !st)
                    st = nas_errf(&err, werr.code, "%s", werr.msg);   /* the parent reads this file */
                nas_free(js);
            }
        }
    }
    if (st)
        fprintf(stderr, "rank %d: %s\n", s->rank, err.msg);
    int sig = nas_sig_caught();
    nas_sig_uninstall();
    search_loop_free(loop);
    nas_free(s->blob);   /* made by an evaluate whose payload nobody took (none should be) */
    s->blob = NULL;
    if (sig && (!st || st == NAS_EINTR))
        return 128 + sig;
    return st ? 1 : 0;
}

/* ======================= the suite ======================================= */

static char g_exe[1024];

/* Runs this binary under mpirun with np ranks; output in DIR/out.txt. */
static int run_mpi(int np, const char *dir, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s '%s' --mpi '%s' %s >'%s/out.txt' 2>&1", tu_mpirun(180, np), g_exe, dir, args, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

static char *slurp(const char *dir, const char *name)
{
    char path[512], *text = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (nas_read_file(path, &text, NULL, NULL))
        return NULL;
    return text;
}

static void show_out(const char *dir)
{
    char *o = slurp(dir, "out.txt");
    if (o)
        fprintf(stderr, "--- mpirun output ---\n%s---\n", o);
    nas_free(o);
}

static double done_value(const char *dir, const char *key)
{
    char *t = slurp(dir, "done");
    double v = NAN;
    if (t) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n%s ", key);
        char *p = strstr(t, pat);
        if (!p && !strncmp(t, key, strlen(key)) && t[strlen(key)] == ' ')
            p = t - 1;
        if (p)
            v = strtod(p + strlen(key) + 2, NULL);
    }
    nas_free(t);
    return v;
}

#define MAXID 4096
typedef struct {
    int n_assign, assign_rank[MAXID], assign_count[MAXID];
    char assign_g[MAXID][200];
    int eval_count[MAXID], eval_rank[MAXID], n_evals_by_rank[8];
    double worker_joules;
    int n_res, res_count[MAXID], res_rank[MAXID];
    char res_line[MAXID][300];   /* up to " | " */
} logs;

static void read_logs(const char *dir, logs *L, int np)
{
    memset(L, 0, sizeof *L);
    char *t = slurp(dir, "assign.log");
    for (char *line = t ? strtok(t, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        long id;
        int r;
        char g[200];
        assert_int_equal(sscanf(line, "%ld %d %199s", &id, &r, g), 3);
        assert_true(id >= 0 && id < MAXID);
        L->assign_count[id]++;
        L->assign_rank[id] = r;
        snprintf(L->assign_g[id], sizeof L->assign_g[id], "%s", g);
        L->n_assign++;
    }
    nas_free(t);
    for (int r = 1; r < np; r++) {
        char name[64];
        snprintf(name, sizeof name, "worker-%d.log", r);
        t = slurp(dir, name);
        for (char *line = t ? strtok(t, "\n") : NULL; line; line = strtok(NULL, "\n")) {
            long id;
            char g[200];
            double j;
            assert_int_equal(sscanf(line, "%ld %199s %lf", &id, g, &j), 3);
            assert_true(id >= 0 && id < MAXID);
            L->eval_count[id]++;
            L->eval_rank[id] = r;
            L->n_evals_by_rank[r]++;
            L->worker_joules += j;
            /* the worker evaluated the genome rank 0 sent it */
            assert_string_equal(g, L->assign_g[id]);
        }
        nas_free(t);
    }
    t = slurp(dir, "results.log");
    for (char *line = t ? strtok(t, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        long id;
        int rank;
        char *bar = strstr(line, " | ");
        assert_non_null(bar);
        assert_int_equal(sscanf(line, "%ld", &id), 1);
        assert_int_equal(sscanf(bar, " | %d", &rank), 1);
        assert_true(id >= 0 && id < MAXID);
        L->res_count[id]++;
        L->res_rank[id] = rank;
        *bar = '\0';
        snprintf(L->res_line[id], sizeof L->res_line[id], "%s", line);
        L->n_res++;
    }
    nas_free(t);
}

/* ---- without a launcher ---- */

static void test_plain_never_starts_mpi(void **state)
{
    (void)state;
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMIX_RANK");
    unsetenv("PMI_RANK");
    unsetenv("PMI_SIZE");
    assert_false(search_dist_launched());
    setenv("PMIX_RANK", "0", 1);
    assert_true(search_dist_launched());
    setenv("NAS_NO_MPI", "1", 1);
    assert_false(search_dist_launched());
    unsetenv("NAS_NO_MPI");
    unsetenv("PMIX_RANK");

    search_dist *d = NULL;
    nas_err err;
    assert_int_equal(search_dist_init(NULL, NULL, &d, &err), NAS_OK);
    assert_int_equal(search_dist_rank(d), 0);
    assert_int_equal(search_dist_size(d), 1);
    assert_false(search_dist_mpi(d));
    assert_true(search_dist_threads(d) >= 1);
    int inited = 1;
    MPI_Initialized(&inited);
    assert_false(inited);   /* a plain process never starts the MPI runtime */

    /* and search_dist_run is the plain loop: same results as search_run */
    char dir_a[64], dir_b[64];
    assert_non_null(tu_tmpdir(dir_a, sizeof dir_a));
    assert_non_null(tu_tmpdir(dir_b, sizeof dir_b));
    scen s;
    char *args[] = {"evals=15", "seed=3"};
    assert_int_equal(scen_parse(2, args, &s), 0);
    s.dir = dir_a;
    assert_int_equal(scen_run(d, &s), 0);
    search_dist_finish(d);
    MPI_Initialized(&inited);
    assert_false(inited);

    /* the same through search_run directly */
    search_space space;
    search_loop *loop;
    search_loop_opts lo;
    assert_int_equal(search_space_init(&space, 8, CARD, &err), NAS_OK);
    search_loop_opts_default(&lo, SEARCH_EVOLUTION, 15);
    lo.strategy.seed = 3;
    lo.strategy.population = 6;
    lo.strategy.sample_size = 2;
    assert_int_equal(search_loop_new(&space, &lo, &loop, &err), NAS_OK);
    scen s2 = s;
    s2.dir = dir_b;
    s2.d = NULL;
    search_dist *d2;
    assert_int_equal(search_dist_init(NULL, NULL, &d2, &err), NAS_OK);
    s2.d = d2;
    search_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = &s2;
    cb.evaluate = synth_eval;
    cb.on_result = on_result;
    search_stop why;
    assert_int_equal(search_run(loop, &cb, &why, &err), NAS_OK);
    assert_int_equal(why, SEARCH_STOP_EVALS);
    search_loop_free(loop);
    search_dist_finish(d2);
    char *ra = slurp(dir_a, "results.log"), *rb = slurp(dir_b, "results.log");
    assert_non_null(ra);
    assert_non_null(rb);
    /* rank column: 0 (local) in the dist run, -1 (no dist) in the plain one */
    logs *L = malloc(sizeof *L), *M = malloc(sizeof *M);
    read_logs(dir_a, L, 1);
    read_logs(dir_b, M, 1);
    fprintf(stderr, "plain: %d vs %d results (%s, %s)\n", L->n_res, M->n_res, dir_a, dir_b);
    assert_int_equal(L->n_res, M->n_res);
    assert_true(L->n_res >= 15);
    for (int i = 0; i < MAXID; i++)
        assert_string_equal(L->res_line[i], M->res_line[i]);
    free(L);
    free(M);
    nas_free(ra);
    nas_free(rb);
    tu_rmtree(dir_a);
    tu_rmtree(dir_b);
}

static void test_thread_plan(void **state)
{
    (void)state;
    /* one process: every core it may use */
    assert_int_equal(search_dist_plan_threads(16, 16, 1, 1, 1, 1), 16);
    assert_int_equal(search_dist_plan_threads(16, 4, 1, 1, 1, 1), 4);
    /* rank 0 coordinates: one thread; its host's cores go to the workers beside it */
    assert_int_equal(search_dist_plan_threads(16, 16, 5, 1, 1, 5), 1);
    assert_int_equal(search_dist_plan_threads(16, 16, 5, 1, 0, 5), 4);   /* 4 workers share 16 */
    assert_int_equal(search_dist_plan_threads(16, 16, 4, 0, 0, 9), 4);   /* another host: 4 workers */
    assert_int_equal(search_dist_plan_threads(2, 2, 3, 1, 0, 3), 1);     /* this machine, np 3 */
    assert_int_equal(search_dist_plan_threads(2, 2, 2, 1, 0, 2), 2);     /* np 2: one worker, both cores */
    /* bound to one core by mpirun: never more threads than the affinity allows */
    assert_int_equal(search_dist_plan_threads(2, 1, 2, 1, 0, 2), 1);
    /* oversubscribed: still one each */
    assert_int_equal(search_dist_plan_threads(2, 2, 9, 1, 0, 9), 1);
}

/* ---- under mpirun ---- */

static void test_async_every_candidate_once(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    /* rank 2 takes 4x as long per candidate: a free worker must not wait for it */
    double t0 = nas_now();
    int rc = run_mpi(3, dir, "evals=40 seed=7 slow_rank=2 slow=8 own_watts=0.5");
    double wall = nas_now() - t0;
    if (rc)
        show_out(dir);
    assert_int_equal(rc, 0);
    logs *L = malloc(sizeof *L);
    read_logs(dir, L, 3);
    /* every candidate sent out was evaluated exactly once, by the rank it was sent to */
    int evaluated = 0;
    for (int id = 0; id < MAXID; id++) {
        assert_true(L->assign_count[id] <= 1);
        assert_int_equal(L->eval_count[id], L->assign_count[id]);
        if (L->assign_count[id]) {
            assert_int_equal(L->eval_rank[id], L->assign_rank[id]);
            assert_int_equal(L->res_count[id], 1);   /* and reached on_result once */
            assert_int_equal(L->res_rank[id], L->assign_rank[id]);
            evaluated++;
        }
        assert_true(L->res_count[id] <= 1);
    }
    assert_int_equal(evaluated, 40);   /* the evaluation budget, all spent */
    assert_true(L->n_res >= 40);       /* plus any proposal reused without training */
    /* asynchrony: the fast worker took most of the work (about 8:1 at zero
     * overhead; rounds would split it 1:1) */
    assert_true(L->n_evals_by_rank[1] >= 2 * L->n_evals_by_rank[2]);
    assert_true(L->n_evals_by_rank[2] >= 1);
    assert_int_equal((int)done_value(dir, "status"), 0);
    assert_int_equal((int)done_value(dir, "why"), SEARCH_STOP_EVALS);
    assert_int_equal((int)done_value(dir, "abandoned"), 0);
    /* rank 0's joules charged into the loop's budget with the workers' */
    double charged = done_value(dir, "root_charged"), wj = done_value(dir, "worker_joules");
    assert_true(charged > 0);
    assert_true(charged <= done_value(dir, "root_joules") + 1e-9);
    assert_true(fabs(wj - L->worker_joules) < 1e-3);
    assert_true(fabs(done_value(dir, "budget_joules") - (wj + charged)) < 1e-6);
    fprintf(stderr, "async: 40 evaluations in %.2f s (incl. mpirun start), rank1 %d, rank2 %d\n", wall,
            L->n_evals_by_rank[1], L->n_evals_by_rank[2]);
    free(L);
    tu_rmtree(dir);
}

static void test_sync_equals_single_process(void **state)
{
    (void)state;
    char dm[64], d1[64];
    assert_non_null(tu_tmpdir(dm, sizeof dm));
    assert_non_null(tu_tmpdir(d1, sizeof d1));
    /* varied sleeps (slow rank) make arrival order differ from ticket order */
    int rc = run_mpi(3, dm, "sync=1 evals=30 seed=11 slow_rank=1 slow=3");
    if (rc)
        show_out(dm);
    assert_int_equal(rc, 0);
    /* the single-process reference: 2 slots served in ticket order */
    search_dist *d;
    nas_err err;
    assert_int_equal(search_dist_init(NULL, NULL, &d, &err), NAS_OK);
    scen s;
    char *args[] = {"sync=1", "slots=2", "evals=30", "seed=11"};
    assert_int_equal(scen_parse(4, args, &s), 0);
    s.dir = d1;
    assert_int_equal(scen_run(d, &s), 0);
    search_dist_finish(d);

    char *rm = slurp(dm, "results.log"), *r1 = slurp(d1, "results.log");
    assert_non_null(rm);
    assert_non_null(r1);
    /* same results in the same order (on_result order = tell order), up to the rank column */
    char *pm = rm, *p1 = r1;
    int lines = 0;
    while (*pm && *p1) {
        char *em = strstr(pm, " | "), *e1 = strstr(p1, " | ");
        assert_non_null(em);
        assert_non_null(e1);
        assert_int_equal(em - pm, e1 - p1);
        assert_memory_equal(pm, p1, (size_t)(em - pm));
        pm = strchr(em, '\n') + 1;
        p1 = strchr(e1, '\n') + 1;
        lines++;
    }
    assert_int_equal(*pm, '\0');
    assert_int_equal(*p1, '\0');
    assert_true(lines >= 30);
    /* and the strategy ends in the same state */
    char *sm = slurp(dm, "strategy.json"), *s1 = slurp(d1, "strategy.json");
    assert_non_null(sm);
    assert_non_null(s1);
    assert_string_equal(sm, s1);
    /* evaluated results were told in ticket order (reused ones are told at once, when proposed) */
    long prev = -1;
    int evaluated = 0;
    for (char *line = strtok(rm, "\n"); line; line = strtok(NULL, "\n")) {
        long id = strtol(line, NULL, 10);
        char *bar = strstr(line, " | ");
        assert_non_null(bar);
        if (bar[-1] == '1')   /* cached */
            continue;
        assert_true(id > prev);
        prev = id;
        evaluated++;
    }
    assert_int_equal(evaluated, 30);
    nas_free(rm);
    nas_free(r1);
    nas_free(sm);
    nas_free(s1);
    tu_rmtree(dm);
    tu_rmtree(d1);

    /* one worker (np 2) in sync mode: the plain single-process loop itself */
    assert_non_null(tu_tmpdir(dm, sizeof dm));
    assert_non_null(tu_tmpdir(d1, sizeof d1));
    rc = run_mpi(2, dm, "sync=1 evals=12 seed=13");
    if (rc)
        show_out(dm);
    assert_int_equal(rc, 0);
    assert_int_equal(search_dist_init(NULL, NULL, &d, &err), NAS_OK);
    char *args1[] = {"evals=12", "seed=13"};
    assert_int_equal(scen_parse(2, args1, &s), 0);
    s.dir = d1;
    assert_int_equal(scen_run(d, &s), 0);
    search_dist_finish(d);
    logs *A = malloc(sizeof *A), *B = malloc(sizeof *B);
    read_logs(dm, A, 2);
    read_logs(d1, B, 1);
    assert_int_equal(A->n_res, B->n_res);
    for (int i = 0; i < MAXID; i++)
        assert_string_equal(A->res_line[i], B->res_line[i]);
    sm = slurp(dm, "strategy.json");
    s1 = slurp(d1, "strategy.json");
    assert_non_null(sm);
    assert_non_null(s1);
    assert_string_equal(sm, s1);
    nas_free(sm);
    nas_free(s1);
    free(A);
    free(B);
    tu_rmtree(dm);
    tu_rmtree(d1);
}

static int count_lines(const char *dir, const char *name)
{
    char *t = slurp(dir, name);
    if (!t)
        return -1;
    int n = 0;
    for (char *p = t; *p; p++)
        n += *p == '\n';
    nas_free(t);
    return n;
}

static void test_measure_runs_on_workers(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    /* evaluate leaves energy and latency to the loop's measure (every 5 evaluations) */
    int rc = run_mpi(3, dir, "evals=20 seed=8 measure=1");
    if (rc)
        show_out(dir);
    assert_int_equal(rc, 0);
    int m0 = count_lines(dir, "measure-0.log"), m1 = count_lines(dir, "measure-1.log"),
        m2 = count_lines(dir, "measure-2.log");
    assert_int_equal(m0, -1);   /* never on rank 0 */
    int measured = (m1 > 0 ? m1 : 0) + (m2 > 0 ? m2 : 0);
    assert_true(measured >= 3);
    assert_int_equal((long)done_value(dir, "measured"), measured);
    assert_int_equal((int)done_value(dir, "status"), 0);
    tu_rmtree(dir);
}

static void test_joule_budget_sums_every_rank(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    /* evaluations cost 1.0..2.5 J on the workers; rank 0 spends 4 W meanwhile */
    int rc = run_mpi(3, dir, "evals=1000 budget_j=30 first_j=3 own_watts=4 seed=5");
    if (rc)
        show_out(dir);
    assert_int_equal(rc, 0);
    logs *L = malloc(sizeof *L);
    read_logs(dir, L, 3);
    double root = done_value(dir, "root_joules"), charged = done_value(dir, "root_charged");
    double truth = L->worker_joules + root;   /* everything every rank spent */
    fprintf(stderr, "joules: workers %.2f + rank 0 %.2f = %.2f of 30 (budget's view %.2f, hi %.2f)\n",
            L->worker_joules, root, truth, done_value(dir, "budget_joules"), done_value(dir, "budget_joules_hi"));
    assert_int_equal((int)done_value(dir, "why"), SEARCH_STOP_JOULES);
    assert_true(truth <= 30.0);
    assert_true(truth >= 15.0);    /* and the budget was used, not abandoned early */
    assert_true(charged > 0);
    /* the loop's figure is the workers' plus rank 0's, as charged */
    assert_true(fabs(done_value(dir, "budget_joules") - (L->worker_joules + charged)) < 1e-3);
    assert_true(done_value(dir, "budget_joules_hi") <= 30.0);
    assert_int_equal((int)done_value(dir, "abandoned"), 0);
    free(L);
    tu_rmtree(dir);
}

static void test_killed_worker_then_resume_loses_nothing(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    /* rank 1 kills itself (SIGKILL) in the middle of its 3rd candidate; ~50 ms
     * per candidate, so mpirun aborts the job long before the budget is spent */
    int rc = run_mpi(3, dir, "evals=30 seed=9 kill_rank=1 kill_at=3 scale=5");
    assert_int_not_equal(rc, 0);   /* Open MPI 4.1 aborts the job */
    logs *L = malloc(sizeof *L), *M = malloc(sizeof *M);
    read_logs(dir, L, 3);
    int first_evals = 0;
    for (int id = 0; id < MAXID; id++)
        first_evals += L->eval_count[id];
    assert_true(first_evals >= 5);
    assert_true(first_evals < 30);
    /* keep what the first job finished; start the second job's logs afresh */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd '%s' && mkdir first && mv *.log done out.txt first/ 2>/dev/null; true", dir);
    assert_int_equal(system(cmd), 0);
    rc = run_mpi(3, dir, "resume=1 scale=5");
    if (rc)
        show_out(dir);
    assert_int_equal(rc, 0);
    read_logs(dir, M, 3);
    /* the resumed run: every candidate of the first run that finished is kept as it was */
    char *state_text = slurp(dir, "state.json");
    assert_non_null(state_text);
    json_error_t je;
    json_t *root = json_loads(state_text, 0, &je);
    assert_non_null(root);
    json_t *res = json_object_get(root, "results");
    int finished1 = 0;
    for (int id = 0; id < MAXID; id++) {
        if (!L->res_count[id])
            continue;
        finished1++;
        int found = 0;
        for (size_t i = 0; i < json_array_size(res); i++) {
            json_t *r = json_array_get(res, i);
            if (json_integer_value(json_object_get(r, "id")) != id)
                continue;
            found++;
            double acc = json_real_value(json_object_get(r, "acc"));
            double want;
            assert_int_equal(sscanf(L->res_line[id], "%*d %*s %lf", &want), 1);
            assert_true(fabs(acc - want) < 1e-8);
        }
        assert_int_equal(found, 1);
        /* and none of them was trained again */
        assert_int_equal(M->eval_count[id], 0);
    }
    /* the first job's logs (moved) were read via L before the move; the second
     * job completes the evaluation budget */
    json_t *b = json_object_get(root, "budget");
    assert_int_equal(json_integer_value(json_object_get(b, "evals")), 30);
    /* every evaluation of the second job was new and done once */
    for (int id = 0; id < MAXID; id++)
        assert_true(M->eval_count[id] <= 1 && M->assign_count[id] == M->eval_count[id]);
    fprintf(stderr, "kill/resume: %d results kept from the aborted job, %d evaluations after resume\n", finished1,
            M->n_assign);
    json_decref(root);
    nas_free(state_text);
    free(L);
    free(M);
    tu_rmtree(dir);
}

/* The ranks of the job in dir (pid-R files) that are still running, as
 * "rank R (pid P, state S, in W)" into desc; each is killed when kill_them. */
static int ranks_alive(const char *dir, int np, char *desc, size_t n, int kill_them)
{
    int alive = 0;
    size_t used = 0;
    desc[0] = '\0';
    for (int r = 0; r < np; r++) {
        char name[32];
        snprintf(name, sizeof name, "pid-%d", r);
        char *t = slurp(dir, name);
        long pid = t ? atol(t) : 0;
        nas_free(t);
        if (pid <= 0)
            continue;
        char path[64], pstat[512] = "", wchan[64] = "?";
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t k = fread(pstat, 1, sizeof pstat - 1, f);
        pstat[k] = '\0';
        fclose(f);
        char *paren = strrchr(pstat, ')');
        char st = paren && paren[1] ? paren[2] : '?';
        if (st == 'Z' || !strstr(pstat, "(test_mpi)"))
            continue;   /* gone (a zombie), or the pid now belongs to another program */
        snprintf(path, sizeof path, "/proc/%ld/wchan", pid);
        if ((f = fopen(path, "r"))) {
            k = fread(wchan, 1, sizeof wchan - 1, f);
            wchan[k] = '\0';
            fclose(f);
        }
        used += (size_t)snprintf(desc + used, used < n ? n - used : 0, "%srank %d (pid %ld, state %c, in %s)",
                                 alive ? ", " : "", r, pid, st, wchan[0] ? wchan : "?");
        alive++;
        if (kill_them)
            kill((pid_t)pid, SIGKILL);
    }
    return alive;
}

static void test_hung_worker_is_reported_and_job_stops(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    double t0 = nas_now();
    /* rank 2 hangs (an hour) on its 3rd candidate; the worker timeout is 0.5 s */
    int rc = run_mpi(3, dir, "evals=40 seed=4 hang_rank=2 hang_at=3 timeout=0.5");
    double wall = nas_now() - t0;
    assert_int_not_equal(rc, 0);
    /* The job ended by itself: coreutils' timeout did not have to kill mpirun
     * (exit 124, or 137 after -k). A wall-clock bound said the same but failed
     * under ASan on a loaded machine. If it did not, say which step failed:
     * did rank 0 see the hang, and which ranks were still running? */
    char alive[1024];
    if (rc == 124 || rc == 137) {
        int n = ranks_alive(dir, 3, alive, sizeof alive, 1);
        double hr = done_value(dir, "hung_rank");
        show_out(dir);
        fail_msg("mpirun had to be killed after %.0f s: %s; %s%s", wall,
                 isnan(hr) ? "rank 0 never reported the hang (it did not wait for a result past the timeout)"
                 : hr == 2 ? "rank 0 reported rank 2's hang and stopped the others"
                           : "rank 0 reported a hang of another rank",
                 n ? "still running when mpirun was killed: " : "every rank had ended (mpirun itself hung)", alive);
    }
    /* and no rank outlived mpirun (the hung one least of all) */
    if (ranks_alive(dir, 3, alive, sizeof alive, 1))
        fail_msg("mpirun returned %d but left ranks running: %s", rc, alive);
    char *out = slurp(dir, "out.txt");
    assert_non_null(out);
    long hung_id = (long)done_value(dir, "hung_id");
    assert_int_equal((int)done_value(dir, "hung_rank"), 2);
    char want[128];
    snprintf(want, sizeof want, "worker rank 2 (host ");
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want, "has run candidate %ld (genome ", hung_id);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "worker timeout of 0.5 s"));
    /* results before the hang are kept: all logged ones are in the saved state */
    logs *L = malloc(sizeof *L);
    read_logs(dir, L, 3);
    assert_true(L->n_res >= 2);
    assert_int_equal(L->res_count[hung_id], 0);
    char *st = slurp(dir, "state.json");
    json_t *root = json_loads(st, 0, NULL);
    assert_non_null(root);
    assert_int_equal((int)json_array_size(json_object_get(root, "results")), L->n_res);
    json_decref(root);
    nas_free(st);
    nas_free(out);
    free(L);
    tu_rmtree(dir);
}

/* SIGTERM to rank 0 (what Slurm sends) while both workers run long
 * candidates: rank 0 tells every worker to stop, each cuts its candidate
 * short and reports what it spent, rank 0 hands those to on_abandoned (cli/
 * records them in the store), every rank finalises, and the job ends 143. */
static void test_sigterm_to_rank0_stops_the_workers(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    int rc = run_mpi(3, dir, "evals=20 seed=3 stop_at=6 long_from=5");
    char *out = slurp(dir, "out.txt");
    assert_non_null(out);
    if (rc == 124 || rc == 137) {
        show_out(dir);
        fail_msg("mpirun had to be killed: the SIGTERM to rank 0 did not stop the job");
    }
    if (rc != 143)
        show_out(dir);
    assert_int_equal(rc, 143);
    assert_non_null(strstr(out, "nas test_mpi: SIGTERM: stopping the scenario"));
    assert_null(strstr(out, "MPI_ABORT"));
    assert_int_equal((int)done_value(dir, "status"), NAS_EINTR);
    logs *L = malloc(sizeof *L);
    read_logs(dir, L, 3);
    /* every candidate sent out either has its result or was abandoned with
     * its joules so far; the two the workers were running were cut short */
    int abandoned[MAXID] = {0}, n_ab = 0;
    char *t = slurp(dir, "abandoned.log");
    assert_non_null(t);
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        long id;
        double j;
        assert_int_equal(sscanf(line, "%ld %lf", &id, &j), 2);
        assert_true(id >= 5 && id < MAXID);
        assert_true(j == 0.5);
        abandoned[id]++;
        n_ab++;
    }
    nas_free(t);
    assert_int_equal(n_ab, 2);
    assert_int_equal((int)done_value(dir, "abandoned"), 2);
    for (int id = 0; id < MAXID; id++) {
        if (!L->assign_count[id])
            continue;
        assert_int_equal(L->res_count[id] + abandoned[id], 1);
        assert_int_equal(L->res_count[id], id < 5);
    }
    nas_free(out);
    free(L);
    tu_rmtree(dir);
}

static void test_worker_error_stops_cleanly(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    int rc = run_mpi(3, dir, "evals=40 seed=2 fail_rank=1 fail_at=4 payload=1");   /* payloads: rank 2's abandoned one is freed */
    assert_int_equal(rc, 1);   /* every rank finalised; rank 0 exited 1 */
    char *out = slurp(dir, "out.txt");
    assert_non_null(out);
    assert_non_null(strstr(out, "rank 0: rank 1 (host "));
    assert_non_null(strstr(out, "disk full while training candidate"));
    assert_null(strstr(out, "MPI_ABORT"));
    assert_int_equal((int)done_value(dir, "status"), NAS_EIO);
    nas_free(out);
    tu_rmtree(dir);
}

/* Every evaluated candidate's payload reached put_payload on rank 0 once,
 * intact (put_payload checks the bytes) and made for that genome; none for
 * the ids that attach nothing. */
static void check_payloads(const char *dir, int np, int evals)
{
    logs *L = malloc(sizeof *L);
    read_logs(dir, L, np);
    static int count[MAXID];
    static char genome[MAXID][200];
    memset(count, 0, sizeof count);
    char *t = slurp(dir, "payload.log");
    assert_non_null(t);
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        long id;
        size_t len;
        char g[200];
        assert_int_equal(sscanf(line, "%ld %zu %199s", &id, &len, g), 3);
        assert_true(id >= 0 && id < MAXID);
        count[id]++;
        snprintf(genome[id], sizeof genome[id], "%s", g);
    }
    nas_free(t);
    int evaluated = 0;
    for (int id = 0; id < MAXID; id++) {
        int flags = -1;   /* screened, cached: "00" for an evaluation */
        if (L->res_count[id])
            assert_int_equal(sscanf(L->res_line[id], "%*d %*s %*f %*f %*f %d", &flags), 1);
        int done = np > 1 ? L->eval_count[id] : flags == 0;
        assert_int_equal(count[id], done && id % 4 != 3 ? 1 : 0);
        if (count[id]) {
            char want[200];
            if (np > 1)
                snprintf(want, sizeof want, "%s", L->assign_g[id]);
            else
                assert_int_equal(sscanf(L->res_line[id], "%*d %199s", want), 1);
            assert_string_equal(genome[id], want);
        }
        evaluated += done;
    }
    assert_int_equal(evaluated, evals);
    free(L);
}

static void test_payload_reaches_rank0_intact(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    int rc = run_mpi(3, dir, "evals=16 seed=4 payload=1");
    if (rc)
        show_out(dir);
    assert_int_equal(rc, 0);
    check_payloads(dir, 3, 16);
    tu_rmtree(dir);
    /* one process, the plain loop and the sync reference: the same hand-over */
    char *args[] = {"evals=12", "seed=4", "payload=1", "sync=1", "slots=2"};
    for (int n = 3; n <= 5; n += 2) {
        assert_non_null(tu_tmpdir(dir, sizeof dir));
        scen s;
        assert_int_equal(scen_parse(n, args, &s), 0);
        s.dir = dir;
        search_dist *d;
        nas_err err;
        assert_int_equal(search_dist_init(NULL, NULL, &d, &err), NAS_OK);
        assert_int_equal(scen_run(d, &s), 0);
        search_dist_finish(d);
        check_payloads(dir, 1, 12);
        tu_rmtree(dir);
    }
}

/* A real `nas search` over 3 ranks with a store: the workers' trained weights
 * reach the store with their results, so the chosen model is exported at the
 * end and `nas export RUN` works afterwards, as in a single process. */
static void test_search_exports_under_mpirun(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], cmd[4096];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd,
             "%s -x ASAN_OPTIONS '%s' search "
             "--data mnist --budget-evals 3 --subset 300 --epochs 1 --threads 1 --stages 1 --max-width 0.25 --final-top 0 "
             "--val-count 100 --test-limit 100 --bench-seconds 0.02 --db %s/m.db --name m --export-dir %s/exp "
             ">'%s/out.txt' 2>&1",
             tu_mpirun(600, 3), tu_nas_bin(), dir, dir, dir);
    if (system(cmd) != 0) {
        show_out(dir);
        fail_msg("nas search under mpirun failed");
    }
    char *out = slurp(dir, "out.txt");
    assert_non_null(out);
    if (!strstr(out, "exported the chosen model to"))
        show_out(dir);
    assert_non_null(strstr(out, "exported the chosen model to"));
    assert_null(strstr(out, "not exported"));
    nas_free(out);
    /* every finished candidate has its weights in the store */
    char path[256];
    snprintf(path, sizeof path, "%s/m.db", dir);
    runs_db *db = NULL;
    nas_err err = {0};
    assert_int_equal(runs_open(path, RUNS_OPEN_READONLY, &db, &err), NAS_OK);
    int64_t run;
    assert_int_equal(runs_run_find(db, "m", &run, &err), NAS_OK);
    runs_cand *c = NULL;
    int n = 0, done = 0;
    assert_int_equal(runs_cand_list(db, run, ~0u, &c, &n, &err), NAS_OK);
    for (int i = 0; i < n; i++) {
        void *blob = NULL;
        size_t len = 0;
        int found = 0;
        assert_int_equal(runs_weights_get(db, c[i].id, &blob, &len, &found, &err), NAS_OK);
        assert_int_equal(found, c[i].status == RUNS_DONE);
        assert_true(!found || len > 1000);
        done += c[i].status == RUNS_DONE;
        nas_free(blob);
    }
    runs_cands_free(c, n);
    runs_close(db);
    assert_int_equal(n, 3);
    assert_true(done >= 1);
    snprintf(cmd, sizeof cmd, "test -s \"$(ls %s/exp/*.onnx | head -1)\"", dir);
    assert_int_equal(system(cmd), 0);
    /* and from the store afterwards, in a plain process */
    snprintf(cmd, sizeof cmd, "'%s' export m --db %s/m.db --top 1 --out %s/top >'%s/out.txt' 2>&1 && "
             "test -s \"$(ls %s/top/m-c*.onnx | head -1)\"", tu_nas_bin(), dir, dir, dir, dir);
    if (system(cmd) != 0) {
        show_out(dir);
        fail_msg("nas export of the MPI run failed");
    }
    tu_rmtree(dir);
}

/* Multi-fidelity (ASHA) under mpirun: a promotion is sent to whichever worker
 * is free with its rung and its parent's weights from rank 0's store (a
 * worker that got no weights, or weights that do not fit, fails the search);
 * every promoted row trains on from a finished row of the rung below. */
static void test_rungs_under_mpirun(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], cmd[4096];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd,
             "%s -x ASAN_OPTIONS -x NAS_CACHE_DIR '%s' search "
             "--data mnist --budget-evals 10 --subset 200 --epochs 1 --threads 1 --stages 1 --max-width 0.25 "
             "--final-top 0 --val-count 100 --test-limit 100 --bench-seconds 0.02 --rungs 3 --eta 2 --seed 5 "
             "--no-export --db %s/m.db --name m >'%s/out.txt' 2>&1",
             tu_mpirun(600, 3), tu_nas_bin(), dir, dir);
    if (system(cmd) != 0) {
        show_out(dir);
        fail_msg("nas search --rungs under mpirun failed");
    }
    char path[256];
    snprintf(path, sizeof path, "%s/m.db", dir);
    runs_db *db = NULL;
    nas_err err = {0};
    assert_int_equal(runs_open(path, RUNS_OPEN_READONLY, &db, &err), NAS_OK);
    int64_t run;
    assert_int_equal(runs_run_find(db, "m", &run, &err), NAS_OK);
    runs_cand *c = NULL;
    int n = 0, promoted = 0;
    assert_int_equal(runs_cand_list(db, run, ~0u, &c, &n, &err), NAS_OK);
    assert_int_equal(n, 10);
    for (int i = 0; i < n; i++) {
        if (c[i].rung == 0)
            continue;
        promoted++;
        const runs_cand *p = NULL;
        for (int j = 0; j < n; j++)
            if (c[j].seq == c[i].parent)
                p = &c[j];
        assert_non_null(p);
        assert_int_equal(p->rung, c[i].rung - 1);
        assert_int_equal(p->status, RUNS_DONE);
        assert_string_equal(p->genome, c[i].genome);
        assert_int_equal(c[i].status, RUNS_DONE);
        /* the same network: not benchmarked again, its parent's figures (measured, not predicted) */
        assert_true(p->latency_ms.value > 0 && c[i].latency_ms.value == p->latency_ms.value);
        assert_true(p->energy_mj.value > 0 && c[i].energy_mj.value == p->energy_mj.value);
        assert_string_equal(c[i].energy_mj.quality, p->energy_mj.quality);
    }
    assert_true(promoted >= 2);
    runs_cands_free(c, n);
    runs_close(db);
    tu_rmtree(dir);
}

static void test_settings_reach_every_rank(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    int rc = run_mpi(3, dir, "bcast=1 seed=3");
    if (rc)
        show_out(dir);
    assert_int_equal(rc, 0);
    char *t0 = slurp(dir, "bcast-0.txt"), *t1 = slurp(dir, "bcast-1.txt"), *t2 = slurp(dir, "bcast-2.txt");
    assert_non_null(t0);
    assert_non_null(t1);
    assert_non_null(t2);
    assert_int_equal(strlen(t0), 200000);
    assert_string_equal(t0, t1);
    assert_string_equal(t0, t2);
    nas_free(t0);
    nas_free(t1);
    nas_free(t2);
    /* rank 0 fails before sending: the workers are told, and every rank ends */
    tu_rmtree(dir);
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    rc = run_mpi(3, dir, "bcast=2");
    assert_int_equal(rc, 1);
    char *out = slurp(dir, "out.txt");
    assert_non_null(out);
    assert_non_null(strstr(out, "rank 1: rank 1: rank 0 stopped the job before sending the settings"));
    assert_non_null(strstr(out, "rank 2: rank 2: rank 0 stopped the job before sending the settings"));
    nas_free(out);
    tu_rmtree(dir);
}

static void test_different_builds_refused(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    setenv("NAS_TEST_DIST_SKEW", "2", 1);   /* rank 2 claims another build */
    int rc = run_mpi(3, dir, "evals=5");
    unsetenv("NAS_TEST_DIST_SKEW");
    assert_int_not_equal(rc, 0);
    char *out = slurp(dir, "out.txt");
    assert_non_null(out);
    assert_non_null(strstr(out, "rank 2 (host "));
    assert_non_null(strstr(out, "runs a different nas build than rank 0"));
    assert_int_equal(count_lines(dir, "assign.log"), -1);   /* nothing was sent out */
    nas_free(out);
    tu_rmtree(dir);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--mpi")) {
        /* one rank of a scenario */
        scen s;
        if (scen_parse(argc - 3, argv + 3, &s)) {
            fprintf(stderr, "test_mpi: bad scenario arguments\n");
            return 2;
        }
        s.dir = argv[2];
        search_dist *d;
        nas_err err;
        if (search_dist_init(&argc, &argv, &d, &err)) {
            fprintf(stderr, "test_mpi: %s\n", err.msg);
            return 1;
        }
        int rc = scen_run(d, &s);
        search_dist_finish(d);
        /* LeakSanitizer is off in ranks (Open MPI's leaks), so count ours:
         * every nas_malloc of the rank freed */
        if (nas_alloc_live() != 0) {
            fprintf(stderr, "test_mpi: %zu blocks still allocated at exit\n", nas_alloc_live());
            return 3;
        }
        return rc;
    }
    ssize_t n = readlink("/proc/self/exe", g_exe, sizeof g_exe - 1);
    if (n <= 0)
        return 1;
    g_exe[n] = '\0';
    /* Open MPI's own allocations outlive MPI_Finalize: LeakSanitizer would fail
     * the ranks of an ASan build for leaks that are not ours. */
    /* Without ssh on PATH, Open MPI 4.1's mpirun refuses even a one-host job
     * ("plm_rsh_agent ... could not be found"); an empty agent lets it run. */
    setenv("OMPI_MCA_plm_rsh_agent", "", 0);
    const char *ao = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", ao ? ao : "", ao && *ao ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_never_starts_mpi),
        cmocka_unit_test(test_thread_plan),
        cmocka_unit_test(test_async_every_candidate_once),
        cmocka_unit_test(test_sync_equals_single_process),
        cmocka_unit_test(test_joule_budget_sums_every_rank),
        cmocka_unit_test(test_measure_runs_on_workers),
        cmocka_unit_test(test_killed_worker_then_resume_loses_nothing),
        cmocka_unit_test(test_hung_worker_is_reported_and_job_stops),
        cmocka_unit_test(test_worker_error_stops_cleanly),
        cmocka_unit_test(test_sigterm_to_rank0_stops_the_workers),
        cmocka_unit_test(test_payload_reaches_rank0_intact),
        cmocka_unit_test(test_search_exports_under_mpirun),
        cmocka_unit_test(test_rungs_under_mpirun),
        cmocka_unit_test(test_settings_reach_every_rank),
        cmocka_unit_test(test_different_builds_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
