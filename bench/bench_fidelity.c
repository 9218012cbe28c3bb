/* bench_fidelity.c — `make bench-fidelity`: how short can a training be and
 * still rank architectures, and does a training-free score rank them at all?
 *
 * Multi-fidelity search (successive halving, ASHA) promotes candidates on the
 * accuracy of a short rung; that only pays if the rung's ranking agrees with
 * the ranking after full training. Zero-cost proxies promise a ranking with no
 * training; the published lesson (Abdelfattah et al. 2021; NAS-Bench-201:
 * #params alone reaches Spearman 0.72-0.75, tying synflow) is to judge them
 * against the plain baselines #params and MACs. This benchmark samples N
 * networks of the main job's space (jobs/fashion-small.yaml: Fashion-MNIST at
 * 28x28, 3 stages, widths up to 1.0), scores each at initialisation
 * (ev_zero_cost: grad_norm, snip, from one batch of 64), trains each for E
 * epochs on a fixed subset (batch 32, lr 0.1, as the main job's proxy) with
 * the validation accuracy at every quarter epoch, and tests the result on
 * the test split. It prints one row per network, then Kendall's tau-b
 * (predictor/metrics.c) of each rung's validation accuracy against the final
 * test accuracy, and Spearman's rho and Kendall's tau of every score
 * against it, and ends with two lines:
 *   rung tau: <images> -> T, ...
 *   proxy rho: grad_norm R, snip R, params R, macs R
 * Networks whose training diverges keep their last rung; a network that
 * cannot be built (too big for memory) is skipped and counted.
 *
 * usage: bench_fidelity [--n N] [--seed S] [--epochs E] [--subset N] [--val N]
 *                       [--test N] [--threads T]
 */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"
#include "predictor/pred.h"
#include "space/space.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NETS 128
#define MAX_RUNGS 64
#define QUARTERS 4   /* rungs per epoch */

typedef struct {
    double macs, params;
    ev_zero_cost_scores zc;
    int n_rungs;
    double rung_acc[MAX_RUNGS];
    long rung_images[MAX_RUNGS];
    double test_acc;
    int diverged;
} result;

typedef struct {
    ev_net *net;
    const ev_split *val;
    result *r;
    int steps_per_rung, step, batch;
    nas_status st;
    nas_err err;
} watch;

/* Every steps_per_rung steps: the validation accuracy, as a rung. */
static int on_step(void *ctx)
{
    watch *w = ctx;
    if (++w->step % w->steps_per_rung || w->r->n_rungs >= MAX_RUNGS)
        return 0;
    double acc = 0;
    if ((w->st = ev_evaluate(w->net, w->val, &acc, &w->err)))
        return 1;
    w->r->rung_acc[w->r->n_rungs] = acc;
    w->r->rung_images[w->r->n_rungs++] = (long)w->step * w->batch;
    return 0;
}

/* Ranks with ties averaged (1-based), for Spearman's rho. */
static void ranks(const double *v, int n, double *r)
{
    for (int i = 0; i < n; i++) {
        int less = 0, same = 0;
        for (int j = 0; j < n; j++) {
            less += v[j] < v[i];
            same += v[j] == v[i];
        }
        r[i] = less + (same + 1) / 2.0;
    }
}

static double spearman(const double *a, const double *b, int n)
{
    double ra[MAX_NETS], rb[MAX_NETS];
    ranks(a, n, ra);
    ranks(b, n, rb);
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) {
        ma += ra[i] / n;
        mb += rb[i] / n;
    }
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_fidelity [--n N] [--seed S] [--epochs E] [--subset N] [--val N] [--test N] "
               "[--threads T]\n"
               "  defaults: 24 networks, seed 1, 3 epochs on 6000 training images, 2000 validation and\n"
               "  5000 test images of Fashion-MNIST, 1 thread\n"
               "  example: bench_fidelity --n 8 --epochs 2   (a quick look: about 5 minutes on 2 cores)\n");
}

