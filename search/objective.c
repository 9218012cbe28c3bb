/* objective.c — what a candidate is worth. MnasNet's reward (Tan et al.,
 * "MnasNet: Platform-Aware Neural Architecture Search for Mobile", CVPR 2019,
 * eq. 2) folds the cost into one number for the strategies:
 *   reward = ACC * (X / T)^w,  w = alpha if X <= T else beta,
 * with X the energy per inference (mJ) or latency (ms) and T its target. The
 * soft constraint alpha = beta = -0.07 trades about 5% of cost for 0.35% of
 * accuracy (0.5^-0.07 = 1.05 rewards halving the cost by 5%); the hard one,
 * alpha = 0 and beta = -1, pays nothing for being under the target and divides
 * by the overrun above it. The Pareto front keeps the trade-off itself, so the
 * user can pick a point after the search rather than fixing w before it.
 */
#include "search/search.h"

#include <math.h>
#include <string.h>

void search_objective_init(search_objective *o, search_target target, double t, int hard)
{
    memset(o, 0, sizeof *o);
    o->target = target;
    o->t = t;
    o->hard = hard;
    o->alpha = hard ? 0.0 : -0.07;
    o->beta = hard ? -1.0 : -0.07;
}

static double cost_of(const search_objective *o, double energy_mj, double latency_ms)
{
    double x = o->target == SEARCH_TARGET_MJ ? energy_mj : latency_ms;
    return isfinite(x) && x > 0 ? x : NAN;
}

double search_reward(const search_objective *o, double accuracy, double energy_mj, double latency_ms)
{
    if (!isfinite(accuracy))
        return 0.0;
    if (o->target == SEARCH_TARGET_NONE || !(o->t > 0))
        return accuracy;
    double x = cost_of(o, energy_mj, latency_ms);
    if (isnan(x))
        return accuracy;
    double w = x <= o->t ? o->alpha : o->beta;
    return accuracy * pow(x / o->t, w);
}

int search_feasible(const search_objective *o, double energy_mj, double latency_ms)
{
    if (!o->hard || o->target == SEARCH_TARGET_NONE || !(o->t > 0))
        return 1;
    double x = cost_of(o, energy_mj, latency_ms);
    return !isnan(x) && x <= o->t;
}

/* ---- Pareto front --------------------------------------------------------- */

void search_front_init(search_front *f)
{
    memset(f, 0, sizeof *f);
}

void search_front_free(search_front *f)
{
    nas_free(f->p);
    memset(f, 0, sizeof *f);
}

int search_front_add(search_front *f, long id, double accuracy, double energy_mj)
{
    if (!isfinite(accuracy) || !isfinite(energy_mj) || energy_mj < 0)
        return 0;
    /* The front is sorted by energy ascending with accuracy strictly ascending.
     * The new point is dominated iff the last point with energy <= its own has
     * accuracy >= its own. */
    int pos = 0;   /* first index with energy > e */
    while (pos < f->n && f->p[pos].energy_mj <= energy_mj)
        pos++;
    if (pos > 0 && f->p[pos - 1].accuracy >= accuracy)
        return 0;
    /* It dominates the points from pos on (and one at equal energy just before)
     * whose accuracy is <= its own: they form a run starting at `from`. */
    int from = pos;
    if (pos > 0 && f->p[pos - 1].energy_mj == energy_mj)
        from = pos - 1;   /* same energy, lower accuracy (checked above) */
    int to = from;
    while (to < f->n && f->p[to].accuracy <= accuracy)
        to++;
    int removed = to - from;
    if (removed == 0 && f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 16;
        search_point *np = nas_realloc(f->p, (size_t)cap * sizeof *np);
        if (!np)
            return -1;
        f->p = np;
        f->cap = cap;
    }
    /* replace [from, to) by the one new point */
    memmove(f->p + from + 1, f->p + to, (size_t)(f->n - to) * sizeof *f->p);
    f->p[from] = (search_point){.id = id, .accuracy = accuracy, .energy_mj = energy_mj};
    f->n += 1 - removed;
    return 1;
}

double search_front_hypervolume(const search_front *f, double ref_mj)
{
    /* Sweep up in energy: point i adds the strip [e_i, ref] x [acc_{i-1}, acc_i]. */
    double hv = 0, prev_acc = 0;
    for (int i = 0; i < f->n; i++) {
        const search_point *q = &f->p[i];
        if (q->energy_mj >= ref_mj)
            break;
        double a = q->accuracy > 1 ? 1 : q->accuracy;
        if (a > prev_acc) {
            hv += (ref_mj - q->energy_mj) * (a - prev_acc);
            prev_acc = a;
        }
    }
    return hv;
}
