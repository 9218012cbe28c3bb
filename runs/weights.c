/* weights.c — a candidate's trained weights in the run store, so that
 * `nas export RUN` writes the network that was trained and measured rather than
 * one trained again. The blob is the evaluator's (ev_net_weights_pack); the
 * store keeps it opaque.
 *
 * Kept, for now, in the store's models table under the name "weights/<cand>"
 * with fingerprint "nas-weights", so that no schema migration is needed; a
 * table of its own (with pruning to the best K candidates of a run) can
 * replace this without changing the two calls below.
 */
#include "runs/runs.h"

#include <inttypes.h>
#include <stdio.h>

#define WEIGHTS_FP "nas-weights"

nas_status runs_weights_put(runs_db *db, int64_t cand, const void *blob, size_t len, nas_err *err)
{
    char name[64], meta[96];
    snprintf(name, sizeof name, "weights/%" PRId64, cand);
    snprintf(meta, sizeof meta, "{\"candidate\": %" PRId64 ", \"format\": \"NASW1\"}", cand);
    nas_status st = runs_model_put(db, name, WEIGHTS_FP, meta, blob, len, NULL, err);
    if (st != NAS_OK)
        nas_errctx(err, "storing the weights of candidate %" PRId64, cand);
    return st;
}

nas_status runs_weights_get(runs_db *db, int64_t cand, void **blob, size_t *len, int *found,
                            nas_err *err)
{
    char name[64], fp[128];
    snprintf(name, sizeof name, "weights/%" PRId64, cand);
    nas_status st = runs_model_get(db, name, WEIGHTS_FP, blob, len, NULL, fp, found, err);
    if (st != NAS_OK)
        nas_errctx(err, "reading the weights of candidate %" PRId64, cand);
    return st;
}
