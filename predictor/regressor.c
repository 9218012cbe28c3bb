/* regressor.c — XGBoost on top of a linear prior, whole-network or block-level.
 *
 * Trees extrapolate badly and a calibration has a few hundred networks, so
 * the trees do not learn latency from scratch. First a linear prior is fit:
 * target ~ sum_k w_k * cost_k over additive costs (MACs by kind of op, bytes
 * moved, layers, a fixed cost), with w >= 0 and relative (not absolute)
 * error minimised. XGBoost then learns the multiplicative correction:
 *   net   log(target) = log(prior) + trees(net features, log prior)
 *         (reg:squarederror on log target with log(prior) as base_margin);
 *   block target = sum over units u of prior_u * exp(trees(unit features)),
 *         with a custom objective (XGBoosterBoostOneIter) on the relative
 *         squared error of the sum. Its Hessian for unit u is
 *         2 f_u S / y^2 (f_u the unit's prediction, S the net's sum) rather than
 *         the diagonal 2 f_u^2 / y^2: exact when a whole net falls in one leaf,
 *         conservative otherwise, so Newton steps never overshoot by the
 *         number of units as the diagonal would.
 * Early stopping watches the MAPE of a seeded validation split; the model is
 * then refit on all rows for the best number of rounds.
 * Every XGBoost call is checked; failures carry XGBGetLastError().
 */
#include "predictor/pred_int.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XGB(call, what)                                                                   \
    do {                                                                                  \
        if ((call) != 0) {                                                                \
            st = nas_errf(err, NAS_EINTERNAL, "xgboost %s: %s", what, xgb_error());       \
            goto cleanup;                                                                 \
        }                                                                                 \
    } while (0)

/* XGBoost's last error without the stack trace it appends. */
static const char *xgb_error(void)
{
    static __thread char buf[512];
    const char *e = XGBGetLastError();
    size_t n = strcspn(e ? e : "", "\n");
    snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf - 1 ? n : sizeof buf - 1), e ? e : "");
    return buf;
}

const char *pred_kind_name(pred_kind k)
{
    return k == PRED_KIND_BLOCK ? "block" : "net";
}

void pred_fit_opts_default(pred_fit_opts *o)
{
    o->max_depth = 4;
    o->eta = 0.08;
    o->max_rounds = 600;
    o->early_stop = 40;
    o->val_frac = 0.15;
    o->lambda = 1.0;
    o->subsample = 0.9;
    o->colsample = 0.9;
    o->min_rounds = 10;
    o->nthread = 1;
    o->seed = 1;
    o->refit = 1;
}

/* ---- the data set ------------------------------------------------------- */

void pred_dataset_init(pred_dataset *d)
{
    memset(d, 0, sizeof *d);
}

void pred_dataset_free(pred_dataset *d)
{
    nas_free(d->xnet);
    nas_free(d->unit_start);
    nas_free(d->xunit);
    nas_free(d->prior);
    pred_dataset_init(d);
}

nas_status pred_dataset_add(pred_dataset *d, const space_net *net, nas_err *err)
{
    int units = pred_unit_count(net);
    if (d->n + 1 > d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        float *x = nas_realloc(d->xnet, sizeof(float) * (size_t)cap * PRED_NET_NFEAT);
        if (!x)
            return nas_errf(err, NAS_ENOMEM, "predictor data set: out of memory");
        d->xnet = x;
        int *s = nas_realloc(d->unit_start, sizeof(int) * ((size_t)cap + 1));
        if (!s)
            return nas_errf(err, NAS_ENOMEM, "predictor data set: out of memory");
        d->unit_start = s;
        if (d->cap == 0)
            d->unit_start[0] = 0;
        d->cap = cap;
    }
    if (d->n_units + units > d->unit_cap) {
        int cap = d->unit_cap ? 2 * d->unit_cap : 1024;
        while (cap < d->n_units + units)
            cap *= 2;
        float *x = nas_realloc(d->xunit, sizeof(float) * (size_t)cap * PRED_UNIT_NFEAT);
        if (!x)
            return nas_errf(err, NAS_ENOMEM, "predictor data set: out of memory");
        d->xunit = x;
        double *p = nas_realloc(d->prior, sizeof(double) * (size_t)cap * PRED_NPRIOR);
        if (!p)
            return nas_errf(err, NAS_ENOMEM, "predictor data set: out of memory");
        d->prior = p;
        d->unit_cap = cap;
    }
    pred_net_features(net, d->xnet + (size_t)d->n * PRED_NET_NFEAT);
    for (int u = 0; u < units; u++) {
        size_t row = (size_t)d->n_units + u;
        pred_unit_features(net, u, d->xunit + row * PRED_UNIT_NFEAT);
        pred_unit_prior(net, u, d->prior + row * PRED_NPRIOR);
    }
    d->n_units += units;
    d->n++;
    d->unit_start[d->n] = d->n_units;
    return NAS_OK;
}

