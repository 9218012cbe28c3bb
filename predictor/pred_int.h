/* pred_int.h — what the files of predictor/ share and nobody else sees:
 * the insides of a regressor and of a predictor, and their JSON forms. */
#ifndef PRED_INT_H
#define PRED_INT_H

#include "predictor/pred.h"

#include <jansson.h>
#include <xgboost/c_api.h>

struct pred_regressor {
    pred_kind kind;
    double prior_w[PRED_NPRIOR];   /* target ~ sum_k prior_w[k] * cost_k, fit non-negative */
    BoosterHandle booster;         /* learns the correction to log(prior) */
    int rounds;
};

/* Target 0 is latency (ms), 1 is energy (mJ). */
typedef struct {
    pred_regressor *reg;
    pred_metrics cv[2];            /* [PRED_KIND_NET], [PRED_KIND_BLOCK]; n = 0 when not run */
} pred_target;

struct pred_model {
    pred_hw hw;
    space_config space;
    int samples;
    double macs_min, macs_max;     /* range of the networks it was fit on */
    char energy_quality[16];
    char energy_source[64];
    double latency_spread, energy_spread;   /* median measurement noise */
    double reference_ms, reference_drift;   /* the reference network, when normalised by one (else 0) */
    pred_target target[2];
    char latency_stat[32];
    pred_sample *rows;             /* the measurements it was fit on */
    int n_rows;
};

/* An empty model (regressors NULL); NULL when out of memory. */
pred_model *pred_model_new(void);

json_t *pred_regressor_to_json(const pred_regressor *r, nas_err *err);
NAS_MUST_USE nas_status pred_regressor_from_json(const json_t *j, const char *where, pred_regressor **out,
                                                 nas_err *err);

#endif
