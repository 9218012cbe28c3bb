/* test_pred_cli.c — `nas calibrate` and `nas predict` end to end, measuring
 * through --measure-cmd with a stand-in device (a small script that derives
 * latency and energy from the spec file it is handed). */
#include "evaluator/ev.h"
#include "predictor/pred.h"
#include "tests/testutil.h"

#include <sys/stat.h>

static char dir[64], script[128], pred[128];

/* The stand-in device: roughly MACs over a rate plus a cost per block, from
 * the spec JSON alone (it knows nothing of nas's cost model). */
static const char *device_py =
    "#!/usr/bin/python3\n"
    "import json, sys\n"
    "s = json.load(open(sys.argv[1]))\n"
    "hw = s['resolution'] // s['stem']['stride']\n"
    "c = s['stem']['channels']\n"
    "t = 0.02 + 9 * s['in_channels'] * c * hw * hw / 4e9\n"
    "for g in s['stages']:\n"
    "    for r in range(g['repeats']):\n"
    "        st = g['stride'] if r == 0 else 1\n"
    "        e = round(c * g['expand'])\n"
    "        hw_out = (hw + st - 1) // st\n"
    "        macs = c * e * hw * hw * (g['expand'] != 1) + g['kernel'] ** 2 * e * hw_out ** 2 \\\n"
    "               + e * g['channels'] * hw_out ** 2\n"
    "        t += macs / (2e9 * min(1.0, e / 96 + 0.2)) + 0.004\n"
    "        c, hw = g['channels'], hw_out\n"
    "print('latency_ms=%.6f' % t)\n"
    "print('latency_spread=0.01')\n"
    "print('energy_mj=%.6f' % (t * 18 + 0.05))\n"
    "print('energy_source=stand-in')\n"
    "print('energy_quality=estimated')\n";

static int setup(void **state)
{
    (void)state;
    if (!tu_tmpdir(dir, sizeof dir))
        return -1;
    snprintf(script, sizeof script, "%s/device.py", dir);
    snprintf(pred, sizeof pred, "%s/pred.json", dir);
    FILE *f = fopen(script, "w");
    if (!f)
        return -1;
    fputs(device_py, f);
    fclose(f);
    return chmod(script, 0755);
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(dir);
    return 0;
}

static void calibrate_with_a_measuring_command_then_predict(void **state)
{
    (void)state;
    char args[1024], *out = NULL;
    snprintf(args, sizeof args,
             "calibrate --samples 48 --max-samples 60 --folds 4 --adaptive-rounds 1 --out %s "
             "--measure-cmd '%s {spec}' --json",
             pred, script);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "\"latency_ms\": {\"kept\":"));
    assert_non_null(strstr(out, "\"within10\""));
    assert_non_null(strstr(out, "\"kendall_tau\""));
    assert_non_null(strstr(out, "\"meter\": \"stand-in\""));
    free(out);

    /* a network of the calibrated space, predicted and measured */
    snprintf(args, sizeof args, "space sample -n 1 --seed 5 --resolution 28 --in-channels 1 --classes 10 "
                                "--json | /usr/bin/python3 -c 'import json,sys; "
                                "json.dump(json.load(sys.stdin)[\"samples\"][0][\"spec\"], open(\"%s/net.json\", \"w\"))'",
             dir);
    assert_int_equal(tu_run_nas(args, NULL), 0);
    snprintf(args, sizeof args, "predict %s/net.json --predictor %s --measure-cmd '%s {spec}' --json 2>/dev/null",
             dir, pred, script);
    assert_int_equal(tu_run_nas(args, &out), 0);
    double lat = 0, en = 0, mlat = 0, men = 0;
    const char *p = strstr(out, "\"latency_ms\": ");
    assert_non_null(p);
    lat = atof(p + 14);
    p = strstr(out, "\"energy_mj\": ");
    assert_non_null(p);
    en = atof(p + 13);
    assert_non_null(strstr(out, "\"energy_quality\": \"estimated\""));
    p = strstr(out, "\"measured\": {\"latency_ms\": ");
    assert_non_null(p);
    mlat = atof(p + 27);
    p = strstr(p, "\"energy_mj\": ");
    assert_non_null(p);
    men = atof(p + 13);
    printf("# predicted %.4f ms %.4f mJ, measured %.4f ms %.4f mJ\n", lat, en, mlat, men);
    assert_true(lat > 0 && en > 0);
    assert_true(lat / mlat > 0.8 && lat / mlat < 1.25);   /* 48 networks: a rough fit, not a wild one */
    assert_true(en / men > 0.8 && en / men < 1.25);
    free(out);

    /* human output names the kind of model and the energy's quality */
    snprintf(args, sizeof args, "predict %s/net.json --predictor %s 2>&1", dir, pred);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "predicted, estimated"));
    free(out);
}

