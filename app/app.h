/* app.h — the application layer: what `nas` does, as library functions,
 * between the modules (space, evaluator, predictor, search, runs) and the
 * command line. cli/ parses flags, calls these and prints; nothing here
 * reads argv or chooses an exit code.
 *
 * This header is the layer's whole public face:
 * - the settings: one table names each setting once (its flag, its job-file
 *   key, its type, range, default and help line); `nas search` and `nas
 *   calibrate` flags, job files (`nas run`), a run's saved settings (`nas
 *   resume`) and the report all read it, so their defaults cannot disagree;
 * - job files: YAML or JSON read into the same settings, every error naming
 *   its file, line and key. */
#ifndef APP_H
#define APP_H

#include <stddef.h>
#include <stdio.h>

#include "base/nas.h"
#include "evaluator/ev.h"
#include "predictor/pred.h"
#include "runs/runs.h"
#include "search/dist.h"
#include "search/search.h"

/* Every setting of a search or a calibration, however it was given. Numbers
 * that the table says have no default (targets, budgets) are 0 when unset. */
typedef struct {
    char job[16];               /* a job file's kind: search | calibrate */
    char data[512];             /* mnist, fashion-mnist, idx:DIR or cifar10:DIR */
    char data_set[32], data_folder[512];   /* a job file's data.set and data.dir, composed into data */
    long val_count, test_limit, resolution;   /* val_count -1: the loader's default (10%) */
    double max_width;
    long stages, min_side, scale_resolution;
    char strategy[16];
    long population, sample, mutations, rl_batch, ppo_epochs;   /* population, sample 0: scaled to the evals */
    double rl_lr, entropy, baseline_decay;
    double target_mj, target_ms, w;
    long hard;
    double budget_j, budget_s;
    long budget_evals;
    long epochs, subset, batch, threads, seed;
    long rungs, eta;           /* multi-fidelity (search_loop_opts) */
    double lr;
    char predictor[512], meter[16];
    double watts, bench_s, hv_ref;
    long measure_every, measure_top, top;
    char db[512], name[64], state[512], export_dir[512];
    long no_export, json, no_db;
    long int8, calib_images;     /* quantize: the chosen model as int8 too, calibrated on that many images */
    char calib[16];             /* percentile | minmax */
    char deploy[16];            /* float32 | int8: what energy and latency per inference are of */
    char data_dir[512];         /* where mnist and fashion-mnist live ("": $NAS_DATA_DIR, else data/) */
    long mpi_sync, slots;
    double worker_timeout;
    /* final training of the top of the search (final_top 0: none) */
    long final_top, final_epochs, final_batch, final_subset;
    double final_lr;
    long final_distill;          /* the most accurate candidate trained first, teaching the top */
    double kd_alpha, kd_temp;
    /* pruning of the exported model after final training (all 0: none) */
    double prune_keep, prune_target_macs, prune_target_mj;
    long prune_epochs, prune_distill;
    /* calibration of the predictor */
    long cal_samples, cal_max_samples, cal_repeats, cal_folds, cal_passes, cal_rounds, cal_holdout;
    long cal_reference, in_channels, classes;
    double cal_min_seconds, cal_timeout, cal_max_spread;
    char cal_stat[16], cal_command[256], cal_out[512], cal_refit[512];
} app_settings;

/* The most candidates final training takes (final-top). */
#define APP_FINAL_MAX 16
/* The run store every command uses unless told otherwise. */
#define APP_DEFAULT_DB "runs.db"

typedef enum { APP_STR, APP_LONG, APP_DBL, APP_BOOL, APP_CHOICE } app_type;

/* Which commands take a setting as a flag. */
enum { APP_SEARCH = 1, APP_CALIBRATE = 2 };

