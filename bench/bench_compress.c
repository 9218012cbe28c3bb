/* bench_compress.c — `make bench-compress`: int8 against float32 on
 * Fashion-MNIST, in ONNX Runtime (issue 16's goals).
 *
 * Trains a small MobileNetV2-style network briefly with nas, exports it as
 * float32 ONNX and as int8 QDQ (calibrated on training images), then prints:
 * ORT test accuracy of both over the whole test split (goal: within 1.0
 * point), ORT batch-1 latency int8 / float32 (medians of several
 * ort-measure.js runs taken alternately, side by side; goal <= 0.7), file
 * size int8 / float32 (goal <= 0.3), and how often nas's own int8 engine
 * gives ORT int8's argmax (goal >= 99.5%). Also how many convolutions ORT
 * turned into QLinearConv (its optimised graph), and the machine.
 * Options: --train N (training images, default 20000), --epochs E (2),
 * --calib-images N (256), --calib percentile|minmax, --rounds R (5), --out DIR.
 */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"

#include <math.h>
#include <sys/stat.h>

#define CHUNK 1000

static int die(const char *what, const nas_err *e)
{
    fprintf(stderr, "bench-compress: %s: %s\n", what, e ? e->msg : "failed");
    return 1;
}

/* The test split as NCHW float32 chunk files DIR/test.K.f32 for ort_run.js. */
static int write_chunks(const ev_split *t, const char *dir)
{
    size_t per = (size_t)t->h * t->w * t->c;
    float *buf = malloc(sizeof(float) * per * CHUNK);
    if (!buf)
        return -1;
    for (int k = 0; k * CHUNK < t->n; k++) {
        int B = t->n - k * CHUNK < CHUNK ? t->n - k * CHUNK : CHUNK;
        for (int b = 0; b < B; b++)
            for (int y = 0; y < t->h; y++)
                for (int x = 0; x < t->w; x++)
                    for (int c = 0; c < t->c; c++)
                        buf[b * per + ((size_t)c * t->h + y) * t->w + x] =
                            t->images[((size_t)(k * CHUNK + b)) * per + ((size_t)y * t->w + x) * t->c + c];
        char p[1024];
        snprintf(p, sizeof p, "%s/test.%d.f32", dir, k);
        FILE *f = fopen(p, "wb");
        if (!f || fwrite(buf, sizeof(float), per * B, f) != per * B) {
            if (f)
                fclose(f);
            free(buf);
            return -1;
        }
        fclose(f);
    }
    free(buf);
    return 0;
}

/* ORT's logits of `model` over the test split into lg [n x 10]. */
static int ort_logits(const char *model, const char *tag, const ev_split *t, const char *dir, float *lg)
{
    char *cmd = malloc(65536);
    int len = snprintf(cmd, 65536, "node tests/ort_run.js --threads 1");
    int nk = (t->n + CHUNK - 1) / CHUNK;
    for (int k = 0; k < nk; k++) {
        int B = t->n - k * CHUNK < CHUNK ? t->n - k * CHUNK : CHUNK;
        len += snprintf(cmd + len, 65536 - len, " '%s' '%s/test.%d.f32' %d '%s/%s.%d.out'", model, dir, k, B,
                        dir, tag, k);
    }
    snprintf(cmd + len, 65536 - len, " >/dev/null");
    int rc = system(cmd);
    free(cmd);
    if (rc != 0)
        return -1;
    for (int k = 0; k < nk; k++) {
        int B = t->n - k * CHUNK < CHUNK ? t->n - k * CHUNK : CHUNK;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s.%d.out", dir, tag, k);
        FILE *f = fopen(p, "rb");
        if (!f)
            return -1;
        size_t got = fread(lg + (size_t)k * CHUNK * 10, sizeof(float), (size_t)B * 10, f);
        fclose(f);
        if (got != (size_t)B * 10)
            return -1;
    }
    return 0;
}

static int argmax10(const float *x)
{
    int b = 0;
    for (int k = 1; k < 10; k++)
        if (x[k] > x[b])
            b = k;
    return b;
}

