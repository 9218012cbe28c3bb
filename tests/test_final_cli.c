/* test_final_cli.c — final training after `nas search`: the top K trained
 * again on the training split and tested once; the report gives each one's
 * proxy, final validation and test accuracy and its joules apart from the
 * search budget; the model chosen by final validation is the one exported. */
#include "tests/testutil.h"
#include "base/nas.h"

#include <jansson.h>
#include <math.h>

#define FINAL "search --data mnist --subset 200 --val-count 200 --epochs 1 --stages 1 --max-width 0.25 " \
              "--threads 1 --bench-seconds 0.02 --budget-evals 3 --seed 4 --final-top 2 --final-epochs 1 " \
              "--final-subset 600"

static double num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void the_top_k_are_trained_again_and_tested(void **state)
{
    (void)state;
    tu_need_mnist();
    char *out = NULL;
    assert_int_equal(tu_run_nas(FINAL " --json 2>/dev/null", &out), 0);
    json_t *a = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(a);
    json_t *f = json_object_get(a, "final");
    assert_true(json_is_object(f));
    assert_int_equal(json_integer_value(json_object_get(f, "train_images")), 600);
    assert_true(json_integer_value(json_object_get(f, "test_images")) > 0);
    assert_true(num(f, "joules") > 0);
    assert_non_null(strstr(json_string_value(json_object_get(f, "budget")), "not counted"));
    json_t *models = json_object_get(f, "models");
    size_t n = json_array_size(models);
    assert_true(n >= 1 && n <= 2);
    int chosen = -1;
    double best_reward = -1;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(models, i);
        for (int k = 0; k < 3; k++) {
            const char *key = k == 0 ? "proxy_accuracy" : k == 1 ? "val_accuracy" : "test_accuracy";
            double v = num(m, key);
            assert_true(v >= 0 && v <= 1);
        }
        assert_int_equal(json_integer_value(json_object_get(m, "epochs")), 1);
        assert_true(num(m, "joules") > 0);
        json_t *cls = json_object_get(m, "test_accuracy_per_class");
        assert_int_equal(json_object_size(cls), 10);
        if (json_is_true(json_object_get(m, "chosen"))) {
            assert_int_equal(chosen, -1);
            chosen = (int)i;
        }
        best_reward = fmax(best_reward, num(m, "reward"));
    }
    assert_true(chosen >= 0);
    /* chosen by the objective on final validation accuracy */
    assert_true(num(json_array_get(models, (size_t)chosen), "reward") == best_reward);
    /* the search's leaderboard and budget are the search's: final training is apart */
    json_t *en = json_object_get(a, "energy");
    assert_true(num(en, "joules") > 0);
    json_decref(a);
}

/* --final-distill: the search's most accurate candidate is trained first and
 * teaches the top; its joules count in final training's. When the most
 * accurate is the top itself, nothing is distilled and the search says so. */
