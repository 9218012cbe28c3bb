/* cmd_export.c — `nas export`: trained architectures of a run as ONNX models,
 * each beside its spec JSON and model card; or, with --spec, an untrained
 * network of a spec (seeded initial weights), for measuring latency in another
 * runtime (scripts/ort-measure.sh), where the weights do not matter.
 *
 * A run's candidates are exported with the weights the run stored: those of
 * final training where the candidate was finally trained (runs_final_get),
 * else those of its proxy training (runs_weights_get), so the file is the
 * network whose accuracy and latency the run recorded; a candidate without
 * stored weights is an error that says so, never a silently re-initialised
 * network. */
#include "cli/cli.h"
#include "evaluator/ev.h"
#include "runs/runs.h"
#include "space/space.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas export RUN [--top K | --candidate N] [--out DIR] [--db FILE] [--force]\n"
            "                      [--keep-bn] [--portable] [--opset N] [--json]\n"
            "                      [--int8 [--calib-images N] [--calib percentile|minmax]]\n"
            "       nas export --spec SPEC.json|PRESET --out FILE.onnx [--resolution R]\n"
            "                      [--classes K] [--in-channels C] [--seed S] [--force] [--keep-bn]\n"
            "                      [--portable]\n\n"
            "Writes trained networks of a run as ONNX models (opset %d by default; input `input`,\n"
            "N x C x H x W with N free; output `logits`), each with NAME.spec.json and\n"
            "NAME.model-card.md beside it. Batch norm is folded into the convolutions unless\n"
            "--keep-bn. Metadata: spec, accuracy, the input normalisation (mean and std), predicted\n"
            "and benchmarked latency and energy with their sources and quality, nas version.\n\n"
            "  RUN              a run's name or id (see 'nas ls')\n"
            "  --top K          the K best candidates of the leaderboard (default: the chosen one)\n"
            "  --candidate N    one candidate, by the number 'nas report RUN' and 'nas search'\n"
            "                   print for it (its seq in the run)\n"
            "  --out DIR        output folder (default: out/<run name>, where the search's own\n"
            "                   export goes); files are named <run>-c<N>.onnx. With --spec: the\n"
            "                   model file itself.\n"
            "  --db FILE        run store (default: runs.db in this folder)\n"
            "  --force          overwrite existing files, or write outside the output folder\n"
            "  --keep-bn        keep BatchNormalization nodes instead of folding them\n"
            "  --portable       ops that older importers take (OpenCV DNN 4.6): ReLU6 as\n"
            "                   Relu(x) - Relu(x - 6) instead of Clip; ONNX Runtime runs it too,\n"
            "                   without fusing ReLU6 into the convolution\n"
            "  --opset N        ONNX opset, %d to %d\n"
            "  --spec SPEC      export an untrained network of SPEC (initial weights from --seed),\n"
            "                   for latency measurements in other runtimes; not a trained model\n"
            "  --json           print {\"exported\": [...]} on stdout\n"
            "  --int8           also write the post-training int8 model, <run>-c<N>.int8.onnx (QDQ:\n"
            "                   int8 weights per output channel, uint8 activations per tensor,\n"
            "                   batch norm folded; ONNX Runtime runs it with its int8 kernels).\n"
            "                   Calibrates on the run's training data; its card and metadata give\n"
            "                   the calibration and float32 and int8 accuracy (nas's engines, first\n"
            "                   %d test images)\n"
            "  --calib-images N calibration images, 1..60000 (default %d)\n"
            "  --calib M        percentile (default: the range holding 99.99%% of each tensor's\n"
            "                   values) or minmax\n",
            EV_ONNX_OPSET_DEFAULT, EV_ONNX_OPSET_MIN, EV_ONNX_OPSET_MAX, EV_QUANT_EVAL_IMAGES,
            EV_QUANT_DEFAULT_IMAGES);
    fprintf(f, "\nexamples:\n  %s\n  %s\n", "nas export my-search --candidate 9 --out out/my-search   (9: the number 'nas report' prints)",
            "nas export my-search --int8 --calib-images 512 --calib minmax");
}

