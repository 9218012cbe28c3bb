/* test_search_cli.c — `nas search` as a user runs it: usage errors exit 2 and
 * name the option; a tiny real search on the MNIST digits (when `make data`
 * has fetched them) stays within its budgets, reports JSON that agrees with
 * itself, and, stopped and resumed through --state, ends as an uninterrupted
 * run does; with --db the run store records it and resumes it. */
#include "tests/testutil.h"
#include "runs/runs.h"

#include <jansson.h>
#include <math.h>

static void usage_errors_exit_2_and_name_the_option(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_run_nas("search --help", &out), 0);
    assert_non_null(strstr(out, "--budget-joules"));
    free(out);
    assert_int_equal(tu_run_nas("search --budget-evals 3 2>&1", &out), 2);
    assert_non_null(strstr(out, "--data is required"));
    free(out);
    assert_int_equal(tu_run_nas("search --data mnist 2>&1", &out), 2);
    assert_non_null(strstr(out, "no budget"));
    free(out);
    assert_int_equal(tu_run_nas("search --data mnist --budget-evals 3 --hard 2>&1", &out), 2);
    assert_non_null(strstr(out, "--hard needs a target"));
    free(out);
    assert_int_equal(tu_run_nas("search --data mnist --budget-evals 3 --strategy annealing 2>&1", &out), 2);
    assert_non_null(strstr(out, "'annealing'"));
    free(out);
    assert_int_equal(tu_run_nas("search --data mnist --budget-evals -4 2>&1", &out), 2);
    assert_non_null(strstr(out, "--budget-evals"));
    free(out);
    assert_int_equal(tu_run_nas("search --data mnist --budget-evals 3 --target-mj 1 --target-ms 1 2>&1", &out), 2);
    free(out);
}

#define TINY "search --data mnist --subset 64 --epochs 1 --stages 1 --max-width 0.25 --threads 1 --final-top 0 " \
             "--bench-seconds 0.02 --target-mj 2 --hv-ref-mj 4 --seed 3 --json"

/* The same candidates with the same genomes and accuracies on both leaderboards. */
static void assert_same_leaderboard(json_t *a, json_t *b)
{
    json_t *la = json_object_get(a, "leaderboard"), *lb = json_object_get(b, "leaderboard");
    assert_int_equal(json_array_size(la), json_array_size(lb));
    for (size_t i = 0; i < json_array_size(la); i++) {
        json_t *x = json_array_get(la, i);
        int found = 0;
        for (size_t j = 0; j < json_array_size(lb); j++) {
            json_t *y = json_array_get(lb, j);
            if (json_integer_value(json_object_get(x, "id")) == json_integer_value(json_object_get(y, "id"))) {
                found = 1;
                assert_true(json_equal(json_object_get(x, "genome"), json_object_get(y, "genome")));
                assert_true(json_real_value(json_object_get(x, "accuracy")) ==
                            json_real_value(json_object_get(y, "accuracy")));
            }
        }
        assert_true(found);
    }
}

