/* targets.c — the bodies of the fuzz targets (targets.h says what each
 * promises). A target turns the bytes into what its parser reads (NUL-ended
 * text, several files, a database file), calls the parser, and, when the
 * input was accepted, checks the round trip. Everything is freed, so that
 * LeakSanitizer under libFuzzer, and nas_alloc_live under cmocka, see a leak
 * as one. */
#include "fuzz/targets.h"

#include "base/nas.h"
#include "app/app.h"
#include "evaluator/ev.h"
#include "predictor/pred.h"
#include "runs/runs.h"
#include "search/search.h"
#include "space/space.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A broken promise: say which, and stop (libFuzzer keeps the input). */
#define PROMISE(cond, ...)                                   \
    do {                                                     \
        if (!(cond)) {                                       \
            fprintf(stderr, "fuzz: promise broken: " __VA_ARGS__); \
            fprintf(stderr, "\n");                           \
            abort();                                         \
        }                                                    \
    } while (0)

/* The bytes as a NUL-terminated string (nas_malloc'd; NULL when out of memory). */
static char *as_text(const uint8_t *data, size_t size)
{
    char *t = nas_malloc(size + 1);
    if (t) {
        memcpy(t, data, size);
        t[size] = '\0';
    }
    return t;
}

/* Splits the bytes into k parts: k - 1 16-bit big-endian lengths, then the
 * parts (each cut to what is left; the last takes the rest). */
static void split(const uint8_t *data, size_t size, int k, ev_data_buf *parts)
{
    static const char *const names[FUZZ_SPLIT_MAX] = {"part0", "part1", "part2", "part3", "part4", "part5"};
    size_t len[FUZZ_SPLIT_MAX], at = 0;
    for (int i = 0; i < k - 1; i++) {
        len[i] = at + 2 <= size ? (size_t)data[at] << 8 | data[at + 1] : 0;
        at = at + 2 <= size ? at + 2 : size;
    }
    for (int i = 0; i < k; i++) {
        size_t left = size - at, n = i == k - 1 || len[i] > left ? left : len[i];
        parts[i] = (ev_data_buf){data + at, n, names[i]};
        at += n;
    }
}

/* ---- space/: a spec file ------------------------------------------------- */

static int fuzz_spec(const uint8_t *data, size_t size)
{
    char *text = as_text(data, size);
    if (!text)
        return 0;
    static space_spec spec, back;
    static space_net net;
    nas_err err;
    if (space_spec_from_json(text, "fuzz", &spec, &err) == NAS_OK) {
        char *js = space_spec_to_json(&spec, 0);
        PROMISE(js, "a spec that loads does not save");
        PROMISE(space_spec_from_json(js, "saved", &back, &err) == NAS_OK, "a saved spec does not load: %s", err.msg);
        char *again = space_spec_to_json(&back, 0);
        PROMISE(again && !strcmp(js, again), "a spec saved, loaded and saved again differs");
        nas_free(again);
        nas_free(js);
        if (space_resolve(&spec, &net, &err) == NAS_OK) {
            space_cost c;
            space_cost_of(&net, NULL, 0, &c);
        }
    }
    nas_free(text);
    return 0;
}

/* ---- app/: a job file, YAML or JSON -------------------------------------- */

static int fuzz_job(const uint8_t *data, size_t size)
{
    static app_settings job, back;
    nas_err err;
    if (app_job_parse((const char *)data, size, "fuzz.yaml", &job, &err) == NAS_OK) {
        /* what a job file can say, a run's saved settings can keep */
        char *js = app_settings_to_json(&job);
        if (js)
            PROMISE(app_settings_from_json(js, &back, &err) == NAS_OK, "a job's settings do not load back: %s",
                    err.msg);
        nas_free(js);
    }
    return 0;
}

/* ---- evaluator/: IDX and CIFAR-10 files, raw or gzip ----------------------- */

