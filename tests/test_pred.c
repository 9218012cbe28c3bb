/* test_pred.c — the predictor's features against hand-computed MobileNetV2
 * figures and the cost model, its metrics against hand-computed values, the
 * stratified sampler's coverage, and the external measuring command's
 * parsing and failures. The XGBoost side is in test_pred_fit.c. */
#include "tests/testutil.h"
#include "predictor/pred.h"

#include <math.h>
#include <sys/stat.h>

static void mobilenetv2(space_net *net)
{
    space_spec spec;
    nas_err err;
    assert_int_equal(space_preset("mobilenetv2", &spec, &err), NAS_OK);
    assert_int_equal(space_resolve(&spec, net, &err), NAS_OK);
}

static void unit_features_of_mobilenetv2_match_hand_values(void **state)
{
    (void)state;
    static space_net net;
    mobilenetv2(&net);
    float f[PRED_UNIT_NFEAT];
    double macs, params;
    assert_int_equal(pred_unit_count(&net), net.n_blocks + 2);
    assert_int_equal(net.n_blocks, 17);

    /* stem: 3x3 stride 2, 3 -> 32 channels, 224 -> 112 */
    pred_unit_cost(&net, 0, &macs, &params);
    assert_true(macs == 9.0 * 3 * 32 * 112 * 112);          /* 10,838,016 */
    assert_true(params == 9.0 * 3 * 32 + 2 * 32);
    pred_unit_features(&net, 0, f);
    assert_true(f[1] == 224 && f[2] == 112 && f[5] == 32 && f[6] == 3 && f[7] == 2);

    /* block 0: t=1 (no expand conv), 32 -> 16, dw 3x3 at 112 */
    pred_unit_cost(&net, 1, &macs, &params);
    assert_true(macs == 9.0 * 32 * 112 * 112 + 32.0 * 16 * 112 * 112);   /* 10,035,200 */
    assert_true(params == (9.0 * 32 + 64) + (32.0 * 16 + 32));
    pred_unit_features(&net, 1, f);
    assert_true(f[0] == 1 && f[3] == 32 && f[4] == 32 && f[5] == 16 && f[12] == 0);
    assert_true(f[15] == (float)(9.0 * 32 * 112 * 112));   /* dw_macs */

    /* block 1: t=6, 16 -> 96 -> 24, stride 2, 112 -> 56 */
    pred_unit_cost(&net, 2, &macs, &params);
    assert_true(macs == 16.0 * 96 * 112 * 112 + 9.0 * 96 * 56 * 56 + 96.0 * 24 * 56 * 56);   /* 29,202,432 */
    pred_unit_features(&net, 2, f);
    assert_true(f[1] == 112 && f[2] == 56 && f[4] == 96 && f[7] == 2 && fabsf(f[8] - 6.0f) < 1e-6f);
    assert_true(f[11] == 0 && f[12] == 1);
    pred_unit_features(&net, 3, f);   /* block 2: 24 -> 24 stride 1: residual */
    assert_true(f[11] == 1);

    /* head: 320 -> 1280 at 7x7, pooling, classifier 1280 -> 1000 */
    pred_unit_cost(&net, net.n_blocks + 1, &macs, &params);
    assert_true(macs == 320.0 * 1280 * 49 + 1280.0 * 1000);   /* 21,350,400 */
    assert_true(params == 320.0 * 1280 + 2 * 1280 + 1280.0 * 1000 + 1000);
}

