/* test_onnx.c — the ONNX export against the runtime that deployments use.
 *
 * For random specs that between them cover every op, kernel, stride,
 * activation, gate, SE, residual, head and fc setting, and for small presets at
 * 32x32, the network is built with random weights and non-trivial batch-norm
 * statistics (set at random, or moved by two training steps), exported with BN
 * folded and kept, checked by Debian's onnx checker (tests/onnx_check.py:
 * full check, strict shape inference, depthwise weight shapes), and run by
 * ONNX Runtime (tests/ort_run.js) on the same random batch of 3 images as
 * nas's own ev_net_infer: logits must agree within rtol 1e-3, atol 1e-5.
 * The checker alone is not enough (it accepts wrong depthwise weights); ORT
 * must run every model. `--portable` exports (ReLU6 without Clip) run in a
 * second runtime too, OpenCV's DNN module (tests/cv_run.py), to the same
 * tolerance. Also: refusal of existing files and of paths outside
 * the output folder, metadata and side files, errors naming the bad tensor,
 * allocation failures at every step of the export, the weights blob, and
 * `nas export RUN` from a run store through to ORT's outputs.
 *
 * The tests call /usr/bin/python3 (Debian's onnx and opencv) and node with the
 * repository's node_modules (scripts/setup.sh installs onnxruntime-node), run
 * from the repository root as `make test` does. */
#include "tests/testutil.h"
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"
#include "tests/netrand.h"
#include "tests/nethelp.h"
#include "runs/runs.h"

#include <math.h>
#include <sys/stat.h>

#define BATCH 3
#define MAX_MODELS 40
#define RTOL 1e-3
#define ATOL 1e-5

/* ---- the models of one run: exported, then checked and run together ----- */

typedef struct {
    char name[64];
    char onnx[512], in[512], out[512];
    int classes;
    float *want;           /* ev_net_infer's logits, BATCH x classes */
} model_case;

typedef struct {
    char dir[256];
    int n;
    model_case m[MAX_MODELS];
} suite;

static suite S;

static int setup_suite(void **state)
{
    (void)state;
    if (!tu_tmpdir(S.dir, sizeof S.dir))
        return -1;
    return 0;
}

static int teardown_suite(void **state)
{
    (void)state;
    for (int i = 0; i < S.n; i++)
        free(S.m[i].want);
    tu_rmtree(S.dir);
    return 0;
}

/* Two training steps leave fc and classifier near their N(0, 0.01) init, and logits
 * near zero would make the comparison empty: scale it up. */
static void scale_classifier(ev_net *net, float k)
{
    ev_tensor t[1024];
    int n = ev_net_tensors(net, t, 1024);
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].name, "classifier.w") != 0 && strcmp(t[i].name, "fc.w") != 0)
            continue;
        float *p = nr_param(net, &t[i]);
        assert_non_null(p);
        for (int j = 0; j < t[i].shape[0] * t[i].shape[1]; j++)
            p[j] *= k;
    }
}

/* Two SGD steps on random images: running statistics then come from real
 * batch statistics, as after training. */
static void train_two_steps(ev_net *net, const space_net *a, nas_pcg32 *r)
{
    int B = 4;
    size_t n = (size_t)B * a->resolution * a->resolution * a->in_ch;
    float *x = malloc(n * sizeof(float));
    uint8_t labels[4];
    assert_non_null(x);
    for (int step = 0; step < 2; step++) {
        for (size_t i = 0; i < n; i++)
            x[i] = nr_urand(r, -2.0f, 2.0f);
        for (int i = 0; i < B; i++)
            labels[i] = (uint8_t)nas_pcg32_bounded(r, (uint32_t)a->num_classes);
        int correct;
        double loss = evn_train_step(net, x, labels, B, 0.1f, r, &correct);
        assert_true(isfinite(loss));
        evn_sgd(net, 0.05f, 0.9f, 1e-4f);
    }
    free(x);
}

/* Builds, perturbs, runs nas's inference on a random batch and exports it;
 * ORT runs later, in one process for all models. */
