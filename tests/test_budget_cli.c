/* test_budget_cli.c — `nas search --budget-joules J` is a cap, as a user runs
 * it on the MNIST sample: a sweep of small budgets, in one process and under
 * `mpirun -np 3`, never reports more joules (counted with the meter's stated
 * uncertainty) than it was given, and ends with a leaderboard; a budget no
 * network of the space fits is refused at start, naming the cheapest; the
 * search never reads the test split (its files may be corrupt); and a meter
 * whose reads start failing mid-search (NAS_FAULT_METER_READ) stops it with
 * an error naming the meter, never counting 0 J, keeping what was recorded;
 * and evolution's population and tournament are as --help says. */
#include "tests/testutil.h"

#include <jansson.h>
#include <math.h>

#include "base/nas.h"
#include "runs/runs.h"

/* Small candidates on few images, so that a run takes seconds. */
#define SMALL_RUN "search --data mnist --subset 300 --val-count 200 --epochs 1 --stages 2 --max-width 0.5 " \
                  "--threads 1 --bench-seconds 0.02 --meter model --final-top 0 --json"
#define SMALL SMALL_RUN " --no-db"   /* a throwaway run: nothing left in the checkout's runs.db */

static void too_small_a_budget_is_refused_naming_the_cheapest(void **state)
{
    (void)state;
    tu_need_mnist();
    char *out = NULL;
    assert_int_equal(tu_run_nas(SMALL " --budget-joules 0.5 --budget-evals 3 2>&1", &out), 2);
    assert_non_null(strstr(out, "too small for any network of this space"));
    assert_non_null(strstr(out, "MMACs"));
    assert_non_null(strstr(out, "--budget-joules 0.5"));
    free(out);
}

/* One run's JSON report: the joules it counted against the budget, its
 * evaluations, and whether it has a best candidate. */
static void check_report(const char *json, double budget, const char *what)
{
    json_error_t je;
    json_t *a = json_loads(json, 0, &je);
    if (!a)
        fail_msg("%s: no JSON report (%s): %s", what, je.text, json);
    json_t *en = json_object_get(a, "energy");
    double hi = json_real_value(json_object_get(en, "joules_with_uncertainty"));
    double lo = json_real_value(json_object_get(en, "joules"));
    long evals = (long)json_integer_value(json_object_get(a, "evals"));
    print_message("%s: %.1f J (%.1f with uncertainty) of %.0f, %ld evaluations\n", what, lo, hi, budget, evals);
    if (!(hi <= budget))
        fail_msg("%s: %.2f J counted against a budget of %.0f J", what, hi, budget);
    assert_true(lo > 0 && lo <= hi);
    assert_true(evals >= 1);
    if (!json_is_object(json_object_get(a, "best")))
        fail_msg("%s: empty leaderboard", what);
    json_decref(a);
}

static const double BUDGETS[] = {12, 20, 35};

static void budget_sweep_in_one_process(void **state)
{
    (void)state;
    tu_need_mnist();
    for (int b = 0; b < 3; b++) {
        char args[512], what[64];
        char *out = NULL;
        snprintf(args, sizeof args, SMALL " --budget-joules %g --budget-evals 12 --seed %d 2>/dev/null", BUDGETS[b],
                 b + 3);
        snprintf(what, sizeof what, "one process, %g J", BUDGETS[b]);
        assert_int_equal(tu_run_nas(args, &out), 0);
        check_report(out, BUDGETS[b], what);
        free(out);
    }
}

static void budget_sweep_under_mpirun(void **state)
{
    (void)state;
    tu_need_mnist();
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        print_message("no mpirun: skipping\n");
        skip();
    }
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    for (int b = 0; b < 3; b++) {
        char cmd[2048], what[64], path[128];
        snprintf(cmd, sizeof cmd,
                 "OMPI_MCA_plm_rsh_agent= %s -x ASAN_OPTIONS=detect_leaks=0 '%s' " SMALL
                 " --budget-joules %g --budget-evals 12 --seed %d >'%s/out.json' 2>'%s/err.txt'",
                 tu_mpirun(180, 3), tu_nas_bin(), BUDGETS[b], b + 5, dir, dir);
        snprintf(what, sizeof what, "mpirun -np 3, %g J", BUDGETS[b]);
        if (system(cmd) != 0) {
            snprintf(cmd, sizeof cmd, "cat '%s/err.txt' >&2", dir);
            (void)system(cmd);
            fail_msg("%s: nas search failed", what);
        }
        snprintf(path, sizeof path, "%s/out.json", dir);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        check_report(buf, BUDGETS[b], what);
    }
    tu_rmtree(dir);
}

/* With rungs and no predictor, rung 0 skips the benchmark and a candidate is
 * benchmarked just before its promotion. At the default --bench-seconds a
 * benchmark costs more than a rung-0 training of these small networks: the
 * budget must cost the first one as a benchmark (before the fix it stood in
 * at the cheapest training, and a 12 J run counted 16-17 J). */
