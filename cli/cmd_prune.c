/* cmd_prune.c — `nas prune`: flags in, app_prune (app/prune.c) does the work,
 * figures out. The network is a spec with a weights file, or a run of the
 * store (its chosen, finally trained model by default). */
#include "app/app.h"
#include "cli/cli.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas prune RUN [--candidate N] (--keep F | --target-macs N | --target-mj X) [options]\n"
            "       nas prune SPEC.json --weights W (--keep F | --target-macs N | --target-mj X) --out DIR\n\n"
            "Removes the weakest expansion channels of every MBConv block of a trained network\n"
            "(ranked by the L1 norm of their expand conv weights), builds the smaller network with\n"
            "the kept channels' weights, fine-tunes it, and writes DIR/pruned.onnx with\n"
            "DIR/pruned.spec.json, DIR/pruned.model-card.md and DIR/pruned.weights.\n"
            "RUN (a run's name or id; given without --weights) prunes the model the search finally\n"
            "trained and exported, fine-tuned and tested on the run's own data and split, so the\n"
            "test accuracy before is the one final training recorded. SPEC is the spec the\n"
            "weights were trained with, as is (not adapted to the data).\n\n"
            "options:\n"
            "  --candidate N     with RUN: that candidate (the number 'nas report' prints) instead\n"
            "                    (its final weights if it was finally trained, else its proxy ones)\n"
            "  --db FILE         with RUN: the run store (default runs.db)\n"
            "  --weights W       with SPEC: trained weights ('nas train ... --save-weights W')\n"
            "  --keep F          fraction of each block's expansion channels kept, in (0, 1]\n"
            "  --target-macs N   instead: the largest uniform fraction whose MACs are at most N\n"
            "                    (the space cost model's count, multiply-adds per image)\n"
            "  --target-mj X     instead: energy per inference at most X mJ, benchmarked here at\n"
            "                    batch 1 with the energy meter (estimated where the meter is the\n"
            "                    CPU-time model); the pruned network is measured to check it\n"
            "  --min-ch C        channels a block keeps at least (default 8)\n"
            "  --multiple M      kept counts rounded to a multiple of M (default 8)\n"
            "  --data D          mnist, fashion-mnist, cifar10:DIR or idx:DIR: accuracy before and\n"
            "                    after, and the fine-tune (default: a RUN's own; for SPEC without\n"
            "                    it: no accuracy, no fine-tune)\n"
            "  --epochs E        fine-tuning epochs (default 1; 0: none)\n"
            "  --lr X            fine-tuning peak learning rate (default 0.02)\n"
            "  --batch B         batch size (default 64)\n"
            "  --subset N        fine-tune on the first N training images (default: all, or for a\n"
            "                    RUN the images its final training used)\n"
            "  --threads T       threads (default: all cores)\n"
            "  --seed S          shuffling and augmentation (default 1)\n"
            "  --distill         fine-tune learning from the unpruned network's logits as well as\n"
            "                    the labels (knowledge distillation; the teacher is the input model)\n"
            CLI_KD_HELP
            "  --out DIR         output folder, made when missing (default for RUN:\n"
            "                    out/<run>/pruned)\n"
            "  --force           overwrite existing files in DIR\n"
            "  --data-dir DIR    where 'mnist' and 'fashion-mnist' live\n");
    fprintf(f, "\nexamples:\n  %s\n  %s\n  %s\n",
            "nas prune fashion-small --keep 0.5 --epochs 2",
            "nas train mobilenetv2 --data mnist --width 0.5 --epochs 1 --export m/m.onnx --save-weights m/m.w",
            "nas prune m/m.spec.json --weights m/m.w --target-macs 12000000 --data mnist --out m/pruned");
}

static int on_epoch(void *ctx, int epoch, double loss, double acc, double val, double ips)
{
    int *total = ctx;
    fprintf(stderr, "fine-tune epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f  %.0f images/s\n", epoch,
            *total, loss, acc, val, ips);
    return 0;
}

