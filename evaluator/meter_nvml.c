/* meter_nvml.c — NVIDIA GPU energy through NVML, loaded with dlopen at run
 * time so that nas builds and runs where there is no NVIDIA driver (the meter
 * is then skipped with NAS_EUNSUPP, never a link error).
 *
 * Per GPU: the total energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ,
 * Volta and later) is used where it answers; measured. Elsewhere power
 * (nvmlDeviceGetPowerUsage, mW) is sampled by the meter's thread and
 * integrated with the trapezoid rule; sampled, with a larger uncertainty,
 * because power between samples is guessed. The NVML types are declared here
 * (an enum return code and an opaque device handle), so no NVML header is needed.
 */
#include "evaluator/meter_impl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define NVML_SUCCESS 0

typedef int (*nvml_void_fn)(void);
typedef int (*nvml_count_fn)(unsigned int *);
typedef int (*nvml_handle_fn)(unsigned int, void **);
typedef const char *(*nvml_errstr_fn)(int);
typedef int (*nvml_energy_fn)(void *, unsigned long long *);
typedef int (*nvml_power_fn)(void *, unsigned int *);

static void *sym(void *lib, const char *name, const char *fallback)
{
    void *p = dlsym(lib, name);
    if (!p && fallback)
        p = dlsym(lib, fallback);
    return p;
}

static const char *nvml_reason(ev_meter *m, int rc)
{
    static __thread char buf[32];   /* the sampling thread may fail too */
    if (m->u.nvml.error_string) {
        const char *s = m->u.nvml.error_string(rc);
        if (s)
            return s;
    }
    snprintf(buf, sizeof buf, "NVML error %d", rc);
    return buf;
}

static void nvml_close(ev_meter *m)
{
    if (m->u.nvml.inited && m->u.nvml.shutdown)
        m->u.nvml.shutdown();
    m->u.nvml.inited = 0;
    if (m->u.nvml.lib)
        dlclose(m->u.nvml.lib);
    m->u.nvml.lib = NULL;
}

