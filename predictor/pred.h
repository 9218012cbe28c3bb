/* pred.h — latency and energy per inference of a network, without running it.
 *
 * A predictor is fit on networks measured on one piece of hardware (the
 * calibration) and then answers for any network of the same space in
 * microseconds. Layers of this module, bottom up:
 *   features   numbers that describe a resolved net: whole-network totals,
 *              and per-unit rows (stem, each MBConv block, head+classifier)
 *              for the block-level model that predicts each unit and sums
 *              them, as nn-Meter does;
 *   regressor  XGBoost (C API) on top of a linear prior fit on additive
 *              costs (MACs by kind, bytes moved, layer count); whole-network
 *              ("net") or block-level ("block");
 *   metrics    share within +-5% / +-10%, MAPE, RMSE, Kendall tau, k-fold CV;
 *   model      latency and energy regressors plus the hardware fingerprint and
 *              the space they were fit on, saved as one JSON file;
 *   calibrate  sample networks that cover the space, measure them through a
 *              callback, fit both kinds, keep the more accurate, refine where
 *              held-out error is over 10%.
 * predictor/ depends on space/ and base/ only; the CLI wires the evaluator's
 * benchmark in as the measuring callback.
 */
#ifndef PRED_H
#define PRED_H

#include "base/nas.h"
#include "space/space.h"

/* ======================= features ======================================== */

/* Bumped whenever a feature's meaning changes; a predictor file with another
 * version is refused rather than silently misread. */
#define PRED_FEATURE_VERSION 2

#define PRED_NET_NFEAT   44   /* whole-network features */
#define PRED_UNIT_NFEAT  33   /* per-unit features */
#define PRED_NPRIOR      23   /* additive costs the linear prior is fit on */

/* Whole-network features of a resolved net into f[PRED_NET_NFEAT]. */
void pred_net_features(const space_net *net, float *f);
const char *pred_net_feature_name(int i);

/* Units of the block-level model: 0 is the stem, 1..n_blocks the MBConv
 * blocks, n_blocks+1 the head (head conv, pooling, fc, classifier). */
int pred_unit_count(const space_net *net);
void pred_unit_features(const space_net *net, int unit, float *f);
const char *pred_unit_feature_name(int i);
/* The additive costs of one unit (pred_prior_name: dense MACs by width,
 * depthwise MACs by kernel and stride, linear MACs, activation elements by
 * function, bytes, layers, 1 for a fixed cost). A network's prior costs are
 * the sums over its units; the MAC terms add up to the unit's MACs. */
void pred_unit_prior(const space_net *net, int unit, double *p);
const char *pred_prior_name(int i);

/* Per-unit MACs and parameters, summed over the unit's ops in the layer list
 * (the tests check they sum to space_cost_of's totals). */
void pred_unit_cost(const space_net *net, int unit, double *macs, double *params);

/* ======================= metrics ========================================= */

typedef struct {
    int n;
    double within5, within10;   /* share of networks with |pred/meas - 1| <= 5% (10%) */
    double mape;                /* mean |pred - meas| / meas, as a fraction */
    double rmse;                /* in the target's units */
    double max_rel;             /* largest |pred/meas - 1| */
    double kendall_tau;         /* tau-b of pred against meas */
} pred_metrics;

/* meas must be positive. n >= 1. */
void pred_metrics_compute(const double *pred, const double *meas, int n, pred_metrics *m);
double pred_kendall_tau(const double *a, const double *b, int n);
/* fold[i] in [0, k): a seeded shuffle dealt round-robin, so folds differ in size by at most one. */
void pred_kfold_assign(int n, int k, uint64_t seed, int *fold);

/* ======================= data set and regressors ========================= */

/* Features of n networks, computed once and shared by every fit of a CV. */
typedef struct {
    int n, cap;
    float *xnet;         /* n x PRED_NET_NFEAT */
    int *unit_start;     /* n+1 offsets into the unit rows */
    int n_units, unit_cap;
    float *xunit;        /* n_units x PRED_UNIT_NFEAT */
    double *prior;       /* n_units x PRED_NPRIOR */
} pred_dataset;

