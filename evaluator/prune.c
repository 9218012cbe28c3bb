/* prune.c — structured pruning of a trained network's expansion channels.
 *
 * An MBConv block's expansion width (exp_ch) runs through the expand conv's
 * outputs, its BN, the depthwise conv and its BN, SE's two linears (input of
 * the first, output of the second) and the project conv's inputs. Removing a
 * channel there removes it from all of them, so the pruned network is a
 * physically smaller one: a spec with per-block exp_ch overrides (space.h) and
 * a new ev_net whose every tensor is the old one's, gathered along its
 * expansion axis at the kept channels. Nothing is masked.
 *
 * Ranking: the L1 norm of each channel's expand conv weights (Li et al. 2017,
 * "Pruning Filters for Efficient ConvNets"). Not BN's gamma (Network Slimming,
 * Liu et al. 2017): that criterion relies on an L1 penalty on gamma during
 * training, and nas's SGD puts weight decay on conv weights only (evn_sgd), so
 * the conv weights are where training leaves a trace of which channels the
 * loss does not hold up. Blocks without an expand conv (expand 1) are kept
 * whole: their depthwise channels are the block's input.
 */
#include "evaluator/ev.h"
#include "evaluator/net_priv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ev_prune_opts_default(ev_prune_opts *o)
{
    o->keep = 1.0;
    o->min_ch = 8;
    o->multiple = 8;
}

static nas_status check_opts(const ev_prune_opts *o, nas_err *err)
{
    if (!(o->keep > 0.0 && o->keep <= 1.0))
        return nas_errf(err, NAS_EINVAL, "prune: keep fraction %g is out of range (above 0, at most 1)", o->keep);
    if (o->min_ch < 1 || o->multiple < 1)
        return nas_errf(err, NAS_EINVAL, "prune: min_ch %d and multiple %d must be at least 1", o->min_ch,
                        o->multiple);
    return NAS_OK;
}

/* The kept width of a block of expansion width E and input width in. */
static int kept_width(const space_block *b, const ev_prune_opts *o)
{
    int E = b->exp_ch, m = o->multiple;
    if (E == b->in_ch || E <= o->min_ch)
        return E;
    int k = (int)lround(E * o->keep / m) * m;
    if (k < o->min_ch)
        k = o->min_ch;
    if (k > E)
        k = E;
    if (k == b->in_ch)   /* the expand conv would vanish (space.h): one step wider */
        k = k + m <= E ? k + m : E;
    return k;
}

nas_status ev_prune_spec(const space_spec *spec, const ev_prune_opts *o, space_spec *out, nas_err *err)
{
    nas_status st = check_opts(o, err);
    if (st)
        return st;
    space_net arch;
    if ((st = space_resolve(spec, &arch, err)))
        return nas_errctx(err, "prune");
    space_spec s = *spec;
    /* The derived widths: the spec without overrides. */
    space_spec bare = *spec;
    memset(bare.exp_ch, 0, sizeof bare.exp_ch);
    space_net derived;
    if ((st = space_resolve(&bare, &derived, err)))
        return nas_errctx(err, "prune");
    for (int j = 0; j < arch.n_blocks; j++) {
        int k = kept_width(&arch.blocks[j], o);
        s.exp_ch[j] = k == derived.blocks[j].exp_ch ? 0 : k;
    }
    if ((st = space_validate(&s, err)))
        return nas_errctx(err, "prune: the pruned spec");
    *out = s;
    return NAS_OK;
}

static double macs_of(const space_spec *s)
{
    space_net a;
    nas_err e;
    if (space_resolve(s, &a, &e))
        return INFINITY;
    space_cost c;
    space_cost_of(&a, NULL, 0, &c);
    return c.macs;
}