static void add_case(const char *name, const space_spec *spec, int keep_bn, int train, int opset,
                     int portable, nas_pcg32 *r)
{
    assert_true(S.n < MAX_MODELS);
    model_case *m = &S.m[S.n++];
    space_net a;
    nas_err e;
    if (space_resolve(spec, &a, &e) != NAS_OK)
        fail_msg("%s: %s", name, e.msg);
    ev_net_opts no = {.batch = 4, .training = train, .threads = 1, .seed = nas_pcg32_next(r)};
    ev_net *net = NULL;
    if (ev_net_create(&a, &no, &net, &e) != NAS_OK)
        fail_msg("%s: %s", name, e.msg);
    if (train)
        train_two_steps(net, &a, r);
    else
        assert_true(nr_randomise_stats(net, r) > 0);
    if (train)
        scale_classifier(net, 30.0f);

    int C = a.in_ch, H = a.resolution, K = a.num_classes;
    size_t per = (size_t)C * H * H;
    float *nhwc = malloc(BATCH * per * sizeof(float)), *nchw = malloc(BATCH * per * sizeof(float));
    m->want = malloc((size_t)BATCH * K * sizeof(float));
    assert_true(nhwc && nchw && m->want);
    for (size_t i = 0; i < BATCH * per; i++)
        nhwc[i] = nr_urand(r, -2.0f, 2.0f);
    for (int b = 0; b < BATCH; b++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < H; x++)
                for (int c = 0; c < C; c++)
                    nchw[(size_t)b * per + ((size_t)c * H + y) * H + x] =
                        nhwc[(size_t)b * per + ((size_t)y * H + x) * C + c];
    if (ev_net_infer(net, nhwc, BATCH, m->want, &e) != NAS_OK)
        fail_msg("%s: %s", name, e.msg);

    snprintf(m->name, sizeof m->name, "%s", name);
    m->classes = K;
    char dir[sizeof S.dir];
    memcpy(dir, S.dir, sizeof dir);
    snprintf(m->onnx, sizeof m->onnx, "%s/%s.onnx", dir, name);
    snprintf(m->in, sizeof m->in, "%s/%s.in.f32", dir, name);
    snprintf(m->out, sizeof m->out, "%s/%s.out.f32", dir, name);
    FILE *f = fopen(m->in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(nchw, sizeof(float), BATCH * per, f), BATCH * per);
    fclose(f);

    ev_export_opts o;
    ev_export_opts_default(&o);
    o.spec = spec;
    o.keep_bn = keep_bn;
    o.opset = opset;
    o.portable = portable;
    o.out_dir = S.dir;
    o.accuracy = 0.5;
    o.accuracy_split = "random weights (test)";
    if (ev_export_onnx(net, &o, m->onnx, &e) != NAS_OK)
        fail_msg("%s: export: %s", name, e.msg);
    free(nhwc);
    free(nchw);
    ev_net_free(net);
}

/* Runs a runtime's script (ort_run.js's contract) on models [from, S.n). */
static void run_runtime(int from, const char *prog, const char *what)
{
    size_t cap = 256 + (size_t)(S.n - from) * 2048;
    char *cmd = malloc(cap);
    assert_non_null(cmd);
    int len = snprintf(cmd, cap, "%s", prog);
    for (int i = from; i < S.n; i++)
        len += snprintf(cmd + len, cap - len, " '%s' '%s' %d '%s'", S.m[i].onnx, S.m[i].in, BATCH,
                        S.m[i].out);
    len += snprintf(cmd + len, cap - len, " >/dev/null");
    if (system(cmd) != 0)
        fail_msg("%s failed on a model (its message is above; scripts/setup.sh installs it)", what);
    free(cmd);
}

/* The runtime's logits (in each model's .out.f32) against nas's own. */
static void compare_logits(int from, const char *what)
{
    for (int i = from; i < S.n; i++) {
        const model_case *m = &S.m[i];
        size_t n = (size_t)BATCH * m->classes;
        float *got = malloc(n * sizeof(float));
        FILE *f = fopen(m->out, "rb");
        assert_non_null(f);
        assert_int_equal(fread(got, sizeof(float), n + 1, f), n);
        fclose(f);
        double scale = 0;
        for (size_t j = 0; j < n; j++) {
            double d = fabs((double)got[j] - m->want[j]);
            double lim = ATOL + RTOL * fabs(m->want[j]);
            if (fabs(m->want[j]) > scale)
                scale = fabs(m->want[j]);
            if (!(d <= lim))
                fail_msg("%s: logit %zu (image %zu): %s %.7g, nas %.7g (|diff| %.3g > %.3g)",
                         m->name, j % m->classes, j / m->classes, what, got[j], m->want[j], d, lim);
        }
        /* Logits of zero would make the comparison empty. */
        if (scale < 0.05)
            fail_msg("%s: logits are all near zero (max %.3g): the test proves nothing", m->name,
                     scale);
        free(got);
    }
}

/* Runs the checker and ORT on models [from, S.n) and compares the logits. */
static void check_and_compare(int from)
{
    size_t cap = 256 + (size_t)(S.n - from) * 600;
    char *cmd = malloc(cap);
    assert_non_null(cmd);
    int len = snprintf(cmd, cap, "/usr/bin/python3 tests/onnx_check.py --meta nas.spec "
                                 "--meta nas.version --meta nas.accuracy >/dev/null");
    for (int i = from; i < S.n; i++)
        len += snprintf(cmd + len, cap - len, " '%s'", S.m[i].onnx);
    if (system(cmd) != 0)
        fail_msg("onnx_check.py rejected a model (its message is above)");
    free(cmd);
    run_runtime(from, "node tests/ort_run.js --threads 1", "ONNX Runtime (onnxruntime-node)");
    compare_logits(from, "ORT");
}

/* ---- random specs covering the space --------------------------------------- */

