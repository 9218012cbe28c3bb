/* target.c — can a hard target be met at all? Before any joule is spent, the
 * predictor is asked about networks drawn from the space; when even the
 * cheapest of them is predicted over the target, the search would screen
 * (or reject) nearly everything it proposes, and the user should hear so at
 * the start rather than see an empty leaderboard at the end. */
#include "search/internal.h"

#include <math.h>

nas_status search_target_floor(const search_space *sp, const search_objective *obj,
                               nas_status (*predict)(void *ctx, const space_genome *g,
                                                     search_prediction *out, nas_err *err),
                               void *ctx, int n, uint64_t seed, double *lowest, nas_err *err)
{
    *lowest = NAN;
    if (obj->target == SEARCH_TARGET_NONE || !predict || n < 1)
        return NAS_OK;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 0x666c6f6f /* "floo" */);
    double lo = INFINITY;
    for (int i = 0; i < n; i++) {
        space_genome g;
        search_space_sample(sp, &rng, &g);
        search_prediction p = {0};
        nas_status st = predict(ctx, &g, &p, err);
        if (st)
            return nas_errctx(err, "predicting sampled network %d of %d", i + 1, n);
        double v = obj->target == SEARCH_TARGET_MJ ? p.energy_mj : p.latency_ms;
        if (v > 0 && v < lo)
            lo = v;
    }
    if (isfinite(lo))
        *lowest = lo;
    return NAS_OK;
}
