/* main.c — `nas <command> [options]`: dispatch, --help, --version.
 * Commands are weak references so that a build in progress links without
 * every command; one that is absent says so and fails, it never pretends. */
#include "cli/cli.h"
#include "evaluator/ev.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*cmd_fn)(int, char **);

#pragma weak cmd_space
#pragma weak cmd_train
#pragma weak cmd_search
#pragma weak cmd_run
#pragma weak cmd_resume
#pragma weak cmd_calibrate
#pragma weak cmd_predict
#pragma weak cmd_export
#pragma weak cmd_report
#pragma weak cmd_ls
#pragma weak cmd_prune

static const struct {
    const char *name;
    cmd_fn fn;
    const char *summary;
} commands[] = {
    {"search",    cmd_search,    "search architectures under an energy budget (--budget-joules J)"},
    {"run",       cmd_run,       "run a batch job file (job.yaml or job.json)"},
    {"resume",    cmd_resume,    "continue an interrupted run"},
    {"calibrate", cmd_calibrate, "measure sampled networks here and fit the energy/latency predictor"},
    {"predict",   cmd_predict,   "predict latency and energy per inference of a spec"},
    {"train",     cmd_train,     "train one spec or preset on a data set"},
    {"prune",     cmd_prune,     "prune a trained spec's expansion channels, fine-tune, export ONNX"},
    {"export",    cmd_export,    "export trained architectures of a run to ONNX"},
    {"report",    cmd_report,    "leaderboard, Pareto front, CSV/JSON and plot of a run"},
    {"ls",        cmd_ls,        "list runs"},
    {"space",     cmd_space,     "sample or show architectures of the search space"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: nas <command> [options]\n\n"
               "nas searches MobileNet/EfficientNet-style networks for the best accuracy\n"
               "for the energy they cost on this hardware, within a budget in joules.\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].fn ? "" : " (not in this build)");
    fprintf(f, "\n'nas <command> --help' describes each. Exit codes: 0 success, "
               "1 failure, 2 bad usage or input.\n");
}

int main(int argc, char **argv)
{
    nas_omp_passive_reexec(argv);
    nas_err kerr;
    if (ev_kernels_init(&kerr) != NAS_OK) {
        fprintf(stderr, "nas: %s\n", kerr.msg);
        return 2;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("nas %s\n", NAS_VERSION);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (!commands[i].fn) {
            fprintf(stderr, "nas: '%s' is not available in this build\n", argv[1]);
            return 1;
        }
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "nas: unknown command '%s' (try 'nas --help')\n", argv[1]);
    return 2;
}
