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
 * Beside each row, oneDNN (Debian's libdnnl 2.6, the CPU library PyTorch's CPU
 * path uses) on the same shapes and buffers: NHWC convolution (groups =
 * channels for depthwise, 1x1 for pointwise), weights in the format it prefers
 * (reordered once, untimed), bwd = backward data + backward weights as ours is
 * dx + dw, the same thread count (OpenMP), timing and FLOP count, and ours /
 * oneDNN. The header names the most ISA oneDNN may use, each row the kernels it
 * picked; ONEDNN_MAX_CPU_ISA=AVX2 (or AVX512_CORE, ...) in the environment
 * holds it to that ISA, e.g. to compare on an AVX2-only machine's terms.
 *
 * usage: bench_train [--threads T] [--batch B] [--repeats R] [--seconds S]
 *                    [--min-side M] [--width W] [--no-torch] [--kernels-only] [--no-kernels]
 */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"
#include "evaluator/ops.h"
#include "tests/netjson.h"

#include <cblas.h>
#include <dnnl.h>
#include <dnnl_debug.h>
#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- oneDNN beside ours ---------------------------------------------------
 * One convolution (depthwise: groups = channels; pointwise: 1x1, groups 1) as
 * oneDNN 2.6 runs it: src/dst NHWC, the weights in the format oneDNN asks for
 * ("any", reordered once from ours before timing), forward_training, and the
 * backward pair (data, weights) timed together as ours is. The buffers are
 * ours (NHWC wraps them as they are). */
typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t st;
} dn_env;

typedef struct {
    dnnl_primitive_desc_t pd[3];   /* fwd, bwd data, bwd weights */
    dnnl_primitive_t p[3];
    dnnl_memory_t src, dst, ddst, dsrc, wu, wf, wb, dwu, dwo;   /* u: ours, f/b/o: oneDNN's */
    char impl[3][48];
} dn_conv;

