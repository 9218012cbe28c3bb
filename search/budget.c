/* budget.c — what the search may spend: joules, evaluations, seconds.
 *
 * The rule is "never start what could cross the line". A candidate starts
 * only if what is spent, plus what the candidates in flight have reserved,
 * leaves room for what this one is expected to cost, in every budget.
 * The expectation is the running mean of past evaluations plus `sigmas`
 * standard deviations (Welford's running variance); before the first one
 * finishes, the caller's first_joules guess (or nothing). Joules are counted
 * as the meter reports them raised by the meter's stated uncertainty, so a
 * meter reading low cannot carry the search past its budget, and each
 * evaluator is handed an allowance reserved for it alone, to stop within if a
 * network turns out dearer than expected: with several in flight (Open MPI),
 * the reservations do not overlap, so even then the sum stays inside.
 */
#include "search/search.h"

#include <math.h>
#include <string.h>

const char *search_stop_name(search_stop s)
{
    switch (s) {
    case SEARCH_STOP_NONE:      return "none";
    case SEARCH_STOP_EVALS:     return "evaluation budget reached";
    case SEARCH_STOP_JOULES:    return "joule budget reached";
    case SEARCH_STOP_SECONDS:   return "time budget reached";
    case SEARCH_STOP_STALLED:   return "stalled (proposals all screened or seen before)";
    case SEARCH_STOP_REQUESTED: return "stopped on request";
    }
    return "?";
}

void search_budget_init(search_budget *b, const search_limits *lim)
{
    memset(b, 0, sizeof *b);
    b->lim = *lim;
    if (!(b->lim.sigmas >= 0))
        b->lim.sigmas = 2.0;
}

static double estimate(long n, double mean, double m2, double sigmas, double first)
{
    if (n == 0)
        return first > 0 ? first : 0;
    double sd = n > 1 ? sqrt(m2 / (n - 1)) : 0;
    return mean + sigmas * sd;
}

/* The least a candidate with this hint (0: unknown) can cost once started,
 * with a margin: floors of like candidates differ by a fifth and more on a
 * busy machine (set-up and the first step are single, untimed events). */
#define FLOOR_MARGIN 1.25

static double floor_of(const search_budget *b, double hint)
{
    double f = b->floor_max;
    if (hint > 0 && b->floor_per_hint * hint > f)
        f = b->floor_per_hint * hint;
    return FLOOR_MARGIN * f;
}

double search_budget_next_joules(const search_budget *b)
{
    return fmax(estimate(b->n_cost, b->j_mean, b->j_m2, b->lim.sigmas, b->lim.first_joules), floor_of(b, 0));
}

void search_budget_floor(search_budget *b, double floor_hi, double hint)
{
    if (!(floor_hi > 0) || !isfinite(floor_hi))
        return;
    if (floor_hi > b->floor_max)
        b->floor_max = floor_hi;
    if (hint > 0 && isfinite(hint) && floor_hi / hint > b->floor_per_hint)
        b->floor_per_hint = floor_hi / hint;
}

double search_budget_next_seconds(const search_budget *b)
{
    return estimate(b->n_cost, b->s_mean, b->s_m2, b->lim.sigmas, 0);
}

static double unreserved(const search_budget *b)
{
    return b->lim.joules - b->joules_hi - b->reserved_joules;
}

static int has_prior(const search_budget *b)
{
    return b->lim.prior_j0 > 0 || b->lim.prior_j_per_hint > 0;
}

static double prior_of(const search_budget *b, double hint)
{
    return b->lim.prior_j0 + b->lim.prior_j_per_hint * hint;
}

/* The caller's prior, scaled by what the hinted evaluations so far cost
 * against what it expected of them. */
static double prior_estimate(const search_budget *b, double hint)
{
    double p = prior_of(b, hint);
    if (b->n_hint > 0 && b->prior_sum > 0)
        p *= b->meas_sum / b->prior_sum;
    return p;
}

static double fit_estimate(const search_budget *b, double hint);

