/* cmd_resume.c — `nas resume RUN`: continues a run of the store from the
 * settings it saved when it started (every `nas search` setting, as JSON), so
 * a search killed at any moment goes on where its last committed candidate
 * left it: candidates it had finished are not run again (the strategy's state
 * was saved with each), the one in flight is retried (runs_resume). Under
 * mpirun rank 0 reads the settings and sends them to the workers. */
#include "cli/cli.h"
#include "cli/search_cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *CMD = "resume";

/* The settings a resumed run may be given anew; every other is the run's own. */
static const char *const OVERRIDES[] = {"json", "threads", "budget-evals", "budget-joules", "budget-seconds"};
#define N_OVERRIDES (int)(sizeof OVERRIDES / sizeof OVERRIDES[0])

static int override_of(const char *flag)
{
    for (int k = 0; k < N_OVERRIDES; k++)
        if (!strncmp(flag, "--", 2) && !strcmp(flag + 2, OVERRIDES[k]))
            return k;
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nas resume RUN [--db FILE] [--json] [--threads T] [--budget-evals N]\n"
               "                 [--budget-joules J] [--budget-seconds S]\n\n"
               "Continues a run recorded in the run store (an interrupted or killed 'nas search'\n"
               "or 'nas run') with the settings it was started with. Nothing it finished is\n"
               "evaluated again; the candidate that was running is retried (twice at most).\n\n"
               "  RUN          the run's name or id ('nas ls')\n"
               "  --db FILE    run store (default runs.db)\n"
               "  --json       one JSON object on stdout\n"
               "  --threads T  threads instead of the saved count\n"
               "  --budget-*   new budgets (a run may be given more)\n");
    fprintf(f, "\nexample:\n  %s\n", "nas resume my-search --budget-evals 48");
}

/* Runs saved before settings were kept whole stored their flags ("args"):
 * those fill s and set *legacy; any other run is left to app_settings_of_run. */
static nas_status legacy_settings(const runs_run *run, const char *db_path, app_settings *s, int *legacy,
                                  nas_err *err)
{
    *legacy = 0;
    json_error_t je;
    nas_status st;
    json_t *root = nas_json_load(run->settings_json, run->settings_json ? strlen(run->settings_json) : 0, 0, &je, &st);
    if (!root && st == NAS_ENOMEM)
        return nas_errf(err, st, "run '%s' of %s: out of memory reading its settings", run->name, db_path);
    json_t *args = json_object_get(root, "args");
    const char *cmd = json_string_value(json_object_get(root, "command"));
    if (!cmd || strcmp(cmd, "search") != 0 || !json_is_array(args)) {
        json_decref(root);
        return NAS_OK;
    }
    *legacy = 1;
    size_t n = json_array_size(args);
    char **argv = nas_malloc((n + 2) * sizeof *argv);
    if (!argv) {
        json_decref(root);
        return nas_errf(err, NAS_ENOMEM, "out of memory");
    }
    argv[0] = "search";
    for (size_t i = 0; i < n; i++) {
        const char *v = json_string_value(json_array_get(args, i));
        argv[i + 1] = (char *)(v ? v : "");
    }
    argv[n + 1] = NULL;
    app_settings_defaults(s);
    st = NAS_OK;
    if (cli_flags_parse(CMD, APP_SEARCH, (int)n + 1, argv, s, usage) >= 0)
        st = nas_errf(err, NAS_EINVAL, "run '%s': its saved flags do not parse", run->name);
    nas_free(argv);
    json_decref(root);
    return st;
}

/* The saved settings of a run as app_settings JSON text (nas_malloc'd). */
static nas_status load_settings(const char *db_path, const char *run_arg, app_settings *s, char **text,
                                nas_err *err)
{
    runs_db *db = NULL;
    runs_run run;
    int64_t id;
    nas_status st = runs_open(db_path, 0, &db, err);
    if (st || (st = runs_run_find(db, run_arg, &id, err)) || (st = runs_run_get(db, id, &run, err))) {
        runs_close(db);
        return st;
    }
    int legacy;
    st = legacy_settings(&run, db_path, s, &legacy, err);
    if (!st && !legacy && (st = app_settings_of_run(run.settings_json, s, err)))
        nas_errctx(err, "run '%s' of %s ('%.60s')", run.name, db_path, run.settings_json ? run.settings_json : "");
    if (!st) {
        /* the run is found again by its name, in the store named now */
        snprintf(s->name, sizeof s->name, "%s", run.name);
        snprintf(s->db, sizeof s->db, "%s", db_path);
        if (!(*text = app_settings_to_json(s)))
            st = nas_errf(err, NAS_ENOMEM, "out of memory");
    }
    runs_run_free(&run);
    runs_close(db);
    return st;
}

int cmd_resume(int argc, char **argv)
{
    search_dist *d = NULL;
    nas_err err = {0};
    nas_status st = search_dist_init(&argc, &argv, &d, &err);
    if (st)
        return cli_fail(CMD, st, &err);
    int root = search_dist_rank(d) == 0;
    if (!root) {   /* workers print nothing: rank 0 tells */
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
    }
    const char *run_arg = NULL, *db = CLI_DEFAULT_DB;
    app_settings over;   /* the settings given now, which replace the saved ones */
    app_settings_defaults(&over);
    int given[N_OVERRIDES] = {0}, rc = -1;
    for (int i = 1; i < argc && rc < 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = override_of(a);
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = 0;
        } else if (a[0] != '-') {
            if (run_arg)
                rc = cli_usage_error(CMD, "one run at a time ('%s' and '%s')", run_arg, a);
            run_arg = a;
        } else if (!strcmp(a, "--db") && v) {
            db = argv[++i];
        } else if (k < 0) {
            rc = cli_usage_error(CMD, "unknown option '%s'%s", a, !strcmp(a, "--db") ? " (needs a value)" : "");
        } else {
            const app_setting *t = app_setting_find(a, APP_SEARCH);
            nas_err e = {0};
            if (app_setting_parse(t, &over, t->type == APP_BOOL ? NULL : v, &e))
                rc = cli_usage_error(CMD, "%s", e.msg);
            i += t->type != APP_BOOL;
            given[k] = 1;
        }
    }
    if (rc < 0 && !run_arg)
        rc = cli_usage_error(CMD, "which run? (a name or id; 'nas ls' lists them)");
    app_settings s;
    char *text = NULL;
    if (rc < 0 && root && (st = load_settings(db, run_arg, &s, &text, &err)))
        rc = cli_fail(CMD, st, &err);
    /* rank 0's settings to every rank (a worker told to stop first gets an error and ends) */
    if (rc < 0 && search_dist_mpi(d) && (st = search_dist_bcast(d, &text, &err)))
        rc = root ? cli_fail(CMD, st, &err) : 1;
    if (rc < 0 && !root && (st = app_settings_from_json(text, &s, &err)))
        rc = 1;
    if (rc < 0) {
        for (int k = 0; k < N_OVERRIDES; k++)
            if (given[k]) {
                const app_setting *t = app_setting_find(OVERRIDES[k], APP_SEARCH);
                memcpy((char *)&s + t->off, (char *)&over + t->off, t->size);
            }
        rc = cli_search_execute(CMD, &s, d);
    }
    nas_free(text);
    search_dist_finish(d);
    return rc;
}
