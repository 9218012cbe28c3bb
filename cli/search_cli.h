/* search_cli.h — the settings of one search, however they were given: `nas
 * search` flags, a job file (`nas run`) or a run's saved settings (`nas
 * resume`) all fill an app_settings (app/app.h), and cli_search_execute runs
 * it. */
#ifndef CLI_SEARCH_H
#define CLI_SEARCH_H

#include "app/app.h"
#include "search/dist.h"

/* Runs the search on every rank of d; returns the exit code. */
int cli_search_execute(const char *cmd, const app_settings *s, search_dist *d);

#endif