#define DN_TRY(call)                                                                      \
    do {                                                                                  \
        dnnl_status_t s_ = (call);                                                        \
        if (s_ != dnnl_success) {                                                         \
            printf("  oneDNN: %s failed: %s\n", #call, dnnl_status2str(s_));              \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

static int dn_run(const dn_env *e, dnnl_primitive_t p, int n, dnnl_exec_arg_t *args)
{
    DN_TRY(dnnl_primitive_execute(p, e->st, n, args));
    DN_TRY(dnnl_stream_wait(e->st));
    return 0;
}

/* A copy between two layouts (ours and oneDNN's), run once. */
static int dn_reorder(const dn_env *e, dnnl_memory_t from, dnnl_memory_t to)
{
    const dnnl_memory_desc_t *a, *b;
    DN_TRY(dnnl_memory_get_memory_desc(from, &a));
    DN_TRY(dnnl_memory_get_memory_desc(to, &b));
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    DN_TRY(dnnl_reorder_primitive_desc_create(&pd, a, e->eng, b, e->eng, NULL));
    DN_TRY(dnnl_primitive_create(&p, pd));
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    int rc = dn_run(e, p, 2, args);
    dnnl_primitive_destroy(p);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* The memory oneDNN wants for `want`: ours itself when the layouts agree,
 * else a new buffer of its own. */
static int dn_mem_like(const dn_env *e, dnnl_memory_t ours, const dnnl_memory_desc_t *want,
                       dnnl_memory_t *out)
{
    const dnnl_memory_desc_t *have;
    DN_TRY(dnnl_memory_get_memory_desc(ours, &have));
    if (dnnl_memory_desc_equal(have, want)) {
        *out = ours;
        return 0;
    }
    DN_TRY(dnnl_memory_create(out, want, e->eng, DNNL_MEMORY_ALLOCATE));
    return 0;
}

static void dn_impl(dnnl_primitive_desc_t pd, char *buf, size_t n)
{
    const char *s = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
        s = "?";
    snprintf(buf, n, "%s", s);
}

/* x [B,H,H,Ci], w ours ([k,k,C] depthwise, [Ci,Co] pointwise), y [B,Ho,Ho,Co],
 * dy like y, dx like x, dw like w; pad (k-1)/2 as op_out_side counts it. */
static int dn_conv_create(const dn_env *e, dn_conv *c, int B, int H, int Ci, int Co, int depthwise,
                          int k, int s, float *x, float *w, float *y, float *dy, float *dx, float *dw)
{
    memset(c, 0, sizeof *c);
    int Ho = op_out_side(H, k, s), p = (k - 1) / 2, pr = (Ho - 1) * s + k - H - p;
    dnnl_dims_t xd = {B, Ci, H, H}, yd = {B, Co, Ho, Ho}, st = {s, s}, pl = {p, p}, prr = {pr, pr};
    dnnl_dims_t wdw = {Ci, 1, 1, k, k}, wpw = {Co, Ci, 1, 1};
    int wn = depthwise ? 5 : 4;
    const dnnl_dim_t *wdims = depthwise ? wdw : wpw;
    /* ours: [k,k,C] is hwigo of (g,o,i,h,w) = (C,1,1,k,k); [Ci,Co] is hwio */
    dnnl_format_tag_t wtag = depthwise ? dnnl_hwigo : dnnl_hwio;
    dnnl_memory_desc_t mx, my, mw_any, mw_ours;
    DN_TRY(dnnl_memory_desc_init_by_tag(&mx, 4, xd, dnnl_f32, dnnl_nhwc));
    DN_TRY(dnnl_memory_desc_init_by_tag(&my, 4, yd, dnnl_f32, dnnl_nhwc));
    DN_TRY(dnnl_memory_desc_init_by_tag(&mw_any, wn, wdims, dnnl_f32, dnnl_format_tag_any));
    DN_TRY(dnnl_memory_desc_init_by_tag(&mw_ours, wn, wdims, dnnl_f32, wtag));

    dnnl_convolution_desc_t fd, bd, bw;
    DN_TRY(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                              &mx, &mw_any, NULL, &my, st, pl, prr));
    DN_TRY(dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &mx, &mw_any, &my,
                                                    st, pl, prr));
    DN_TRY(dnnl_convolution_backward_weights_desc_init(&bw, dnnl_convolution_direct, &mx, &mw_any,
                                                       NULL, &my, st, pl, prr));
    DN_TRY(dnnl_primitive_desc_create(&c->pd[0], &fd, NULL, e->eng, NULL));
    DN_TRY(dnnl_primitive_desc_create(&c->pd[1], &bd, NULL, e->eng, c->pd[0]));
    DN_TRY(dnnl_primitive_desc_create(&c->pd[2], &bw, NULL, e->eng, c->pd[0]));
    for (int i = 0; i < 3; i++) {
        DN_TRY(dnnl_primitive_create(&c->p[i], c->pd[i]));
        dn_impl(c->pd[i], c->impl[i], sizeof c->impl[i]);
    }

    DN_TRY(dnnl_memory_create(&c->src, &mx, e->eng, x));
    DN_TRY(dnnl_memory_create(&c->dst, &my, e->eng, y));
    DN_TRY(dnnl_memory_create(&c->ddst, &my, e->eng, dy));
    DN_TRY(dnnl_memory_create(&c->dsrc, &mx, e->eng, dx));
    DN_TRY(dnnl_memory_create(&c->wu, &mw_ours, e->eng, w));
    DN_TRY(dnnl_memory_create(&c->dwu, &mw_ours, e->eng, dw));
    /* weights into oneDNN's formats, once, outside the timed loops */
    DN_TRY(dn_mem_like(e, c->wu, dnnl_primitive_desc_query_md(c->pd[0], dnnl_query_weights_md, 0),
                       &c->wf));
    DN_TRY(dn_mem_like(e, c->wu, dnnl_primitive_desc_query_md(c->pd[1], dnnl_query_weights_md, 0),
                       &c->wb));
    DN_TRY(dn_mem_like(e, c->dwu,
                       dnnl_primitive_desc_query_md(c->pd[2], dnnl_query_diff_weights_md, 0),
                       &c->dwo));
    if (c->wf != c->wu && dn_reorder(e, c->wu, c->wf))
        return -1;
    if (c->wb != c->wu && dn_reorder(e, c->wu, c->wb))
        return -1;
    return 0;
}

static int dn_conv_fwd(const dn_env *e, dn_conv *c)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_WEIGHTS, c->wf}, {DNNL_ARG_DST, c->dst}};
    return dn_run(e, c->p[0], 3, a);
}