/* One row of the table. */
typedef struct {
    const char *name;       /* the flag without "--", and the saved-settings key; NULL: job files only */
    const char *section;    /* a job file's section (NULL: top level) */
    const char *key;        /* a job file's key; NULL: not in job files */
    app_type type;
    size_t off, size;       /* where it lands in app_settings */
    double lo, hi;          /* the range of a number (a default outside it means "none") */
    double dflt;            /* numbers and booleans */
    const char *dflt_s;     /* strings and choices */
    const char *choices;    /* "a|b|c"; for a boolean, the job file's words for 0|1 ("soft|hard") */
    const char *only_for;   /* the strategy a setting belongs to, or NULL */
    int cmds;               /* APP_SEARCH | APP_CALIBRATE: the commands whose flag it is */
    const char *meta;       /* the value's name in --help ("J", "FILE") */
    const char *group;      /* the --help heading it sits under */
    const char *help;       /* one line or more ('\n' continues it) */
} app_setting;

int app_settings_count(void);
const app_setting *app_setting_at(int i);
/* The row whose flag is name ("budget-joules" or "--budget-joules") for cmd
 * (APP_SEARCH or APP_CALIBRATE; 0: any), or NULL. */
const app_setting *app_setting_find(const char *name, int cmd);

void app_settings_defaults(app_settings *s);
/* A flag's value into s: of the row's type, within its range. A boolean takes
 * NULL (the flag alone: 1). The error names the flag. */
NAS_MUST_USE nas_status app_setting_parse(const app_setting *t, app_settings *s, const char *value, nas_err *err);
/* The checks that concern more than one setting, for cmd. */
NAS_MUST_USE nas_status app_settings_check(const app_settings *s, int cmd, nas_err *err);
/* The --help lines of cmd's flags, grouped, each with its default. */
void app_settings_help(FILE *f, int cmd);

/* The search's settings as a JSON object keyed by flag names (nas_malloc'd),
 * and back: an unknown key, a wrong type or a value out of range is an error;
 * a key left out keeps its default. */
char *app_settings_to_json(const app_settings *s);
NAS_MUST_USE nas_status app_settings_from_json(const char *json, app_settings *s, nas_err *err);
/* The settings a search saved with its run (the store's run settings JSON,
 * {"command": "search", "settings": {...}}), over the defaults. */
NAS_MUST_USE nas_status app_settings_of_run(const char *run_json, app_settings *s, nas_err *err);

/* The run store a search records into: db, else APP_DEFAULT_DB; NULL with
 * no_db (a throwaway run). */
const char *app_settings_db(const app_settings *s);

/* A job file (YAML, or JSON) into s, from the defaults; where names it in
 * errors ("file:line: key: what"). */
NAS_MUST_USE nas_status app_job_parse(const char *text, size_t len, const char *where, app_settings *s, nas_err *err);
NAS_MUST_USE nas_status app_job_load(const char *path, app_settings *s, nas_err *err);

/* ======================= training, final training, measuring ============ */

/* `nas train ... --export FILE.onnx` (app/export.c): the export's metadata
 * lives beside the export, not inside the training command. */

typedef struct {
    const char *path;       /* FILE.onnx; NULL: no export */
    int force, keep_bn;
    long epochs, batch, seed, threads;
    double lr;
    const ev_quant_opts *int8;   /* the int8 model too (app_int8_path beside path); NULL: none */
} app_train_export_opts;

/* Before training: makes the file's folder, and refuses an existing file
 * unless force, so no training is wasted on an export that would fail. */
NAS_MUST_USE nas_status app_train_export_check(const app_train_export_opts *o, nas_err *err);
/* After training: the model, its spec JSON and model card (test accuracy and
 * the training recipe in the metadata). */
NAS_MUST_USE nas_status app_train_export(const app_train_export_opts *o, const ev_net *net,
                                         const space_spec *spec, const ev_data *data,
                                         const ev_train_result *r, nas_err *err);

/* After a search (app/final.c): the top K candidates trained again at full
 * fidelity (more epochs, the whole training set) and evaluated on the test
 * split, which the search itself never reads; the best of them by the
 * objective on its final validation accuracy is the model to export. Its
 * joules are metered apart from the search's budget. */

struct app_final_model_s;