/* ---- the linear prior --------------------------------------------------- */

static double unit_prior(const double *w, const double *p)
{
    double s = 0;
    for (int k = 0; k < PRED_NPRIOR; k++)
        s += w[k] * p[k];
    return s;
}

static double net_prior(const pred_dataset *d, int i, const double *w)
{
    double s = 0;
    for (int u = d->unit_start[i]; u < d->unit_start[i + 1]; u++)
        s += unit_prior(w, d->prior + (size_t)u * PRED_NPRIOR);
    return s;
}

/* Non-negative least squares of sum_k w_k P_nk / y_n against 1 (relative
 * error) by cyclic coordinate descent on the normal equations, columns
 * scaled to unit RMS; exact coordinate minimisation converges for this convex
 * problem, and a couple of dozen unknowns need no cleverer method. */
static void fit_prior(const pred_dataset *d, const double *y, const int *rows, int nrows, double *w)
{
    double G[PRED_NPRIOR][PRED_NPRIOR] = {{0}}, h[PRED_NPRIOR] = {0}, scale[PRED_NPRIOR] = {0};
    for (int r = 0; r < nrows; r++) {
        int i = rows[r];
        double a[PRED_NPRIOR] = {0};
        for (int u = d->unit_start[i]; u < d->unit_start[i + 1]; u++)
            for (int k = 0; k < PRED_NPRIOR; k++)
                a[k] += d->prior[(size_t)u * PRED_NPRIOR + k];
        for (int k = 0; k < PRED_NPRIOR; k++) {
            a[k] /= y[i];
            scale[k] += a[k] * a[k];
        }
        for (int k = 0; k < PRED_NPRIOR; k++) {
            h[k] += a[k];
            for (int l = 0; l < PRED_NPRIOR; l++)
                G[k][l] += a[k] * a[l];
        }
    }
    for (int k = 0; k < PRED_NPRIOR; k++)
        scale[k] = scale[k] > 0 ? sqrt(scale[k] / nrows) : 0;
    double ws[PRED_NPRIOR] = {0};
    for (int k = 0; k < PRED_NPRIOR; k++) {
        if (scale[k] == 0)
            continue;
        h[k] /= scale[k] * nrows;
        for (int l = 0; l < PRED_NPRIOR; l++)
            if (scale[l] > 0)
                G[k][l] /= scale[k] * scale[l] * nrows;
        G[k][k] *= 1 + 1e-6;   /* a whisper of ridge for collinear costs */
    }
    for (int sweep = 0; sweep < 2000; sweep++) {
        double change = 0;
        for (int k = 0; k < PRED_NPRIOR; k++) {
            if (scale[k] == 0 || G[k][k] <= 0)
                continue;
            double grad = -h[k];
            for (int l = 0; l < PRED_NPRIOR; l++)
                grad += G[k][l] * ws[l];
            double nw = ws[k] - grad / G[k][k];
            if (nw < 0)
                nw = 0;
            change += fabs(nw - ws[k]);
            ws[k] = nw;
        }
        if (change < 1e-12)
            break;
    }
    for (int k = 0; k < PRED_NPRIOR; k++)
        w[k] = scale[k] > 0 ? ws[k] / scale[k] : 0;
}

/* ---- XGBoost plumbing --------------------------------------------------- */

/* The smallest prior a unit or net may have, so log() stays finite for units
 * whose costs all got weight 0. */
#define PRIOR_FLOOR 1e-6

/* Net kind: rows x (features + log prior), labels log(y), base_margin log(prior).
 * Block kind: the units of the rows, base_margin log(unit prior). */