/* mkdir -p */
typedef struct {
    int force, keep_bn, portable, opset, json;
    int int8;                  /* --int8: the quantized model too, with q */
    ev_quant_opts q;
} common_opts;

static void apply_common(ev_export_opts *o, const common_opts *c)
{
    o->force = c->force;
    o->keep_bn = c->keep_bn;
    o->portable = c->portable;
    o->opset = c->opset;
}

/* ---- --spec: an untrained network ----------------------------------------- */

static int export_spec(const char *spec_arg, const char *out, long res, long classes, long in_ch,
                       long seed, const common_opts *c)
{
    space_spec spec;
    space_net arch;
    nas_err e;
    nas_status st;
    ev_net *net = NULL;
    if ((st = space_spec_from_arg(spec_arg, &spec, &e)) != NAS_OK)
        return cli_fail("export", st, &e);
    if (classes > 0)
        spec.num_classes = (int)classes;
    if (in_ch > 0)
        spec.in_ch = (int)in_ch;
    if (res > 0) {
        space_config cfg;
        space_config_default(&cfg, (int)res, spec.in_ch, spec.num_classes);
        space_adapt_strides(&spec, (int)res, cfg.min_side);
    }
    if ((st = space_resolve(&spec, &arch, &e)) != NAS_OK)
        return cli_fail("export", st, &e);
    ev_net_opts no = {.batch = 1, .training = 0, .threads = 1, .seed = (uint64_t)seed};
    if ((st = ev_net_create(&arch, &no, &net, &e)) != NAS_OK)
        return cli_fail("export", st, &e);
    ev_export_opts o;
    ev_export_opts_default(&o);
    apply_common(&o, c);
    o.spec = &spec;
    char trained[128];
    snprintf(trained, sizeof trained, "Untrained: initial weights from seed %ld (for latency "
                                      "measurements only; the outputs mean nothing).", seed);
    o.trained_on = trained;
    st = ev_export_onnx(net, &o, out, &e);
    ev_net_free(net);
    if (st != NAS_OK)
        return cli_fail("export", st, &e);
    if (c->json)
        printf("{\"exported\": [{\"onnx\": \"%s\", \"trained\": false}]}\n", out);
    else
        fprintf(stderr, "nas export: wrote %s (untrained, seed %ld)\n", out, seed);
    return 0;
}

/* ---- RUN: trained candidates ------------------------------------------------ */

/* "mnist, 2 epochs on 5000 images, batch 64, seed 1" from the run's settings. */
static void trained_on(const runs_run *run, char *buf, size_t n)
{
    char data[256];
    int have_data = runs_settings_string(run->settings_json, "data", data, sizeof data);
    long epochs = (long)runs_settings_number(run->settings_json, "epochs");
    long subset = (long)runs_settings_number(run->settings_json, "subset");
    long batch = (long)runs_settings_number(run->settings_json, "batch");
    char sub[48] = "all training images";
    if (subset > 0)
        snprintf(sub, sizeof sub, "%ld training images", subset);
    if (have_data)
        snprintf(buf, n, "Trained by run '%s' (seed %" PRIu64 ") as a search candidate: data %s, "
                         "%ld epochs on %s, batch %ld (the search's short proxy training).",
                 run->name, run->seed, data, epochs, sub, batch);
    else
        snprintf(buf, n, "Trained by run '%s' (seed %" PRIu64 ") as a search candidate.", run->name,
                 run->seed);
}

static const char *fig_src(const runs_fig *f, char *buf, size_t n)
{
    snprintf(buf, n, "%s (%s)", f->source[0] ? f->source : "unstated",
             f->quality[0] ? f->quality : "quality unstated");
    return buf;
}

