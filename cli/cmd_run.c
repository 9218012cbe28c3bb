/* cmd_run.c — `nas run JOB.yaml|JOB.json`: a batch job. A search job fills
 * the same settings `nas search` flags fill and runs the same search
 * (cli_search_execute); a calibrate job runs `nas calibrate` with the job's
 * sample counts, repeats and space. A job that does not parse is a usage
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

static int run_calibrate(const runs_job *j, int json)
{
    char samples[32], repeats[32], folds[32], secs[32], threads[32], seed[32], res[32], width[32], out[96];
    snprintf(samples, sizeof samples, "%d", j->cal_samples);
    snprintf(repeats, sizeof repeats, "%d", j->cal_repeats);
    snprintf(folds, sizeof folds, "%d", j->cal_folds);
    snprintf(secs, sizeof secs, "%g", j->cal_min_seconds);
    snprintf(threads, sizeof threads, "%d", j->threads > 0 ? j->threads : 1);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->seed);
    snprintf(res, sizeof res, "%d", j->resolution > 0 ? j->resolution : 28);
    snprintf(width, sizeof width, "%g", j->max_width);
    snprintf(out, sizeof out, "%s%s", j->name[0] ? j->name : "predictor", j->name[0] ? ".predictor.json" : ".json");
    char passes[16], timeout[32];
    snprintf(passes, sizeof passes, "%d", j->cal_passes);
    snprintf(timeout, sizeof timeout, "%g", j->cal_timeout);
    char cmdbuf[sizeof j->cal_command];
    snprintf(cmdbuf, sizeof cmdbuf, "%s", j->cal_command);
    char *argv[32];
    int n = 0;
    argv[n++] = "calibrate";
    argv[n++] = "--samples"; argv[n++] = samples;
    argv[n++] = "--repeats"; argv[n++] = repeats;
    argv[n++] = "--folds"; argv[n++] = folds;
    argv[n++] = "--min-seconds"; argv[n++] = secs;
    argv[n++] = "--threads"; argv[n++] = threads;
    argv[n++] = "--seed"; argv[n++] = seed;
    argv[n++] = "--resolution"; argv[n++] = res;
    argv[n++] = "--max-width"; argv[n++] = width;
    argv[n++] = "--out"; argv[n++] = out;
    argv[n++] = "--passes"; argv[n++] = passes;
    argv[n++] = "--latency-stat"; argv[n++] = j->cal_latency_stat ? "median" : "p10";
    if (cmdbuf[0]) {
        argv[n++] = "--measure-cmd";
        argv[n++] = cmdbuf;
        argv[n++] = "--measure-timeout";
        argv[n++] = timeout;
    }
    if (json)
        argv[n++] = "--json";
    argv[n] = NULL;
    return cmd_calibrate(n, argv);
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
    runs_job job;
    if (rc < 0 && (st = runs_job_load(path, &job, &err)))
        rc = st == NAS_ENOMEM ? cli_fail(CMD, st, &err) : (fprintf(stderr, "nas %s: %s\n", CMD, err.msg), 2);
    if (rc < 0) {
        if (threads >= 0)
            job.threads = (int)threads;
        if (db)
            snprintf(job.db, sizeof job.db, "%s", db);
        if (job.kind == RUNS_JOB_CALIBRATE) {
            rc = search_dist_rank(d) == 0 ? run_calibrate(&job, json) : 0;
        } else {
            cli_search_settings s;
            if ((st = cli_search_from_job(&job, &s, &err))) {
                rc = cli_fail(CMD, st, &err);
            } else {
                s.json = json;
                rc = cli_search_check(CMD, &s);
                if (rc < 0)
                    rc = cli_search_execute(CMD, &s, d);
            }
        }
    }
    search_dist_finish(d);
    return rc;
}