static void final_training_can_distill(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], args[1024], path[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    char *out = NULL;
    assert_int_equal(tu_run_nas(FINAL " --kd-alpha 2 2>&1", &out), 2);
    assert_non_null(strstr(out, "kd-alpha"));
    free(out);
    /* a steep energy penalty, so the top is likely a cheap net and the most
     * accurate another (seed 4: #0 teaches #2; the meter's noise may change it) */
    snprintf(args, sizeof args, "search --data mnist --subset 1000 --val-count 200 --epochs 1 --stages 1 "
             "--max-width 0.25 --threads 1 --bench-seconds 0.02 --budget-evals 4 --seed 4 --target-mj 0.3 "
             "--w -1 --final-top 1 --final-epochs 1 --final-subset 600 --final-distill --kd-temp 3 --json "
             "2>%s/err", dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    json_t *a = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(a);
    json_t *f = json_object_get(a, "final"), *t = json_object_get(f, "teacher");
    json_t *m = json_array_get(json_object_get(f, "models"), 0);
    snprintf(path, sizeof path, "%s/err", dir);
    char *err = NULL;
    size_t elen = 0;
    nas_err e;
    assert_int_equal(nas_read_file(path, &err, &elen, &e), NAS_OK);
    if (json_is_null(t)) {
        assert_non_null(strstr(err, "no distillation"));
    } else {
        assert_true(json_is_object(t));
        assert_true(json_integer_value(json_object_get(t, "id")) != json_integer_value(json_object_get(m, "id")));
        assert_true(num(t, "test_accuracy") >= 0 && num(t, "test_accuracy") <= 1);
        assert_true(num(t, "kd_temperature") == 3 && num(t, "kd_alpha") == 0.7);
        assert_true(num(f, "joules") > num(m, "joules") + 0.5 * num(t, "joules"));
        assert_non_null(strstr(err, "the teacher first"));
    }
    nas_free(err);
    json_decref(a);
    tu_rmtree(dir);
}

/* A job's prune: section (here its flags): the exported model pruned after
 * the export, into EXPORT_DIR/pruned, as `nas prune RUN` does. */
static void the_exported_model_can_be_pruned(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], args[1024];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    char *out = NULL;
    assert_int_equal(tu_run_nas(FINAL " --prune-keep 0.5 --prune-target-macs 1000 2>&1", &out), 2);
    assert_non_null(strstr(out, "one at a time"));
    free(out);
    assert_int_equal(tu_run_nas(FINAL " --final-top 0 --prune-keep 0.5 2>&1", &out), 2);
    assert_non_null(strstr(out, "--final-top 1 or more"));
    free(out);
    snprintf(args, sizeof args, FINAL " --final-top 1 --db %s/p.db --name p --export-dir %s/exp --prune-keep 0.5 "
             "--prune-epochs 1 2>&1", dir, dir);
    int rc = tu_run_nas(args, &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    double m0 = 0, m1 = 0;
    const char *at = strstr(out, "macs_before");
    assert_non_null(at);
    assert_int_equal(sscanf(at, "macs_before %lf\nmacs_after %lf", &m0, &m1), 2);
    assert_true(m1 < m0);
    assert_non_null(strstr(out, "test_acc_after"));
    assert_non_null(strstr(out, "final training recorded test accuracy"));
    free(out);
    snprintf(args, sizeof args, "test -s %s/exp/pruned/pruned.onnx && test -s %s/exp/pruned/pruned.weights && "
             "test -s %s/exp/p-final.onnx", dir, dir, dir);
    assert_int_equal(system(args), 0);
    /* with --json the pruning's figures are in the search's one object */
    snprintf(args, sizeof args, FINAL " --final-top 1 --db %s/q.db --name q --export-dir %s/exq --prune-keep 0.5 "
             "--prune-epochs 1 --json 2>/dev/null", dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(j);
    json_t *pr = json_object_get(j, "prune");
    assert_non_null(pr);
    assert_true(json_real_value(json_object_get(pr, "macs_after")) < json_real_value(json_object_get(pr, "macs_before")));
    assert_true(json_is_real(json_object_get(pr, "test_acc_after")));
    assert_non_null(strstr(json_string_value(json_object_get(pr, "onnx")), "pruned.onnx"));
    json_decref(j);
    tu_rmtree(dir);
}

/* With a run store, the model exported at the end is the finally trained one:
 * its model card carries the test accuracy that the report printed; with
 * --int8 its quantized model lies beside it and passes the ONNX checker. */
static void the_exported_model_is_the_finally_trained_one(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], args[1024];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, FINAL " --final-top 1 --db %s/f.db --name f --export-dir %s/exp --int8 --calib-images 64 2>&1", dir, dir);
    char *out = NULL;
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "final training (the top 1 again, on 600 images"));
    assert_non_null(strstr(out, "not counted in the search's --budget-joules"));
    assert_non_null(strstr(out, "exported the finally trained model to"));
    assert_null(strstr(out, "exported the chosen model to"));
    assert_non_null(strstr(out, "f-final.int8.onnx: float32 "));
    /* the chosen row: "  id  proxy  val  test ..." */
    const char *row = strstr(out, "[chosen]");
    assert_non_null(row);
    const char *line = row;
    while (line > out && line[-1] != '\n')
        line--;
    long id;
    double proxy, val, test;
    assert_int_equal(sscanf(line, "%ld %lf %lf %lf", &id, &proxy, &val, &test), 4);
    free(out);
    char path[256], *card = NULL;
    snprintf(path, sizeof path, "%s/exp/f-final.model-card.md", dir);
    FILE *fp = fopen(path, "r");
    if (!fp)
        fail_msg("%s is missing", path);
    card = calloc(1, 1 << 16);
    assert_non_null(card);
    size_t len = fread(card, 1, (1 << 16) - 1, fp);
    fclose(fp);
    card[len] = '\0';
    char acc[32];
    snprintf(acc, sizeof acc, "| accuracy | %.2f%%", 100 * test);
    if (!strstr(card, acc))
        fail_msg("the model card does not carry the final test accuracy %s:\n%s", acc, card);
    free(card);
    snprintf(args, sizeof args, "test -s %s/exp/f-final.onnx && /usr/bin/python3 tests/onnx_check.py %s/exp/f-final.onnx "
             ">/dev/null", dir, dir);
    assert_int_equal(system(args), 0);
    snprintf(args, sizeof args, "test -s %s/exp/f-final.int8.onnx && /usr/bin/python3 tests/onnx_check.py "
             "%s/exp/f-final.int8.onnx >/dev/null", dir, dir);
    assert_int_equal(system(args), 0);

    /* the run store keeps final training: `nas report` shows it beside the
     * proxy figures, and `nas export RUN` writes the finally trained weights */
    snprintf(args, sizeof args, "report f --db %s/f.db --no-files 2>&1", dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    char want[160];
    snprintf(want, sizeof want, "test accuracy %.2f%% after final training", 100 * test);
    if (!strstr(out, "final training (trained again") || !strstr(out, want))
        fail_msg("nas report does not show the final training (%s):\n%s", want, out);
    free(out);
    snprintf(args, sizeof args, "export f --db %s/f.db --out %s/e 2>&1", dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    free(out);
    snprintf(args, sizeof args, "grep -q 'after the final training' %s/e/f-c%ld.model-card.md && grep -q '| accuracy | "
             "%.2f%%' %s/e/f-c%ld.model-card.md", dir, id, 100 * test, dir, id);
    if (system(args) != 0)
        fail_msg("the export of run f's candidate %ld does not carry its final test accuracy: %s", id, args);

    /* the run store keeps the finally trained model: `nas prune RUN` prunes it
     * on the run's own split, and before pruning it scores what final training
     * recorded (the same weights; nas's inference path, so within a few images) */
    snprintf(args, sizeof args, "prune f --db %s/f.db --keep 0.5 --epochs 1 --subset 200 --threads 1 --out %s/p 2>&1",
             dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "as final training left it"));
    const char *tb = strstr(out, "test_acc_before ");
    double before = NAN, after = NAN, recorded = NAN;
    assert_non_null(tb);
    assert_int_equal(sscanf(tb, "test_acc_before %lf\ntest_acc_after %lf", &before, &after), 2);
    const char *rec = strstr(out, "final training recorded test accuracy ");
    assert_non_null(rec);
    assert_int_equal(sscanf(rec, "final training recorded test accuracy %lf", &recorded), 1);
    if (fabs(recorded - test) > 1e-4 || fabs(before - test) > 3e-3)
        fail_msg("final test %.4f, recorded %.4f, scored before pruning %.4f:\n%s", test, recorded, before, out);
    assert_true(after >= 0 && after <= 1);
    free(out);
    snprintf(args, sizeof args, "test -s %s/p/pruned.onnx && test -s %s/p/pruned.weights", dir, dir);
    assert_int_equal(system(args), 0);
    /* a candidate never finally trained is pruned from its proxy weights, and says so */
    snprintf(args, sizeof args, "prune f --db %s/f.db --candidate 0 --keep 0.5 --epochs 0 --out %s/p0 2>&1", dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_true(strstr(out, "proxy-trained weights") || strstr(out, "as final training left it"));
    free(out);
    snprintf(args, sizeof args, "prune nosuchrun --db %s/f.db --keep 0.5 2>&1", dir);
    assert_int_not_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "nosuchrun"));
    free(out);
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_top_k_are_trained_again_and_tested),
        cmocka_unit_test(final_training_can_distill),
        cmocka_unit_test(the_exported_model_can_be_pruned),
        cmocka_unit_test(the_exported_model_is_the_finally_trained_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
