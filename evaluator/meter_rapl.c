/* meter_rapl.c — RAPL energy counters through Linux powercap
 * (/sys/class/powercap/intel-rapl:*, the same names on AMD).
 *
 * Which domains are summed is where the tools before us went wrong (CodeCarbon,
 * Zeus, carbontracker, Scaphandre issue trackers): package-N domains only;
 * core and uncore are parts of a package, never added to it; dram only on
 * request; psys (the whole SoC, packages included) only where there is no
 * package domain, never beside one; an intel-rapl-mmio:N zone that repeats a
 * package of the MSR interface counted once. energy_uj is a counter that wraps
 * at max_energy_range_uj; a wrap is corrected with it, and where it cannot be
 * read (or the corrected step would be over half the range, which means the
 * counter was not read often enough to tell) the interval is dropped and
 * counted, never turned into negative or invented energy.
 */
#include "evaluator/meter_impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char dir[512];
    char name[32];     /* contents of the zone's `name` file */
    int mmio;          /* intel-rapl-mmio:N */
    int a, b;          /* intel-rapl:a or intel-rapl:a:b (b = -1 for a top-level zone) */
} zone;

#define MAX_ZONES 64

/* "intel-rapl:0" -> a=0 b=-1, "intel-rapl:0:2" -> a=0 b=2, "intel-rapl-mmio:0". */
static int parse_zone(const char *ent, int *mmio, int *a, int *b)
{
    const char *p;
    if (strncmp(ent, "intel-rapl:", 11) == 0) {
        *mmio = 0;
        p = ent + 11;
    } else if (strncmp(ent, "intel-rapl-mmio:", 16) == 0) {
        *mmio = 1;
        p = ent + 16;
    } else {
        return 0;
    }
    char *end;
    long x = strtol(p, &end, 10);
    if (end == p || x < 0 || x > 1000)
        return 0;
    *a = (int)x;
    *b = -1;
    if (*end == ':') {
        p = end + 1;
        x = strtol(p, &end, 10);
        if (end == p || x < 0 || x > 1000)
            return 0;
        *b = (int)x;
    }
    return *end == '\0';
}

static void scan_dir(const char *dir, zone *z, int *nz)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && *nz < MAX_ZONES) {
        int mmio, a, b;
        if (!parse_zone(e->d_name, &mmio, &a, &b))
            continue;
        int dup = 0;
        for (int i = 0; i < *nz; i++)
            dup |= z[i].mmio == mmio && z[i].a == a && z[i].b == b;
        if (dup)
            continue;
        zone *t = &z[*nz];
        if (snprintf(t->dir, sizeof t->dir, "%s/%s", dir, e->d_name) >= (int)sizeof t->dir)
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/name", t->dir);
        if (meter_read_text(path, t->name, sizeof t->name) != 0)
            continue;
        t->mmio = mmio;
        t->a = a;
        t->b = b;
        (*nz)++;
    }
    closedir(d);
}

static const zone *find_zone(const zone *z, int nz, int mmio, int a, int b)
{
    for (int i = 0; i < nz; i++)
        if (z[i].mmio == mmio && z[i].a == a && z[i].b == b)
            return &z[i];
    return NULL;
}

static nas_status read_error(const char *path, int e, nas_err *err)
{
    if (e == EACCES || e == EPERM)
        return nas_errf(err, NAS_EDENIED,
                        "rapl: cannot read %s: %s. Since Linux 5.10 only root may read RAPL energy "
                        "counters: run as root, or make them readable with "
                        "`sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj` (until reboot) or a "
                        "udev rule (SUBSYSTEM==\"powercap\", ACTION==\"add\", "
                        "RUN+=\"/bin/chmod a+r /sys%%p/energy_uj\"); or use the perf meter with CAP_PERFMON",
                        path, strerror(e));
    return nas_errf(err, NAS_EIO, "rapl: cannot read %s: %s", path, e == EINVAL ? "not a number" : strerror(e));
}

static int add_domain(ev_meter *m, const zone *z, const char *label, int include_max_note)
{
    if (m->u.rapl.n >= METER_MAX_DOMAINS)
        return 0;
    meter_rapl_dom *d = &m->u.rapl.d[m->u.rapl.n++];
    snprintf(d->path, sizeof d->path, "%.500s/energy_uj", z->dir);
    snprintf(d->label, sizeof d->label, "%s", label);
    char p[600];
    snprintf(p, sizeof p, "%s/max_energy_range_uj", z->dir);
    int e = meter_read_u64(p, &d->max_range);
    d->has_max = e == 0 && d->max_range > 0;
    if (!d->has_max && include_max_note)
        meter_note(m, "%s: max_energy_range_uj unreadable (%s): a wrapped interval will be dropped",
                   label, e ? strerror(e) : "zero");
    return 1;
}