void pred_dataset_init(pred_dataset *d);
NAS_MUST_USE nas_status pred_dataset_add(pred_dataset *d, const space_net *net, nas_err *err);
void pred_dataset_free(pred_dataset *d);

typedef enum { PRED_KIND_NET, PRED_KIND_BLOCK } pred_kind;
const char *pred_kind_name(pred_kind k);

typedef struct {
    int max_depth;        /* trees */
    double eta;           /* learning rate */
    int max_rounds;       /* boosting rounds at most */
    int early_stop;       /* stop after this many rounds without validation gain */
    double val_frac;      /* share of the training rows held out for early stopping */
    double lambda;        /* L2 on leaf weights */
    double subsample, colsample;
    int min_rounds;
    int refit;            /* 1: refit on all rows for the best round count; 0: keep the early-stopped model */
    int nthread;          /* fixed, for determinism */
    uint64_t seed;
} pred_fit_opts;

void pred_fit_opts_default(pred_fit_opts *o);

typedef struct pred_regressor pred_regressor;

/* Fits on the networks rows[0..nrows) of d with targets y (indexed like d,
 * positive). rows NULL: all. */
NAS_MUST_USE nas_status pred_regressor_fit(const pred_dataset *d, const double *y, const int *rows, int nrows,
                                           pred_kind kind, const pred_fit_opts *o, pred_regressor **out,
                                           nas_err *err);
/* Predictions for networks rows[0..nrows) (NULL: all) into out[0..nrows). */
NAS_MUST_USE nas_status pred_regressor_predict(const pred_regressor *r, const pred_dataset *d, const int *rows,
                                               int nrows, double *out, nas_err *err);
void pred_regressor_free(pred_regressor *r);
pred_kind pred_regressor_kind(const pred_regressor *r);
int pred_regressor_rounds(const pred_regressor *r);

/* k-fold cross-validation: out-of-fold predictions into oof[0..d->n) (may be
 * NULL) and their metrics. */
NAS_MUST_USE nas_status pred_crossval(const pred_dataset *d, const double *y, pred_kind kind, int k,
                                      const pred_fit_opts *o, double *oof, pred_metrics *m, nas_err *err);

/* ======================= hardware fingerprint ============================ */

typedef struct {
    char cpu_model[128];   /* /proc/cpuinfo "model name" */
    int cores;             /* logical CPUs online */
    int threads;           /* threads the measurements used */
    char meter[64];        /* energy source: "model:cpu-time", "rapl:package-0", "cmd" ... */
    char measure[256];     /* "builtin" or the measuring command */
} pred_hw;

/* This machine, with the threads and meter the caller states. */
void pred_hw_here(pred_hw *hw, int threads, const char *meter, const char *measure);
/* 0 when a and b agree on CPU, cores, threads and meter; else 1 and a
 * sentence naming what differs in why. */
int pred_hw_differs(const pred_hw *a, const pred_hw *b, char *why, size_t n);

/* One measured network of a calibration, as the predictor file keeps it, so
 * that a refit (`nas calibrate --refit FILE`) needs no measuring and the data
 * behind a predictor can be read again. */
#define PRED_MAX_PASSES 3
typedef struct {
    space_genome genome;
    int passes;                            /* measurements taken, 1..PRED_MAX_PASSES */
    double latency_pass[PRED_MAX_PASSES];  /* as measured, ms */
    double energy_pass[PRED_MAX_PASSES];   /* as measured, mJ */
    double reference_pass[PRED_MAX_PASSES];/* the reference network around each (0: none) */
    double latency_spread, energy_spread;  /* of the steadiest pass */
    double latency_ms, energy_mj;          /* what the models fit: the fastest pass, each pass scaled
                                            * by median(reference) / its reference */
} pred_sample;

/* ======================= the predictor =================================== */

typedef struct pred_model pred_model;

typedef struct {
    double latency_ms;
    double energy_mj;
    const char *energy_quality;   /* of the data the model was fit on: "measured", "sampled", "estimated" */
    const char *energy_source;
} pred_estimate;