static nas_status make_dmatrix(const pred_dataset *d, const double *y, const int *rows, int nrows,
                               pred_kind kind, const double *w, DMatrixHandle *out, nas_err *err)
{
    nas_status st = NAS_OK;
    float *x = NULL, *margin = NULL, *label = NULL;
    *out = NULL;
    if (kind == PRED_KIND_NET) {
        const int nc = PRED_NET_NFEAT + 1;
        x = nas_malloc(sizeof(float) * (size_t)nrows * nc);
        margin = nas_malloc(sizeof(float) * (size_t)nrows);
        label = nas_malloc(sizeof(float) * (size_t)nrows);
        if (!x || !margin || !label) {
            st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory for %d rows", nrows);
            goto cleanup;
        }
        for (int r = 0; r < nrows; r++) {
            int i = rows[r];
            memcpy(x + (size_t)r * nc, d->xnet + (size_t)i * PRED_NET_NFEAT,
                   sizeof(float) * PRED_NET_NFEAT);
            double lp = log(fmax(net_prior(d, i, w), PRIOR_FLOOR));
            x[(size_t)r * nc + PRED_NET_NFEAT] = (float)lp;
            margin[r] = (float)lp;
            label[r] = y ? (float)log(y[i]) : 0.0f;
        }
        XGB(XGDMatrixCreateFromMat(x, (bst_ulong)nrows, nc, NAN, out), "XGDMatrixCreateFromMat");
        XGB(XGDMatrixSetFloatInfo(*out, "label", label, (bst_ulong)nrows), "XGDMatrixSetFloatInfo(label)");
        XGB(XGDMatrixSetFloatInfo(*out, "base_margin", margin, (bst_ulong)nrows),
            "XGDMatrixSetFloatInfo(base_margin)");
    } else {
        int nu = 0;
        for (int r = 0; r < nrows; r++)
            nu += d->unit_start[rows[r] + 1] - d->unit_start[rows[r]];
        x = nas_malloc(sizeof(float) * (size_t)nu * PRED_UNIT_NFEAT);
        margin = nas_malloc(sizeof(float) * (size_t)nu);
        label = nas_calloc((size_t)nu, sizeof(float));
        if (!x || !margin || !label) {
            st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory for %d unit rows", nu);
            goto cleanup;
        }
        int k = 0;
        for (int r = 0; r < nrows; r++) {
            int i = rows[r];
            for (int u = d->unit_start[i]; u < d->unit_start[i + 1]; u++, k++) {
                memcpy(x + (size_t)k * PRED_UNIT_NFEAT, d->xunit + (size_t)u * PRED_UNIT_NFEAT,
                       sizeof(float) * PRED_UNIT_NFEAT);
                margin[k] = (float)log(fmax(unit_prior(w, d->prior + (size_t)u * PRED_NPRIOR), PRIOR_FLOOR));
            }
        }
        XGB(XGDMatrixCreateFromMat(x, (bst_ulong)nu, PRED_UNIT_NFEAT, NAN, out), "XGDMatrixCreateFromMat");
        XGB(XGDMatrixSetFloatInfo(*out, "label", label, (bst_ulong)nu), "XGDMatrixSetFloatInfo(label)");
        XGB(XGDMatrixSetFloatInfo(*out, "base_margin", margin, (bst_ulong)nu),
            "XGDMatrixSetFloatInfo(base_margin)");
    }
cleanup:
    if (st != NAS_OK && *out) {
        XGDMatrixFree(*out);
        *out = NULL;
    }
    nas_free(x);
    nas_free(margin);
    nas_free(label);
    return st;
}

/* Network-level predictions of a DMatrix made by make_dmatrix for rows. */
static nas_status predict_dm(BoosterHandle b, DMatrixHandle dm, const pred_dataset *d, const int *rows,
                             int nrows, pred_kind kind, int training, double *out, nas_err *err)
{
    nas_status st = NAS_OK;
    bst_ulong len = 0;
    const float *res = NULL;
    XGB(XGBoosterPredict(b, dm, 1, 0, training, &len, &res), "XGBoosterPredict");
    if (kind == PRED_KIND_NET) {
        if (len != (bst_ulong)nrows)
            return nas_errf(err, NAS_EINTERNAL, "xgboost returned %lu predictions for %d networks",
                            (unsigned long)len, nrows);
        for (int r = 0; r < nrows; r++)
            out[r] = exp((double)res[r]);
    } else {
        size_t k = 0;
        for (int r = 0; r < nrows; r++) {
            int i = rows[r];
            double s = 0;
            for (int u = d->unit_start[i]; u < d->unit_start[i + 1]; u++, k++) {
                if (k >= len)
                    return nas_errf(err, NAS_EINTERNAL, "xgboost returned %lu predictions for more units",
                                    (unsigned long)len);
                s += exp((double)res[k]);
            }
            out[r] = s;
        }
    }
cleanup:
    return st;
}

