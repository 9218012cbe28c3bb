/* final_train.h — after a search: the top K candidates trained again at full
 * fidelity (more epochs, the whole training set) and evaluated on the test
 * split, which the search itself never reads; the best of them by the
 * objective on its final validation accuracy is the model to export. Its
 * joules are metered apart from the search's budget. */
#ifndef CLI_FINAL_TRAIN_H
#define CLI_FINAL_TRAIN_H

#include <stdio.h>

#include "app/app.h"
#include "evaluator/ev.h"
#include "search/search.h"

#define CLI_FINAL_MAX APP_FINAL_MAX

typedef struct {
    int top;                 /* how many of the leaderboard (0: no final training) */
    int epochs, batch;
    long subset;             /* training images (0: the whole training split) */
    double lr;
    int threads;
    uint64_t seed;
} cli_final_opts;

typedef struct {
    long id;                 /* the search's candidate */
    double proxy_acc;        /* the search's (validation, after the proxy training) */
    double val_acc, test_acc;   /* after final training */
    double reward;           /* the objective on val_acc and the candidate's energy/latency */
    double class_acc[10];    /* test accuracy per class */
    double joules, seconds;
    int epochs_done;
    space_spec spec;
} cli_final_model;

typedef struct {
    ev_data data;            /* loaded with its test split */
    int n, chosen;           /* chosen: index into models, -1 when none trained */
    cli_final_model models[CLI_FINAL_MAX];
    ev_net *net;             /* the chosen one, trained */
    ev_train_result chosen_train;
    double joules;           /* all of final training, beside the search's budget */
    char meter[32];
    int estimated;
} cli_final_report;

/* Trains the n results (the leaderboard's first n, best first) again; data
 * is loaded from data_spec with dopts (its skip_test and train_limit are
 * overridden). On error the report holds what was done and must be freed. */
NAS_MUST_USE nas_status cli_final_train(const cli_final_opts *o, const space_config *cfg, const char *data_spec,
                                        const ev_data_opts *dopts, ev_meter *meter, const search_objective *obj,
                                        const search_result *const *cands, int n, cli_final_report *rep, nas_err *err);
void cli_final_print(const cli_final_report *rep, FILE *f);
/* The report as JSON (for --json), a new reference. */
void *cli_final_json(const cli_final_report *rep);
/* The chosen model as DIR/NAME.onnx (and its spec and model card). */
NAS_MUST_USE nas_status cli_final_export(const cli_final_report *rep, const cli_final_opts *o, const char *dir,
                                         const char *name, char *path, size_t path_n, nas_err *err);
void cli_final_free(cli_final_report *rep);

#endif