static void load_buffers(const char *kind, const ev_data_buf *parts, int n)
{
    ev_data_opts o;
    ev_data_opts_default(&o);
    o.max_file_bytes = (size_t)1 << 20;   /* a fuzzer's inputs are small: what is bigger is a bomb */
    ev_data d;
    nas_err err;
    if (ev_data_from_buffers(kind, parts, n, &o, &d, &err) == NAS_OK) {
        PROMISE(d.train.n >= 1 && d.test.n >= 1 && d.num_classes == 10, "loaded data without images");
        ev_data_free(&d);
    }
}

static int fuzz_idx(const uint8_t *data, size_t size)
{
    ev_data_buf parts[4];
    split(data, size, 4, parts);
    load_buffers("idx", parts, 4);
    return 0;
}

static int fuzz_cifar(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ev_data_buf parts[FUZZ_SPLIT_MAX];
    int k = data[0] % 5 + 2;
    split(data + 1, size - 1, k, parts);
    load_buffers("cifar10", parts, k);
    return 0;
}

/* ---- predictor/: the predictor file, and a measuring command's output ------ */

static int fuzz_pred(const uint8_t *data, size_t size)
{
    char *text = as_text(data, size);
    if (!text)
        return 0;
    pred_model *m = NULL, *back = NULL;
    nas_err err;
    if (pred_from_json(text, "fuzz", &m, &err) == NAS_OK) {
        char *js = pred_to_json(m, &err);
        PROMISE(js, "a predictor that loads does not save: %s", err.msg);
        PROMISE(pred_from_json(js, "saved", &back, &err) == NAS_OK, "a saved predictor does not load: %s", err.msg);
        char *again = pred_to_json(back, &err);
        PROMISE(again && !strcmp(js, again), "a predictor saved, loaded and saved again differs");
        /* and it predicts: a network of the space it says it was fit on */
        static space_spec spec;
        static space_net net;
        space_genome g;
        nas_pcg32 rng;
        nas_pcg32_seed(&rng, size, 1);
        space_genome_sample(pred_model_space(m), &rng, &g);
        if (space_genome_to_spec(pred_model_space(m), &g, &spec, &err) == NAS_OK &&
            space_resolve(&spec, &net, &err) == NAS_OK) {
            pred_estimate e;
            if (pred_predict(m, &net, &e, &err) != NAS_OK) {
                /* a refusal of what loaded is an answer too; only a crash is a finding */
            }
        }
        nas_free(again);
        nas_free(js);
    }
    pred_free(back);
    pred_free(m);
    nas_free(text);
    return 0;
}

static int fuzz_measure(const uint8_t *data, size_t size)
{
    char *text = as_text(data, size);
    if (!text)
        return 0;
    pred_measurement m;
    nas_err err;
    if (pred_parse_measure_output(text, &m, &err) == NAS_OK)
        PROMISE(m.latency_ms > 0 && m.latency_ms <= PRED_MAX_MS && m.energy_mj > 0 && m.energy_mj <= PRED_MAX_MJ,
                "a measurement out of range was accepted");
    nas_free(text);
    return 0;
}

/* ---- search/: the search state a run store keeps -------------------------- */

/* The space of the main job's searches (28x28 digits, 7 stages, width 0.5). */
static const space_config *state_space(search_space *sp)
{
    static space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    cfg.max_width = 0.5;
    nas_err err;
    PROMISE(search_space_from_config(sp, &cfg, &err) == NAS_OK, "the fuzzed space does not build: %s", err.msg);
    return &cfg;
}

typedef struct {
    double clock;
    int results;
} fake_run;

static nas_status fake_evaluate(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                                nas_err *err)
{
    fake_run *f = ctx;
    unsigned h = 0;
    for (int i = 0; i < g->n; i++)
        h = h * 31 + g->g[i];
    out->status = SEARCH_EVAL_OK;
    out->accuracy = (h % 1000) / 1000.0;
    out->energy_mj = 0.5 + (h % 7) / 7.0;
    out->latency_ms = 1;
    out->joules = 10;
    out->joules_rel_unc = 0.5;
    out->joules_estimated = 1;
    snprintf(out->meter, sizeof out->meter, "model:cpu-time");
    out->seconds = 2;
    f->clock += 2;
    return NAS_OK;
}