static void random_spec(nas_pcg32 *r, space_spec *s, int i)
{
    static const int kernels[3] = {3, 5, 7};
    static const double expands[3] = {1, 3, 6};
    memset(s, 0, sizeof *s);
    s->resolution = 32;
    s->in_ch = i % 2 ? 3 : 1;
    s->num_classes = 10;
    s->stem_ch = 8 + 8 * (int)nas_pcg32_bounded(r, 2);
    s->stem_kernel = (int[]){3, 1, 5, 7}[i % 4];
    s->stem_stride = 1 + (int)nas_pcg32_bounded(r, 2);
    s->stem_act = (space_act)(i % SPACE_ACT_COUNT);
    s->n_stages = 2 + (int)nas_pcg32_bounded(r, 2);
    for (int k = 0; k < s->n_stages; k++) {
        space_stage *st = &s->stages[k];
        /* Cycle kernels, strides, activations and SE through stages and specs,
         * so that every combination the test counts appears. */
        st->kernel = kernels[(i + k) % 3];
        st->expand = expands[(i + 2 * k) % 3];
        st->out_ch = 8 * (1 + (int)nas_pcg32_bounded(r, 3));
        st->repeats = 1 + (int)nas_pcg32_bounded(r, 2);
        st->stride = 1 + (i + k) % 2;
        st->se_ratio = (i + k) % 3 == 0 ? 0.0 : 0.25;
        st->act = (space_act)((i + k + 1) % SPACE_ACT_COUNT);
    }
    s->head_ch = i % 3 == 2 ? 0 : 32;
    s->head_act = (space_act)((i + 2) % SPACE_ACT_COUNT);
    s->fc_ch = i % 2 ? 24 : 0;
    s->fc_act = (space_act)((i + 3) % SPACE_ACT_COUNT);
    s->se_base = i % 2 ? SPACE_SE_OF_INPUT : SPACE_SE_OF_EXPANDED;
    s->se_act = (space_act)((i + 1) % SPACE_ACT_COUNT);
    s->se_gate = (i / 2) % 2 ? SPACE_GATE_HSIGMOID : SPACE_GATE_SIGMOID;
    s->dropout = 0.2;   /* must not appear in the exported graph */
}

static void random_specs_match_ort(void **state)
{
    (void)state;
    nas_pcg32 r;
    nas_pcg32_seed(&r, 7, 1);
    int from = S.n;
    /* What the specs cover between them, counted on the resolved nets. */
    int kern[8] = {0}, stride[3] = {0}, act[SPACE_ACT_COUNT] = {0}, se[2] = {0}, res[2] = {0};
    int fc[2] = {0}, head[2] = {0}, gate[2] = {0}, expand[2] = {0}, stemk[8] = {0};
    for (int i = 0; i < 12; i++) {
        space_spec s;
        space_net a;
        nas_err e;
        random_spec(&r, &s, i);
        if (space_resolve(&s, &a, &e) != NAS_OK)
            fail_msg("random spec %d: %s", i, e.msg);
        for (int b = 0; b < a.n_blocks; b++) {
            const space_block *bl = &a.blocks[b];
            kern[bl->kernel]++;
            stride[bl->stride]++;
            act[bl->act]++;
            se[bl->se_ch > 0]++;
            res[bl->residual]++;
            expand[bl->exp_ch != bl->in_ch]++;
            if (bl->se_ch > 0)
                gate[a.se_gate]++;
        }
        act[a.stem_act]++;
        stemk[a.stem_kernel]++;
        fc[a.fc_ch > 0]++;
        head[a.head_ch > 0]++;
        char name[32];
        snprintf(name, sizeof name, "random%02d", i);
        /* Alternate: BN folded or kept; statistics set or trained; opset 14 or 17. */
        add_case(name, &s, i % 3 == 1, i % 2, i % 4 == 3 ? 14 : 0, 0, &r);
    }
    for (int k = 3; k <= 7; k += 2)
        assert_true(kern[k] > 0 && stemk[k] > 0);
    assert_true(stemk[1] > 0);
    assert_true(stride[1] > 0 && stride[2] > 0);
    for (int k = 0; k < SPACE_ACT_COUNT; k++)
        assert_true(act[k] > 0);
    assert_true(se[0] && se[1] && res[0] && res[1] && fc[0] && fc[1] && head[0] && head[1]);
    assert_true(gate[SPACE_GATE_SIGMOID] && gate[SPACE_GATE_HSIGMOID] && expand[0] && expand[1]);
    check_and_compare(from);
}

/* What the search itself emits: genomes sampled from the space at 32x32, with
 * batch-norm statistics from two training steps. (With statistics set at
 * random, deep sampled nets amplify activations until fp32 summation order
 * alone moves logits by more than rtol 1e-3; ORT with and without its graph
 * optimisations differs as much, so that is no export error.) */
static void genome_sampled_specs_match_ort(void **state)
{
    (void)state;
    nas_pcg32 r;
    nas_pcg32_seed(&r, 123, 4);
    space_config cfg;
    space_config_default(&cfg, 32, 3, 10);
    int from = S.n;
    for (int i = 0; i < 6; i++) {
        space_genome g;
        space_spec s;
        nas_err e;
        space_genome_sample(&cfg, &r, &g);
        if (space_genome_to_spec(&cfg, &g, &s, &e) != NAS_OK)
            fail_msg("genome %d: %s", i, e.msg);
        char name[32];
        snprintf(name, sizeof name, "genome%d", i);
        add_case(name, &s, i % 2, 1, 0, 0, &r);
    }
    check_and_compare(from);
}

/* Presets at 32x32 with 10 classes, narrowed where they are big, so the suite
 * stays fast; the block structure (SE, h-swish, swish, fc) is the published one. */
