/* cmd_train.c — `nas train SPEC|PRESET --data D`: one architecture, trained
 * briefly with the built-in engine, with a line per epoch and the final test
 * accuracy. The spec is adapted to the data: its resolution (strides made
 * gentler for small inputs, as the search space does), channels and classes. */
#include "cli/cli.h"
#include "app/app.h"
#include "evaluator/ev.h"
#include "space/space.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas train SPEC.json|PRESET --data mnist|cifar10:DIR|idx:DIR [options]\n\n"
            "Trains one architecture briefly with the built-in engine and prints the test accuracy.\n"
            "The spec is adapted to the data: channels, classes, and --resolution (default: the\n"
            "data's), with strides made gentler so the map entering the head is at least 4x4.\n\n"
            "options:\n"
            "  --epochs E        training epochs (default 3)\n"
            "  --batch B         batch size (default 64)\n"
            "  --lr X            peak learning rate, cosine after warm-up (default 0.1)\n"
            "  --width W         width multiplier applied to the spec (default 1)\n"
            "  --threads T       threads (default: all cores)\n"
            "  --seed S          initialisation, shuffling and augmentation (default 1)\n"
            "  --subset N        train on the first N training images (default: all)\n"
            "  --resolution R    network input side; images are padded or cropped to it\n"
            "  --json            print one JSON object with the result on stdout\n"
            "  --export F.onnx   write the trained network as ONNX, with F.spec.json and\n"
            "                    F.model-card.md beside it, its folder made when missing (--keep-bn:\n"
            "                    BN not folded; --force: overwrite existing files)\n"
            "  --save-weights W  write the trained weights (every tensor, BN statistics included) to W,\n"
            "                    for 'nas prune SPEC --weights W' (with --export's F.spec.json as SPEC)\n"
            "  --data-dir DIR    where 'mnist' and 'fashion-mnist' live (default $NAS_DATA_DIR,\n"
            "                    else data/ here or beside the nas binary)\n"
            "  --teacher T.json  knowledge distillation: learn from this trained network's logits as\n"
            "                    well as the labels (T.json a spec for this data, as --export writes;\n"
            "                    --teacher-weights W its weights, as --save-weights writes)\n"
            CLI_KD_HELP);
    fprintf(f, "\nexamples:\n  %s\n  %s\n", "nas train mobilenetv2 --data mnist --width 0.5 --epochs 1 --export out/m/m.onnx",
            "nas train small.json --data fashion-mnist --teacher big.spec.json --teacher-weights big.weights");
}

static int on_epoch(void *ctx, int epoch, double loss, double acc, double val, double ips)
{
    int *total = ctx;
    fprintf(stderr, "epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f  %.0f images/s\n", epoch,
            *total, loss, acc, val, ips);
    return 0;
}

/* The spec fitted to the data: images resized to res (0: the data's own),
 * the width scaled, strides adapted; the batch no larger than the data. */
static nas_status fit_to_data(space_spec *spec, space_net *arch, ev_data *data, double width, long *res,
                              long *batch, nas_err *err)
{
    nas_status st;
    if (*res == 0)
        *res = data->train.h;
    if ((st = ev_split_resize(&data->train, (int)*res, err)) || (st = ev_split_resize(&data->val, (int)*res, err)) ||
        (st = ev_split_resize(&data->test, (int)*res, err)))
        return st;
    if (width != 1.0)
        space_scale(spec, width, 1.0);
    spec->in_ch = data->train.c;
    spec->num_classes = data->num_classes;
    space_adapt_strides(spec, (int)*res, 4);
    if ((st = space_resolve(spec, arch, err)))
        return st;
    if (*batch > data->train.n)
        *batch = data->train.n;
    return NAS_OK;
}

