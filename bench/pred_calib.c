/* pred_calib.c — the predictor's calibration at full size on a made-up CPU
 * (tests/pred_synth.h), to time the fitting side and see its accuracy apart
 * from any real measuring. Usage: pred_calib [SAMPLES [NOISE [NTHREAD]]]
 * (defaults 300, 0.01, 1): NOISE is the relative sigma of each measurement. */
#include "predictor/pred.h"
#include "tests/pred_synth.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    pred_calib_opts o;
    pred_calib_opts_default(&o);
    o.samples = argc > 1 ? atoi(argv[1]) : 300;
    o.max_samples = o.samples + o.samples / 2;
    double noise = argc > 2 ? atof(argv[2]) : 0.01;
    o.fit.nthread = argc > 3 ? atoi(argv[3]) : 1;
    synth_ctx ctx = {.noise = noise};
    nas_pcg32_seed(&ctx.rng, 2024, 1);
    pred_model *m = NULL;
    pred_calib_report rep;
    nas_err err;
    double t0 = nas_now();
    if (pred_calibrate(&o, synth_measure, &ctx, &m, &rep, &err) != NAS_OK) {
        fprintf(stderr, "pred_calib: %s\n", err.msg);
        return 1;
    }
    printf("samples %d (+%d adaptive, %d rounds), noise %.3f, nthread %d: %.1f s wall, fitting %.1f s\n",
           rep.samples, rep.adaptive_added, rep.rounds, noise, o.fit.nthread, nas_now() - t0, rep.fit_seconds);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++)
            printf("  %s %-5s CV: within10 %.3f within5 %.3f MAPE %.4f tau %.3f%s\n", t ? "energy " : "latency",
                   pred_kind_name((pred_kind)k), rep.cv[t][k].within10, rep.cv[t][k].within5, rep.cv[t][k].mape,
                   rep.cv[t][k].kendall_tau, rep.kept[t] == (pred_kind)k ? " (kept)" : "");
    /* 500 fresh networks against the noiseless truth */
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 777, 3);
    int in10 = 0, in5 = 0, n = 500;
    double t1 = nas_now();
    for (int i = 0; i < n; i++) {
        space_genome g;
        space_spec spec;
        static space_net net;
        pred_estimate e;
        double lat, en;
        space_genome_sample(&o.space, &rng, &g);
        if (space_genome_to_spec(&o.space, &g, &spec, &err) != NAS_OK || space_resolve(&spec, &net, &err) != NAS_OK ||
            pred_predict(m, &net, &e, &err) != NAS_OK) {
            fprintf(stderr, "pred_calib: %s\n", err.msg);
            return 1;
        }
        synth_truth(&net, &lat, &en);
        in10 += fabs(e.latency_ms / lat - 1) <= 0.10;
        in5 += fabs(e.latency_ms / lat - 1) <= 0.05;
    }
    printf("  fresh uniform networks, latency vs truth: within10 %.3f within5 %.3f (%.0f us per prediction)\n",
           (double)in10 / n, (double)in5 / n, 1e6 * (nas_now() - t1) / n);
    pred_free(m);
    return 0;
}