static void unit_costs_sum_to_the_cost_model_for_every_preset(void **state)
{
    (void)state;
    static space_net net;
    for (int p = 0; p < space_preset_count(); p++) {
        space_spec spec;
        nas_err err;
        assert_int_equal(space_preset(space_preset_name(p), &spec, &err), NAS_OK);
        assert_int_equal(space_resolve(&spec, &net, &err), NAS_OK);
        space_cost c;
        space_cost_of(&net, NULL, 0, &c);
        double macs = 0, params = 0, prior_macs = 0;
        for (int u = 0; u < pred_unit_count(&net); u++) {
            double m, q, pr[PRED_NPRIOR];
            pred_unit_cost(&net, u, &m, &q);
            pred_unit_prior(&net, u, pr);
            macs += m;
            params += q;
            for (int k = 0; k <= 10; k++)   /* the MAC terms */
                prior_macs += pr[k];
            assert_true(pr[PRED_NPRIOR - 1] == 1.0);
        }
        assert_true(fabs(macs - c.macs) <= 1e-9 * c.macs);
        assert_true(fabs(params - c.params) <= 1e-9 * c.params);
        assert_true(fabs(prior_macs - c.macs) <= 1e-9 * c.macs);
        float f[PRED_NET_NFEAT];
        pred_net_features(&net, f);
        assert_true(fabs(f[0] - c.macs) <= 1e-6 * c.macs);   /* float storage */
        assert_true(f[5] == c.depth && f[6] == c.n_layers && f[7] == net.n_blocks);
        assert_true(f[17] + f[18] + f[19] == net.n_blocks);   /* kernel histogram */
        assert_true(fabs(f[24] + f[25] + f[26] - f[0]) <= 1e-5 * f[0]);
    }
}

static void net_features_of_mobilenetv2(void **state)
{
    (void)state;
    static space_net net;
    mobilenetv2(&net);
    float f[PRED_NET_NFEAT];
    pred_net_features(&net, f);
    assert_string_equal(pred_net_feature_name(0), "macs");
    assert_true(fabs(f[0] / 1e6 - 300.8) < 1.0);       /* the published 300M MACs */
    assert_true(fabs(f[1] / 1e6 - 3.50) < 0.05);       /* 3.5M params */
    assert_true(f[8] == 224 && f[9] == 3 && f[10] == 32 && f[11] == 1280);
    assert_true(f[12] == 960);                          /* 160 * 6 */
    assert_true(f[13] == 320);
    assert_true(f[14] == 0);                            /* no SE */
    assert_true(f[15] == 10);                           /* residual blocks */
    assert_true(f[17] == 17 && f[18] == 0 && f[19] == 0);
    assert_true(f[21] == 17);                           /* all ReLU6 */
    assert_true(f[33] == 16);                           /* all but block 0 expand */
}

/* ---- metrics ------------------------------------------------------------ */

static void metrics_match_hand_computed_values(void **state)
{
    (void)state;
    /* relative errors: 0, 4%, 10%, 20%, 2% */
    double meas[5] = {10, 50, 20, 5, 100};
    double pred[5] = {10, 52, 18, 6, 98};
    pred_metrics m;
    pred_metrics_compute(pred, meas, 5, &m);
    assert_int_equal(m.n, 5);
    assert_true(fabs(m.within5 - 3.0 / 5) < 1e-12);
    assert_true(fabs(m.within10 - 4.0 / 5) < 1e-12);
    assert_true(fabs(m.mape - (0 + 0.04 + 0.10 + 0.20 + 0.02) / 5) < 1e-12);   /* 0.072 */
    assert_true(fabs(m.rmse - sqrt((0 + 4 + 4 + 1 + 4) / 5.0)) < 1e-12);      /* sqrt(2.6) */
    assert_true(fabs(m.max_rel - 0.2) < 1e-12);
    /* pred order 10,52,18,6,98 vs meas 10,50,20,5,100: the same ranking */
    assert_true(fabs(m.kendall_tau - 1.0) < 1e-12);
}

static void kendall_tau_by_hand(void **state)
{
    (void)state;
    /* a = 1 2 3 4, b = 1 3 2 4: 6 pairs, one discordant (2,3): (5-1)/6 */
    double a[4] = {1, 2, 3, 4}, b[4] = {1, 3, 2, 4};
    assert_true(fabs(pred_kendall_tau(a, b, 4) - 4.0 / 6) < 1e-12);
    double r[4] = {4, 3, 2, 1};
    assert_true(fabs(pred_kendall_tau(a, r, 4) + 1.0) < 1e-12);
    /* tau-b with a tie: a = 1 2 2 3, b = 1 2 3 4: n0 = 6, ties_a = 1,
     * concordant 5, discordant 0: 5 / sqrt(5 * 6) */
    double t[4] = {1, 2, 2, 3};
    assert_true(fabs(pred_kendall_tau(t, a, 4) - 5.0 / sqrt(30)) < 1e-12);
}

