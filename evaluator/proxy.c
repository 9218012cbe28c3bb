/* proxy.c — training-free scores of a network at its initial weights.
 *
 * Zero-cost proxies (Abdelfattah et al., "Zero-Cost Proxies for Lightweight
 * NAS", ICLR 2021) rank architectures from one forward and backward pass on
 * one batch, before any training. Their published lesson is a warning as much
 * as a method: on NAS-Bench-201 the parameter count alone correlates with
 * trained accuracy about as well as the best of them (Spearman 0.72-0.75), so
 * a proxy earns a place in the search only where it beats #params and MACs on
 * this space (bench/bench_fidelity.c measures all of them side by side).
 *
 * Two scores, from one loss gradient:
 *   grad_norm  ||dL/dtheta||_2 over every weight;
 *   snip       sum |theta * dL/dtheta| (SNIP's connection sensitivity, Lee et
 *              al. 2019, summed over the network).
 * The network is left as it was: the step that computes the gradient moves
 * batch norm's running statistics, so every parameter and statistic is copied
 * before and put back after; training afterwards is bit for bit the same. */
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"

#include <math.h>
#include <string.h>

nas_status ev_zero_cost(ev_net *net, const ev_split *train, int batch, uint64_t seed, ev_zero_cost_scores *out,
                        nas_err *err)
{
    memset(out, 0, sizeof *out);
    const space_net *a = ev_net_arch(net);
    if (batch < 1 || batch > evn_batch(net))
        return nas_errf(err, NAS_EINVAL, "zero-cost scores: batch %d is not in 1..%d (the net's batch)", batch,
                        evn_batch(net));
    if (!train || train->n < batch)
        return nas_errf(err, NAS_EINVAL, "zero-cost scores: %d training images, fewer than the batch of %d",
                        train ? train->n : 0, batch);
    if (train->h != a->resolution || train->w != a->resolution || train->c != a->in_ch)
        return nas_errf(err, NAS_EINVAL, "zero-cost scores: images are %dx%dx%d, the net takes %dx%dx%d", train->h,
                        train->w, train->c, a->resolution, a->resolution, a->in_ch);
    size_t n;
    float *theta = evn_params(net, &n);
    float *keep = nas_malloc(n * sizeof *keep);
    uint8_t *labels = nas_malloc((size_t)batch);
    if (!keep || !labels) {
        nas_free(keep);
        nas_free(labels);
        return nas_errf(err, NAS_ENOMEM, "zero-cost scores: out of memory for %zu parameters", n);
    }
    memcpy(keep, theta, n * sizeof *keep);
    /* one batch, spread over the split: the seed picks the offset */
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 0x7a65726fULL);   /* "zero" */
    size_t img = (size_t)train->h * train->w * train->c;
    float *x = evn_input(net);
    int stride = train->n / batch, off = (int)nas_pcg32_bounded(&rng, (uint32_t)(stride > 0 ? stride : 1));
    for (int b = 0; b < batch; b++) {
        int id = off + b * stride;
        memcpy(x + (size_t)b * img, train->images + (size_t)id * img, img * sizeof *x);
        labels[b] = train->labels[id];
    }
    int correct = 0;
    double loss = evn_train_step(net, x, labels, batch, 0.0f, &rng, &correct);
    nas_status st = NAS_OK;
    if (!isfinite(loss)) {
        st = nas_errf(err, NAS_EDIVERGED, "zero-cost scores: the loss at initialisation is %g", loss);
    } else {
        const float *g = evn_grads(net);
        double g2 = 0, s = 0;
        for (size_t i = 0; i < n; i++) {
            g2 += (double)g[i] * g[i];
            s += fabs((double)keep[i] * g[i]);
        }
        out->grad_norm = sqrt(g2);
        out->snip = s;
        out->loss = loss;
        out->batch = batch;
    }
    memcpy(theta, keep, n * sizeof *keep);
    nas_free(keep);
    nas_free(labels);
    return st;
}
