/* bench_train.c — training speed of the engine against PyTorch 1.13 on the same
 * network in the same run, and the GFLOP/s of the kernels that decide it.
 *
 * The network: MobileNetV2 width 0.5 for 32x32x3 input and 10 classes (the
 * preset scaled and resolved by space/, strides as --min-side asks), batch
 * 64, 2 threads. bench_train.py builds the very same blocks in PyTorch from
 * the JSON this writes. Each engine runs --repeats timed repeats of at least
 * --seconds, alternating, and the medians and their ratio are printed.
 * Then: pointwise conv (one GEMM over the batch) and depthwise conv forward and
 * backward at this network's shapes, next to square cblas_sgemm, in GFLOP/s;
 * each kernel variant is checked against its oracle before it is timed.
 *
 * usage: bench_train [--threads T] [--batch B] [--repeats R] [--seconds S]
 *                    [--min-side M] [--width W] [--no-torch] [--kernels-only] [--no-kernels]
 */
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"
#include "evaluator/ops.h"
#include "tests/netjson.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *rand_buf(size_t n, nas_pcg32 *rng)
{
    float *p = nas_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(2 * nas_pcg32_double(rng) - 1);
    return p;
}

/* Seconds per call of fn, looped for at least `secs`. */
#define TIME_IT(secs, out, CALL)                                   \
    do {                                                           \
        CALL;                                                      \
        long n_ = 0;                                               \
        double t0_ = nas_now(), dt_;                               \
        do {                                                       \
            CALL;                                                  \
            n_++;                                                  \
        } while ((dt_ = nas_now() - t0_) < (secs));                \
        (out) = dt_ / n_;                                          \
    } while (0)

static double max_rel(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m > 0 ? m : 1);
}

