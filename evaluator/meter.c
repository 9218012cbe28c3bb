/* meter.c — the energy meters behind one interface (ev.h): choosing a backend
 * (auto: perf, then rapl, then the model), the lock and the sampling thread
 * that keep a wrapping counter read often enough, and the CPU-time model.
 *
 * Every figure leaves with its source ("rapl:package-0", "model:cpu-time") and
 * its quality (measured, sampled, estimated), so an estimate is never shown
 * as a measurement. Backends live in meter_rapl.c, meter_perf.c, meter_nvml.c.
 */
#include "evaluator/meter_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *ev_quality_name(ev_quality q)
{
    switch (q) {
    case EV_MEASURED:  return "measured";
    case EV_SAMPLED:   return "sampled";
    case EV_ESTIMATED: return "estimated";
    }
    return "unknown";
}

void ev_meter_opts_default(ev_meter_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = "auto";
    o->sysfs_root = "/sys/class/powercap";
    o->nvml_lib = "libnvidia-ml.so.1";
    o->watts_per_core = EV_DEFAULT_WATTS_PER_CORE;
    o->perf_root = "/sys/bus/event_source/devices/power";
}

void meter_note(ev_meter *m, const char *fmt, ...)
{
    size_t len = strlen(m->note);
    if (len + 3 >= sizeof m->note)
        return;
    if (len > 0) {
        memcpy(m->note + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->note + len, sizeof m->note - len, fmt, ap);
    va_end(ap);
}

int meter_read_text(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t r;
    do
        r = read(fd, buf, n - 1);
    while (r < 0 && errno == EINTR);
    int e = r < 0 ? errno : 0;
    close(fd);
    if (e)
        return e;
    buf[r] = '\0';
    while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == ' ' || buf[r - 1] == '\t'))
        buf[--r] = '\0';
    return 0;
}

int meter_read_u64(const char *path, uint64_t *v)
{
    char buf[64];
    int e = meter_read_text(path, buf, sizeof buf);
    if (e)
        return e;
    if (buf[0] < '0' || buf[0] > '9')
        return EINVAL;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(buf, &end, 10);
    if (errno || *end)
        return EINVAL;
    *v = x;
    return 0;
}

/* ---- the model: busy CPU time x a stated power per core ----------------- */

static nas_status model_open(ev_meter *m, const ev_meter_opts *o, nas_err *err)
{
    double w = o->watts_per_core;
    if (!(w > 0 && w < 1000))
        return nas_errf(err, NAS_EINVAL, "model meter: watts_per_core %g is not in (0, 1000)", w);
    m->u.model.watts_per_core = w;
    m->u.model.cpu0 = nas_cpu_seconds();
    snprintf(m->source, sizeof m->source, "model:cpu-time");
    m->quality = EV_ESTIMATED;
    /* Real busy power per core varies about 2x with frequency, vector width
     * and memory traffic; idle and uncore power are not counted at all. */
    m->uncertainty = 0.5;
    return NAS_OK;
}

static nas_status model_sample(ev_meter *m, nas_err *err)
{
    m->joules = (nas_cpu_seconds() - m->u.model.cpu0) * m->u.model.watts_per_core;
    return NAS_OK;
}

static void model_close(ev_meter *m) { (void)m; }

const meter_backend meter_model = {"model", model_open, model_sample, model_close, 0.0};

/* ---- choosing, the thread, reading --------------------------------------- */

static void *sampler(void *arg)
{
    ev_meter *m = arg;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double next = ts.tv_sec + ts.tv_nsec * 1e-9 + m->poll_s;
        ts.tv_sec = (time_t)next;
        ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
        while (!m->stop) {
            int rc = pthread_cond_timedwait(&m->cv, &m->mu, &ts);
            if (rc == ETIMEDOUT)
                break;
        }
        if (m->stop)
            break;
        nas_err e = {0};
        if (m->be->sample(m, &e) != NAS_OK && m->thread_err.code == NAS_OK)
            m->thread_err = e;
        m->samples++;
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static const meter_backend *backend_named(const char *kind)
{
    static const meter_backend *const all[] = {&meter_rapl, &meter_perf, &meter_nvml, &meter_model};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->kind, kind) == 0)
            return all[i];
    return NULL;
}

