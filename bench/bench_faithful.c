/* bench_faithful.c — `make bench-faithful`: does nas's own engine measure what
 * a deployment runtime would see?
 *
 * The search ranks candidates by batch-1 latency measured in nas's engine
 * (ev_bench_infer, the 10th percentile of single inferences, as cli/cmd_search.c
 * measures: 1 thread here, 2 warm-up calls, R repeats of >= S seconds), while
 * the chosen model is deployed in ONNX Runtime. If the two disagree on the
 * ranking, the search optimises the wrong thing. This benchmark samples
 * networks from the search space with the default space settings, as
 * `nas space sample` does (widths up to 1.0; `nas search` caps them at 0.5
 * unless told, which --max-width 0.5 copies): one PCG32 stream seeded
 * (seed, 0x5ace), the first N genomes at 28x28x1, the next N at 32x32x3,
 * 10 classes each, so the 28x28 half is `nas space sample --seed S
 * --resolution 28 --in-channels 1 --classes 10 -n N`. It builds each with random weights, exports it to ONNX in
 * a temporary folder, checks that ORT's logits agree with nas's on the same
 * input (all models in one node process, tests/ort_run.js; a network that
 * disagrees is reported and not timed, and the run exits 1), then times each
 * network on both sides, back to back, 1 thread: nas's p10 of single calls,
 * and ORT's through scripts/ort-measure.js (its latency_call_p10_ms, the same
 * statistic; a node process per network). Every network is timed in
 * --passes passes (default 3; every other one in reverse order, and the side
 * that goes first alternates), and each side keeps its fastest pass, as
 * `nas calibrate` does: neighbours on a shared machine only ever slow calls.
 *
 * Prints the machine (CPU model, avx512f / avx2 / fma, cores, threads), one
 * row per network, then Kendall's tau-b of the two latency rankings (all,
 * and per resolution; predictor/metrics.c's), the same for MACs against ORT
 * (the cheapest proxy, for scale) and for CPU time per call (which
 * neighbours inflate less), pass-to-pass tau of each side (the noise floor
 * the first is read against), the median nas/ORT ratio of latency and of CPU
 * time with their p10 and p90, and the wall time.
 *
 * Runtime with the defaults (20 + 20 networks, 3 passes of 3 x 0.3 s per
 * side, 1 core busy): about 4.5 minutes on this project's shared 2-core VM
 * (4m18s measured); it grows with --n and --passes about linearly.
 * --keep DIR keeps the models, with their spec JSON and model card.
 *
 * usage: bench_faithful [--seed S] [--n N] [--repeats R] [--min-seconds S]
 *                       [--passes P] [--max-width W] [--keep DIR]
 */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"
#include "predictor/pred.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NETS 512
#define MAX_PASSES 8
#define TOL_RTOL 1e-3   /* ORT against nas, as tests/test_onnx.c and bench_ort.c check */
#define TOL_ATOL 1e-5

typedef struct {
    int res, in_ch;
    space_spec spec;
    space_net arch;
    space_cost cost;
    ev_net *net;
    char model[600];
    double worst;                 /* max |ort - nas| / (atol + rtol |nas|); NAN: ORT gave nothing */
    int ok;                       /* outputs agree: timed */
    double nas_ms[MAX_PASSES], ort_ms[MAX_PASSES];     /* p10 of single calls, wall clock */
    double nas_cpu[MAX_PASSES], ort_cpu[MAX_PASSES];   /* CPU ms per call (mean) */
    double nas_best, ort_best, nas_cpu_best, ort_cpu_best;
} bench_net;

/* ---- statistics ------------------------------------------------------------ */

/* p10, median, p90 of n values (copied: the caller's order is kept). */
static void quantiles(const double *v, int n, double *p10, double *med, double *p90)
{
    *p10 = *med = *p90 = NAN;
    if (n < 1)
        return;
    double *c = nas_malloc((size_t)n * sizeof *c);
    memcpy(c, v, (size_t)n * sizeof *c);
    ev_stats s;
    if (ev_stats_of(c, n, &s, NULL) == NAS_OK) {
        *p10 = s.p10;
        *med = s.median;
        *p90 = s.p90;
    }
    nas_free(c);
}

/* ---- the two sides ----------------------------------------------------------- */

