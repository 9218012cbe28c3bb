/* gradcheck.h — finite-difference gradient checks for the evaluator's suites.
 *
 * The ops are fp32, so the check is central differences with a step chosen
 * per op, compared over a sample of each tensor's entries by the norm of the
 * difference relative to the norm of the gradients: single entries near a
 * kink (ReLU6, h-swish) or lost to fp32 rounding cannot fail a correct
 * backward, while a wrong one (a missing term, a sign) is off by O(1). */
#ifndef GRADCHECK_H
#define GRADCHECK_H

#include <math.h>
#include "base/nas.h"

typedef struct {
    const char *name;
    float *p;     /* the tensor, perturbed in place */
    float *g;     /* its analytic gradient, filled by grad() */
    size_t n;
} gc_tensor;

typedef double (*gc_loss_fn)(void *ctx);
typedef void (*gc_grad_fn)(void *ctx);

/* Returns the worst relative error over the tensors; prints each. */
static inline double gc_check(void *ctx, gc_loss_fn loss, gc_grad_fn grad, gc_tensor *ts, int nt,
                              float h, int samples, uint64_t seed, const char *what, double floor_)
{
    grad(ctx);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 7);
    double worst = 0;
    for (int t = 0; t < nt; t++) {
        double num2 = 0, ana2 = 0, diff2 = 0;
        int m = ts[t].n < (size_t)samples ? (int)ts[t].n : samples;
        for (int s = 0; s < m; s++) {
            size_t i = ts[t].n <= (size_t)samples ? (size_t)s : nas_pcg32_bounded(&rng, (uint32_t)ts[t].n);
            float keep = ts[t].p[i];
            ts[t].p[i] = keep + h;
            double lp = loss(ctx);
            ts[t].p[i] = keep - h;
            double lm = loss(ctx);
            ts[t].p[i] = keep;
            double num = (lp - lm) / (2.0 * h), ana = ts[t].g[i];
            num2 += num * num;
            ana2 += ana * ana;
            diff2 += (num - ana) * (num - ana);
        }
        double scale = sqrt(num2 > ana2 ? num2 : ana2);
        double rel = sqrt(diff2) / (scale > floor_ ? scale : floor_);
        if (rel > worst)
            worst = rel;
        if (getenv("GC_VERBOSE") || rel > 5e-2)
            fprintf(stderr, "  %s %s: rel err %.2e (|g| %.3e, %d samples)\n", what, ts[t].name, rel,
                    scale, m);
    }
    return worst;
}

#endif
