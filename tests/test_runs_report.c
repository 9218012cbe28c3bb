/* test_runs_report.c — reports: the Pareto front against a brute-force
 * reference, the leaderboard order, CSV/JSON/SVG contents, CO2e arithmetic,
 * and the `nas ls` / `nas report` commands end to end (exit codes, stdout
 * holding only data, no colour when not on a terminal).
 * Set NAS_TEST_KEEP=1 to keep the files (the folder is printed). */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#include "runs/runs.h"

static char tmp[256];
static char dbpath[512];
#define N_FIX 60

static int setup(void **state)
{
    assert_non_null(tu_tmpdir(tmp, sizeof tmp));
    snprintf(dbpath, sizeof dbpath, "%s/runs.db", tmp);
    return 0;
}

static int teardown(void **state)
{
    const char *keep = getenv("NAS_TEST_KEEP");
    if (keep && *keep == '1')
        fprintf(stderr, "kept %s\n", tmp);
    else
        tu_rmtree(tmp);
    return 0;
}

/* A run that looks like a search: accuracy rises with energy, with noise;
 * most candidates benchmarked (RAPL), a few only predicted, two failed, one
 * screened by the predictor, one left queued. Returns the run id. */
static int64_t fixture(runs_db *db, const char *name)
{
    nas_err err = {0};
    runs_new_run r = {.name = name,
                      /* the shape `nas search` saves: its flags without dashes */
                      .settings_json = "{\"command\":\"search\",\"settings\":{\"strategy\":\"evolution\","
                                       "\"target-mj\":2.0,\"hard\":0}}",
                      .seed = 42, .hardware = "AMD EPYC 9B14 x2", .meter = "rapl:package-0"};
    int64_t run;
    if (runs_run_create(db, &r, &run, &err))
        fail_msg("%s", err.msg);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 77, 1);
    for (int k = 0; k < N_FIX; k++) {
        double e = 0.3 * pow(30, nas_pcg32_double(&rng));          /* 0.3 .. 9 mJ */
        double acc = 0.90 + 0.025 * log(e / 0.3) / log(30) * 3 - 0.03 * nas_pcg32_double(&rng);
        char g[64];
        snprintf(g, sizeof g, "%d.%d.%d.%d", k % 3, k % 5, k % 7, k % 2);
        runs_new_cand c = {.seq = -1, .genome = g, .spec_json = "{\"resolution\":28}",
                           .pred_energy_mj = runs_fig_make(e * (0.9 + 0.2 * nas_pcg32_double(&rng)),
                                                           "xgboost", "predicted"),
                           .pred_latency_ms = runs_fig_make(e * 0.4, "xgboost", "predicted"),
                           .params = 20000 + 5000 * e, .macs = 1e6 * e};
        if (k == 13)   /* neither predicted nor (below) benchmarked: rung 0 of --rungs with no predictor */
            c.pred_energy_mj = c.pred_latency_ms = runs_fig_none();
        int64_t id;
        if (runs_cand_add(db, run, &c, &id, NULL, NULL, &err))
            fail_msg("%s", err.msg);
        if (k == N_FIX - 1)
            continue;   /* left queued */
        runs_result res;
        runs_result_init(&res);
        if (k == 7 || k == 19) {
            res.status = k == 7 ? RUNS_FAILED : RUNS_DIVERGED;
            res.error = "loss became NaN";
        } else if (k == 11) {
            res.status = RUNS_SCREENED;
            res.error = "predicted over the hard target";
        } else {
            assert_int_equal(runs_cand_start(db, id, NULL, &err), NAS_OK);
            res.accuracy = acc;
            if (k % 6 != 5 && k != 13) {
                res.energy_mj = runs_fig_make(e, "rapl:package-0", "measured");
                res.latency_ms = runs_fig_make(e * 0.45, "clock", "measured");
            }
            res.joules = runs_fig_make(80 + 10 * e, "rapl:package-0", "measured");
            res.reward = acc * pow(e / 2.0, -0.07);
            res.wall_s = 3 + e;
        }
        if (k == 3)   /* one candidate evaluated while the meter was unavailable */
            res.joules = runs_fig_make(55, "model:cpu-time", "estimated");
        if (runs_cand_finish(db, id, &res, NULL, &err))
            fail_msg("%s", err.msg);
    }
    return run;
}