static void predictor_from_other_hardware_warns(void **state)
{
    (void)state;
    char args[1024], *out = NULL;
    /* the same predictor, as if fit with the built-in benchmark on another CPU */
    snprintf(args, sizeof args,
             "sh -c \"sed -e 's/\\\"cpu_model\\\": \\\"[^\\\"]*\\\"/\\\"cpu_model\\\": \\\"Imaginary CPU 9000\\\"/' "
             "-e 's/\\\"measure\\\": \\\"[^\\\"]*\\\"/\\\"measure\\\": \\\"builtin\\\"/' %s > %s/other.json\"",
             pred, dir);
    assert_int_equal(system(args), 0);
    snprintf(args, sizeof args, "predict mobilenetv2 --predictor %s/other.json 2>&1", dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "warning"));
    assert_non_null(strstr(out, "other hardware"));
    assert_non_null(strstr(out, "Imaginary CPU 9000"));
    /* mobilenetv2 is 224x224, the predictor knows 28x28 */
    assert_non_null(strstr(out, "outside"));
    free(out);
    snprintf(args, sizeof args, "predict mobilenetv2 --predictor %s/other.json --json 2>/dev/null", dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "\"other_hardware\": true"));
    free(out);
}

/* The built-in path: the evaluator's benchmark and meter, end to end, small. */
static void builtin_measuring_calibrates_and_measures(void **state)
{
    (void)state;
    char args[1024], *out = NULL;
    snprintf(args, sizeof args,
             "calibrate --samples 20 --folds 2 --adaptive-rounds 0 --no-reference --repeats 2 "
             "--min-seconds 0.01 --max-width 0.5 --holdout 5 --out %s/builtin.json --json 2>/dev/null", dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    /* the engine's kernel level is part of what was measured */
    char want[96];
    snprintf(want, sizeof want, "\"measure\": \"builtin:%s\"", ev_kernels());
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "\"samples\": 20"));
    assert_non_null(strstr(out, "\"latency_stat\": \"p10\""));
    assert_non_null(strstr(out, "\"passes\": 2"));
    assert_non_null(strstr(out, "\"retest\": {\"n\": 20"));   /* both passes of every network */
    assert_non_null(strstr(out, "\"holdout\": {\"latency_ms\": {\"n\": 5"));
    free(out);
    /* a refit measures nothing: it is quick and says so */
    snprintf(args, sizeof args, "calibrate --refit %s/builtin.json --folds 2 --out %s/refit.json 2>/dev/null", dir,
             dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    assert_non_null(strstr(out, "refit on 20 networks"));
    assert_non_null(strstr(out, "measuring 0.0 s"));
    assert_non_null(strstr(out, "latency figure: p10"));
    free(out);
    snprintf(args, sizeof args, "predict %s/net.json --predictor %s/builtin.json --measure --json 2>/dev/null",
             dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 0);
    const char *p = strstr(out, "\"measured\": {\"latency_ms\": ");
    assert_non_null(p);
    assert_true(atof(p + 27) > 0);
    /* the energy carries the meter's source and quality */
    assert_non_null(strstr(p, "\"energy_source\": \""));
    assert_non_null(strstr(p, "\"energy_quality\": \""));
    free(out);
}