/* FILE.onnx -> FILE.int8.onnx */
/* The int8 model beside the float one: calibrated on the run's own data. */
static nas_status export_int8(const ev_net *net, const runs_run *run, const common_opts *c,
                              ev_export_opts *o, const char *path, nas_err *err)
{
    char data_spec[256], qpath[1200];
    ev_data data;
    ev_data_opts dopts;
    if (!runs_settings_string(run->settings_json, "data", data_spec, sizeof data_spec))
        return nas_errf(err, NAS_EINVAL, "--int8: run '%s' names no data set to calibrate on",
                        run->name);
    ev_data_opts_default(&dopts);
    dopts.seed = run->seed;
    dopts.test_limit = EV_QUANT_EVAL_IMAGES;
    nas_status st = ev_data_load(data_spec, &dopts, &data, err);
    if (st != NAS_OK)
        return st;
    app_int8_path(path, qpath, sizeof qpath);
    st = ev_export_int8(net, &data, &c->q, EV_QUANT_EVAL_IMAGES, o, qpath, err);
    if (st == NAS_OK && !c->json)
        fprintf(stderr, "nas export: %s: float32 %.2f%%, int8 %.2f%% (nas engines, %d test images)\n",
                qpath, 100 * o->accuracy, 100 * o->accuracy_int8, data.test.n);
    ev_data_free(&data);
    return st;
}

/* The strings a model card borrows while it is written. */
typedef struct {
    char cand_id[32], accsrc[160], trained[512], psrc[160], lsrc[160];
} card_text;

/* What the model card and metadata say of a candidate: its accuracy and how
 * it was trained (fin: its final training, NULL for the search's proxy
 * training), its predicted and measured figures, its input normalisation. */
static void card_of(const runs_run *run, const runs_cand *cand, const runs_final *fin, card_text *t,
                    ev_export_opts *o)
{
    o->accuracy = fin ? fin->test_acc : cand->accuracy;
    if (fin) {
        snprintf(t->accsrc, sizeof t->accsrc, "test split (%d images), after the final training of run '%s'",
                 fin->test_images, run->name);
        snprintf(t->trained, sizeof t->trained, "Trained again by run '%s' (seed %" PRIu64 ") after the search "
                 "(final training): %d epochs on %d training images; validation accuracy %.4f.", run->name,
                 run->seed, fin->epochs, fin->train_images, fin->val_acc);
    } else {
        snprintf(t->accsrc, sizeof t->accsrc, "as recorded by the search for this candidate (run '%s')",
                 run->name);
        trained_on(run, t->trained, sizeof t->trained);
    }
    o->accuracy_split = t->accsrc;
    o->trained_on = t->trained;
    o->pred_latency_ms = cand->pred_latency_ms.value;
    o->pred_energy_mj = cand->pred_energy_mj.value;
    o->pred_source = fig_src(runs_fig_known(&cand->pred_energy_mj) ? &cand->pred_energy_mj
                                                                    : &cand->pred_latency_ms,
                             t->psrc, sizeof t->psrc);
    o->meas_latency_ms = cand->latency_ms.value;
    o->meas_latency_source = fig_src(&cand->latency_ms, t->lsrc, sizeof t->lsrc);
    o->meas_energy_mj = cand->energy_mj.value;
    o->meas_energy_source = cand->energy_mj.source;
    o->meas_energy_quality = cand->energy_mj.quality;
    runs_norm nm;
    if (runs_settings_norm(run->settings_json, &nm)) {
        o->norm_channels = nm.channels;
        for (int ch = 0; ch < nm.channels; ch++) {
            o->norm_mean[ch] = (float)nm.mean[ch];
            o->norm_std[ch] = (float)nm.std[ch];
        }
    }
    o->run_id = run->name;
    snprintf(t->cand_id, sizeof t->cand_id, "%d", cand->seq);
    o->candidate = t->cand_id;
}

/* A candidate's inference net with its stored weights: those of its final
 * training when it had one (*final set, fin filled), else the search's. */
