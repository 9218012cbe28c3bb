/* settings.c — the one table of settings, and what reads it: defaults, flag
 * values, cross-checks, --help, and the saved-settings JSON (`nas resume`,
 * the Open MPI ranks). Job files read it too (app/job.c).
 *
 * Why one table: the settings were once defined three times (flags, job
 * keys, the modules' option defaults) and their defaults disagreed (batch 64
 * against 32, lr 0.05 against 0.1). A row names a setting once; a setting
 * added here is a flag, a job key and a saved key at once. Where a module has
 * an option default of its own (search/, predictor/), tests/test_app.c holds
 * the two equal. */
#include "app/app.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define F(m) offsetof(app_settings, m), sizeof(((app_settings *)0)->m)
#define S APP_SEARCH
#define C APP_CALIBRATE
#define NONE NAN   /* no default: the setting is off unless given */

static const app_setting TABLE[] = {
    /* job files only */
    {NULL, NULL, "job", APP_CHOICE, F(job), 0, 0, 0, "search", "search|calibrate", NULL, 0, NULL, NULL, NULL},
    {NULL, "data", "set", APP_CHOICE, F(data_set), 0, 0, 0, "", "mnist|fashion-mnist|idx|cifar10", NULL, 0, NULL,
     NULL, NULL},
    {NULL, "data", "dir", APP_STR, F(data_folder), 0, 0, 0, "", NULL, NULL, 0, NULL, NULL, NULL},

    {"budget-joules", "budget", "joules", APP_DBL, F(budget_j), 0, 1e12, 0, NULL, NULL, NULL, S, "J", "budgets",
     "energy the search spends training and measuring candidates: a cap.\n"
     "Counted as the meter reports it raised by the meter's stated uncertainty\n"
     "(x1.5 for model:cpu-time, x1.02 for RAPL), summed over every rank; each\n"
     "candidate gets an allowance out of what is left, estimated from its MACs\n"
     "(then from measured candidates), and stops within it (keeping the accuracy\n"
     "it reached, marked stopped early). A budget no candidate fits is refused (default: none)"},
    {"budget-evals", "budget", "evals", APP_LONG, F(budget_evals), 0, 1e8, 0, NULL, NULL, NULL, S, "N", "budgets",
     "candidates trained (default: none)"},
    {"budget-seconds", "budget", "seconds", APP_DBL, F(budget_s), 0, 1e9, 0, NULL, NULL, NULL, S, "S", "budgets",
     "wall-clock seconds (default: none)"},

    {"target-mj", "objective", "target_mj", APP_DBL, F(target_mj), 1e-6, 1e9, 0, NULL, NULL, NULL, S, "T",
     "objective (MnasNet: reward = accuracy x (X/T)^w)", "energy per inference target (mJ)"},
    {"target-ms", "objective", "target_ms", APP_DBL, F(target_ms), 1e-6, 1e9, 0, NULL, NULL, NULL, S, "T",
     "objective (MnasNet: reward = accuracy x (X/T)^w)", "latency per inference target (ms); one target at a time"},
    {"w", "objective", "w", APP_DBL, F(w), -10, 0, -0.07, NULL, NULL, NULL, S, "W",
     "objective (MnasNet: reward = accuracy x (X/T)^w)", "soft-constraint exponent"},
    {"hard", "objective", "constraint", APP_BOOL, F(hard), 0, 1, 0, NULL, "soft|hard", NULL, S, NULL,
     "objective (MnasNet: reward = accuracy x (X/T)^w)",
     "hard constraint: w = 0 under the target, -1 over it; the predictor screens\n"
     "out candidates predicted over 1.5 x T (job files: constraint: soft|hard)"},

    {"strategy", "strategy", "kind", APP_CHOICE, F(strategy), 0, 0, 0, "evolution", "evolution|rl|random", NULL, S,
     "S", "strategy", "the search strategy"},
    {"population", "strategy", "population", APP_LONG, F(population), 2, 1e6, 0, NULL, NULL, "evolution", S, "P",
     "strategy", "evolution's population (default: evals / 8, in 8..100; under --budget-joules\n"
     "without --rungs, the evals the joules are expected to pay for, if fewer)"},
    {"sample", "strategy", "sample", APP_LONG, F(sample), 1, 1e6, 0, NULL, NULL, "evolution", S, "S", "strategy",
     "evolution's tournament size (default: population / 4, at least 2)"},
    {"mutations", "strategy", "mutations", APP_LONG, F(mutations), 1, 64, 1, NULL, NULL, "evolution", S, "M",
     "strategy", "genes changed per child"},
    {"rl-lr", "strategy", "lr", APP_DBL, F(rl_lr), 1e-6, 100, 0.15, NULL, NULL, "rl", S, "X", "strategy",
     "RL controller's learning rate"},
    {"entropy", "strategy", "entropy", APP_DBL, F(entropy), 0, 10, 0.002, NULL, NULL, "rl", S, "X", "strategy",
     "RL entropy regularisation"},
    {"baseline-decay", "strategy", "baseline_decay", APP_DBL, F(baseline_decay), 0, 0.999999, 0.9, NULL, NULL, "rl",
     S, "X", "strategy", "RL baseline decay"},
    {"batch-rl", "strategy", "batch", APP_LONG, F(rl_batch), 1, 100000, 1, NULL, NULL, "rl", S, "B", "strategy",
     "RL results per update"},
    {"ppo-epochs", "strategy", "ppo_epochs", APP_LONG, F(ppo_epochs), 0, 1000, 0, NULL, NULL, "rl", S, "K",
     "strategy", "PPO passes per batch (0: REINFORCE)"},
    {"seed", NULL, "seed", APP_LONG, F(seed), 0, 0x7fffffffL, 1, NULL, NULL, NULL, S | C, "S", "strategy",
     "strategy, training and sampling seed"},

    {"epochs", "proxy", "epochs", APP_LONG, F(epochs), 1, 1000, 1, NULL, NULL, NULL, S, "E", "proxy training",
     "epochs each candidate trains"},
    {"subset", "proxy", "subset", APP_LONG, F(subset), 0, 1e8, 2000, NULL, NULL, NULL, S, "N", "proxy training",
     "training images per epoch (0: all)"},
    {"batch", "proxy", "batch", APP_LONG, F(batch), 1, 4096, 32, NULL, NULL, NULL, S, "B", "proxy training",
     "minibatch size"},
    {"lr", "proxy", "lr", APP_DBL, F(lr), 1e-8, 100, 0.1, NULL, NULL, NULL, S, "X", "proxy training",
     "learning rate (SGD with momentum, cosine schedule)"},
    {"rungs", "proxy", "rungs", APP_LONG, F(rungs), 1, SEARCH_MAX_RUNGS, 1, NULL, NULL, NULL, S, "R", "proxy training",
     "multi-fidelity (ASHA): candidates first train --epochs; the best 1/eta of\n"
     "each rung train on from their weights to eta^k x --epochs, up to rung R-1\n"
     "(1: off; needs the run store; under mpirun a promotion's weights go with its work)"},
    {"eta", "proxy", "eta", APP_LONG, F(eta), 2, 100, 3, NULL, NULL, NULL, S, "N", "proxy training",
     "multi-fidelity: the share of a rung promoted (1/eta) and the step between rungs"},
    {"threads", NULL, "threads", APP_LONG, F(threads), 0, 256, 0, NULL, NULL, NULL, S | C, "T", "proxy training",
     "threads (0: all cores; calibrate's benchmark: 1)"},

    {"predictor", "meter", "predictor", APP_STR, F(predictor), 0, 0, 0, "auto", NULL, NULL, S, "FILE", "measuring",
     "calibrated predictor ('nas calibrate'), 'auto' (default: the one cached for\n"
     "this machine and space in $NAS_CACHE_DIR, else ~/.cache/nas; when there is none,\n"
     "a small one is calibrated first, about a minute, charged to the budget) or\n"
     "'none' (every candidate is benchmarked after training)"},
    {"meter", "meter", "kind", APP_CHOICE, F(meter), 0, 0, 0, "auto", "auto|rapl|perf|nvml|model", NULL, S | C, "M",
     "measuring", "energy meter"},
    {"watts-per-core", "meter", "watts_per_core", APP_DBL, F(watts), 0.1, 10000, 0, NULL, NULL, NULL, S | C, "W",
     "measuring", "the model meter's stated busy power per core (default: the meter's own)"},
    {"deploy", "objective", "deploy", APP_CHOICE, F(deploy), 0, 0, 0, "float32", "float32|int8", NULL, S | C, "D",
     "measuring",
     "what energy and latency per inference are of: nas's float32 engine, or its\n"
     "int8 engine on the model quantized as --int8 exports it (one thread, calibrated\n"
     "min/max on 8 training images: the time does not depend on the ranges). The\n"
     "search ranks candidates as int8 models and exports the chosen one as int8 too;\n"
     "calibrate fits a predictor of int8 inference, which only an int8 search takes"},
    {"measure-every", "meter", "measure_every", APP_LONG, F(measure_every), 0, 1e8, 10, NULL, NULL, NULL, S, "K",
     "measuring", "benchmark the best every K evaluations"},
    {"measure-top", "meter", "measure_top", APP_LONG, F(measure_top), 0, 64, 3, NULL, NULL, NULL, S, "K",
     "measuring", "how many of the best"},
    {"bench-seconds", "meter", "bench_seconds", APP_DBL, F(bench_s), 0.01, 60, 0.3, NULL, NULL, NULL, S, "S",
     "measuring", "each benchmark repeat loops this long"},

    {"db", "output", "db", APP_STR, F(db), 0, 0, 0, "", NULL, NULL, S, "FILE", "output",
     "the run store (SQLite; created when missing; default ./" APP_DEFAULT_DB "): every\n"
     "candidate, its figures with their sources, its weights and the search's state after\n"
     "each, in one transaction ('nas report', 'nas export' and 'nas resume' read it)"},
    {"no-db", NULL, NULL, APP_BOOL, F(no_db), 0, 1, 0, NULL, NULL, NULL, S, NULL, "output",
     "a throwaway run: nothing recorded, nothing to resume or export"},
    {"name", NULL, "name", APP_STR, F(name), 0, 0, 0, "", NULL, NULL, S, "NAME", "output",
     "the run's name in the store; an existing run of that name is resumed\n"
     "where it stopped (also after kill -9)"},
    {"state", NULL, NULL, APP_STR, F(state), 0, 0, 0, "", NULL, NULL, S, "FILE", "output",
     "save the search's state after every candidate; resume from it when it\n"
     "exists (the budgets given now replace the saved ones)"},
    {"top", "output", "top", APP_LONG, F(top), 1, 10000, 10, NULL, NULL, NULL, S, "K", "output",
     "leaderboard length"},
    {"hv-ref-mj", "output", "hv_ref_mj", APP_DBL, F(hv_ref), 0, 1e12, 0, NULL, NULL, NULL, S, "E", "output",
     "hypervolume reference energy (default 2 x --target-mj, else 1.1 x the\n"
     "dearest seen: set it to compare runs)"},
    {"export-dir", "output", "export", APP_STR, F(export_dir), 0, 0, 0, "", NULL, NULL, S, "DIR", "output",
     "where the chosen model's ONNX goes at the end (default out/<run name>)"},
    {"no-export", NULL, NULL, APP_BOOL, F(no_export), 0, 1, 0, NULL, NULL, NULL, S, NULL, "output",
     "do not export the chosen model"},
    {"int8", "quantize", "int8", APP_BOOL, F(int8), 0, 1, 0, NULL, NULL, NULL, S, NULL, "output",
     "export the chosen model as int8 too (QDQ ONNX, <name>.int8.onnx; weights per channel, activations\n"
     "calibrated on training images); the model card states both accuracies"},
    {"calib-images", "quantize", "calib-images", APP_LONG, F(calib_images), 1, 60000, EV_QUANT_DEFAULT_IMAGES, NULL,
     NULL, NULL, S, "N", "output", "training images the int8 calibration reads"},
    {"calib", "quantize", "calib", APP_CHOICE, F(calib), 0, 0, 0, "percentile", "percentile|minmax", NULL, S, "M",
     "output", "int8 activation ranges: the range holding 99.99% of each tensor's values, or min/max"},
    {"json", NULL, NULL, APP_BOOL, F(json), 0, 1, 0, NULL, NULL, NULL, S | C, NULL, "output",
     "one JSON object on stdout"},

    {"final-top", "final", "top", APP_LONG, F(final_top), 0, APP_FINAL_MAX, 1, NULL, NULL, NULL, S, "K",
     "final training (after the search; metered and shown apart, not counted in --budget-joules)",
     "the K best trained again and tested (0: none); the best of them by the\n"
     "objective on validation accuracy is exported"},
    {"final-epochs", "final", "epochs", APP_LONG, F(final_epochs), 1, 1000, 5, NULL, NULL, NULL, S, "E",
     "final training (after the search; metered and shown apart, not counted in --budget-joules)", "epochs"},
    {"final-batch", "final", "batch", APP_LONG, F(final_batch), 1, 4096, 64, NULL, NULL, NULL, S, "B",
     "final training (after the search; metered and shown apart, not counted in --budget-joules)", "minibatch size"},
    {"final-subset", "final", "subset", APP_LONG, F(final_subset), 0, 1e8, 0, NULL, NULL, NULL, S, "N",
     "final training (after the search; metered and shown apart, not counted in --budget-joules)",
     "training images (0: the whole training split); the test split is read only here"},
    {"final-lr", "final", "lr", APP_DBL, F(final_lr), 1e-8, 100, 0.1, NULL, NULL, NULL, S, "X",
     "final training (after the search; metered and shown apart, not counted in --budget-joules)", "learning rate"},
    {"final-distill", "final", "distill", APP_BOOL, F(final_distill), 0, 1, 0, NULL, NULL, NULL, S, NULL,
     "final training (after the search; metered and shown apart, not counted in --budget-joules)",
     "knowledge distillation: the search's most accurate candidate, when it is\n"
     "not the first of the top, is trained first with the same recipe and teaches\n"
     "the top (labels plus its softened logits); its joules count in final training's"},
    {"kd-alpha", "final", "kd_alpha", APP_DBL, F(kd_alpha), 0, 1, EV_KD_DEFAULT_ALPHA, NULL, NULL, NULL, S, "A",
     "final training (after the search; metered and shown apart, not counted in --budget-joules)",
     "distillation: the weight of the teacher's soft targets"},
    {"kd-temp", "final", "kd_temp", APP_DBL, F(kd_temp), 1, 100, EV_KD_DEFAULT_TEMP, NULL, NULL, NULL, S, "T",
     "final training (after the search; metered and shown apart, not counted in --budget-joules)",
     "distillation: the softmax temperature of teacher and student"},

    {"prune-keep", "prune", "keep", APP_DBL, F(prune_keep), 1e-9, 1, 0, NULL, NULL, NULL, S, "F",
     "pruning of the finally trained model (as 'nas prune RUN' does, into EXPORT_DIR/pruned)",
     "fraction of each block's expansion channels kept (default: no pruning)"},
    {"prune-target-macs", "prune", "target_macs", APP_DBL, F(prune_target_macs), 1, 1e15, 0, NULL, NULL, NULL, S,
     "N", "pruning of the finally trained model (as 'nas prune RUN' does, into EXPORT_DIR/pruned)",
     "instead: at most N MACs per image"},
    {"prune-target-mj", "prune", "target_mj", APP_DBL, F(prune_target_mj), 1e-9, 1e9, 0, NULL, NULL, NULL, S, "X",
     "pruning of the finally trained model (as 'nas prune RUN' does, into EXPORT_DIR/pruned)",
     "instead: at most X mJ per inference, measured here"},
    {"prune-epochs", "prune", "epochs", APP_LONG, F(prune_epochs), 0, 1000, 3, NULL, NULL, NULL, S, "E",
     "pruning of the finally trained model (as 'nas prune RUN' does, into EXPORT_DIR/pruned)",
     "fine-tuning epochs on the final training's images"},
    {"prune-distill", "prune", "distill", APP_BOOL, F(prune_distill), 0, 1, 0, NULL, NULL, NULL, S, NULL,
     "pruning of the finally trained model (as 'nas prune RUN' does, into EXPORT_DIR/pruned)",
     "the fine-tune learns from the unpruned model's logits too"},

    {"data", NULL, NULL, APP_STR, F(data), 0, 0, 0, "", NULL, NULL, S, "D", "data and space",
     "the data: mnist, fashion-mnist, idx:DIR or cifar10:DIR (required;\n"
     "job files: data.set and data.dir)"},
    {"data-dir", "data", "home", APP_STR, F(data_dir), 0, 0, 0, "", NULL, NULL, S, "DIR", "data and space",
     "where 'mnist' and 'fashion-mnist' live (default $NAS_DATA_DIR, else data/\n"
     "here or beside the nas binary, else Debian's /usr/share/datasets)"},
    {"val-count", "data", "val_count", APP_LONG, F(val_count), 0, 1e7, -1, NULL, NULL, NULL, S, "N",
     "data and space", "validation images taken from train (default 10%)"},
    {"test-limit", "data", "test_limit", APP_LONG, F(test_limit), 0, 1e7, 0, NULL, NULL, NULL, S, "N",
     "data and space", "test images final training is tested on (0: all)"},
    {"resolution", "space", "resolution", APP_LONG, F(resolution), 8, 1024, 0, NULL, NULL, NULL, S | C, "R",
     "data and space", "input resolution (default: the data's; calibrate: 28)"},
    {"max-width", "space", "max_width", APP_DBL, F(max_width), 0.1, 4, 0.5, NULL, NULL, NULL, S | C, "W",
     "data and space", "cap on the width multiplier"},
    {"stages", "space", "stages", APP_LONG, F(stages), 1, 7, 7, NULL, NULL, NULL, S, "N", "data and space",
     "template stages searched"},
    {"min-side", "space", "min_side", APP_LONG, F(min_side), 1, 64, 0, NULL, NULL, NULL, S, "S", "data and space",
     "smallest feature map before the head (default: the space's)"},
    {"scale-resolution", "space", "scale_resolution", APP_BOOL, F(scale_resolution), 0, 1, 0, NULL, NULL, NULL, S,
     NULL, "data and space", "compound scaling also scales the input resolution"},
    {"in-channels", "space", "in_channels", APP_LONG, F(in_channels), 1, 4, 1, NULL, NULL, NULL, C, "C",
     "data and space", "input channels of the space to calibrate"},
    {"classes", "space", "classes", APP_LONG, F(classes), 2, 100000, 10, NULL, NULL, NULL, C, "K", "data and space",
     "classes of the space to calibrate"},

    {"mpi-sync", NULL, NULL, APP_BOOL, F(mpi_sync), 0, 1, 0, NULL, NULL, NULL, S, NULL,
     "several machines (under mpirun; see README.md)", "results told to the strategy in ticket order (reproducible)"},
    {"slots", NULL, NULL, APP_LONG, F(slots), 1, 4096, 0, NULL, NULL, NULL, S, "S",
     "several machines (under mpirun; see README.md)", "one process: evaluate like an S-worker --mpi-sync job"},
    {"worker-timeout", NULL, NULL, APP_DBL, F(worker_timeout), 0, 1e9, 0, NULL, NULL, NULL, S, "S",
     "several machines (under mpirun; see README.md)", "end the job when one candidate runs S seconds on a worker"},

    {"samples", "calibrate", "samples", APP_LONG, F(cal_samples), 4, 100000, 300, NULL, NULL, NULL, C, "N",
     "calibration", "networks of the first round"},
    {"max-samples", "calibrate", "max_samples", APP_LONG, F(cal_max_samples), 4, 100000, 0, NULL, NULL, NULL, C, "N",
     "calibration", "cap including adaptive rounds (default 1.5 x samples)"},
    {"adaptive-rounds", "calibrate", "adaptive_rounds", APP_LONG, F(cal_rounds), 0, 20, 2, NULL, NULL, NULL, C, "R",
     "calibration", "refinement rounds at most"},
    {"folds", "calibrate", "folds", APP_LONG, F(cal_folds), 2, 20, 5, NULL, NULL, NULL, C, "K", "calibration",
     "cross-validation folds"},
    {"holdout", "calibrate", "holdout", APP_LONG, F(cal_holdout), 0, 100000, 0, NULL, NULL, NULL, C, "N",
     "calibration", "after fitting, measure N fresh networks (never fit on) and print the\n"
     "predictor's accuracy on them"},
    {"out", "calibrate", "out", APP_STR, F(cal_out), 0, 0, 0, "predictor.json", NULL, NULL, C, "FILE",
     "calibration", "predictor file to write (a job with a name: <name>.predictor.json)"},
    {"refit", "calibrate", "refit", APP_STR, F(cal_refit), 0, 0, 0, "", NULL, NULL, C, "FILE", "calibration",
     "fit again on the measurements recorded in the predictor FILE, measuring\n"
     "nothing (its space, hardware and labels are kept)"},
    {"measure-cmd", "calibrate", "command", APP_STR, F(cal_command), 0, 0, 0, "", NULL, NULL, C, "CMD",
     "calibration measuring",
     "measure with a command instead of this machine: run by /bin/sh per\n"
     "network, '{spec}' replaced by the path of the spec's JSON and '{onnx}' by\n"
     "an ONNX export of the network (seeded weights); it prints 'latency_ms=<ms>'\n"
     "and 'energy_mj=<mJ>' lines (optional: latency_spread=, energy_spread=\n"
     "(p90-p10)/median, energy_source=, energy_quality=measured|sampled|estimated)"},
    {"measure-timeout", "calibrate", "timeout", APP_DBL, F(cal_timeout), 0, 86400, 600, NULL, NULL, NULL, C, "S",
     "calibration measuring", "seconds the command may take per network before it is killed and the\n"
     "network skipped (0: no limit)"},
    {"repeats", "calibrate", "repeats", APP_LONG, F(cal_repeats), 1, 1000, 5, NULL, NULL, NULL, C, "N",
     "calibration measuring", "built-in benchmark: timed repeats per network"},
    {"min-seconds", "calibrate", "min_seconds", APP_DBL, F(cal_min_seconds), 0.001, 600, 0.05, NULL, NULL, NULL, C,
     "S", "calibration measuring", "built-in benchmark: each repeat loops at least S s (with a RAPL or perf\n"
     "meter 0.5 or more gives steadier energy)"},
    {"passes", "calibrate", "passes", APP_LONG, F(cal_passes), 1, 3, 2, NULL, NULL, NULL, C, "P",
     "calibration measuring", "measure every network P times, each pass after the whole batch, so a\n"
     "network's measurements are minutes apart; the fastest is fit. The first two\n"
     "passes against each other are printed as test-retest agreement"},
    {"latency-stat", "calibrate", "latency_stat", APP_CHOICE, F(cal_stat), 0, 0, 0, "p10", "p10|median", NULL, C,
     "S", "calibration measuring", "built-in benchmark: the latency figure measured and predicted: p10, the\n"
     "10th percentile of single inferences, or median. On a shared machine\n"
     "neighbours slow whole stretches of calls; the fast tenth is the network's\n"
     "own speed and repeats far better"},
    {"max-spread", "calibrate", "max_spread", APP_DBL, F(cal_max_spread), 0, 100, 0.15, NULL, NULL, NULL, C, "X",
     "calibration measuring", "measure a network again (twice at most) when its latency spread\n"
     "(p90-p10)/median is over X (0: never)"},
    {"reference", "calibrate", "reference", APP_BOOL, F(cal_reference), 0, 1, 0, NULL, NULL, NULL, C, NULL,
     "calibration measuring", "measure a reference network before and after each network and scale each\n"
     "measurement by how fast the machine ran around it (--no-reference: off)"},
};
#define N_TABLE (int)(sizeof TABLE / sizeof TABLE[0])