/* The options that are prune's own (the training ones are cli_train_flag's):
 * 0 parsed, 1 not one of them, else the usage error's exit code. */
static int prune_flag(const char *a, const char *v, app_prune_opts *o)
{
    long n;
    if (!strcmp(a, "--weights"))
        o->weights = v;
    else if (!strcmp(a, "--data"))
        o->data = v;
    else if (!strcmp(a, "--out"))
        o->out_dir = v;
    else if (!strcmp(a, "--db"))
        o->db = v;
    else if (!strcmp(a, "--data-dir"))
        setenv("NAS_DATA_DIR", v, 1);
    else if (!strcmp(a, "--candidate")) {
        if (cli_parse_int(v, 0, 1L << 30, &o->candidate))
            return cli_usage_error("prune", "--candidate: '%s' is not a candidate number", v);
    } else if (!strcmp(a, "--keep")) {
        if (cli_parse_double(v, 1e-9, 1, &o->keep))
            return cli_usage_error("prune", "--keep: '%s' is not a number in (0, 1]", v);
    } else if (!strcmp(a, "--target-macs")) {
        if (cli_parse_double(v, 1, 1e15, &o->target_macs))
            return cli_usage_error("prune", "--target-macs: '%s' is not a number >= 1", v);
    } else if (!strcmp(a, "--target-mj")) {
        if (cli_parse_double(v, 1e-9, 1e9, &o->target_mj))
            return cli_usage_error("prune", "--target-mj: '%s' is not a number of mJ above 0", v);
    } else if (!strcmp(a, "--min-ch")) {
        if (cli_parse_int(v, 1, 4096, &n))
            return cli_usage_error("prune", "--min-ch: '%s' is not an integer in 1..4096", v);
        o->min_ch = (int)n;
    } else if (!strcmp(a, "--multiple")) {
        if (cli_parse_int(v, 1, 64, &n))
            return cli_usage_error("prune", "--multiple: '%s' is not an integer in 1..64", v);
        o->multiple = (int)n;
    } else {
        return 1;
    }
    return 0;
}

/* argv into o; the positional argument is kept in *what. -1: parsed, else an exit code. */
static int parse(int argc, char **argv, app_prune_opts *o, const char **what)
{
    cli_train_flags tf = {.epochs = o->epochs, .batch = o->batch, .threads = 0, .seed = (long)o->seed,
                          .subset = 0, .epochs_min = 0, .lr = o->lr, .kd_alpha = o->kd_alpha,
                          .kd_temp = o->kd_temperature};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--force") || !strcmp(a, "--distill")) {
            *(a[2] == 'f' ? &o->force : &o->distill) = 1;
            continue;
        }
        if (a[0] == '-' && a[1] == '-' && !v)
            return cli_usage_error("prune", "%s needs a value", a);
        int rc = cli_train_flag("prune", a, v, &tf);
        if (rc < 0)
            rc = prune_flag(a, v, o);
        else
            o->epochs_given |= !strcmp(a, "--epochs");
        if (rc == 0) {
            i++;
            continue;
        }
        if (rc > 1 || a[0] == '-')
            return rc > 1 ? rc : cli_usage_error("prune", "unknown option '%s'", a);
        if (*what)
            return cli_usage_error("prune", "one network only ('%s' and '%s')", *what, a);
        *what = a;
    }
    o->epochs = (int)tf.epochs;
    o->kd_alpha = tf.kd_alpha, o->kd_temperature = tf.kd_temp;
    o->batch = (int)tf.batch;
    o->threads = (int)tf.threads;
    o->seed = (uint64_t)tf.seed;
    o->subset = tf.subset;
    o->lr = tf.lr;
    return -1;
}