static int time_nas(bench_net *b, int repeats, double min_s, double *ms, double *cpu)
{
    ev_bench_opts bo;
    ev_bench_opts_default(&bo);
    bo.batch = 1;
    bo.warmup = 2;   /* as cli/cmd_search.c measures candidates */
    bo.repeats = repeats;
    bo.min_seconds = min_s;
    bo.threads = 1;
    ev_bench_result br;
    nas_err e;
    double c0 = nas_cpu_seconds();
    if (ev_bench_infer(b->net, NULL, &bo, &br, &e) != NAS_OK) {
        fprintf(stderr, "bench-faithful: %s: %s\n", b->model, e.msg);
        return -1;
    }
    *ms = br.latency_ms_p10;
    *cpu = (nas_cpu_seconds() - c0) * 1e3 / (double)(br.runs + bo.warmup);
    return 0;
}

/* ort-measure.js's latency_call_p10_ms (single calls) and cpu_ms, 1 thread. */
static int time_ort(const bench_net *b, int repeats, double min_s, double *ms, double *cpu, char *runtime,
                    size_t rn)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "node scripts/ort-measure.js '%s' --threads 1 --repeats %d --min-seconds %g --warmup 10",
             b->model, repeats, min_s);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        got += sscanf(line, "latency_call_p10_ms=%lf", ms) == 1;
        got += sscanf(line, "cpu_ms=%lf", cpu) == 1;
        if (!strncmp(line, "runtime=", 8) && runtime && !runtime[0])
            snprintf(runtime, rn, "%.*s", (int)strcspn(line + 8, "\n"), line + 8);
    }
    int st = pclose(p);
    return st == 0 && got == 2 && *ms > 0 ? 0 : -1;
}

static int write_f32(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = fwrite(x, sizeof *x, n, f) != n;
    return fclose(f) != 0 || bad ? -1 : 0;
}

/* Runs ORT on every model's input (one node process for all; on a failure,
 * one per model, to find which) and sets b->worst and b->ok. */
static void check_outputs(bench_net *nets, int n, const char *dir, float *const nas_logits[],
                          const char *const inputs[2])
{
    size_t cap = 256 + (size_t)n * 1400;
    char *cmd = nas_malloc(cap);
    size_t len = (size_t)snprintf(cmd, cap, "node tests/ort_run.js");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(cmd + len, cap - len, " '%s' '%s' 1 '%s/out%03d.f32'", nets[i].model,
                                inputs[nets[i].res == 28 ? 0 : 1], dir, i);
    snprintf(cmd + len, cap - len, " >/dev/null");
    int all_ran = system(cmd) == 0;
    for (int i = 0; i < n; i++) {
        char out[600];
        snprintf(out, sizeof out, "%s/out%03d.f32", dir, i);
        if (!all_ran) {
            snprintf(cmd, cap, "node tests/ort_run.js '%s' '%s' 1 '%s' >/dev/null", nets[i].model,
                     inputs[nets[i].res == 28 ? 0 : 1], out);
            if (system(cmd) != 0)
                unlink(out);
        }
        nets[i].worst = NAN;
        nets[i].ok = 0;
        int k = nets[i].arch.num_classes;
        float y[1024];
        FILE *f = fopen(out, "rb");
        if (!f)
            continue;
        size_t got = fread(y, sizeof(float), (size_t)k + 1, f);
        fclose(f);
        if (got != (size_t)k)
            continue;
        double worst = 0;
        for (int c = 0; c < k; c++)
            worst = fmax(worst, fabs(y[c] - nas_logits[i][c]) / (TOL_ATOL + TOL_RTOL * fabs(nas_logits[i][c])));
        nets[i].worst = worst;
        nets[i].ok = worst <= 1;
    }
    nas_free(cmd);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_faithful [--seed S] [--n N] [--repeats R] [--min-seconds S] [--passes P]\n"
               "                      [--max-width W] [--keep DIR]\n"
               "  --n N: networks per resolution (28x28x1 and 32x32x3), default 20\n"
               "  --keep DIR: export into DIR and keep the models (default: a temporary folder, removed)\n");
}