static nas_status fake_on_result(void *ctx, const search_result *r, const search_loop *l, nas_err *err)
{
    fake_run *f = ctx;
    f->results++;
    char *js = search_loop_save(l);
    PROMISE(js, "a loaded state stopped saving after %d results", f->results);
    nas_free(js);
    return NAS_OK;
}

static int fake_should_stop(void *ctx) { return ((fake_run *)ctx)->results >= 3; }
static double fake_now(void *ctx) { return ((fake_run *)ctx)->clock; }

static int fuzz_state(const uint8_t *data, size_t size)
{
    char *text = as_text(data, size);
    if (!text)
        return 0;
    search_space sp;
    state_space(&sp);
    search_loop *l = NULL, *back = NULL;
    nas_err err;
    if (search_loop_load(&sp, text, &l, &err) == NAS_OK) {
        char *js = search_loop_save(l);
        PROMISE(js, "a state that loads does not save");
        PROMISE(search_loop_load(&sp, js, &back, &err) == NAS_OK, "a saved state does not load: %s", err.msg);
        char *again = search_loop_save(back);
        PROMISE(again && !strcmp(js, again), "a state saved, loaded and saved again differs");
        nas_free(again);
        nas_free(js);
        /* the form without history (version 2) that the run store keeps,
         * restored with the results the store would hand back */
        js = search_loop_save_state(l);
        PROMISE(js, "a state that loads does not save without its history");
        int n = search_loop_n_results(l);
        search_result *past = nas_calloc(n ? (size_t)n : 1, sizeof *past);
        PROMISE(past, "out of memory");
        int n_past = 0;
        for (int i = n - 1; i >= 0; i--)   /* any order will do; the store keeps no row for a cached one */
            if (!search_loop_result(l, i)->cached)
                past[n_past++] = *search_loop_result(l, i);
        search_loop *v2 = NULL;
        PROMISE(search_loop_restore(&sp, js, past, n_past, &v2, &err) == NAS_OK,
                "a state saved without its history does not restore: %s", err.msg);
        again = search_loop_save_state(v2);
        PROMISE(again && !strcmp(js, again), "a state saved without history, restored and saved again differs");
        nas_free(again);
        nas_free(js);
        nas_free(past);
        search_loop_free(v2);
        /* and it runs, three results at most, then stops */
        const search_budget *b = search_loop_budget(l);
        search_limits lim = {.evals = b->evals + 3, .joules = b->joules_hi + 1000, .seconds = b->seconds + 100,
                             .sigmas = 2};
        fake_run f = {.clock = 0};
        search_callbacks cb = {.ctx = &f, .evaluate = fake_evaluate, .on_result = fake_on_result,
                               .should_stop = fake_should_stop, .now = fake_now};
        search_stop why;
        if (search_loop_set_limits(l, &lim, &err) == NAS_OK && search_run(l, &cb, &why, &err) != NAS_OK) {
            /* an error of a loaded state is an answer; only a crash or a hang is a finding */
        }
    }
    search_loop_free(back);
    search_loop_free(l);
    nas_free(text);
    return 0;
}

/* ---- cli/: a run's saved settings ------------------------------------------ */

static int fuzz_settings(const uint8_t *data, size_t size)
{
    char *text = as_text(data, size);
    if (!text)
        return 0;
    static app_settings s, back;
    nas_err err;
    if (app_settings_from_json(text, &s, &err) == NAS_OK) {
        char *js = app_settings_to_json(&s);
        PROMISE(js, "settings that load do not save");
        PROMISE(app_settings_from_json(js, &back, &err) == NAS_OK, "saved settings do not load: %s", err.msg);
        char *again = app_settings_to_json(&back);
        PROMISE(again && !strcmp(js, again), "settings saved, loaded and saved again differ");
        nas_free(again);
        nas_free(js);
    }
    nas_free(text);
    return 0;
}

