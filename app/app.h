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
    double lr;
    char predictor[512], meter[16];
    double watts, bench_s, hv_ref;
    long measure_every, measure_top, top;
    char db[512], name[64], state[512], export_dir[512];
    long no_export, json, no_db;
    char data_dir[512];         /* where mnist and fashion-mnist live ("": $NAS_DATA_DIR, else data/) */
    long mpi_sync, slots;
    double worker_timeout;
    /* final training of the top of the search (final_top 0: none) */
    long final_top, final_epochs, final_batch, final_subset;
    double final_lr;
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

/* The run store a search records into: db, else APP_DEFAULT_DB; NULL with
 * no_db (a throwaway run). */
const char *app_settings_db(const app_settings *s);

/* A job file (YAML, or JSON) into s, from the defaults; where names it in
 * errors ("file:line: key: what"). */
NAS_MUST_USE nas_status app_job_parse(const char *text, size_t len, const char *where, app_settings *s, nas_err *err);
NAS_MUST_USE nas_status app_job_load(const char *path, app_settings *s, nas_err *err);

#endif
