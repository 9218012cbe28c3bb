/* metrics.c — how good a predictor is, in the yardsticks the field uses:
 * nn-Meter's share of networks within +-10% (and +-5%), MAPE, RMSE, and
 * Kendall's tau for what a search cares about most, the ranking.
 * Also the seeded fold assignment of k-fold cross-validation.
 */
#include "predictor/pred.h"

#include <math.h>

void pred_metrics_compute(const double *pred, const double *meas, int n, pred_metrics *m)
{
    m->n = n;
    m->within5 = m->within10 = m->mape = m->rmse = m->max_rel = 0;
    m->kendall_tau = 0;
    if (n <= 0)
        return;
    double sq = 0;
    int in5 = 0, in10 = 0;
    for (int i = 0; i < n; i++) {
        double rel = fabs(pred[i] - meas[i]) / meas[i];
        /* a hair of slack so that exactly 10% (as hand-computed) counts as within */
        in5 += rel <= 0.05 + 1e-12;
        in10 += rel <= 0.10 + 1e-12;
        m->mape += rel;
        if (rel > m->max_rel)
            m->max_rel = rel;
        sq += (pred[i] - meas[i]) * (pred[i] - meas[i]);
    }
    m->within5 = (double)in5 / n;
    m->within10 = (double)in10 / n;
    m->mape /= n;
    m->rmse = sqrt(sq / n);
    m->kendall_tau = pred_kendall_tau(pred, meas, n);
}

/* Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a)(n0 - ties_b)).
 * O(n^2), which is fine for the few thousand networks a calibration has. */
double pred_kendall_tau(const double *a, const double *b, int n)
{
    double conc = 0, disc = 0, ties_a = 0, ties_b = 0;
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            double da = a[i] - a[j], db = b[i] - b[j];
            if (da == 0)
                ties_a++;
            if (db == 0)
                ties_b++;
            if (da == 0 || db == 0)
                continue;
            if ((da > 0) == (db > 0))
                conc++;
            else
                disc++;
        }
    }
    double n0 = (double)n * (n - 1) / 2;
    double den = sqrt((n0 - ties_a) * (n0 - ties_b));
    return den > 0 ? (conc - disc) / den : 0;
}

void pred_kfold_assign(int n, int k, uint64_t seed, int *fold)
{
    /* deal the labels 0..k-1 round-robin, then shuffle the labels: balanced
     * folds, a random assignment, no scratch memory */
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 0x6b666f6c64ULL);   /* "kfold" */
    for (int i = 0; i < n; i++)
        fold[i] = i % k;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)nas_pcg32_bounded(&rng, (uint32_t)i + 1);
        int t = fold[i];
        fold[i] = fold[j];
        fold[j] = t;
    }
}