/* dx and dw, as op_dw_backward / op_pw_backward compute them together. */
static int dn_conv_bwd(const dn_env *e, dn_conv *c)
{
    dnnl_exec_arg_t a[] = {{DNNL_ARG_DIFF_DST, c->ddst}, {DNNL_ARG_WEIGHTS, c->wb},
                           {DNNL_ARG_DIFF_SRC, c->dsrc}};
    dnnl_exec_arg_t b[] = {{DNNL_ARG_SRC, c->src}, {DNNL_ARG_DIFF_DST, c->ddst},
                           {DNNL_ARG_DIFF_WEIGHTS, c->dwo}};
    if (dn_run(e, c->p[1], 3, a) || dn_run(e, c->p[2], 3, b))
        return -1;
    return 0;
}

/* dw back in our layout (for the check; not timed). */
static int dn_conv_dw_to_ours(const dn_env *e, dn_conv *c)
{
    return c->dwo != c->dwu ? dn_reorder(e, c->dwo, c->dwu) : 0;
}

static void dn_conv_free(dn_conv *c)
{
    dnnl_memory_t own[] = {c->wf != c->wu ? c->wf : NULL, c->wb != c->wu ? c->wb : NULL,
                           c->dwo != c->dwu ? c->dwo : NULL, c->src, c->dst, c->ddst, c->dsrc,
                           c->wu, c->dwu};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (own[i])
            dnnl_memory_destroy(own[i]);
    for (int i = 0; i < 3; i++) {
        if (c->p[i])
            dnnl_primitive_destroy(c->p[i]);
        if (c->pd[i])
            dnnl_primitive_desc_destroy(c->pd[i]);
    }
    memset(c, 0, sizeof *c);
}

/* The kernels oneDNN picked for a row: one name when fwd, bwd-data and
 * bwd-weights agree, else all three. */
static void dn_impl_str(const dn_conv *c, char *buf, size_t n)
{
    if (!strcmp(c->impl[0], c->impl[1]) && !strcmp(c->impl[0], c->impl[2]))
        snprintf(buf, n, "%s", c->impl[0]);
    else
        snprintf(buf, n, "%s / %s / %s", c->impl[0], c->impl[1], c->impl[2]);
}

/* "avx512_core_bf16" from oneDNN's "cpu_isa_avx512_core_bf16". */
static const char *dn_isa_name(void)
{
    const char *s = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
    return strncmp(s, "cpu_isa_", 8) ? s : s + 8;
}

/* One row: ours and oneDNN in GFLOP/s (fwd / bwd) and their ratio; oneDNN's
 * figures are 0 where it could not run the shape. */
static void print_row(const char *name, double of, double ob, double df, double db, const char *note)
{
    if (df > 0 && db > 0)
        printf("  %-28s %7.1f / %5.1f   %7.1f / %5.1f   %5.2f / %4.2f   %s\n", name, of, ob, df, db,
               of / df, ob / db, note);
    else
        printf("  %-28s %7.1f / %5.1f   %7s / %5s   %5s / %4s   %s\n", name, of, ob, "-", "-", "-",
               "-", note);
}

