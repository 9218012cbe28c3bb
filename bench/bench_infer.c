/* bench_infer.c — inference latency and energy per inference of a few
 * networks on this machine, through ev_bench_infer and the meter `auto`
 * picks (or --meter KIND), at batch 1 and a larger batch. Every energy figure
 * is printed with its source and quality, so an estimate reads as one.
 *   make bench-infer    (or: bench_infer [--threads T] [--batch B] [--seconds S]
 *                              [--repeats R] [--meter auto|perf|rapl|nvml|model] [--pin CPU]
 *                              [--spec SPEC.json|PRESET]: that one network instead of the four)
 * The first line times an empty body: the harness's own cost per call. */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nas_status empty(void *ctx, nas_err *err)
{
    (void)ctx;
    (void)err;
    return NAS_OK;
}

typedef struct {
    const char *preset;
    double width;
    int res, in_ch;
} bench_net;

static const bench_net nets[] = {
    {"mobilenetv2", 0.35, 28, 1},       /* the MNIST job's network */
    {"mobilenetv2", 0.5, 32, 3},        /* bench-train's network */
    {"efficientnet-b0", 1.0, 32, 3},
    {"mobilenetv3-small", 1.0, 32, 3},
};

static void print_row(const char *name, const ev_bench_result *r);

/* Rows at batch 1 and big_batch of one network; 0, or 1 after an error (printed). */
static int bench_arch(const char *name, const space_net *arch, int big_batch, ev_meter *meter, ev_bench_opts *bo)
{
    const int batches[2] = {1, big_batch};
    int rc = 0;
    for (int b = 0; b < 2; b++) {
        ev_net_opts no = {.batch = batches[b], .training = 0, .threads = bo->threads, .seed = 1};
        ev_net *net = NULL;
        ev_bench_result r;
        nas_err err = {0};
        bo->batch = batches[b];
        if (ev_net_create(arch, &no, &net, &err) != NAS_OK || ev_bench_infer(net, meter, bo, &r, &err) != NAS_OK) {
            fprintf(stderr, "bench_infer: %s batch %d: %s\n", name, batches[b], err.msg);
            rc = 1;
        } else {
            print_row(name, &r);
        }
        fflush(stdout);
        ev_net_free(net);
    }
    return rc;
}

static void print_row(const char *name, const ev_bench_result *r)
{
    printf("%-28s %5d %3d %-5s %9.3f %9.3f %9.3f %6.1f%% %9.0f %10.3f %6.1f%%  %s (%s, +-%.0f%%)\n", name, r->batch,
           r->threads, r->affinity, r->latency_ms_median, r->latency_ms_p10, r->latency_ms_p90,
           100 * r->latency_repeat_spread, r->images_per_s, r->energy_mj_median, 100 * r->energy_mj_spread,
           r->energy_source, ev_quality_name(r->energy_quality), 100 * r->energy_uncertainty);
}

int main(int argc, char **argv)
{
    bench_start(argv);
    ev_bench_opts bo;
    ev_bench_opts_default(&bo);
    ev_meter_opts mo;
    ev_meter_opts_default(&mo);
    int big_batch = 16;
    const char *spec_arg = NULL;
    bo.threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            bo.threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            big_batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            bo.min_seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--repeats") == 0)
            bo.repeats = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--meter") == 0)
            mo.kind = argv[i + 1];
        else if (strcmp(argv[i], "--pin") == 0)
            bo.pin_cpu = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--spec") == 0)
            spec_arg = argv[i + 1];
        else {
            fprintf(stderr, "bench_infer: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    nas_err err = {0};
    ev_meter *meter = NULL;
    if (ev_meter_open(&mo, &meter, &err) != NAS_OK) {
        fprintf(stderr, "bench_infer: meter: %s\n", err.msg);
        return 1;
    }
    ev_meter_info info;
    ev_meter_get_info(meter, &info);
    bench_print_machine(stdout);
    printf("meter: %s (%s)%s%s\n", ev_meter_source(meter), ev_quality_name(ev_meter_quality(meter)),
           info.note[0] ? "; " : "", info.note);
    printf("each row: %d repeats of >= %.2f s after %d warm-up calls; latency per call of `batch` images\n\n",
           bo.repeats, bo.min_seconds, bo.warmup);
    printf("%-28s %5s %3s %-5s %9s %9s %9s %7s %9s %10s %7s  %s\n", "network", "batch", "thr", "cpus", "ms med",
           "ms p10", "ms p90", "rep.spr", "img/s", "mJ/call", "spread", "energy source");
    ev_bench_result r;
    ev_bench_opts eo = bo;
    eo.min_seconds = bo.min_seconds < 0.2 ? bo.min_seconds : 0.2;
    if (ev_bench_run(empty, NULL, meter, &eo, &r, &err) == NAS_OK)
        printf("%-28s %.0f ns per call (median of %ld calls)\n", "(harness, empty body)",
               r.latency_ms_median * 1e6, r.runs);
    int rc = 0;
    if (spec_arg) {   /* one network, as written (a spec file, or a preset at its own size) */
        space_spec spec;
        space_net arch;
        if (space_spec_from_arg(spec_arg, &spec, &err) != NAS_OK || space_resolve(&spec, &arch, &err) != NAS_OK) {
            fprintf(stderr, "bench_infer: %s: %s\n", spec_arg, err.msg);
            rc = 1;
        } else {
            rc = bench_arch(spec_arg, &arch, big_batch, meter, &bo);
        }
    }
    for (size_t k = 0; !spec_arg && k < sizeof nets / sizeof nets[0]; k++) {
        space_spec spec;
        space_net arch;
        if (space_preset(nets[k].preset, &spec, &err) != NAS_OK) {
            fprintf(stderr, "bench_infer: %s\n", err.msg);
            rc = 1;
            continue;
        }
        if (nets[k].width != 1.0)
            space_scale(&spec, nets[k].width, 1.0);
        spec.in_ch = nets[k].in_ch;
        spec.num_classes = 10;
        space_adapt_strides(&spec, nets[k].res, 4);
        if (space_resolve(&spec, &arch, &err) != NAS_OK) {
            fprintf(stderr, "bench_infer: %s: %s\n", nets[k].preset, err.msg);
            rc = 1;
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "%s-%.2g %dx%dx%d", nets[k].preset, nets[k].width, nets[k].res, nets[k].res,
                 nets[k].in_ch);
        rc |= bench_arch(name, &arch, big_batch, meter, &bo);
    }
    ev_meter_close(meter);
    return rc;
}
