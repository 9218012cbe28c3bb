/* cmd_prune.c — `nas prune SPEC --weights W --keep F | --target-macs N --out DIR`:
 * structured pruning of a trained network (evaluator/prune.c), a short
 * fine-tune with the training engine `nas train` uses, MACs and validation
 * accuracy before and after, and the pruned network as ONNX with its spec.
 * The input is a spec file and a weights file (`nas train --save-weights`),
 * not a run id: the spec is taken as it is (it must be the one the weights
 * were trained with, e.g. the F.spec.json that `nas train --export` writes). */
#include "cli/cli.h"
#include "evaluator/ev.h"
#include "space/space.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas prune SPEC.json --weights W (--keep F | --target-macs N) --out DIR [options]\n\n"
            "Removes the weakest expansion channels of every MBConv block of a trained network\n"
            "(ranked by the L1 norm of their expand conv weights), builds the smaller network with\n"
            "the kept channels' weights, fine-tunes it, and writes DIR/pruned.onnx with\n"
            "DIR/pruned.spec.json, DIR/pruned.model-card.md and DIR/pruned.weights.\n"
            "SPEC is the spec the weights were trained with, as is (not adapted to the data).\n\n"
            "options:\n"
            "  --weights W       trained weights ('nas train ... --save-weights W')\n"
            "  --keep F          fraction of each block's expansion channels kept, in (0, 1]\n"
            "  --target-macs N   instead: the largest uniform fraction whose MACs are at most N\n"
            "                    (the space cost model's count, multiply-adds per image)\n"
            "  --min-ch C        channels a block keeps at least (default 8)\n"
            "  --multiple M      kept counts rounded to a multiple of M (default 8)\n"
            "  --data D          mnist, fashion-mnist, cifar10:DIR or idx:DIR: accuracy before and\n"
            "                    after, and the fine-tune (without it: no accuracy, no fine-tune)\n"
            "  --epochs E        fine-tuning epochs (default 1; 0: none)\n"
            "  --lr X            fine-tuning peak learning rate (default 0.02)\n"
            "  --batch B         batch size (default 64)\n"
            "  --subset N        fine-tune on the first N training images (default: all)\n"
            "  --threads T       threads (default: all cores)\n"
            "  --seed S          shuffling and augmentation (default 1)\n"
            "  --out DIR         output folder (made when missing)\n"
            "  --force           overwrite existing files in DIR\n"
            "  --data-dir DIR    where 'mnist' and 'fashion-mnist' live\n");
    fprintf(f, "\nexample:\n  %s\n  %s\n",
            "nas train mobilenetv2 --data mnist --width 0.5 --epochs 1 --export m/m.onnx --save-weights m/m.w",
            "nas prune m/m.spec.json --weights m/m.w --keep 0.5 --data mnist --epochs 1 --out m/pruned");
}

static int on_epoch(void *ctx, int epoch, double loss, double acc, double val, double ips)
{
    int *total = ctx;
    fprintf(stderr, "fine-tune epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f  %.0f images/s\n", epoch,
            *total, loss, acc, val, ips);
    return 0;
}

static double macs_of(const space_net *a)
{
    space_cost c;
    space_cost_of(a, NULL, 0, &c);
    return c.macs;
}

