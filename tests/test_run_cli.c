/* test_run_cli.c — `nas run JOB` and the export of a searched run: a job with
 * a bad key exits 2 naming the file, line and key; a tiny search job runs with
 * the job's settings (its run store, name, budgets, seed), saves them whole in
 * the run (what `nas resume` rebuilds them from), exports its chosen model to
 * the job's export folder at the end; and `nas export RUN --top 1` writes the
 * trained network of that run as an ONNX file that Debian's onnx checker
 * accepts, with its spec and model card beside it. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include "base/nas.h"
#include "evaluator/ev.h"
#include "runs/runs.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void job_errors_name_line_and_key(void **state)
{
    (void)state;
    char dir[64], path[128], cmd[512];
    char *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    write_text(path, "job: search\nobjective:\n  target_mj: 2\nstrategy:\n  population: 0\n");
    snprintf(cmd, sizeof cmd, "run %s 2>&1", path);
    assert_int_equal(tu_run_nas(cmd, &out), 2);
    assert_non_null(strstr(out, "bad.yaml:5"));
    assert_non_null(strstr(out, "strategy.population"));
    free(out);
    write_text(path, "job: search\nproxy:\n  epochs: 1\n  colour: red\n");
    assert_int_equal(tu_run_nas(cmd, &out), 2);
    assert_non_null(strstr(out, "colour"));
    free(out);
    snprintf(cmd, sizeof cmd, "run %s/missing.yaml 2>&1", dir);
    assert_int_equal(tu_run_nas(cmd, &out), 2);
    assert_non_null(strstr(out, "missing.yaml"));
    free(out);
    assert_int_equal(tu_run_nas("run 2>&1", &out), 2);
    free(out);
    tu_rmtree(dir);
}

/* The exported candidate (its final training's weights) in ONNX Runtime, fed
 * test digits normalised with the mean and std its metadata states, scores
 * what nas's own engine scores with those weights on the same digits as the
 * search normalised them (within 1 point); the metadata's numbers are the
 * training split's. */
static void exported_model_scores_in_ort_with_its_normalisation(const char *dir, const char *db_path)
{
    runs_db *db = NULL;
    nas_err err = {0};
    runs_report rep;
    int64_t id;
    assert_int_equal(runs_open(db_path, RUNS_OPEN_READONLY, &db, &err), NAS_OK);
    assert_int_equal(runs_run_find(db, "tiny", &id, &err), NAS_OK);
    assert_int_equal(runs_report_build(db, id, &rep, &err), NAS_OK);
    assert_true(rep.chosen >= 0);
    const runs_cand *cand = &rep.cands[rep.chosen];
    char cmd[2048], onnx[256];
    snprintf(cmd, sizeof cmd, "export tiny --db %s --candidate %d --out %s/norm >/dev/null 2>&1", db_path,
             cand->seq, dir);
    assert_int_equal(tu_run_nas(cmd, NULL), 0);
    snprintf(onnx, sizeof onnx, "%s/norm/tiny-c%d.onnx", dir, cand->seq);

    /* the metadata, read by Debian's onnx */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import onnx; d={p.key: p.value for p in "
             "onnx.load('%s').metadata_props}; print(d['nas.input_mean'], d['nas.input_std'])\"", onnx);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    double mean = NAN, sd = NAN;
    assert_int_equal(fscanf(p, "%lf %lf", &mean, &sd), 2);
    assert_int_equal(pclose(p), 0);

    /* the digits as the job loaded them (its seed, split and subset), with more test images */
    ev_data data;
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.val_count = 100;
    o.train_limit = 1500;
    o.test_limit = 1000;
    o.seed = 9;
    assert_int_equal(ev_data_load("mnist", &o, &data, &err), NAS_OK);
    assert_true(fabs(mean - data.mean[0]) < 1e-5 && fabs(sd - data.std[0]) < 1e-5);

    /* nas's own accuracy: the stored weights in the engine */
    space_spec spec;
    space_net arch;
    ev_net *net = NULL;
    void *blob = NULL;
    size_t len = 0;
    int found = 0;
    assert_int_equal(space_spec_from_json(cand->spec_json, "chosen", &spec, &err), NAS_OK);
    assert_int_equal(space_resolve(&spec, &arch, &err), NAS_OK);
    ev_net_opts no = {.batch = 100, .training = 0, .threads = 1, .seed = 0};
    assert_int_equal(ev_net_create(&arch, &no, &net, &err), NAS_OK);
    /* the weights the export took: the final training's, as the candidate was finally trained */
    runs_final fin;
    assert_int_equal(runs_final_get(db, cand->id, &fin, &blob, &len, &found, &err), NAS_OK);
    assert_true(found);
    assert_int_equal(ev_net_weights_unpack(net, blob, len, &err), NAS_OK);
    double nas_acc = -1;
    assert_int_equal(ev_evaluate(net, &data.test, &nas_acc, &err), NAS_OK);

    /* ORT's: raw [0,1] pixels back from the loader's, then the metadata's normalisation */
    const ev_split *t = &data.test;
    size_t per = (size_t)t->h * t->w * t->c;
    float *x = malloc((size_t)t->n * per * sizeof(float));
    float *logits = malloc((size_t)t->n * 10 * sizeof(float));
    assert_true(x && logits && t->c == 1);
    for (size_t i = 0; i < (size_t)t->n * per; i++)
        x[i] = (float)(((double)t->images[i] * data.std[0] + data.mean[0] - mean) / sd);
    char in[256], out[256];
    snprintf(in, sizeof in, "%s/norm/in.f32", dir);
    snprintf(out, sizeof out, "%s/norm/out.f32", dir);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(x, sizeof(float), (size_t)t->n * per, f), (size_t)t->n * per);
    fclose(f);
    snprintf(cmd, sizeof cmd, "node tests/ort_run.js --threads 1 '%s' '%s' %d '%s' >/dev/null", onnx, in, t->n, out);
    assert_int_equal(system(cmd), 0);
    f = fopen(out, "rb");
    assert_non_null(f);
    assert_int_equal(fread(logits, sizeof(float), (size_t)t->n * 10, f), (size_t)t->n * 10);
    fclose(f);
    int right = 0;
    for (int i = 0; i < t->n; i++) {
        int best = 0;
        for (int k = 1; k < 10; k++)
            if (logits[i * 10 + k] > logits[i * 10 + best])
                best = k;
        right += best == t->labels[i];
    }
    double ort_acc = (double)right / t->n;
    print_message("test accuracy: nas %.4f, ONNX Runtime with the metadata's mean/std %.4f\n", nas_acc, ort_acc);
    assert_true(nas_acc > 0.25);   /* chance is 0.1: agreement below says the normalisation is right */
    assert_true(fabs(ort_acc - nas_acc) <= 0.01);
    free(x);
    free(logits);
    nas_free(blob);
    ev_net_free(net);
    ev_data_free(&data);
    runs_report_free(&rep);
    runs_close(db);
}