static nas_status set_params(BoosterHandle b, const pred_fit_opts *o, nas_err *err)
{
    nas_status st = NAS_OK;
    char v[64];
    struct { const char *k; char v[32]; } p[12];
    int n = 0;
#define P(key, ...) do { p[n].k = key; snprintf(p[n].v, sizeof p[n].v, __VA_ARGS__); n++; } while (0)
    P("objective", "reg:squarederror");
    P("booster", "gbtree");
    P("tree_method", "hist");   /* as accurate as exact here, three times faster */
    P("max_depth", "%d", o->max_depth);
    P("eta", "%.17g", o->eta);
    P("lambda", "%.17g", o->lambda);
    P("subsample", "%.17g", o->subsample);
    P("colsample_bytree", "%.17g", o->colsample);
    P("nthread", "%d", o->nthread > 0 ? o->nthread : 1);
    P("seed", "%llu", (unsigned long long)(o->seed & 0x7fffffff));
    P("base_score", "0");
    P("verbosity", "0");
#undef P
    for (int i = 0; i < n; i++) {
        snprintf(v, sizeof v, "XGBoosterSetParam(%s)", p[i].k);
        XGB(XGBoosterSetParam(b, p[i].k, p[i].v), v);
    }
cleanup:
    return st;
}

/* Boosts on train rows for up to `rounds` rounds. With val rows, stops when
 * the validation MAPE has not improved for o->early_stop rounds and reports
 * the best round count in *best (the booster then holds more rounds; the
 * caller refits). */
static nas_status boost(const pred_dataset *d, const double *y, const int *train, int ntrain,
                        const int *val, int nval, pred_kind kind, const pred_fit_opts *o,
                        const double *w, int rounds, BoosterHandle *out, int *best, nas_err *err)
{
    nas_status st = NAS_OK;
    DMatrixHandle dtrain = NULL, dval = NULL;
    BoosterHandle b = NULL;
    double *pv = NULL, *pt = NULL;
    float *grad = NULL, *hess = NULL;
    *out = NULL;
    *best = rounds;

    st = make_dmatrix(d, y, train, ntrain, kind, w, &dtrain, err);
    if (st != NAS_OK)
        goto cleanup;
    if (nval > 0) {
        st = make_dmatrix(d, y, val, nval, kind, w, &dval, err);
        if (st != NAS_OK)
            goto cleanup;
        pv = nas_malloc(sizeof(double) * (size_t)nval);
        if (!pv) {
            st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory");
            goto cleanup;
        }
    }
    DMatrixHandle cache[2] = {dtrain, dval};
    XGB(XGBoosterCreate(cache, dval ? 2 : 1, &b), "XGBoosterCreate");
    st = set_params(b, o, err);
    if (st != NAS_OK)
        goto cleanup;

    int nunits = 0;
    double units_per_net = 1;
    if (kind == PRED_KIND_BLOCK) {
        for (int r = 0; r < ntrain; r++)
            nunits += d->unit_start[train[r] + 1] - d->unit_start[train[r]];
        units_per_net = (double)nunits / ntrain;
        grad = nas_malloc(sizeof(float) * (size_t)nunits);
        hess = nas_malloc(sizeof(float) * (size_t)nunits);
        pt = nas_malloc(sizeof(double) * (size_t)nunits);
        if (!grad || !hess || !pt) {
            st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory");
            goto cleanup;
        }
    }

    double best_mape = INFINITY;
    for (int it = 0; it < rounds; it++) {
        if (kind == PRED_KIND_NET) {
            XGB(XGBoosterUpdateOneIter(b, it, dtrain), "XGBoosterUpdateOneIter");
        } else {
            bst_ulong len = 0;
            const float *res = NULL;
            XGB(XGBoosterPredict(b, dtrain, 1, 0, 1, &len, &res), "XGBoosterPredict");
            if (len != (bst_ulong)nunits) {
                st = nas_errf(err, NAS_EINTERNAL, "xgboost returned %lu predictions for %d units",
                              (unsigned long)len, nunits);
                goto cleanup;
            }
            int k = 0;
            for (int r = 0; r < ntrain; r++) {
                int i = train[r], k0 = k;
                double s = 0;
                for (int u = d->unit_start[i]; u < d->unit_start[i + 1]; u++, k++) {
                    pt[k] = exp((double)res[k]);
                    s += pt[k];
                }
                /* loss (S/y - 1)^2, scaled by the units per net so that a unit's
                 * Hessian is of order 1, like squared error's */
                double c = units_per_net, yi = y[i];
                for (int kk = k0; kk < k; kk++) {
                    grad[kk] = (float)(2 * c * (s - yi) * pt[kk] / (yi * yi));
                    hess[kk] = (float)(2 * c * pt[kk] * s / (yi * yi));
                }
            }
            XGB(XGBoosterBoostOneIter(b, dtrain, grad, hess, (bst_ulong)nunits), "XGBoosterBoostOneIter");
        }
        if (nval > 0) {
            st = predict_dm(b, dval, d, val, nval, kind, 0, pv, err);
            if (st != NAS_OK)
                goto cleanup;
            double mape = 0;
            for (int r = 0; r < nval; r++)
                mape += fabs(pv[r] / y[val[r]] - 1);
            mape /= nval;
            if (mape < best_mape - 1e-9 || it + 1 <= o->min_rounds) {
                if (mape < best_mape)
                    best_mape = mape;
                *best = it + 1;
            } else if (it + 1 - *best >= o->early_stop) {
                break;
            }
        }
    }
    *out = b;
    b = NULL;
cleanup:
    if (b)
        XGBoosterFree(b);
    if (dtrain)
        XGDMatrixFree(dtrain);
    if (dval)
        XGDMatrixFree(dval);
    nas_free(pv);
    nas_free(pt);
    nas_free(grad);
    nas_free(hess);
    return st;
}

