/* genome.c — the genome as strategies see it: a fixed-length vector of
 * categorical genes. The built-in operators (uniform sampling, mutation of n
 * distinct genes to different values) let strategies be tested on synthetic
 * objectives without space/; space_ops.c puts space/'s own operators behind
 * the same face. Every draw comes from the rng passed in, nothing else. */
#include "search/search.h"

#include <string.h>

nas_status search_space_init(search_space *s, int n_genes, const int *card, nas_err *err)
{
    memset(s, 0, sizeof *s);
    if (n_genes < 1 || n_genes > SPACE_MAX_GENES)
        return nas_errf(err, NAS_EINVAL, "search space: %d genes (1..%d allowed)", n_genes,
                        SPACE_MAX_GENES);
    for (int i = 0; i < n_genes; i++) {
        if (card[i] < 1 || card[i] > 255)
            return nas_errf(err, NAS_EINVAL, "search space: gene %d has %d choices (1..255 allowed)",
                            i, card[i]);
        s->card[i] = card[i];
    }
    s->n_genes = n_genes;
    return NAS_OK;
}

void search_space_sample(const search_space *s, nas_pcg32 *rng, space_genome *out)
{
    if (s->sample) {
        s->sample(s->ctx, rng, out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->n = s->n_genes;
    for (int i = 0; i < s->n_genes; i++)
        out->g[i] = (uint8_t)nas_pcg32_bounded(rng, (uint32_t)s->card[i]);
}

void search_space_mutate(const search_space *s, nas_pcg32 *rng, space_genome *g, int n_mutations)
{
    if (s->mutate) {
        s->mutate(s->ctx, rng, g, n_mutations);
        return;
    }
    /* Only genes with a choice to change to can mutate; pick n of them without
     * replacement (partial Fisher-Yates), then move each to another value. */
    int idx[SPACE_MAX_GENES], m = 0;
    for (int i = 0; i < s->n_genes; i++)
        if (s->card[i] > 1)
            idx[m++] = i;
    if (n_mutations > m)
        n_mutations = m;
    for (int k = 0; k < n_mutations; k++) {
        int j = k + (int)nas_pcg32_bounded(rng, (uint32_t)(m - k));
        int t = idx[k];
        idx[k] = idx[j];
        idx[j] = t;
        int gene = idx[k];
        /* a value among the card-1 others, uniformly */
        uint32_t v = nas_pcg32_bounded(rng, (uint32_t)(s->card[gene] - 1));
        if (v >= g->g[gene])
            v++;
        g->g[gene] = (uint8_t)v;
    }
}

int search_genome_equal(const space_genome *a, const space_genome *b)
{
    return a->n == b->n && memcmp(a->g, b->g, (size_t)a->n) == 0;
}