static void search_job_runs_saves_its_settings_and_exports(void **state)
{
    (void)state;
    tu_need_mnist();
    char dir[64], path[128], cmd[1024], text[1024];
    char *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/job.json", dir);
    snprintf(text, sizeof text,
             "{\"job\": \"search\", \"name\": \"tiny\", \"seed\": 9, \"threads\": 1,\n"
             " \"data\": {\"set\": \"mnist\", \"val_count\": 100, \"test_limit\": 100},\n"
             " \"space\": {\"max_width\": 0.25, \"stages\": 1},\n"
             " \"strategy\": {\"kind\": \"random\"},\n"
             " \"objective\": {\"target_mj\": 3.0},\n"
             " \"budget\": {\"evals\": 3},\n"
             " \"proxy\": {\"epochs\": 1, \"subset\": 1500, \"batch\": 32},\n"
             " \"final\": {\"top\": 1, \"epochs\": 2, \"subset\": 1200, \"batch\": 32},\n"
             " \"output\": {\"db\": \"%s/j.db\", \"export\": \"%s/exp\"}}\n", dir, dir);
    write_text(path, text);
    snprintf(cmd, sizeof cmd, "run %s 2>&1", path);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    /* the job's final section: the chosen one trained again and tested, then exported */
    assert_non_null(strstr(out, "final training (the top 1 again, on 1200 images"));
    assert_non_null(strstr(out, "exported the finally trained model to"));
    free(out);

    /* the run's settings: the job's, whole */
    char db_path[128];
    snprintf(db_path, sizeof db_path, "%s/j.db", dir);
    runs_db *db = NULL;
    nas_err err = {0};
    assert_int_equal(runs_open(db_path, RUNS_OPEN_READONLY, &db, &err), NAS_OK);
    int64_t id;
    assert_int_equal(runs_run_find(db, "tiny", &id, &err), NAS_OK);
    runs_run run;
    assert_int_equal(runs_run_get(db, id, &run, &err), NAS_OK);
    assert_int_equal(run.n_done, 3);
    assert_int_equal((int)run.seed, 9);
    json_t *s = json_loads(run.settings_json, 0, NULL);
    json_t *set = json_object_get(s, "settings");
    assert_true(json_is_object(set));
    assert_string_equal(json_string_value(json_object_get(set, "strategy")), "random");
    assert_int_equal(json_integer_value(json_object_get(set, "subset")), 1500);
    assert_int_equal(json_integer_value(json_object_get(set, "val-count")), 100);
    assert_true(json_real_value(json_object_get(set, "target-mj")) == 3.0);
    assert_true(json_real_value(json_object_get(set, "max-width")) == 0.25);
    assert_int_equal(json_integer_value(json_object_get(set, "final-subset")), 1200);
    assert_int_equal(json_integer_value(json_object_get(set, "final-epochs")), 2);
    json_decref(s);
    runs_run_free(&run);
    runs_close(db);

    /* the export at the end, and nas export of the same run */
    snprintf(cmd, sizeof cmd, "ls %s/exp/*.onnx %s/exp/*.spec.json %s/exp/*.model-card.md >/dev/null", dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "export tiny --db %s --top 1 --out %s/top 2>&1", db_path, dir);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "ls %s/top/tiny-c*.spec.json %s/top/tiny-c*.model-card.md >/dev/null && "
             "/usr/bin/python3 tests/onnx_check.py %s/top/tiny-c*.onnx >/dev/null", dir, dir, dir);
    assert_int_equal(system(cmd), 0);

    /* a finished run resumed: nothing more to do, nothing evaluated again */
    snprintf(cmd, sizeof cmd, "resume tiny --db %s --json 2>/dev/null", db_path);
    assert_int_equal(tu_run_nas(cmd, &out), 0);
    json_t *r = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "evals")), 3);
    json_decref(r);
    exported_model_scores_in_ort_with_its_normalisation(dir, db_path);
    tu_rmtree(dir);
}