static void kfold_is_balanced_and_seeded(void **state)
{
    (void)state;
    int f1[23], f2[23], f3[23], count[5] = {0};
    pred_kfold_assign(23, 5, 7, f1);
    pred_kfold_assign(23, 5, 7, f2);
    pred_kfold_assign(23, 5, 8, f3);
    int same = 1, differ = 0;
    for (int i = 0; i < 23; i++) {
        assert_true(f1[i] >= 0 && f1[i] < 5);
        count[f1[i]]++;
        same &= f1[i] == f2[i];
        differ |= f1[i] != f3[i];
    }
    assert_true(same && differ);
    for (int k = 0; k < 5; k++)   /* 23 = 5 + 5 + 5 + 4 + 4 */
        assert_true(count[k] == 4 || count[k] == 5);
}

/* ---- sampling ----------------------------------------------------------- */

static void stratified_sampling_covers_every_choice_and_the_extremes(void **state)
{
    (void)state;
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    enum { N = 120 };
    static space_genome g[N];
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 3, 4);
    pred_sample_stratified(&cfg, N, &rng, g);
    int len = space_genome_len(&cfg);
    /* every choice of every gene appears; the global genes exactly equally */
    for (int i = 0; i < len; i++) {
        int card = space_gene_cardinality(&cfg, i), cnt[16] = {0};
        for (int j = 0; j < N; j++) {
            assert_true(g[j].n == len && g[j].g[i] < card);
            cnt[g[j].g[i]]++;
        }
        for (int c = 0; c < card; c++)
            assert_true(cnt[c] > 0);
        if (!strchr(space_gene_name(&cfg, i), '.'))
            for (int c = 0; c < card; c++)
                assert_true(abs(cnt[c] - N / card) <= 1);
    }
    /* the totals reach their ends: some nets are all-1-repeat and some all-4 */
    int min_blocks = 1000, max_blocks = 0;
    for (int j = 0; j < N; j++) {
        space_spec spec;
        static space_net net;
        nas_err err;
        assert_int_equal(space_genome_to_spec(&cfg, &g[j], &spec, &err), NAS_OK);
        assert_int_equal(space_resolve(&spec, &net, &err), NAS_OK);
        if (net.n_blocks < min_blocks) min_blocks = net.n_blocks;
        if (net.n_blocks > max_blocks) max_blocks = net.n_blocks;
    }
    /* 7 stages of 1-4 repeats (phi may add): independent genes would rarely
     * give under 11 or over 24 blocks */
    assert_true(min_blocks <= 9);
    assert_true(max_blocks >= 26);
}

/* ---- the external measuring command ------------------------------------- */

static void measure_output_is_parsed(void **state)
{
    (void)state;
    pred_measurement m;
    nas_err err;
    assert_int_equal(pred_parse_measure_output("warming up\nlatency_ms=1.25\n energy_mj = 3.5e1\r\n"
                                               "latency_spread=0.02\nenergy_source=ina219\n", &m, &err), NAS_OK);
    assert_true(m.latency_ms == 1.25 && m.energy_mj == 35 && m.latency_spread == 0.02);
    assert_string_equal(m.energy_source, "ina219");
    assert_string_equal(m.energy_quality, "measured");

    assert_int_equal(pred_parse_measure_output("latency_ms=2\n", &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "energy_mj"));
    assert_int_equal(pred_parse_measure_output("energy_mj=2\n", &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "latency_ms"));
    assert_int_equal(pred_parse_measure_output("latency_ms=fast\nenergy_mj=1\n", &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "line 1: latency_ms: 'fast' is not a number"));
    assert_int_equal(pred_parse_measure_output("latency_ms=-1\nenergy_mj=1\n", &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "not positive"));
    assert_int_equal(pred_parse_measure_output("latency_ms=1\nenergy_mj=1\nenergy_quality=guess\n", &m, &err),
                     NAS_EINVAL);
    assert_non_null(strstr(err.msg, "energy_quality"));
}

