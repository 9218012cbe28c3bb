/* final.c — the top of a search trained again at full fidelity.
 *
 * The search ranks candidates by a short proxy training on a subset, scored
 * on validation images; those figures rank architectures, they are not what a
 * deployment gets. Here the best K are trained from scratch for the final
 * recipe on the whole training split, then tested once on the test split
 * (loaded here for the first time: the search loads its data without it).
 * The model to export is chosen by the objective on final *validation*
 * accuracy, so the test split stays a test and never a selection criterion.
 * The meter runs throughout, and its joules are reported on their own: the
 * search's budget covers the search, not this.
 */
#include "app/app.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Test accuracy per class, for the report's class names. */
static nas_status class_accuracy(ev_net *net, const ev_split *s, int batch, int classes, double *acc,
                                 nas_err *err)
{
    long hits[10] = {0}, seen[10] = {0};
    size_t img = (size_t)s->h * s->w * s->c;
    float *logits = nas_malloc((size_t)batch * classes * sizeof *logits);
    if (!logits)
        return nas_errf(err, NAS_ENOMEM, "final training: out of memory");
    nas_status st = NAS_OK;
    for (int i = 0; i < s->n && !st; i += batch) {
        int b = s->n - i < batch ? s->n - i : batch;
        if ((st = ev_net_infer(net, s->images + (size_t)i * img, b, logits, err)))
            break;
        for (int k = 0; k < b; k++) {
            int arg = 0, y = s->labels[i + k];
            for (int c = 1; c < classes; c++)
                if (logits[(size_t)k * classes + c] > logits[(size_t)k * classes + arg])
                    arg = c;
            if (y < 10) {
                seen[y]++;
                hits[y] += arg == y;
            }
        }
    }
    for (int c = 0; c < 10; c++)
        acc[c] = seen[c] ? (double)hits[c] / seen[c] : NAN;
    nas_free(logits);
    return st;
}

/* One candidate, trained from scratch with the final recipe. *net is the
 * trained network (the caller keeps or frees it). */
static nas_status train_one(const app_final_opts *o, const space_config *cfg, const ev_data *data, ev_meter *meter,
                            const search_result *r, ev_net *teacher, app_final_model *m, ev_net **net,
                            ev_train_result *tr, nas_err *err)
{
    static space_net arch;   /* large: off the stack */
    *net = NULL;
    nas_status st = space_genome_to_spec(cfg, &r->genome, &m->spec, err);
    if (!st)
        st = space_resolve(&m->spec, &arch, err);
    if (st)
        return nas_errctx(err, "final training of candidate %ld", r->id);
    int batch = o->batch < data->train.n ? o->batch : data->train.n;
    ev_net_opts no = {.batch = batch, .training = 1, .threads = o->threads,
                      .seed = o->seed * 7919u + (uint64_t)r->id};
    double j0 = 0, j1 = NAN, t0 = nas_now();
    if ((st = ev_meter_read(meter, &j0, err)) || (st = ev_net_create(&arch, &no, net, err)))
        return nas_errctx(err, "final training of candidate %ld", r->id);
    ev_train_opts to;
    ev_train_opts_default(&to);
    to.epochs = o->epochs;
    to.batch = batch;
    to.lr = o->lr;
    to.threads = o->threads;
    to.seed = no.seed;
    to.teacher = teacher, to.kd_alpha = o->kd_alpha, to.kd_temperature = o->kd_temperature;
    st = ev_train(*net, data, &to, tr, err);
    if (!st)
        st = class_accuracy(*net, &data->test, batch, data->num_classes, m->class_acc, err);
    /* what final training cost is an error when the meter fails, never 0 J */
    if (!st)
        st = ev_meter_spent(meter, j0, &j1, err);
    m->id = r->id;
    m->proxy_acc = r->eval.accuracy;
    m->val_acc = tr->val_acc;
    m->test_acc = tr->test_acc;
    m->epochs_done = tr->epochs_done;
    m->joules = j1;
    m->seconds = nas_now() - t0;
    return st ? nas_errctx(err, "final training of candidate %ld", r->id) : NAS_OK;
}

