/* search_cli.h — the settings of one search, however they were given: `nas
 * search` flags, a job file (`nas run`) or a run's saved settings (`nas
 * resume`) all fill an app_settings (app/app.h), and cli_search_execute runs
 * it. */
#ifndef CLI_SEARCH_H
#define CLI_SEARCH_H

#include "app/app.h"
#include "runs/runs.h"
#include "search/dist.h"

/* Runs the search on every rank of d; returns the exit code. */
int cli_search_execute(const char *cmd, const app_settings *s, search_dist *d);
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