/* ---- the regressor ------------------------------------------------------ */

nas_status pred_regressor_fit(const pred_dataset *d, const double *y, const int *rows, int nrows,
                              pred_kind kind, const pred_fit_opts *o, pred_regressor **out,
                              nas_err *err)
{
    nas_status st = NAS_OK;
    int *all = NULL;
    pred_regressor *r = NULL;
    BoosterHandle probe = NULL;
    *out = NULL;
    if (!rows)
        nrows = d->n;
    if (nrows < 2)
        return nas_errf(err, NAS_EINVAL, "predictor: %d networks are too few to fit (need 2 or more)", nrows);
    all = nas_malloc(sizeof(int) * (size_t)nrows);
    r = nas_calloc(1, sizeof *r);
    if (!all || !r) {
        st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory");
        goto cleanup;
    }
    for (int i = 0; i < nrows; i++) {
        all[i] = rows ? rows[i] : i;
        if (all[i] < 0 || all[i] >= d->n) {
            st = nas_errf(err, NAS_EINVAL, "predictor: row %d out of range (%d networks)", all[i], d->n);
            goto cleanup;
        }
        if (!(y[all[i]] > 0) || !isfinite(y[all[i]])) {
            st = nas_errf(err, NAS_EINVAL, "predictor: target of network %d is %g (must be positive)",
                          all[i], y[all[i]]);
            goto cleanup;
        }
    }
    r->kind = kind;

    /* a seeded validation split out of the training rows */
    int nval = nrows >= 20 ? (int)lround(nrows * o->val_frac) : 0;
    int rounds = o->max_rounds;
    if (nval > 0) {
        nas_pcg32 rng;
        nas_pcg32_seed(&rng, o->seed, 0x76616cULL);   /* "val" */
        int *perm = nas_malloc(sizeof(int) * (size_t)nrows);
        if (!perm) {
            st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory");
            goto cleanup;
        }
        memcpy(perm, all, sizeof(int) * (size_t)nrows);
        for (int i = nrows - 1; i > 0; i--) {
            int j = (int)nas_pcg32_bounded(&rng, (uint32_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double w[PRED_NPRIOR];
        fit_prior(d, y, perm + nval, nrows - nval, w);
        st = boost(d, y, perm + nval, nrows - nval, perm, nval, kind, o, w, o->max_rounds, &probe,
                   &rounds, err);
        nas_free(perm);
        if (st != NAS_OK)
            goto cleanup;
        if (!o->refit) {
            /* keep the early-stopped model as it is, cut to its best round */
            memcpy(r->prior_w, w, sizeof w);
            XGB(XGBoosterSlice(probe, 0, rounds, 1, &r->booster), "XGBoosterSlice");
            r->rounds = rounds;
            *out = r;
            r = NULL;
            goto cleanup;
        }
        XGBoosterFree(probe);
        probe = NULL;
    } else {
        rounds = o->max_rounds < 100 ? o->max_rounds : 100;
    }
    /* the final model sees every row, for the round count validation chose */
    fit_prior(d, y, all, nrows, r->prior_w);
    int unused;
    st = boost(d, y, all, nrows, NULL, 0, kind, o, r->prior_w, rounds, &r->booster, &unused, err);
    if (st != NAS_OK)
        goto cleanup;
    r->rounds = rounds;
    *out = r;
    r = NULL;
cleanup:
    if (probe)
        XGBoosterFree(probe);
    pred_regressor_free(r);
    nas_free(all);
    return st;
}

nas_status pred_regressor_predict(const pred_regressor *r, const pred_dataset *d, const int *rows,
                                  int nrows, double *out, nas_err *err)
{
    nas_status st;
    int *all = NULL;
    DMatrixHandle dm = NULL;
    if (!rows) {
        nrows = d->n;
        all = nas_malloc(sizeof(int) * (size_t)(nrows > 0 ? nrows : 1));
        if (!all)
            return nas_errf(err, NAS_ENOMEM, "predictor: out of memory");
        for (int i = 0; i < nrows; i++)
            all[i] = i;
        rows = all;
    }
    st = make_dmatrix(d, NULL, rows, nrows, r->kind, r->prior_w, &dm, err);
    if (st == NAS_OK)
        st = predict_dm(r->booster, dm, d, rows, nrows, r->kind, 0, out, err);
    if (dm)
        XGDMatrixFree(dm);
    nas_free(all);
    return st;
}

void pred_regressor_free(pred_regressor *r)
{
    if (!r)
        return;
    if (r->booster)
        XGBoosterFree(r->booster);
    nas_free(r);
}

pred_kind pred_regressor_kind(const pred_regressor *r)
{
    return r->kind;
}

int pred_regressor_rounds(const pred_regressor *r)
{
    return r->rounds;
}

nas_status pred_crossval(const pred_dataset *d, const double *y, pred_kind kind, int k,
                         const pred_fit_opts *o, double *oof, pred_metrics *m, nas_err *err)
{
    nas_status st = NAS_OK;
    int n = d->n;
    if (k < 2 || n < 2 * k)
        return nas_errf(err, NAS_EINVAL, "cross-validation: %d folds need at least %d networks, have %d",
                        k, 2 * k, n);
    int *fold = nas_malloc(sizeof(int) * (size_t)n);
    int *tr = nas_malloc(sizeof(int) * (size_t)n);
    int *te = nas_malloc(sizeof(int) * (size_t)n);
    double *pred = nas_malloc(sizeof(double) * (size_t)n);
    double *pf = nas_malloc(sizeof(double) * (size_t)n);
    pred_regressor *r = NULL;
    if (!fold || !tr || !te || !pred || !pf) {
        st = nas_errf(err, NAS_ENOMEM, "cross-validation: out of memory");
        goto cleanup;
    }
    /* Folds skip the refit on all rows: half the cost, and a model that saw
     * 15% fewer networks than the final one, so CV errs on the pessimistic side. */
    pred_fit_opts fo = *o;
    fo.refit = 0;
    pred_kfold_assign(n, k, o->seed, fold);
    for (int f = 0; f < k; f++) {
        int ntr = 0, nte = 0;
        for (int i = 0; i < n; i++) {
            if (fold[i] == f)
                te[nte++] = i;
            else
                tr[ntr++] = i;
        }
        st = pred_regressor_fit(d, y, tr, ntr, kind, &fo, &r, err);
        if (st != NAS_OK)
            goto cleanup;
        st = pred_regressor_predict(r, d, te, nte, pf, err);
        pred_regressor_free(r);
        r = NULL;
        if (st != NAS_OK)
            goto cleanup;
        for (int t = 0; t < nte; t++)
            pred[te[t]] = pf[t];
    }
    pred_metrics_compute(pred, y, n, m);
    if (oof)
        memcpy(oof, pred, sizeof(double) * (size_t)n);
cleanup:
    if (st != NAS_OK)
        nas_errctx(err, "%s-level cross-validation", pred_kind_name(kind));
    nas_free(fold);
    nas_free(tr);
    nas_free(te);
    nas_free(pred);
    nas_free(pf);
    return st;
}

/* ---- JSON form ---------------------------------------------------------- */

json_t *pred_regressor_to_json(const pred_regressor *r, nas_err *err)
{
    nas_status st = NAS_OK;
    json_t *j = NULL, *prior = NULL, *model = NULL;
    bst_ulong len = 0;
    const char *buf = NULL;
    XGB(XGBoosterSaveModelToBuffer(r->booster, "{\"format\": \"json\"}", &len, &buf),
        "XGBoosterSaveModelToBuffer");
    json_error_t je;
    model = nas_json_load(buf, (size_t)len, 0, &je, &st);
    if (!model) {
        st = nas_errf(err, st == NAS_ENOMEM ? st : NAS_EINTERNAL, "xgboost wrote a model that is not JSON: %s", je.text);
        goto cleanup;
    }
    prior = json_array();
    for (int k = 0; prior && k < PRED_NPRIOR; k++)
        if (json_array_append_new(prior, json_real(r->prior_w[k])) != 0) {
            st = nas_errf(err, NAS_EINVAL, "predictor: prior[%d] is %g, which JSON cannot hold", k, r->prior_w[k]);
            goto cleanup;
        }
    j = json_pack("{s:s, s:i, s:o, s:o}", "kind", pred_kind_name(r->kind), "rounds", r->rounds,
                  "prior", prior, "xgboost", model);
    prior = model = NULL;   /* json_pack's "o" took them, or freed them on failure */
    if (!j)
        st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory building JSON");
cleanup:
    json_decref(prior);
    json_decref(model);
    (void)st;
    return j;
}

/* ---- checking a model before XGBoost reads it ---------------------------- */

/* XGBoost's JSON loader trusts the trees it is given: a node whose child
 * index points outside its tree, or a tree whose id is not its place, loads
 * and then crashes prediction (found by fuzzing the predictor file). So the
 * shape of every tree is checked here first, against the one XGBoost writes:
 * a gbtree of numerical splits, children after their parent and within the
 * tree, split features within the model's feature count. */
static int xgb_count(const json_t *v, long lo, long hi, long *out)
{
    const char *s = json_string_value(v);
    char *end;
    if (!s || !*s)
        return -1;
    long x = strtol(s, &end, 10);
    if (*end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static const json_t *xgb_get(const json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        o = json_object_get(o, k);
    return o;
}

static int xgb_tree_ok(const json_t *t, long i, long nf)
{
    static const char *const per_node[] = {"left_children", "right_children", "parents", "split_indices",
                                           "split_conditions", "default_left", "base_weights", "loss_changes",
                                           "sum_hessian", "split_type"};
    long nn, tnf;
    if (!json_is_integer(json_object_get(t, "id")) || json_integer_value(json_object_get(t, "id")) != i ||
        xgb_count(xgb_get(t, "tree_param.num_nodes"), 1, 10000000, &nn) ||
        xgb_count(xgb_get(t, "tree_param.num_feature"), nf, nf, &tnf))
        return 0;
    for (size_t k = 0; k < sizeof per_node / sizeof per_node[0]; k++) {
        const json_t *a = json_object_get(t, per_node[k]);
        if (!json_is_array(a) || (long)json_array_size(a) != nn)
            return 0;
    }
    /* XGBoost keeps these as floats: a number beyond a float's range loaded
     * as infinity, and the model it then wrote was not JSON (found by fuzzing). */
    static const char *const floats[] = {"split_conditions", "base_weights", "loss_changes", "sum_hessian"};
    for (size_t k = 0; k < sizeof floats / sizeof floats[0]; k++) {
        const json_t *a = json_object_get(t, floats[k]);
        for (long j = 0; j < nn; j++) {
            const json_t *v = json_array_get(a, (size_t)j);
            if (!json_is_number(v) || !(fabs(json_number_value(v)) <= FLT_MAX))
                return 0;
        }
    }
    const json_t *l = json_object_get(t, "left_children"), *r = json_object_get(t, "right_children");
    const json_t *f = json_object_get(t, "split_indices"), *ty = json_object_get(t, "split_type");
    for (long j = 0; j < nn; j++) {
        json_int_t a = json_integer_value(json_array_get(l, (size_t)j));
        json_int_t b = json_integer_value(json_array_get(r, (size_t)j));
        json_int_t fi = json_integer_value(json_array_get(f, (size_t)j));
        if (!json_is_integer(json_array_get(l, (size_t)j)) || !json_is_integer(json_array_get(r, (size_t)j)) ||
            !json_is_integer(json_array_get(f, (size_t)j)) || json_integer_value(json_array_get(ty, (size_t)j)) != 0 ||
            !json_is_integer(json_array_get(ty, (size_t)j)))
            return 0;
        int leaf = a == -1 && b == -1, inner = a > j && a < nn && b > j && b < nn && a != b;
        if (!(leaf || inner) || (inner && (fi < 0 || fi >= nf)))
            return 0;
    }
    return 1;
}

static nas_status xgb_check(const json_t *model, const char *where, nas_err *err)
{
    long nf, nt, npt;
    const json_t *trees = xgb_get(model, "learner.gradient_booster.model.trees");
    const json_t *info = xgb_get(model, "learner.gradient_booster.model.tree_info");
    const char *name = json_string_value(xgb_get(model, "learner.gradient_booster.name"));
    if (!name || strcmp(name, "gbtree") || xgb_count(xgb_get(model, "learner.learner_model_param.num_feature"), 1,
                                                     100000, &nf) ||
        xgb_count(xgb_get(model, "learner.gradient_booster.model.gbtree_model_param.num_trees"), 0, 1000000, &nt) ||
        xgb_count(xgb_get(model, "learner.gradient_booster.model.gbtree_model_param.num_parallel_tree"), 1, 1,
                  &npt) ||
        !json_is_array(trees) || (long)json_array_size(trees) != nt || !json_is_array(info) ||
        (long)json_array_size(info) != nt)
        return nas_errf(err, NAS_EINVAL, "%s.xgboost: not a gbtree model of the shape XGBoost writes (learner, "
                        "gradient_booster, trees, tree_info)", where);
    for (long i = 0; i < nt; i++)
        if (!xgb_tree_ok(json_array_get(trees, (size_t)i), i, nf) ||
            json_integer_value(json_array_get(info, (size_t)i)) != 0)
            return nas_errf(err, NAS_EINVAL, "%s.xgboost: tree %ld is malformed (its id, node count, children, "
                            "split features, split types, or a value beyond a float's range)", where, i);
    return NAS_OK;
}

nas_status pred_regressor_from_json(const json_t *j, const char *where, pred_regressor **out,
                                    nas_err *err)
{
    nas_status st = NAS_OK;
    char *text = NULL;
    pred_regressor *r = NULL;
    *out = NULL;
    const json_t *kind = json_object_get(j, "kind"), *rounds = json_object_get(j, "rounds");
    const json_t *prior = json_object_get(j, "prior"), *model = json_object_get(j, "xgboost");
    if (!json_is_string(kind) || (strcmp(json_string_value(kind), "net") != 0 &&
                                  strcmp(json_string_value(kind), "block") != 0))
        return nas_errf(err, NAS_EINVAL, "%s.kind: missing or not \"net\" or \"block\"", where);
    if (!json_is_integer(rounds) || json_integer_value(rounds) < 1)
        return nas_errf(err, NAS_EINVAL, "%s.rounds: missing or not a positive integer", where);
    if (!json_is_array(prior) || json_array_size(prior) != PRED_NPRIOR)
        return nas_errf(err, NAS_EINVAL, "%s.prior: must be an array of %d numbers", where, PRED_NPRIOR);
    if (!json_is_object(model))
        return nas_errf(err, NAS_EINVAL, "%s.xgboost: missing or not an object", where);
    if ((st = xgb_check(model, where, err)) != NAS_OK)
        return st;
    r = nas_calloc(1, sizeof *r);
    if (!r)
        return nas_errf(err, NAS_ENOMEM, "predictor: out of memory");
    r->kind = !strcmp(json_string_value(kind), "block") ? PRED_KIND_BLOCK : PRED_KIND_NET;
    r->rounds = (int)json_integer_value(rounds);
    for (int k = 0; k < PRED_NPRIOR; k++) {
        const json_t *v = json_array_get(prior, (size_t)k);
        if (!json_is_number(v) || !(json_number_value(v) >= 0) || !isfinite(json_number_value(v))) {
            st = nas_errf(err, NAS_EINVAL, "%s.prior[%d]: not a non-negative number", where, k);
            goto cleanup;
        }
        r->prior_w[k] = json_number_value(v);
    }
    /* 9 significant digits give back every float XGBoost wrote (its shortest
     * form has at most 9), so the trees load bit for bit */
    text = json_dumps(model, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (!text) {
        st = nas_errf(err, NAS_ENOMEM, "predictor: out of memory");
        goto cleanup;
    }
    XGB(XGBoosterCreate(NULL, 0, &r->booster), "XGBoosterCreate");
    if (XGBoosterLoadModelFromBuffer(r->booster, text, strlen(text)) != 0) {
        st = nas_errf(err, NAS_EINVAL, "%s.xgboost: not a model XGBoost can load: %s", where,
                      xgb_error());
        goto cleanup;
    }
    int boosted = 0;
    XGB(XGBoosterBoostedRounds(r->booster, &boosted), "XGBoosterBoostedRounds");
    if (boosted != r->rounds) {
        st = nas_errf(err, NAS_EINVAL, "%s.xgboost: holds %d rounds, rounds says %d", where, boosted,
                      r->rounds);
        goto cleanup;
    }
    *out = r;
    r = NULL;
cleanup:
    nas_free(text);
    pred_regressor_free(r);
    return st;
}
