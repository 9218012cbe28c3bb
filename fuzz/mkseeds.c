/* mkseeds.c — writes the fuzz targets' seed corpora (fuzz/corpus/NAME/) from
 * nas's own writers, so that every seed is an input nas really reads: specs
 * of presets and sampled genomes, the job files of jobs/, small IDX and
 * CIFAR-10 files raw and gzip, a predictor fit on a made-up CPU (the tests'
 * pred_synth.h), search states of each strategy, saved settings, measuring
 * command output, and run stores (current and oldest schema). The inputs of
 * several files use the layouts targets.h describes. `make fuzz-seeds`. */
#include "fuzz/targets.h"

#include "base/nas.h"
#include "app/app.h"
#include "predictor/pred.h"
#include "runs/runs.h"
#include "search/search.h"
#include "space/space.h"
#include "tests/pred_synth.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char *root;

static void die(const char *what)
{
    fprintf(stderr, "mkseeds: %s\n", what);
    exit(1);
}

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char dir[512], path[640];
    snprintf(dir, sizeof dir, "%s/%s", root, target);
    mkdir(root, 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die(path);
}

static void put_text(const char *target, const char *name, const char *text)
{
    if (!text)
        die(name);
    put(target, name, text, strlen(text));
}

/* ---- byte helpers ---------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void add(buf *b, const void *data, size_t len)
{
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2;
        if (!(b->p = realloc(b->p, b->cap)))
            die("out of memory");
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void add_be(buf *b, uint32_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        add(b, &c, 1);
    }
}

static buf gzip_of(const buf *in)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2");
    buf out = {0};
    out.cap = deflateBound(&z, (uLong)in->n);
    out.p = malloc(out.cap);
    z.next_in = in->p;
    z.avail_in = (uInt)in->n;
    z.next_out = out.p;
    z.avail_out = (uInt)out.cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        die("deflate");
    out.n = out.cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* ---- spec, job, measure, settings ----------------------------------------- */

static void spec_seeds(void)
{
    static const char *const presets[] = {"mobilenetv2", "mobilenetv3-small", "efficientnet-b0"};
    space_spec spec;
    nas_err err;
    for (int i = 0; i < 3; i++) {
        if (space_preset(presets[i], &spec, &err))
            die(err.msg);
        char name[64];
        snprintf(name, sizeof name, "%s.json", presets[i]);
        char *js = space_spec_to_json(&spec, 1);
        put_text("spec", name, js);
        nas_free(js);
    }
    put_text("spec", "readme.json",
             "{\"name\": \"tiny\", \"resolution\": 28, \"in_channels\": 1, \"num_classes\": 10,\n"
             " \"stem\": {\"channels\": 16, \"kernel\": 3, \"stride\": 1, \"act\": \"relu6\"},\n"
             " \"stages\": [\n"
             "  {\"kernel\": 3, \"expand\": 1, \"channels\": 16, \"repeats\": 1, \"stride\": 1, \"se\": 0, \"act\": \"relu6\"},\n"
             "  {\"kernel\": 5, \"expand\": 6, \"channels\": 24, \"repeats\": 2, \"stride\": 2, \"se\": 0.25, \"act\": \"swish\"}\n"
             " ],\n"
             " \"head\": {\"channels\": 256, \"act\": \"hswish\"}, \"fc\": {\"channels\": 0, \"act\": \"hswish\"},\n"
             " \"se\": {\"base\": \"input\", \"act\": \"relu\", \"gate\": \"sigmoid\"}, \"dropout\": 0.1}\n");
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 7, 1);
    for (int i = 0; i < 3; i++) {
        space_genome g;
        space_genome_sample(&cfg, &rng, &g);
        if (space_genome_to_spec(&cfg, &g, &spec, &err))
            die(err.msg);
        char name[64];
        snprintf(name, sizeof name, "sampled-%d.json", i);
        char *js = space_spec_to_json(&spec, 0);
        put_text("spec", name, js);
        nas_free(js);
    }
}