/* The distillation's teacher, trained first with the final recipe. */
static nas_status train_teacher(const app_final_opts *o, const space_config *cfg, ev_meter *meter,
                                app_final_report *rep, ev_net **teacher, nas_err *err)
{
    ev_train_result tr;
    app_final_opts to = *o;
    fprintf(stderr, "final training: the teacher first, candidate #%ld (proxy accuracy %.4f), %d epochs on %d "
            "images...\n", o->teacher->id, o->teacher->eval.accuracy, o->epochs, rep->data.train.n);
    to.teacher = NULL;
    nas_status st = train_one(&to, cfg, &rep->data, meter, o->teacher, NULL, &rep->teacher, teacher, &tr, err);
    rep->joules += isfinite(rep->teacher.joules) ? rep->teacher.joules : 0;
    if (st) {
        ev_net_free(*teacher);
        *teacher = NULL;
        return nas_errctx(err, "the distillation's teacher");
    }
    rep->has_teacher = 1;
    rep->kd_alpha = o->kd_alpha, rep->kd_temperature = o->kd_temperature;
    fprintf(stderr, "  teacher #%ld: validation %.4f, test %.4f, %.1f J, %.0f s; it teaches the top (alpha %g, "
            "temperature %g)\n", rep->teacher.id, rep->teacher.val_acc, rep->teacher.test_acc, rep->teacher.joules,
            rep->teacher.seconds, o->kd_alpha, o->kd_temperature);
    return NAS_OK;
}

nas_status app_final_train(const app_final_opts *o, const space_config *cfg, const char *data_spec,
                           const ev_data_opts *dopts, ev_meter *meter, const search_objective *obj,
                           const search_result *const *cands, int n, app_final_report *rep, nas_err *err)
{
    memset(rep, 0, sizeof *rep);
    rep->chosen = -1;
    snprintf(rep->meter, sizeof rep->meter, "%s", ev_meter_source(meter));
    rep->estimated = ev_meter_quality(meter) == EV_ESTIMATED;
    ev_data_opts d = *dopts;
    d.skip_test = 0;   /* the first and only reader of the test split */
    d.train_limit = (int)o->subset;
    d.test_limit = dopts->test_limit;
    nas_status st = ev_data_load(data_spec, &d, &rep->data, err);
    if (st)
        return nas_errctx(err, "final training");
    if (n > APP_FINAL_MAX)
        n = APP_FINAL_MAX;
    ev_net *teacher = NULL;
    if (o->teacher && (st = train_teacher(o, cfg, meter, rep, &teacher, err)))
        return st;
    double best = -INFINITY;
    for (int i = 0; i < n && !st; i++) {
        app_final_model *m = &rep->models[i];
        ev_net *net = NULL;
        ev_train_result tr;
        fprintf(stderr, "final training %d/%d: candidate #%ld, %d epochs on %d images...\n", i + 1, n, cands[i]->id,
                o->epochs, rep->data.train.n);
        st = train_one(o, cfg, &rep->data, meter, cands[i], teacher, m, &net, &tr, err);
        rep->joules += m->joules;
        if (!st) {
            rep->n = i + 1;
            m->reward = search_reward(obj, m->val_acc, cands[i]->energy_mj, cands[i]->latency_ms);
            if (o->on_model)
                st = o->on_model(o->ctx, m, net, &rep->data, err);
        }
        if (st) {
            ev_net_free(net);
            break;
        }
        fprintf(stderr, "  #%ld: validation %.4f (proxy %.4f), test %.4f, %.1f J, %.0f s\n", m->id, m->val_acc,
                m->proxy_acc, m->test_acc, m->joules, m->seconds);
        if (m->reward > best) {
            best = m->reward;
            ev_net_free(rep->net);
            rep->net = net;
            rep->chosen = i;
            rep->chosen_train = tr;
        } else {
            ev_net_free(net);
        }
    }
    ev_net_free(teacher);
    return st;
}

