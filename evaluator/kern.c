/* kern.c — which kernel table runs: the CPU's features, read once, and NAS_ISA. */
#include "evaluator/kern.h"
#include "evaluator/ev.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
extern const kern_table kern_table_avx512vnni, kern_table_avx512, kern_table_avx2;
#endif
#if defined(__aarch64__)
extern const kern_table kern_table_neon;
#endif
extern const kern_table kern_table_scalar;

/* best first */
static const kern_table *const tables[] = {
#if defined(__x86_64__)
    &kern_table_avx512vnni,
    &kern_table_avx512,
    &kern_table_avx2,
#endif
#if defined(__aarch64__)
    &kern_table_neon,
#endif
    &kern_table_scalar,
};
#define N_TABLES ((int)(sizeof tables / sizeof tables[0]))

int kern_count(void) { return N_TABLES; }

const kern_table *kern_at(int i) { return i >= 0 && i < N_TABLES ? tables[i] : NULL; }

int kern_cpu_runs(const kern_table *t)
{
    if (!t)
        return 0;
#if defined(__x86_64__)
    /* libgcc's checks include the OS's consent (XGETBV) to the wide registers */
    __builtin_cpu_init();
    if (t->level == KERN_AVX512 && t->vnni)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    if (t->level == KERN_AVX512)
        return __builtin_cpu_supports("avx512f");
    if (t->level == KERN_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 1;   /* NEON is part of aarch64; scalar runs anywhere */
}

static const char *known_names(void)
{
    static char buf[128];
    if (!buf[0]) {
        size_t o = 0;
        for (int i = 0; i < N_TABLES; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? ", " : "", tables[i]->name);
        snprintf(buf + o, sizeof buf - o, ", auto");
    }
    return buf;
}

const kern_table *kern_find(const char *name, nas_err *err)
{
    if (!name || !*name || !strcmp(name, "auto")) {
        for (int i = 0; i < N_TABLES; i++)
            if (kern_cpu_runs(tables[i]))
                return tables[i];
        return &kern_table_scalar;
    }
    for (int i = 0; i < N_TABLES; i++)
        if (!strcmp(name, tables[i]->name)) {
            if (kern_cpu_runs(tables[i]))
                return tables[i];
            nas_errf(err, NAS_EUNSUPP, "NAS_ISA=%s: this CPU lacks %s (it runs: %s)", name, name,
                     ev_kernels_available());
            return NULL;
        }
    nas_errf(err, NAS_EINVAL, "NAS_ISA=%s: no such kernel level in this build (known: %s)", name,
             known_names());
    return NULL;
}

static const kern_table *active;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static nas_err init_err;

static void choose(void)
{
    const kern_table *t = kern_find(getenv("NAS_ISA"), &init_err);
    active = t ? t : kern_find("auto", NULL);
}

const kern_table *kern_active(void)
{
    pthread_once(&once, choose);
    return active;
}

void kern_use(const kern_table *t)
{
    pthread_once(&once, choose);
    if (t)
        active = t;
}

void kern_qpw_pack(int8_t *wp, int32_t *colsum, const int8_t *w, int Cin, int Cout)
{
    int Cop = kern_qpw_cout(Cout);
    memset(wp, 0, kern_qpw_size(Cin, Cout));
    for (int o = 0; o < Cout; o++)
        colsum[o] = 0;
    for (int i = 0; i < Cin; i++)
        for (int o = 0; o < Cout; o++) {
            int8_t v = w[(size_t)i * Cout + o];
            wp[((size_t)(i / 4) * Cop + o) * 4 + i % 4] = v;
            colsum[o] += v;
        }
}

/* ---- ev.h's face of it ---------------------------------------------------- */

nas_status ev_kernels_init(nas_err *err)
{
    pthread_once(&once, choose);
    if (init_err.code != NAS_OK) {
        if (err)
            *err = init_err;
        return init_err.code;
    }
    return NAS_OK;
}

const char *ev_kernels(void) { return kern_active()->name; }

static char avail[128];

static void list_available(void)
{
    size_t n = 0;
    for (int i = 0; i < N_TABLES && n < sizeof avail; i++)
        if (kern_cpu_runs(tables[i]))
            n += (size_t)snprintf(avail + n, sizeof avail - n, "%s%s", n ? " " : "", tables[i]->name);
}

const char *ev_kernels_available(void)
{
    static pthread_once_t o = PTHREAD_ONCE_INIT;
    pthread_once(&o, list_available);
    return avail;
}
