/* prune.c — `nas prune`: a trained network made physically smaller
 * (evaluator/prune.c), fine-tuned, measured before and after, and exported.
 *
 * The network comes from a spec and a weights file, or from a run of the
 * store: by default the model the search finally trained and exported (schema
 * step 5's finals), on the data and split the run used, so its test accuracy
 * before pruning is the one final training recorded, and the figures after
 * are comparable to it. A candidate never finally trained is pruned from its
 * proxy-trained weights, and the result says so.
 *
 * A target in mJ per inference is met by measurement, not by a formula: the
 * energy of the unpruned network is benchmarked here, a MAC target scaled
 * from it, and the pruned network benchmarked again; over the target, the MAC
 * target shrinks by the ratio missed and is tried again. */
#include "app/app.h"
#include "runs/runs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRUNE_MJ_TRIES 4

void app_prune_opts_default(app_prune_opts *o)
{
    memset(o, 0, sizeof *o);
    o->candidate = -1;
    o->keep = o->target_macs = o->target_mj = NAN;
    o->min_ch = 8;
    o->multiple = 8;
    o->epochs = 1;
    o->batch = 64;
    o->seed = 1;
    o->lr = 0.02;
    ev_train_opts d;
    ev_train_opts_default(&d);
    o->kd_alpha = d.kd_alpha;
    o->kd_temperature = d.kd_temperature;
    o->measure_repeats = 5;
}

/* What is pruned, loaded: its spec, weights and where the data comes from. */
typedef struct {
    space_spec spec;
    void *blob;
    size_t len;
    char data[512];          /* the data set ('' : none) */
    ev_data_opts dopts;
    double recorded_test;    /* the run's final test accuracy of this model (NAN: none) */
    char what[600];
} source;

static nas_status source_file(const app_prune_opts *o, source *s, nas_err *err)
{
    nas_status st = space_spec_from_arg(o->spec, &s->spec, err);
    if (!st && (st = nas_read_file(o->weights, (char **)&s->blob, &s->len, err)) == NAS_OK)
        snprintf(s->what, sizeof s->what, "%s with weights %s", o->spec, o->weights);
    ev_data_opts_default(&s->dopts);
    s->dopts.train_limit = (int)o->subset;
    s->dopts.seed = o->seed;
    snprintf(s->data, sizeof s->data, "%s", o->data ? o->data : "");
    return st;
}

/* The candidate of the run (by seq, or the chosen final model), its weights
 * (final when it was finally trained, else proxy) and the run's data split. */
static nas_status source_run(const app_prune_opts *o, runs_db *db, source *s, nas_err *err)
{
    runs_report rep;
    int64_t run_id, final_id = -1;
    int found = 0;
    nas_status st = runs_run_find(db, o->run, &run_id, err);
    if (!st)
        st = runs_report_build(db, run_id, &rep, err);
    if (st)
        return st;
    if (o->candidate < 0 && !(st = runs_final_chosen(db, run_id, &final_id, &found, err)) && !found &&
        rep.chosen < 0)
        st = nas_errf(err, NAS_EINVAL, "run '%s' has no chosen model to prune", rep.run.name);
    const runs_cand *cand = NULL;
    for (int i = 0; !st && i < rep.n && !cand; i++)
        if (o->candidate >= 0 ? rep.cands[i].seq == o->candidate
                              : found ? rep.cands[i].id == final_id : i == rep.chosen)
            cand = &rep.cands[i];
    if (!st && !cand)
        st = nas_errf(err, NAS_EINVAL, "run '%s' has no candidate %ld ('nas report %s' lists them)", rep.run.name,
                      o->candidate, rep.run.name);
    char where[128];
    if (!st) {
        snprintf(where, sizeof where, "candidate %d of run '%s'", cand->seq, rep.run.name);
        st = cand->spec_json ? space_spec_from_json(cand->spec_json, where, &s->spec, err)
                             : nas_errf(err, NAS_EINVAL, "%s has no spec in the store", where);
    }
    runs_final f;
    if (!st)
        st = runs_final_get(db, cand->id, &f, &s->blob, &s->len, &found, err);
    int final = found;
    if (!st && !found && !(st = runs_weights_get(db, cand->id, &s->blob, &s->len, &found, err)) && !found)
        st = nas_errf(err, NAS_EINVAL, "%s has no stored weights", where);
    app_settings set;
    if (!st)
        st = app_settings_of_run(rep.run.settings_json, &set, err);
    if (!st) {
        s->recorded_test = final ? f.test_acc : NAN;
        snprintf(s->what, sizeof s->what, "%s, %s", where,
                 final ? "as final training left it" : "with its proxy-trained weights (it was not finally trained)");
        snprintf(s->data, sizeof s->data, "%s", o->data ? o->data : set.data);
        if (set.data_dir[0] && !getenv("NAS_DATA_DIR"))
            setenv("NAS_DATA_DIR", set.data_dir, 1);
        ev_data_opts_default(&s->dopts);   /* the split final training used */
        s->dopts.train_limit = (int)(o->subset > 0 ? o->subset : set.final_subset);
        if (set.val_count >= 0)
            s->dopts.val_count = (int)set.val_count;
        s->dopts.test_limit = (int)set.test_limit;
        s->dopts.seed = (uint64_t)set.seed;
    }
    runs_report_free(&rep);
    return st;
}

