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
    char model[128] = "unknown cpu";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) != 0)
                continue;
            const char *v = strchr(line, ':');
            if (!v)
                break;
            v++;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(model, sizeof model, "%s", v);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
        fclose(f);
    }
    struct utsname u;
    const char *arch = uname(&u) == 0 ? u.machine : "unknown";
    snprintf(buf, n, "%s|%s|%ld cpus", arch, model, sysconf(_SC_NPROCESSORS_ONLN));
}
