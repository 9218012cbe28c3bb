/* bench.c — the benchmark harness: warm-up, timed repeats of at least
 * min_seconds each, latency percentiles over single calls, energy per call
 * from meter differences over each repeat, and the thread count and CPU
 * pinning the figures were taken with.
 *
 * The harness times any callable (ev_bench_run); ev_bench_infer (bench_net.c)
 * hands it a network. Keeping the two apart lets the statistics and the
 * harness be tested without a network, and keeps this file free of the engine.
 */
#define _GNU_SOURCE
#include "evaluator/ev.h"

#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LAT_CAP (1 << 20)   /* single-call times kept; calls beyond are timed in the repeat mean only */
#define MAX_REPEATS 10000

void ev_bench_opts_default(ev_bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch = 1;
    o->warmup = 5;
    o->repeats = 5;
    o->min_seconds = 1.0;
    o->threads = 0;
    o->pin_cpu = -1;
}

/* ---- statistics --------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ev_quantile_sorted(const double *sorted, int n, double q)
{
    if (n <= 0)
        return NAN;
    if (q <= 0)
        return sorted[0];
    if (q >= 1)
        return sorted[n - 1];
    double h = (n - 1) * q;
    int lo = (int)floor(h);
    if (lo >= n - 1)
        return sorted[n - 1];
    return sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo]);
}

nas_status ev_stats_of(double *x, int n, ev_stats *s, nas_err *err)
{
    memset(s, 0, sizeof *s);
    if (n < 1)
        return nas_errf(err, NAS_EINVAL, "statistics of %d values", n);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]))
            return nas_errf(err, NAS_EINVAL, "statistics: value %d is NaN", i);
        sum += x[i];
    }
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    s->n = n;
    s->min = x[0];
    s->max = x[n - 1];
    s->mean = sum / n;
    s->median = ev_quantile_sorted(x, n, 0.5);
    s->p10 = ev_quantile_sorted(x, n, 0.1);
    s->p90 = ev_quantile_sorted(x, n, 0.9);
    return NAS_OK;
}

/* ---- threads and pinning ------------------------------------------------ */

/* "0-3,6" from a mask. */
static void mask_string(const cpu_set_t *set, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE && len + 1 < n; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        int e = c;
        while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
            e++;
        int w = e > c ? snprintf(out + len, n - len, "%s%d-%d", len ? "," : "", c, e)
                      : snprintf(out + len, n - len, "%s%d", len ? "," : "", c);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
        c = e;
    }
}

/* Every thread of this process (OpenMP and OpenBLAS pools included) onto set. */
static int set_all_threads(const cpu_set_t *set)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return sched_setaffinity(0, sizeof *set, set);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        if (sched_setaffinity(tid, sizeof *set, set) != 0 && tid == gettid())
            rc = -1;   /* a thread that ended meanwhile is no failure; the caller is */
    }
    closedir(d);
    return rc;
}

typedef struct {
    int omp_threads, blas_threads;
    int pinned;
    cpu_set_t old_mask;
} run_env;

static nas_status env_enter(const ev_bench_opts *o, run_env *env, ev_bench_result *res, nas_err *err)
{
    memset(env, 0, sizeof *env);
    env->omp_threads = omp_get_max_threads();
    env->blas_threads = openblas_get_num_threads();
    if (o->threads > 0) {
        omp_set_num_threads(o->threads);
        openblas_set_num_threads(o->threads);
    }
    res->threads = o->threads > 0 ? o->threads : env->omp_threads;
    if (sched_getaffinity(0, sizeof env->old_mask, &env->old_mask) != 0)
        CPU_ZERO(&env->old_mask);
    if (o->pin_cpu >= 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_CONF);
        if (ncpu < 1 || ncpu > CPU_SETSIZE)
            ncpu = CPU_SETSIZE;
        if (o->pin_cpu >= ncpu) {
            omp_set_num_threads(env->omp_threads);
            openblas_set_num_threads(env->blas_threads);
            return nas_errf(err, NAS_EINVAL, "benchmark: pin_cpu %d: this machine has %ld CPUs (0..%ld)",
                            o->pin_cpu, ncpu, ncpu - 1);
        }
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int i = 0; i < res->threads; i++)
            CPU_SET((o->pin_cpu + i) % ncpu, &set);
        if (set_all_threads(&set) != 0) {
            char avail[64];
            mask_string(&env->old_mask, avail, sizeof avail);
            omp_set_num_threads(env->omp_threads);
            openblas_set_num_threads(env->blas_threads);
            return nas_errf(err, NAS_EINVAL, "benchmark: pin_cpu %d: cannot pin %d thread(s) there (this "
                            "process may run on CPUs %s)", o->pin_cpu, res->threads, avail);
        }
        env->pinned = 1;
    }
    cpu_set_t now;
    if (sched_getaffinity(0, sizeof now, &now) == 0)
        mask_string(&now, res->affinity, sizeof res->affinity);
    res->pinned = env->pinned;
    return NAS_OK;
}

static void env_leave(run_env *env)
{
    if (env->pinned && CPU_COUNT(&env->old_mask) > 0)
        set_all_threads(&env->old_mask);
    omp_set_num_threads(env->omp_threads);
    openblas_set_num_threads(env->blas_threads);
}