/* The command line of `nas train`. */
typedef struct {
    const char *spec_arg, *data_arg, *weights_out;
    const char *teacher, *teacher_weights;
    double kd_alpha, kd_temp;
    long epochs, batch, threads, seed, subset, res;
    double lr, width;
    int json;
    app_train_export_opts xo;
} train_args;

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, train_args *t)
{
    const char *spec_arg = NULL, *data_arg = NULL, *weights_out = NULL;
    ev_train_opts d;
    ev_train_opts_default(&d);
    cli_train_flags tf = {.epochs = d.epochs, .batch = d.batch, .threads = 0, .seed = (long)d.seed, .subset = 0,
                          .epochs_min = 1, .lr = d.lr, .kd_alpha = d.kd_alpha, .kd_temp = d.kd_temperature};
    long res = 0;
    double width = 1.0;
    int json = 0;
    app_train_export_opts xo = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--force") || !strcmp(a, "--keep-bn")) {
            *(a[2] == 'f' ? &xo.force : &xo.keep_bn) = 1;
            continue;
        }
        if (a[0] == '-' && a[1] == '-' && !v)
            return cli_usage_error("train", "%s needs a value", a);
        int trc = cli_train_flag("train", a, v, &tf);
        if (trc >= 0) {
            if (trc > 0)
                return trc;
            i++;
            continue;
        }
        if (!strcmp(a, "--data"))
            data_arg = v;
        else if (!strcmp(a, "--export"))
            xo.path = v;
        else if (!strcmp(a, "--save-weights"))
            weights_out = v;
        else if (!strcmp(a, "--teacher"))
            t->teacher = v;
        else if (!strcmp(a, "--teacher-weights"))
            t->teacher_weights = v;

        else if (!strcmp(a, "--data-dir"))
            setenv("NAS_DATA_DIR", v, 1);   /* where the loader looks for mnist */
        else if (!strcmp(a, "--width")) {
            if (cli_parse_double(v, 0.05, 4, &width))
                return cli_usage_error("train", "--width: '%s' is not a number in [0.05, 4]", v);
        } else if (!strcmp(a, "--resolution")) {
            if (cli_parse_int(v, 8, 1024, &res))
                return cli_usage_error("train", "--resolution: '%s' is not an integer in 8..1024", v);
        } else if (a[0] == '-') {
            return cli_usage_error("train", "unknown option '%s'", a);
        } else {
            if (spec_arg)
                return cli_usage_error("train", "one spec only ('%s' and '%s')", spec_arg, a);
            spec_arg = a;
            continue;
        }
        i++;
    }
    if (!spec_arg)
        return cli_usage_error("train", "no spec or preset given");
    if (!data_arg)
        return cli_usage_error("train", "--data is required (mnist, cifar10:DIR or idx:DIR)");
    if (!t->teacher != !t->teacher_weights)
        return cli_usage_error("train", "--teacher and --teacher-weights go together");

    long epochs = tf.epochs, batch = tf.batch, threads = tf.threads, seed = tf.seed, subset = tf.subset;
    double lr = tf.lr;
    t->spec_arg = spec_arg, t->data_arg = data_arg, t->epochs = epochs, t->batch = batch;
    t->threads = threads, t->seed = seed, t->subset = subset, t->res = res, t->lr = lr, t->width = width;
    t->json = json, t->xo = xo, t->weights_out = weights_out, t->kd_alpha = tf.kd_alpha, t->kd_temp = tf.kd_temp;
    return -1;
}