static runs_db *open_rw(void)
{
    runs_db *db;
    nas_err err = {0};
    if (runs_open(dbpath, RUNS_OPEN_CREATE, &db, &err))
        fail_msg("%s", err.msg);
    return db;
}

/* The front by definition: no other point at most as costly and at least as
 * accurate, better in one. */
static int dominated(const runs_report *rep, int i)
{
    double ei = runs_cand_energy(&rep->cands[i], NULL, NULL), ai = rep->cands[i].accuracy;
    if (!isfinite(ei))
        return 1;   /* no energy: not a point of the front at all */
    for (int j = 0; j < rep->n; j++) {
        if (j == i || !rep->rank[j])
            continue;
        double ej = runs_cand_energy(&rep->cands[j], NULL, NULL), aj = rep->cands[j].accuracy;
        if (!isfinite(ej))
            continue;
        if (ej <= ei && aj >= ai && (ej < ei || aj > ai))
            return 1;
    }
    return 0;
}

static void test_report_front_and_board(void **state)
{
    runs_db *db = open_rw();
    int64_t run = fixture(db, "fix");
    runs_report rep;
    nas_err err = {0};
    assert_int_equal(runs_report_build(db, run, &rep, &err), NAS_OK);
    assert_int_equal(rep.n, N_FIX);
    int nranked = 0, nfront = 0;
    for (int i = 0; i < rep.n; i++) {
        if (!rep.rank[i]) {
            assert_false(rep.front[i]);
            continue;
        }
        nranked++;
        assert_int_equal(rep.rank[i], nranked);   /* ranked ones first, numbered 1.. */
        if (i > 0 && rep.rank[i - 1])
            assert_true(rep.cands[i - 1].reward >= rep.cands[i].reward);
        assert_int_equal(rep.front[i], !dominated(&rep, i));
        nfront += rep.front[i];
    }
    assert_int_equal(nranked, N_FIX - 4);
    assert_true(nfront >= 3 && nfront < nranked);
    assert_int_equal(rep.chosen, 0);
    /* The energy a candidate is plotted at: measured if known, else predicted. */
    for (int i = 0; i < rep.n; i++) {
        const char *q;
        double e = runs_cand_energy(&rep.cands[i], NULL, &q);
        if (runs_fig_known(&rep.cands[i].energy_mj)) {
            assert_string_equal(q, "measured");
            assert_true(e == rep.cands[i].energy_mj.value);
        } else if (runs_fig_known(&rep.cands[i].pred_energy_mj)) {
            assert_string_equal(q, "predicted");
        } else {
            assert_false(isfinite(e));   /* row 13: neither */
        }
    }
    /* Joules of two qualities: two lines. */
    assert_int_equal(rep.n_energy, 2);
    assert_string_equal(rep.energy[0].quality, "estimated");
    assert_true(fabs(rep.energy[0].joules - 55) < 1e-9);
    assert_int_equal(rep.energy[1].n, N_FIX - 5);   /* 1 queued, 3 unfinished, 1 estimated */
    runs_report_free(&rep);
    runs_close(db);
}

/* Every allocation of the report failing in turn: an error or a whole report,
 * nothing leaked either way. */
