/* measure.h — how the CLI measures a network for the predictor: the built-in
 * path (the evaluator's inference benchmark and energy meter, once they are in
 * this build) or an external command (predictor/'s pred_measure_cmd). */
#ifndef CLI_MEASURE_H
#define CLI_MEASURE_H

#include "predictor/pred.h"

typedef struct {
    const char *cmd;    /* external measuring command template, or NULL: built-in */
    int threads;
} cli_measure_ctx;

/* NAS_OK when this way of measuring can work in this build. */
nas_status cli_measure_ready(const cli_measure_ctx *ctx, nas_err *err);

/* A pred_measure_fn: ctx is a cli_measure_ctx. */
nas_status cli_measure(void *ctx, const space_spec *spec, const space_net *net, pred_measurement *m,
                       nas_err *err);

#endif
