/* rl.c — a policy-gradient controller over the genome's choices. The policy
 * is one categorical distribution per gene, pi_g = softmax(theta_g), sampled
 * independently (the factorised policy of ENAS-style controllers without the
 * RNN: the genes of this space are few and already carry their structure).
 *
 * REINFORCE (Williams 1992) with a moving-average baseline b:
 *   theta += lr * A * grad log pi(a),   d log pi_g(a_g) / d theta_gc = [c == a_g] - pi_gc,
 *   A = (r - b) / sd,  b and sd moving averages (decay d) of the reward and of (r - b)^2.
 * Dividing by sd makes lr independent of the reward's scale (accuracies that
 * differ in the third digit train as fast as ones that differ in the first).
 * Entropy regularisation adds c * dH/dtheta, dH_g/dtheta_gc = -pi_gc (log pi_gc + H_g),
 * so that no choice's probability collapses to 0 before the reward says so.
 * PPO (Schulman et al. 2017) replaces A grad log pi by the clipped surrogate
 * min(rho A, clip(rho, 1-e, 1+e) A), rho = pi_new(a) / pi_old(a), whose gradient
 * is rho A grad log pi where unclipped and 0 where clipped, over ppo_epochs
 * passes of each batch; pi_old is the policy at ask time, kept with the ticket.
 */
#include "search/internal.h"

#include <math.h>

void search_rl_softmax(const search_strategy *s, double *prob)
{
    for (int i = 0; i < s->space.n_genes; i++) {
        const double *z = s->logits + s->off[i];
        double *p = prob + s->off[i];
        int n = s->space.card[i];
        double m = z[0], sum = 0;
        for (int c = 1; c < n; c++)
            m = z[c] > m ? z[c] : m;
        for (int c = 0; c < n; c++)
            sum += p[c] = exp(z[c] - m);
        for (int c = 0; c < n; c++)
            p[c] /= sum;
    }
}

double search_rl_logp(const search_strategy *s, const double *prob, const space_genome *g)
{
    double lp = 0;
    for (int i = 0; i < s->space.n_genes; i++)
        lp += log(prob[s->off[i] + g->g[i]]);
    return lp;
}

void search_rl_sample(search_strategy *s, space_genome *g, double *logp)
{
    search_rl_softmax(s, s->prob);
    g->n = s->space.n_genes;
    for (int i = s->space.n_genes; i < SPACE_MAX_GENES; i++)
        g->g[i] = 0;
    for (int i = 0; i < s->space.n_genes; i++) {
        const double *p = s->prob + s->off[i];
        int n = s->space.card[i], c = 0;
        double u = nas_pcg32_double(&s->rng), acc = p[0];
        while (c < n - 1 && u >= acc)   /* inverse CDF; rounding leftovers go to the last */
            acc += p[++c];
        g->g[i] = (uint8_t)c;
    }
    *logp = search_rl_logp(s, s->prob, g);
}

double search_rl_prob(const search_strategy *s, int gene, int choice)
{
    if (s->opts.kind != SEARCH_RL || gene < 0 || gene >= s->space.n_genes || choice < 0 ||
        choice >= s->space.card[gene])
        return -1;
    const double *z = s->logits + s->off[gene];
    double m = z[0], sum = 0;
    for (int c = 1; c < s->space.card[gene]; c++)
        m = z[c] > m ? z[c] : m;
    for (int c = 0; c < s->space.card[gene]; c++)
        sum += exp(z[c] - m);
    return exp(z[choice] - m) / sum;
}

/* One update from the batch buffer: gradient ascent on the surrogate plus entropy. */
static void rl_update(search_strategy *s)
{
    const search_opts *o = &s->opts;
    int ppo = o->ppo_epochs > 0, epochs = ppo ? o->ppo_epochs : 1;
    for (int e = 0; e < epochs; e++) {
        search_rl_softmax(s, s->prob);
        for (int k = 0; k < s->n_logits; k++)
            s->grad[k] = 0;
        for (int b = 0; b < s->buf_n; b++) {
            const space_genome *g = &s->buf_g[b];
            double coef = s->buf_adv[b];
            if (ppo) {
                double rho = exp(search_rl_logp(s, s->prob, g) - s->buf_logp[b]);
                if ((coef > 0 && rho > 1 + o->ppo_clip) || (coef < 0 && rho < 1 - o->ppo_clip))
                    continue;   /* clipped: the surrogate is flat here */
                coef *= rho;
            }
            for (int i = 0; i < s->space.n_genes; i++) {
                const double *p = s->prob + s->off[i];
                double *gr = s->grad + s->off[i];
                for (int c = 0; c < s->space.card[i]; c++)
                    gr[c] -= coef * p[c];
                gr[g->g[i]] += coef;
            }
        }
        for (int k = 0; k < s->n_logits; k++)
            s->grad[k] /= s->buf_n;
        if (o->entropy_coef > 0) {
            for (int i = 0; i < s->space.n_genes; i++) {
                const double *p = s->prob + s->off[i];
                double *gr = s->grad + s->off[i], h = 0;
                for (int c = 0; c < s->space.card[i]; c++)
                    h -= p[c] > 0 ? p[c] * log(p[c]) : 0;
                for (int c = 0; c < s->space.card[i]; c++)
                    gr[c] -= o->entropy_coef * (p[c] > 0 ? p[c] * (log(p[c]) + h) : 0);
            }
        }
        for (int k = 0; k < s->n_logits; k++)
            s->logits[k] += o->lr * s->grad[k];
    }
    s->buf_n = 0;
}

void search_rl_tell(search_strategy *s, const space_genome *g, double reward, double logp_old)
{
    const double d = s->opts.baseline_decay;
    double adv = 0;
    if (!s->have_baseline) {
        /* the first reward sets the baseline and teaches nothing */
        s->baseline = reward;
        s->reward_var = 0;
        s->have_baseline = 1;
    } else {
        double diff = reward - s->baseline;
        s->reward_var = d * s->reward_var + (1 - d) * diff * diff;
        s->baseline = d * s->baseline + (1 - d) * reward;
        double sd = sqrt(s->reward_var);
        adv = diff / (sd > 1e-9 ? sd : 1e-9);   /* |adv| <= 1/sqrt(1-d) by construction */
    }
    s->buf_g[s->buf_n] = *g;
    s->buf_adv[s->buf_n] = adv;
    s->buf_logp[s->buf_n] = logp_old;
    s->buf_n++;
    if (s->buf_n == s->opts.batch)
        rl_update(s);
}
