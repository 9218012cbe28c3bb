/* search_cli.h — the settings of one search, however they were given: `nas
 * search` flags, a job file (`nas run`) or a run's saved settings (`nas
 * resume`) all fill a cli_search_settings, and cli_search_execute runs it.
 * The settings travel as JSON (the run's settings in the store, and to the
 * Open MPI ranks), keyed by the flag names without their dashes. */
#ifndef CLI_SEARCH_H
#define CLI_SEARCH_H

#include "runs/runs.h"
#include "search/dist.h"

typedef struct {
    char data[512];
    long val_count, test_limit, resolution;   /* val_count -1: the loader's default; 0: the data's */
    double max_width;
    long stages, min_side, scale_resolution;
    char strategy[16];
    long population, sample, mutations, rl_batch, ppo_epochs;
    double rl_lr, entropy, baseline_decay;   /* < 0: the strategy's default */
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
    char data_dir[512];       /* where mnist and fashion-mnist live ("": $NAS_DATA_DIR, else data/) */
    long mpi_sync, slots;
    double worker_timeout;
    /* final training of the top of the search (final_top 0: none) */
    long final_top, final_epochs, final_batch, final_subset;
    double final_lr;
} cli_search_settings;

void cli_search_defaults(cli_search_settings *s);
/* `nas search` flags into s (which holds the defaults or earlier settings).
 * Returns -1 when fine, else the exit code (0 after --help, 2 bad usage). */
int cli_search_parse(const char *cmd, int argc, char **argv, cli_search_settings *s);
/* The checks that need every setting: -1 when fine, else 2 (printed). */
int cli_search_check(const char *cmd, const cli_search_settings *s);
NAS_MUST_USE nas_status cli_search_from_job(const runs_job *job, cli_search_settings *s, nas_err *err);
/* JSON object of every setting (nas_malloc'd), and back (unknown keys are errors). */
char *cli_search_to_json(const cli_search_settings *s);
NAS_MUST_USE nas_status cli_search_from_json(const char *json, cli_search_settings *s, nas_err *err);
/* The run store the search records into: --db FILE, else CLI_DEFAULT_DB
 * (./runs.db); NULL with --no-db (a throwaway run). */
const char *cli_search_db(const cli_search_settings *s);
/* Runs the search on every rank of d; returns the exit code. */
int cli_search_execute(const char *cmd, const cli_search_settings *s, search_dist *d);
/* Why a candidate's row says it has no (full) result, as store_result writes
 * it and cli/search_history.c reads it back. */
#define CLI_OVER_BUDGET_MSG "not started: its estimated cost would cross the joule budget"
#define CLI_STOPPED_EARLY_MSG "stopped early at its joule allowance: accuracy as trained when it stopped"

/* A run's finished candidates as the search loop's results, in seq order
 * (nas_malloc'd), and a loop restored from the state the run saved with them
 * (cli/search_history.c). */
NAS_MUST_USE nas_status cli_search_history(runs_db *db, int64_t run, search_result **out, int *n, nas_err *err);
NAS_MUST_USE nas_status cli_search_restore(runs_db *db, int64_t run, const search_space *sp, const char *state,
                                           search_loop **out, nas_err *err);

#endif