static int cmp_dom(const void *x, const void *y)
{
    const meter_rapl_dom *a = x, *b = y;
    /* package-* before dram-*, then by number: a stable source string. */
    int ka = strncmp(a->label, "package", 7) != 0, kb = strncmp(b->label, "package", 7) != 0;
    if (ka != kb)
        return ka - kb;
    size_t la = strlen(a->label), lb = strlen(b->label);
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a->label, b->label);
}

static nas_status rapl_open(ev_meter *m, const ev_meter_opts *o, nas_err *err)
{
    const char *root = o->sysfs_root;
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
        return nas_errf(err, NAS_EUNSUPP,
                        "rapl: %s not found (no powercap interface: a virtual machine, or the "
                        "intel_rapl_common module is not loaded)", root);
    zone z[MAX_ZONES];
    int nz = 0;
    scan_dir(root, z, &nz);
    /* Sub-zones live inside their package's folder too; the class folder
     * usually links them flat, but a bare tree may not. */
    int ntop = nz;
    for (int i = 0; i < ntop; i++)
        if (z[i].b < 0)
            scan_dir(z[i].dir, z, &nz);

    int npkg = 0, psys = -1;
    for (int i = 0; i < nz; i++) {
        if (z[i].b >= 0 || strncmp(z[i].name, "package-", 8) != 0)
            continue;
        if (z[i].mmio) {
            int copy = 0;
            for (int j = 0; j < nz; j++)
                copy |= !z[j].mmio && z[j].b < 0 && strcmp(z[j].name, z[i].name) == 0;
            if (copy) {
                meter_note(m, "intel-rapl-mmio:%d repeats %s of intel-rapl: counted once", z[i].a, z[i].name);
                continue;
            }
            char label[48];
            snprintf(label, sizeof label, "%s(mmio)", z[i].name);
            npkg += add_domain(m, &z[i], label, 1);
        } else {
            npkg += add_domain(m, &z[i], z[i].name, 1);
        }
    }
    for (int i = 0; i < nz; i++)
        if (strcmp(z[i].name, "psys") == 0 && !z[i].mmio)
            psys = i;
    if (npkg > 0 && o->include_dram) {
        for (int i = 0; i < nz; i++) {
            if (strcmp(z[i].name, "dram") != 0 || z[i].mmio)
                continue;
            /* Label dram by its package's number, from the parent zone's name. */
            const zone *parent = z[i].b >= 0 ? find_zone(z, nz, 0, z[i].a, -1) : NULL;
            char label[48];
            if (parent && strncmp(parent->name, "package-", 8) == 0)
                snprintf(label, sizeof label, "dram-%s", parent->name + 8);
            else
                snprintf(label, sizeof label, "dram-%d", z[i].a);
            add_domain(m, &z[i], label, 1);
        }
    }
    if (npkg > 0) {
        if (psys >= 0)
            meter_note(m, "psys not added: it already contains the packages");
    } else if (psys >= 0) {
        add_domain(m, &z[psys], "psys", 1);
        meter_note(m, "no package domain: psys (the whole SoC) measured instead");
    } else {
        return nas_errf(err, NAS_EUNSUPP, "rapl: no package-N or psys domain under %s (%d zones seen)",
                        root, nz);
    }
    qsort(m->u.rapl.d, (size_t)m->u.rapl.n, sizeof m->u.rapl.d[0], cmp_dom);

    /* The first reading: energy counts from here. */
    for (int i = 0; i < m->u.rapl.n; i++) {
        meter_rapl_dom *d = &m->u.rapl.d[i];
        int e = meter_read_u64(d->path, &d->last);
        if (e)
            return read_error(d->path, e, err);
    }
    size_t len = (size_t)snprintf(m->source, sizeof m->source, "rapl:");
    for (int i = 0; i < m->u.rapl.n && len < sizeof m->source; i++)
        len += (size_t)snprintf(m->source + len, sizeof m->source - len, "%s%s", i ? "+" : "",
                                m->u.rapl.d[i].label);
    m->quality = EV_MEASURED;
    m->uncertainty = 0.02;
    return NAS_OK;
}

static nas_status rapl_sample(ev_meter *m, nas_err *err)
{
    for (int i = 0; i < m->u.rapl.n; i++) {
        meter_rapl_dom *d = &m->u.rapl.d[i];
        uint64_t now;
        int e = meter_read_u64(d->path, &now);
        if (e)
            return read_error(d->path, e, err);
        uint64_t step;
        if (now >= d->last) {
            step = now - d->last;
        } else if (d->has_max && d->last <= d->max_range && d->max_range - d->last + now <= d->max_range / 2) {
            step = d->max_range - d->last + now;
            m->wraps++;
        } else {
            step = 0;   /* wrapped, by an unknown amount: drop, flag, never go negative */
            m->dropped++;
        }
        d->last = now;
        m->joules += (double)step * 1e-6;
    }
    return NAS_OK;
}

static void rapl_close(ev_meter *m) { (void)m; }

const meter_backend meter_rapl = {"rapl", rapl_open, rapl_sample, rapl_close, 1.0};