static void write_script(const char *path, const char *body)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
}

static void measure_command_runs_with_the_spec(void **state)
{
    (void)state;
    char dir[64], script[128], tmpl[512], bad[128], fail[128];
    assert_non_null(tu_tmpdir(dir, sizeof dir));
    const char *old_tmp = getenv("TMPDIR");
    char *keep_tmp = old_tmp ? strdup(old_tmp) : NULL;
    setenv("TMPDIR", dir, 1);   /* the spec files go here, where only this test looks */
    /* a stand-in device: latency from the spec's resolution, read from the file it is given */
    snprintf(script, sizeof script, "%s/measure.sh", dir);
    write_script(script, "#!/bin/sh\n"
                         "res=$(grep -o '\"resolution\": *[0-9]*' \"$1\" | grep -o '[0-9]*$')\n"
                         "echo \"device says hello\"\n"
                         "echo \"latency_ms=$res.5\"\n"
                         "echo \"energy_mj=2.25\"\n"
                         "echo energy_quality=sampled\n");
    space_spec spec;
    nas_err err;
    pred_measurement m;
    assert_int_equal(space_preset("mobilenetv2", &spec, &err), NAS_OK);
    snprintf(tmpl, sizeof tmpl, "%s {spec}", script);
    assert_int_equal(pred_measure_cmd(tmpl, &spec, NULL, 0, &m, &err), NAS_OK);
    assert_true(m.latency_ms == 224.5);
    assert_true(m.energy_mj == 2.25);
    assert_string_equal(m.energy_quality, "sampled");

    /* output without energy */
    snprintf(bad, sizeof bad, "%s/bad.sh", dir);
    write_script(bad, "#!/bin/sh\necho latency_ms=3\n");
    snprintf(tmpl, sizeof tmpl, "%s {spec}", bad);
    assert_int_equal(pred_measure_cmd(tmpl, &spec, NULL, 0, &m, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "bad.sh"));
    assert_non_null(strstr(err.msg, "energy_mj"));

    /* a failing command */
    snprintf(fail, sizeof fail, "%s/fail.sh", dir);
    write_script(fail, "#!/bin/sh\necho latency_ms=3\necho energy_mj=1\nexit 3\n");
    snprintf(tmpl, sizeof tmpl, "%s {spec} 2>/dev/null", fail);
    assert_int_equal(pred_measure_cmd(tmpl, &spec, NULL, 0, &m, &err), NAS_EIO);
    assert_non_null(strstr(err.msg, "exit status 3"));
    assert_int_equal(pred_measure_cmd("/nonexistent/measure {spec} 2>/dev/null", &spec, NULL, 0, &m, &err), NAS_EIO);
    assert_non_null(strstr(err.msg, "127"));
    assert_int_equal(pred_measure_cmd("x {onnx}", &spec, NULL, 0, &m, &err), NAS_EUNSUPP);
    /* {onnx} and {spec} both replaced, in either order */
    snprintf(tmpl, sizeof tmpl, "test -f {spec} && echo latency_ms=1 && echo energy_mj=$(cat {onnx})");
    char onnx[128];
    snprintf(onnx, sizeof onnx, "%s/model.onnx", dir);
    FILE *of = fopen(onnx, "w");
    assert_non_null(of);
    fputs("7.5\n", of);
    fclose(of);
    assert_int_equal(pred_measure_cmd(tmpl, &spec, onnx, 0, &m, &err), NAS_OK);
    assert_true(m.energy_mj == 7.5);

    /* a hung device: killed at its timeout, with what it started in the background
     * (a sleep of a length of this process's own, so that another copy of the
     * suite running beside it is not counted) */
    char nap[32], hung[160], ps_cmd[200];
    snprintf(nap, sizeof nap, "30.%03d", (int)(getpid() % 1000));
    double t0 = nas_now();
    snprintf(hung, sizeof hung, "sleep %s; echo latency_ms=1 {spec}", nap);
    assert_int_equal(pred_measure_cmd(hung, &spec, NULL, 0.3, &m, &err), NAS_EIO);
    assert_non_null(strstr(err.msg, "ran over its 0.3 s"));
    snprintf(hung, sizeof hung, "sleep %s & echo latency_ms=1; echo energy_mj=1 {spec}", nap);
    assert_int_equal(pred_measure_cmd(hung, &spec, NULL, 0.3, &m, &err), NAS_EIO);
    assert_true(nas_now() - t0 < 29);   /* neither waited for its 30 s sleep (a loaded machine may take seconds) */
    int sleepers = -1;
    for (int tries = 0; tries < 100 && sleepers != 0; tries++) {   /* SIGKILL lands a moment later */
        /* killed ones may linger as zombies where PID 1 does not reap: not counted */
        snprintf(ps_cmd, sizeof ps_cmd,
                 "ps -eo stat=,args= | awk '$1 !~ /^Z/ && $2 == \"sleep\" && $3 == \"%s\"' | wc -l", nap);
        FILE *ps = popen(ps_cmd, "r");
        assert_int_equal(fscanf(ps, "%d", &sleepers), 1);
        pclose(ps);
        if (sleepers)
            usleep(20000);
    }
    assert_int_equal(sleepers, 0);
    /* within its time it is untouched */
    assert_int_equal(pred_measure_cmd("sleep 0.1; echo latency_ms=2; echo energy_mj=1; test -f {spec}", &spec, NULL, 5, &m,
                                      &err), NAS_OK);
    assert_true(m.latency_ms == 2);

    /* the spec file is gone afterwards (written under $TMPDIR: this test's own folder) */
    char ls_cmd[200];
    snprintf(ls_cmd, sizeof ls_cmd, "ls '%s'/nas-spec-*.json 2>/dev/null | wc -l", dir);
    FILE *ls = popen(ls_cmd, "r");
    int left = -1;
    assert_int_equal(fscanf(ls, "%d", &left), 1);
    pclose(ls);
    assert_int_equal(left, 0);
    /* a TMPDIR a shell could not be handed safely is refused, naming it */
    setenv("TMPDIR", "/tmp/it's", 1);
    assert_int_equal(pred_measure_cmd("echo latency_ms=1; echo energy_mj=1 {spec}", &spec, NULL, 5, &m, &err),
                     NAS_EINVAL);
    assert_non_null(strstr(err.msg, "TMPDIR /tmp/it's"));
    if (keep_tmp)
        setenv("TMPDIR", keep_tmp, 1);
    else
        unsetenv("TMPDIR");
    free(keep_tmp);
    tu_rmtree(dir);
}