static void presets_match_ort(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        double width;
        int keep_bn;
    } ps[] = {
        {"mobilenetv2", 0.5, 0},
        {"mobilenetv3-small", 1.0, 0},
        {"mobilenetv3-large", 0.5, 1},
        {"efficientnet-b0", 0.5, 0},
    };
    nas_pcg32 r;
    nas_pcg32_seed(&r, 11, 3);
    int from = S.n;
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        space_spec s;
        nas_err e;
        assert_int_equal(space_preset(ps[i].name, &s, &e), NAS_OK);
        s.num_classes = 10;
        if (ps[i].width != 1.0)
            space_scale(&s, ps[i].width, 1.0);
        space_adapt_strides(&s, 32, 4);
        add_case(ps[i].name, &s, ps[i].keep_bn, 0, 0, 0, &r);
    }
    check_and_compare(from);
}

/* Whether a file's bytes hold a string: an op type is a plain string in ONNX's
 * protobuf, and the portable metadata does not name Clip. */
static int file_has(const char *path, const char *needle)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    size_t n = (size_t)st.st_size, k = strlen(needle);
    char *buf = malloc(n + 1);
    FILE *f = fopen(path, "rb");
    assert_non_null(buf);
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, n, f), n);
    fclose(f);
    int found = 0;
    for (size_t i = 0; !found && i + k <= n; i++)
        found = !memcmp(buf + i, needle, k);
    free(buf);
    return found;
}

/* The second runtime: OpenCV's DNN module (Debian's 4.6), which refuses
 * opset-11 Clip, loads the --portable export. Random specs (every activation,
 * gate, SE, residual, head and fc setting, BN folded and kept) and the presets,
 * run by the checker, ORT and OpenCV, each against nas's logits. */
static void portable_models_match_ort_and_opencv(void **state)
{
    (void)state;
    nas_pcg32 r;
    nas_pcg32_seed(&r, 29, 5);
    int from = S.n, act[SPACE_ACT_COUNT] = {0};
    for (int i = 0; i < 6; i++) {
        space_spec s;
        random_spec(&r, &s, i);
        act[s.stem_act]++;
        for (int k = 0; k < s.n_stages; k++)
            act[s.stages[k].act]++;
        char name[32];
        snprintf(name, sizeof name, "portable%02d", i);
        add_case(name, &s, i % 3 == 1, i % 2, 0, 1, &r);
    }
    assert_true(act[SPACE_ACT_RELU6] > 0);
    static const char *presets[] = {"mobilenetv2", "mobilenetv3-small", "efficientnet-b0"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        space_spec s;
        nas_err e;
        assert_int_equal(nh_preset_32px(presets[i], &s, &e), NAS_OK);
        char name[48];
        snprintf(name, sizeof name, "portable-%s", presets[i]);
        add_case(name, &s, 0, 0, 0, 1, &r);
    }
    for (int i = from; i < S.n; i++)
        if (file_has(S.m[i].onnx, "Clip"))
            fail_msg("%s: a portable model with a Clip node", S.m[i].name);
    check_and_compare(from);
    run_runtime(from, "/usr/bin/python3 tests/cv_run.py", "OpenCV DNN (tests/cv_run.py)");
    compare_logits(from, "OpenCV");
}

/* ---- files, refusals, metadata --------------------------------------------- */

typedef struct {
    space_spec spec;
    space_net arch;
    ev_net *net;
} small_net;