static double accuracy_of(const float *lg, const ev_split *t)
{
    int hit = 0;
    for (int i = 0; i < t->n; i++)
        hit += argmax10(lg + (size_t)i * 10) == t->labels[i];
    return (double)hit / t->n;
}

static double ort_latency(const char *model)
{
    char cmd[2048], line[512];
    double ms = NAN;
    snprintf(cmd, sizeof cmd, "node scripts/ort-measure.js '%s' --threads 1 --repeats 3 --min-seconds 0.4 "
                              "--warmup 50", model);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NAN;
    while (fgets(line, sizeof line, p))
        sscanf(line, "latency_ms=%lf", &ms);
    pclose(p);
    return ms;
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* The node types of ORT's optimised int8 graph (QLinearConv: its int8 kernels). */
static void print_ort_graph(const char *model, const char *dir)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "node -e \"const ort=require(require.resolve('onnxruntime-node',{paths:[process.cwd()]}));"
             "ort.InferenceSession.create('%s',{optimizedModelFilePath:'%s/int8.ort-optimized.onnx',"
             "graphOptimizationLevel:'all',intraOpNumThreads:1}).catch(e=>{console.error(e);process.exit(1)})\" && "
             "/usr/bin/python3 -c \"import onnx,collections;m=onnx.load('%s/int8.ort-optimized.onnx');"
             "c=collections.Counter(n.op_type for n in m.graph.node);"
             "print('# ORT optimised int8 graph: '+' '.join('%%s=%%d'%%kv for kv in sorted(c.items())))\"",
             model, dir, dir);
    if (system(cmd) != 0)
        printf("# ORT optimised int8 graph: could not be written\n");
}