typedef struct {
    int top;                 /* how many of the leaderboard (0: no final training) */
    int epochs, batch;
    long subset;             /* training images (0: the whole training split) */
    double lr;
    int threads;
    uint64_t seed;
    const ev_quant_opts *int8;   /* the export: the int8 model too; NULL: none */
    /* Knowledge distillation: this candidate (NULL: none) is trained first
     * with the same recipe, then teaches every model of the top (ev_train_opts'
     * kd_alpha, kd_temperature). Its joules count in final training's. */
    const search_result *teacher;
    double kd_alpha, kd_temperature;
    /* Called with each model as soon as it is trained (the search records it
     * in the run store, so a failure later loses none); NULL: not called. An
     * error stops final training. */
    nas_status (*on_model)(void *ctx, const struct app_final_model_s *m, const ev_net *net, const ev_data *data,
                           nas_err *err);
    void *ctx;
} app_final_opts;

typedef struct app_final_model_s {
    long id;                 /* the search's candidate */
    double proxy_acc;        /* the search's (validation, after the proxy training) */
    double val_acc, test_acc;   /* after final training */
    double reward;           /* the objective on val_acc and the candidate's energy/latency */
    double class_acc[10];    /* test accuracy per class */
    double joules, seconds;
    int epochs_done;
    space_spec spec;
} app_final_model;

typedef struct {
    ev_data data;            /* loaded with its test split */
    int n, chosen;           /* chosen: index into models, -1 when none trained */
    app_final_model models[APP_FINAL_MAX];
    int has_teacher;         /* teacher: the distillation's, when opts->teacher was given */
    app_final_model teacher;
    double kd_alpha, kd_temperature;
    ev_net *net;             /* the chosen one, trained */
    ev_train_result chosen_train;
    double joules;           /* all of final training, beside the search's budget */
    char meter[32];
    int estimated;
} app_final_report;

/* Trains the n results (the leaderboard's first n, best first) again; data
 * is loaded from data_spec with dopts (its skip_test and train_limit are
 * overridden). On error the report holds what was done and must be freed. */
NAS_MUST_USE nas_status app_final_train(const app_final_opts *o, const space_config *cfg, const char *data_spec,
                                        const ev_data_opts *dopts, ev_meter *meter, const search_objective *obj,
                                        const search_result *const *cands, int n, app_final_report *rep, nas_err *err);
void app_final_print(const app_final_report *rep, FILE *f);
/* The report as JSON (for --json), a new reference. */
void *app_final_json(const app_final_report *rep);
/* The chosen model as DIR/NAME.onnx (and its spec and model card). */
NAS_MUST_USE nas_status app_final_export(const app_final_report *rep, const app_final_opts *o, const char *dir,
                                         const char *name, char *path, size_t path_n, nas_err *err);
void app_final_free(app_final_report *rep);

/* How a network is measured for the predictor: the built-in
 * path (the evaluator's inference benchmark at batch 1 and its energy meter)
 * or an external command (pred_measure_cmd, with an ONNX export for {onnx}). */

typedef struct {
    const char *cmd;       /* external measuring command template, or NULL: built-in */
    double cmd_timeout;    /* seconds the command may take per network (0: no limit) */
    int threads;           /* built-in: threads of the benchmark */
    int repeats;           /* built-in: timed repeats (median and spread over them) */
    double min_seconds;    /* built-in: each repeat loops at least this long */
    const char *meter;     /* built-in: energy meter kind, "auto" by default */
    double watts;          /* built-in, the model meter: its stated power per core (0: its default) */
    int p10;               /* built-in: latency is the 10th percentile of single calls, not the median */
    void *m;               /* built-in: the open meter */
    int int8;              /* built-in: the int8 model's inference (ev_bench_infer_int8) */
} app_measure_ctx;

void app_measure_init(app_measure_ctx *ctx, const char *cmd, int threads);
/* What its latency figure is: "p10", "median", or "cmd" (whatever the command prints). */
const char *app_measure_stat(const app_measure_ctx *ctx);
/* Opens what measuring needs (the energy meter); NAS_OK when it can work. */
NAS_MUST_USE nas_status app_measure_ready(app_measure_ctx *ctx, nas_err *err);
void app_measure_close(app_measure_ctx *ctx);