/* ---- the harness ---------------------------------------------------------- */

static nas_status check_opts(const ev_bench_opts *o, nas_err *err)
{
    if (o->batch < 1)
        return nas_errf(err, NAS_EINVAL, "benchmark: batch %d (must be at least 1)", o->batch);
    if (o->warmup < 0)
        return nas_errf(err, NAS_EINVAL, "benchmark: warmup %d (must not be negative)", o->warmup);
    if (o->repeats < 1 || o->repeats > MAX_REPEATS)
        return nas_errf(err, NAS_EINVAL, "benchmark: repeats %d (must be 1..%d)", o->repeats, MAX_REPEATS);
    if (!(o->min_seconds >= 0 && o->min_seconds <= 3600))
        return nas_errf(err, NAS_EINVAL, "benchmark: min_seconds %g (must be 0..3600)", o->min_seconds);
    if (o->threads < 0 || o->threads > 4096)
        return nas_errf(err, NAS_EINVAL, "benchmark: threads %d (0: as is, else 1..4096)", o->threads);
    if (o->pin_cpu < -1 || o->pin_cpu >= CPU_SETSIZE)
        return nas_errf(err, NAS_EINVAL, "benchmark: pin_cpu %d (-1: none, else a CPU number)", o->pin_cpu);
    return NAS_OK;
}

nas_status ev_bench_run(ev_bench_fn fn, void *ctx, ev_meter *meter, const ev_bench_opts *opts,
                        ev_bench_result *res, nas_err *err)
{
    ev_bench_opts defaults;
    if (!opts) {
        ev_bench_opts_default(&defaults);
        opts = &defaults;
    }
    memset(res, 0, sizeof *res);
    nas_status st = check_opts(opts, err);
    if (st != NAS_OK)
        return st;
    const int R = opts->repeats;
    double *lat = nas_malloc(LAT_CAP * sizeof *lat);
    double *rep_lat = nas_malloc((size_t)R * sizeof *rep_lat);
    double *rep_mj = nas_malloc((size_t)R * sizeof *rep_mj);
    if (!lat || !rep_lat || !rep_mj) {
        st = nas_errf(err, NAS_ENOMEM, "benchmark: out of memory");
        goto cleanup;
    }
    run_env env;
    if ((st = env_enter(opts, &env, res, err)) != NAS_OK)
        goto cleanup;

    for (int i = 0; i < opts->warmup && st == NAS_OK; i++)
        st = fn(ctx, err);
    long nlat = 0, runs = 0;
    double t_all = 0;
    for (int r = 0; r < R && st == NAS_OK; r++) {
        double j0 = 0, j1 = 0;
        if (meter && (st = ev_meter_read(meter, &j0, err)) != NAS_OK)
            break;
        long calls = 0;
        double t0 = nas_now(), t = t0;
        do {
            double a = nas_now();
            if ((st = fn(ctx, err)) != NAS_OK)
                break;
            t = nas_now();
            if (nlat < LAT_CAP)
                lat[nlat++] = t - a;
            calls++;
        } while (t - t0 < opts->min_seconds);
        if (st != NAS_OK)
            break;
        if (meter && (st = ev_meter_read(meter, &j1, err)) != NAS_OK)
            break;
        rep_lat[r] = (t - t0) / (double)calls;
        rep_mj[r] = (j1 - j0) * 1e3 / (double)calls;
        runs += calls;
        t_all += t - t0;
    }
    env_leave(&env);
    if (st != NAS_OK) {
        nas_errctx(err, "benchmark");
        goto cleanup;
    }

    ev_stats s;
    if ((st = ev_stats_of(lat, (int)nlat, &s, err)))
        goto cleanup;
    res->latency_ms_median = s.median * 1e3;
    res->latency_ms_p10 = s.p10 * 1e3;
    res->latency_ms_p90 = s.p90 * 1e3;
    if ((st = ev_stats_of(rep_lat, R, &s, err)))
        goto cleanup;
    res->latency_ms_repeat_median = s.median * 1e3;
    res->latency_repeat_spread = s.median > 0 ? (s.p90 - s.p10) / s.median : 0;
    if (meter) {
        if ((st = ev_stats_of(rep_mj, R, &s, err)))
            goto cleanup;
        res->energy_mj_median = s.median;
        res->energy_mj_p10 = s.p10;
        res->energy_mj_p90 = s.p90;
        res->energy_mj_spread = s.median > 0 ? (s.p90 - s.p10) / s.median : 0;
        snprintf(res->energy_source, sizeof res->energy_source, "%s", ev_meter_source(meter));
        res->energy_quality = ev_meter_quality(meter);
        res->energy_uncertainty = ev_meter_uncertainty(meter);
    }
    res->batch = opts->batch;
    res->repeats = R;
    res->runs = runs;
    res->seconds = t_all;
    res->images_per_s = res->latency_ms_median > 0 ? opts->batch * 1e3 / res->latency_ms_median : 0;
cleanup:
    nas_free(lat);
    nas_free(rep_lat);
    nas_free(rep_mj);
    return st;
}
