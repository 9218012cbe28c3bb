/* measure.h — how the CLI measures a network for the predictor: the built-in
 * path (the evaluator's inference benchmark at batch 1 and its energy meter)
 * or an external command (pred_measure_cmd, with an ONNX export for {onnx}). */
#ifndef CLI_MEASURE_H
#define CLI_MEASURE_H

#include "predictor/pred.h"

typedef struct {
    const char *cmd;       /* external measuring command template, or NULL: built-in */
    double cmd_timeout;    /* seconds the command may take per network (0: no limit) */
    int threads;           /* built-in: threads of the benchmark */
    int repeats;           /* built-in: timed repeats (median and spread over them) */
    double min_seconds;    /* built-in: each repeat loops at least this long */
    const char *meter;     /* built-in: energy meter kind, "auto" by default */
    double watts;          /* built-in, the model meter: its stated power per core (0: its default) */
    int p10;               /* built-in: latency is the 10th percentile of single calls, not the median */
    void *m;               /* built-in: the open meter */
} cli_measure_ctx;

void cli_measure_init(cli_measure_ctx *ctx, const char *cmd, int threads);
/* What its latency figure is: "p10", "median", or "cmd" (whatever the command prints). */
const char *cli_measure_stat(const cli_measure_ctx *ctx);
/* Opens what measuring needs (the energy meter); NAS_OK when it can work. */
NAS_MUST_USE nas_status cli_measure_ready(cli_measure_ctx *ctx, nas_err *err);
void cli_measure_close(cli_measure_ctx *ctx);

/* A pred_measure_fn: ctx is a cli_measure_ctx made ready. */
NAS_MUST_USE nas_status cli_measure(void *ctx, const space_spec *spec, const space_net *net, pred_measurement *m,
                                    nas_err *err);

#endif