void app_final_print(const app_final_report *rep, FILE *f)
{
    fprintf(f, "\nfinal training (the top %d again, on %d images; tested on %d test images, which the search "
            "never read):\n", rep->n, rep->data.train.n, rep->data.test.n);
    fprintf(f, "%6s %8s %8s %8s %8s %9s %8s\n", "id", "proxy", "val", "test", "epochs", "joules", "seconds");
    for (int i = 0; i < rep->n; i++) {
        const app_final_model *m = &rep->models[i];
        fprintf(f, "%6ld %8.4f %8.4f %8.4f %8d %9.1f %8.0f%s\n", m->id, m->proxy_acc, m->val_acc, m->test_acc,
                m->epochs_done, m->joules, m->seconds, i == rep->chosen ? "  [chosen]" : "");
    }
    if (rep->has_teacher)
        fprintf(f, "distilled from teacher #%ld (trained first, same recipe: validation %.4f, test %.4f, %.1f J, "
                "%.0f s; alpha %g, temperature %g)\n", rep->teacher.id, rep->teacher.val_acc, rep->teacher.test_acc,
                rep->teacher.joules, rep->teacher.seconds, rep->kd_alpha, rep->kd_temperature);
    fprintf(f, "energy of final training: %.1f J, %s, %s (not counted in the search's --budget-joules)\n",
            rep->joules, rep->meter, rep->estimated ? "estimated" : "measured");
    if (rep->chosen < 0)
        return;
    const app_final_model *m = &rep->models[rep->chosen];
    fprintf(f, "test accuracy per class of #%ld:", m->id);
    for (int c = 0; c < rep->data.num_classes && c < 10; c++)
        fprintf(f, "%s %s %.3f", c ? "," : "", ev_data_class_name(&rep->data, c), m->class_acc[c]);
    fprintf(f, "\n");
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

void *app_final_json(const app_final_report *rep)
{
    json_t *models = json_array();
    for (int i = 0; models && i < rep->n; i++) {
        const app_final_model *m = &rep->models[i];
        json_t *cls = json_object();
        for (int c = 0; cls && c < rep->data.num_classes && c < 10; c++)
            json_object_set_new(cls, ev_data_class_name(&rep->data, c), num_or_null(m->class_acc[c]));
        json_array_append_new(models, json_pack("{s:I,s:o,s:o,s:o,s:o,s:i,s:o,s:o,s:b,s:o}", "id", (json_int_t)m->id,
                                                "proxy_accuracy", num_or_null(m->proxy_acc), "val_accuracy",
                                                num_or_null(m->val_acc), "test_accuracy", num_or_null(m->test_acc),
                                                "reward", num_or_null(m->reward), "epochs", m->epochs_done,
                                                "joules", num_or_null(m->joules), "seconds", num_or_null(m->seconds),
                                                "chosen", i == rep->chosen, "test_accuracy_per_class",
                                                cls ? cls : json_null()));
    }
    json_t *teacher = rep->has_teacher
                          ? json_pack("{s:I,s:o,s:o,s:o,s:o,s:f,s:f}", "id", (json_int_t)rep->teacher.id,
                                      "val_accuracy", num_or_null(rep->teacher.val_acc), "test_accuracy",
                                      num_or_null(rep->teacher.test_acc), "joules", num_or_null(rep->teacher.joules),
                                      "seconds", num_or_null(rep->teacher.seconds), "kd_alpha", rep->kd_alpha,
                                      "kd_temperature", rep->kd_temperature)
                          : json_null();
    return json_pack("{s:o,s:o,s:i,s:i,s:o,s:s,s:b,s:s}", "models", models ? models : json_array(), "teacher",
                     teacher ? teacher : json_null(), "train_images", rep->data.train.n, "test_images",
                     rep->data.test.n, "joules", num_or_null(rep->joules), "meter", rep->meter, "estimated",
                     rep->estimated, "budget", "not counted in the search's joule budget");
}

nas_status app_final_export(const app_final_report *rep, const app_final_opts *o, const char *dir,
                            const char *name, char *path, size_t path_n, nas_err *err)
{
    if (rep->chosen < 0 || !rep->net)
        return nas_errf(err, NAS_EINVAL, "final training: no model to export");
    nas_status st = nas_mkdirs(dir, err);
    if (st)
        return st;
    snprintf(path, path_n, "%s/%s-final.onnx", dir, name);
    app_train_export_opts x = {.path = path, .force = 1, .epochs = o->epochs, .batch = o->batch,
                               .seed = (long)o->seed, .threads = o->threads, .lr = o->lr,
                               .int8 = o->int8};
    return app_train_export(&x, rep->net, &rep->models[rep->chosen].spec, &rep->data, &rep->chosen_train, err);
}

void app_final_free(app_final_report *rep)
{
    ev_net_free(rep->net);
    ev_data_free(&rep->data);
    memset(rep, 0, sizeof *rep);
    rep->chosen = -1;
}