static nas_status nvml_open(ev_meter *m, const ev_meter_opts *o, nas_err *err)
{
    nas_status st = NAS_OK;
    void *lib = dlopen(o->nvml_lib, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *why = dlerror();
        return nas_errf(err, NAS_EUNSUPP, "nvml: cannot load %s (%s): no NVIDIA driver here", o->nvml_lib,
                        why ? why : "not found");
    }
    m->u.nvml.lib = lib;
    nvml_void_fn init = (nvml_void_fn)sym(lib, "nvmlInit_v2", "nvmlInit");
    m->u.nvml.shutdown = (nvml_void_fn)sym(lib, "nvmlShutdown", NULL);
    m->u.nvml.error_string = (nvml_errstr_fn)sym(lib, "nvmlErrorString", NULL);
    nvml_count_fn count = (nvml_count_fn)sym(lib, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    nvml_handle_fn handle = (nvml_handle_fn)sym(lib, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
    m->u.nvml.total_energy = (nvml_energy_fn)sym(lib, "nvmlDeviceGetTotalEnergyConsumption", NULL);
    m->u.nvml.power_usage = (nvml_power_fn)sym(lib, "nvmlDeviceGetPowerUsage", NULL);
    if (!init || !m->u.nvml.shutdown || !count || !handle ||
        (!m->u.nvml.total_energy && !m->u.nvml.power_usage)) {
        st = nas_errf(err, NAS_EUNSUPP, "nvml: %s lacks the NVML functions nas needs (nvmlInit_v2, "
                      "nvmlDeviceGetCount_v2, nvmlDeviceGetHandleByIndex_v2, energy or power)", o->nvml_lib);
        goto cleanup;
    }
    int rc = init();
    if (rc != NVML_SUCCESS) {
        st = nas_errf(err, NAS_EUNSUPP, "nvml: nvmlInit_v2 failed: %s", nvml_reason(m, rc));
        goto cleanup;
    }
    m->u.nvml.inited = 1;
    unsigned int n = 0;
    if ((rc = count(&n)) != NVML_SUCCESS) {
        st = nas_errf(err, NAS_EUNSUPP, "nvml: nvmlDeviceGetCount_v2 failed: %s", nvml_reason(m, rc));
        goto cleanup;
    }
    if (n == 0) {
        st = nas_errf(err, NAS_EUNSUPP, "nvml: no GPU");
        goto cleanup;
    }
    if (n > METER_MAX_DOMAINS)
        n = METER_MAX_DOMAINS;
    int n_energy = 0, n_power = 0;
    m->u.nvml.last_t = nas_now();
    for (unsigned int i = 0; i < n; i++) {
        void *dev = NULL;
        if ((rc = handle(i, &dev)) != NVML_SUCCESS) {
            meter_note(m, "GPU %u skipped: no handle (%s)", i, nvml_reason(m, rc));
            continue;
        }
        int k = m->u.nvml.n;
        unsigned long long mj;
        unsigned int mw;
        if (m->u.nvml.total_energy && (rc = m->u.nvml.total_energy(dev, &mj)) == NVML_SUCCESS) {
            m->u.nvml.by_energy[k] = 1;
            m->u.nvml.last_mj[k] = mj;
            n_energy++;
        } else if (m->u.nvml.power_usage && (rc = m->u.nvml.power_usage(dev, &mw)) == NVML_SUCCESS) {
            m->u.nvml.by_energy[k] = 0;
            m->u.nvml.last_w[k] = mw * 1e-3;
            meter_note(m, "GPU %u has no energy counter: power sampled", i);
            n_power++;
        } else {
            meter_note(m, "GPU %u skipped: neither energy nor power readable (%s)", i, nvml_reason(m, rc));
            continue;
        }
        m->u.nvml.dev[k] = dev;
        m->u.nvml.n++;
    }
    if (m->u.nvml.n == 0) {
        st = nas_errf(err, NAS_EUNSUPP, "nvml: none of %u GPUs reports energy or power", n);
        goto cleanup;
    }
    snprintf(m->source, sizeof m->source, "nvml:%s", n_power == 0 ? "energy" : n_energy == 0 ? "power" : "energy+power");
    m->quality = n_power == 0 ? EV_MEASURED : EV_SAMPLED;
    /* NVIDIA states its power readings to +-5%; power between samples adds more. */
    m->uncertainty = n_power == 0 ? 0.05 : 0.10;
cleanup:
    if (st != NAS_OK)
        nvml_close(m);
    return st;
}

static nas_status nvml_sample(ev_meter *m, nas_err *err)
{
    double t = nas_now(), dt = t - m->u.nvml.last_t;
    m->u.nvml.last_t = t;
    for (int k = 0; k < m->u.nvml.n; k++) {
        int rc;
        if (m->u.nvml.by_energy[k]) {
            unsigned long long mj;
            if ((rc = m->u.nvml.total_energy(m->u.nvml.dev[k], &mj)) != NVML_SUCCESS)
                return nas_errf(err, NAS_EIO, "nvml: nvmlDeviceGetTotalEnergyConsumption: %s", nvml_reason(m, rc));
            if (mj >= m->u.nvml.last_mj[k])
                m->joules += (double)(mj - m->u.nvml.last_mj[k]) * 1e-3;
            else
                m->dropped++;   /* the counter went back (driver reloaded): drop the interval */
            m->u.nvml.last_mj[k] = mj;
        } else {
            unsigned int mw;
            if ((rc = m->u.nvml.power_usage(m->u.nvml.dev[k], &mw)) != NVML_SUCCESS)
                return nas_errf(err, NAS_EIO, "nvml: nvmlDeviceGetPowerUsage: %s", nvml_reason(m, rc));
            double w = mw * 1e-3;
            m->joules += 0.5 * (w + m->u.nvml.last_w[k]) * dt;
            m->u.nvml.last_w[k] = w;
        }
    }
    return NAS_OK;
}

const meter_backend meter_nvml = {"nvml", nvml_open, nvml_sample, nvml_close, 0.1};