/* `nas calibrate`'s options and measuring context from the settings (the
 * search's predictor of this machine starts from them too). */
void app_calib_setup(const app_settings *s, pred_calib_opts *o, app_measure_ctx *mctx);

/* The predictor a search ranks with when none is named (--predictor auto):
 * the one cached for this machine, its threads, meter, kernels and search
 * space, under app_pred_cache_dir(); when there is none, or the cached one
 * was fit on other hardware, a small one is calibrated now (APP_AUTO_SAMPLES
 * networks, one pass, about a minute on 2 cores) and cached. *path gets the
 * file, *calibrated whether it was fit now. meter: the source the search's
 * meter reports (the fingerprint's); live: progress on a terminal.
 * NAS_EUNSUPP: caching is off (NAS_CACHE_DIR=off, or no home). */
#define APP_AUTO_SAMPLES 40
NAS_MUST_USE nas_status app_auto_predictor(const app_settings *s, const space_config *space, int threads,
                                           const char *meter, int live, pred_model **out, char *path,
                                           size_t path_n, int *calibrated, nas_err *err);
/* Where nas caches what it measured of this machine: $NAS_CACHE_DIR, else
 * $XDG_CACHE_HOME/nas, else ~/.cache/nas; NULL when off. */
const char *app_pred_cache_dir(char *buf, size_t n);

/* A pred_measure_fn: ctx is a app_measure_ctx made ready. */
NAS_MUST_USE nas_status app_measure(void *ctx, const space_spec *spec, const space_net *net, pred_measurement *m,
                                    nas_err *err);

/* ======================= pruning (app/prune.c) ============================ */

/* `nas prune`: a trained network's expansion channels pruned to a fraction,
 * a MAC count or a measured energy per inference, fine-tuned, and written as
 * DIR/pruned.onnx (with its spec and model card) and DIR/pruned.weights. */
typedef struct {
    const char *spec, *weights;   /* a spec (file or preset) and its trained weights, or: */
    const char *run, *db;         /* a run of the store (db NULL: APP_DEFAULT_DB) */
    long candidate;               /* with run: that candidate (its seq); -1: the run's chosen final model */
    double keep, target_macs, target_mj;   /* exactly one is given; NAN: not given */
    int min_ch, multiple;         /* a block keeps at least min_ch channels, in multiples of multiple */
    const char *data;             /* fine-tune and accuracy on it; NULL: a run's own, or none for a spec */
    int epochs, epochs_given, batch, threads;
    long subset;                  /* training images (0: a run's final-training split, or all) */
    uint64_t seed;
    double lr;
    int distill;                  /* fine-tune learning from the unpruned network's logits too */
    double kd_alpha, kd_temperature;   /* its weight and temperature (ev_train_opts') */
    int measure_repeats;          /* --target-mj: timed repeats of each energy measurement */
    const char *out_dir;
    int force;                    /* overwrite DIR/pruned.* */
    int (*on_epoch)(void *ctx, int epoch, double loss, double acc, double val, double ips);
    void *ctx;
} app_prune_opts;

void app_prune_opts_default(app_prune_opts *o);

typedef struct {
    double keep;                  /* fraction of each block's expansion channels kept */
    int epochs;                   /* of fine-tuning */
    space_cost before, after;
    double val_before, val_pruned, val_after;   /* NAN: no data */
    double test_before, test_after;
    double recorded_test;         /* what the run's final training recorded for it (NAN: none) */
    double mj_before, mj_after;   /* --target-mj: benchmarked energy per inference (NAN otherwise) */
    char mj_source[64], mj_quality[16];
    char what[600];               /* what was pruned, in words */
    char data_name[64];
    int data_val, data_test;
    char onnx[4200], weights[4200];
} app_prune_result;

/* The options alone: what a usage error says (app_prune checks them too). */
NAS_MUST_USE nas_status app_prune_check(const app_prune_opts *o, nas_err *err);
NAS_MUST_USE nas_status app_prune(const app_prune_opts *o, app_prune_result *r, nas_err *err);

