/* bench_ort.c — `make bench-ort` (part of `make bench-infer`): batch-1 inference
 * latency of nas's engine against ONNX Runtime on the same exported model, same
 * threads, same run.
 *
 * The model: MobileNetV2 at width 0.5, 32x32 RGB input, 10 classes, strides
 * adapted as the search space does for 32x32 (the preset, scaled and adapted,
 * with random weights and BN statistics: latency does not depend on them). It
 * is exported once; ORT's outputs are first checked against nas's on the same
 * input (a benchmark of a wrong model would mean nothing), then each side is
 * timed with 1 and 2 threads: warm-up, then repeats that each loop for at
 * least --min-seconds; the median over repeats of the time per inference.
 * ORT is timed by scripts/ort-measure.js (node, onnxruntime-node, CPU).
 *
 * usage: bench_ort [--repeats R] [--min-seconds S] [--threads-max T] [--out DIR]
 */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double pos = (n - 1) * q;
    int lo = (int)floor(pos), hi = (int)ceil(pos);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

/* Median ms per inference of nas's engine, and p10/p90 over repeats; *cpu:
 * CPU ms per inference over all repeats (on a shared machine, wall time
 * includes waiting for a core; CPU time mostly does not). */
static int time_nas(ev_net *net, const float *x, float *logits, int repeats, double min_s,
                    double *med, double *p10, double *p90, double *cpu)
{
    nas_err e;
    for (int i = 0; i < 50; i++)
        if (ev_net_infer(net, x, 1, logits, &e) != NAS_OK) {
            fprintf(stderr, "bench-ort: %s\n", e.msg);
            return -1;
        }
    double per[64], c0 = nas_cpu_seconds();
    long total = 0;
    for (int r = 0; r < repeats; r++) {
        double t0 = nas_now(), el;
        long n = 0;
        do {
            if (ev_net_infer(net, x, 1, logits, &e) != NAS_OK) {
                fprintf(stderr, "bench-ort: %s\n", e.msg);
                return -1;
            }
            n++;
            el = nas_now() - t0;
        } while (el < min_s);
        per[r] = el * 1e3 / n;
        total += n;
    }
    *cpu = (nas_cpu_seconds() - c0) * 1e3 / total;
    double c[64];
    memcpy(c, per, sizeof(double) * repeats);
    *med = quantile(c, repeats, 0.5);
    *p10 = quantile(c, repeats, 0.1);
    *p90 = quantile(c, repeats, 0.9);
    return 0;
}

/* Runs ort-measure.js and reads its latency_ms= and spread lines. */
static int time_ort(const char *model, int threads, int repeats, double min_s, double *med,
                    double *p10, double *p90, double *cpu)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "node scripts/ort-measure.js '%s' --threads %d --repeats %d --min-seconds %g --warmup 50",
             model, threads, repeats, min_s);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        got += sscanf(line, "latency_ms=%lf", med) == 1;
        got += sscanf(line, "latency_p10_ms=%lf", p10) == 1;
        got += sscanf(line, "latency_p90_ms=%lf", p90) == 1;
        got += sscanf(line, "cpu_ms=%lf", cpu) == 1;
        if (!strncmp(line, "runtime=", 8) && threads == 1)
            printf("# ORT: %s", line + 8);
    }
    int st = pclose(p);
    return st == 0 && got == 4 ? 0 : -1;
}