static void print_json(const train_args *t, const char *data_name, long res, const space_cost *cost,
                       const ev_train_result *r)
{
    const char *spec_arg = t->spec_arg;
    long threads = t->threads, seed = t->seed;
    json_t *o = json_object();
    json_object_set_new(o, "spec", json_string(spec_arg));
    json_object_set_new(o, "data", json_string(data_name));
    json_object_set_new(o, "resolution", json_integer(res));
    json_object_set_new(o, "params", json_real(cost->params));
    json_object_set_new(o, "macs", json_real(cost->macs));
    json_object_set_new(o, "epochs", json_integer(r->epochs_done));
    json_object_set_new(o, "diverged", json_boolean(r->diverged));
    json_object_set_new(o, "train_loss", isfinite(r->train_loss) ? json_real(r->train_loss) : json_null());
    json_object_set_new(o, "train_accuracy", json_real(r->train_acc));
    json_object_set_new(o, "val_accuracy", json_real(r->val_acc));
    json_object_set_new(o, "test_accuracy", json_real(r->test_acc));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_object_set_new(o, "images_per_s", json_real(r->images_per_s));
    json_object_set_new(o, "threads", json_integer(threads));
    json_object_set_new(o, "kernels", json_string(ev_kernels()));
    json_object_set_new(o, "seed", json_integer(seed));
    json_object_set_new(o, "teacher", t->teacher ? json_string(t->teacher) : json_null());
    if (t->teacher) {
        json_object_set_new(o, "kd_alpha", json_real(t->kd_alpha));
        json_object_set_new(o, "kd_temperature", json_real(t->kd_temp));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    nas_free(s);
    json_decref(o);
}

/* --save-weights: every tensor, BN statistics included, as the blob
 * `nas prune --weights` reads. */
static nas_status save_weights(const ev_net *net, const char *path, nas_err *err)
{
    void *blob = NULL;
    size_t len = 0;
    nas_status st = ev_net_weights_pack(net, &blob, &len, err);
    if (st == NAS_OK)
        st = nas_write_file_atomic(path, blob, len, err);
    nas_free(blob);
    if (st == NAS_OK)
        fprintf(stderr, "nas train: weights in %s\n", path);
    return st;
}

/* --teacher: a trained network for this data, in inference mode, built for
 * the student's batch. */
static nas_status load_teacher(const train_args *t, long batch, ev_net **out, nas_err *err)
{
    static space_net arch;   /* large: off the stack */
    space_spec spec;
    char *blob = NULL;
    size_t len = 0;
    ev_net_opts no = {.batch = (int)batch, .training = 0, .threads = (int)t->threads};
    nas_status st = space_spec_from_arg(t->teacher, &spec, err);
    if (!st)
        st = space_resolve(&spec, &arch, err);
    if (!st)
        st = nas_read_file(t->teacher_weights, &blob, &len, err);
    if (!st)
        st = ev_net_create(&arch, &no, out, err);
    if (!st && (st = ev_net_weights_unpack(*out, blob, len, err)))
        nas_errctx(err, "teacher %s with weights %s", t->teacher, t->teacher_weights);
    nas_free(blob);
    if (!st) {
        space_cost c;
        space_cost_of(&arch, NULL, 0, &c);
        fprintf(stderr, "nas train: teacher %s, %.3fM params, %.2fM MACs/image; alpha %g, temperature %g\n",
                t->teacher, c.params / 1e6, c.macs / 1e6, t->kd_alpha, t->kd_temp);
    }
    return st;
}

static ev_train_opts train_opts(const train_args *t, long batch, int *total)
{
    ev_train_opts to;
    ev_train_opts_default(&to);
    to.epochs = (int)t->epochs;
    to.batch = (int)batch;
    to.lr = t->lr;
    to.threads = (int)t->threads;
    to.seed = (uint64_t)t->seed;
    to.on_epoch = on_epoch;
    to.ctx = total;
    to.kd_alpha = t->kd_alpha, to.kd_temperature = t->kd_temp;
    return to;
}

int cmd_train(int argc, char **argv)
{
    train_args t = {0};
    int prc = parse_args(argc, argv, &t);
    if (prc >= 0)
        return prc;
    const char *spec_arg = t.spec_arg, *data_arg = t.data_arg, *weights_out = t.weights_out;
    long epochs = t.epochs, batch = t.batch, threads = t.threads, seed = t.seed, subset = t.subset, res = t.res;
    double lr = t.lr, width = t.width;
    app_train_export_opts xo = t.xo;
    nas_err err = {0};
    nas_status st;
    space_spec spec;
    space_net arch;
    ev_data data;
    ev_net *net = NULL, *teacher = NULL;
    int data_loaded = 0, rc = 0;
    if ((st = space_spec_from_arg(spec_arg, &spec, &err)))
        return cli_fail("train", st, &err);
    ev_data_opts dopts;
    ev_data_opts_default(&dopts);
    dopts.train_limit = (int)subset;
    dopts.seed = (uint64_t)seed;
    if ((st = ev_data_load(data_arg, &dopts, &data, &err)))
        return cli_fail("train", st, &err);
    data_loaded = 1;
    if ((st = fit_to_data(&spec, &arch, &data, width, &res, &batch, &err)))
        goto fail;
    xo.epochs = epochs, xo.batch = batch, xo.seed = seed, xo.threads = threads, xo.lr = lr;
    if (xo.path && (st = app_train_export_check(&xo, &err)))
        goto fail;
    ev_net_opts no = {.batch = (int)batch, .training = 1, .threads = (int)threads,
                      .seed = (uint64_t)seed};
    if ((st = ev_net_create(&arch, &no, &net, &err)))
        goto fail;
    ev_memplan plan;
    if ((st = ev_net_plan(&arch, (int)batch, 1, &plan, &err)))
        goto fail;
    space_cost cost;
    space_cost_of(&arch, NULL, 0, &cost);
    fprintf(stderr, "nas train: %s at %ldx%ldx%d, %d blocks, %.3fM params, %.2fM MACs/image; "
            "%s: %d train, %d val, %d test; %.1f MiB; %d threads, kernels %s\n",
            spec.name[0] ? spec.name : spec_arg, res, res, arch.in_ch, arch.n_blocks,
            cost.params / 1e6, cost.macs / 1e6, data.name, data.train.n, data.val.n, data.test.n,
            plan.total / 1048576.0, (int)(threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN)),
            ev_kernels());
    int total = (int)epochs;
    ev_train_opts to = train_opts(&t, batch, &total);
    if (t.teacher && (st = load_teacher(&t, batch, &teacher, &err)))
        goto fail;
    to.teacher = teacher;
    ev_train_result r;
    st = ev_train(net, &data, &to, &r, &err);
    if (st && st != NAS_EDIVERGED)
        goto fail;
    if (t.json)
        print_json(&t, data.name, res, &cost, &r);
    if (st == NAS_OK && weights_out && (st = save_weights(net, weights_out, &err)))
        goto fail;
    if (st == NAS_EDIVERGED) {
        rc = cli_fail("train", st, &err);
    } else if (xo.path && (st = app_train_export(&xo, net, &spec, &data, &r, &err))) {
        rc = cli_fail("train", st, &err);
    } else {
        fprintf(stderr, "test accuracy %.4f (%d epochs, %.1f s, %.0f images/s)\n", r.test_acc,
                r.epochs_done, r.seconds, r.images_per_s);
    }
    goto done;
fail:
    rc = cli_fail("train", st, &err);
done:
    ev_net_free(net);
    ev_net_free(teacher);
    if (data_loaded)
        ev_data_free(&data);
    return rc;
}
