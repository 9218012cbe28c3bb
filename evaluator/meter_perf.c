/* meter_perf.c — the package energy counter through Linux perf events: the
 * `power` PMU's energy-pkg event (the RAPL package counter, widened by the
 * kernel to 64 bits, so it never wraps in practice), or energy-psys where the
 * PMU has no energy-pkg (seen on a cloud VM). One event per package,
 * opened on the CPU that the PMU's cpumask names for it.
 *
 * Its description lives in sysfs (power/type, power/events/energy-pkg,
 * energy-pkg.scale, power/cpumask); the root is a parameter so tests can
 * point it at a tree of their own. Where the PMU is absent (virtual machines)
 * the meter says so with NAS_EUNSUPP; where perf is refused, NAS_EDENIED with
 * what to change.
 */
#include "evaluator/meter_impl.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* "event=0x02" (the only term the power PMU uses) -> config. */
static int parse_event(const char *s, uint64_t *config)
{
    if (strncmp(s, "event=", 6) != 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s + 6, &end, 0);
    if (errno || end == s + 6 || *end)
        return -1;
    *config = v;
    return 0;
}

/* "0", "0,28", "0-1": the CPUs, one per package. Returns how many, -1 on junk. */
static int parse_cpus(const char *s, int *cpus, int max)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b;
        if (end == p || a < 0)
            return -1;
        b = a;
        if (*end == '-') {
            p = end + 1;
            b = strtol(p, &end, 10);
            if (end == p || b < a)
                return -1;
        }
        for (long c = a; c <= b && n < max; c++)
            cpus[n++] = (int)c;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return n;
}

static void perf_close(ev_meter *m)
{
    for (int i = 0; i < m->u.perf.n; i++)
        if (m->u.perf.fd[i] >= 0)
            close(m->u.perf.fd[i]);
    m->u.perf.n = 0;
}

static nas_status perf_open(ev_meter *m, const ev_meter_opts *o, nas_err *err)
{
    const char *root = o->perf_root;
    char path[1024], text[256];
    struct stat st;
    if (stat(root, &st) != 0)
        return nas_errf(err, NAS_EUNSUPP,
                        "perf: no 'power' PMU (%s absent): this kernel or machine exposes no RAPL perf events",
                        root);
    snprintf(path, sizeof path, "%s/type", root);
    uint64_t type;
    int e = meter_read_u64(path, &type);
    if (e || type > 0xffffffffu)
        return nas_errf(err, NAS_EUNSUPP, "perf: %s: %s", path, e ? strerror(e) : "not a PMU type");
    /* energy-pkg; where the PMU has none (some virtual machines expose only
     * psys), energy-psys, the whole SoC, as rapl does with its domains. */
    const char *ev = "energy-pkg";
    snprintf(path, sizeof path, "%s/events/%s", root, ev);
    uint64_t config;
    if ((e = meter_read_text(path, text, sizeof text)) == ENOENT) {
        char alt[1024];
        snprintf(alt, sizeof alt, "%s/events/energy-psys", root);
        if (meter_read_text(alt, text, sizeof text) == 0) {
            ev = "energy-psys";
            snprintf(path, sizeof path, "%s", alt);
            e = 0;
            meter_note(m, "the power PMU has no energy-pkg: energy-psys (the whole SoC) measured instead");
        }
    }
    if (e != 0)
        return nas_errf(err, NAS_EUNSUPP, "perf: %s: %s (the power PMU has no package energy event)", path,
                        strerror(e));
    if (parse_event(text, &config) != 0)
        return nas_errf(err, NAS_EUNSUPP, "perf: %s: '%s' is not 'event=0xNN'", path, text);
    snprintf(path, sizeof path, "%s/events/%s.scale", root, ev);
    double scale = 0;
    if ((e = meter_read_text(path, text, sizeof text)) != 0)
        return nas_errf(err, NAS_EUNSUPP, "perf: %s: %s", path, strerror(e));
    char *end;
    scale = strtod(text, &end);
    if (end == text || *end || !(scale > 0 && scale < 1))
        return nas_errf(err, NAS_EUNSUPP, "perf: %s: '%s' is not a scale in joules per count", path, text);
    snprintf(path, sizeof path, "%s/events/%s.unit", root, ev);
    if (meter_read_text(path, text, sizeof text) == 0 && strcmp(text, "Joules") != 0)
        return nas_errf(err, NAS_EUNSUPP, "perf: %s: unit '%s', expected Joules", path, text);
    int cpus[METER_MAX_DOMAINS], ncpu = 1;
    cpus[0] = 0;
    snprintf(path, sizeof path, "%s/cpumask", root);
    if (meter_read_text(path, text, sizeof text) == 0 &&
        (ncpu = parse_cpus(text, cpus, METER_MAX_DOMAINS)) <= 0)
        return nas_errf(err, NAS_EUNSUPP, "perf: %s: '%s' is not a CPU list", path, text);

    m->u.perf.scale = scale;
    for (int i = 0; i < ncpu; i++) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.type = (uint32_t)type;
        attr.size = sizeof attr;
        attr.config = config;
        int fd = (int)syscall(SYS_perf_event_open, &attr, -1, cpus[i], -1, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) {
            int en = errno;
            perf_close(m);
            if (en == EACCES || en == EPERM)
                return nas_errf(err, NAS_EDENIED,
                                "perf: opening power/%s on CPU %d: %s (needs CAP_PERFMON or root, "
                                "or `sysctl kernel.perf_event_paranoid=0`)", ev, cpus[i], strerror(en));
            return nas_errf(err, NAS_EUNSUPP, "perf: perf_event_open(power/%s: type %llu, config 0x%llx, "
                            "CPU %d): %s", ev, (unsigned long long)type, (unsigned long long)config, cpus[i],
                            strerror(en));
        }
        m->u.perf.fd[m->u.perf.n++] = fd;
    }
    for (int i = 0; i < m->u.perf.n; i++) {
        if (read(m->u.perf.fd[i], &m->u.perf.last[i], sizeof(uint64_t)) != (ssize_t)sizeof(uint64_t)) {
            int en = errno;
            perf_close(m);
            return nas_errf(err, NAS_EUNSUPP, "perf: reading power/%s: %s", ev, strerror(en));
        }
    }
    snprintf(m->source, sizeof m->source, "perf:%s", ev);
    m->quality = EV_MEASURED;
    m->uncertainty = 0.02;
    return NAS_OK;
}

static nas_status perf_sample(ev_meter *m, nas_err *err)
{
    for (int i = 0; i < m->u.perf.n; i++) {
        uint64_t now;
        if (read(m->u.perf.fd[i], &now, sizeof now) != (ssize_t)sizeof now)
            return nas_errf(err, NAS_EIO, "perf: reading %s: %s", m->source, strerror(errno));
        m->joules += (double)(now - m->u.perf.last[i]) * m->u.perf.scale;
        m->u.perf.last[i] = now;
    }
    return NAS_OK;
}

const meter_backend meter_perf = {"perf", perf_open, perf_sample, perf_close, 0.0};
