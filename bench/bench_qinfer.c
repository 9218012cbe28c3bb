/* bench_qinfer.c — `make bench-qinfer`: how fast nas's own int8 inference is
 * beside its float engine, batch 1, one thread (issue 16: can the int8 path
 * stand for an int8 deployment's latency?).
 *
 * One network (bench-compress's, 28x28x1, untrained weights: the time does
 * not depend on them), quantized and calibrated on 16 made-up images, timed
 * by the benchmark harness (ev_bench_run, CPU-time energy model) in three
 * ways: nas's float engine, ev_qnet's float mode (BN folded, the
 * calibration's path) and ev_qnet's int8 engine. Prints p10 and median
 * latency and the int8 / float-engine ratio. Option: --spec SPEC|PRESET.
 */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"

typedef struct {
    ev_qnet *q;
    ev_net *n;
    const float *x;
    float logits[1000];
    int mode;   /* -1: the float engine; else an ev_qmode */
} qctx;

static nas_status infer_one(void *c_, nas_err *e)
{
    qctx *c = c_;
    return c->mode < 0 ? ev_net_infer(c->n, c->x, 1, c->logits, e)
                       : ev_qnet_infer(c->q, (ev_qmode)c->mode, c->x, 1, c->logits, e);
}

static int die(const char *what, const nas_err *e)
{
    fprintf(stderr, "bench-qinfer: %s: %s\n", what, e->msg);
    return 1;
}

int main(int argc, char **argv)
{
    bench_start(argv);
    nas_err e;
    space_spec s;
    space_net a;
    bench_mbconv28_spec(&s, "bench-qinfer");
    if (argc > 2 && !strcmp(argv[1], "--spec")) {
        if (space_spec_from_arg(argv[2], &s, &e))
            return die(argv[2], &e);
        s.resolution = 28, s.in_ch = 1, s.num_classes = 10;
        space_adapt_strides(&s, 28, 4);
    }
    bench_print_machine(stdout);
    ev_net *n = NULL;
    ev_qnet *q = NULL;
    ev_meter *m = NULL;
    ev_net_opts no = {.batch = 1, .training = 0, .threads = 1, .seed = 1};
    if (space_resolve(&s, &a, &e) || ev_net_create(&a, &no, &n, &e))
        return die("network", &e);
    int nt = ev_net_tensors(n, NULL, 0);
    ev_tensor *t = malloc(sizeof(ev_tensor) * (size_t)nt);
    ev_split sp = {.n = 16, .h = 28, .w = 28, .c = 1};
    sp.images = calloc(16 * 784, sizeof(float));
    sp.labels = calloc(16, 1);
    if (!t || !sp.images || !sp.labels)
        return 1;
    ev_net_tensors(n, t, nt);
    for (int i = 0; i < 16 * 784; i++)
        sp.images[i] = (float)((i * 7919) % 255) / 128.0f - 1;
    ev_quant_opts qo;
    ev_quant_opts_default(&qo);
    qo.images = 16;
    ev_meter_opts mo;
    ev_meter_opts_default(&mo);
    mo.kind = "model";
    if (ev_qnet_create(&a, t, nt, 1, &q, &e) || ev_qnet_calibrate(q, &sp, &qo, &e))
        return die("quantization", &e);
    if (ev_meter_open(&mo, &m, &e))
        return die("meter", &e);
    space_cost cost;
    space_cost_of(&a, NULL, 0, &cost);
    qctx c = {.q = q, .n = n, .x = sp.images};
    static const struct { int mode; const char *name; } ways[] = {
        {-1, "float engine"}, {EV_QMODE_FLOAT, "qnet float (BN folded)"}, {EV_QMODE_INT8, "qnet int8"}};
    double p10[3];
    printf("# %s: %.2fM MACs, batch 1, 1 thread\n%-24s %10s %10s\n", s.name, cost.macs / 1e6, "path", "p10_ms",
           "median_ms");
    for (int w = 0; w < 3; w++) {
        ev_bench_opts bo;
        ev_bench_opts_default(&bo);
        bo.batch = 1, bo.threads = 1, bo.min_seconds = 0.5;
        ev_bench_result br;
        c.mode = ways[w].mode;
        if (ev_bench_run(infer_one, &c, m, &bo, &br, &e))
            return die(ways[w].name, &e);
        p10[w] = br.latency_ms_p10;
        printf("%-24s %10.4f %10.4f\n", ways[w].name, br.latency_ms_p10, br.latency_ms_median);
    }
    printf("int8 / float engine (p10): %.2f\n", p10[2] / p10[0]);
    ev_meter_close(m);
    ev_qnet_free(q);
    ev_net_free(n);
    free(t), free(sp.images), free(sp.labels);
    return 0;
}
