/* hw.c — a fingerprint of the machine a run measures on, stored with the run
 * and with predictor models, so that figures from one machine are never
 * mistaken for another's. Deliberately coarse: CPU model, logical CPUs,
 * architecture; nothing that changes between boots. */
#include "runs/runs.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

void runs_hw_fingerprint(char *buf, size_t n)
{
    char model[128];
    nas_cpu_model(model, sizeof model, "unknown cpu");
    struct utsname u;
    const char *arch = uname(&u) == 0 ? u.machine : "unknown";
    snprintf(buf, n, "%s|%s|%ld cpus", arch, model, sysconf(_SC_NPROCESSORS_ONLN));
}