/* Energy per inference of a network, benchmarked (weights do not matter). */
static nas_status measure_mj(app_measure_ctx *mc, const space_spec *spec, double *mj, app_prune_result *r,
                             nas_err *err)
{
    static space_net net;   /* large: off the stack */
    pred_measurement m;
    nas_status st = space_resolve(spec, &net, err);
    if (!st)
        st = app_measure(mc, spec, &net, &m, err);
    if (!st) {
        *mj = m.energy_mj;
        snprintf(r->mj_source, sizeof r->mj_source, "%s", m.energy_source);
        snprintf(r->mj_quality, sizeof r->mj_quality, "%s", m.energy_quality);
    }
    return st;
}

static double macs_of(const space_spec *spec)
{
    static space_net net;
    space_cost c;
    nas_err e;
    if (space_resolve(spec, &net, &e))
        return NAN;
    space_cost_of(&net, NULL, 0, &c);
    return c.macs;
}

/* The keep fraction for the target given: as is, by MACs, or by measured mJ. */
static nas_status choose_keep(const app_prune_opts *o, const space_spec *spec, ev_prune_opts *po,
                              app_prune_result *r, nas_err *err)
{
    if (!isnan(o->keep)) {
        r->keep = o->keep;
        return NAS_OK;
    }
    if (!isnan(o->target_macs))
        return ev_prune_keep_for_macs(spec, po, o->target_macs, &r->keep, err);
    app_measure_ctx mc;
    app_measure_init(&mc, NULL, o->threads > 0 ? o->threads : 1);
    mc.repeats = o->measure_repeats;
    nas_status st = app_measure_ready(&mc, err);
    if (!st)
        st = measure_mj(&mc, spec, &r->mj_before, r, err);
    double macs0 = macs_of(spec), target = macs0 * fmin(1, o->target_mj / r->mj_before);
    if (!st)
        fprintf(stderr, "nas prune: %.3fM MACs: %.4g mJ per inference (%s, %s), target %.4g mJ\n", macs0 / 1e6,
                r->mj_before, r->mj_source, r->mj_quality, o->target_mj);
    space_spec p;
    for (int t = 0; !st && t < PRUNE_MJ_TRIES; t++) {
        if ((st = ev_prune_keep_for_macs(spec, po, target, &r->keep, err))) {
            nas_errctx(err, "--target-mj %.4g (measured %.4g mJ unpruned, %s)", o->target_mj, r->mj_before,
                       r->mj_quality);
            break;
        }
        po->keep = r->keep;
        if ((st = ev_prune_spec(spec, po, &p, err)) || (st = measure_mj(&mc, &p, &r->mj_after, r, err)))
            break;
        fprintf(stderr, "nas prune: keep %.4f, %.3fM MACs: %.4g mJ per inference%s\n", r->keep, macs_of(&p) / 1e6,
                r->mj_after, r->mj_after <= o->target_mj ? "" : " (over the target: fewer MACs)");
        if (r->mj_after <= o->target_mj)
            break;
        target = macs_of(&p) * 0.98 * o->target_mj / r->mj_after;
    }
    if (!st && !(r->mj_after <= o->target_mj))
        st = nas_errf(err, NAS_EINVAL, "--target-mj %.4g: the smallest network tried still costs %.4g mJ per "
                      "inference (%s); lower --min-ch or give a larger target", o->target_mj, r->mj_after,
                      r->mj_quality);
    app_measure_close(&mc);
    return st;
}

static nas_status load_data(const source *s, ev_data *data, nas_err *err)
{
    nas_status st = ev_data_load(s->data, &s->dopts, data, err);
    if (st)
        return st;
    if (data->train.c != s->spec.in_ch || data->num_classes != s->spec.num_classes)
        st = nas_errf(err, NAS_EINVAL, "%s: %d channels and %d classes, but the network has %d and %d (use the "
                      "spec the weights were trained with, e.g. nas train --export's F.spec.json)",
                      data->name, data->train.c, data->num_classes, s->spec.in_ch, s->spec.num_classes);
    if (!st && !(st = ev_split_resize(&data->train, s->spec.resolution, err)) &&
        !(st = ev_split_resize(&data->val, s->spec.resolution, err)))
        st = ev_split_resize(&data->test, s->spec.resolution, err);
    if (st)
        ev_data_free(data);
    return st;
}

