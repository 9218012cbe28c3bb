/* cmd_report.c — `nas report RUN`: the leaderboard and Pareto front on
 * stdout, and leaderboard.csv, report.json and pareto.svg in a folder. */
#include "cli/cli.h"
#include "runs/runs.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas report RUN [--db FILE] [--out DIR | --no-files] [--json] [--top N]\n"
            "                      [--grid-gco2-kwh G]\n\n"
            "Prints a run's leaderboard (accuracy, measured and predicted energy and latency\n"
            "per inference with their source, params, MACs, reward) and its Pareto front of\n"
            "accuracy against energy per inference, and writes DIR/leaderboard.csv,\n"
            "DIR/report.json, DIR/pareto.svg (the front highlighted, the chosen model marked)\n"
            "and DIR/chosen-spec.json (the chosen architecture).\n\n"
            "  RUN                  a run's name or id (see 'nas ls')\n"
            "  --db FILE            run store (default: runs.db in this folder)\n"
            "  --out DIR            where the files go (default: out/<run name>/report, beside the\n"
            "                       run's exported models in out/<run name>/)\n"
            "  --json               print the report as one JSON object instead of text\n"
            "  --top N              leaderboard rows printed (default: 20; 0: all)\n"
            "  --grid-gco2-kwh G    also state the search's own energy as CO2e at G gCO2e/kWh\n"
            "  --no-files           print only; write nothing\n\n"
            "Energy figures say whether they were measured by a hardware counter, estimated\n"
            "by a model (CPU time x power), or predicted; they are never added across kinds.\n");
    fprintf(f, "\nexample:\n  %s\n", "nas report my-search --out out/my-search/report");
}

/* mkdir -p */
/* The report's files: leaderboard.csv, report.json (text), pareto.svg and
 * the chosen architecture as a spec file that `nas train` and `nas export`
 * take, in out_dir (NULL: out/RUN/report). */
static nas_status write_files(const runs_report *rep, const char *text, const char *out_dir, nas_err *err)
{
    nas_status st;
    char dir[1024], path[1200];
    if (out_dir)
        snprintf(dir, sizeof dir, "%s", out_dir);
    else
        snprintf(dir, sizeof dir, "out/%s/report", rep->run.name);
    if ((st = nas_mkdirs(dir, err)))
        return st;
    snprintf(path, sizeof path, "%s/leaderboard.csv", dir);
    if ((st = runs_report_write_csv(rep, path, err)))
        return st;
    snprintf(path, sizeof path, "%s/report.json", dir);
    if ((st = nas_write_file_atomic(path, text, strlen(text), err)))
        return st;
    snprintf(path, sizeof path, "%s/pareto.svg", dir);
    if ((st = runs_report_write_svg(rep, path, err)))
        return st;
    const char *spec = rep->chosen >= 0 ? rep->cands[rep->chosen].spec_json : NULL;
    if (spec) {
        snprintf(path, sizeof path, "%s/chosen-spec.json", dir);
        if ((st = nas_write_file_atomic(path, spec, strlen(spec), err)))
            return st;
    }
    fprintf(stderr, "nas report: wrote %s/leaderboard.csv, report.json, pareto.svg%s\n", dir,
            spec ? ", chosen-spec.json" : "");
    return NAS_OK;
}

int cmd_report(int argc, char **argv)
{
    const char *db_path = "runs.db", *out_dir = NULL, *run_arg = NULL;
    int json = 0, no_files = 0;
    runs_report_opts o;
    runs_report_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-files")) {
            no_files = 1;
        } else if (!strcmp(a, "--db") || !strcmp(a, "--out") || !strcmp(a, "--top") ||
                   !strcmp(a, "--grid-gco2-kwh")) {
            if (i + 1 >= argc)
                return cli_usage_error("report", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--db")) {
                db_path = v;
            } else if (!strcmp(a, "--out")) {
                out_dir = v;
            } else if (!strcmp(a, "--top")) {
                long n;
                if (cli_parse_int(v, 0, 1000000, &n))
                    return cli_usage_error("report", "--top: '%s' is not a count (0..1000000)", v);
                o.top = (int)n;
            } else {
                if (cli_parse_double(v, 0, 5000, &o.grid_gco2_kwh))
                    return cli_usage_error("report",
                                           "--grid-gco2-kwh: '%s' is not an intensity in "
                                           "gCO2e/kWh (0..5000)", v);
            }
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("report", "unknown option '%s'", a);
        } else if (!run_arg) {
            run_arg = a;
        } else {
            return cli_usage_error("report", "one run at a time ('%s' and '%s')", run_arg, a);
        }
    }
    if (!run_arg)
        return cli_usage_error("report", "which run? (a name or id from 'nas ls')");
    const char *nc = getenv("NO_COLOR");
    o.color = !json && isatty(1) && !(nc && *nc);

    nas_err err = {0};
    runs_db *db = NULL;
    runs_report rep;
    memset(&rep, 0, sizeof rep);
    char *text = NULL;
    int64_t run;
    nas_status st = runs_open(db_path, RUNS_OPEN_READONLY, &db, &err);
    if (!st)
        st = runs_run_find(db, run_arg, &run, &err);
    if (!st)
        st = runs_report_build(db, run, &rep, &err);
    if (st)
        goto cleanup;
    text = runs_report_json(&rep, &o);
    if (!text) {
        st = nas_errf(&err, NAS_ENOMEM, "out of memory writing the report");
        goto cleanup;
    }
    if (json)
        printf("%s\n", text);
    else
        runs_report_print(&rep, &o, stdout);
    fflush(stdout);
    if (!no_files)
        st = write_files(&rep, text, out_dir, &err);
cleanup:
    nas_free(text);
    if (rep.cands || rep.run.settings_json)
        runs_report_free(&rep);
    runs_close(db);
    return st ? cli_fail("report", st, &err) : 0;
}
