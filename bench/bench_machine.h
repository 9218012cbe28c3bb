/* bench_machine.h — the header line every benchmark prints first: the CPU
 * and its vector extensions, the cores, the kernel level the engine runs
 * (evaluator/kern.h, NAS_ISA) and OpenBLAS's core type, so that no figure is
 * quoted without the machine it came from. */
#ifndef BENCH_MACHINE_H
#define BENCH_MACHINE_H

#include "evaluator/ev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int bench_has_flag(const char *flags, const char *f)
{
    size_t n = strlen(f);
    for (const char *p = flags; (p = strstr(p, f)) != NULL; p += n)
        if ((p == flags || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void bench_print_machine(FILE *out)
{
    char model[256], flags[8192] = "";
    nas_cpu_model(model, sizeof model, "unknown");
    int logical = 0, cores = 0, siblings = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[8192];
        while (fgets(line, sizeof line, f)) {
            const char *v = strchr(line, ':');
            if (!v)
                continue;
            v++;
            while (*v == ' ' || *v == '\t')
                v++;
            if (!strncmp(line, "processor", 9))
                logical++;
            else if ((!strncmp(line, "flags", 5) || !strncmp(line, "Features", 8)) && !flags[0])
                snprintf(flags, sizeof flags, "%s", v);
            else if (!strncmp(line, "cpu cores", 9) && !cores)
                cores = atoi(v);
            else if (!strncmp(line, "siblings", 8) && !siblings)
                siblings = atoi(v);
        }
        fclose(f);
    }
    int tpc = cores > 0 && siblings >= cores ? siblings / cores : 1;
    fprintf(out, "# machine: %s; avx512f %s, avx2 %s, fma %s; %d logical CPUs (%ld online), %d core(s) x %d "
                 "thread(s) per package\n",
            model, bench_has_flag(flags, "avx512f") ? "yes" : "no", bench_has_flag(flags, "avx2") ? "yes" : "no",
            bench_has_flag(flags, "fma") ? "yes" : "no", logical, sysconf(_SC_NPROCESSORS_ONLN), cores, tpc);
    const char *ct = getenv("OPENBLAS_CORETYPE"), *wp = getenv("OMP_WAIT_POLICY");
    fprintf(out, "# nas kernels: %s (this CPU runs: %s; NAS_ISA=%s); OpenBLAS core type %s; "
                 "OMP_WAIT_POLICY %s\n",
            ev_kernels(), ev_kernels_available(), getenv("NAS_ISA") ? getenv("NAS_ISA") : "unset",
            ct && *ct ? ct : "auto-detected", wp ? wp : "unset");
}

/* First thing in a benchmark's main: passive OpenMP waiting, as ./nas runs
 * (base/nas.h), and NAS_ISA checked. */
static void bench_start(char **argv)
{
    nas_omp_passive_reexec(argv);
    nas_err err;
    if (ev_kernels_init(&err) != NAS_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        exit(2);
    }
}

#endif