static void budget_sweep_with_rungs_and_no_predictor(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    static const double budgets[] = {9, 12, 35};
    for (int b = 0; b < 3; b++) {
        char args[1024], what[64];
        char *out = NULL;
        snprintf(args, sizeof args,
                 "search --data mnist --subset 300 --val-count 200 --epochs 1 --stages 2 --max-width 0.5 "
                 "--threads 1 --meter model --final-top 0 --json --rungs 2 --predictor none --db '%s/runs.db' "
                 "--budget-joules %g --budget-evals 30 --seed %d 2>/dev/null", dir, budgets[b], 3 + b % 2);
        snprintf(what, sizeof what, "rungs 2, no predictor, %g J", budgets[b]);
        assert_int_equal(tu_run_nas(args, &out), 0);
        check_report(out, budgets[b], what);
        free(out);
    }
    tu_rmtree(dir);
}

/* The search ranks on validation images only: with the test files of its
 * data corrupt, it runs as well; final training, the test split's one
 * reader, names the corrupt file. */
static void the_search_never_reads_the_test_split(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], cmd[1024];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd,
             "cp data/mnist/train-images-idx3-ubyte data/mnist/train-labels-idx1-ubyte '%s'/ && "
             "printf 'not an idx file' >'%s/t10k-images-idx3-ubyte' && "
             "printf 'nor this' >'%s/t10k-labels-idx1-ubyte'", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    char args[1024];
    char *out = NULL;
    for (int final = 0; final <= 1; final++) {
        snprintf(args, sizeof args,
                 "search --data idx:%s --subset 200 --val-count 100 --stages 1 --max-width 0.25 --threads 1 "
                 "--bench-seconds 0.02 --budget-evals 2 --json --no-db --final-top %d --final-epochs 1 2>&1", dir, final);
        int rc = tu_run_nas(args, &out);
        if (!final && rc != 0)
            fail_msg("nas search with corrupt test files: exit %d: %s", rc, out ? out : "");
        if (final && (rc == 0 || !strstr(out, "t10k-images-idx3-ubyte")))
            fail_msg("final training did not name the corrupt test file: exit %d: %s", rc, out ? out : "");
        free(out);
    }
    tu_rmtree(dir);
}

/* The run in a store: its status and its finished candidates (seq order). */
static void store_run(const char *db_path, char *status, size_t n_status, runs_cand **cands, int *n)
{
    runs_db *db = NULL;
    nas_err err = {0};
    runs_run *runs = NULL;
    int n_runs = 0;
    if (runs_open(db_path, RUNS_OPEN_READONLY, &db, &err) || runs_run_list(db, &runs, &n_runs, &err))
        fail_msg("%s: %s", db_path, err.msg);
    assert_int_equal(n_runs, 1);
    snprintf(status, n_status, "%s", runs[0].status);
    if (runs_cand_list(db, runs[0].id, RUNS_MASK(RUNS_DONE), cands, n, &err))
        fail_msg("%s: %s", db_path, err.msg);
    runs_runs_free(runs, n_runs);
    runs_close(db);
}

#define FAULT_SEARCH SMALL_RUN " --budget-evals 4 --seed 5"
#define FAULT_READ "25"   /* the read that fails: into the third candidate (about 10 reads each) */

static void a_failing_meter_read_stops_the_search_with_its_error(void **state)
{
    (void)state;
    tu_need_mnist();
    tu_run_paths p;
    tu_run_paths_make(&p, "fault.db");
    char args[1024];
    char *out = NULL;
    snprintf(args, sizeof args, FAULT_SEARCH " --db %s 2>/dev/null", p.ref_db);
    assert_int_equal(tu_run_nas(args, &out), 0);
    free(out);
    snprintf(args, sizeof args, FAULT_SEARCH " --db %s 2>%s", p.db, p.err);
    setenv("NAS_FAULT_METER_READ", FAULT_READ, 1);
    int rc = tu_run_nas(args, &out);
    unsetenv("NAS_FAULT_METER_READ");
    free(out);
    char *msg = NULL;
    size_t len = 0;
    nas_err err = {0};
    if (nas_read_file(p.err, &msg, &len, &err))
        fail_msg("%s", err.msg);
    if (rc != 1 || !strstr(msg, "meter model:cpu-time: read " FAULT_READ " failed"))
        fail_msg("a failing meter: exit %d (want 1), stderr: %s", rc, msg);
    nas_free(msg);

    /* the candidates finished before the failure are kept, as the
     * uninterrupted run has them; the run is marked failed */
    char ref_status[16], status[16];
    runs_cand *ref = NULL, *got = NULL;
    int n_ref = 0, n_got = 0;
    store_run(p.ref_db, ref_status, sizeof ref_status, &ref, &n_ref);
    store_run(p.db, status, sizeof status, &got, &n_got);
    assert_string_equal(ref_status, "done");
    assert_string_equal(status, "failed");
    assert_int_equal(n_ref, 4);
    if (n_got < 1 || n_got >= n_ref)
        fail_msg("%d candidates done before the meter failed (want 1 to %d)", n_got, n_ref - 1);
    for (int i = 0; i < n_got; i++) {
        assert_string_equal(got[i].genome, ref[i].genome);
        assert_true(got[i].joules.value > 0);
    }
    runs_cands_free(ref, n_ref);
    runs_cands_free(got, n_got);
    tu_rmtree(p.dir);
}