static void job_seeds(void)
{
    static const char *const jobs[] = {"mnist-small.yaml", "cifar10.yaml", "calibrate.yaml"};
    for (int i = 0; i < 3; i++) {
        char path[128], *text;
        size_t len;
        nas_err err;
        snprintf(path, sizeof path, "jobs/%s", jobs[i]);
        if (nas_read_file(path, &text, &len, &err))
            die(err.msg);
        put("job", jobs[i], text, len);
        nas_free(text);
    }
    put_text("job", "search.json",
             "{\"job\": \"search\", \"name\": \"j\", \"seed\": 3, \"threads\": 2,\n"
             " \"data\": {\"set\": \"idx\", \"dir\": \"data/mnist\", \"val_count\": 500},\n"
             " \"space\": {\"resolution\": 28, \"max_width\": 0.5, \"stages\": 3, \"min_side\": 4,"
             " \"scale_resolution\": false},\n"
             " \"strategy\": {\"kind\": \"evolution\", \"population\": 8, \"sample\": 3, \"mutations\": 1},\n"
             " \"objective\": {\"target_mj\": 2.0, \"w\": -0.07, \"constraint\": \"soft\"},\n"
             " \"budget\": {\"joules\": 2000, \"evals\": 24, \"seconds\": 3600},\n"
             " \"proxy\": {\"epochs\": 1, \"subset\": 4000, \"batch\": 32, \"lr\": 0.1},\n"
             " \"meter\": {\"kind\": \"model\", \"watts_per_core\": 10},\n"
             " \"output\": {\"db\": \"runs.db\", \"export\": \"out\"}}\n");
    put_text("job", "rl.yaml",
             "job: search\ndata:\n  set: mnist\nstrategy:\n  kind: rl\n  lr: 0.1\n  entropy: 0.01\n"
             "  baseline_decay: 0.9\nobjective:\n  target_ms: 1.5\n  constraint: hard\nbudget:\n  evals: 10\n");
}

static void measure_seeds(void)
{
    put_text("measure", "plain.txt", "latency_ms=1.25\nenergy_mj=0.5\n");
    put_text("measure", "full.txt",
             "warming up\nlatency_ms = 0.8\t\nlatency_spread=0.05\nenergy_mj=2e-1\nenergy_spread=0.1\r\n"
             "energy_source=rapl:package-0\nenergy_quality=sampled\nother=thing\n");
    put_text("measure", "ort.txt",
             "latency_ms=0.41\nlatency_call_p10_ms=0.39\nenergy_mj=0.02\nenergy_source=model:cpu-time\n"
             "energy_quality=estimated\n");
}

static void settings_seeds(void)
{
    app_settings s;
    app_settings_defaults(&s);
    char *js = app_settings_to_json(&s);
    put_text("settings", "defaults.json", js);
    nas_free(js);
    nas_err err;
    if (app_job_load("jobs/mnist-small.yaml", &s, &err))
        die(err.msg);
    js = app_settings_to_json(&s);
    put_text("settings", "mnist-small.json", js);
    nas_free(js);
}

/* ---- data files ------------------------------------------------------------ */

static buf idx_images(int n, int h, int w, int salt)
{
    buf b = {0};
    add_be(&b, 0x803, 4);
    add_be(&b, (uint32_t)n, 4);
    add_be(&b, (uint32_t)h, 4);
    add_be(&b, (uint32_t)w, 4);
    for (int i = 0; i < n * h * w; i++)
        add_be(&b, (uint32_t)(i * 37 + salt) & 0xff, 1);
    return b;
}

static buf idx_labels(int n, int salt)
{
    buf b = {0};
    add_be(&b, 0x801, 4);
    add_be(&b, (uint32_t)n, 4);
    for (int i = 0; i < n; i++)
        add_be(&b, (uint32_t)(i + salt) % 10, 1);
    return b;
}

/* Parts in the layout of targets.h: lengths of all but the last, then the parts. */
static void put_parts(const char *target, const char *name, const uint8_t *lead, size_t nlead, buf *parts, int k)
{
    buf b = {0};
    add(&b, lead, nlead);
    for (int i = 0; i < k - 1; i++)
        add_be(&b, (uint32_t)parts[i].n, 2);
    for (int i = 0; i < k; i++)
        add(&b, parts[i].p, parts[i].n);
    put(target, name, b.p, b.n);
    free(b.p);
}