static nas_status cand_net(runs_db *db, const runs_run *run, const runs_cand *cand, space_spec *spec,
                           ev_net **net, runs_final *fin, int *final, nas_err *err)
{
    space_net arch;
    void *blob = NULL;
    size_t len = 0;
    int found = 0;
    char where[96];
    nas_status st;
    *net = NULL;
    snprintf(where, sizeof where, "candidate %d of run '%s'", cand->seq, run->name);
    if (!cand->spec_json)
        return nas_errf(err, NAS_EINVAL, "%s has no spec in the store", where);
    if ((st = space_spec_from_json(cand->spec_json, where, spec, err)) != NAS_OK ||
        (st = space_resolve(spec, &arch, err)) != NAS_OK)
        return st;
    if ((st = runs_final_get(db, cand->id, fin, &blob, &len, final, err)) != NAS_OK)
        return st;
    found = *final;
    if (!*final && (st = runs_weights_get(db, cand->id, &blob, &len, &found, err)) != NAS_OK)
        return st;
    if (!found)
        return nas_errf(err, NAS_EINVAL,
                        "%s has no stored weights (only candidates whose weights the search kept "
                        "can be exported; 'nas train SPEC --export FILE.onnx' trains its spec again)",
                        where);
    ev_net_opts no = {.batch = 1, .training = 0, .threads = 1, .seed = 0};
    if ((st = ev_net_create(&arch, &no, net, err)) == NAS_OK &&
        (st = ev_net_weights_unpack(*net, blob, len, err)) != NAS_OK) {
        nas_errctx(err, "%s", where);
        ev_net_free(*net);
        *net = NULL;
    }
    nas_free(blob);
    return st;
}

static nas_status export_cand(runs_db *db, const runs_run *run, const runs_cand *cand,
                              const char *dir, const common_opts *c, char *path, size_t path_n,
                              nas_err *err)
{
    space_spec spec;
    ev_net *net;
    runs_final fin;
    int final = 0;
    nas_status st = cand_net(db, run, cand, &spec, &net, &fin, &final, err);
    if (st)
        return st;
    ev_export_opts o;
    card_text t;
    ev_export_opts_default(&o);
    apply_common(&o, c);
    o.spec = &spec;
    o.out_dir = dir;
    card_of(run, cand, final ? &fin : NULL, &t, &o);
    snprintf(path, path_n, "%s/%s-c%d.onnx", dir, run->name, cand->seq);
    st = ev_export_onnx(net, &o, path, err);
    if (st == NAS_OK && c->int8)
        st = export_int8(net, run, c, &o, path, err);
    ev_net_free(net);
    return st;
}

/* Which candidates: one by the number the report prints (-1: none has it),
 * the best top, or the chosen one (else the best finished). */
static int pick_cands(const runs_report *rep, long top, long cand_id, int *pick, int max)
{
    int n = 0;
    if (cand_id >= 0) {
        for (int i = 0; i < rep->n && !n; i++)
            if (rep->cands[i].seq == cand_id)
                pick[n++] = i;
        return n ? n : -1;
    }
    if (top <= 0 && rep->chosen >= 0) {
        pick[0] = rep->chosen;
        return 1;
    }
    if (top <= 0)
        top = 1;
    for (int i = 0; i < rep->n && n < top && n < max; i++)
        if (rep->rank[i] > 0)
            pick[n++] = i;
    return n;
}

static int export_run(const char *run_arg, const char *db_path, const char *out, long top,
                      long cand_id, const common_opts *c)
{
    runs_db *db = NULL;
    runs_report rep;
    int have_rep = 0, rc = 0, n_done = 0;
    int64_t run_id;
    nas_err e;
    nas_status st;
    char dir[1024], path[1200];
    memset(&rep, 0, sizeof rep);
    if ((st = runs_open(db_path, RUNS_OPEN_READONLY, &db, &e)) != NAS_OK ||
        (st = runs_run_find(db, run_arg, &run_id, &e)) != NAS_OK ||
        (st = runs_report_build(db, run_id, &rep, &e)) != NAS_OK) {
        rc = cli_fail("export", st, &e);
        goto cleanup;
    }
    have_rep = 1;
    int pick[1024], n_pick = pick_cands(&rep, top, cand_id, pick, 1024);
    if (n_pick < 0) {
        rc = cli_usage_error("export", "run '%s' has no candidate %ld ('nas report %s' lists them)",
                             rep.run.name, cand_id, rep.run.name);
        goto cleanup;
    }
    if (!n_pick) {
        fprintf(stderr, "nas export: run '%s' has no finished candidate to export\n", rep.run.name);
        rc = 1;
        goto cleanup;
    }
    if (out)
        snprintf(dir, sizeof dir, "%s", out);
    else
        snprintf(dir, sizeof dir, "out/%s", rep.run.name);
    if ((st = nas_mkdirs(dir, &e)) != NAS_OK) {
        rc = cli_fail("export", st, &e);
        goto cleanup;
    }
    if (c->json)
        printf("{\"run\": \"%s\", \"exported\": [", rep.run.name);
    for (int k = 0; k < n_pick; k++) {
        const runs_cand *cand = &rep.cands[pick[k]];
        st = export_cand(db, &rep.run, cand, dir, c, path, sizeof path, &e);
        if (st != NAS_OK) {
            if (c->json)
                printf("]}\n");
            rc = cli_fail("export", st, &e);
            goto cleanup;
        }
        n_done++;
        char spec_p[1200], card_p[1200];
        ev_export_sidecar_paths(path, spec_p, card_p, sizeof spec_p);
        char qpath[1200] = "";
        if (c->int8)
            app_int8_path(path, qpath, sizeof qpath);
        if (c->json)
            printf("%s{\"candidate\": %d, \"onnx\": \"%s\", \"spec\": \"%s\", \"card\": \"%s\"%s%s%s}",
                   k ? ", " : "", cand->seq, path, spec_p, card_p, c->int8 ? ", \"int8\": \"" : "",
                   qpath, c->int8 ? "\"" : "");
        else
            printf("%s\n%s%s", path, qpath, c->int8 ? "\n" : "");
    }
    if (c->json)
        printf("]}\n");
    fprintf(stderr, "nas export: %d model%s of run '%s' in %s\n", n_done, n_done == 1 ? "" : "s",
            rep.run.name, dir);
cleanup:
    if (have_rep)
        runs_report_free(&rep);
    runs_close(db);
    return rc;
}

