/* pred_synth.h — a made-up CPU for the predictor's tests and benchmark:
 * latency and energy of a network from its layers, with seeded noise. */
#ifndef PRED_SYNTH_H
#define PRED_SYNTH_H

#include "predictor/pred.h"

#include <math.h>
#include <stdio.h>

/* A made-up CPU, per layer: roofline of compute (dense convs slower on thin
 * channels, depthwise slower still) against memory traffic, plus a per-layer
 * launch cost, plus 1% multiplicative noise. Nothing here is shared with
 * features.c: the predictor must learn it from the outside. */
typedef struct {
    nas_pcg32 rng;
    double noise;
    int calls;
    double drift;      /* > 0: the machine's speed wanders by this much, slowly, over calls */
    int disturb;       /* > 0: every disturb-th call is disturbed (1.5x slower, spread 0.5) */
    int wide;          /* every measurement reports a spread of 0.5 (a machine jittery throughout) */
    int burst;         /* > 0: the first quarter of every burst calls runs 1.4x slower, with a normal
                        * spread (a neighbour busy for a stretch, which no single measurement shows) */
    int fail_every;    /* > 0: every fail_every-th call fails */
} synth_ctx;

static inline double gauss(nas_pcg32 *r)
{
    double u1 = nas_pcg32_double(r) + 1e-12, u2 = nas_pcg32_double(r);
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static inline void synth_truth(const space_net *net, double *lat_ms, double *en_mj)
{
    space_layer layers[SPACE_MAX_BLOCKS * 4 + 8];
    space_cost c;
    int n = space_cost_of(net, layers, (int)(sizeof layers / sizeof layers[0]), &c);
    double t = 20e-6;   /* fixed overhead of an inference */
    for (int i = 0; i < n; i++) {
        const space_layer *L = &layers[i];
        double flops;
        switch (L->kind) {
        case SPACE_LAYER_CONV:
            flops = 30e9 * fmin(1.0, (L->in_ch < L->out_ch ? L->in_ch : L->out_ch) / 64.0);
            break;
        case SPACE_LAYER_DWCONV:
            flops = 4e9 * (L->kernel == 3 ? 1.0 : 0.8);
            break;
        default:
            flops = 5e9;
        }
        double compute = L->macs / flops, memory = (L->in_bytes + L->out_bytes + 4 * L->params) / 12e9;
        t += fmax(compute, memory) + 2e-6;
    }
    /* weights spilling out of a 1 MB cache slow everything a little */
    t *= 1 + 0.15 / (1 + exp(-(4 * c.params - 1e6) / 2e5));
    *lat_ms = t * 1e3;
    *en_mj = *lat_ms * 22.0 + c.rw_bytes * 1e-8;   /* 22 W busy, plus DRAM traffic */
}

static inline nas_status synth_measure(void *ctxp, const space_spec *spec, const space_net *net,
                                pred_measurement *m, nas_err *err)
{
    (void)spec;
    synth_ctx *ctx = ctxp;
    double lat, en;
    synth_truth(net, &lat, &en);
    ctx->calls++;
    if (ctx->fail_every > 0 && ctx->calls % ctx->fail_every == 0)
        return nas_errf(err, NAS_EIO, "synthetic device dropped call %d", ctx->calls);
    double slow = 1 + ctx->drift * sin(ctx->calls / 9.0);
    if (ctx->burst > 0 && ctx->calls % ctx->burst < ctx->burst / 4)
        slow *= 1.4;
    if (ctx->disturb > 0 && ctx->calls % ctx->disturb == 0)
        slow *= 1.5;
    m->latency_ms = slow * lat * (1 + ctx->noise * gauss(&ctx->rng));
    m->energy_mj = slow * en * (1 + ctx->noise * gauss(&ctx->rng));
    m->latency_spread = ctx->wide || (ctx->disturb > 0 && ctx->calls % ctx->disturb == 0) ? 0.5 : 2.56 * ctx->noise;
    m->energy_spread = 2.56 * ctx->noise;
    snprintf(m->energy_source, sizeof m->energy_source, "synthetic");
    snprintf(m->energy_quality, sizeof m->energy_quality, "estimated");
    return NAS_OK;
}

#endif
