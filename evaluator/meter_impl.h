/* meter_impl.h — private to evaluator/meter*.c: the meter object and the
 * backends behind ev_meter (ev.h). Each backend opens its counters, and its
 * sample() adds the energy since its previous sample to m->joules; meter.c owns
 * the lock, the sampling thread and the choice among backends. */
#ifndef EV_METER_IMPL_H
#define EV_METER_IMPL_H

#include "evaluator/ev.h"

#include <pthread.h>

#define METER_MAX_DOMAINS 32

typedef struct {
    char path[512];          /* .../energy_uj */
    char label[48];          /* "package-0", "dram-1", "psys" */
    uint64_t last;
    uint64_t max_range;      /* max_energy_range_uj; valid when has_max */
    int has_max;
} meter_rapl_dom;

typedef struct meter_backend meter_backend;

struct ev_meter {
    const meter_backend *be;
    char source[160];
    ev_quality quality;
    double uncertainty;
    char note[1024];         /* why other meters or domains were skipped */

    pthread_mutex_t mu;      /* guards everything below */
    pthread_cond_t cv;       /* wakes the sampling thread to stop */
    pthread_t thread;
    int has_thread, stop;
    double poll_s;           /* sampling thread period; 0: none */
    double joules;           /* since open */
    long samples, wraps, dropped;
    nas_err thread_err;      /* first failure seen by the sampling thread */
    long reads;              /* ev_meter_read calls since open */
    long fail_at;            /* test facility: this read and every later one fail (0: never) */

    union {
        struct {
            int n;
            meter_rapl_dom d[METER_MAX_DOMAINS];
        } rapl;
        struct {
            int n;
            int fd[METER_MAX_DOMAINS];
            uint64_t last[METER_MAX_DOMAINS];
            double scale;            /* joules per count */
        } perf;
        struct {
            void *lib;
            int (*shutdown)(void);
            const char *(*error_string)(int);
            int (*total_energy)(void *dev, unsigned long long *mj);
            int (*power_usage)(void *dev, unsigned int *mw);
            int n;
            void *dev[METER_MAX_DOMAINS];
            int by_energy[METER_MAX_DOMAINS];   /* 1: energy counter; 0: power samples */
            unsigned long long last_mj[METER_MAX_DOMAINS];
            double last_w[METER_MAX_DOMAINS];
            double last_t;
            int inited;
        } nvml;
        struct {
            double cpu0;
            double watts_per_core;
        } model;
    } u;
};

struct meter_backend {
    const char *kind;
    /* Fills m->u, m->source, m->quality, m->uncertainty; on failure leaves
     * nothing open. Reads the counters once so that energy counts from here. */
    nas_status (*open)(ev_meter *m, const ev_meter_opts *o, nas_err *err);
    /* Called with m->mu held: adds the energy since the last sample. */
    nas_status (*sample)(ev_meter *m, nas_err *err);
    void (*close)(ev_meter *m);
    double default_poll_s;   /* 0: needs no sampling thread */
};

extern const meter_backend meter_rapl, meter_perf, meter_nvml, meter_model;

/* Appends "; text" (or "text") to m->note. */
void meter_note(ev_meter *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads a sysfs file holding one unsigned decimal integer. 0 or an errno
 * (EINVAL when the content is not a number). */
int meter_read_u64(const char *path, uint64_t *v);
/* Reads a small text file, trailing whitespace removed. 0 or an errno. */
int meter_read_text(const char *path, char *buf, size_t n);

#endif