static nas_status accuracy(ev_net *net, const ev_split *sp, double *acc, nas_err *err)
{
    *acc = NAN;
    return sp->n > 0 ? ev_evaluate(net, sp, acc, err) : NAS_OK;
}

static nas_status fine_tune(const app_prune_opts *o, ev_net *net, ev_net *unpruned, const ev_data *data,
                            int batch, ev_train_result *tr, nas_err *err)
{
    ev_train_opts to;
    ev_train_opts_default(&to);
    to.epochs = o->epochs;
    to.batch = batch;
    to.lr = o->lr;
    to.warmup_epochs = 0;   /* the weights are trained already: no warm-up from scratch */
    to.threads = o->threads;
    to.seed = o->seed;
    to.on_epoch = o->on_epoch;
    to.ctx = o->ctx;
    if (o->distill) {
        to.teacher = unpruned, to.kd_alpha = o->kd_alpha, to.kd_temperature = o->kd_temperature;
        fprintf(stderr, "nas prune: the fine-tune learns from the unpruned network's logits too (alpha %g, "
                "temperature %g)\n", o->kd_alpha, o->kd_temperature);
    }
    return ev_train(net, data, &to, tr, err);
}

static nas_status export_pruned(const app_prune_opts *o, const source *s, const ev_net *pnet,
                                const space_spec *pspec, const ev_data *data, app_prune_result *r, nas_err *err)
{
    char split[160], trained[1200], kd[96] = "";
    ev_export_opts xo;
    ev_export_opts_default(&xo);
    xo.force = o->force;
    xo.spec = pspec;
    if (data && isfinite(r->test_after)) {
        xo.accuracy = r->test_after;
        snprintf(split, sizeof split, "test split of %s (%d images), after pruning and fine-tuning", data->name,
                 data->test.n);
        xo.accuracy_split = split;
    }
    if (o->distill && data && o->epochs > 0)
        snprintf(kd, sizeof kd, ", distilled from the unpruned network (alpha %g, temperature %g)", o->kd_alpha,
                 o->kd_temperature);
    snprintf(trained, sizeof trained,
             "nas prune: %s; kept %.4f of each block's expansion channels (L1 of the expand conv weights, at "
             "least %d, multiples of %d): %.0f -> %.0f MACs; fine-tuned %d epochs at lr %g, seed %llu%s%s%s",
             s->what, r->keep, o->min_ch, o->multiple, r->before.macs, r->after.macs, data ? o->epochs : 0, o->lr,
             (unsigned long long)o->seed, data ? " on " : "", data ? data->name : "", kd);
    xo.trained_on = trained;
    if (isfinite(r->mj_after)) {
        xo.meas_energy_mj = r->mj_after;
        xo.meas_energy_source = r->mj_source;
        xo.meas_energy_quality = r->mj_quality;
    }
    if (data) {
        xo.norm_channels = data->train.c < 3 ? data->train.c : 3;
        for (int c = 0; c < xo.norm_channels; c++) {
            xo.norm_mean[c] = data->mean[c];
            xo.norm_std[c] = data->std[c];
        }
    }
    void *blob = NULL;
    size_t blen = 0;
    nas_status st = ev_export_onnx(pnet, &xo, r->onnx, err);
    if (!st && !(st = ev_net_weights_pack(pnet, &blob, &blen, err)))
        st = nas_write_file_atomic(r->weights, blob, blen, err);
    nas_free(blob);
    return st;
}

nas_status app_prune_check(const app_prune_opts *o, nas_err *err)
{
    int targets = !isnan(o->keep) + !isnan(o->target_macs) + !isnan(o->target_mj);
    if (!o->run == !o->spec)
        return nas_errf(err, NAS_EINVAL, "give a spec with --weights, or a run (not both)");
    if (o->spec && !o->weights)
        return nas_errf(err, NAS_EINVAL, "--weights is required with a spec (from 'nas train ... --save-weights W')");
    if (o->run && o->weights)
        return nas_errf(err, NAS_EINVAL, "--weights is for a spec; a run's weights are in its store");
    if (targets != 1)
        return nas_errf(err, NAS_EINVAL, "give one of --keep F, --target-macs N and --target-mj X");
    if (!o->out_dir || !o->out_dir[0])
        return nas_errf(err, NAS_EINVAL, "no output folder (--out DIR)");
    if (o->spec && !o->data && o->epochs_given && o->epochs > 0)
        return nas_errf(err, NAS_EINVAL, "--epochs needs --data (the fine-tune trains on it)");
    if (o->distill && (o->epochs < 1 || (o->spec && !o->data)))
        return nas_errf(err, NAS_EINVAL, "--distill works in the fine-tune: it needs --epochs 1 or more%s",
                        o->spec && !o->data ? " and --data" : "");
    return NAS_OK;
}