/* About 0.15 ms a network. Not safe to call on one model from several threads
 * at once (XGBoost's prediction buffer is per booster): one model per thread. */
NAS_MUST_USE nas_status pred_predict(const pred_model *m, const space_net *net, pred_estimate *out, nas_err *err);
/* The JSON predictor file: written atomically, every value or an error
 * (never a key left out); loading checks the format, feature version, every
 * model and every number against its range, with errors naming the file,
 * the field and the range. */
NAS_MUST_USE nas_status pred_save(const pred_model *m, const char *path, nas_err *err);
NAS_MUST_USE nas_status pred_load(const char *path, pred_model **out, nas_err *err);
/* The same over text in memory (where names it in messages), and the text
 * pred_save writes (nas_malloc'd; NULL with err set). */
NAS_MUST_USE nas_status pred_from_json(const char *text, const char *where, pred_model **out, nas_err *err);
char *pred_to_json(const pred_model *m, nas_err *err);
/* Only what a refit needs: hardware, space, labels and the measurements, from
 * a predictor file of any feature version (its models are not read, and the
 * result cannot predict). */
NAS_MUST_USE nas_status pred_load_measurements(const char *path, pred_model **out, nas_err *err);
void pred_free(pred_model *m);

const pred_hw *pred_model_hw(const pred_model *m);
const space_config *pred_model_space(const pred_model *m);
int pred_model_samples(const pred_model *m);
/* The measurements it was fit on (*n of them; NULL and 0 for none). */
const pred_sample *pred_model_measurements(const pred_model *m, int *n);
/* The latency statistic it predicts: "p10", "median" or "cmd". */
const char *pred_model_latency_stat(const pred_model *m);
/* target 0 latency, 1 energy: the kind kept and CV metrics of both kinds. */
pred_kind pred_model_kind(const pred_model *m, int target);
const pred_metrics *pred_model_cv(const pred_model *m, int target, pred_kind kind);
/* 0 when net lies within the space the model was fit on (input shape and
 * the range of MACs seen), else 1 and why. */
int pred_model_outside(const pred_model *m, const space_net *net, char *why, size_t n);

/* ======================= measuring and calibration ======================= */

typedef struct {
    double latency_ms;        /* median, batch 1 */
    double latency_spread;    /* (p90 - p10) / median; 0 when unknown */
    double energy_mj;         /* per inference */
    double energy_spread;
    char energy_source[64];   /* "model:cpu-time", "rapl:package-0", ... */
    char energy_quality[16];  /* "measured", "sampled", "estimated" */
} pred_measurement;

/* What one measurement of an inference may be, wherever one is read (a
 * measuring command's output, a predictor file): at most 11 days, a
 * megajoule, a spread of a million times the median. */
#define PRED_MAX_MS 1e9
#define PRED_MAX_MJ 1e12
#define PRED_MAX_SPREAD 1e6

/* Measures one network. spec and net describe the same network. */
typedef nas_status (*pred_measure_fn)(void *ctx, const space_spec *spec, const space_net *net,
                                      pred_measurement *m, nas_err *err);

/* The external measuring command. template is run by /bin/sh once per network
 * with "{spec}" replaced by the path of a temporary file holding the spec's
 * JSON and "{onnx}" by onnx_path (an ONNX model of the network the caller
 * exported; NULL: a template with {onnx} is refused). The command prints
 * lines "key=value" on stdout, among them
 *     latency_ms=<milliseconds per inference, batch 1>
 *     energy_mj=<millijoules per inference>
 * and optionally latency_spread=, energy_spread= (relative, (p90-p10)/median),
 * energy_source=<text> (default "cmd") and
 * energy_quality=measured|sampled|estimated (default measured). Other lines
 * are ignored. A non-zero exit or a missing or unparsable value is an error
 * that names the command and the field. A command still running after
 * timeout_s seconds (0: no limit) is killed with its process group: NAS_EIO. */