static void bench_kernels(int threads)
{
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 1, 1);
    size_t np = ops_partial_floats(threads, 1024, 7);
    float *partial = nas_malloc(np * sizeof(float));
    op_ctx cx = {threads, partial, NULL, 0};
    ops_set_threads(threads);
    /* oneDNN (Debian's build) threads with OpenMP too: the same count as ours,
     * set before any primitive is made, since oneDNN splits work when it makes one */
    omp_set_num_threads(threads);
    dn_env env = {0};
    int dn_ok = dnnl_engine_create(&env.eng, dnnl_cpu, 0) == dnnl_success &&
                dnnl_stream_create(&env.st, env.eng, dnnl_stream_default_flags) == dnnl_success;
    const dnnl_version_t *dv = dnnl_version();
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
    printf("\nkernels (%d threads), GFLOP/s, beside oneDNN %d.%d.%d (OpenMP, %d threads; ISA %s, "
           "the most it may use%s%s):\n",
           threads, dv->major, dv->minor, dv->patch, threads,
           dn_ok ? dn_isa_name() : "none: no CPU engine",
           cap ? ", ONEDNN_MAX_CPU_ISA=" : "", cap ? cap : "");

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
    char name[96], note[512], impl[160];
    snprintf(name, sizeof name, "cblas_sgemm 1024^3, %d threads (OpenBLAS's own)", threads);
    printf("  %-44s %7.1f\n", name, 2.0 * S * S * S / t / 1e9);
    ops_set_threads(threads);
    nas_free(A);
    nas_free(Bm);
    nas_free(C);
    printf("  %-28s %15s   %16s   %13s\n", "", "ours fwd / bwd", "oneDNN fwd / bwd", "ours/oneDNN");

    /* pointwise convs at the shapes of MobileNetV2-0.5 at 32x32, batch 64:
     * ours one GEMM over the batch, oneDNN's a 1x1 convolution on the NHWC map */
    static const int pw[][4] = {{64, 32, 16, 96}, {64, 16, 96, 16}, {64, 16, 16, 96},
                                {64, 8, 192, 32}, {64, 4, 320, 1280}};
    for (size_t i = 0; i < sizeof pw / sizeof pw[0]; i++) {
        int Bn = pw[i][0], H = pw[i][1], Ci = pw[i][2], Co = pw[i][3], N = Bn * H * H;
        float *x = rand_buf((size_t)N * Ci, &rng), *w = rand_buf((size_t)Ci * Co, &rng);
        float *y = rand_buf((size_t)N * Co, &rng), *dw = nas_calloc((size_t)Ci * Co, sizeof(float));
        float *dx = rand_buf((size_t)N * Ci, &rng), *yd = rand_buf((size_t)N * Co, &rng);
        float *dxd = rand_buf((size_t)N * Ci, &rng), *dwd = rand_buf((size_t)Ci * Co, &rng);
        double tf, tb, df = 1, db = 1;
        /* ours once, for the check: y, then dx and dw from dy = y */
        op_pw_forward(&cx, y, x, w, N, Ci, Co);
        op_pw_backward(&cx, dx, dw, y, x, w, N, Ci, Co, 0);
        dn_conv c = {0};
        snprintf(note, sizeof note, "oneDNN failed");
        int dn = dn_ok && !dn_conv_create(&env, &c, Bn, H, Ci, Co, 0, 1, 1, x, w, yd, y, dxd, dwd) &&
                 !dn_conv_fwd(&env, &c) && !dn_conv_bwd(&env, &c) && !dn_conv_dw_to_ours(&env, &c);
        if (dn) {
            double ef = max_rel(yd, y, (size_t)N * Co),
                   eb = fmax(max_rel(dxd, dx, (size_t)N * Ci), max_rel(dwd, dw, (size_t)Ci * Co));
            dn_impl_str(&c, impl, sizeof impl);
            snprintf(note, sizeof note, "(oneDNN vs ours: max rel err fwd %.1e, bwd %.1e; %s)", ef,
                     eb, impl);
        }
        /* ours and oneDNN's in turn, so that a shared machine's noise falls on both alike */
        TIME_IT(0.5, tf, op_pw_forward(&cx, y, x, w, N, Ci, Co));
        if (dn)
            TIME_IT(0.5, df, dn_conv_fwd(&env, &c));
        TIME_IT(0.5, tb, op_pw_backward(&cx, dx, dw, y, x, w, N, Ci, Co, 0));
        if (dn)
            TIME_IT(0.5, db, dn_conv_bwd(&env, &c));
        dn_conv_free(&c);
        double fl = 2.0 * N * Ci * Co;
        snprintf(name, sizeof name, "pointwise %dx%d->%d", N, Ci, Co);
        print_row(name, fl / tf / 1e9, 2 * fl / tb / 1e9, dn ? fl / df / 1e9 : 0,
                  dn ? 2 * fl / db / 1e9 : 0, note);
        nas_free(x); nas_free(w); nas_free(y); nas_free(dw); nas_free(dx);
        nas_free(yd); nas_free(dxd); nas_free(dwd);
    }

    /* depthwise: each variant (ours and oneDNN's) checked against the oracle, then timed */
    static const int dwc[][5] = {{64, 32, 96, 3, 2}, {64, 16, 144, 3, 1}, {64, 8, 192, 3, 1},
                                 {64, 16, 96, 5, 1}, {64, 16, 96, 7, 1}, {64, 16, 96, 5, 2}};
    for (size_t i = 0; i < sizeof dwc / sizeof dwc[0]; i++) {
        int B = dwc[i][0], H = dwc[i][1], Cc = dwc[i][2], k = dwc[i][3], s = dwc[i][4];
        int Ho = op_out_side(H, k, s);
        size_t nx = (size_t)B * H * H * Cc, ny = (size_t)B * Ho * Ho * Cc, nw = (size_t)k * k * Cc;
        float *x = rand_buf(nx, &rng), *w = rand_buf(nw, &rng), *y = rand_buf(ny, &rng);
        float *y2 = rand_buf(ny, &rng), *dx = rand_buf(nx, &rng), *dx2 = rand_buf(nx, &rng);
        float *dw = nas_calloc(nw, sizeof(float)), *dw2 = nas_calloc(nw, sizeof(float));
        float *yd = rand_buf(ny, &rng), *dxd = rand_buf(nx, &rng), *dwd = rand_buf(nw, &rng);
        op_dw_forward_ref(y2, x, w, B, H, H, Cc, k, s);
        op_dw_forward(&cx, y, x, w, B, H, H, Cc, k, s);
        op_dw_backward_ref(dx2, dw2, y2, x, w, B, H, H, Cc, k, s);
        op_dw_backward(&cx, dx, dw, y2, x, w, B, H, H, Cc, k, s);
        double e = fmax(max_rel(y, y2, ny), fmax(max_rel(dx, dx2, nx), max_rel(dw, dw2, nw)));
        double tf, tb, tr, df = 1, db = 1, fl = 2.0 * ny * k * k;
        dn_conv c = {0};
        char dn_note[256] = "oneDNN failed";
        int dn = dn_ok && !dn_conv_create(&env, &c, B, H, Cc, Cc, 1, k, s, x, w, yd, y2, dxd, dwd) &&
                 !dn_conv_fwd(&env, &c) && !dn_conv_bwd(&env, &c) && !dn_conv_dw_to_ours(&env, &c);
        if (dn) {
            double ef = max_rel(yd, y2, ny), eb = fmax(max_rel(dxd, dx2, nx), max_rel(dwd, dw2, nw));
            dn_impl_str(&c, impl, sizeof impl);
            snprintf(dn_note, sizeof dn_note, "oneDNN fwd %.1e, bwd %.1e; %s", ef, eb, impl);
        }
        TIME_IT(0.5, tf, op_dw_forward(&cx, y, x, w, B, H, H, Cc, k, s));
        if (dn)
            TIME_IT(0.5, df, dn_conv_fwd(&env, &c));
        TIME_IT(0.5, tb, op_dw_backward(&cx, dx, dw, y2, x, w, B, H, H, Cc, k, s));
        if (dn)
            TIME_IT(0.5, db, dn_conv_bwd(&env, &c));
        dn_conv_free(&c);
        TIME_IT(0.3, tr, op_dw_forward_ref(y, x, w, B, H, H, Cc, k, s));
        snprintf(name, sizeof name, "depthwise %dx%dx%d k%d s%d", H, H, Cc, k, s);
        snprintf(note, sizeof note, "(oracle fwd %.1f, 1 thread; max rel err vs oracle: ours %.1e, %s)",
                 fl / tr / 1e9, e, dn_note);
        print_row(name, fl / tf / 1e9, 2 * fl / tb / 1e9, dn ? fl / df / 1e9 : 0,
                  dn ? 2 * fl / db / 1e9 : 0, note);
        nas_free(x); nas_free(w); nas_free(y); nas_free(y2); nas_free(dx); nas_free(dx2);
        nas_free(dw); nas_free(dw2); nas_free(yd); nas_free(dxd); nas_free(dwd);
    }
    if (env.st)
        dnnl_stream_destroy(env.st);
    if (env.eng)
        dnnl_engine_destroy(env.eng);
    nas_free(partial);
}

int main(int argc, char **argv)
{
    bench_start(argv);
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
    bench_print_machine(stdout);
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
        /* PyTorch waits for work as its user left it, not as bench_start set it for us */
        snprintf(cmd, sizeof cmd, "%s/usr/bin/python3 bench/bench_train.py %s %d 1 %g",
                 getenv("NAS_WAIT_POLICY_SET") ? "env -u OMP_WAIT_POLICY " : "", path, threads, seconds);
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
    double mo = bench_median(ours, repeats);
    printf("\nnas:     %.1f images/s (median of %d)\n", mo, repeats);
    if (n_theirs) {
        double mt = bench_median(theirs, n_theirs);
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