nas_status ev_prune_keep_for_macs(const space_spec *spec, const ev_prune_opts *o, double target_macs,
                                  double *keep, nas_err *err)
{
    ev_prune_opts t = *o;
    space_spec p;
    nas_status st;
    t.keep = 1.0;
    if ((st = ev_prune_spec(spec, &t, &p, err)))
        return st;
    if (macs_of(&p) <= target_macs) {
        *keep = 1.0;
        return NAS_OK;
    }
    /* MACs grow with keep (each block's width is monotone in it), so bisect:
     * lo always meets the target, hi never does. */
    t.keep = 1e-6;
    if ((st = ev_prune_spec(spec, &t, &p, err)))
        return st;
    double least = macs_of(&p);
    if (least > target_macs)
        return nas_errf(err, NAS_EINVAL,
                        "prune: a MAC target of %.0f cannot be met: the least this spec prunes to is %.0f "
                        "(%d channels a block at least)",
                        target_macs, least, o->min_ch);
    double lo = 1e-6, hi = 1.0;
    for (int i = 0; i < 50; i++) {
        t.keep = 0.5 * (lo + hi);
        if ((st = ev_prune_spec(spec, &t, &p, err)))
            return st;
        if (macs_of(&p) <= target_macs)
            lo = t.keep;
        else
            hi = t.keep;
    }
    *keep = lo;
    return NAS_OK;
}

/* Channel e's score: sum over inputs of |W[ci][e]| (KKIO, 1x1: index ci*E + e). */
typedef struct {
    double score;
    int idx;
} ranked;

static int by_score_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->idx - y->idx;   /* ties: the lower channel first, so the choice is deterministic */
}

static int by_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

nas_status ev_prune_rank(const ev_net *net, int block, int keep, int *kept, nas_err *err)
{
    const space_net *a = ev_net_arch(net);
    if (block < 0 || block >= a->n_blocks)
        return nas_errf(err, NAS_EINVAL, "prune: block %d out of range (0 to %d)", block, a->n_blocks - 1);
    const space_block *b = &a->blocks[block];
    int E = b->exp_ch;
    if (keep < 1 || keep > E)
        return nas_errf(err, NAS_EINVAL, "prune: b%d: %d channels to keep of %d", block, keep, E);
    if (E == b->in_ch) {
        if (keep != E)
            return nas_errf(err, NAS_EINVAL, "prune: b%d has no expand conv to prune", block);
        for (int e = 0; e < E; e++)
            kept[e] = e;
        return NAS_OK;
    }
    char want[48];
    snprintf(want, sizeof want, "b%d.expand.conv", block);
    int nt = ev_net_tensors(net, NULL, 0);
    ev_tensor *t = nas_malloc(sizeof *t * (size_t)nt);
    ranked *r = nas_malloc(sizeof *r * (size_t)E);
    nas_status st = NAS_OK;
    if (!t || !r) {
        st = nas_errf(err, NAS_ENOMEM, "prune: out of memory ranking b%d", block);
        goto cleanup;
    }
    ev_net_tensors(net, t, nt);
    const ev_tensor *w = NULL;
    for (int i = 0; i < nt && !w; i++)
        if (!strcmp(t[i].name, want))
            w = &t[i];
    if (!w || w->ndim != 4 || w->shape[3] != E) {
        st = nas_errf(err, NAS_EINVAL, "prune: %s missing or not %d channels wide", want, E);
        goto cleanup;
    }
    int I = w->shape[0] * w->shape[1] * w->shape[2];
    for (int e = 0; e < E; e++) {
        double s = 0;
        for (int ci = 0; ci < I; ci++)
            s += fabs(w->data[(size_t)ci * E + e]);
        r[e] = (ranked){s, e};
    }
    qsort(r, (size_t)E, sizeof *r, by_score_desc);
    for (int e = 0; e < keep; e++)
        kept[e] = r[e].idx;
    qsort(kept, (size_t)keep, sizeof *kept, by_int);   /* channel order kept as it was */
cleanup:
    nas_free(t);
    nas_free(r);
    return st;
}

/* dst[...] = src[...] with every axis where the shapes differ (a block's
 * expansion axis) read through `kept`. */
static void gather(const ev_tensor *s, float *dst, const ev_tensor *d, const int *kept)
{
    size_t n = 1;
    for (int k = 0; k < d->ndim; k++)
        n *= (size_t)d->shape[k];
    for (size_t i = 0; i < n; i++) {
        size_t rem = i, src = 0, stride = 1;
        for (int k = d->ndim - 1; k >= 0; k--) {
            int x = (int)(rem % (size_t)d->shape[k]);
            rem /= (size_t)d->shape[k];
            if (d->shape[k] != s->shape[k])
                x = kept[x];
            src += (size_t)x * stride;
            stride *= (size_t)s->shape[k];
        }
        dst[i] = s->data[src];
    }
}

