/* bench_mpi.c — candidates per hour of the distributed search, with the real
 * training engine, for `make bench-mpi`.
 *
 * Every rank builds the same synthetic MNIST-shaped data set (28x28x1, ten
 * classes, each a fixed random pattern plus noise, so that accuracy means
 * something) in memory: nothing to download, every rank has the same set,
 * and training cost depends on shapes and counts, not on which digits are
 * drawn. Rank 0
 * runs aging evolution over space/'s genome (search_space_from_config); every
 * candidate is resolved, built and trained for `epochs` epochs with the
 * engine, with the thread count search_dist_threads gives this rank.
 * Launched plainly it is the one-process search; under mpirun, the
 * distributed one. Rank 0 prints one line:
 *   ranks=N workers=W threads=T evals=E seconds=S cand_per_hour=C
 * Joules are the CPU-time model (stated 10 W per busy core), marked
 * estimated: this bench measures throughput, not energy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/nas.h"
#include "evaluator/ev.h"
#include "search/dist.h"
#include "space/space.h"

typedef struct {
    space_config cfg;
    ev_data data;
    int threads, epochs, batch;
    uint64_t seed;
} bench;

/* n images: class k is pattern k (uniform noise drawn once) plus N(0, 0.5) noise. */
static nas_status make_split(ev_split *s, int n, nas_pcg32 *rng, const float *pattern, nas_err *err)
{
    s->n = n;
    s->h = s->w = 28;
    s->c = 1;
    s->images = nas_malloc_aligned((size_t)n * 784 * sizeof(float));
    s->labels = nas_malloc((size_t)n);
    if (!s->images || !s->labels)
        return nas_errf(err, NAS_ENOMEM, "bench: out of memory for %d images", n);
    for (int i = 0; i < n; i++) {
        int k = (int)nas_pcg32_bounded(rng, 10);
        s->labels[i] = (uint8_t)k;
        for (int p = 0; p < 784; p++) {
            double u1 = nas_pcg32_double(rng) + 1e-12, u2 = nas_pcg32_double(rng);
            double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
            s->images[(size_t)i * 784 + p] = pattern[k * 784 + p] + (float)(0.5 * z);
        }
    }
    return NAS_OK;
}

static nas_status make_data(bench *b, int n_train, nas_err *err)
{
    memset(&b->data, 0, sizeof b->data);
    snprintf(b->data.name, sizeof b->data.name, "synthetic");
    b->data.num_classes = 10;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, b->seed, 77);
    float *pattern = nas_malloc(10 * 784 * sizeof(float));
    if (!pattern)
        return nas_errf(err, NAS_ENOMEM, "bench: out of memory");
    for (int i = 0; i < 10 * 784; i++)
        pattern[i] = (float)(2 * nas_pcg32_double(&rng) - 1);
    nas_status st = make_split(&b->data.train, n_train, &rng, pattern, err);
    if (!st)
        st = make_split(&b->data.val, n_train / 4, &rng, pattern, err);
    nas_free(pattern);
    return st;
}

static nas_status evaluate(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                           nas_err *err)
{
    bench *b = ctx;
    space_spec spec;
    space_net arch;
    ev_net *net = NULL;
    nas_status st;
    double cpu0 = nas_cpu_seconds();
    memset(out, 0, sizeof *out);
    if ((st = space_genome_to_spec(&b->cfg, g, &spec, err)) || (st = space_resolve(&spec, &arch, err)))
        return st;
    ev_net_opts no = {.batch = b->batch, .training = 1, .threads = b->threads, .seed = b->seed + (uint64_t)id};
    if ((st = ev_net_create(&arch, &no, &net, err)))
        return st;
    ev_train_opts to;
    ev_train_opts_default(&to);
    to.epochs = b->epochs;
    to.batch = b->batch;
    to.threads = b->threads;
    to.seed = b->seed + (uint64_t)id;
    ev_train_result r;
    st = ev_train(net, &b->data, &to, &r, err);
    ev_net_free(net);
    if (st == NAS_EDIVERGED) {
        out->status = SEARCH_EVAL_DIVERGED;
        st = NAS_OK;
    } else if (st) {
        return st;
    } else {
        out->status = SEARCH_EVAL_OK;
        out->accuracy = r.val_acc;
    }
    out->joules = 10.0 * (nas_cpu_seconds() - cpu0);
    out->joules_rel_unc = 0.5;
    out->joules_estimated = 1;
    snprintf(out->meter, sizeof out->meter, "model:cpu-time");
    return NAS_OK;
}

int main(int argc, char **argv)
{
    long evals = 8, images = 512;
    bench b;
    memset(&b, 0, sizeof b);
    b.epochs = 1;
    b.batch = 32;
    b.seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--evals"))
            evals = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--images"))
            images = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--epochs"))
            b.epochs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed"))
            b.seed = (uint64_t)atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_mpi [--evals N] [--images N] [--epochs N] [--seed S]\n");
            return 2;
        }
    }
    nas_err err;
    nas_err_clear(&err);
    search_dist *d = NULL;
    search_loop *loop = NULL;
    nas_status st = search_dist_init(&argc, &argv, &d, &err);
    if (st) {
        fprintf(stderr, "bench_mpi: %s\n", err.msg);
        return 1;
    }
    b.threads = search_dist_threads(d);
    space_config_default(&b.cfg, 28, 1, 10);
    b.cfg.scale_resolution = 0;
    b.cfg.n_stages = 4;
    b.cfg.max_width = 0.5;
    search_space space;
    if (!(st = search_space_from_config(&space, &b.cfg, &err)) && search_dist_rank(d) > 0)
        st = make_data(&b, (int)images, &err);
    if (!st && search_dist_size(d) == 1)
        st = make_data(&b, (int)images, &err);
    if (!st && search_dist_rank(d) == 0) {
        search_loop_opts lo;
        search_loop_opts_default(&lo, SEARCH_EVOLUTION, evals);
        lo.strategy.seed = b.seed;
        st = search_loop_new(&space, &lo, &loop, &err);
    }
    search_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = &b;
    cb.evaluate = evaluate;
    search_dist_opts o;
    search_dist_opts_default(&o);
    search_stop why;
    double t0 = nas_now();
    if (!st)
        st = search_dist_run(d, &o, loop, &cb, &why, &err);
    double secs = nas_now() - t0;
    if (st)
        fprintf(stderr, "bench_mpi: rank %d: %s\n", search_dist_rank(d), err.msg);
    else if (search_dist_rank(d) == 0) {
        const search_budget *bu = search_loop_budget(loop);
        int threads = b.threads;
        if (search_dist_size(d) > 1) {   /* a worker's count (one host), not the coordinator's 1 */
            long cpus = sysconf(_SC_NPROCESSORS_ONLN);
            threads = search_dist_plan_threads((int)cpus, (int)cpus, search_dist_size(d), 1, 0, search_dist_size(d));
        }
        printf("ranks=%d workers=%d threads=%d evals=%ld seconds=%.2f cand_per_hour=%.0f\n", search_dist_size(d),
               search_dist_size(d) > 1 ? search_dist_size(d) - 1 : 1, threads, bu->evals, secs,
               bu->evals / secs * 3600);
    }
    search_loop_free(loop);
    nas_free_aligned(b.data.train.images);
    nas_free(b.data.train.labels);
    nas_free_aligned(b.data.val.images);
    nas_free(b.data.val.labels);
    search_dist_finish(d);
    return st ? 1 : 0;
}