int app_settings_count(void) { return N_TABLE; }
const app_setting *app_setting_at(int i) { return i >= 0 && i < N_TABLE ? &TABLE[i] : NULL; }

const app_setting *app_setting_find(const char *name, int cmd)
{
    if (!strncmp(name, "--", 2))
        name += 2;
    for (int i = 0; i < N_TABLE; i++)
        if (TABLE[i].name && !strcmp(TABLE[i].name, name) && (!cmd || (TABLE[i].cmds & cmd)))
            return &TABLE[i];
    return NULL;
}

static int is_text(app_type t) { return t == APP_STR || t == APP_CHOICE; }

void app_settings_defaults(app_settings *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < N_TABLE; i++) {
        const app_setting *t = &TABLE[i];
        char *p = (char *)s + t->off;
        if (is_text(t->type))
            snprintf(p, t->size, "%s", t->dflt_s ? t->dflt_s : "");
        else if (t->type == APP_DBL)
            *(double *)p = t->dflt;
        else
            *(long *)p = (long)t->dflt;
    }
}

/* 1 when s is one of the row's "a|b|c" choices; *idx its place. */
static int choice_of(const app_setting *t, const char *s, int *idx)
{
    size_t sl = strlen(s);
    int i = 0;
    for (const char *p = t->choices; p && *p; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == sl && !strncmp(p, s, n)) {
            *idx = i;
            return 1;
        }
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static nas_status set_number(const app_setting *t, char *p, const char *v, const char *who, nas_err *err)
{
    char *end;
    errno = 0;
    if (t->type == APP_LONG) {
        long long x = strtoll(v, &end, 10);
        if (errno == ERANGE || *end || end == v)
            return nas_errf(err, NAS_EINVAL, "%s: expected a whole number, got '%s'", who, v);
        if ((double)x < t->lo || (double)x > t->hi)
            return nas_errf(err, NAS_EINVAL, "%s: %s is out of range (%.15g..%.15g)", who, v, t->lo, t->hi);
        *(long *)p = (long)x;
        return NAS_OK;
    }
    double x = strtod(v, &end);
    if (errno == ERANGE || *end || end == v || !isfinite(x))
        return nas_errf(err, NAS_EINVAL, "%s: expected a number, got '%s'", who, v);
    if (x < t->lo || x > t->hi)
        return nas_errf(err, NAS_EINVAL, "%s: %s is out of range (%g..%g)", who, v, t->lo, t->hi);
    *(double *)p = x;
    return NAS_OK;
}

/* The value text v into t's slot; who names it in errors ("--batch",
 * "proxy.batch"). A boolean takes its choice words or true/false. */
static nas_status set_value(const app_setting *t, app_settings *s, const char *v, const char *who, nas_err *err)
{
    char *p = (char *)s + t->off;
    int idx;
    switch (t->type) {
    case APP_LONG:
    case APP_DBL:
        return set_number(t, p, v, who, err);
    case APP_BOOL:
        if (t->choices && choice_of(t, v, &idx))
            *(long *)p = idx;
        else if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(long *)p = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
            *(long *)p = 0;
        else
            return nas_errf(err, NAS_EINVAL, "%s: expected %s, got '%s'", who,
                            t->choices ? t->choices : "true or false", v);
        return NAS_OK;
    case APP_CHOICE:
        if (!choice_of(t, v, &idx))
            return nas_errf(err, NAS_EINVAL, "%s: '%s' is not one of %s", who, v, t->choices);
        /* fall through */
    case APP_STR:
        if (strlen(v) >= t->size)
            return nas_errf(err, NAS_EINVAL, "%s: longer than %zu characters", who, t->size - 1);
        if (!*v)
            return nas_errf(err, NAS_EINVAL, "%s: empty", who);
        snprintf(p, t->size, "%s", v);
        return NAS_OK;
    }
    return nas_errf(err, NAS_EINTERNAL, "%s: a setting without a type", who);
}

nas_status app_setting_parse(const app_setting *t, app_settings *s, const char *value, nas_err *err)
{
    char who[80];
    snprintf(who, sizeof who, "--%s", t->name ? t->name : t->key);
    if (t->type == APP_BOOL && !value) {
        *(long *)((char *)s + t->off) = 1;
        return NAS_OK;
    }
    if (!value)
        return nas_errf(err, NAS_EINVAL, "%s needs a value", who);
    return set_value(t, s, value, who, err);
}

/* The job file's walker (app/job.c) sets values through the same code. */
nas_status app_setting_set_text(const app_setting *t, app_settings *s, const char *v, const char *who, nas_err *err);
nas_status app_setting_set_text(const app_setting *t, app_settings *s, const char *v, const char *who, nas_err *err)
{
    return set_value(t, s, v, who, err);
}

static nas_status check_search(const app_settings *s, nas_err *err)
{
    if (!s->data[0])
        return nas_errf(err, NAS_EINVAL, "--data is required (mnist, fashion-mnist, idx:DIR or cifar10:DIR)");
    if (!(s->budget_j > 0) && s->budget_evals <= 0 && !(s->budget_s > 0))
        return nas_errf(err, NAS_EINVAL, "no budget: give --budget-joules, --budget-evals or --budget-seconds");
    if (s->target_mj > 0 && s->target_ms > 0)
        return nas_errf(err, NAS_EINVAL, "--target-mj and --target-ms: one target at a time");
    if (s->hard && !(s->target_mj > 0 || s->target_ms > 0))
        return nas_errf(err, NAS_EINVAL, "--hard needs a target (--target-mj or --target-ms)");
    if (s->name[0] && s->no_db)
        return nas_errf(err, NAS_EINVAL, "--name and --no-db: a throwaway run has no name to resume by");
    if (s->no_db && s->db[0])
        return nas_errf(err, NAS_EINVAL, "--db and --no-db exclude each other");
    if (s->rungs > 1 && s->no_db)
        return nas_errf(err, NAS_EINVAL, "--rungs %ld and --no-db: a promoted candidate trains on from the weights "
                        "its rung below stored in the run store", s->rungs);
    if ((s->prune_keep > 0) + (s->prune_target_macs > 0) + (s->prune_target_mj > 0) > 1)
        return nas_errf(err, NAS_EINVAL, "--prune-keep, --prune-target-macs, --prune-target-mj: one at a time");
    if ((s->prune_keep > 0 || s->prune_target_macs > 0 || s->prune_target_mj > 0) && s->final_top < 1)
        return nas_errf(err, NAS_EINVAL, "pruning after the search prunes the finally trained model: it needs "
                        "--final-top 1 or more");
    if (s->prune_distill && s->prune_epochs < 1)
        return nas_errf(err, NAS_EINVAL, "--prune-distill works in the fine-tune: it needs --prune-epochs 1 or more");
    if (s->population && s->sample > s->population)
        return nas_errf(err, NAS_EINVAL, "--sample %ld is larger than --population %ld", s->sample, s->population);
    return NAS_OK;
}

static nas_status check_calibrate(const app_settings *s, nas_err *err)
{
    if (s->cal_samples < 4 * s->cal_folds)
        return nas_errf(err, NAS_EINVAL, "--samples %ld is too few for %ld folds (need %ld)", s->cal_samples,
                        s->cal_folds, 4 * s->cal_folds);
    if (s->cal_max_samples && s->cal_max_samples < s->cal_samples)
        return nas_errf(err, NAS_EINVAL, "--max-samples %ld is below --samples %ld", s->cal_max_samples,
                        s->cal_samples);
    if (s->cal_command[0] && app_settings_int8(s))
        return nas_errf(err, NAS_EINVAL, "--deploy int8 and --measure-cmd: the command measures what it runs; "
                        "--deploy int8 is for the built-in int8 engine");
    if (s->cal_command[0] && !strstr(s->cal_command, "{spec}") && !strstr(s->cal_command, "{onnx}"))
        return nas_errf(err, NAS_EINVAL, "--measure-cmd '%s' has no {spec} or {onnx} to receive the network",
                        s->cal_command);
    return NAS_OK;
}

int app_settings_int8(const app_settings *s) { return !strcmp(s->deploy, "int8"); }

int app_settings_int8_export(const app_settings *s) { return s->int8 || app_settings_int8(s); }

nas_status app_settings_check(const app_settings *s, int cmd, nas_err *err)
{
    return cmd == APP_CALIBRATE ? check_calibrate(s, err) : check_search(s, err);
}

const char *app_settings_db(const app_settings *s)
{
    return s->no_db ? NULL : s->db[0] ? s->db : APP_DEFAULT_DB;
}

/* ---- --help ---------------------------------------------------------------- */

static void help_default(const app_setting *t, char *buf, size_t n)
{
    buf[0] = '\0';
    if (is_text(t->type)) {
        if (t->dflt_s && *t->dflt_s)
            snprintf(buf, n, " (default %s)", t->dflt_s);
    } else if (t->type != APP_BOOL && t->dflt >= t->lo && t->dflt <= t->hi && !strstr(t->help, "default")) {
        snprintf(buf, n, " (default %g)", t->dflt);
    }
}

static void help_row(FILE *f, const app_setting *t)
{
    char head[64], dflt[64];
    snprintf(head, sizeof head, "--%s%s%s", t->name, t->meta ? " " : "", t->meta ? t->meta : "");
    help_default(t, dflt, sizeof dflt);
    fprintf(f, "  %-22s", head);
    if (strlen(head) > 22)
        fprintf(f, "\n  %-22s", "");
    for (const char *p = t->help; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(f, " %.*s%s\n", len, p, nl ? "" : dflt);
        if (!nl)
            break;
        p = nl + 1;
        fprintf(f, "  %-22s", "");
    }
}

void app_settings_help(FILE *f, int cmd)
{
    const char *done[32];
    int n_done = 0;
    for (int i = 0; i < N_TABLE; i++) {
        const char *g = TABLE[i].group;
        if (!g || !(TABLE[i].cmds & cmd))
            continue;
        int seen = 0;
        for (int k = 0; k < n_done; k++)
            seen |= !strcmp(done[k], g);
        if (seen || n_done == 32)
            continue;
        done[n_done++] = g;
        fprintf(f, "%s:\n", g);
        for (int j = i; j < N_TABLE; j++)
            if (TABLE[j].group && !strcmp(TABLE[j].group, g) && (TABLE[j].cmds & cmd))
                help_row(f, &TABLE[j]);
    }
}

/* ---- the saved settings ----------------------------------------------------- */

static int saved(const app_setting *t) { return t->name && (t->cmds & APP_SEARCH); }

char *app_settings_to_json(const app_settings *s)
{
    json_t *o = json_object();
    int bad = !o;
    for (int i = 0; o && i < N_TABLE; i++) {
        const app_setting *t = &TABLE[i];
        if (!saved(t))
            continue;
        const char *p = (const char *)s + t->off;
        json_t *v = is_text(t->type) ? json_string(p) : t->type == APP_DBL ? json_real(*(const double *)p)
                  : json_integer(*(const long *)p);
        /* a value JSON cannot hold (text that is not UTF-8) fails the whole: a
         * dropped key would resume with its default */
        if (json_object_set_new(o, t->name, v) != 0)
            bad = 1;
    }
    char *js = !bad ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return js;   /* jansson allocates through nas_malloc (base/alloc.c) */
}

/* One saved value into its slot: of the setting's type and within its range
 * (or its default, which may lie outside: 0 for "no target"), as a flag
 * would have been; a string whole, never cut. */
static nas_status from_json_value(const app_setting *t, const json_t *v, app_settings *s, nas_err *err)
{
    char *p = (char *)s + t->off;
    const char *key = t->name;
    double x;
    int idx;
    if (is_text(t->type)) {
        if (!json_is_string(v) || json_string_length(v) >= t->size || strlen(json_string_value(v)) != json_string_length(v))
            return nas_errf(err, NAS_EINVAL, "settings: '%s' is not a string of at most %zu bytes", key, t->size - 1);
        if (t->type == APP_CHOICE && !choice_of(t, json_string_value(v), &idx))
            return nas_errf(err, NAS_EINVAL, "settings: '%s': '%s' is not one of %s", key, json_string_value(v),
                            t->choices);
        memcpy(p, json_string_value(v), json_string_length(v) + 1);
        return NAS_OK;
    }
    if (t->type != APP_DBL) {
        if (!json_is_integer(v))
            return nas_errf(err, NAS_EINVAL, "settings: '%s' has the wrong type (an integer)", key);
        x = (double)json_integer_value(v);
        if (!(x >= t->lo && x <= t->hi) && x != t->dflt)
            return nas_errf(err, NAS_EINVAL, "settings: '%s': %lld is out of range (%.15g to %.15g)", key,
                            (long long)json_integer_value(v), t->lo, t->hi);
        *(long *)p = (long)json_integer_value(v);
        return NAS_OK;
    }
    if (!json_is_number(v))
        return nas_errf(err, NAS_EINVAL, "settings: '%s' has the wrong type (a number)", key);
    x = json_number_value(v);
    if (!(x >= t->lo && x <= t->hi) && x != t->dflt)
        return nas_errf(err, NAS_EINVAL, "settings: '%s': %g is out of range (%g to %g)", key, x, t->lo, t->hi);
    *(double *)p = x;
    return NAS_OK;
}

/* Keys that older runs saved and that mean nothing now: their values were
 * "the strategy's own", which is now the table's default. */
static int retired(const char *key, const json_t *v)
{
    static const char *const rl[] = {"rl-lr", "entropy", "baseline-decay", "ppo-epochs"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(key, rl[i]) && json_is_number(v) && json_number_value(v) < 0)
            return 1;
    return 0;
}

nas_status app_settings_from_json(const char *json, app_settings *s, nas_err *err)
{
    json_error_t je;
    nas_status st;
    json_t *o = nas_json_load(json, json ? strlen(json) : 0, 0, &je, &st);
    if (!json_is_object(o)) {
        json_decref(o);
        return nas_errf(err, o ? NAS_EINVAL : st, "settings: not a JSON object (%s)", o ? "another kind" : je.text);
    }
    app_settings_defaults(s);
    const char *key;
    json_t *v;
    st = NAS_OK;
    json_object_foreach(o, key, v) {
        const app_setting *t = app_setting_find(key, APP_SEARCH);
        if (!t || !strncmp(key, "--", 2)) {
            st = nas_errf(err, NAS_EINVAL, "settings: unknown key '%s'", key);
            break;
        }
        if (retired(key, v))
            continue;
        if ((st = from_json_value(t, v, s, err)))
            break;
    }
    json_decref(o);
    return st;
}

void app_settings_quant(const app_settings *s, ev_quant_opts *q)
{
    ev_quant_opts_default(q);
    q->images = (int)s->calib_images;
    q->method = !strcmp(s->calib, "minmax") ? EV_CALIB_MINMAX : EV_CALIB_PERCENTILE;
}

nas_status app_settings_of_run(const char *run_json, app_settings *s, nas_err *err)
{
    json_error_t je;
    nas_status st;
    json_t *root = nas_json_load(run_json, run_json ? strlen(run_json) : 0, 0, &je, &st);
    json_t *set = json_object_get(root, "settings");
    const char *cmd = json_string_value(json_object_get(root, "command"));
    char *js = cmd && !strcmp(cmd, "search") && json_is_object(set) ? json_dumps(set, JSON_COMPACT) : NULL;
    if (js)
        st = app_settings_from_json(js, s, err);
    else
        st = nas_errf(err, root || st != NAS_ENOMEM ? NAS_EINVAL : st, "the run's settings are not a search's");
    nas_free(js);
    json_decref(root);
    return st;
}