static void bench_kernels(int threads)
{
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 1, 1);
    size_t np = ops_partial_floats(threads, 1024, 7);
    float *partial = nas_malloc(np * sizeof(float));
    op_ctx cx = {threads, partial};
    ops_set_threads(threads);
    printf("\nkernels (%d threads), GFLOP/s:\n", threads);

    /* cblas_sgemm, square, as the practical peak */
    int S = 1024;
    float *A = rand_buf((size_t)S * S, &rng), *Bm = rand_buf((size_t)S * S, &rng),
          *C = rand_buf((size_t)S * S, &rng);
    double t;
    openblas_set_num_threads(1);
    TIME_IT(1.0, t, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, S, S, 1.0f, A, S, Bm, S,
                                0.0f, C, S));
    printf("  %-44s %7.1f\n", "cblas_sgemm 1024^3, 1 thread", 2.0 * S * S * S / t / 1e9);
    openblas_set_num_threads(threads);
    TIME_IT(1.0, t, cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, S, S, 1.0f, A, S, Bm, S,
                                0.0f, C, S));
    char name[96];
    snprintf(name, sizeof name, "cblas_sgemm 1024^3, %d threads (OpenBLAS's own)", threads);
    printf("  %-44s %7.1f\n", name, 2.0 * S * S * S / t / 1e9);
    ops_set_threads(threads);
    nas_free(A);
    nas_free(Bm);
    nas_free(C);

    /* pointwise convs at the shapes of MobileNetV2-0.5 at 32x32, batch 64 */
    static const int pw[][3] = {{64 * 32 * 32, 16, 96}, {64 * 16 * 16, 96, 16},
                                {64 * 16 * 16, 16, 96}, {64 * 8 * 8, 192, 32}, {64 * 4 * 4, 320, 1280}};
    for (size_t i = 0; i < sizeof pw / sizeof pw[0]; i++) {
        int N = pw[i][0], Ci = pw[i][1], Co = pw[i][2];
        float *x = rand_buf((size_t)N * Ci, &rng), *w = rand_buf((size_t)Ci * Co, &rng);
        float *y = rand_buf((size_t)N * Co, &rng), *dw = rand_buf((size_t)Ci * Co, &rng);
        float *dx = rand_buf((size_t)N * Ci, &rng);
        double tf, tb;
        TIME_IT(0.5, tf, op_pw_forward(&cx, y, x, w, N, Ci, Co));
        TIME_IT(0.5, tb, op_pw_backward(&cx, dx, dw, y, x, w, N, Ci, Co, 0));
        snprintf(name, sizeof name, "pointwise %dx%d->%d fwd / bwd", N, Ci, Co);
        printf("  %-44s %7.1f / %5.1f\n", name, 2.0 * N * Ci * Co / tf / 1e9,
               4.0 * N * Ci * Co / tb / 1e9);
        nas_free(x); nas_free(w); nas_free(y); nas_free(dw); nas_free(dx);
    }

    /* depthwise: each variant checked against the oracle, then timed */
    static const int dwc[][5] = {{64, 32, 96, 3, 2}, {64, 16, 144, 3, 1}, {64, 8, 192, 3, 1},
                                 {64, 16, 96, 5, 1}, {64, 16, 96, 7, 1}, {64, 16, 96, 5, 2}};
    for (size_t i = 0; i < sizeof dwc / sizeof dwc[0]; i++) {
        int B = dwc[i][0], H = dwc[i][1], Cc = dwc[i][2], k = dwc[i][3], s = dwc[i][4];
        int Ho = op_out_side(H, k, s);
        size_t nx = (size_t)B * H * H * Cc, ny = (size_t)B * Ho * Ho * Cc, nw = (size_t)k * k * Cc;
        float *x = rand_buf(nx, &rng), *w = rand_buf(nw, &rng), *y = rand_buf(ny, &rng);
        float *y2 = rand_buf(ny, &rng), *dx = rand_buf(nx, &rng), *dx2 = rand_buf(nx, &rng);
        float *dw = nas_calloc(nw, sizeof(float)), *dw2 = nas_calloc(nw, sizeof(float));
        op_dw_forward_ref(y2, x, w, B, H, H, Cc, k, s);
        op_dw_forward(&cx, y, x, w, B, H, H, Cc, k, s);
        op_dw_backward_ref(dx2, dw2, y2, x, w, B, H, H, Cc, k, s);
        op_dw_backward(&cx, dx, dw, y2, x, w, B, H, H, Cc, k, s);
        double e = fmax(max_rel(y, y2, ny), fmax(max_rel(dx, dx2, nx), max_rel(dw, dw2, nw)));
        double tf, tb, tr;
        TIME_IT(0.5, tf, op_dw_forward(&cx, y, x, w, B, H, H, Cc, k, s));
        TIME_IT(0.5, tb, op_dw_backward(&cx, dx, dw, y2, x, w, B, H, H, Cc, k, s));
        TIME_IT(0.3, tr, op_dw_forward_ref(y, x, w, B, H, H, Cc, k, s));
        double fl = 2.0 * ny * k * k;
        snprintf(name, sizeof name, "depthwise %dx%dx%d k%d s%d fwd / bwd", H, H, Cc, k, s);
        printf("  %-44s %7.1f / %5.1f   (oracle fwd %.1f, 1 thread; max rel err %.1e)\n", name,
               fl / tf / 1e9, 2 * fl / tb / 1e9, fl / tr / 1e9, e);
        nas_free(x); nas_free(w); nas_free(y); nas_free(y2); nas_free(dx); nas_free(dx2);
        nas_free(dw); nas_free(dw2);
    }
    nas_free(partial);
}

