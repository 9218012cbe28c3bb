/* measure.c — the CLI's measuring callback for `nas calibrate` and
 * `nas predict --measure`. The built-in path needs the evaluator's benchmark
 * (ev_bench_infer at batch 1) and energy meter; until they are in this build
 * it says so instead of inventing numbers. */
#include "cli/measure.h"

#include <string.h>

void cli_measure_init(cli_measure_ctx *ctx, const char *cmd, int threads)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->cmd = cmd;
    ctx->threads = threads > 0 ? threads : 1;
    ctx->repeats = 5;
    ctx->min_seconds = 0.05;
    ctx->meter = "auto";
}

nas_status cli_measure_ready(cli_measure_ctx *ctx, nas_err *err)
{
    if (ctx->cmd)
        return NAS_OK;
    return nas_errf(err, NAS_EUNSUPP,
                    "built-in measuring is not available in this build (the evaluator's benchmark and "
                    "energy meter are not in yet); measure with --measure-cmd 'CMD {spec}'");
}

void cli_measure_close(cli_measure_ctx *ctx)
{
    ctx->m = NULL;
}

nas_status cli_measure(void *ctxp, const space_spec *spec, const space_net *net, pred_measurement *m,
                       nas_err *err)
{
    cli_measure_ctx *ctx = ctxp;
    (void)net;
    if (ctx->cmd)
        return pred_measure_cmd(ctx->cmd, spec, m, err);
    return cli_measure_ready(ctx, err);
}