/* ======================= a search's history ============================== */

/* Why a candidate's row says it has no (full) result, as store_result writes
 * it and app/history.c reads it back. */
#define APP_OVER_BUDGET_MSG "not started: its estimated cost would cross the joule budget"
#define APP_STOPPED_EARLY_MSG "stopped early at its joule allowance: accuracy as trained when it stopped"

/* A run's finished candidates as the search loop's results, in seq order
 * (nas_malloc'd), and a loop restored from the state the run saved with them
 * (app/history.c). */
NAS_MUST_USE nas_status app_search_history(runs_db *db, int64_t run, search_result **out, int *n, nas_err *err);
NAS_MUST_USE nas_status app_search_restore(runs_db *db, int64_t run, const search_space *sp, const char *state,
                                           search_loop **out, nas_err *err);

/* ======================= a search session ================================ */

/* One search on every rank of d (app/search.c): the data, the meter, the
 * predictor, the run store (a run of the settings' name resumes), and the
 * loop wired to them. live: the status line is redrawn in place (a
 * terminal); else a plain line every few seconds. On failure *out is still
 * set (NULL when out of memory) and must be closed. */
typedef struct app_search app_search;
NAS_MUST_USE nas_status app_search_open(const char *cmd, const app_settings *s, search_dist *d, int live,
                                        app_search **out, nas_err *err);
/* Runs the loop to a budget, the end or a stop on request (*why), then rank
 * 0's final training of the top when the settings ask, and marks the run
 * done or stopped. *final_failed: the search is recorded as done and only
 * final training failed. */
NAS_MUST_USE nas_status app_search_run(app_search *c, search_stop *why, int *final_failed, nas_err *err);
/* Marks the run failed (after a failed open or run); says so on stderr when
 * even that cannot be written. */
void app_search_failed(app_search *c);
/* The finally trained model as ONNX into the run's export folder; path gets
 * the file written. */
NAS_MUST_USE nas_status app_search_export(const app_search *c, char *path, size_t n, nas_err *err);
/* Whether the settings ask for the exported model to be pruned (a job's
 * prune: section), and the pruning: as `nas prune RUN` with the settings'
 * target and epochs, into the export folder's pruned/. */
int app_search_wants_prune(const app_settings *s);
NAS_MUST_USE nas_status app_search_prune(const app_search *c, app_prune_result *r, nas_err *err);
NAS_MUST_USE nas_status app_search_run_name(const app_search *c, char *name, size_t n, nas_err *err);
const search_loop *app_search_loop(const app_search *c);
const ev_meter *app_search_meter(const app_search *c);
const app_final_report *app_search_final(const app_search *c);   /* NULL: no final training */
int app_search_signal(const app_search *c);                      /* the signal that stopped it, or 0 */
const char *app_search_db(const app_search *c);                  /* the run store's path, NULL: none */
/* A candidate's parameters and MACs, and its spec as JSON (nas_malloc'd) when
 * spec_json is not NULL; NaN and NULL when it does not resolve. */
void app_search_figures(const app_search *c, const space_genome *g, double *params, double *macs, char **spec_json);
void app_search_close(app_search *c);

/* A predictor's measure ("builtin:<kernels>") ends in this when it was fit
 * on int8 inference (--deploy int8); app_measure_int8 tells. */
#define APP_INT8_MEASURE ":int8"
int app_measure_int8(const char *measure);

/* 1 when the settings deploy int8 (--deploy int8): candidates are measured
 * and predicted as int8 models, and the chosen one is exported as int8 too. */
int app_settings_int8(const app_settings *s);
/* 1 when the chosen model is exported as int8 too: --int8, or --deploy int8. */
int app_settings_int8_export(const app_settings *s);

/* The int8 model's file beside a float one: m.onnx -> m.int8.onnx. */
void app_int8_path(const char *path, char *out, size_t n);
/* The int8 options the settings ask for (calib-images, calib). */
void app_settings_quant(const app_settings *s, ev_quant_opts *q);

#endif