static int train_one(const space_net *arch, const ev_data *d, int epochs, int threads, uint64_t seed, result *r)
{
    nas_err err;
    ev_net *net = NULL;
    ev_net_opts no = {.batch = 64, .training = 1, .threads = threads, .seed = seed};
    if (ev_net_create(arch, &no, &net, &err) != NAS_OK) {
        fprintf(stderr, "bench-fidelity: skipped: %s\n", err.msg);
        return -1;
    }
    int ok = ev_zero_cost(net, &d->train, 64, seed, &r->zc, &err) == NAS_OK;
    if (!ok)
        fprintf(stderr, "bench-fidelity: zero-cost scores: %s\n", err.msg);
    ev_train_opts o;
    ev_train_opts_default(&o);
    o.epochs = epochs;
    o.batch = 32;
    o.lr = 0.1;
    o.threads = threads;
    o.seed = seed;
    int steps = d->train.n / o.batch;
    watch w = {.net = net, .val = &d->val, .r = r, .batch = o.batch,
               .steps_per_rung = steps / QUARTERS > 0 ? steps / QUARTERS : 1};
    o.on_step = on_step;
    o.ctx = &w;
    ev_train_result tr;
    nas_status st = ev_train(net, d, &o, &tr, &err);
    r->diverged = st == NAS_EDIVERGED;
    if (st && st != NAS_EDIVERGED) {
        fprintf(stderr, "bench-fidelity: training: %s\n", err.msg);
        ev_net_free(net);
        return -1;
    }
    if (w.st) {
        fprintf(stderr, "bench-fidelity: validation: %s\n", w.err.msg);
        ev_net_free(net);
        return -1;
    }
    r->test_acc = r->diverged ? 0.1 : tr.test_acc;
    ev_net_free(net);
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    bench_start(argv);
    int n = 24, epochs = 3, subset = 6000, nval = 2000, ntest = 5000, threads = 1;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--n")) n = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--epochs")) epochs = atoi(v);
        else if (!strcmp(a, "--subset")) subset = atoi(v);
        else if (!strcmp(a, "--val")) nval = atoi(v);
        else if (!strcmp(a, "--test")) ntest = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else {
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (n < 3 || n > MAX_NETS || epochs < 1 || epochs * QUARTERS > MAX_RUNGS || subset < 256 || nval < 100 ||
        ntest < 100 || threads < 1) {
        fprintf(stderr, "bench-fidelity: --n 3..%d, --epochs 1..%d, --subset >= 256, --val and --test >= 100, "
                        "--threads >= 1\n", MAX_NETS, MAX_RUNGS / QUARTERS);
        return 2;
    }
    bench_print_machine(stdout);
    printf("# %d networks of jobs/fashion-small.yaml's space, seed %llu; %d epochs on %d Fashion-MNIST training "
           "images (batch 32, lr 0.1), validation on %d at every quarter epoch, test on %d; %d thread(s)\n",
           n, (unsigned long long)seed, epochs, subset, nval, ntest, threads);
    ev_data d;
    ev_data_opts dop;
    ev_data_opts_default(&dop);
    dop.val_count = nval;
    dop.train_limit = subset;
    dop.test_limit = ntest;
    dop.seed = seed;
    nas_err err;
    if (ev_data_load("fashion-mnist", &dop, &d, &err) != NAS_OK) {
        fprintf(stderr, "bench-fidelity: %s\n", err.msg);
        return 1;
    }
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    cfg.n_stages = 3;
    cfg.max_width = 1.0;
    cfg.min_side = 4;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, seed, 0xf1de);
    static result res[MAX_NETS];
    int got = 0, skipped = 0;
    double t0 = nas_now();
    printf("%3s %9s %8s %10s %10s", "net", "MMACs", "kparams", "grad_norm", "snip");
    for (int q = 1; q <= epochs * QUARTERS; q++)
        printf(" %6s", q % QUARTERS ? "" : "epoch");
    printf("  %6s\n", "test");
    for (int k = 0; k < n; k++) {
        space_genome g;
        space_spec spec;
        space_net arch;
        space_cost cost;
        space_genome_sample(&cfg, &rng, &g);
        if (space_genome_to_spec(&cfg, &g, &spec, &err) || space_resolve(&spec, &arch, &err)) {
            fprintf(stderr, "bench-fidelity: network %d: %s\n", k, err.msg);
            skipped++;
            continue;
        }
        space_cost_of(&arch, NULL, 0, &cost);
        result *r = &res[got];
        memset(r, 0, sizeof *r);
        r->macs = cost.macs;
        r->params = cost.params;
        if (train_one(&arch, &d, epochs, threads, seed * 1000 + (uint64_t)k, r)) {
            skipped++;
            continue;
        }
        printf("%3d %9.3f %8.1f %10.4g %10.4g", k, r->macs / 1e6, r->params / 1e3, r->zc.grad_norm, r->zc.snip);
        for (int q = 0; q < r->n_rungs; q++)
            printf(" %6.3f", r->rung_acc[q]);
        printf("  %6.3f%s\n", r->test_acc, r->diverged ? " (diverged)" : "");
        fflush(stdout);
        got++;
    }
    ev_data_free(&d);
    if (got < 3) {
        fprintf(stderr, "bench-fidelity: only %d networks trained (%d skipped): no ranking\n", got, skipped);
        return 1;
    }
    double test[MAX_NETS], x[MAX_NETS];
    for (int i = 0; i < got; i++)
        test[i] = res[i].test_acc;
    printf("# %d networks trained, %d skipped, %.0f s\n", got, skipped, nas_now() - t0);
    printf("rung tau:");
    int rungs = epochs * QUARTERS;
    for (int q = 0; q < rungs; q++) {
        int m = 0;
        double a[MAX_NETS], b[MAX_NETS];
        for (int i = 0; i < got; i++)
            if (res[i].n_rungs > q) {
                a[m] = res[i].rung_acc[q];
                b[m++] = test[i];
            }
        long images = 0;
        for (int i = 0; i < got && !images; i++)
            images = res[i].n_rungs > q ? res[i].rung_images[q] : 0;
        printf("%s %ld -> %.3f", q ? "," : "", images, m >= 3 ? pred_kendall_tau(a, b, m) : NAN);
    }
    printf("\n");
    const char *names[4] = {"grad_norm", "snip", "params", "macs"};
    printf("proxy rho:");
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < got; i++)
            x[i] = s == 0 ? res[i].zc.grad_norm : s == 1 ? res[i].zc.snip : s == 2 ? res[i].params : res[i].macs;
        printf("%s %s %.3f (tau %.3f)", s ? "," : "", names[s], spearman(x, test, got),
               pred_kendall_tau(x, test, got));
    }
    printf("\n");
    return 0;
}
