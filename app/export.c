/* export.c — `nas train ... --export FILE.onnx`: the trained network as
 * ONNX with its figures. A path the user typed is where the user wants the
 * file: it is written there (its folder made when missing); only overwriting
 * an existing file needs --force. */
#include "app/app.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void opts_for(const app_train_export_opts *o, ev_export_opts *x)
{
    ev_export_opts_default(x);
    x->force = o->force;
    x->keep_bn = o->keep_bn;
    x->out_dir = NULL;
}

nas_status app_train_export_check(const app_train_export_opts *o, nas_err *err)
{
    ev_export_opts x;
    opts_for(o, &x);
    const char *slash = o->path ? strrchr(o->path, '/') : NULL;
    if (slash && slash != o->path) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - o->path), o->path);
        nas_status st = nas_mkdirs(dir, err);
        if (st)
            return nas_errctx(err, "--export %s", o->path);
    }
    return ev_export_check_path(&x, o->path, err);
}

nas_status app_train_export(const app_train_export_opts *o, const ev_net *net,
                            const space_spec *spec, const ev_data *data,
                            const ev_train_result *r, nas_err *err)
{
    ev_export_opts x;
    char split[160], trained[1024], thr[32];
    opts_for(o, &x);
    x.spec = spec;
    x.accuracy = r->test_acc;
    snprintf(split, sizeof split, "test split of %s (%d images), after training", data->name,
             data->test.n);
    x.accuracy_split = split;
    if (o->threads > 0)
        snprintf(thr, sizeof thr, "%ld", o->threads);
    else
        snprintf(thr, sizeof thr, "all");
    snprintf(trained, sizeof trained,
             "nas train: %s (%.400s), %d training images (%d for validation), %d epochs, batch "
             "%ld, peak learning rate %g, seed %ld, %s threads; final train loss %.4f, "
             "validation accuracy %.4f, %.1f s.",
             data->name, data->source, data->train.n, data->val.n, r->epochs_done, o->batch, o->lr,
             o->seed, thr, r->train_loss, r->val_acc, r->seconds);
    x.trained_on = trained;
    x.norm_channels = data->train.c < 3 ? data->train.c : 3;
    for (int c = 0; c < x.norm_channels; c++) {
        x.norm_mean[c] = data->mean[c];
        x.norm_std[c] = data->std[c];
    }
    nas_status st = ev_export_onnx(net, &x, o->path, err);
    if (st == NAS_OK)
        fprintf(stderr, "nas train: exported %s\n", o->path);
    if (st == NAS_OK && o->int8) {
        char qpath[4200];
        app_int8_path(o->path, qpath, sizeof qpath);
        st = ev_export_int8(net, data, o->int8, EV_QUANT_EVAL_IMAGES, &x, qpath, err);
        if (st == NAS_OK)
            fprintf(stderr, "nas: exported %s: float32 %.2f%%, int8 %.2f%% (nas's engines, %d test images)\n",
                    qpath, 100 * x.accuracy, 100 * x.accuracy_int8,
                    data->test.n < EV_QUANT_EVAL_IMAGES ? data->test.n : EV_QUANT_EVAL_IMAGES);
    }
    return st;
}

void app_int8_path(const char *path, char *out, size_t n)
{
    size_t len = strlen(path);
    snprintf(out, n, "%.*s.int8.onnx", (int)(len > 5 ? len - 5 : len), path);
}