double search_budget_estimate_joules(const search_budget *b, double hint)
{
    return fmax(fit_estimate(b, hint), floor_of(b, hint));
}

static double fit_estimate(const search_budget *b, double hint)
{
    double generic = hint > 0 && has_prior(b) ? prior_estimate(b, hint) : search_budget_next_joules(b);
    if (!(hint > 0) || b->n_hint < 3 || !(b->c_hh > 0))
        return generic;
    double n = (double)b->n_hint, slope = b->c_hj / b->c_hh;
    if (!(slope >= 0))
        return generic;
    double a = b->hj_mean - slope * b->h_mean;
    double sse = b->c_jj - slope * b->c_hj, s2 = sse > 0 ? sse / (n - 2) : 0;
    double dh = hint - b->h_mean;
    double se = sqrt(s2 * (1 + 1 / n + dh * dh / b->c_hh));
    double est = a + slope * hint + b->lim.sigmas * se;
    return est > 0 ? est : 0;
}

double search_budget_cheapest_joules(const search_budget *b)
{
    if (!(b->lim.min_hint > 0) || (!has_prior(b) && b->n_hint < 3))
        return 0;
    return search_budget_estimate_joules(b, b->lim.min_hint);
}

#define ALLOWANCE_FACTOR 2.0

double search_budget_allowance(const search_budget *b, int free_slots, double est_j)
{
    if (!(b->lim.joules > 0))
        return INFINITY;
    double left = unreserved(b);
    if (left <= 0)
        return 0;
    double share = left / (free_slots > 1 ? free_slots : 1);
    if (share < est_j && left >= est_j)
        return est_j;
    return est_j > 0 && share > ALLOWANCE_FACTOR * est_j ? ALLOWANCE_FACTOR * est_j : share;
}

search_stop search_budget_check(const search_budget *b, int free_slots, double est_j)
{
    const search_limits *l = &b->lim;
    if (l->evals > 0 && b->evals + b->in_flight >= l->evals)
        return SEARCH_STOP_EVALS;
    if (l->joules > 0) {
        /* with nothing known yet (estimate 0), a candidate may start while any budget is left */
        double allow = search_budget_allowance(b, free_slots, est_j);
        if (allow <= 0 || allow < est_j)
            return SEARCH_STOP_JOULES;
    }
    if (l->seconds > 0) {
        double next = search_budget_next_seconds(b);
        if (b->seconds + b->flight_seconds + next > l->seconds || b->seconds >= l->seconds)
            return SEARCH_STOP_SECONDS;
    }
    return SEARCH_STOP_NONE;
}

/* Adds what was spent to the totals; cleans the figures in place. */
static void spend(search_budget *b, double *joules, double *rel_unc, const char *meter, search_quality q)
{
    if (!(*joules >= 0) || !isfinite(*joules))
        *joules = 0;
    if (!(*rel_unc >= 0) || !isfinite(*rel_unc))
        *rel_unc = 0;
    b->joules += *joules;
    b->joules_hi += *joules * (1 + *rel_unc);
    if (meter && *meter) {
        strncpy(b->meter, meter, sizeof b->meter - 1);
        b->meter[sizeof b->meter - 1] = '\0';
    }
    b->estimated |= q == SEARCH_Q_ESTIMATED;
    b->sampled |= q == SEARCH_Q_SAMPLED;
}

const char *search_budget_quality(const search_budget *b)
{
    return search_quality_name(b->estimated ? SEARCH_Q_ESTIMATED : b->sampled ? SEARCH_Q_SAMPLED : SEARCH_Q_MEASURED);
}

void search_budget_charge_lost(search_budget *b, double total_lost, double rel_unc, const char *meter,
                               search_quality q)
{
    double j = total_lost - b->lost_joules;
    if (!(j > 0) || !isfinite(j))
        return;
    spend(b, &j, &rel_unc, meter, q);
    b->lost_joules = total_lost;
}

void search_budget_charge_calibration(search_budget *b, double joules, double rel_unc, const char *meter,
                                      search_quality q)
{
    if (!(joules > 0) || !isfinite(joules))
        return;
    double j = joules;
    spend(b, &j, &rel_unc, meter, q);
    b->calib_joules += joules;
}