int main(int argc, char **argv)
{
    bench_start(argv);
    int train_n = 20000, epochs = 2, rounds = 5;
    const char *dir = "build/bench/compress";
    ev_quant_opts qo;
    ev_quant_opts_default(&qo);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--train"))
            train_n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--epochs"))
            epochs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--calib-images"))
            qo.images = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--calib"))
            qo.method = !strcmp(argv[i + 1], "minmax") ? EV_CALIB_MINMAX : EV_CALIB_PERCENTILE;
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--out"))
            dir = argv[i + 1];
    }
    if (rounds < 1 || rounds > 32 || epochs < 1 || train_n < 1 || qo.images < 1) {
        fprintf(stderr, "bench-compress: bad option value\n");
        return 2;
    }
    bench_print_machine(stdout);
    nas_err e;
    if (nas_mkdirs(dir, &e) != NAS_OK)
        return die(dir, &e);

    ev_data data;
    if (bench_fashion(train_n, &data, &e) != NAS_OK)
        return die("data", &e);
    space_spec spec;
    space_net arch;
    bench_mbconv28_spec(&spec, "bench-compress");
    if (space_resolve(&spec, &arch, &e) != NAS_OK)
        return die("spec", &e);
    ev_net *net = NULL;
    ev_net_opts no = {.batch = 64, .training = 1, .threads = 0, .seed = 1};
    if (ev_net_create(&arch, &no, &net, &e) != NAS_OK)
        return die("net", &e);
    ev_train_opts to;
    ev_train_opts_default(&to);
    to.epochs = epochs;
    to.batch = 64;
    to.seed = 1;
    ev_train_result tr;
    double t0 = nas_now();
    if (ev_train(net, &data, &to, &tr, &e) != NAS_OK)
        return die("train", &e);
    printf("# trained: %d training images of fashion-mnist, %d epochs, %.0f s; val acc %.4f\n",
           data.train.n, epochs, nas_now() - t0, tr.val_acc);

    char fpath[1024], qpath[1024], calib[256];
    snprintf(fpath, sizeof fpath, "%s/float32.onnx", dir);
    snprintf(qpath, sizeof qpath, "%s/int8.onnx", dir);
    ev_export_opts xo;
    ev_export_opts_default(&xo);
    xo.spec = &spec;
    xo.force = 1;
    if (ev_export_onnx(net, &xo, fpath, &e) != NAS_OK)
        return die("float export", &e);

    int nt = ev_net_tensors(net, NULL, 0);
    ev_tensor *t = malloc(sizeof(ev_tensor) * (size_t)nt);
    ev_net_tensors(net, t, nt);
    ev_qnet *q = NULL;
    t0 = nas_now();
    if (ev_qnet_create(&arch, t, nt, 100, &q, &e) != NAS_OK || ev_qnet_calibrate(q, &data.train, &qo, &e) != NAS_OK)
        return die("calibration", &e);
    printf("# calibration: %s, %.1f s\n", ev_qnet_calibration(q), nas_now() - t0);
    snprintf(calib, sizeof calib, "%s: training images of fashion-mnist", ev_qnet_calibration(q));
    xo.calib_data = calib;
    if (ev_export_onnx_int8(q, &xo, qpath, &e) != NAS_OK)
        return die("int8 export", &e);

    const ev_split *ts = &data.test;
    float *lf = malloc(sizeof(float) * 10 * ts->n), *lq = malloc(sizeof(float) * 10 * ts->n);
    float *ln = malloc(sizeof(float) * 10 * ts->n);
    if (!lf || !lq || !ln || write_chunks(ts, dir) != 0 || ort_logits(fpath, "f32", ts, dir, lf) != 0 ||
        ort_logits(qpath, "int8", ts, dir, lq) != 0)
        return die("ONNX Runtime over the test split", NULL);
    t0 = nas_now();
    size_t per = (size_t)ts->h * ts->w * ts->c;
    for (int b0 = 0; b0 < ts->n; b0 += 100)
        if (ev_qnet_infer(q, EV_QMODE_INT8, ts->images + b0 * per, ts->n - b0 < 100 ? ts->n - b0 : 100,
                          ln + (size_t)b0 * 10, &e) != NAS_OK)
            return die("nas int8", &e);
    double nas_s = nas_now() - t0;
    int agree = 0;
    for (int i = 0; i < ts->n; i++)
        agree += argmax10(ln + (size_t)i * 10) == argmax10(lq + (size_t)i * 10);
    double af = accuracy_of(lf, ts), aq = accuracy_of(lq, ts), an = accuracy_of(ln, ts);

    double lat_f[32], lat_q[32];
    for (int r = 0; r < rounds; r++) {   /* alternately, so load changes hit both alike */
        lat_f[r] = ort_latency(fpath);
        lat_q[r] = ort_latency(qpath);
    }
    double mf = bench_median(lat_f, rounds), mq = bench_median(lat_q, rounds);
    long sf = file_size(fpath), sq = file_size(qpath);
    print_ort_graph(qpath, dir);

    space_cost c;
    space_cost_of(&arch, NULL, 0, &c);
    printf("# network: %d blocks, %.0f params, %.2f M MACs per image (28x28x1)\n", arch.n_blocks, c.params,
           c.macs / 1e6);
    printf("ORT test accuracy (%d images): float32 %.2f%%, int8 %.2f%% (diff %+.2f points; goal within 1.0) %s\n",
           ts->n, 100 * af, 100 * aq, 100 * (aq - af), fabs(aq - af) <= 0.01 ? "ok" : "MISSED");
    printf("ORT batch-1 latency, 1 thread, median of %d alternating runs: float32 %.4f ms, int8 %.4f ms, "
           "ratio %.3f (goal <= 0.7) %s\n", rounds, mf, mq, mq / mf, mq / mf <= 0.7 ? "ok" : "MISSED");
    printf("file size: float32 %ld B, int8 %ld B, ratio %.3f (goal <= 0.3) %s\n", sf, sq, (double)sq / sf,
           (double)sq / sf <= 0.3 ? "ok" : "MISSED");
    printf("nas int8 vs ORT int8: same argmax on %d of %d test images (%.2f%%; goal >= 99.5%%) %s; "
           "nas int8 accuracy %.2f%%, %.1f s for the split\n", agree, ts->n, 100.0 * agree / ts->n,
           agree >= 0.995 * ts->n ? "ok" : "MISSED", 100 * an, nas_s);
    ev_qnet_free(q);
    free(t), free(lf), free(lq), free(ln);
    ev_net_free(net);
    ev_data_free(&data);
    return 0;
}
