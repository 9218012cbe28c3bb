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

/* The saved settings of a run as cli_search_settings JSON text (nas_malloc'd).
 * Runs saved before settings were kept whole stored their flags ("args"). */
static nas_status load_settings(const char *db_path, const char *run_arg, cli_search_settings *s, char **text,
                                nas_err *err)
{
    runs_db *db = NULL;
    runs_run run;
    int have_run = 0;
    json_t *root = NULL;
    int64_t id;
    nas_status st = runs_open(db_path, 0, &db, err);
    if (st || (st = runs_run_find(db, run_arg, &id, err)) || (st = runs_run_get(db, id, &run, err)))
        goto cleanup;
    have_run = 1;
    json_error_t je;
    root = json_loads(run.settings_json ? run.settings_json : "", 0, &je);
    json_t *set = json_object_get(root, "settings"), *args = json_object_get(root, "args");
    const char *cmd = json_string_value(json_object_get(root, "command"));
    if (!cmd || strcmp(cmd, "search") != 0 || (!json_is_object(set) && !json_is_array(args))) {
        st = nas_errf(err, NAS_EINVAL, "run '%s' of %s: its settings are not a search's ('%.60s')", run.name, db_path,
                      run.settings_json ? run.settings_json : "");
        goto cleanup;
    }
    if (json_is_object(set)) {
        char *js = json_dumps(set, JSON_COMPACT);
        st = js ? cli_search_from_json(js, s, err) : nas_errf(err, NAS_ENOMEM, "out of memory");
        free(js);
    } else {
        size_t n = json_array_size(args);
        char **argv = nas_malloc((n + 2) * sizeof *argv);
        if (!argv) {
            st = nas_errf(err, NAS_ENOMEM, "out of memory");
            goto cleanup;
        }
        argv[0] = "search";
        for (size_t i = 0; i < n; i++)
            argv[i + 1] = (char *)(json_string_value(json_array_get(args, i)) ? json_string_value(json_array_get(args, i)) : "");
        argv[n + 1] = NULL;
        cli_search_defaults(s);
        if (cli_search_parse(CMD, (int)n + 1, argv, s) >= 0)
            st = nas_errf(err, NAS_EINVAL, "run '%s': its saved flags do not parse", run.name);
        nas_free(argv);
    }
    if (st)
        goto cleanup;
    /* the run is found again by its name, in the store named now */
    snprintf(s->name, sizeof s->name, "%s", run.name);
    snprintf(s->db, sizeof s->db, "%s", db_path);
    if (!(*text = cli_search_to_json(s)))
        st = nas_errf(err, NAS_ENOMEM, "out of memory");
cleanup:
    json_decref(root);
    if (have_run)
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
    const char *run_arg = NULL, *db = "runs.db";
    long threads = -1, evals = -1;
    double joules = -1, seconds = -1;
    int json = 0, rc = -1;
    for (int i = 1; i < argc && rc < 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] != '-') {
            if (run_arg)
                rc = cli_usage_error(CMD, "one run at a time ('%s' and '%s')", run_arg, a);
            run_arg = a;
        } else if (!v) {
            rc = cli_usage_error(CMD, "%s: unknown option, or it needs a value", a);
        } else if (!strcmp(a, "--db")) {
            db = argv[++i];
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(argv[++i], 0, 256, &threads))
                rc = cli_usage_error(CMD, "--threads: '%s' is not an integer in 0..256", v);
        } else if (!strcmp(a, "--budget-evals")) {
            if (cli_parse_int(argv[++i], 0, 100000000, &evals))
                rc = cli_usage_error(CMD, "--budget-evals: '%s' is not an integer in 0..100000000", v);
        } else if (!strcmp(a, "--budget-joules")) {
            if (cli_parse_double(argv[++i], 0, 1e12, &joules))
                rc = cli_usage_error(CMD, "--budget-joules: '%s' is not a number in [0, 1e12]", v);
        } else if (!strcmp(a, "--budget-seconds")) {
            if (cli_parse_double(argv[++i], 0, 1e9, &seconds))
                rc = cli_usage_error(CMD, "--budget-seconds: '%s' is not a number in [0, 1e9]", v);
        } else {
            rc = cli_usage_error(CMD, "unknown option '%s'", a);
        }
    }
    if (rc < 0 && !run_arg)
        rc = cli_usage_error(CMD, "which run? (a name or id; 'nas ls' lists them)");
    cli_search_settings s;
    char *text = NULL;
    if (rc < 0 && root && (st = load_settings(db, run_arg, &s, &text, &err)))
        rc = cli_fail(CMD, st, &err);
    /* rank 0's settings to every rank (a worker told to stop first gets an error and ends) */
    if (rc < 0 && search_dist_mpi(d) && (st = search_dist_bcast(d, &text, &err)))
        rc = root ? cli_fail(CMD, st, &err) : 1;
    if (rc < 0 && !root && (st = cli_search_from_json(text, &s, &err)))
        rc = 1;
    if (rc < 0) {
        s.json = json;
        if (threads >= 0)
            s.threads = threads;
        if (evals >= 0)
            s.budget_evals = evals;
        if (joules >= 0)
            s.budget_j = joules;
        if (seconds >= 0)
            s.budget_s = seconds;
        rc = cli_search_execute(CMD, &s, d);
    }
    nas_free(text);
    search_dist_finish(d);
    return rc;
}
