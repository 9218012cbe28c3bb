/* bench_distill.c — `make bench-distill`: does knowledge distillation help a
 * small network on Fashion-MNIST? (issue 16's goal: the student's test
 * accuracy at least 0.5 point above the same student trained without a
 * teacher for the same epochs, median of 3 seeds.)
 *
 * Trains a teacher (bench-compress's network, 4x the student's MACs) once,
 * then for each seed the student twice from the same initial weights and the
 * same shuffling: on the labels alone, and on the labels plus the teacher's
 * softened logits. Prints every run, the medians and the paired differences.
 * Options: --train N (training images, default 20000), --teacher-epochs E (4),
 * --epochs E (the student's, 2), --seeds S (3), --alpha A (0.7), --temp T (4).
 */
#include "bench/bench_machine.h"
#include "evaluator/ev.h"

#include <math.h>

#define MAX_SEEDS 9

/* The kind of network a search under a tight energy target picks. */
static void student_spec(space_spec *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "bench-distill-student");
    s->resolution = 28, s->in_ch = 1, s->num_classes = 10;
    s->stem_ch = 16, s->stem_kernel = 3, s->stem_stride = 2, s->stem_act = SPACE_ACT_RELU6;
    s->n_stages = 3;
    s->stages[0] = (space_stage){.kernel = 3, .expand = 1, .out_ch = 16, .repeats = 1, .stride = 1, .act = SPACE_ACT_RELU6};
    s->stages[1] = (space_stage){.kernel = 3, .expand = 3, .out_ch = 24, .repeats = 2, .stride = 2, .act = SPACE_ACT_RELU6};
    s->stages[2] = (space_stage){.kernel = 5, .expand = 3, .out_ch = 40, .repeats = 1, .stride = 1, .act = SPACE_ACT_RELU6};
    s->head_ch = 128, s->head_act = SPACE_ACT_RELU6;
    s->se_act = SPACE_ACT_RELU, s->se_gate = SPACE_GATE_SIGMOID;
    s->dropout = 0.1;
}

static int die(const char *what, const nas_err *e)
{
    fprintf(stderr, "bench-distill: %s: %s\n", what, e ? e->msg : "failed");
    return 1;
}

/* Trains a fresh net of spec (initialised from seed) and leaves it in *out. */
static nas_status train(const space_spec *spec, const ev_data *d, const ev_train_opts *base, uint64_t seed,
                        ev_net **out, ev_train_result *r, nas_err *e)
{
    static space_net a;   /* large: off the stack */
    nas_status st = space_resolve(spec, &a, e);
    ev_net_opts no = {.batch = base->batch, .training = 1, .threads = 0, .seed = seed};
    if (!st)
        st = ev_net_create(&a, &no, out, e);
    ev_train_opts o = *base;
    o.seed = seed;
    if (!st)
        st = ev_train(*out, d, &o, r, e);
    return st;
}

static double macs_of(const space_spec *s)
{
    space_net a;
    space_cost c;
    nas_err e;
    if (space_resolve(s, &a, &e) != NAS_OK)
        return NAN;
    space_cost_of(&a, NULL, 0, &c);
    return c.macs;
}

int main(int argc, char **argv)
{
    bench_start(argv);
    int train_n = 20000, t_epochs = 4, epochs = 2, seeds = 3;
    double alpha = 0.7, temp = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--train"))
            train_n = atoi(v);
        else if (!strcmp(a, "--teacher-epochs"))
            t_epochs = atoi(v);
        else if (!strcmp(a, "--epochs"))
            epochs = atoi(v);
        else if (!strcmp(a, "--seeds"))
            seeds = atoi(v);
        else if (!strcmp(a, "--alpha"))
            alpha = atof(v);
        else if (!strcmp(a, "--temp"))
            temp = atof(v);
    }
    if (train_n < 100 || t_epochs < 1 || epochs < 1 || seeds < 1 || seeds > MAX_SEEDS) {
        fprintf(stderr, "bench-distill: bad option value\n");
        return 2;
    }
    bench_print_machine(stdout);
    nas_err e;
    ev_data data;
    if (bench_fashion(train_n, &data, &e) != NAS_OK)
        return die("data", &e);
    space_spec ts, ss;
    bench_mbconv28_spec(&ts, "bench-distill-teacher");
    student_spec(&ss);
    ev_train_opts to;
    ev_train_opts_default(&to);
    to.epochs = t_epochs;
    to.batch = 64;
    ev_net *teacher = NULL;
    ev_train_result tr;
    double t0 = nas_now();
    if (train(&ts, &data, &to, 1, &teacher, &tr, &e) != NAS_OK)
        return die("teacher", &e);
    printf("# fashion-mnist: %d training, %d validation, %d test images\n", data.train.n, data.val.n,
           data.test.n);
    printf("# teacher: %.2fM MACs, %d epochs, %.0f s: val %.4f, test %.4f\n", macs_of(&ts) / 1e6, t_epochs,
           nas_now() - t0, tr.val_acc, tr.test_acc);
    printf("# student: %.2fM MACs, %d epochs; distilled with alpha %g, temperature %g\n", macs_of(&ss) / 1e6,
           epochs, alpha, temp);
    printf("%-6s %12s %12s %10s %10s\n", "seed", "labels_test", "distil_test", "diff_pt", "distil_s");

    double plain[MAX_SEEDS], kd[MAX_SEEDS], diff[MAX_SEEDS];
    for (int s = 0; s < seeds; s++) {
        ev_net *n = NULL;
        ev_train_result r0, r1;
        to.epochs = epochs;
        to.teacher = NULL;
        if (train(&ss, &data, &to, (uint64_t)s + 1, &n, &r0, &e) != NAS_OK)
            return die("student", &e);
        ev_net_free(n);
        to.teacher = teacher, to.kd_alpha = alpha, to.kd_temperature = temp;
        if (train(&ss, &data, &to, (uint64_t)s + 1, &n, &r1, &e) != NAS_OK)
            return die("distilled student", &e);
        ev_net_free(n);
        plain[s] = r0.test_acc, kd[s] = r1.test_acc, diff[s] = 100 * (r1.test_acc - r0.test_acc);
        printf("%-6d %12.4f %12.4f %+10.2f %10.1f\n", s + 1, plain[s], kd[s], diff[s], r1.seconds);
        fflush(stdout);
    }
    double dm = bench_median(diff, seeds);
    printf("median test accuracy: labels alone %.4f, distilled %.4f; median paired difference %+.2f points "
           "(goal >= +0.5: %s)\n", bench_median(plain, seeds), bench_median(kd, seeds), dm,
           dm >= 0.5 ? "met" : "NOT met");
    ev_net_free(teacher);
    ev_data_free(&data);
    return 0;
}