static void small_net_make(small_net *sn)
{
    nas_pcg32 r;
    nas_pcg32_seed(&r, 3, 3);
    random_spec(&r, &sn->spec, 5);
    nas_err e;
    assert_int_equal(space_resolve(&sn->spec, &sn->arch, &e), NAS_OK);
    ev_net_opts no = {.batch = 1, .threads = 1, .seed = 1};
    assert_int_equal(ev_net_create(&sn->arch, &no, &sn->net, &e), NAS_OK);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void refuses_existing_files_and_outside_paths(void **state)
{
    (void)state;
    small_net sn;
    small_net_make(&sn);
    char dir[300], path[512], spec_p[512], card_p[512];
    snprintf(dir, sizeof dir, "%s/refuse", S.dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    ev_export_sidecar_paths(path, spec_p, card_p, sizeof spec_p);
    assert_string_equal(strrchr(spec_p, '/'), "/m.spec.json");
    assert_string_equal(strrchr(card_p, '/'), "/m.model-card.md");

    ev_export_opts o;
    ev_export_opts_default(&o);
    o.spec = &sn.spec;
    o.out_dir = dir;
    nas_err e;
    assert_int_equal(ev_export_onnx(sn.net, &o, path, &e), NAS_OK);
    assert_true(exists(path) && exists(spec_p) && exists(card_p));

    /* The model exists: refused, naming it and --force. */
    assert_int_equal(ev_export_onnx(sn.net, &o, path, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "--force"));
    /* Only a side file exists: refused too, naming it. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(ev_export_onnx(sn.net, &o, path, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "m.spec.json"));
    assert_false(exists(path));
    /* With force: written. */
    o.force = 1;
    assert_int_equal(ev_export_onnx(sn.net, &o, path, &e), NAS_OK);
    assert_true(exists(path));
    o.force = 0;

    /* Outside the output folder (a sibling, and through ..): refused. */
    char outside[512];
    snprintf(outside, sizeof outside, "%s/../outside.onnx", dir);
    assert_int_equal(ev_export_onnx(sn.net, &o, outside, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "outside the output folder"));
    assert_false(exists(outside));
    snprintf(outside, sizeof outside, "%s/elsewhere.onnx", S.dir);
    assert_int_equal(ev_export_onnx(sn.net, &o, outside, &e), NAS_EINVAL);
    /* A folder whose name merely starts with the output folder's is outside too. */
    char twin[512];
    snprintf(twin, sizeof twin, "%s-twin", dir);
    assert_int_equal(mkdir(twin, 0755), 0);
    snprintf(outside, sizeof outside, "%.400s/m.onnx", twin);
    assert_int_equal(ev_export_onnx(sn.net, &o, outside, &e), NAS_EINVAL);
    /* ... unless forced. */
    o.force = 1;
    assert_int_equal(ev_export_onnx(sn.net, &o, outside, &e), NAS_OK);
    assert_true(exists(outside));
    /* A subfolder is inside. */
    o.force = 0;
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof sub, "%s/sub/m.onnx", dir);
    assert_int_equal(ev_export_onnx(sn.net, &o, sub, &e), NAS_OK);

    /* Bad opsets are refused before anything is written. */
    o.opset = 13;
    snprintf(sub, sizeof sub, "%s/sub/m13.onnx", dir);
    assert_int_equal(ev_export_onnx(sn.net, &o, sub, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "opset 13"));
    assert_false(exists(sub));
    ev_net_free(sn.net);
}

static void metadata_and_side_files(void **state)
{
    (void)state;
    small_net sn;
    small_net_make(&sn);
    char path[400], spec_p[400], card_p[400];
    snprintf(path, sizeof path, "%s/meta.onnx", S.dir);
    ev_export_sidecar_paths(path, spec_p, card_p, sizeof spec_p);
    ev_export_opts o;
    ev_export_opts_default(&o);
    o.spec = &sn.spec;
    o.accuracy = 0.9731;
    o.accuracy_split = "test split of mnist (1501 images)";
    o.trained_on = "mnist: 8499 images, 3 epochs, batch 64, seed 1";
    o.pred_latency_ms = 0.42;
    o.pred_energy_mj = 1.5;
    o.pred_source = "predictor:xgboost@abc123";
    o.meas_latency_ms = 0.5;
    o.meas_latency_source = "nas engine, batch 1, 1 thread, median of 5";
    o.meas_energy_mj = 1.7;
    o.meas_energy_source = "model:cpu-time";
    o.meas_energy_quality = "estimated";
    o.run_id = "run-7";
    o.candidate = "12";
    o.norm_channels = 3;
    for (int c = 0; c < 3; c++) {
        o.norm_mean[c] = 0.25f * (c + 1);
        o.norm_std[c] = 0.5f;
    }
    nas_err e;
    assert_int_equal(ev_export_onnx(sn.net, &o, path, &e), NAS_OK);

    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/onnx_check.py '%s' --meta nas.spec --meta nas.version "
             "--meta nas.accuracy --meta nas.accuracy.source --meta nas.trained_on "
             "--meta nas.latency_ms.predicted --meta nas.energy_mj.predicted "
             "--meta nas.predicted.source --meta nas.latency_ms.measured "
             "--meta nas.latency_ms.measured.source --meta nas.energy_mj "
             "--meta nas.energy_mj.source --meta nas.energy_quality "
             "--meta nas.run --meta nas.candidate --meta nas.batch_norm --meta nas.input_mean "
             "--meta nas.input_std >/dev/null",
             path);
    assert_int_equal(system(cmd), 0);
    /* The metadata values, read back by the reference library. */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import onnx,json,sys; m=onnx.load('%s'); d={p.key:p.value for p in "
             "m.metadata_props}; s=json.loads(d['nas.spec']); "
             "sys.exit(0 if d['nas.accuracy']=='0.9731' and d['nas.energy_quality']=="
             "'estimated' and not any(k.startswith('nas.energy_mj.measured') for k in d) and d['nas.version']=='%s' and d['nas.input_mean']=='0.25,0.5,0.75' and s['num_classes']==10 and m.producer_name=='nas' "
             "else 1)\"",
             path, NAS_VERSION);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import onnx; m=onnx.load('%s'); print({p.key:p.value[:60] "
                 "for p in m.metadata_props})\"",
                 path);
        assert_int_equal(system(cmd), 0);
        fail_msg("metadata values differ from what was passed (printed above)");
    }

    /* The spec file loads back to the same spec. */
    space_spec back;
    assert_int_equal(space_spec_load(spec_p, &back, &e), NAS_OK);
    char *j1 = space_spec_to_json(&sn.spec, 0), *j2 = space_spec_to_json(&back, 0);
    assert_string_equal(j1, j2);
    nas_free(j1);
    nas_free(j2);

    /* The model card states the figures and their sources. */
    char *card;
    size_t len;
    assert_int_equal(nas_read_file(card_p, &card, &len, &e), NAS_OK);
    assert_non_null(strstr(card, "97.31%"));
    assert_non_null(strstr(card, "test split of mnist (1501 images)"));
    assert_non_null(strstr(card, "8499 images"));
    assert_non_null(strstr(card, "model:cpu-time (estimated)"));
    /* an estimate is never called measured */
    assert_non_null(strstr(card, "| energy per inference, estimated | 1.7 mJ |"));
    assert_null(strstr(card, "energy per inference, measured"));
    assert_non_null(strstr(card, "predictor:xgboost@abc123"));
    assert_non_null(strstr(card, "meta.onnx"));
    assert_non_null(strstr(card, "mean 0.2500, 0.5000, 0.7500; std 0.5000, 0.5000, 0.5000"));
    nas_free(card);
    ev_net_free(sn.net);
}

