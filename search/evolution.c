/* evolution.c — regularized (aging) evolution, after Real, Aggarwal, Huang and
 * Le, "Regularized Evolution for Image Classifier Architecture Search" (AAAI
 * 2019). The population is a queue: every evaluated child joins at the back and
 * the oldest member leaves, whatever its reward, which keeps lucky evaluations
 * from ruling forever. A child is a mutation of the best of S members drawn at
 * random. Asynchronous as in the paper: asks beyond the random start are made
 * from whatever population exists, so several children can be in flight.
 */
#include "search/internal.h"

void search_evo_ask(search_strategy *s, space_genome *g, int *random_start)
{
    const search_opts *o = &s->opts;
    /* The random start: until P members exist or are on their way, sample. */
    if (s->pop_n == 0 || s->pop_n + s->start_pending < o->population) {
        search_space_sample(&s->space, &s->rng, g);
        *random_start = 1;
        s->start_pending++;
        return;
    }
    *random_start = 0;
    int best = -1;
    double best_r = 0;
    int samples = o->sample_size < s->pop_n ? o->sample_size : s->pop_n;
    for (int i = 0; i < samples; i++) {
        int k = (s->pop_head + (int)nas_pcg32_bounded(&s->rng, (uint32_t)s->pop_n)) % o->population;
        /* strictly greater: among equals the first drawn wins */
        if (best < 0 || s->pop_r[k] > best_r) {
            best = k;
            best_r = s->pop_r[k];
        }
    }
    *g = s->pop_g[best];
    search_space_mutate(&s->space, &s->rng, g, o->n_mutations);
}

void search_evo_tell(search_strategy *s, const space_genome *g, double reward, int random_start,
                     search_tell_kind kind)
{
    const search_opts *o = &s->opts;
    if (random_start && s->start_pending > 0)
        s->start_pending--;
    /* A screened child was never a model: it does not enter the population. A
     * failed one was (it trained and diverged), and joins with reward 0. */
    if (kind == SEARCH_TELL_SCREENED)
        return;
    if (s->pop_n == o->population) {           /* the oldest dies */
        s->pop_head = (s->pop_head + 1) % o->population;
        s->pop_n--;
    }
    int k = (s->pop_head + s->pop_n) % o->population;
    s->pop_g[k] = *g;
    s->pop_r[k] = reward;
    s->pop_n++;
}