int cmd_prune(int argc, char **argv)
{
    const char *spec_arg = NULL, *weights = NULL, *data_arg = NULL, *out_dir = NULL;
    cli_train_flags tf = {.epochs = 1, .batch = 64, .threads = 0, .seed = 1, .subset = 0, .epochs_min = 0, .lr = 0.02};
    long min_ch = 8, multiple = 8;
    double keep = NAN, target = NAN;
    int force = 0, epochs_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        if (a[0] == '-' && a[1] == '-' && !v)
            return cli_usage_error("prune", "%s needs a value", a);
        int trc = cli_train_flag("prune", a, v, &tf);
        if (trc >= 0) {
            if (trc > 0)
                return trc;
            epochs_given |= !strcmp(a, "--epochs");
            i++;
            continue;
        }
        if (!strcmp(a, "--weights"))
            weights = v;
        else if (!strcmp(a, "--data"))
            data_arg = v;
        else if (!strcmp(a, "--out"))
            out_dir = v;
        else if (!strcmp(a, "--data-dir"))
            setenv("NAS_DATA_DIR", v, 1);
        else if (!strcmp(a, "--keep")) {
            if (cli_parse_double(v, 1e-9, 1, &keep))
                return cli_usage_error("prune", "--keep: '%s' is not a number in (0, 1]", v);
        } else if (!strcmp(a, "--target-macs")) {
            if (cli_parse_double(v, 1, 1e15, &target))
                return cli_usage_error("prune", "--target-macs: '%s' is not a number >= 1", v);
        } else if (!strcmp(a, "--min-ch")) {
            if (cli_parse_int(v, 1, 4096, &min_ch))
                return cli_usage_error("prune", "--min-ch: '%s' is not an integer in 1..4096", v);
        } else if (!strcmp(a, "--multiple")) {
            if (cli_parse_int(v, 1, 64, &multiple))
                return cli_usage_error("prune", "--multiple: '%s' is not an integer in 1..64", v);
        } else if (a[0] == '-') {
            return cli_usage_error("prune", "unknown option '%s'", a);
        } else {
            if (spec_arg)
                return cli_usage_error("prune", "one spec only ('%s' and '%s')", spec_arg, a);
            spec_arg = a;
            continue;
        }
        i++;
    }
    long epochs = tf.epochs, batch = tf.batch, threads = tf.threads, seed = tf.seed, subset = tf.subset;
    double lr = tf.lr;
    if (!spec_arg)
        return cli_usage_error("prune", "no spec given");
    if (!weights)
        return cli_usage_error("prune", "--weights is required (from 'nas train ... --save-weights W')");
    if (isnan(keep) == isnan(target))
        return cli_usage_error("prune", "give one of --keep F and --target-macs N");
    if (!out_dir)
        return cli_usage_error("prune", "--out DIR is required");
    if (!data_arg && epochs_given && epochs > 0)
        return cli_usage_error("prune", "--epochs needs --data (the fine-tune trains on it)");
    if (!data_arg)
        epochs = 0;

    nas_err err = {0};
    nas_status st;
    space_spec spec, pspec;
    space_net arch;
    ev_data data;
    ev_net *net = NULL, *pnet = NULL;
    void *blob = NULL;
    char *wtxt = NULL;
    size_t wlen = 0;
    int data_loaded = 0, rc = 0;
    char path[4096], wpath[4096];
    if ((st = space_spec_from_arg(spec_arg, &spec, &err)) || (st = space_resolve(&spec, &arch, &err)))
        return cli_fail("prune", st, &err);
    if ((st = nas_read_file(weights, &wtxt, &wlen, &err)))
        return cli_fail("prune", st, &err);
    ev_prune_opts po;
    ev_prune_opts_default(&po);
    po.min_ch = (int)min_ch;
    po.multiple = (int)multiple;
    if (!isnan(target)) {
        if ((st = ev_prune_keep_for_macs(&spec, &po, target, &keep, &err)))
            goto fail;
    }
    po.keep = keep;

    if ((st = nas_mkdirs(out_dir, &err)))
        goto fail;
    snprintf(path, sizeof path, "%s/pruned.onnx", out_dir);
    snprintf(wpath, sizeof wpath, "%s/pruned.weights", out_dir);
    ev_export_opts xo;
    ev_export_opts_default(&xo);
    xo.force = force;
    xo.out_dir = out_dir;
    if ((st = ev_export_check_path(&xo, path, &err)))
        goto fail;

    if (data_arg) {
        ev_data_opts dopts;
        ev_data_opts_default(&dopts);
        dopts.train_limit = (int)subset;
        dopts.seed = (uint64_t)seed;
        if ((st = ev_data_load(data_arg, &dopts, &data, &err)))
            goto fail;
        data_loaded = 1;
        if (data.train.c != spec.in_ch || data.num_classes != spec.num_classes) {
            st = nas_errf(&err, NAS_EINVAL,
                          "%s: %d channels and %d classes, but %s has %d and %d (use the spec the weights "
                          "were trained with, e.g. nas train --export's F.spec.json)",
                          data.name, data.train.c, data.num_classes, spec_arg, spec.in_ch, spec.num_classes);
            goto fail;
        }
        if ((st = cli_resize_split(&data.train, spec.resolution, &err)) ||
            (st = cli_resize_split(&data.val, spec.resolution, &err)) ||
            (st = cli_resize_split(&data.test, spec.resolution, &err)))
            goto fail;
        if (batch > data.train.n)
            batch = data.train.n;
    }

    ev_net_opts no = {.batch = (int)batch, .training = 0, .threads = (int)threads, .seed = (uint64_t)seed};
    if ((st = ev_net_create(&arch, &no, &net, &err)))
        goto fail;
    if ((st = ev_net_weights_unpack(net, wtxt, wlen, &err))) {
        nas_errctx(&err, "%s", weights);
        goto fail;
    }
    double acc0 = NAN, acc1 = NAN, acc2 = NAN;
    if (data_loaded && (st = ev_evaluate(net, &data.val, &acc0, &err)))
        goto fail;

    ev_net_opts pno = no;
    pno.training = epochs > 0;
    if ((st = ev_prune_net(net, &spec, &po, &pno, &pspec, &pnet, &err)))
        goto fail;
    const space_net *pa = ev_net_arch(pnet);
    double m0 = macs_of(&arch), m1 = macs_of(pa);
    space_cost c0, c1;
    space_cost_of(&arch, NULL, 0, &c0);
    space_cost_of(pa, NULL, 0, &c1);
    fprintf(stderr, "nas prune: keep %.4f of the expansion channels: MACs %.3fM -> %.3fM (-%.1f%%), "
            "params %.3fM -> %.3fM\n", keep, m0 / 1e6, m1 / 1e6, 100 * (1 - m1 / m0), c0.params / 1e6,
            c1.params / 1e6);
    if (data_loaded && (st = ev_evaluate(pnet, &data.val, &acc1, &err)))
        goto fail;
    ev_train_result r = {0};
    r.test_acc = NAN;
    if (epochs > 0) {
        ev_train_opts to;
        ev_train_opts_default(&to);
        int total = (int)epochs;
        to.epochs = (int)epochs;
        to.batch = (int)batch;
        to.lr = lr;
        to.warmup_epochs = 0;   /* the weights are trained already: no warm-up from scratch */
        to.threads = (int)threads;
        to.seed = (uint64_t)seed;
        to.on_epoch = on_epoch;
        to.ctx = &total;
        if ((st = ev_train(pnet, &data, &to, &r, &err)))
            goto fail;
    }
    if (data_loaded && (st = ev_evaluate(pnet, &data.val, &acc2, &err)))
        goto fail;
    if (data_loaded)
        fprintf(stderr, "nas prune: validation accuracy (%d images of %s): %.4f before, %.4f pruned, "
                "%.4f after %ld epoch%s of fine-tuning\n", data.val.n, data.name, acc0, acc1, acc2, epochs,
                epochs == 1 ? "" : "s");

    char split[160], trained[512];
    xo.spec = &pspec;
    if (data_loaded && data.test.n > 0 && !isnan(r.test_acc)) {
        xo.accuracy = r.test_acc;
        snprintf(split, sizeof split, "test split of %s (%d images), after pruning and fine-tuning",
                 data.name, data.test.n);
        xo.accuracy_split = split;
    }
    snprintf(trained, sizeof trained,
             "nas prune: %s with weights %s, keep %.4f of each block's expansion channels (L1 of the "
             "expand conv weights, at least %ld, multiples of %ld): %.0f -> %.0f MACs; fine-tuned %ld "
             "epochs at lr %g, seed %ld%s%s",
             spec_arg, weights, keep, min_ch, multiple, m0, m1, epochs, lr, seed, data_loaded ? " on " : "",
             data_loaded ? data.name : "");
    xo.trained_on = trained;
    if (data_loaded) {
        xo.norm_channels = data.train.c < 3 ? data.train.c : 3;
        for (int c = 0; c < xo.norm_channels; c++) {
            xo.norm_mean[c] = data.mean[c];
            xo.norm_std[c] = data.std[c];
        }
    }
    if ((st = ev_export_onnx(pnet, &xo, path, &err)))
        goto fail;
    size_t blen = 0;
    if ((st = ev_net_weights_pack(pnet, &blob, &blen, &err)) ||
        (st = nas_write_file_atomic(wpath, blob, blen, &err)))
        goto fail;
    fprintf(stderr, "nas prune: wrote %s (with pruned.spec.json and pruned.model-card.md) and %s\n", path,
            wpath);
    printf("macs_before %.0f\nmacs_after %.0f\nkeep %.6f\n", m0, m1, keep);
    if (data_loaded)
        printf("val_acc_before %.4f\nval_acc_pruned %.4f\nval_acc_after %.4f\n", acc0, acc1, acc2);
    if (!isnan(r.test_acc) && data_loaded && data.test.n > 0)
        printf("test_acc_after %.4f\n", r.test_acc);
    goto done;

fail:
    rc = cli_fail("prune", st, &err);
done:
    ev_net_free(net);
    ev_net_free(pnet);
    nas_free(blob);
    nas_free(wtxt);
    if (data_loaded)
        ev_data_free(&data);
    return rc;
}
