/* fake_nvml.c — a stand-in for libnvidia-ml.so.1, built into
 * build/tests/libfake-nvml.so, so the nvml meter is tested where there is no
 * GPU. It exports the NVML calls the meter uses, answering with values the
 * test scripts through fake_nvml_script/fake_nvml_set (the test dlopens the
 * same file, so it shares this state), and counts init and shutdown. */
#include <string.h>

#define MAXDEV 8

static struct {
    int init_rc, count_rc;
    unsigned count;
    int energy_rc[MAXDEV], power_rc[MAXDEV];
    unsigned long long energy_mj[MAXDEV];
    unsigned power_mw[MAXDEV];
    int inits, shutdowns;
} st;

static int dev_token[MAXDEV];

void fake_nvml_script(int init_rc, unsigned count, const int *energy_rc, const int *power_rc);
void fake_nvml_set(unsigned dev, unsigned long long energy_mj, unsigned power_mw);
int fake_nvml_inits(void);
int fake_nvml_shutdowns(void);

void fake_nvml_script(int init_rc, unsigned count, const int *energy_rc, const int *power_rc)
{
    memset(&st, 0, sizeof st);
    st.init_rc = init_rc;
    st.count = count;
    for (unsigned i = 0; i < count && i < MAXDEV; i++) {
        st.energy_rc[i] = energy_rc ? energy_rc[i] : 0;
        st.power_rc[i] = power_rc ? power_rc[i] : 0;
    }
}

void fake_nvml_set(unsigned dev, unsigned long long energy_mj, unsigned power_mw)
{
    __atomic_store_n(&st.energy_mj[dev], energy_mj, __ATOMIC_SEQ_CST);
    __atomic_store_n(&st.power_mw[dev], power_mw, __ATOMIC_SEQ_CST);
}

int fake_nvml_inits(void) { return st.inits; }
int fake_nvml_shutdowns(void) { return st.shutdowns; }

/* ---- the NVML face ---- */
int nvmlInit_v2(void);
int nvmlShutdown(void);
const char *nvmlErrorString(int rc);
int nvmlDeviceGetCount_v2(unsigned *n);
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **dev);
int nvmlDeviceGetTotalEnergyConsumption(void *dev, unsigned long long *mj);
int nvmlDeviceGetPowerUsage(void *dev, unsigned *mw);

int nvmlInit_v2(void)
{
    st.inits++;
    return st.init_rc;
}

int nvmlShutdown(void)
{
    st.shutdowns++;
    return 0;
}

const char *nvmlErrorString(int rc)
{
    switch (rc) {
    case 0: return "Success";
    case 3: return "Not Supported";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

int nvmlDeviceGetCount_v2(unsigned *n)
{
    *n = st.count;
    return st.count_rc;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **dev)
{
    if (i >= st.count || i >= MAXDEV)
        return 2;   /* NVML_ERROR_INVALID_ARGUMENT */
    *dev = &dev_token[i];
    return 0;
}

static int index_of(void *dev) { return (int)((int *)dev - dev_token); }

int nvmlDeviceGetTotalEnergyConsumption(void *dev, unsigned long long *mj)
{
    int i = index_of(dev);
    if (st.energy_rc[i])
        return st.energy_rc[i];
    *mj = __atomic_load_n(&st.energy_mj[i], __ATOMIC_SEQ_CST);
    return 0;
}

int nvmlDeviceGetPowerUsage(void *dev, unsigned *mw)
{
    int i = index_of(dev);
    if (st.power_rc[i])
        return st.power_rc[i];
    *mw = __atomic_load_n(&st.power_mw[i], __ATOMIC_SEQ_CST);
    return 0;
}