int main(int argc, char **argv)
{
    int threads = 2, batch = 64, repeats = 5, min_side = 1, torch = 1, kernels_only = 0, no_kernels = 0;
    double seconds = 3, width = 0.5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--threads")) threads = atoi(v), i++;
        else if (!strcmp(a, "--batch")) batch = atoi(v), i++;
        else if (!strcmp(a, "--repeats")) repeats = atoi(v), i++;
        else if (!strcmp(a, "--seconds")) seconds = atof(v), i++;
        else if (!strcmp(a, "--min-side")) min_side = atoi(v), i++;
        else if (!strcmp(a, "--width")) width = atof(v), i++;
        else if (!strcmp(a, "--no-torch")) torch = 0;
        else if (!strcmp(a, "--kernels-only")) kernels_only = 1;
        else if (!strcmp(a, "--no-kernels")) no_kernels = 1;
        else {
            fprintf(stderr, "usage: bench_train [--threads T] [--batch B] [--repeats R] [--seconds S] "
                            "[--min-side M] [--width W] [--no-torch] [--kernels-only] [--no-kernels]\n");
            return 2;
        }
    }
    if (repeats < 1 || repeats > 99 || batch < 1 || threads < 1)
        return 2;
    if (kernels_only) {
        bench_kernels(threads);
        return 0;
    }
    nas_err err;
    space_spec spec;
    space_net arch;
    if (space_preset("mobilenetv2", &spec, &err) != NAS_OK) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    space_scale(&spec, width, 1.0);
    spec.in_ch = 3;
    spec.num_classes = 10;
    space_adapt_strides(&spec, 32, min_side);
    spec.dropout = 0;   /* PyTorch's masks are its own; the cost is the same either way */
    if (space_resolve(&spec, &arch, &err) != NAS_OK) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    space_cost cost;
    space_cost_of(&arch, NULL, 0, &cost);
    printf("network: MobileNetV2 width %.2f, 32x32x3, 10 classes, %d blocks, head map %dx%d, "
           "%.3fM params, %.2fM MACs/image; batch %d, %d threads\n",
           width, arch.n_blocks, arch.head_hw, arch.head_hw, cost.params / 1e6, cost.macs / 1e6,
           batch, threads);

    ev_net_opts no = {.batch = batch, .training = 1, .threads = threads, .seed = 1};
    ev_net *net = NULL;
    if (ev_net_create(&arch, &no, &net, &err) != NAS_OK) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 7, 7);
    float *x = evn_input(net);
    size_t nx = (size_t)batch * 32 * 32 * 3;
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)(2 * nas_pcg32_double(&rng) - 1);
    uint8_t *labels = nas_malloc((size_t)batch);
    for (int b = 0; b < batch; b++)
        labels[b] = (uint8_t)nas_pcg32_bounded(&rng, 10);

    char dir[] = "/tmp/nas-bench-XXXXXX", path[256], cmd[1024];
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/net.json", dir);
    json_t *cfg = json_pack("{s:o, s:i}", "net", nj_net(&arch), "batch", batch);
    json_dump_file(cfg, path, 0);
    json_decref(cfg);

    double ours[99], theirs[99];
    int n_theirs = 0;
    for (int i = 0; i < 3; i++) {   /* warm-up */
        evn_train_step(net, x, labels, batch, 0.1f, &rng, NULL);
        evn_sgd(net, 0.01f, 0.9f, 4e-5f);
    }
    for (int r = 0; r < repeats; r++) {
        long n = 0;
        double t0 = nas_now(), c0 = nas_cpu_seconds(), dt;
        do {
            evn_train_step(net, x, labels, batch, 0.1f, &rng, NULL);
            evn_sgd(net, 0.01f, 0.9f, 4e-5f);
            n++;
        } while ((dt = nas_now() - t0) < seconds);
        ours[r] = n * batch / dt;
        /* CPU time per image is what a shared machine's load disturbs least */
        printf("  nas     repeat %d: %7.1f images/s  (%.2f CPU ms/image)\n", r + 1, ours[r],
               1e3 * (nas_cpu_seconds() - c0) / (n * batch));
        fflush(stdout);
        if (!torch)
            continue;
        /* PyTorch, one repeat per call, alternating with ours so that the
         * machine's noise falls on both alike */
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/bench_train.py %s %d 1 %g", path, threads,
                 seconds);
        FILE *p = popen(cmd, "r");
        double v;
        if (p && fscanf(p, "%lf", &v) == 1) {
            theirs[n_theirs++] = v;
            printf("  pytorch repeat %d: %7.1f images/s\n", r + 1, v);
        } else {
            printf("  pytorch repeat %d: failed (is python3-torch installed?)\n", r + 1);
        }
        if (p)
            pclose(p);
        fflush(stdout);
    }
    double mo = median(ours, repeats);
    printf("\nnas:     %.1f images/s (median of %d)\n", mo, repeats);
    if (n_theirs) {
        double mt = median(theirs, n_theirs);
        printf("pytorch: %.1f images/s (median of %d, torch %s)\n", mt, n_theirs, "1.13");
        printf("ratio:   %.2fx\n", mo / mt);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    nas_free(labels);
    ev_net_free(net);
    if (!no_kernels)
        bench_kernels(threads);
    return 0;
}