static void test_report_alloc_failures(void **state)
{
    runs_db *db = open_rw();
    int64_t run = fixture(db, "oom");
    nas_err err = {0};
    size_t live = nas_alloc_live();
    int failures = 0;
    for (int k = 1; k <= 80; k++) {
        runs_report rep;
        nas_alloc_fail_at(k);
        nas_status st = runs_report_build(db, run, &rep, &err);
        nas_alloc_fail_at(0);
        if (st == NAS_OK) {
            assert_int_equal(rep.n, N_FIX);
            runs_report_free(&rep);
        } else {
            assert_int_equal(st, NAS_ENOMEM);
            failures++;
        }
        assert_int_equal(nas_alloc_live(), live);
    }
    assert_true(failures > 3);
    runs_close(db);
}

static void test_report_co2e(void **state)
{
    /* 1 kWh = 3.6 MJ; at 400 gCO2e/kWh that is 400 g. */
    assert_true(fabs(runs_co2e_grams(3.6e6, 400) - 400) < 1e-9);
    assert_true(fabs(runs_co2e_grams(5000, 300) - 5000 / 3.6e6 * 300) < 1e-12);
}

static char *slurp(const char *path)
{
    char *t;
    size_t n;
    nas_err err = {0};
    if (nas_read_file(path, &t, &n, &err))
        fail_msg("%s", err.msg);
    return t;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_report_files(void **state)
{
    runs_db *db = open_rw();
    int64_t run = fixture(db, "files");
    runs_report rep;
    nas_err err = {0};
    assert_int_equal(runs_report_build(db, run, &rep, &err), NAS_OK);
    char csv[600], svg[600];
    snprintf(csv, sizeof csv, "%s/lb.csv", tmp);
    snprintf(svg, sizeof svg, "%s/pareto.svg", tmp);
    assert_int_equal(runs_report_write_csv(&rep, csv, &err), NAS_OK);
    assert_int_equal(runs_report_write_svg(&rep, svg, &err), NAS_OK);

    char *t = slurp(csv);
    assert_int_equal(count(t, "\n"), N_FIX + 1);
    int header_commas = 0;
    for (char *p = t; *p != '\n'; p++)
        header_commas += *p == ',';
    for (char *line = strchr(t, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        int commas = 0;
        for (char *p = line; *p != '\n'; p++)
            commas += *p == ',';
        assert_int_equal(commas, header_commas);
    }
    assert_non_null(strstr(t, ",rapl:package-0,measured,"));
    assert_non_null(strstr(t, ",model:cpu-time,estimated,"));
    assert_non_null(strstr(t, "\n1,"));
    nas_free(t);

    t = slurp(svg);
    assert_true(strncmp(t, "<?xml", 5) == 0);
    assert_non_null(strstr(t, "</svg>"));
    assert_non_null(strstr(t, "energy per inference (mJ"));
    assert_non_null(strstr(t, "accuracy (%)"));
    assert_non_null(strstr(t, "Pareto front"));
    assert_non_null(strstr(t, "target 2 mJ"));
    char chosen[64];
    snprintf(chosen, sizeof chosen, "chosen #%d", rep.cands[rep.chosen].seq);
    assert_non_null(strstr(t, chosen));
    /* One <title>d circle per plotted candidate (row 13 has no energy to plot). */
    assert_int_equal(count(t, "<title>#"), N_FIX - 5);
    assert_int_equal(count(t, "<polyline"), 1);
    nas_free(t);

    /* A run with nothing finished still gets a plot that says so. */
    runs_new_run r = {.name = "empty", .settings_json = "{}"};
    int64_t e;
    assert_int_equal(runs_run_create(db, &r, &e, &err), NAS_OK);
    runs_report rep2;
    assert_int_equal(runs_report_build(db, e, &rep2, &err), NAS_OK);
    assert_int_equal(rep2.chosen, -1);
    assert_int_equal(runs_report_write_svg(&rep2, svg, &err), NAS_OK);
    t = slurp(svg);
    assert_non_null(strstr(t, "no finished candidate"));
    nas_free(t);
    runs_report_free(&rep2);

    /* Unwritable destination: an error naming it. */
    assert_int_equal(runs_report_write_csv(&rep, "/nonexistent-dir/x.csv", &err), NAS_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.csv"));
    runs_report_free(&rep);
    runs_close(db);
}

static void test_report_text(void **state)
{
    runs_db *db = open_rw();
    int64_t run = fixture(db, "text");
    runs_report rep;
    nas_err err = {0};
    assert_int_equal(runs_report_build(db, run, &rep, &err), NAS_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    runs_report_opts o;
    runs_report_opts_default(&o);
    o.grid_gco2_kwh = 400;
    runs_report_print(&rep, &o, f);
    fclose(f);
    assert_null(strchr(buf, '\033'));
    assert_non_null(strstr(buf, "leaderboard"));
    assert_non_null(strstr(buf, "Pareto front"));
    assert_non_null(strstr(buf, "J measured by rapl:package-0"));
    assert_non_null(strstr(buf, "~55.0 J estimated by model:cpu-time"));
    assert_non_null(strstr(buf, "gCO2e at 400 gCO2e/kWh"));
    assert_non_null(strstr(buf, " meas "));
    assert_non_null(strstr(buf, " pred "));
    assert_non_null(strstr(buf, "chosen"));
    assert_non_null(strstr(buf, "... 36 more"));   /* 56 ranked, 20 shown by default */
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    o.top = 0;
    o.color = 1;
    runs_report_print(&rep, &o, f);
    fclose(f);
    assert_null(strstr(buf, " more ("));
    assert_non_null(strstr(buf, "\033[32m"));   /* the chosen row, on a terminal */
    free(buf);
    /* the target, and every ranked row over it flagged (no others) */
    buf = NULL;
    f = open_memstream(&buf, &len);
    o.color = 0;
    runs_report_print(&rep, &o, f);
    fclose(f);
    assert_non_null(strstr(buf, "target: 2 mJ per inference (soft constraint)"));
    int over = 0;
    for (int i = 0; i < rep.n; i++)
        over += rep.rank[i] && runs_cand_energy(&rep.cands[i], NULL, NULL) > 2.0;
    assert_true(over > 0);
    assert_int_equal(count(buf, " over-target\n"), over);
    assert_int_equal(count(buf, " not-benchmarked\n"), 1);   /* fixture row 13, and only it */
    assert_non_null(strstr(buf, "not-benchmarked: no figure yet"));
    free(buf);
    runs_report_free(&rep);
    runs_close(db);
}

/* ---- the commands ----------------------------------------------------------- */

static void test_cli_ls_and_report(void **state)
{
    runs_db *db = open_rw();
    fixture(db, "mnist-small");
    fixture(db, "second");
    runs_close(db);
    char args[2048], *out = NULL;

    snprintf(args, sizeof args, "ls --db %s 2>/dev/null", dbpath);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "mnist-small"));
    assert_non_null(strstr(out, "second"));
    assert_non_null(strstr(out, "evolution"));
    assert_non_null(strstr(out, "J measured"));
    assert_null(strchr(out, '\033'));
    free(out);

    snprintf(args, sizeof args, "ls --db %s --json 2>/dev/null", dbpath);
    assert_int_equal(tu_run_nas(args, &out), 0);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    if (!o)
        fail_msg("ls --json is not JSON: %s\n%s", je.text, out);
    assert_int_equal(json_array_size(json_object_get(o, "runs")), 2);
    json_t *r0 = json_array_get(json_object_get(o, "runs"), 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "candidates")), N_FIX);
    assert_int_equal(json_integer_value(json_object_get(r0, "done")), N_FIX - 4);
    json_decref(o);
    free(out);

    char outdir[600];
    snprintf(outdir, sizeof outdir, "%s/rep", tmp);
    snprintf(args, sizeof args,
             "report mnist-small --db %s --out %s --json --grid-gco2-kwh 250 2>%s/stderr.txt",
             dbpath, outdir, tmp);
    assert_int_equal(tu_run_nas(args, &out), 0);
    o = json_loads(out, 0, &je);
    if (!o)
        fail_msg("report --json is not JSON: %s", je.text);
    assert_int_equal(json_array_size(json_object_get(o, "leaderboard")), N_FIX - 4);
    json_t *first = json_array_get(json_object_get(o, "leaderboard"), 0);
    assert_true(json_is_true(json_object_get(first, "chosen")));
    assert_true(json_is_boolean(json_object_get(first, "over_target")));
    assert_null(json_object_get(first, "id"));   /* one number names a candidate: seq */
    assert_true(json_real_value(json_object_get(o, "target_mj")) == 2.0);
    assert_int_equal(json_integer_value(json_object_get(o, "chosen_seq")),
                     json_integer_value(json_object_get(first, "seq")));
    assert_non_null(json_object_get(first, "spec"));
    json_t *en = json_array_get(json_object_get(o, "search_energy"), 0);
    double j = json_real_value(json_object_get(en, "joules"));
    assert_true(fabs(json_real_value(json_object_get(en, "co2e_g")) - j / 3.6e6 * 250) < 1e-9);
    json_decref(o);
    free(out);
    char path[700];
    const char *files[] = {"leaderboard.csv", "report.json", "pareto.svg", "chosen-spec.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", outdir, files[i]);
        assert_int_equal(access(path, R_OK), 0);
    }
    snprintf(path, sizeof path, "%s/stderr.txt", tmp);
    char *msg = slurp(path);
    assert_non_null(strstr(msg, "wrote"));   /* messages on stderr, not stdout */
    nas_free(msg);

    /* Text, run by id, no colour when piped even without NO_COLOR. */
    snprintf(args, sizeof args, "report 2 --db %s --no-files --top 5 2>/dev/null", dbpath);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "'second'"));
    assert_null(strchr(out, '\033'));
    assert_non_null(strstr(out, "\n   5 "));
    assert_null(strstr(out, "\n   6 "));
    free(out);

    /* Mistakes: exit 2 for bad usage or input, 1 for a damaged store. */
    snprintf(args, sizeof args, "report nope --db %s 2>&1", dbpath);
    assert_int_equal(tu_run_nas(args, &out), 2);
    assert_non_null(strstr(out, "no run named 'nope'"));
    free(out);
    snprintf(args, sizeof args, "report --db %s 2>&1", dbpath);
    assert_int_equal(tu_run_nas(args, &out), 2);
    free(out);
    assert_int_equal(tu_run_nas("report x --grid-gco2-kwh lots 2>&1", &out), 2);
    assert_non_null(strstr(out, "--grid-gco2-kwh"));
    free(out);
    snprintf(args, sizeof args, "ls --db %s/missing.db 2>&1", tmp);
    assert_int_equal(tu_run_nas(args, &out), 2);
    assert_non_null(strstr(out, "missing.db"));
    free(out);
    snprintf(args, sizeof args, "ls --db %s/no/such/dir/runs.db 2>&1", tmp);
    assert_int_equal(tu_run_nas(args, &out), 1);
    assert_non_null(strstr(out, "does not exist"));
    free(out);
    snprintf(path, sizeof path, "%s/junk.db", tmp);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 4096; i++)
        fputc((i * 131) & 0xff, f);
    fclose(f);
    snprintf(args, sizeof args, "report 1 --db %s 2>&1", path);
    assert_int_equal(tu_run_nas(args, &out), 1);
    assert_non_null(strstr(out, "not a database"));
    free(out);
    assert_int_equal(tu_run_nas("report --help", &out), 0);
    assert_non_null(strstr(out, "usage: nas report"));
    free(out);
    assert_int_equal(tu_run_nas("ls --help", &out), 0);
    assert_non_null(strstr(out, "usage: nas ls"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_report_front_and_board, setup, teardown),
        cmocka_unit_test(test_report_co2e),
        cmocka_unit_test_setup_teardown(test_report_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_ls_and_report, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
