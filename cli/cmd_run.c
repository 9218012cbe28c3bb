/* cmd_run.c — `nas run JOB.yaml|JOB.json`: a batch job. A search job fills
 * the same settings `nas search` flags fill and runs the same search
 * (cli_search_execute); a calibrate job runs what `nas calibrate` runs
 * (cli_calibrate_run) with the job's settings: both read the one table. A job that does not parse is a usage
 * error (exit 2) naming the file, line and key. */
#include "cli/cli.h"
#include "cli/search_cli.h"

#include <stdlib.h>
#include <string.h>

static const char *CMD = "run";

static void usage(FILE *f)
{
    fprintf(f, "usage: nas run JOB.yaml|JOB.json [--json] [--db FILE] [--threads T]\n\n"
               "Runs a batch job: 'job: search' searches with every setting of the file (data,\n"
               "space, strategy, objective, budgets, proxy training, meter, seed, output);\n"
               "'job: calibrate' calibrates the predictor on this machine and writes\n"
               "<name>.predictor.json (predictor.json when the job has no name).\n"
               "Examples: jobs/*.yaml. A run of the job's name already in the store is resumed.\n\n"
               "  --json       one JSON object on stdout (search jobs)\n"
               "  --db FILE    run store instead of the job's output.db\n"
               "  --threads T  threads instead of the job's\n");
    fprintf(f, "\nexample:\n  %s\n", "nas run jobs/mnist-small.yaml");
}

/* A calibrate job writes <name>.predictor.json unless it names its file. */
static int run_calibrate(app_settings *s)
{
    if (s->name[0] && !strcmp(s->cal_out, "predictor.json"))
        snprintf(s->cal_out, sizeof s->cal_out, "%.*s.predictor.json", (int)sizeof s->cal_out - 16, s->name);
    return cli_calibrate_run(s);
}

int cmd_run(int argc, char **argv)
{
    search_dist *d = NULL;
    nas_err err = {0};
    nas_status st = search_dist_init(&argc, &argv, &d, &err);
    if (st)
        return cli_fail(CMD, st, &err);
    if (search_dist_rank(d) != 0) {   /* workers print nothing: rank 0 tells */
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
    }
    const char *path = NULL, *db = NULL;
    long threads = -1;
    int json = 0, rc = -1;
    for (int i = 1; i < argc && rc < 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--db") && v) {
            db = argv[++i];
        } else if (!strcmp(a, "--threads") && v) {
            if (cli_parse_int(argv[++i], 0, 256, &threads))
                rc = cli_usage_error(CMD, "--threads: '%s' is not an integer in 0..256", v);
        } else if (a[0] == '-') {
            rc = cli_usage_error(CMD, "unknown option '%s'%s", a, !strcmp(a, "--db") || !strcmp(a, "--threads") ? " (needs a value)" : "");
        } else if (path) {
            rc = cli_usage_error(CMD, "one job file at a time ('%s' and '%s')", path, a);
        } else {
            path = a;
        }
    }
    if (rc < 0 && !path)
        rc = cli_usage_error(CMD, "no job file");
    app_settings s;
    if (rc < 0 && (st = app_job_load(path, &s, &err)))
        rc = st == NAS_ENOMEM ? cli_fail(CMD, st, &err) : (fprintf(stderr, "nas %s: %s\n", CMD, err.msg), 2);
    if (rc < 0) {
        if (threads >= 0)
            s.threads = threads;
        if (db)
            snprintf(s.db, sizeof s.db, "%s", db);
        s.json = json;
        if (!strcmp(s.job, "calibrate")) {
            rc = search_dist_rank(d) == 0 ? run_calibrate(&s) : 0;
        } else {
            rc = cli_settings_check(CMD, APP_SEARCH, &s);
            if (rc < 0)
                rc = cli_search_execute(CMD, &s, d);
        }
    }
    search_dist_finish(d);
    return rc;
}