NAS_MUST_USE nas_status pred_measure_cmd(const char *template, const space_spec *spec, const char *onnx_path,
                                         double timeout_s, pred_measurement *m, nas_err *err);
/* Parses such output (exposed for tests). */
NAS_MUST_USE nas_status pred_parse_measure_output(const char *text, pred_measurement *m, nas_err *err);
/* pred_measure_fn face of pred_measure_cmd: ctx is the template. */
NAS_MUST_USE nas_status pred_measure_cmd_fn(void *ctx, const space_spec *spec, const space_net *net,
                                            pred_measurement *m, nas_err *err);

typedef struct {
    space_config space;
    int samples;           /* networks of the first, stratified round */
    int max_samples;       /* cap including adaptive rounds */
    int adaptive_rounds;   /* refinement rounds at most */
    int folds;             /* k of the cross-validation */
    uint64_t seed;
    pred_fit_opts fit;
    int threads;           /* recorded in the fingerprint */
    double max_spread;     /* latency spread over this (and over twice the usual): measure again (0: never) */
    int remeasure;         /* at most this many more times; the steadiest is kept */
    int reference;         /* 1 (the CLI's default; 0 here): measure a reference network between networks and scale each
                            * measurement by median(reference) / reference-around-it, which
                            * cancels slow drifts of the machine's speed (twice the measuring) */
    char measure[256];     /* "builtin" or the command, recorded in the fingerprint */
    char latency_stat[32]; /* which latency the measurements are ("p10", "median", "cmd"), recorded */
    int passes;            /* 1..3 (the CLI's default 2; 1 here): measure every network of a batch once per
                            * pass, each pass after the last network of the one before, so one network's
                            * measurements are minutes apart and a slow stretch of the machine rarely spoils
                            * all of them; the fastest is fit */
    double max_failed;     /* share of networks whose measuring may fail (skipped, reported) before the
                            * calibration gives up (default 0.1; the first 5 failures are always allowed) */
    int holdout;           /* after fitting, this many fresh networks (uniform, never fit on) are measured
                            * and predicted: rep->holdout (0: none) */
    const pred_model *refit;   /* non-NULL: fit on the measurements recorded in this predictor and
                                * measure nothing (its space is used; samples and adaptive rounds ignored) */
    /* Progress, may be NULL: phase "measure" or "fit", done of total. */
    void (*progress)(void *ctx, const char *phase, int done, int total);
    void *progress_ctx;
} pred_calib_opts;

void pred_calib_opts_default(pred_calib_opts *o);

typedef struct {
    int samples, adaptive_added, rounds;
    int remeasured;                 /* measurements taken again for a wide spread */
    pred_metrics cv[2][2];          /* [latency, energy][net, block] of the last round */
    pred_kind kept[2];
    double median_latency_spread;   /* measurement noise, to read the errors against */
    double median_energy_spread;
    double measure_seconds, fit_seconds;
    int references;                 /* reference measurements (0: no reference) */
    double reference_ms;            /* their median */
    double reference_drift;         /* their (p90 - p10) / median: how much the machine's speed wandered */
    int failed;                     /* networks skipped because measuring them failed */
    char first_failure[256];        /* why the first of them failed */
    /* Test-retest: the first two passes of each network against each other
     * (n 0 with one pass): how far single measurements of one network differ
     * on this machine. The figure fit, the fastest pass, is steadier still. */
    pred_metrics retest;
    pred_metrics holdout[2];        /* [latency, energy] of the final model on the hold-out networks (n 0: none) */
} pred_calib_report;

/* Samples, measures, fits and cross-validates; *out is the fitted predictor. */
NAS_MUST_USE nas_status pred_calibrate(const pred_calib_opts *o, pred_measure_fn measure, void *ctx,
                                       pred_model **out, pred_calib_report *rep, nas_err *err);

/* Stratified sampling of n genomes: each gene's choices are dealt out in equal
 * shares and shuffled independently per gene (a Latin hypercube over
 * categorical genes), so extremes are as common as the middle. */
void pred_sample_stratified(const space_config *cfg, int n, nas_pcg32 *rng, space_genome *out);

#endif