static void tiny_search_keeps_its_budget_and_resumes(void **state)
{
    (void)state;
    tu_need_mnist();
    char *out = NULL;
    /* No joule budget here: under one, a candidate's allowance is at most twice
     * its estimate from MACs (a prior measured on a native build), and under
     * ASan every candidate costs several times that, so training stops at a
     * point that depends on the machine's pace and the resumed run cannot end
     * as the first did. tests/test_budget_cli.c holds the joule budget. */
    assert_int_equal(tu_run_nas(TINY " --budget-evals 3 --no-db 2>/dev/null", &out), 0);
    json_t *a = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(a);
    assert_int_equal(json_integer_value(json_object_get(a, "evals")), 3);
    json_t *en = json_object_get(a, "energy");
    assert_true(json_real_value(json_object_get(en, "joules_with_uncertainty")) > 0);
    assert_non_null(json_string_value(json_object_get(en, "meter")));
    json_t *best = json_object_get(a, "best");
    assert_true(json_is_object(best));
    assert_true(json_is_object(json_object_get(a, "chosen_spec")));
    double acc = json_real_value(json_object_get(best, "accuracy"));
    assert_true(acc >= 0 && acc <= 1);
    /* every candidate was benchmarked (no predictor), by the search's meter: its
     * energy has the meter's quality (estimated on a machine without a counter) */
    assert_string_equal(json_string_value(json_object_get(best, "energy_from")), "benchmarked");
    assert_string_equal(json_string_value(json_object_get(best, "energy_quality")),
                        json_string_value(json_object_get(en, "quality")));

    /* the same search in two parts: 2 evaluations, then resumed to 3 */
    char dir[64], cmd[512];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd, TINY " --budget-evals 2 --no-db --state %s/st.json 2>/dev/null", dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, TINY " --budget-evals 2 --no-db --state %s/st.json 2>&1 >/dev/null", dir);
    char *msgs = NULL;
    assert_int_equal(tu_run_nas(cmd, &msgs), 0);
    assert_non_null(strstr(msgs, "resuming from"));
    free(msgs);
    /* given one more evaluation on resume, it ends as the 3-evaluation run did:
     * the same candidates with the same accuracies (training is deterministic;
     * measured energies are not, so rewards may differ in the last digits) */
    snprintf(cmd, sizeof cmd, TINY " --budget-evals 3 --no-db --state %s/st.json 2>/dev/null", dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    json_t *b = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(b);
    assert_int_equal(json_integer_value(json_object_get(b, "evals")), 3);
    assert_same_leaderboard(a, b);
    json_decref(b);
    /* into a run store: every candidate recorded, and the same command resumes the run */
    snprintf(cmd, sizeof cmd, TINY " --budget-evals 2 --db %s/runs.db --name tiny 2>/dev/null", dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    free(out);
    /* the state it saved holds no history (the candidates' rows are it) */
    char db_path[128];
    snprintf(db_path, sizeof db_path, "%s/runs.db", dir);
    runs_db *db = NULL;
    nas_err err = {0};
    int64_t run;
    char *saved = NULL;
    int seq;
    assert_int_equal(runs_open(db_path, RUNS_OPEN_READONLY, &db, &err), NAS_OK);
    assert_int_equal(runs_run_find(db, "tiny", &run, &err), NAS_OK);
    assert_int_equal(runs_strategy_get(db, run, &saved, &seq, &err), NAS_OK);
    runs_close(db);
    json_t *st = json_loads(saved, 0, NULL);
    nas_free(saved);
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "version")), 2);
    assert_null(json_object_get(st, "results"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "history"), "n")), 2);
    json_decref(st);
    snprintf(cmd, sizeof cmd, TINY " --budget-evals 3 --db %s/runs.db --name tiny 2>%s/msgs", dir, dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    b = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(b);
    assert_same_leaderboard(a, b);   /* resumed from the store's rows, it ends as the 3-evaluation run */
    json_decref(b);
    snprintf(cmd, sizeof cmd, "%s/msgs", dir);
    size_t len;
    assert_int_equal(nas_read_file(cmd, &msgs, &len, &err), NAS_OK);
    assert_non_null(strstr(msgs, "resuming run 'tiny'"));
    nas_free(msgs);
    snprintf(cmd, sizeof cmd, "report tiny --db %s/runs.db --out %s/rep 2>&1", dir, dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    assert_non_null(strstr(out, "candidates: 3 (done 3)"));
    free(out);
    tu_rmtree(dir);
    json_decref(a);
}

/* With a calibrated predictor and a hard target: candidates predicted far over
 * it are screened (never trained), and the best meets the target by the figure
 * the search knows it by (measured where measured). */
static void predictor_screens_and_best_meets_the_target(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], cmd[1024], *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(cmd, sizeof cmd, "calibrate --samples 20 --max-samples 20 --adaptive-rounds 0 --folds 3 "
             "--max-width 0.25 --min-seconds 0.02 --repeats 3 --no-reference --out %s/pred.json >/dev/null 2>&1", dir);
    assert_int_equal(tu_run_nas(cmd, NULL), 0);
    /* The target comes from the predictor itself: a mid-size network of this
     * space, as this machine (and this build: ASan is ~10x slower) measures it.
     * A fixed number of mJ would screen everything on a slower build. */
    char spec[128];
    snprintf(spec, sizeof spec, "%s/mid.json", dir);
    FILE *f = fopen(spec, "w");
    assert_non_null(f);
    fputs("{\"resolution\":28,\"in_channels\":1,\"num_classes\":10,\"stem\":{\"channels\":8,\"stride\":1},"
          "\"stages\":[{\"channels\":8,\"expand\":3,\"repeats\":2},{\"channels\":16,\"expand\":4,"
          "\"stride\":2,\"repeats\":2,\"kernel\":5}],\"head\":{\"channels\":320}}", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "predict %s --predictor %s/pred.json --json 2>/dev/null", spec, dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    json_t *p = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(p);
    double target = json_real_value(json_object_get(p, "energy_mj"));
    json_decref(p);
    assert_true(target > 0);
    /* a hard target far under anything this space can do: said before any training */
    snprintf(cmd, sizeof cmd, "search --data mnist --subset 64 --epochs 1 --stages 2 --max-width 0.25 --threads 1 "
             "--budget-evals 1 --budget-seconds 60 --target-mj %.6g --hard --predictor %s/pred.json --no-db --json "
             "2>&1 >/dev/null", target / 1000, dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    assert_non_null(strstr(out, "is below the lowest prediction for 200 networks"));
    free(out);
    snprintf(cmd, sizeof cmd, "search --data mnist --subset 64 --epochs 1 --stages 2 --max-width 0.25 --threads 1 "
             "--final-top 0 --bench-seconds 0.02 --budget-evals 4 --target-mj %.6g --hard --predictor %s/pred.json "
             "--measure-every 2 --measure-top 2 --seed 5 --db %s/p.db --name p --json 2>/dev/null", target, dir, dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    json_t *r = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "evals")), 4);
    /* the store's joules are the search's: training and measuring, each once
     * (the measuring of a trained candidate once added its training again) */
    {
        double search_j = json_real_value(json_object_get(json_object_get(r, "energy"), "joules")), stored = 0;
        char db_path[128];
        snprintf(db_path, sizeof db_path, "%s/p.db", dir);
        runs_db *db = NULL;
        nas_err err = {0};
        runs_run *runs = NULL;
        runs_cand *cands = NULL;
        int n_runs = 0, n_cands = 0, n_meas = 0;
        if (runs_open(db_path, RUNS_OPEN_READONLY, &db, &err) || runs_run_list(db, &runs, &n_runs, &err) ||
            runs_cand_list(db, runs[0].id, RUNS_FINISHED_MASK, &cands, &n_cands, &err))
            fail_msg("%s: %s", db_path, err.msg);
        for (int i = 0; i < n_cands; i++) {
            double v[8];
            int n = 0;
            stored += runs_fig_known(&cands[i].joules) ? cands[i].joules.value : 0;
            assert_int_equal(runs_measurements(db, cands[i].id, "measure_joules", v, 8, &n, &err), NAS_OK);
            n_meas += n;
        }
        print_message("search %.6f J, store %.6f J, %d measurings\n", search_j, stored, n_meas);
        assert_true(n_meas >= 1);
        assert_true(search_j > 0 && fabs(stored - search_j) <= 1e-6 * search_j);
        runs_cands_free(cands, n_cands);
        runs_runs_free(runs, n_runs);
        runs_close(db);
    }
    assert_true(json_integer_value(json_object_get(r, "proposals")) ==
                4 + json_integer_value(json_object_get(r, "screened")) +
                json_integer_value(json_object_get(r, "seen_before")) +
                json_integer_value(json_object_get(r, "over_budget")));
    json_t *best = json_object_get(r, "best");
    if (json_is_object(best)) {
        assert_true(json_real_value(json_object_get(best, "energy_mj")) <= target);
        assert_true(json_is_true(json_object_get(best, "feasible")));
    }
    json_t *lb = json_object_get(r, "leaderboard");
    for (size_t i = 0; i < json_array_size(lb); i++)
        assert_true(json_real_value(json_object_get(json_array_get(lb, i), "energy_mj")) <= target);
    /* the candidates the search measured after training carry those figures in the
     * store, so `nas report` shows them as measured (or estimated by the meter), not predicted */
    long measured = 0;
    json_decref(r);
    snprintf(cmd, sizeof cmd, "report p --db %s/p.db --json --no-files 2>/dev/null", dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    r = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(r);
    lb = json_object_get(r, "leaderboard");
    json_t *un = json_object_get(r, "unranked");
    for (int k = 0; k < 2; k++) {
        json_t *arr = k ? un : lb;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            json_t *e = json_object_get(json_array_get(arr, i), "energy_mj");
            if (!json_is_object(e))
                continue;
            measured++;
            assert_string_not_equal(json_string_value(json_object_get(e, "quality")), "predicted");
            assert_true(json_real_value(json_object_get(e, "value")) > 0);
        }
    }
    assert_true(measured >= 1);
    json_decref(r);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(usage_errors_exit_2_and_name_the_option),
        cmocka_unit_test(tiny_search_keeps_its_budget_and_resumes),
        cmocka_unit_test(predictor_screens_and_best_meets_the_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