/* A search spread over 3 Open MPI ranks (rank 0 and 2 workers) stores every
 * candidate once, and `nas resume` under mpirun (settings sent from rank 0 to
 * the workers) continues it with a larger budget. */
static void search_and_resume_under_mpirun(void **state)
{
    (void)state;
    struct stat sb;
    if (stat("data/mnist", &sb) != 0 || system("command -v mpirun >/dev/null") != 0) {
        print_message("no data/mnist or no mpirun: skipping\n");
        skip();
    }
    char dir[64], db_path[128], cmd[2048], mpi[256];
    char *out = NULL;
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    snprintf(db_path, sizeof db_path, "%s/m.db", dir);
    /* containers without ssh: an empty agent lets mpirun start local ranks */
    setenv("OMPI_MCA_plm_rsh_agent", "", 0);
    snprintf(mpi, sizeof mpi, "timeout -k 5 600 mpirun --oversubscribe --bind-to none -np 3 %s -x ASAN_OPTIONS=detect_leaks=0",
             geteuid() == 0 ? "--allow-run-as-root" : "");
    snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s %s search --data mnist --budget-evals 4 --subset 300 "
             "--epochs 1 --threads 1 --stages 1 --max-width 0.25 --val-count 100 --test-limit 100 --final-top 0 "
             "--bench-seconds 0.02 --db %s --name m --export-dir %s/exp > %s/out.txt 2>&1", mpi, tu_nas_bin(), db_path, dir, dir);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/out.txt", dir);
        (void)system(cmd);
        fail_msg("nas search under mpirun failed");
    }
    for (int round = 0; round < 2; round++) {
        runs_db *db = NULL;
        nas_err err = {0};
        assert_int_equal(runs_open(db_path, RUNS_OPEN_READONLY, &db, &err), NAS_OK);
        assert_int_equal(runs_check(db, &err), NAS_OK);
        int64_t id;
        assert_int_equal(runs_run_find(db, "m", &id, &err), NAS_OK);
        runs_cand *c = NULL;
        int n = 0;
        assert_int_equal(runs_cand_list(db, id, ~0u, &c, &n, &err), NAS_OK);
        assert_int_equal(n, round == 0 ? 4 : 6);
        for (int i = 0; i < n; i++) {
            assert_int_equal(c[i].seq, i);
            assert_int_equal(c[i].status, RUNS_DONE);
            assert_int_equal(c[i].attempts, 1);   /* each evaluated exactly once */
            for (int j = 0; j < i; j++)
                assert_string_not_equal(c[i].genome, c[j].genome);
        }
        runs_cands_free(c, n);
        runs_close(db);
        if (round == 1)
            break;
        snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 %s %s resume m --db %s --budget-evals 6 --json "
                 "> %s/out.txt 2>&1", mpi, tu_nas_bin(), db_path, dir);
        if (system(cmd) != 0) {
            snprintf(cmd, sizeof cmd, "cat %s/out.txt", dir);
            (void)system(cmd);
            fail_msg("nas resume under mpirun failed");
        }
    }
    (void)out;
    tu_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_errors_name_line_and_key),
        cmocka_unit_test(search_job_runs_saves_its_settings_and_exports),
        cmocka_unit_test(search_and_resume_under_mpirun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