static int rm_rf(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

int main(int argc, char **argv)
{
    bench_start(argv);
    long seed = 1;
    int per_res = 20, repeats = 3, passes = 3;
    double min_s = 0.3, max_w = 1.0;
    const char *keep = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--seed"))
            seed = atol(v);
        else if (!strcmp(a, "--n"))
            per_res = atoi(v);
        else if (!strcmp(a, "--repeats"))
            repeats = atoi(v);
        else if (!strcmp(a, "--min-seconds"))
            min_s = atof(v);
        else if (!strcmp(a, "--passes"))
            passes = atoi(v);
        else if (!strcmp(a, "--max-width"))
            max_w = atof(v);
        else if (!strcmp(a, "--keep"))
            keep = v;
        else {
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (seed < 0 || per_res < 2 || 2 * per_res > MAX_NETS || repeats < 1 || repeats > 100 ||
        !(min_s > 0 && min_s <= 60) || passes < 1 || passes > MAX_PASSES || !(max_w >= 0.25 && max_w <= 1.25)) {
        fprintf(stderr, "bench-faithful: --seed >= 0, --n 2..%d, --repeats 1..100, --min-seconds (0, 60], "
                        "--passes 1..%d, --max-width 0.25..1.25\n", MAX_NETS / 2, MAX_PASSES);
        return 2;
    }

    double t_start = nas_now();
    char dir[512];
    if (keep) {
        snprintf(dir, sizeof dir, "%s", keep);
        nas_err e;
        if (nas_mkdirs(dir, &e) != NAS_OK) {
            fprintf(stderr, "bench-faithful: %s\n", e.msg);
            return 1;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/nas-faithful-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror("bench-faithful: mkdtemp");
            return 1;
        }
    }

    bench_print_machine(stdout);
    printf("# bench-faithful: %d networks (seed %ld: %d at 28x28x1, %d at 32x32x3, 10 classes, default space, "
           "max width %g), random weights; batch 1, 1 thread; p10 of single calls, %d repeats of >= %gs per "
           "side, %d pass(es), fastest kept\n",
           2 * per_res, seed, per_res, per_res, max_w, repeats, min_s, passes);
    fflush(stdout);

    /* ---- sample, build, export ---- */
    int n = 2 * per_res;
    bench_net *nets = nas_calloc((size_t)n, sizeof *nets);
    float *logits[MAX_NETS];
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, (uint64_t)seed, 0x5ace);   /* as `nas space sample` */
    float *x_nhwc[2], *x_nchw[2];
    char in_path[2][600];
    const char *inputs[2] = {in_path[0], in_path[1]};
    for (int r = 0; r < 2; r++) {
        int res = r ? 32 : 28, ch = r ? 3 : 1;
        size_t m = (size_t)res * res * ch;
        x_nhwc[r] = nas_malloc_aligned(m * sizeof(float));
        x_nchw[r] = nas_malloc(m * sizeof(float));
        nas_pcg32 xr;
        nas_pcg32_seed(&xr, 7, (uint64_t)r);
        for (size_t i = 0; i < m; i++)
            x_nhwc[r][i] = (float)(2 * nas_pcg32_double(&xr) - 1);
        for (int c = 0; c < ch; c++)
            for (int p = 0; p < res * res; p++)
                x_nchw[r][c * res * res + p] = x_nhwc[r][p * ch + c];
        snprintf(in_path[r], sizeof in_path[r], "%s/input-%d.f32", dir, res);
        if (write_f32(in_path[r], x_nchw[r], m) != 0) {
            fprintf(stderr, "bench-faithful: cannot write %s\n", in_path[r]);
            return 1;
        }
    }
    nas_err e;
    for (int i = 0; i < n; i++) {
        bench_net *b = &nets[i];
        int r = i >= per_res;
        b->res = r ? 32 : 28;
        b->in_ch = r ? 3 : 1;
        space_config cfg;
        space_config_default(&cfg, b->res, b->in_ch, 10);
        cfg.max_width = max_w;
        space_genome g;
        space_genome_sample(&cfg, &rng, &g);
        if (space_genome_to_spec(&cfg, &g, &b->spec, &e) != NAS_OK || space_resolve(&b->spec, &b->arch, &e) != NAS_OK)
            goto fail;
        snprintf(b->spec.name, sizeof b->spec.name, "faithful-%03d", i);
        space_cost_of(&b->arch, NULL, 0, &b->cost);
        ev_net_opts no = {.batch = 1, .training = 0, .threads = 1, .seed = 1000 + (uint64_t)i};
        if (ev_net_create(&b->arch, &no, &b->net, &e) != NAS_OK)
            goto fail;
        snprintf(b->model, sizeof b->model, "%s/net%03d-%d.onnx", dir, i, b->res);
        ev_export_opts o;
        ev_export_opts_default(&o);
        o.spec = &b->spec;
        o.force = 1;
        o.sidecars = keep != NULL;   /* --keep: the spec JSON and model card beside each model */
        if (ev_export_onnx(b->net, &o, b->model, &e) != NAS_OK)
            goto fail;
        logits[i] = nas_malloc((size_t)b->arch.num_classes * sizeof(float));
        if (ev_net_infer(b->net, x_nhwc[r], 1, logits[i], &e) != NAS_OK)
            goto fail;
    }

    /* ---- same model, same outputs, before any timing ---- */
    check_outputs(nets, n, dir, logits, inputs);
    int n_bad = 0;
    for (int i = 0; i < n; i++)
        n_bad += !nets[i].ok;
    double worst_all = 0;
    for (int i = 0; i < n; i++)
        if (nets[i].ok)
            worst_all = fmax(worst_all, nets[i].worst);
    printf("# outputs: %d of %d networks agree with ORT (worst max |diff| / (%g + %g |nas|) = %.3f, must be "
           "<= 1); built, exported and checked in %.1f s\n",
           n - n_bad, n, TOL_ATOL, TOL_RTOL, worst_all, nas_now() - t_start);
    for (int i = 0; i < n; i++)
        if (!nets[i].ok)
            printf("# DISAGREES, not timed: net %d (%dx%dx%d, %.2fM MACs): %s\n", i, nets[i].res, nets[i].res,
                   nets[i].in_ch, nets[i].cost.macs / 1e6,
                   isnan(nets[i].worst) ? "ORT gave no output" : "logits differ");
    fflush(stdout);

    /* ---- time both sides, network by network ---- */
    char runtime[256] = "";
    int tty = isatty(2);
    for (int p = 0; p < passes; p++) {
        for (int k = 0; k < n; k++) {
            int i = p % 2 ? n - 1 - k : k;
            bench_net *b = &nets[i];
            if (!b->ok)
                continue;
            if (tty)
                fprintf(stderr, "\rpass %d/%d: network %d/%d ", p + 1, passes, k + 1, n);
            int nas_first = (i + p) % 2 == 0;
            for (int side = 0; side < 2; side++) {
                int do_nas = (side == 0) == nas_first;
                int rc = do_nas ? time_nas(b, repeats, min_s, &b->nas_ms[p], &b->nas_cpu[p])
                                : time_ort(b, repeats, min_s, &b->ort_ms[p], &b->ort_cpu[p], runtime,
                                           sizeof runtime);
                if (rc != 0) {
                    fprintf(stderr, "\nbench-faithful: %s failed on %s\n",
                            do_nas ? "nas's benchmark" : "scripts/ort-measure.js", b->model);
                    return 1;
                }
            }
        }
    }
    if (tty)
        fprintf(stderr, "\r%40s\r", "");
    printf("# ORT: %s\n", runtime);

    /* ---- rows: 28x28 first, then 32x32 (the sampling order) ---- */
    printf("%4s %7s %8s %8s %6s %8s %8s %7s %7s %7s  %8s %8s %7s\n", "net", "input", "MACs_M", "params_M",
           "blocks", "nas_ms", "ort_ms", "nas/ort", "nas_rt%", "ort_rt%", "nas_cpu", "ort_cpu", "cpu n/o");
    enum { NAS, ORT, MACS, RATIO, NAS1, NAS2, ORT1, ORT2, NAS_CPU, ORT_CPU, CPU_RATIO, NCPU1, NCPU2, OCPU1, OCPU2,
           NCOLS };
    double *col[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        col[c] = nas_malloc((size_t)n * sizeof(double));
    int first[2] = {0, 0}, count[2] = {0, 0}, m = 0;
    for (int i = 0; i < n; i++) {
        bench_net *b = &nets[i];
        if (!b->ok)
            continue;
        int r = b->res == 32;
        if (r && !count[1])
            first[1] = m;
        count[r]++;
        double nmax = b->nas_ms[0], omax = b->ort_ms[0];
        b->nas_best = nmax;
        b->ort_best = omax;
        b->nas_cpu_best = b->nas_cpu[0];
        b->ort_cpu_best = b->ort_cpu[0];
        for (int p = 1; p < passes; p++) {
            b->nas_best = fmin(b->nas_best, b->nas_ms[p]);
            b->ort_best = fmin(b->ort_best, b->ort_ms[p]);
            b->nas_cpu_best = fmin(b->nas_cpu_best, b->nas_cpu[p]);
            b->ort_cpu_best = fmin(b->ort_cpu_best, b->ort_cpu[p]);
            nmax = fmax(nmax, b->nas_ms[p]);
            omax = fmax(omax, b->ort_ms[p]);
        }
        col[NAS][m] = b->nas_best;
        col[ORT][m] = b->ort_best;
        col[MACS][m] = b->cost.macs;
        col[RATIO][m] = b->nas_best / b->ort_best;
        col[NAS1][m] = b->nas_ms[0];
        col[ORT1][m] = b->ort_ms[0];
        col[NAS2][m] = passes > 1 ? b->nas_ms[1] : NAN;
        col[ORT2][m] = passes > 1 ? b->ort_ms[1] : NAN;
        col[NCPU1][m] = b->nas_cpu[0];
        col[OCPU1][m] = b->ort_cpu[0];
        col[NCPU2][m] = passes > 1 ? b->nas_cpu[1] : NAN;
        col[OCPU2][m] = passes > 1 ? b->ort_cpu[1] : NAN;
        col[NAS_CPU][m] = b->nas_cpu_best;
        col[ORT_CPU][m] = b->ort_cpu_best;
        col[CPU_RATIO][m] = b->nas_cpu_best / b->ort_cpu_best;
        char rt_n[16] = "-", rt_o[16] = "-";
        if (passes > 1) {
            snprintf(rt_n, sizeof rt_n, "%.1f", 100 * (nmax / b->nas_best - 1));
            snprintf(rt_o, sizeof rt_o, "%.1f", 100 * (omax / b->ort_best - 1));
        }
        printf("%4d %2dx%2dx%d %8.2f %8.3f %6d %8.4f %8.4f %7.3f %7s %7s  %8.4f %8.4f %7.3f\n", i, b->res, b->res,
               b->in_ch, b->cost.macs / 1e6, b->cost.params / 1e6, b->arch.n_blocks, b->nas_best, b->ort_best,
               col[RATIO][m], rt_n, rt_o, b->nas_cpu_best, b->ort_cpu_best, col[CPU_RATIO][m]);
        m++;
    }
    printf("# nas_ms, ort_ms: p10 of single calls (the search's statistic), fastest of %d pass(es); *_rt%%: "
           "slowest pass over fastest, minus 1 (test-retest);\n# *_cpu: CPU ms per call (mean over the "
           "loop; ORT's includes node's own), which neighbours on a shared machine inflate far less\n", passes);

    /* ---- summary ---- */
#define TAU3(a, b)                                                                                          \
    pred_kendall_tau(col[a], col[b], m), pred_kendall_tau(col[a] + first[0], col[b] + first[0], count[0]), \
        pred_kendall_tau(col[a] + first[1], col[b] + first[1], count[1])
    printf("# Kendall tau-b, nas's latency ranking against ORT's: all %.3f (n=%d), 28x28x1 %.3f (n=%d), "
           "32x32x3 %.3f (n=%d)\n",
           pred_kendall_tau(col[NAS], col[ORT], m), m,
           pred_kendall_tau(col[NAS] + first[0], col[ORT] + first[0], count[0]), count[0],
           pred_kendall_tau(col[NAS] + first[1], col[ORT] + first[1], count[1]), count[1]);
    printf("#   the same on CPU time per call:          all %.3f, 28x28x1 %.3f, 32x32x3 %.3f\n",
           TAU3(NAS_CPU, ORT_CPU));
    printf("#   for scale, MACs against ORT's latency:  all %.3f, 28x28x1 %.3f, 32x32x3 %.3f\n", TAU3(MACS, ORT));
    if (passes > 1)
        printf("#   pass 1 against pass 2 (noise floor):    nas %.3f, ORT %.3f (CPU time: nas %.3f, ORT %.3f)\n",
               pred_kendall_tau(col[NAS1], col[NAS2], m), pred_kendall_tau(col[ORT1], col[ORT2], m),
               pred_kendall_tau(col[NCPU1], col[NCPU2], m), pred_kendall_tau(col[OCPU1], col[OCPU2], m));
#undef TAU3
    const char *names[3] = {"all", "28x28x1", "32x32x3"};
    for (int pass = 0; pass < 2; pass++) {
        int c = pass ? CPU_RATIO : RATIO;
        printf("# nas/ORT %s ratio:", pass ? "CPU-time" : "latency");
        for (int r = -1; r < 2; r++) {
            double q10, q50, q90;
            quantiles(col[c] + (r < 0 ? 0 : first[r]), r < 0 ? m : count[r], &q10, &q50, &q90);
            printf("%s %s median %.3f (p10 %.3f, p90 %.3f)", r < 0 ? "" : ";", names[r + 1], q50, q10, q90);
        }
        printf("\n");
    }
    printf("# a ratio below 1: nas's engine is faster than ONNX Runtime on that network\n");
    printf("# wall time %.1f s\n", nas_now() - t_start);

    for (int i = 0; i < n; i++) {
        ev_net_free(nets[i].net);
        nas_free(logits[i]);
    }
    for (int r = 0; r < 2; r++) {
        nas_free_aligned(x_nhwc[r]);
        nas_free(x_nchw[r]);
    }
    nas_free(nets);
    for (int c = 0; c < NCOLS; c++)
        nas_free(col[c]);
    if (!keep)
        rm_rf(dir);
    return n_bad ? 1 : 0;
fail:
    fprintf(stderr, "bench-faithful: %s\n", e.msg);
    if (!keep)
        rm_rf(dir);
    return 1;
}