int main(int argc, char **argv)
{
    bench_start(argv);
    int repeats = 7, tmax = 2;
    double min_s = 0.5;
    const char *out = "build/bench";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-seconds") && i + 1 < argc)
            min_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads-max") && i + 1 < argc)
            tmax = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else {
            fprintf(stderr, "usage: bench_ort [--repeats R] [--min-seconds S] [--threads-max T] "
                            "[--out DIR]\n");
            return 2;
        }
    }
    if (repeats < 1 || repeats > 64 || tmax < 1 || tmax > 64) {
        fprintf(stderr, "bench-ort: --repeats 1..64, --threads-max 1..64\n");
        return 2;
    }

    space_spec spec;
    space_net arch;
    nas_err e;
    if (space_preset("mobilenetv2", &spec, &e) != NAS_OK)
        goto fail;
    spec.num_classes = 10;
    space_scale(&spec, 0.5, 1.0);
    space_adapt_strides(&spec, 32, 4);
    snprintf(spec.name, sizeof spec.name, "mobilenetv2-0.5-32px");
    if (space_resolve(&spec, &arch, &e) != NAS_OK)
        goto fail;
    space_cost cost;
    space_cost_of(&arch, NULL, 0, &cost);

    mkdir(out, 0755);
    char model[512], xin[512], yout[512];
    snprintf(model, sizeof model, "%s/mobilenetv2-0.5-32px.onnx", out);
    snprintf(xin, sizeof xin, "%s/bench-input.f32", out);
    snprintf(yout, sizeof yout, "%s/bench-ort.f32", out);

    /* One input image, NHWC for nas, NCHW for ORT. */
    size_t n_in = (size_t)32 * 32 * 3;
    float *x = nas_malloc(n_in * sizeof(float)), *xc = nas_malloc(n_in * sizeof(float));
    float logits[10], ort[10];
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 1, 1);
    for (size_t i = 0; i < n_in; i++)
        x[i] = (float)(2 * nas_pcg32_double(&rng) - 1);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 32 * 32; p++)
            xc[c * 1024 + p] = x[p * 3 + c];

    bench_print_machine(stdout);
    printf("# bench-ort: %s, %.2fM MACs, %.3fM params, batch 1; median of %d repeats of >= %gs\n",
           spec.name, cost.macs / 1e6, cost.params / 1e6, repeats, min_s);
    printf("%-8s %9s %9s %8s   %10s %10s %8s   %s\n", "threads", "nas_ms", "ort_ms", "nas/ort",
           "nas_cpu_ms", "ort_cpu_ms", "cpu n/o", "wall p10-p90 nas | ort");
    for (int t = 1; t <= tmax; t++) {
        ev_net_opts no = {.batch = 1, .training = 0, .threads = t, .seed = 42};
        ev_net *net = NULL;
        if (ev_net_create(&arch, &no, &net, &e) != NAS_OK)
            goto fail;
        if (t == 1) {
            ev_export_opts o;
            ev_export_opts_default(&o);
            o.spec = &spec;
            o.force = 1;
            o.sidecars = 0;
            if (ev_export_onnx(net, &o, model, &e) != NAS_OK)
                goto fail;
            /* Same model, same outputs, before any timing. */
            FILE *f = fopen(xin, "wb");
            if (!f || fwrite(xc, sizeof(float), n_in, f) != n_in || fclose(f) != 0) {
                fprintf(stderr, "bench-ort: cannot write %s\n", xin);
                return 1;
            }
            char cmd[2048];
            snprintf(cmd, sizeof cmd, "node tests/ort_run.js '%s' '%s' 1 '%s' >/dev/null", model, xin,
                     yout);
            if (system(cmd) != 0 || ev_net_infer(net, x, 1, logits, &e) != NAS_OK) {
                fprintf(stderr, "bench-ort: ORT could not run %s (scripts/setup.sh installs it)\n",
                        model);
                return 1;
            }
            f = fopen(yout, "rb");
            if (!f || fread(ort, sizeof(float), 10, f) != 10) {
                fprintf(stderr, "bench-ort: no ORT output in %s\n", yout);
                return 1;
            }
            fclose(f);
            double worst = 0;
            for (int k = 0; k < 10; k++)
                worst = fmax(worst, fabs(ort[k] - logits[k]) / (1e-5 + 1e-3 * fabs(logits[k])));
            printf("# outputs agree: max |diff| / (1e-5 + 1e-3 |nas|) = %.3f (must be <= 1)\n", worst);
            if (!(worst <= 1)) {
                fprintf(stderr, "bench-ort: ORT and nas disagree on the model; not timing it\n");
                return 1;
            }
        }
        double nm, n10, n90, om, o10, o90, nc, oc;
        if (time_nas(net, x, logits, repeats, min_s, &nm, &n10, &n90, &nc) != 0)
            return 1;
        ev_net_free(net);
        if (time_ort(model, t, repeats, min_s, &om, &o10, &o90, &oc) != 0) {
            fprintf(stderr, "bench-ort: scripts/ort-measure.js failed on %s\n", model);
            return 1;
        }
        printf("%-8d %9.4f %9.4f %8.3f   %10.4f %10.4f %8.3f   %.3f-%.3f | %.3f-%.3f\n", t, nm,
               om, nm / om, nc, oc, nc / oc, n10, n90, o10, o90);
        fflush(stdout);
    }
    printf("# goal: nas/ort <= 1 (nas's engine no slower than ONNX Runtime). ORT's CPU time\n"
           "# includes node's own (promise per run); with 2 threads CPU time counts both cores.\n");
    nas_free(x);
    nas_free(xc);
    return 0;
fail:
    fprintf(stderr, "bench-ort: %s\n", e.msg);
    return 1;
}
