/* netrand.h — non-trivial parameters for the evaluator's white-box suites:
 * batch-norm statistics and biases that are not the identity, so folding and
 * every bias path are exercised, and classifier weights large enough that
 * logits are O(1), where a tolerance of 1e-5 means something. */
#ifndef NETRAND_H
#define NETRAND_H

#include <math.h>
#include <string.h>
#include "base/nas.h"
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"

static inline float nr_urand(nas_pcg32 *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)nas_pcg32_double(r);
}

/* Writable view of a parameter tensor; NULL when t is not in the net's array. */
static inline float *nr_param(ev_net *net, const ev_tensor *t)
{
    size_t count;
    float *p = evn_params(net, &count);
    size_t off = (size_t)(t->data - p);
    return off < count ? p + off : NULL;
}

static inline int nr_ends(const char *nm, const char *suffix)
{
    size_t l = strlen(nm), s = strlen(suffix);
    return l >= s && !strcmp(nm + l - s, suffix);
}

/* Returns the number of tensors touched, or -1 when the net has more than
 * the 1024 this walks or one lies outside its parameter array. */
static inline int nr_randomise_stats(ev_net *net, nas_pcg32 *r)
{
    ev_tensor t[1024];
    int n = ev_net_tensors(net, t, 1024);
    if (n > 1024)
        return -1;
    for (int i = 0; i < n; i++) {
        size_t len = 1;
        for (int d = 0; d < t[i].ndim; d++)
            len *= (size_t)t[i].shape[d];
        float *p = nr_param(net, &t[i]);
        const char *nm = t[i].name;
        if (!p)
            return -1;
        for (size_t j = 0; j < len; j++) {
            if (nr_ends(nm, ".gamma"))
                p[j] = nr_urand(r, 0.5f, 1.5f);
            else if (nr_ends(nm, ".beta") || nr_ends(nm, ".running_mean") || nr_ends(nm, ".b"))
                p[j] = nr_urand(r, -0.3f, 0.3f);
            else if (nr_ends(nm, ".running_var"))
                p[j] = nr_urand(r, 0.3f, 2.0f);
            else if (!strcmp(nm, "classifier.w") || !strcmp(nm, "fc.w"))
                p[j] = nr_urand(r, -1.0f, 1.0f) * 3.0f / sqrtf((float)t[i].shape[0]);
        }
    }
    return n;
}

#endif