/* Under mpirun, rank 0's own meter is charged onto results: when it cannot
 * be read, the search stops with that error instead of leaving rank 0's
 * joules uncounted. Only rank 0's meter fails (the fault is set for rank 0
 * alone); the workers' run as usual. */
static void a_failing_rank0_meter_stops_the_distributed_search(void **state)
{
    (void)state;
    tu_need_mnist();
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        print_message("no mpirun: skipping\n");
        skip();
    }
    char dir[64], cmd[2048], path[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd,
             "OMPI_MCA_plm_rsh_agent= %s -x ASAN_OPTIONS=detect_leaks=0 sh -c '[ \"$OMPI_COMM_WORLD_RANK\" = 0 ] && export "
             "NAS_FAULT_METER_READ=3; exec \"$0\" \"$@\"' '%s' " SMALL " --budget-joules 20 --budget-evals 6 "
             "--seed 5 >'%s/out.json' 2>'%s/err.txt'",
             tu_mpirun(180, 3), tu_nas_bin(), dir, dir);
    int rc = system(cmd);
    snprintf(path, sizeof path, "%s/err.txt", dir);
    char *msg = NULL;
    size_t len = 0;
    nas_err err = {0};
    if (nas_read_file(path, &msg, &len, &err))
        fail_msg("%s", err.msg);
    if (rc == 0 || !strstr(msg, "rank 0's own meter") || !strstr(msg, "injected by NAS_FAULT_METER_READ"))
        fail_msg("rank 0's meter failing: exit %d, stderr: %s", rc, msg);
    nas_free(msg);
    tu_rmtree(dir);
}

/* Evolution's population: --budget-evals / 8 in 8..100 by default; under a
 * joule budget and without rungs, that of the evaluations the joules are
 * expected to pay for where fewer (12 J pays for a few of SMALL's); with
 * rungs, --budget-evals' (multi-fidelity did worse with 8, see the README).
 * A given --population gets a quarter of it as its tournament, as --help
 * says, and a given --sample is kept. */
static void the_population_and_its_tournament(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[256], db[300];
    tu_tmpdir(dir, sizeof dir);
    snprintf(db, sizeof db, "--db %s/runs.db", dir);
    static const struct { const char *args, *want; } cases[] = {
        {"--budget-joules 12 --budget-evals 40", "evolution (population 8, tournament 2)"},
        {"--budget-joules 12 --budget-evals 1000", "evolution (population 8, tournament 2)"},
        {"--budget-joules 12 --budget-evals 1000 --sample 3", "evolution (population 8, tournament 3)"},
        {"--budget-joules 100000 --budget-evals 200 --budget-seconds 3", "evolution (population 25, tournament 6)"},
        {"--budget-joules 12 --budget-evals 1000 --rungs 2 DB", "evolution (population 100, tournament 25)"},
        {"--budget-joules 12 --budget-evals 1000 --population 20", "evolution (population 20, tournament 5)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[1024];
        char *out = NULL;
        char extra[400];
        snprintf(extra, sizeof extra, "%s", cases[i].args);
        char *m = strstr(extra, " DB");   /* rungs keep weights: a store, not --no-db */
        if (m)
            snprintf(m, sizeof extra - (size_t)(m - extra), " %s", db);
        snprintf(args, sizeof args, "%s --strategy evolution %s 2>&1 >/dev/null", m ? SMALL_RUN : SMALL, extra);
        assert_int_equal(tu_run_nas(args, &out), 0);
        if (!strstr(out, cases[i].want))
            fail_msg("%s: no '%s' in: %.400s", cases[i].args, cases[i].want, out);
        free(out);
    }
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(too_small_a_budget_is_refused_naming_the_cheapest),
        cmocka_unit_test(budget_sweep_in_one_process),
        cmocka_unit_test(budget_sweep_under_mpirun),
        cmocka_unit_test(budget_sweep_with_rungs_and_no_predictor),
        cmocka_unit_test(the_search_never_reads_the_test_split),
        cmocka_unit_test(a_failing_meter_read_stops_the_search_with_its_error),
        cmocka_unit_test(a_failing_rank0_meter_stops_the_distributed_search),
        cmocka_unit_test(the_population_and_its_tournament),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