static void data_seeds(void)
{
    for (int gz = 0; gz < 2; gz++) {
        buf p[4] = {idx_images(6, 4, 5, 1), idx_labels(6, 1), idx_images(3, 4, 5, 2), idx_labels(3, 2)};
        if (gz)
            for (int i = 0; i < 4; i++) {
                buf z = gzip_of(&p[i]);
                free(p[i].p);
                p[i] = z;
            }
        put_parts("idx", gz ? "small-gz.bin" : "small.bin", NULL, 0, p, 4);
        for (int i = 0; i < 4; i++)
            free(p[i].p);
    }
    for (int gz = 0; gz < 2; gz++) {
        buf p[2] = {{0}, {0}};
        for (int k = 0; k < 2; k++)
            for (int r = 0; r < 2 - k; r++) {
                add_be(&p[k], (uint32_t)(r + k) % 10, 1);
                for (int i = 0; i < 3072; i++)
                    add_be(&p[k], (uint32_t)(i * 7 + r) & 0xff, 1);
            }
        if (gz) {
            buf z = gzip_of(&p[0]);
            free(p[0].p);
            p[0] = z;
        }
        uint8_t n = 0;   /* one training batch */
        put_parts("cifar", gz ? "two-and-one-gz.bin" : "two-and-one.bin", &n, 1, p, 2);
        free(p[0].p);
        free(p[1].p);
    }
}

/* ---- predictor --------------------------------------------------------------- */

static void pred_seeds(void)
{
    pred_calib_opts o;
    pred_calib_opts_default(&o);
    space_config_default(&o.space, 28, 1, 10);
    o.space.n_stages = 2;
    o.samples = 12;
    o.max_samples = 12;
    o.adaptive_rounds = 0;
    o.folds = 2;
    o.threads = 1;
    o.fit.max_rounds = 3;
    o.fit.min_rounds = 1;
    o.fit.max_depth = 2;
    synth_ctx ctx = {.noise = 0.01};
    nas_pcg32_seed(&ctx.rng, 5, 1);
    pred_model *m = NULL;
    pred_calib_report rep;
    nas_err err;
    if (pred_calibrate(&o, synth_measure, &ctx, &m, &rep, &err))
        die(err.msg);
    char *js = pred_to_json(m, &err);
    put_text("pred", "tiny.json", js);
    nas_free(js);
    pred_free(m);
}

/* ---- search states and run stores ------------------------------------------ */

typedef struct {
    double clock;
    int results, save_at;
    char *saved;
} seed_run;

static nas_status seed_evaluate(void *ctx, long id, const space_genome *g, double allowance_j, search_eval *out,
                                nas_err *err)
{
    seed_run *r = ctx;
    unsigned h = 0;
    for (int i = 0; i < g->n; i++)
        h = h * 31 + g->g[i];
    out->status = id % 5 == 4 ? SEARCH_EVAL_DIVERGED : SEARCH_EVAL_OK;
    out->accuracy = 0.5 + (h % 400) / 1000.0;
    out->energy_mj = 0.3 + (h % 13) / 10.0;
    out->latency_ms = 0.5 + (h % 7) / 10.0;
    out->joules = 20 + (h % 11);
    out->joules_rel_unc = 0.5;
    out->joules_estimated = 1;
    snprintf(out->meter, sizeof out->meter, "model:cpu-time");
    out->seconds = 3;
    r->clock += 3;
    return NAS_OK;
}

static nas_status seed_predict(void *ctx, const space_genome *g, search_prediction *out, nas_err *err)
{
    out->energy_mj = 0.3 + g->g[0] / 10.0;
    out->latency_ms = 0.6 + g->g[1] / 10.0;
    return NAS_OK;
}

static nas_status seed_on_result(void *ctx, const search_result *res, const search_loop *l, nas_err *err)
{
    seed_run *r = ctx;
    if (++r->results == r->save_at && !(r->saved = search_loop_save(l)))
        die("saving a state");
    return NAS_OK;
}

static double seed_now(void *ctx) { return ((seed_run *)ctx)->clock; }

/* A state of the main job's space after `results` results of a search, with
 * its history (version 1); with results 0, one without (version 2). */
static char *state_of(search_kind kind, int ppo, int results)
{
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    cfg.max_width = 0.5;
    search_space sp;
    nas_err err;
    if (search_space_from_config(&sp, &cfg, &err))
        die(err.msg);
    search_loop_opts o;
    search_loop_opts_default(&o, kind, 20);
    if (ppo) {
        o.strategy.batch = 4;
        o.strategy.ppo_epochs = 2;
        o.strategy.lr = 1.0;
    }
    search_objective_init(&o.objective, SEARCH_TARGET_MJ, 1.0, 0);
    o.limits.joules = 5000;
    o.limits.evals = 20;
    o.measure_every = 4;
    search_loop *l;
    if (search_loop_new(&sp, &o, &l, &err))
        die(err.msg);
    if (results == 0) {   /* a state without history (version 2), as a run store keeps it, saved at the start */
        char *js = search_loop_save_state(l);
        search_loop_free(l);
        if (!js)
            die("no state saved");
        return js;
    }
    seed_run r = {.save_at = results};
    search_callbacks cb = {.ctx = &r, .evaluate = seed_evaluate, .predict = seed_predict,
                           .on_result = seed_on_result, .now = seed_now};
    search_stop why;
    if (search_run(l, &cb, &why, &err))
        die(err.msg);
    search_loop_free(l);
    if (!r.saved)
        die("no state saved");
    return r.saved;
}

