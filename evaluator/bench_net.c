/* bench_net.c — ev_bench_infer: the benchmark harness (bench.c) run on a
 * built network. Inputs are seeded noise of the network's input shape (the
 * time and energy of a dense network do not depend on the values), allocated
 * once before timing; the logits land in one buffer reused by every call.
 * A file of its own so that programs using only the harness need no engine.
 */
#include "evaluator/ev.h"

#include <string.h>

typedef struct {
    ev_net *net;
    const float *x;
    float *logits;
    int batch;
} infer_ctx;

static nas_status infer_once(void *ctx, nas_err *err)
{
    infer_ctx *c = ctx;
    return ev_net_infer(c->net, c->x, c->batch, c->logits, err);
}

nas_status ev_bench_infer(ev_net *net, ev_meter *meter, const ev_bench_opts *opts, ev_bench_result *res,
                          nas_err *err)
{
    ev_bench_opts defaults;
    if (!opts) {
        ev_bench_opts_default(&defaults);
        opts = &defaults;
    }
    memset(res, 0, sizeof *res);
    const space_net *a = ev_net_arch(net);
    if (opts->batch < 1)
        return nas_errf(err, NAS_EINVAL, "benchmark: batch %d (must be at least 1)", opts->batch);
    size_t per = (size_t)a->resolution * a->resolution * a->in_ch;
    float *x = nas_malloc_aligned((size_t)opts->batch * per * sizeof *x);
    float *logits = nas_malloc_aligned((size_t)opts->batch * a->num_classes * sizeof *logits);
    nas_status st = NAS_OK;
    if (!x || !logits) {
        st = nas_errf(err, NAS_ENOMEM, "benchmark: out of memory for a batch of %d inputs", opts->batch);
        goto cleanup;
    }
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 0x62656e6368 /* "bench" */, 1);
    for (size_t i = 0; i < (size_t)opts->batch * per; i++)
        x[i] = (float)(2.0 * nas_pcg32_double(&rng) - 1.0);
    infer_ctx c = {net, x, logits, opts->batch};
    st = ev_bench_run(infer_once, &c, meter, opts, res, err);
cleanup:
    nas_free_aligned(x);
    nas_free_aligned(logits);
    return st;
}
