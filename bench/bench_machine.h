/* bench_machine.h — the header line every benchmark prints first: the CPU
 * and its vector extensions, the cores, the kernel level the engine runs
 * (evaluator/kern.h, NAS_ISA) and OpenBLAS's core type, so that no figure is
 * quoted without the machine it came from. */
#ifndef BENCH_MACHINE_H
#define BENCH_MACHINE_H

#include "evaluator/ev.h"

#include <math.h>
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

/* The median of v[0..n), which it sorts (the evaluator's quantiles). */
static inline double bench_median(double *v, int n)
{
    ev_stats st;
    nas_err e;
    return ev_stats_of(v, n, &st, &e) == NAS_OK ? st.median : NAN;
}

/* The network bench-compress quantizes and bench-distill's teacher: a
 * MobileNetV2-style net for 28x28x1 images, 4 stages, 10 classes. */
static inline void bench_mbconv28_spec(space_spec *s, const char *name)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->resolution = 28, s->in_ch = 1, s->num_classes = 10;
    s->stem_ch = 32, s->stem_kernel = 3, s->stem_stride = 1, s->stem_act = SPACE_ACT_RELU6;
    s->n_stages = 4;
    s->stages[0] = (space_stage){.kernel = 3, .expand = 1, .out_ch = 32, .repeats = 1, .stride = 2, .act = SPACE_ACT_RELU6};
    s->stages[1] = (space_stage){.kernel = 3, .expand = 4, .out_ch = 48, .repeats = 2, .stride = 1, .act = SPACE_ACT_RELU6};
    s->stages[2] = (space_stage){.kernel = 5, .expand = 4, .out_ch = 96, .repeats = 2, .stride = 2, .act = SPACE_ACT_RELU6};
    s->stages[3] = (space_stage){.kernel = 3, .expand = 4, .out_ch = 128, .repeats = 1, .stride = 1, .act = SPACE_ACT_RELU6};
    s->head_ch = 256, s->head_act = SPACE_ACT_RELU6;
    s->se_act = SPACE_ACT_RELU, s->se_gate = SPACE_GATE_SIGMOID;
    s->dropout = 0.1;
}

/* Fashion-MNIST from Debian's dataset-fashion-mnist, its first train_n
 * training images (0: all) and the evaluator's default split, seed 1: the
 * data bench-compress and bench-distill train on. */
static inline nas_status bench_fashion(int train_n, ev_data *data, nas_err *e)
{
    ev_data_opts dop;
    ev_data_opts_default(&dop);
    dop.train_limit = train_n;
    dop.seed = 1;
    return ev_data_load("fashion-mnist", &dop, data, e);
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