double search_budget_measure_estimate(const search_budget *b)
{
    if (b->n_meas)
        return b->m_max_j;
    /* before the first: the caller's estimate, else the cheapest evaluation (it trained a network too) */
    return b->lim.measure_joules > 0 ? b->lim.measure_joules : b->j_min;
}

search_stop search_budget_check_measure(const search_budget *b, int free_slots)
{
    const search_limits *l = &b->lim;
    double est = search_budget_measure_estimate(b);
    if (l->joules > 0) {
        double allow = search_budget_allowance(b, free_slots, est);
        if (allow <= 0 || allow < est)
            return SEARCH_STOP_JOULES;
    }
    if (l->seconds > 0 && (b->seconds + b->flight_seconds + b->m_max_s > l->seconds || b->seconds >= l->seconds))
        return SEARCH_STOP_SECONDS;
    return SEARCH_STOP_NONE;
}

void search_budget_measured(search_budget *b, double joules, double rel_unc, double seconds, const char *meter,
                            search_quality q)
{
    spend(b, &joules, &rel_unc, meter, q);
    b->n_meas++;
    double jh = joules * (1 + rel_unc);
    b->m_max_j = jh > b->m_max_j ? jh : b->m_max_j;
    if (seconds > 0 && isfinite(seconds) && seconds > b->m_max_s)
        b->m_max_s = seconds;
}

void search_budget_start(search_budget *b, double allowance_j, double est_seconds)
{
    b->in_flight++;
    if (isfinite(allowance_j))
        b->reserved_joules += allowance_j;
    b->flight_seconds += est_seconds;
}

void search_budget_finish(search_budget *b, double allowance_j, double est_seconds, double joules,
                          double rel_unc, double seconds, const char *meter, search_quality q, double hint)
{
    search_budget_abandon(b, allowance_j, est_seconds);   /* the reservation freed, one more evaluation */
    spend(b, &joules, &rel_unc, meter, q);
    /* Welford on what is checked against the budget */
    double jh = joules * (1 + rel_unc), s = seconds > 0 && isfinite(seconds) ? seconds : 0;
    b->n_cost++;
    double dj = jh - b->j_mean, ds = s - b->s_mean;
    b->j_mean += dj / b->n_cost;
    b->j_m2 += dj * (jh - b->j_mean);
    b->s_mean += ds / b->n_cost;
    b->s_m2 += ds * (s - b->s_mean);
    if (b->n_cost == 1 || jh < b->j_min)
        b->j_min = jh;
    if (hint > 0 && isfinite(hint)) {
        if (has_prior(b)) {
            b->prior_sum += prior_of(b, hint);
            b->meas_sum += jh;
        }
        b->n_hint++;
        double dh = hint - b->h_mean, dq = jh - b->hj_mean;   /* deviations from the old means */
        b->h_mean += dh / b->n_hint;
        b->hj_mean += dq / b->n_hint;
        b->c_hh += dh * (hint - b->h_mean);
        b->c_hj += dh * (jh - b->hj_mean);
        b->c_jj += dq * (jh - b->hj_mean);
    }
}

void search_budget_abandon(search_budget *b, double allowance_j, double est_seconds)
{
    if (b->in_flight > 0) {
        b->in_flight--;
        if (isfinite(allowance_j))
            b->reserved_joules -= allowance_j;
        b->flight_seconds -= est_seconds;
        if (b->in_flight == 0)
            b->reserved_joules = b->flight_seconds = 0;
    }
    b->evals++;
}

double search_budget_fraction(const search_budget *b)
{
    double f = 0;
    if (b->lim.evals > 0)
        f = fmax(f, (double)b->evals / b->lim.evals);
    if (b->lim.joules > 0)
        f = fmax(f, b->joules_hi / b->lim.joules);
    if (b->lim.seconds > 0)
        f = fmax(f, b->seconds / b->lim.seconds);
    return f > 1 ? 1 : f;
}