int cli_export_top(const char *run, const char *db_path, const char *out, const ev_quant_opts *int8)
{
    common_opts c = {.force = 1, .int8 = int8 != NULL};
    if (int8)
        c.q = *int8;
    else
        ev_quant_opts_default(&c.q);
    return export_run(run, db_path, out, 1, -1, &c);
}

/* --calib-images N or --calib percentile|minmax; -1 to go on, else the exit code. */
static int parse_calib(const char *a, const char *v, ev_quant_opts *q)
{
    long n = 0;
    if (!strcmp(a, "--calib-images")) {
        if (cli_parse_int(v, 1, 60000, &n))
            return cli_usage_error("export", "--calib-images: '%s' is not a count (1..60000)", v);
        q->images = (int)n;
    } else if (!strcmp(v, "minmax") || !strcmp(v, "percentile")) {
        q->method = !strcmp(v, "minmax") ? EV_CALIB_MINMAX : EV_CALIB_PERCENTILE;
    } else {
        return cli_usage_error("export", "--calib: '%s' is not percentile or minmax", v);
    }
    return -1;
}

typedef struct {
    const char *db_path, *out, *run_arg, *spec_arg;
    long top, cand, res, classes, in_ch, seed;
    int calib_set;
    common_opts c;
} export_args;

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, export_args *args)
{
    const char *db_path = "runs.db", *out = NULL, *run_arg = NULL, *spec_arg = NULL;
    long top = 0, cand = -1, res = 0, classes = 0, in_ch = 0, seed = 1;
    common_opts c = {0};
    int calib_set = 0;
    ev_quant_opts_default(&c.q);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            c.force = 1;
        } else if (!strcmp(a, "--keep-bn")) {
            c.keep_bn = 1;
        } else if (!strcmp(a, "--portable")) {
            c.portable = 1;
        } else if (!strcmp(a, "--json")) {
            c.json = 1;
        } else if (!strcmp(a, "--int8")) {
            c.int8 = 1;
        } else if (!strcmp(a, "--calib-images") || !strcmp(a, "--calib")) {
            if (i + 1 >= argc)
                return cli_usage_error("export", "%s needs a value", a);
            calib_set = 1;
            int rc = parse_calib(a, argv[++i], &c.q);
            if (rc >= 0)
                return rc;
        } else if (!strcmp(a, "--db") || !strcmp(a, "--out") || !strcmp(a, "--top") ||
                   !strcmp(a, "--candidate") || !strcmp(a, "--opset") || !strcmp(a, "--spec") ||
                   !strcmp(a, "--resolution") || !strcmp(a, "--classes") ||
                   !strcmp(a, "--in-channels") || !strcmp(a, "--seed")) {
            if (i + 1 >= argc)
                return cli_usage_error("export", "%s needs a value", a);
            const char *v = argv[++i];
            long x = 0;
            if (!strcmp(a, "--db")) {
                db_path = v;
            } else if (!strcmp(a, "--out")) {
                out = v;
            } else if (!strcmp(a, "--spec")) {
                spec_arg = v;
            } else if (!strcmp(a, "--top")) {
                if (cli_parse_int(v, 1, 1000, &top))
                    return cli_usage_error("export", "--top: '%s' is not a count (1..1000)", v);
            } else if (!strcmp(a, "--candidate")) {
                if (cli_parse_int(v, 0, INT_MAX, &cand))
                    return cli_usage_error("export", "--candidate: '%s' is not a candidate number", v);
            } else if (!strcmp(a, "--opset")) {
                if (cli_parse_int(v, EV_ONNX_OPSET_MIN, EV_ONNX_OPSET_MAX, &x))
                    return cli_usage_error("export", "--opset: '%s' is not supported (%d to %d)", v,
                                           EV_ONNX_OPSET_MIN, EV_ONNX_OPSET_MAX);
                c.opset = (int)x;
            } else if (!strcmp(a, "--resolution")) {
                if (cli_parse_int(v, 8, 1024, &res))
                    return cli_usage_error("export", "--resolution: '%s' is not 8..1024", v);
            } else if (!strcmp(a, "--classes")) {
                if (cli_parse_int(v, 2, 100000, &classes))
                    return cli_usage_error("export", "--classes: '%s' is not 2..100000", v);
            } else if (!strcmp(a, "--in-channels")) {
                if (cli_parse_int(v, 1, 4, &in_ch))
                    return cli_usage_error("export", "--in-channels: '%s' is not 1..4", v);
            } else if (cli_parse_int(v, 0, LONG_MAX, &seed)) {
                return cli_usage_error("export", "--seed: '%s' is not a non-negative integer", v);
            }
        } else if (a[0] == '-') {
            return cli_usage_error("export", "unknown option %s (try --help)", a);
        } else if (!run_arg) {
            run_arg = a;
        } else {
            return cli_usage_error("export", "one RUN only ('%s' and '%s')", run_arg, a);
        }
    }
    *args = (export_args){.db_path = db_path, .out = out, .run_arg = run_arg, .spec_arg = spec_arg,
                          .top = top, .cand = cand, .res = res, .classes = classes, .in_ch = in_ch,
                          .seed = seed, .calib_set = calib_set, .c = c};
    return -1;
}

