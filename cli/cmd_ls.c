/* cmd_ls.c — `nas ls`: the runs in a run store, one line each. */
#include "cli/cli.h"
#include "runs/runs.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: nas ls [--db FILE] [--json]\n\n"
               "Lists the runs in a run store: id, name, status, when it started, candidates\n"
               "done of proposed, best accuracy, and the energy the search itself spent (with\n"
               "its quality: measured by a counter, or estimated).\n\n"
               "  --db FILE   run store (default: runs.db in this folder)\n"
               "  --json      one JSON object: {\"db\": ..., \"runs\": [...]}\n");
    fprintf(f, "\nexample:\n  %s\n", "nas ls --db runs.db");
}

static const char *strategy_of(const char *settings, char *buf, size_t n)
{
    if (!runs_settings_string(settings, "strategy", buf, n))
        snprintf(buf, n, "-");
    return buf;
}

/* One run as a JSON object (NULL: out of memory). */
static json_t *run_json(const runs_run *r, const char *strat, const runs_energy_line *lines, int nl)
{
    json_t *energy = json_array();
    for (int k = 0; k < nl; k++)
        json_array_append_new(energy, json_pack("{s:s, s:s, s:f}", "source", lines[k].source, "quality",
                                                lines[k].quality, "joules", lines[k].joules));
    return json_pack("{s:I, s:s, s:s, s:f, s:s, s:I, s:s, s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:o}",
                     "id", (json_int_t)r->id, "name", r->name, "status", r->status, "created", r->created,
                     "strategy", strat, "seed", (json_int_t)r->seed, "hardware", r->hardware, "meter", r->meter,
                     "candidates", r->n_cands, "done", r->n_done, "failed", r->n_failed, "queued",
                     r->n_queued + r->n_running, "best_accuracy",
                     isfinite(r->best_accuracy) ? json_real(r->best_accuracy) : json_null(), "best_reward",
                     isfinite(r->best_reward) ? json_real(r->best_reward) : json_null(), "search_energy", energy);
}

/* One run as a row of the table; energy that is not measured is marked ~. */
static void print_row(const runs_run *r, const char *when, const char *strat, const runs_energy_line *lines, int nl)
{
    char counts[32], acc[16], energy[160] = "-";
    snprintf(counts, sizeof counts, "%d/%d", r->n_done, r->n_cands);
    if (isfinite(r->best_accuracy))
        snprintf(acc, sizeof acc, "%.2f%%", r->best_accuracy * 100);
    else
        snprintf(acc, sizeof acc, "-");
    size_t used = 0;
    for (int k = 0; k < nl && used < sizeof energy; k++) {
        int meas = runs_quality_is_measured(lines[k].quality);
        used += snprintf(energy + used, sizeof energy - used, "%s%s%.0f J %s", k ? ", " : "", meas ? "" : "~",
                         lines[k].joules, meas ? "measured" : lines[k].quality);
    }
    printf("%4lld  %-20s %-8s %-17s %-10s %9s %9s  %s\n", (long long)r->id, r->name, r->status, when, strat,
           counts, acc, energy);
}

int cmd_ls(int argc, char **argv)
{
    const char *db_path = "runs.db";
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--db")) {
            if (i + 1 >= argc)
                return cli_usage_error("ls", "--db needs a file");
            db_path = argv[++i];
        } else {
            return cli_usage_error("ls", "unknown argument '%s'", argv[i]);
        }
    }
    nas_err err = {0};
    runs_db *db = NULL;
    runs_run *runs = NULL;
    int n = 0;
    json_t *jruns = NULL;
    nas_status st = runs_open(db_path, RUNS_OPEN_READONLY, &db, &err);
    if (!st)
        st = runs_run_list(db, &runs, &n, &err);
    if (st)
        goto cleanup;
    if (json)
        jruns = json_array();
    else if (n > 0)
        printf("%4s  %-20s %-8s %-17s %-10s %9s %9s  %s\n", "id", "name", "status", "started",
               "strategy", "done/all", "best acc", "search energy");
    for (int i = 0; i < n; i++) {
        const runs_run *r = &runs[i];
        runs_energy_line lines[8];
        int nl = 0;
        if ((st = runs_run_energy(db, r->id, lines, 8, &nl, &err)))
            goto cleanup;
        char when[32], strat[32];
        time_t t = (time_t)r->created;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        strategy_of(r->settings_json, strat, sizeof strat);
        if (json)
            json_array_append_new(jruns, run_json(r, strat, lines, nl));
        else
            print_row(r, when, strat, lines, nl);
    }
    if (json) {
        json_t *root = json_pack("{s:s, s:o}", "db", db_path, "runs", jruns);
        jruns = NULL;
        if (cli_print_json(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
            st = nas_errf(&err, NAS_ENOMEM, "out of memory writing the JSON list");
            goto cleanup;
        }
    } else if (n == 0) {
        fprintf(stderr, "nas ls: no runs in %s\n", db_path);
    }
cleanup:
    json_decref(jruns);
    runs_runs_free(runs, n);
    runs_close(db);
    return st ? cli_fail("ls", st, &err) : 0;
}
