/* space_ops.c — space/'s genome behind search_space: its cardinalities and its
 * own sampling and mutation (which know the genome's structure). Kept apart
 * from genome.c so that strategies link and test without space/. */
#include "search/search.h"

static void ops_sample(void *ctx, nas_pcg32 *rng, space_genome *out)
{
    space_genome_sample(ctx, rng, out);
}

static void ops_mutate(void *ctx, nas_pcg32 *rng, space_genome *g, int n_mutations)
{
    space_genome_mutate(ctx, rng, g, n_mutations);
}

nas_status search_space_from_config(search_space *s, const space_config *cfg, nas_err *err)
{
    int n = space_genome_len(cfg);
    int card[SPACE_MAX_GENES];
    if (n < 1 || n > SPACE_MAX_GENES)
        return nas_errf(err, NAS_EINVAL, "search space: the space's genome has %d genes", n);
    for (int i = 0; i < n; i++)
        card[i] = space_gene_cardinality(cfg, i);
    nas_status st = search_space_init(s, n, card, err);
    if (st)
        return st;
    s->sample = ops_sample;
    s->mutate = ops_mutate;
    s->ctx = (void *)cfg;
    return NAS_OK;
}