static void missing_or_misshapen_tensors_are_named(void **state)
{
    (void)state;
    small_net sn;
    small_net_make(&sn);
    ev_tensor t[512];
    int n = ev_net_tensors(sn.net, t, 512);
    assert_true(n > 10 && n <= 512);
    ev_export_opts o;
    ev_export_opts_default(&o);
    o.spec = &sn.spec;
    o.force = 1;
    char path[400];
    snprintf(path, sizeof path, "%s/bad.onnx", S.dir);
    nas_err e;
    assert_int_equal(ev_export_onnx_tensors(&sn.arch, t, n, &o, path, &e), NAS_OK);
    assert_int_equal(unlink(path), 0);

    int dw = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, "b1.dw.conv"))
            dw = i;
    assert_true(dw >= 0);
    ev_tensor keep = t[dw];
    snprintf(t[dw].name, sizeof t[dw].name, "b1.dw.renamed");
    assert_int_equal(ev_export_onnx_tensors(&sn.arch, t, n, &o, path, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "'b1.dw.conv'"));
    t[dw] = keep;
    t[dw].shape[2] += 1;
    assert_int_equal(ev_export_onnx_tensors(&sn.arch, t, n, &o, path, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "'b1.dw.conv'"));
    t[dw] = keep;
    t[dw].layout = "KKIO";
    assert_int_equal(ev_export_onnx_tensors(&sn.arch, t, n, &o, path, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "layout 'KKIO', expected 'KKC'"));
    assert_false(exists(path));
    ev_net_free(sn.net);
}

static void allocation_failures_leak_nothing(void **state)
{
    (void)state;
    small_net sn;
    small_net_make(&sn);
    ev_export_opts o;
    ev_export_opts_default(&o);
    o.spec = &sn.spec;
    o.force = 1;
    o.sidecars = 0;
    char path[400];
    snprintf(path, sizeof path, "%s/oom.onnx", S.dir);
    size_t live = nas_alloc_live();
    int failed = 0, k;
    for (k = 1; k < 200; k++) {
        nas_err e;
        nas_alloc_fail_at(k);
        nas_status st = ev_export_onnx(sn.net, &o, path, &e);
        nas_alloc_fail_at(0);
        assert_int_equal(nas_alloc_live(), live);
        if (st == NAS_OK)
            break;
        assert_int_equal(st, NAS_ENOMEM);
        assert_non_null(strstr(e.msg, "out of memory"));
        failed++;
    }
    assert_true(failed >= 3);   /* tensor list, spec JSON, arena, packing buffer */
    assert_true(k < 200);
    ev_net_free(sn.net);
}


/* ---- weights blob and `nas export RUN` ------------------------------------- */

static void weights_round_trip_bit_for_bit(void **state)
{
    (void)state;
    small_net a, b;
    small_net_make(&a);
    nas_pcg32 r;
    nas_pcg32_seed(&r, 5, 5);
    assert_true(nr_randomise_stats(a.net, &r) > 0);
    ev_net_opts no = {.batch = 1, .threads = 1, .seed = 99};   /* other initial weights */
    nas_err e;
    b.spec = a.spec;
    b.arch = a.arch;
    assert_int_equal(ev_net_create(&b.arch, &no, &b.net, &e), NAS_OK);
    size_t n_in = (size_t)a.arch.resolution * a.arch.resolution * a.arch.in_ch;
    float *x = malloc(n_in * sizeof(float)), ya[10], yb[10];
    for (size_t i = 0; i < n_in; i++)
        x[i] = nr_urand(&r, -1, 1);
    assert_int_equal(ev_net_infer(a.net, x, 1, ya, &e), NAS_OK);
    assert_int_equal(ev_net_infer(b.net, x, 1, yb, &e), NAS_OK);
    assert_memory_not_equal(ya, yb, sizeof ya);

    void *blob;
    size_t len;
    assert_int_equal(ev_net_weights_pack(a.net, &blob, &len, &e), NAS_OK);
    assert_int_equal(ev_net_weights_unpack(b.net, blob, len, &e), NAS_OK);
    assert_int_equal(ev_net_infer(b.net, x, 1, yb, &e), NAS_OK);
    assert_memory_equal(ya, yb, sizeof ya);

    /* A flipped byte, a truncated blob, another architecture: refused, named. */
    uint8_t *bytes = blob;
    bytes[len / 2] ^= 0x40;
    assert_int_equal(ev_net_weights_unpack(b.net, blob, len, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "checksum"));
    bytes[len / 2] ^= 0x40;
    assert_int_equal(ev_net_weights_unpack(b.net, blob, len - 9, &e), NAS_EINVAL);
    space_spec other = a.spec;
    other.stages[0].out_ch += 8;
    space_net oa;
    ev_net *on = NULL;
    assert_int_equal(space_resolve(&other, &oa, &e), NAS_OK);
    assert_int_equal(ev_net_create(&oa, &no, &on, &e), NAS_OK);
    assert_int_equal(ev_net_weights_unpack(on, blob, len, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "tensor 'b0."));
    ev_net_free(on);
    nas_free(blob);
    free(x);
    ev_net_free(a.net);
    ev_net_free(b.net);
}