/* Samples a hardware counter until it moves, for up to `limit` seconds. */
static nas_status check_live(ev_meter *m, const meter_backend *be, double limit, nas_err *err)
{
    double t0 = nas_now();
    m->joules = 0;
    for (;;) {
        nas_status st = be->sample(m, err);
        if (st != NAS_OK)
            return st;
        if (m->joules > 0)
            break;
        if (nas_now() - t0 >= limit)
            return nas_errf(err, NAS_EUNSUPP, "%s: %s did not move in %.2f s (a virtual PMU that counts "
                            "nothing?): not used", be->kind, m->source, limit);
        struct timespec nap = {0, 5 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    m->joules = 0;
    m->wraps = m->dropped = 0;
    return NAS_OK;
}

static nas_status try_open(ev_meter *m, const meter_backend *be, const ev_meter_opts *o, nas_err *err)
{
    memset(&m->u, 0, sizeof m->u);
    size_t note_len = strlen(m->note);
    nas_status st = be->open(m, o, err);
    if (st == NAS_OK && (be == &meter_perf || be == &meter_rapl) && o->live_seconds >= 0) {
        st = check_live(m, be, o->live_seconds > 0 ? o->live_seconds : 0.2, err);
        if (st != NAS_OK)
            be->close(m);
    }
    if (st == NAS_OK)
        m->be = be;
    else
        m->note[note_len] = '\0';   /* a backend that failed leaves only the reason, added by the caller */
    return st;
}

/* ---- a test facility: a meter whose reads start failing ------------------
 * NAS_FAULT_METER_READ=n makes the n-th read of every meter the process opens
 * (and each read after it) fail, as a counter that becomes unreadable
 * mid-search would; a CLI test shows the search then stops with that error
 * instead of counting 0 J. ev_meter_fault_set does the same for one meter. */
#define FAULT_ENV "NAS_FAULT_METER_READ"

static nas_status fault_from_env(ev_meter *m, nas_err *err)
{
    const char *e = getenv(FAULT_ENV);
    if (!e || !*e)
        return NAS_OK;
    char *end;
    long n = strtol(e, &end, 10);
    if (*end || n < 0)
        return nas_errf(err, NAS_EINVAL, FAULT_ENV "='%s': not a read number (>= 1, or 0 for off)", e);
    m->fail_at = n;
    return NAS_OK;
}

nas_status ev_meter_open(const ev_meter_opts *opts, ev_meter **out, nas_err *err)
{
    ev_meter_opts o;
    ev_meter_opts_default(&o);
    if (opts) {
        o = *opts;
        ev_meter_opts d;
        ev_meter_opts_default(&d);
        /* NULL strings mean the defaults, so callers may fill only what they change. */
        if (!o.kind)
            o.kind = d.kind;
        if (!o.sysfs_root)
            o.sysfs_root = d.sysfs_root;
        if (!o.nvml_lib)
            o.nvml_lib = d.nvml_lib;
        if (!o.perf_root)
            o.perf_root = d.perf_root;
        if (o.watts_per_core == 0)
            o.watts_per_core = d.watts_per_core;
    }
    *out = NULL;
    const int is_auto = strcmp(o.kind, "auto") == 0;
    const meter_backend *be = is_auto ? NULL : backend_named(o.kind);
    if (!is_auto && !be)
        return nas_errf(err, NAS_EINVAL, "meter '%s': unknown (auto, perf, rapl, nvml or model)", o.kind);
    if (o.poll_seconds > 3600)
        return nas_errf(err, NAS_EINVAL, "meter: poll_seconds %g is over an hour", o.poll_seconds);

    ev_meter *m = nas_calloc(1, sizeof *m);
    if (!m)
        return nas_errf(err, NAS_ENOMEM, "meter: out of memory");
    nas_status st;
    if (is_auto) {
        static const meter_backend *const order[] = {&meter_perf, &meter_rapl, &meter_model};
        st = NAS_EUNSUPP;
        for (size_t i = 0; i < sizeof order / sizeof order[0] && st != NAS_OK; i++) {
            nas_err e = {0};
            st = try_open(m, order[i], &o, &e);
            if (st == NAS_ENOMEM || (st != NAS_OK && order[i] == &meter_model)) {
                nas_errf(err, st, "%s", e.msg);
                break;
            }
            if (st != NAS_OK)
                meter_note(m, "%s skipped: %s", order[i]->kind, e.msg);
        }
    } else {
        st = try_open(m, be, &o, err);
    }
    if (st != NAS_OK) {
        nas_free(m);
        return st;
    }
    m->joules = 0;
    if ((st = fault_from_env(m, err)) != NAS_OK) {
        m->be->close(m);
        nas_free(m);
        return st;
    }

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&m->mu, NULL);
    m->poll_s = o.poll_seconds < 0 ? 0 : o.poll_seconds > 0 ? o.poll_seconds : m->be->default_poll_s;
    /* Nothing to wrap or integrate: a thread would only cost. */
    if (m->be == &meter_model || m->be == &meter_perf ||
        (m->be == &meter_nvml && m->quality == EV_MEASURED && o.poll_seconds <= 0))
        m->poll_s = 0;
    if (m->poll_s > 0) {
        if (pthread_create(&m->thread, NULL, sampler, m) != 0) {
            st = nas_errf(err, NAS_EINTERNAL, "meter %s: cannot start the sampling thread", m->be->kind);
            ev_meter_close(m);
            return st;
        }
        m->has_thread = 1;
    }
    *out = m;
    return NAS_OK;
}

void ev_meter_close(ev_meter *m)
{
    if (!m)
        return;
    if (m->has_thread) {
        pthread_mutex_lock(&m->mu);
        m->stop = 1;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
    }
    m->be->close(m);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    nas_free(m);
}

nas_status ev_meter_read(ev_meter *m, double *joules, nas_err *err)
{
    pthread_mutex_lock(&m->mu);
    nas_status st;
    m->reads++;
    if (m->fail_at > 0 && m->reads >= m->fail_at) {
        st = nas_errf(err, NAS_EIO, "meter %s: read %ld failed (injected by " FAULT_ENV ")", m->source, m->reads);
    } else if (m->thread_err.code != NAS_OK) {
        st = nas_errf(err, m->thread_err.code, "%s", m->thread_err.msg);
    } else {
        st = m->be->sample(m, err);
        m->samples++;
    }
    *joules = m->joules;
    pthread_mutex_unlock(&m->mu);
    return st;
}

void ev_meter_fault_set(ev_meter *m, long nth_read)
{
    pthread_mutex_lock(&m->mu);
    m->fail_at = nth_read > 0 ? m->reads + nth_read : 0;
    pthread_mutex_unlock(&m->mu);
}

nas_status ev_meter_spent(ev_meter *m, double j0, double *joules, nas_err *err)
{
    double j1;
    nas_status st = ev_meter_read(m, &j1, err);
    *joules = st ? NAN : j1 - j0;
    return st ? nas_errctx(err, "the energy spent is unknown (%s)", m->source) : NAS_OK;
}

const char *ev_meter_source(const ev_meter *m) { return m->source; }
ev_quality ev_meter_quality(const ev_meter *m) { return m->quality; }
double ev_meter_uncertainty(const ev_meter *m) { return m->uncertainty; }

void ev_meter_get_info(ev_meter *m, ev_meter_info *info)
{
    pthread_mutex_lock(&m->mu);
    info->kind = m->be->kind;
    info->samples = m->samples;
    info->wraps = m->wraps;
    info->dropped = m->dropped;
    info->poll_seconds = m->poll_s;
    memcpy(info->note, m->note, sizeof info->note);
    pthread_mutex_unlock(&m->mu);
}