/* ---- runs/: a run store that is not what it should be ---------------------- */

static void read_store(const char *path, int flags)
{
    runs_db *db = NULL;
    nas_err err;
    if (runs_open(path, flags, &db, &err) != NAS_OK)
        return;
    runs_run *runs = NULL;
    int n = 0;
    if (runs_run_list(db, &runs, &n, &err) == NAS_OK) {
        for (int i = 0; i < n && i < 4; i++) {
            runs_cand *c = NULL;
            int nc = 0, seq;
            char *state = NULL;
            if (runs_cand_list(db, runs[i].id, ~0u, &c, &nc, &err) == NAS_OK)
                runs_cands_free(c, nc);
            if (runs_strategy_get(db, runs[i].id, &state, &seq, &err) == NAS_OK)
                nas_free(state);
            runs_report rep;
            if (runs_report_build(db, runs[i].id, &rep, &err) == NAS_OK) {
                runs_report_opts o;
                runs_report_opts_default(&o);
                char *js = runs_report_json(&rep, &o);
                nas_free(js);
                runs_report_free(&rep);
            }
        }
        runs_runs_free(runs, n);
    }
    /* a damaged store may fail the check, but must then say why */
    PROMISE(runs_check(db, &err) == NAS_OK || err.msg[0], "store: runs_check failed with no message");
    runs_close(db);
}

/* The folder the fuzzed store is written to: a tmpfs (/dev/shm) where there
 * is one. On a disk the read-write open's fsyncs held the target to a few
 * hundred inputs a second, too few for a million in `make fuzz`. */
static const char *store_tmp_base(void)
{
    const char *env = getenv("NAS_FUZZ_TMPDIR");
    if (env && *env)
        return env;
    return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

/* One open per input, read-write ("store": WAL, migration, integrity) or
 * read-only ("store-ro": what nas ls and nas report do). Both in one target
 * ran at a quarter of the speed of either alone. */
static int store_input(const uint8_t *data, size_t size, int flags)
{
    char dir[512], path[600], side[640];
    snprintf(dir, sizeof dir, "%s/nas-fuzz-store-XXXXXX", store_tmp_base());
    if (!mkdtemp(dir))
        return 0;
    snprintf(path, sizeof path, "%s/runs.db", dir);
    FILE *f = fopen(path, "wb");
    if (f) {
        int ok = fwrite(data, 1, size, f) == size;
        if (fclose(f) == 0 && ok)
            read_store(path, flags);
    }
    static const char *const ends[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(side, sizeof side, "%s%s", path, ends[i]);
        unlink(side);
    }
    rmdir(dir);
    return 0;
}

static int fuzz_store(const uint8_t *data, size_t size) { return store_input(data, size, 0); }
static int fuzz_store_ro(const uint8_t *data, size_t size) { return store_input(data, size, RUNS_OPEN_READONLY); }

/* ---- the table ------------------------------------------------------------- */

const fuzz_target fuzz_targets[] = {
    {"spec", fuzz_spec, 16384},
    {"job", fuzz_job, 16384},
    {"idx", fuzz_idx, 8192},
    {"cifar", fuzz_cifar, 32768},
    {"pred", fuzz_pred, 262144},
    {"measure", fuzz_measure, 4096},
    {"state", fuzz_state, 65536},
    {"settings", fuzz_settings, 16384},
    {"store", fuzz_store, 131072},
    {"store-ro", fuzz_store_ro, 131072},
};
const int fuzz_n_targets = (int)(sizeof fuzz_targets / sizeof fuzz_targets[0]);

const fuzz_target *fuzz_target_find(const char *name)
{
    for (int i = 0; i < fuzz_n_targets; i++)
        if (!strcmp(fuzz_targets[i].name, name))
            return &fuzz_targets[i];
    return NULL;
}