/* A run in a store with one trained candidate whose weights were kept:
 * `nas export RUN` writes it, and ORT gives the stored network's outputs. */
static void cli_export_run_from_store(void **state)
{
    (void)state;
    char dir[sizeof S.dir];
    memcpy(dir, S.dir, sizeof dir);
    char db_path[512], out[512], cmd[2048];
    snprintf(db_path, sizeof db_path, "%s/runs.db", dir);
    snprintf(out, sizeof out, "%s/export", dir);
    runs_db *db = NULL;
    nas_err e;
    assert_int_equal(runs_open(db_path, RUNS_OPEN_CREATE, &db, &e), NAS_OK);
    /* the shape `nas search` saves, normalisation included */
    runs_new_run nr = {.name = "onnxtest", .settings_json = "{\"command\": \"search\", \"settings\": "
                       "{\"data\": \"mnist\", \"epochs\": 2, \"subset\": 5000, \"batch\": 64}, "
                       "\"normalisation\": {\"mean\": [0.13], \"std\": [0.31]}}",
                       .seed = 4, .hardware = "test", .meter = "model:cpu-time"};
    int64_t run, ids[2];
    assert_int_equal(runs_run_create(db, &nr, &run, &e), NAS_OK);

    small_net sn;
    small_net_make(&sn);
    nas_pcg32 r;
    nas_pcg32_seed(&r, 8, 8);
    assert_true(nr_randomise_stats(sn.net, &r) > 0);
    char *spec_json = space_spec_to_json(&sn.spec, 0);
    for (int k = 0; k < 2; k++) {
        runs_new_cand c = {.seq = -1, .genome = k ? "1.2" : "1.1", .spec_json = spec_json,
                           .pred_latency_ms = runs_fig_make(0.3, "xgboost", "predicted"),
                           .pred_energy_mj = runs_fig_make(2.0, "xgboost", "predicted"),
                           .params = NAN, .macs = NAN};
        assert_int_equal(runs_cand_add(db, run, &c, &ids[k], NULL, NULL, &e), NAS_OK);
        assert_int_equal(runs_cand_start(db, ids[k], NULL, &e), NAS_OK);
        runs_result res;
        runs_result_init(&res);
        res.accuracy = k ? 0.80 : 0.95;
        res.reward = res.accuracy;
        res.latency_ms = runs_fig_make(0.4, "clock", "measured");
        res.energy_mj = runs_fig_make(2.2, "model:cpu-time", "estimated");
        assert_int_equal(runs_cand_finish(db, ids[k], &res, NULL, &e), NAS_OK);
    }
    /* Only the best candidate's weights were kept. */
    void *blob;
    size_t len;
    assert_int_equal(ev_net_weights_pack(sn.net, &blob, &len, &e), NAS_OK);
    assert_int_equal(runs_weights_put(db, ids[0], blob, len, &e), NAS_OK);
    nas_free(blob);
    runs_close(db);

    char *stdout_text = NULL;
    snprintf(cmd, sizeof cmd, "export onnxtest --db '%s' --out '%s' --top 1 --json 2>/dev/null", db_path, out);
    assert_int_equal(tu_run_nas(cmd, &stdout_text), 0);
    char onnx[700];
    /* named by the candidate's number in the run (its seq, 0), not the store's row id */
    snprintf(onnx, sizeof onnx, "%s/onnxtest-c0.onnx", out);
    assert_non_null(strstr(stdout_text, onnx));
    free(stdout_text);
    char spec_p[700], card_p[700];
    ev_export_sidecar_paths(onnx, spec_p, card_p, sizeof spec_p);
    assert_true(exists(spec_p) && exists(card_p));
    char *card;
    assert_int_equal(nas_read_file(card_p, &card, &len, &e), NAS_OK);
    assert_non_null(strstr(card, "95.00%"));
    assert_non_null(strstr(card, "data mnist, 2 epochs on 5000 training images, batch 64"));
    assert_non_null(strstr(card, "model:cpu-time (estimated)"));
    assert_non_null(strstr(card, "mean 0.1300; std 0.3100"));
    assert_non_null(strstr(card, "From run `onnxtest`, candidate 0."));
    nas_free(card);

    /* Again: refused (the files exist), exit 2; with --force: written. */
    snprintf(cmd, sizeof cmd, "export onnxtest --db '%s' --out '%s' 2>/dev/null", db_path, out);
    assert_int_equal(tu_run_nas(cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "export onnxtest --db '%s' --out '%s' --force >/dev/null 2>&1",
             db_path, out);
    assert_int_equal(tu_run_nas(cmd, NULL), 0);
    /* The second candidate (number 1 in the report) has no stored weights: an
     * error that says so; one the run does not have is named. */
    snprintf(cmd, sizeof cmd, "export onnxtest --db '%s' --out '%s' --candidate 1 2>&1", db_path, out);
    char *msg = NULL;
    assert_int_equal(tu_run_nas(cmd, &msg), 2);
    assert_non_null(strstr(msg, "no stored weights"));
    free(msg);
    snprintf(cmd, sizeof cmd, "export onnxtest --db '%s' --out '%s' --candidate 2 2>&1", db_path, out);
    assert_int_equal(tu_run_nas(cmd, &msg), 2);
    assert_non_null(strstr(msg, "no candidate 2"));
    free(msg);

    /* ORT on the exported file gives the stored network's outputs. */
    assert_true(S.n < MAX_MODELS);
    model_case *m = &S.m[S.n++];
    snprintf(m->name, sizeof m->name, "store-export");
    snprintf(m->onnx, sizeof m->onnx, "%.500s", onnx);
    snprintf(m->in, sizeof m->in, "%s/store.in.f32", dir);
    snprintf(m->out, sizeof m->out, "%s/store.out.f32", dir);
    int H = sn.arch.resolution, C = sn.arch.in_ch;
    size_t per = (size_t)H * H * C;
    float *nhwc = malloc(BATCH * per * sizeof(float)), *nchw = malloc(BATCH * per * sizeof(float));
    m->classes = sn.arch.num_classes;
    m->want = malloc((size_t)BATCH * m->classes * sizeof(float));
    for (size_t i = 0; i < BATCH * per; i++)
        nhwc[i] = nr_urand(&r, -2, 2);
    for (int b = 0; b < BATCH; b++)
        for (int p = 0; p < H * H; p++)
            for (int c = 0; c < C; c++)
                nchw[(size_t)b * per + (size_t)c * H * H + p] = nhwc[(size_t)b * per + (size_t)p * C + c];
    ev_net_free(sn.net);
    ev_net_opts no = {.batch = BATCH, .threads = 1, .seed = 1};
    assert_int_equal(ev_net_create(&sn.arch, &no, &sn.net, &e), NAS_OK);
    /* The same weights, from a fresh net: load them back from the store's blob. */
    assert_int_equal(runs_open(db_path, RUNS_OPEN_READONLY, &db, &e), NAS_OK);
    int found;
    assert_int_equal(runs_weights_get(db, ids[0], &blob, &len, &found, &e), NAS_OK);
    assert_true(found);
    assert_int_equal(ev_net_weights_unpack(sn.net, blob, len, &e), NAS_OK);
    nas_free(blob);
    runs_close(db);
    assert_int_equal(ev_net_infer(sn.net, nhwc, BATCH, m->want, &e), NAS_OK);
    FILE *f = fopen(m->in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(nchw, sizeof(float), BATCH * per, f), BATCH * per);
    fclose(f);
    check_and_compare(S.n - 1);
    free(nhwc);
    free(nchw);
    nas_free(spec_json);
    ev_net_free(sn.net);
}

/* The measuring command the predictor calls (--measure-cmd 'scripts/ort-measure.sh
 * {spec}'): exports the spec untrained and prints ORT's latency and an estimated
 * energy as key=value lines. */
static void ort_measure_script_prints_the_contract(void **state)
{
    (void)state;
    char dir[sizeof S.dir];
    memcpy(dir, S.dir, sizeof dir);
    char spec_path[512], cmd[1400];
    snprintf(spec_path, sizeof spec_path, "%s/measure.spec.json", dir);
    space_spec s;
    nas_err e;
    assert_int_equal(space_preset("mobilenetv3-small", &s, &e), NAS_OK);
    s.num_classes = 10;
    space_scale(&s, 0.5, 1.0);
    space_adapt_strides(&s, 32, 4);
    char *json = space_spec_to_json(&s, 1);
    assert_int_equal(nas_write_file_atomic(spec_path, json, strlen(json), &e), NAS_OK);
    nas_free(json);
    snprintf(cmd, sizeof cmd, "NAS_BIN='%s' scripts/ort-measure.sh '%s' --repeats 2 --min-seconds 0.05 "
             "--warmup 2", tu_nas_bin(), spec_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    double lat = 0, en = 0;
    int est = 0;
    while (fgets(line, sizeof line, p)) {
        sscanf(line, "latency_ms=%lf", &lat);
        sscanf(line, "energy_mj=%lf", &en);
        est += !strcmp(line, "energy_quality=estimated\n");
    }
    assert_int_equal(pclose(p), 0);
    /* A small net at 32x32: well under a second, well over a microsecond. */
    assert_true(lat > 0.001 && lat < 1000);
    assert_true(en > 0);
    assert_int_equal(est, 1);
    /* A spec that is not one: the exporter's message, a failing exit. */
    snprintf(cmd, sizeof cmd, "NAS_BIN='%s' scripts/ort-measure.sh /nonexistent.json 2>/dev/null",
             tu_nas_bin());
    assert_int_not_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_specs_match_ort),
        cmocka_unit_test(genome_sampled_specs_match_ort),
        cmocka_unit_test(presets_match_ort),
        cmocka_unit_test(portable_models_match_ort_and_opencv),
        cmocka_unit_test(refuses_existing_files_and_outside_paths),
        cmocka_unit_test(metadata_and_side_files),
        cmocka_unit_test(missing_or_misshapen_tensors_are_named),
        cmocka_unit_test(allocation_failures_leak_nothing),
        cmocka_unit_test(weights_round_trip_bit_for_bit),
        cmocka_unit_test(cli_export_run_from_store),
        cmocka_unit_test(ort_measure_script_prints_the_contract),
    };
    return cmocka_run_group_tests(tests, setup_suite, teardown_suite);
}