/* {onnx}: the command gets an ONNX export of the network. */
static void measuring_command_gets_an_onnx_model(void **state)
{
    (void)state;
    char args[1024], *out = NULL;
    snprintf(args, sizeof args,
             "predict %s/net.json --predictor %s --measure-cmd "
             "'test -s {onnx} && head -c 64 {onnx} | grep -q nas && echo latency_ms=$(stat -c %%s {onnx}) "
             "&& echo energy_mj=1' --json 2>/dev/null",
             dir, pred);
    assert_int_equal(tu_run_nas(args, &out), 0);
    const char *p = strstr(out, "\"measured\": {\"latency_ms\": ");
    assert_non_null(p);
    assert_true(atof(p + 27) > 1000);   /* the model's size in bytes: weights are in it */
    free(out);
    /* and it is gone afterwards */
    assert_true(system("ls -d /tmp/nas-onnx-* >/dev/null 2>&1") != 0);
}

/* A calibrate job passes its keys on: median latency, one pass. */
static void calibrate_job_runs_with_its_keys(void **state)
{
    (void)state;
    char path[256], cmd[1024], pred_path[256];
    snprintf(path, sizeof path, "%s/cal.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("job: calibrate\nname: tiny\nspace:\n  max_width: 0.5\ncalibrate:\n  samples: 20\n  repeats: 2\n"
          "  folds: 2\n  min_seconds: 0.01\n  passes: 1\n  latency_stat: median\n", f);
    fclose(f);
    char abs_bin[512];
    assert_non_null(realpath(tu_nas_bin(), abs_bin));
    snprintf(cmd, sizeof cmd, "cd %s && %s run cal.yaml > run.out 2>&1", dir, abs_bin);
    assert_int_equal(system(cmd), 0);
    snprintf(pred_path, sizeof pred_path, "%s/tiny.predictor.json", dir);
    char *text = NULL;
    nas_err err;
    assert_int_equal(nas_read_file(pred_path, &text, NULL, &err), NAS_OK);
    assert_non_null(strstr(text, "\"latency_stat\": \"median\""));
    assert_non_null(strstr(text, "\"latency_passes\": [\n"));
    nas_free(text);
    pred_model *m = NULL;
    assert_int_equal(pred_load(pred_path, &m, &err), NAS_OK);
    int n;
    const pred_sample *rows = pred_model_measurements(m, &n);
    assert_true(n >= 20 && n <= 30);   /* 20, and up to half again near the worst predicted */
    assert_int_equal(rows[0].passes, 1);
    pred_free(m);
}

static void usage_and_failures(void **state)
{
    (void)state;
    char args[1024], *out = NULL;
    assert_int_equal(tu_run_nas("calibrate --samples 3 2>/dev/null", NULL), 2);
    assert_int_equal(tu_run_nas("calibrate --measure-cmd 'echo hi' 2>/dev/null", NULL), 2);
    assert_int_equal(tu_run_nas("calibrate --bogus 2>/dev/null", NULL), 2);
    assert_int_equal(tu_run_nas("calibrate --latency-stat mean 2>/dev/null", NULL), 2);
    assert_int_equal(tu_run_nas("calibrate --passes 4 2>/dev/null", NULL), 2);
    snprintf(args, sizeof args, "calibrate --refit %s/none.json --out %s/y.json 2>&1", dir, dir);
    assert_int_equal(tu_run_nas(args, &out), 2);
    assert_non_null(strstr(out, "none.json"));
    free(out);
    assert_int_equal(tu_run_nas("calibrate --help", NULL), 0);
    assert_int_equal(tu_run_nas("predict --help", NULL), 0);
    assert_int_equal(tu_run_nas("predict 2>/dev/null", NULL), 2);
    /* a failing measuring command stops the calibration with its exit status */
    snprintf(args, sizeof args, "calibrate --samples 40 --out %s/x.json --measure-cmd 'exit 4; {spec}' 2>&1", dir);
    assert_int_equal(tu_run_nas(args, &out), 1);
    assert_non_null(strstr(out, "exit status 4"));
    free(out);
    snprintf(args, sizeof args, "predict mobilenetv2 --predictor %s/none.json 2>&1", dir);
    assert_int_equal(tu_run_nas(args, &out), 2);
    assert_non_null(strstr(out, "nas calibrate"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(calibrate_with_a_measuring_command_then_predict),
        cmocka_unit_test(predictor_from_other_hardware_warns),
        cmocka_unit_test(builtin_measuring_calibrates_and_measures),
        cmocka_unit_test(measuring_command_gets_an_onnx_model),
        cmocka_unit_test(calibrate_job_runs_with_its_keys),
        cmocka_unit_test(usage_and_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
