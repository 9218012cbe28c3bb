/* evolution.c — regularized (aging) evolution, after Real, Aggarwal, Huang and
 * Le, "Regularized Evolution for Image Classifier Architecture Search" (AAAI
 * 2019). The population is a queue: every evaluated child joins at the back and
 * the oldest member leaves, whatever its reward, which keeps lucky evaluations
 * from ruling forever. A child is a mutation of the best of S members drawn at
 * random. Asynchronous as in the paper: asks beyond the random start are made
 * from whatever population exists, so several children can be in flight.
 *
 * One change from the paper: the search ranks networks on accuracy and cost,
 * so the tournament's winner is the sampled member that the fewest members
 * of the population dominate in (reward, cost), and among those the higher
 * reward. Ranked on reward alone, the tournament favours the dearest networks
 * wherever accuracy grows with size, and under a joule budget each of those
 * buys fewer evaluations; Pareto-first it keeps mutating the cheap end of the
 * front too. (bench-search has not shown it beating random sampling: README,
 * "Does the search save joules?".) Without a cost (NAN), a member is
 * dominated by every higher reward, which is the paper's tournament.
 */
#include "search/internal.h"

#include <math.h>

/* Does a beat b: no worse on both, better on one. */
static int dominates(double ra, double ca, double rb, double cb)
{
    if (!isfinite(ca) || !isfinite(cb))
        return ra > rb;
    return ra >= rb && ca <= cb && (ra > rb || ca < cb);
}

static int dominators(const search_strategy *s, int k)
{
    int n = 0;
    for (int i = 0; i < s->pop_n; i++) {
        int j = (s->pop_head + i) % s->opts.population;
        n += j != k && dominates(s->pop_r[j], s->pop_c[j], s->pop_r[k], s->pop_c[k]);
    }
    return n;
}

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
    int best = -1, best_d = 0;
    double best_r = 0;
    int samples = o->sample_size < s->pop_n ? o->sample_size : s->pop_n;
    for (int i = 0; i < samples; i++) {
        int k = (s->pop_head + (int)nas_pcg32_bounded(&s->rng, (uint32_t)s->pop_n)) % o->population;
        int d = dominators(s, k);
        /* strictly better: among equals the first drawn wins */
        if (best < 0 || d < best_d || (d == best_d && s->pop_r[k] > best_r)) {
            best = k;
            best_d = d;
            best_r = s->pop_r[k];
        }
    }
    *g = s->pop_g[best];
    search_space_mutate(&s->space, &s->rng, g, o->n_mutations);
}

void search_evo_tell(search_strategy *s, const space_genome *g, double reward, double cost, int random_start,
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
    s->pop_c[k] = isfinite(cost) && cost >= 0 ? cost : NAN;
    s->pop_n++;
}