nas_status ev_prune_net(const ev_net *net, const space_spec *spec, const ev_prune_opts *o,
                        const ev_net_opts *nopts, space_spec *out_spec, ev_net **out, nas_err *err)
{
    *out = NULL;
    const space_net *a = ev_net_arch(net);
    space_net check, pa;
    nas_status st;
    if ((st = space_resolve(spec, &check, err)))
        return nas_errctx(err, "prune");
    if (check.n_blocks != a->n_blocks)
        return nas_errf(err, NAS_EINVAL, "prune: the spec has %d blocks, the network %d", check.n_blocks,
                        a->n_blocks);
    for (int j = 0; j < a->n_blocks; j++)
        if (check.blocks[j].exp_ch != a->blocks[j].exp_ch || check.blocks[j].out_ch != a->blocks[j].out_ch)
            return nas_errf(err, NAS_EINVAL, "prune: b%d: the spec is not the network's (%d/%d channels, "
                            "the network %d/%d)", j, check.blocks[j].exp_ch, check.blocks[j].out_ch,
                            a->blocks[j].exp_ch, a->blocks[j].out_ch);
    space_spec ps;
    if ((st = ev_prune_spec(spec, o, &ps, err)) || (st = space_resolve(&ps, &pa, err)))
        return st;

    int nt = ev_net_tensors(net, NULL, 0);
    ev_tensor *ts = nas_malloc(sizeof *ts * (size_t)nt);
    ev_tensor *td = NULL;
    int W = 1;   /* the widest block: each block's kept list gets a row this long */
    for (int j = 0; j < a->n_blocks; j++)
        if (a->blocks[j].exp_ch > W)
            W = a->blocks[j].exp_ch;
    int *kept = nas_malloc(sizeof(int) * (size_t)a->n_blocks * (size_t)W + sizeof(int));
    ev_net *pn = NULL;
    if (!ts || !kept) {
        st = nas_errf(err, NAS_ENOMEM, "prune: out of memory");
        goto cleanup;
    }
    ev_net_tensors(net, ts, nt);
    for (int j = 0; j < a->n_blocks; j++)
        if ((st = ev_prune_rank(net, j, pa.blocks[j].exp_ch, kept + (size_t)j * W, err)))
            goto cleanup;
    if ((st = ev_net_create(&pa, nopts, &pn, err)))
        goto cleanup;
    int nd = ev_net_tensors(pn, NULL, 0);
    td = nas_malloc(sizeof *td * (size_t)nd);
    if (!td) {
        st = nas_errf(err, NAS_ENOMEM, "prune: out of memory");
        goto cleanup;
    }
    ev_net_tensors(pn, td, nd);
    size_t count;
    float *params = evn_params(pn, &count);
    for (int i = 0; i < nd; i++) {
        const ev_tensor *d = &td[i], *s = NULL;
        for (int k = 0; k < nt && !s; k++)
            if (!strcmp(ts[k].name, d->name))
                s = &ts[k];
        int blk = -1;
        if (!s || s->ndim != d->ndim || (sscanf(d->name, "b%d.", &blk) != 1 && memcmp(s->shape, d->shape,
                                                                                       sizeof d->shape))) {
            st = nas_errf(err, NAS_EINVAL, "prune: tensor %s has no counterpart in the network", d->name);
            goto cleanup;
        }
        /* The destination's tensors lie in its own parameter array (ev_net_tensors
         * hands out const views of it); write through that array. */
        float *dst = params + (d->data - params);
        if (!memcmp(s->shape, d->shape, sizeof d->shape)) {
            size_t n = 1;
            for (int k = 0; k < d->ndim; k++)
                n *= (size_t)d->shape[k];
            memcpy(dst, s->data, n * sizeof *dst);
        } else {
            gather(s, dst, d, kept + (size_t)blk * W);
        }
    }
    *out_spec = ps;
    *out = pn;
    pn = NULL;
cleanup:
    ev_net_free(pn);
    nas_free(ts);
    nas_free(td);
    nas_free(kept);
    return st;
}