static void hardware_fingerprint_reads_this_machine_and_compares(void **state)
{
    (void)state;
    pred_hw a, b;
    pred_hw_here(&a, 2, "model:cpu-time", "builtin");
    assert_true(a.cores >= 1);
    assert_true(strlen(a.cpu_model) > 0 && strcmp(a.cpu_model, "unknown") != 0);
    b = a;
    char why[512];
    assert_int_equal(pred_hw_differs(&a, &b, why, sizeof why), 0);
    snprintf(b.cpu_model, sizeof b.cpu_model, "Imaginary CPU 9000");
    b.threads = 1;
    assert_int_equal(pred_hw_differs(&a, &b, why, sizeof why), 1);
    assert_non_null(strstr(why, "Imaginary CPU 9000"));
    assert_non_null(strstr(why, "2 vs 1 threads"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unit_features_of_mobilenetv2_match_hand_values),
        cmocka_unit_test(unit_costs_sum_to_the_cost_model_for_every_preset),
        cmocka_unit_test(net_features_of_mobilenetv2),
        cmocka_unit_test(metrics_match_hand_computed_values),
        cmocka_unit_test(kendall_tau_by_hand),
        cmocka_unit_test(kfold_is_balanced_and_seeded),
        cmocka_unit_test(stratified_sampling_covers_every_choice_and_the_extremes),
        cmocka_unit_test(measure_output_is_parsed),
        cmocka_unit_test(measure_command_runs_with_the_spec),
        cmocka_unit_test(hardware_fingerprint_reads_this_machine_and_compares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