static void state_seeds(void)
{
    static const struct { const char *name; search_kind kind; int ppo, results; } s[] = {
        {"evolution-3.json", SEARCH_EVOLUTION, 0, 3}, {"evolution-15.json", SEARCH_EVOLUTION, 0, 15},
        {"rl-5.json", SEARCH_RL, 0, 5}, {"ppo-6.json", SEARCH_RL, 1, 6}, {"random-4.json", SEARCH_RANDOM, 0, 4},
        {"evolution-v2.json", SEARCH_EVOLUTION, 0, 0}, {"ppo-v2.json", SEARCH_RL, 1, 0},
        {"random-v2.json", SEARCH_RANDOM, 0, 0},
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        char *js = state_of(s[i].kind, s[i].ppo, s[i].results);
        put_text("state", s[i].name, js);
        nas_free(js);
    }
}

/* The store at path, shrunk: out of WAL mode, 512-byte pages, vacuumed. */
static void put_store(const char *path, const char *name)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA page_size=512; VACUUM;", NULL, NULL, NULL) != SQLITE_OK)
        die(sqlite3_errmsg(db));
    sqlite3_close(db);
    char *bytes;
    size_t len;
    nas_err err;
    if (nas_read_file(path, &bytes, &len, &err))
        die(err.msg);
    put("store", name, bytes, len);
    put("store-ro", name, bytes, len);
    nas_free(bytes);
}

static void store_seeds(void)
{
    char dir[] = "/tmp/nas-mkseeds-XXXXXX", path[64];
    if (!mkdtemp(dir))
        die("mkdtemp");
    snprintf(path, sizeof path, "%s/runs.db", dir);
    runs_db *db;
    nas_err err;
    if (runs_open(path, RUNS_OPEN_CREATE, &db, &err))
        die(err.msg);
    app_settings s;
    app_settings_defaults(&s);
    char *settings = app_settings_to_json(&s), *all = malloc(strlen(settings) + 64);
    sprintf(all, "{\"command\":\"search\",\"settings\":%s}", settings);
    runs_new_run nr = {.name = "seed", .settings_json = all, .seed = 1, .hardware = "x86_64|seed cpu|2 cpus",
                       .meter = "model:cpu-time"};
    int64_t run;
    if (runs_run_create(db, &nr, &run, &err))
        die(err.msg);
    char *state = state_of(SEARCH_EVOLUTION, 0, 3);
    for (int seq = 0; seq < 3; seq++) {
        char genome[32];
        snprintf(genome, sizeof genome, "%d.1.2.0.1", seq);
        runs_new_cand c = {.seq = seq, .genome = genome, .spec_json = "{\"resolution\":28}", .params = 1000,
                           .macs = 2e6, .pred_latency_ms = runs_fig_make(0.5, "xgboost", "predicted"),
                           .pred_energy_mj = runs_fig_none()};
        int64_t id;
        int got, existed, attempts;
        if (runs_cand_add(db, run, &c, &id, &got, &existed, &err) || runs_cand_start(db, id, &attempts, &err))
            die(err.msg);
        if (seq == 2)
            break;   /* left running, as a crash leaves it */
        runs_result res;
        runs_result_init(&res);
        res.status = seq ? RUNS_DONE : RUNS_DIVERGED;
        res.accuracy = seq ? 0.9 : NAN;
        res.energy_mj = runs_fig_make(0.4, "model:cpu-time", "estimated");
        res.joules = runs_fig_make(25, "model:cpu-time", "estimated");
        res.reward = seq ? 0.91 : NAN;
        if (runs_cand_finish(db, id, &res, state, &err))
            die(err.msg);
    }
    runs_close(db);
    nas_free(state);
    nas_free(settings);
    free(all);
    put_store(path, "one-run.db");
    unlink(path);
    if (runs_create_at_version(path, 1, &err))
        die(err.msg);
    put_store(path, "schema-1.db");
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkseeds DIR (run from the repository root)\n");
        return 2;
    }
    root = argv[1];
    spec_seeds();
    job_seeds();
    measure_seeds();
    settings_seeds();
    data_seeds();
    pred_seeds();
    state_seeds();
    store_seeds();
    return 0;
}