void cli_prune_print(const app_prune_result *r)
{
    if (!isnan(r->val_before))
        fprintf(stderr, "nas prune: %s: validation accuracy (%d images of %s) %.4f before, %.4f pruned, %.4f after "
                "%d epoch%s of fine-tuning; test (%d images) %.4f before, %.4f after\n", r->what, r->data_val,
                r->data_name, r->val_before, r->val_pruned, r->val_after, r->epochs, r->epochs == 1 ? "" : "s",
                r->data_test, r->test_before, r->test_after);
    if (!isnan(r->recorded_test))
        fprintf(stderr, "nas prune: the run's final training recorded test accuracy %.4f for it\n", r->recorded_test);
    fprintf(stderr, "nas prune: wrote %s (with pruned.spec.json and pruned.model-card.md) and %s\n", r->onnx,
            r->weights);
    printf("macs_before %.0f\nmacs_after %.0f\nkeep %.6f\n", r->before.macs, r->after.macs, r->keep);
    if (!isnan(r->val_before))
        printf("val_acc_before %.4f\nval_acc_pruned %.4f\nval_acc_after %.4f\n", r->val_before, r->val_pruned,
               r->val_after);
    if (!isnan(r->test_after))
        printf("test_acc_before %.4f\ntest_acc_after %.4f\n", r->test_before, r->test_after);
    if (!isnan(r->mj_after))
        printf("mj_before %.6g\nmj_after %.6g\nmj_quality %s\nmj_source %s\n", r->mj_before, r->mj_after,
               r->mj_quality, r->mj_source);
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *cli_prune_json(const app_prune_result *r)
{
    json_t *o = json_pack("{s:s,s:f,s:i,s:f,s:f,s:f,s:f,s:s,s:s}", "what", r->what, "keep", r->keep, "epochs",
                          r->epochs, "macs_before", r->before.macs, "macs_after", r->after.macs, "params_before",
                          r->before.params, "params_after", r->after.params, "onnx", r->onnx, "weights", r->weights);
    if (!o)
        return NULL;
    json_object_set_new(o, "val_acc_before", num_or_null(r->val_before));
    json_object_set_new(o, "val_acc_pruned", num_or_null(r->val_pruned));
    json_object_set_new(o, "val_acc_after", num_or_null(r->val_after));
    json_object_set_new(o, "test_acc_before", num_or_null(r->test_before));
    json_object_set_new(o, "test_acc_after", num_or_null(r->test_after));
    json_object_set_new(o, "recorded_test_acc", num_or_null(r->recorded_test));
    json_object_set_new(o, "test_images", json_integer(r->data_test));
    if (isfinite(r->mj_after)) {
        json_object_set_new(o, "mj_before", json_real(r->mj_before));
        json_object_set_new(o, "mj_after", json_real(r->mj_after));
        json_object_set_new(o, "mj_quality", json_string(r->mj_quality));
        json_object_set_new(o, "mj_source", json_string(r->mj_source));
    }
    return o;
}

int cmd_prune(int argc, char **argv)
{
    app_prune_opts o;
    app_prune_opts_default(&o);
    const char *what = NULL;
    int rc = parse(argc, argv, &o, &what);
    if (rc >= 0)
        return rc;
    if (!what)
        return cli_usage_error("prune", "no network given (a run, or a spec with --weights)");
    char out[1024];
    size_t wl = strlen(what);
    if (!o.weights && wl > 5 && !strcmp(what + wl - 5, ".json"))
        return cli_usage_error("prune", "--weights is required with a spec (from 'nas train ... --save-weights W'); "
                               "a run is named without it");
    if (o.weights) {
        o.spec = what;
    } else {
        o.run = what;
        if (!o.out_dir) {
            snprintf(out, sizeof out, "out/%s/pruned", what);
            o.out_dir = out;
        }
    }
    if (!o.out_dir)
        return cli_usage_error("prune", "--out DIR is required with a spec");
    int total = o.epochs;
    o.on_epoch = on_epoch;
    o.ctx = &total;
    app_prune_result r;
    nas_err err = {0};
    if (app_prune_check(&o, &err))
        return cli_usage_error("prune", "%s", err.msg);
    nas_status st = app_prune(&o, &r, &err);
    if (st)
        return cli_fail("prune", st, &err);
    cli_prune_print(&r);
    return 0;
}