/* Loads, prunes, fine-tunes; the nets are freed by the caller. */
static nas_status prune_loaded(const app_prune_opts *o, const source *s, ev_data *data, ev_net **net,
                               ev_net **pnet, app_prune_result *r, nas_err *err)
{
    static space_net arch;
    space_spec pspec;
    int batch = data && o->batch > data->train.n ? data->train.n : o->batch;
    ev_net_opts no = {.batch = batch, .training = 0, .threads = o->threads, .seed = o->seed};
    nas_status st = space_resolve(&s->spec, &arch, err);
    if (!st)
        st = ev_net_create(&arch, &no, net, err);
    if (!st && (st = ev_net_weights_unpack(*net, s->blob, s->len, err)))
        nas_errctx(err, "%s", s->what);
    if (!st && data && !(st = accuracy(*net, &data->val, &r->val_before, err)))
        st = accuracy(*net, &data->test, &r->test_before, err);
    ev_prune_opts po;
    ev_prune_opts_default(&po);
    po.min_ch = o->min_ch;
    po.multiple = o->multiple;
    if (!st)
        st = choose_keep(o, &s->spec, &po, r, err);
    po.keep = r->keep;
    no.training = data && o->epochs > 0;
    if (!st)
        st = ev_prune_net(*net, &s->spec, &po, &no, &pspec, pnet, err);
    if (st)
        return st;
    space_cost_of(&arch, NULL, 0, &r->before);
    space_cost_of(ev_net_arch(*pnet), NULL, 0, &r->after);
    fprintf(stderr, "nas prune: keep %.4f of the expansion channels: MACs %.3fM -> %.3fM (-%.1f%%), params "
            "%.3fM -> %.3fM\n", r->keep, r->before.macs / 1e6, r->after.macs / 1e6,
            100 * (1 - r->after.macs / r->before.macs), r->before.params / 1e6, r->after.params / 1e6);
    ev_train_result tr;
    if (data && !(st = accuracy(*pnet, &data->val, &r->val_pruned, err)) && o->epochs > 0)
        st = fine_tune(o, *pnet, *net, data, batch, &tr, err);
    if (!st && data && !(st = accuracy(*pnet, &data->val, &r->val_after, err)))
        st = accuracy(*pnet, &data->test, &r->test_after, err);
    if (!st)
        st = export_pruned(o, s, *pnet, &pspec, data, r, err);
    return st;
}

nas_status app_prune(const app_prune_opts *o, app_prune_result *r, nas_err *err)
{
    memset(r, 0, sizeof *r);
    r->val_before = r->val_pruned = r->val_after = r->test_before = r->test_after = NAN;
    r->mj_before = r->mj_after = r->recorded_test = NAN;
    r->epochs = o->epochs;
    nas_status st = app_prune_check(o, err);
    if (st)
        return st;
    source s;
    memset(&s, 0, sizeof s);
    s.recorded_test = NAN;
    runs_db *db = NULL;
    if (o->run && !(st = runs_open(o->db ? o->db : APP_DEFAULT_DB, RUNS_OPEN_READONLY, &db, err)))
        st = source_run(o, db, &s, err);
    else if (!o->run)
        st = source_file(o, &s, err);
    runs_close(db);
    r->recorded_test = s.recorded_test;
    snprintf(r->what, sizeof r->what, "%s", s.what);
    snprintf(r->onnx, sizeof r->onnx, "%s/pruned.onnx", o->out_dir);
    snprintf(r->weights, sizeof r->weights, "%s/pruned.weights", o->out_dir);
    ev_export_opts xo;
    ev_export_opts_default(&xo);
    xo.force = o->force;
    if (!st && !(st = nas_mkdirs(o->out_dir, err)))
        st = ev_export_check_path(&xo, r->onnx, err);
    ev_data data;
    int have_data = 0;
    if (!st && s.data[0])
        have_data = (st = load_data(&s, &data, err)) == NAS_OK;
    ev_net *net = NULL, *pnet = NULL;
    if (!st)
        st = prune_loaded(o, &s, have_data ? &data : NULL, &net, &pnet, r, err);
    if (!st && have_data) {
        r->data_val = data.val.n;
        r->data_test = data.test.n;
        snprintf(r->data_name, sizeof r->data_name, "%s", data.name);
    }
    ev_net_free(net);
    ev_net_free(pnet);
    if (have_data)
        ev_data_free(&data);
    nas_free(s.blob);
    return st;
}