int cmd_export(int argc, char **argv)
{
    export_args x = {0};
    int prc = parse_args(argc, argv, &x);
    if (prc >= 0)
        return prc;
    const char *db_path = x.db_path, *out = x.out, *run_arg = x.run_arg, *spec_arg = x.spec_arg;
    long top = x.top, cand = x.cand, res = x.res, classes = x.classes, in_ch = x.in_ch, seed = x.seed;
    int calib_set = x.calib_set;
    common_opts c = x.c;
    if (top > 0 && cand >= 0)
        return cli_usage_error("export", "--top and --candidate exclude each other");
    if (calib_set && !c.int8)
        return cli_usage_error("export", "--calib-images and --calib go with --int8");
    if (c.int8 && (spec_arg || c.keep_bn || c.portable))
        return cli_usage_error("export", "--int8 quantizes a trained run's network with batch norm "
                                         "folded: not with --spec, --keep-bn or --portable");
    if (spec_arg) {
        if (run_arg || top > 0 || cand >= 0)
            return cli_usage_error("export", "--spec exports one spec; it takes no RUN, --top or "
                                             "--candidate");
        if (!out)
            return cli_usage_error("export", "--spec needs --out FILE.onnx");
        return export_spec(spec_arg, out, res, classes, in_ch, seed, &c);
    }
    if (!run_arg)
        return cli_usage_error("export", "which run? (nas export RUN, or --spec SPEC; see --help)");
    if (res || classes || in_ch)
        return cli_usage_error("export", "--resolution, --classes and --in-channels go with --spec");
    return export_run(run_arg, db_path, out, top, cand, &c);
}
