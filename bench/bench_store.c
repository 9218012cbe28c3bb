/* bench_store.c — what the run store costs a search: time per recorded
 * evaluation (add + start + finish, each its own fsynced transaction), time
 * to reopen (with PRAGMA quick_check), time to list the finished results a
 * resume replays.  make bench-store   (or: bench_store FILE N) */
#include "runs/runs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/tmp/nas-bench-store.db";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    char side[1100];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    runs_db *db;
    nas_err e = {0};
    int64_t run, id;
    runs_new_run r = {.name = "bench", .settings_json = "{}"};
    if (runs_open(path, RUNS_OPEN_CREATE, &db, &e) || runs_run_create(db, &r, &run, &e)) {
        fprintf(stderr, "bench_store: %s\n", e.msg);
        return 1;
    }
    double t0 = nas_now(), t_finish = 0;
    for (int k = 0; k < n; k++) {
        char g[32];
        snprintf(g, sizeof g, "%d.1.2.3", k);
        runs_new_cand c = {.seq = k, .genome = g, .params = NAN, .macs = NAN,
                           .pred_latency_ms = runs_fig_none(),
                           .pred_energy_mj = runs_fig_make(1.0, "xgboost", "predicted")};
        runs_result res;
        runs_result_init(&res);
        res.accuracy = 0.9;
        res.joules = runs_fig_make(10, "rapl:package-0", "measured");
        runs_measurement m[5];
        for (int i = 0; i < 5; i++)
            m[i] = (runs_measurement){"latency_ms", i, 1.0 + i, "clock", "measured"};
        res.meas = m;
        res.n_meas = 5;
        if (runs_cand_add(db, run, &c, &id, NULL, NULL, &e) || runs_cand_start(db, id, NULL, &e)) {
            fprintf(stderr, "bench_store: %s\n", e.msg);
            return 1;
        }
        double a = nas_now();
        if (runs_cand_finish(db, id, &res, "{\"population\":[1,2,3]}", &e)) {
            fprintf(stderr, "bench_store: %s\n", e.msg);
            return 1;
        }
        t_finish += nas_now() - a;
    }
    double t = nas_now() - t0;
    printf("store: %d evaluations, %.3f ms each (add+start+finish), %.3f ms per finish transaction\n",
           n, t / n * 1e3, t_finish / n * 1e3);
    runs_close(db);
    double a = nas_now();
    if (runs_open(path, 0, &db, &e)) {
        fprintf(stderr, "bench_store: %s\n", e.msg);
        return 1;
    }
    printf("store: reopen with quick_check: %.1f ms\n", (nas_now() - a) * 1e3);
    runs_cand *l;
    int nl;
    a = nas_now();
    if (runs_cand_list(db, run, RUNS_FINISHED_MASK, &l, &nl, &e)) {
        fprintf(stderr, "bench-store: %s\n", e.msg);
        return 1;
    }
    printf("store: list %d finished results: %.1f ms\n", nl, (nas_now() - a) * 1e3);
    runs_cands_free(l, nl);
    runs_close(db);
    unlink(path);
    return 0;
}
